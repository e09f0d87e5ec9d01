//! The `message_log` table: every message queued for a persistent session,
//! stored once however many sessions it is queued for, until no queue
//! refers to it (see `queues` and `coverage`).
//!
//! [`LogCache`] keeps the most recent messages in memory, within a byte
//! budget, so that sessions reading their queues mostly do not read the
//! database; messages not committed yet are always in it.

use super::properties::Columns;
use crate::message::MessageProperties;
use crate::protocol::{QoS, TopicName};
use crate::session::MessageId;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Steps a [`Cursor`] walks before it searches instead.
const CURSOR_WALK: usize = 8;

/// See [`LogCache::cursor`].
pub struct Cursor<'a> {
    cache: &'a LogCache,
    ahead: std::collections::btree_map::Range<'a, MessageId, Cached>,
}

impl<'a> Cursor<'a> {
    /// The cached message `id`, if any.
    pub fn get(&mut self, id: MessageId) -> Option<&'a Logged> {
        let mut walked = 0;
        loop {
            let mut next = self.ahead.clone();
            match next.next() {
                Some((&k, cached)) if k == id => {
                    self.ahead = next;
                    return Some(&cached.message);
                }
                Some((&k, _)) if k < id && walked < CURSOR_WALK => {
                    self.ahead = next;
                    walked += 1;
                }
                // A wide gap: search from `id` on.
                Some((&k, _)) if k < id => self.ahead = self.cache.entries.range(id..),
                // Behind the cursor (asked out of order), or not cached.
                _ => return self.cache.get(id),
            }
        }
    }
}

/// A message of the log, as it is read back.
#[derive(Debug, Clone)]
pub struct Logged {
    pub topic: TopicName,
    pub payload: Bytes,
    /// As published.
    pub qos: QoS,
    /// MQTT 5.0's, shared with the message's other copies.
    pub properties: Option<Arc<MessageProperties>>,
}

impl Logged {
    /// Topic and payload bytes.
    pub fn size(&self) -> usize {
        self.topic.as_str().len() + self.payload.len()
    }
}

/// Memory one cached message costs beyond its topic and payload: the
/// B-tree entry and the buffers' headers, roughly.
const ENTRY_OVERHEAD: usize = 96;

struct Cached {
    message: Logged,
    /// Written by a commit that succeeded: may leave the cache.
    committed: bool,
}

/// Topics of recent appends that the next ones share (see
/// [`LogCache::shared_topic`]).
const RECENT_TOPICS: usize = 4;

pub struct LogCache {
    entries: BTreeMap<MessageId, Cached>,
    bytes: usize,
    budget: usize,
    recent_topics: [Option<TopicName>; RECENT_TOPICS],
    /// The slot of `recent_topics` the next new topic takes.
    next_slot: usize,
}

impl LogCache {
    pub fn new(budget: usize) -> LogCache {
        LogCache {
            entries: BTreeMap::new(),
            bytes: 0,
            budget,
            recent_topics: Default::default(),
            next_slot: 0,
        }
    }

    /// `topic` in an allocation apart from the publisher's read buffer: the
    /// copy made for a recent append if it has the same topic, else a new
    /// one. Publishers mostly send to a few topics; the messages of one
    /// topic then share one buffer, whose reference count every session
    /// reading them changes (twice per delivery) and finds in the CPU's
    /// cache, rather than a buffer each.
    pub fn shared_topic(&mut self, topic: &TopicName) -> TopicName {
        if let Some(recent) = self.recent_topics.iter().flatten().find(|t| *t == topic) {
            return recent.clone();
        }
        let copy = topic.detached();
        self.recent_topics[self.next_slot] = Some(copy.clone());
        self.next_slot = (self.next_slot + 1) % RECENT_TOPICS;
        copy
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A message just appended (not committed yet: it stays until it is).
    pub fn appended(&mut self, id: MessageId, message: Logged) {
        self.bytes += message.size() + ENTRY_OVERHEAD;
        if let Some(old) = self.entries.insert(
            id,
            Cached {
                message,
                committed: false,
            },
        ) {
            self.bytes -= old.message.size() + ENTRY_OVERHEAD;
        }
    }

    /// A message read from the database.
    pub fn read(&mut self, id: MessageId, message: Logged) {
        if self.entries.contains_key(&id) {
            return;
        }
        self.bytes += message.size() + ENTRY_OVERHEAD;
        self.entries.insert(
            id,
            Cached {
                message,
                committed: true,
            },
        );
        self.trim();
    }

    pub fn get(&self, id: MessageId) -> Option<&Logged> {
        self.entries.get(&id).map(|c| &c.message)
    }

    /// Looks up many ids, from `first` on: ids asked in ascending order, as
    /// a queue pages them, are found by walking the cache instead of a
    /// search each.
    pub fn cursor(&self, first: MessageId) -> Cursor<'_> {
        Cursor {
            cache: self,
            ahead: self.entries.range(first..),
        }
    }

    /// The appended messages `ids` are committed: the oldest committed
    /// messages leave while the cache is over its budget.
    pub fn committed(&mut self, ids: impl Iterator<Item = MessageId>) {
        for id in ids {
            if let Some(c) = self.entries.get_mut(&id) {
                c.committed = true;
            }
        }
        self.trim();
    }

    /// Messages no queue refers to any more.
    pub fn forget(&mut self, first: MessageId, last: MessageId) {
        if self.entries.is_empty() {
            return;
        }
        let ids: Vec<MessageId> = self
            .entries
            .range(first..=last)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(c) = self.entries.remove(&id) {
                self.bytes -= c.message.size() + ENTRY_OVERHEAD;
            }
        }
    }

    fn trim(&mut self) {
        while self.bytes > self.budget {
            let Some(id) = self
                .entries
                .iter()
                .find(|(_, c)| c.committed)
                .map(|(id, _)| *id)
            else {
                return;
            };
            if let Some(c) = self.entries.remove(&id) {
                self.bytes -= c.message.size() + ENTRY_OVERHEAD;
            }
        }
    }
}

/// The highest id, to number new messages after it.
pub(super) const HIGHEST_ID: &str = "SELECT max(id) FROM message_log";
/// A message appended.
pub(super) const INSERT: &str =
    "INSERT OR REPLACE INTO message_log (id, topic, payload, qos, created_at, \
     expires_at, payload_format, content_type, response_topic, correlation_data, user_properties) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
/// Messages no queue refers to, in a range of ids.
pub(super) const DELETE_RANGE: &str = "DELETE FROM message_log WHERE id BETWEEN ?1 AND ?2";
/// The messages of a range of ids (for a queue read from the database).
pub(super) const READ_RANGE: &str = "SELECT id, topic, payload, qos, expires_at, payload_format, \
     content_type, response_topic, correlation_data, user_properties \
     FROM message_log WHERE id BETWEEN ?1 AND ?2";

pub(super) fn insert(
    db: &rusqlite::Connection,
    rows: &[(MessageId, Logged)],
) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    // One time for the whole commit, as SQL formats it.
    let now: String = db
        .prepare_cached(concat!("SELECT ", super::now_sql!()))?
        .query_row([], |r| r.get(0))?;
    let mut insert = db.prepare_cached(INSERT)?;
    for (id, m) in rows {
        let p = Columns::of(m.properties.as_deref());
        insert.execute((
            *id as i64,
            m.topic.as_str(),
            &m.payload[..],
            m.qos as i64,
            &now,
            p.expires_at,
            p.payload_format,
            p.content_type,
            p.response_topic,
            p.correlation_data,
            p.user_properties,
        ))?;
    }
    Ok(())
}

pub(super) fn delete_ranges(
    db: &rusqlite::Connection,
    ranges: &[(MessageId, MessageId)],
) -> rusqlite::Result<()> {
    if ranges.is_empty() {
        return Ok(());
    }
    let mut delete = db.prepare_cached(DELETE_RANGE)?;
    for (first, last) in ranges {
        delete.execute((*first as i64, *last as i64))?;
    }
    Ok(())
}

/// The messages with ids in the given ranges, in id order; ids without a
/// row are left out.
pub fn read_ranges(
    db: &rusqlite::Connection,
    ranges: &[(MessageId, MessageId)],
) -> rusqlite::Result<Vec<(MessageId, Logged)>> {
    let mut out = Vec::new();
    let mut read = db.prepare_cached(READ_RANGE)?;
    for (first, last) in ranges {
        let mut rows = read.query((*first as i64, *last as i64))?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let topic: String = row.get(1)?;
            let payload: Vec<u8> = row.get(2)?;
            let qos: i64 = row.get(3)?;
            let (Ok(topic), Some(qos)) = (TopicName::new(topic), super::qos_from(qos)) else {
                log::warn!("database: skipping invalid message {id} of the log");
                continue;
            };
            let properties =
                Columns::from_rusqlite(row, 4)?.properties(format_args!("message {id} of the log"));
            out.push((
                id as MessageId,
                Logged {
                    topic,
                    payload: Bytes::from(payload),
                    qos,
                    properties,
                },
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(n: usize) -> Logged {
        Logged {
            topic: TopicName::new("t".to_string()).unwrap(),
            payload: Bytes::from(vec![0; n]),
            qos: QoS::AtLeastOnce,
            properties: None,
        }
    }

    #[test]
    fn the_cache_keeps_uncommitted_messages_and_drops_the_oldest_committed() {
        let per = 1 + 99 + ENTRY_OVERHEAD;
        let mut cache = LogCache::new(3 * per);
        for id in 1..=5 {
            cache.appended(id, logged(99));
        }
        assert_eq!(cache.len(), 5, "over budget, but nothing is committed yet");
        cache.committed(1..=4);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(1).is_none() && cache.get(2).is_none());
        assert!(cache.get(5).is_some());
        cache.forget(3, 4);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), per);
    }

    /// Appends to a recent topic share one copy of it, made apart from
    /// the publisher's buffer; the oldest of the recent topics gives way.
    #[test]
    fn recent_topics_are_shared() {
        let mut cache = LogCache::new(usize::MAX);
        let read_buffer = bytestring::ByteString::from("a/b c/d".to_string());
        let in_buffer = TopicName::new(read_buffer.slice_ref(&read_buffer[..3])).unwrap();
        let first = cache.shared_topic(&in_buffer);
        assert_eq!(first.as_str(), "a/b");
        assert_ne!(
            first.as_str().as_ptr(),
            in_buffer.as_str().as_ptr(),
            "a copy"
        );
        let again = cache.shared_topic(&TopicName::new("a/b".to_string()).unwrap());
        assert_eq!(again.as_str().as_ptr(), first.as_str().as_ptr(), "shared");
        for other in ["t/1", "t/2", "t/3", "t/4"] {
            cache.shared_topic(&TopicName::new(other.to_string()).unwrap());
        }
        let later = cache.shared_topic(&in_buffer);
        assert_ne!(
            later.as_str().as_ptr(),
            first.as_str().as_ptr(),
            "given way"
        );
    }

    proptest::proptest! {
        /// A cursor finds what `get` finds, whatever the order of the ids
        /// asked and the gaps between the cached ones.
        #[test]
        fn a_cursor_finds_what_get_finds(
            cached in proptest::collection::btree_set(1u64..300, 0..120),
            asked in proptest::collection::vec(1u64..300, 0..60),
            sorted in proptest::bool::ANY,
        ) {
            let mut cache = LogCache::new(usize::MAX);
            for &id in &cached {
                cache.appended(id, logged(id as usize));
            }
            let mut asked = asked;
            if sorted {
                asked.sort_unstable();
            }
            let mut cursor = cache.cursor(asked.first().copied().unwrap_or(1));
            for id in asked {
                let found = cursor.get(id).map(|l| l.payload.len());
                proptest::prop_assert_eq!(found, cache.get(id).map(|l| l.payload.len()), "id {}", id);
            }
        }
    }
}
