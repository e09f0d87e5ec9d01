//! One group commit's worth of writes, merged by key before any SQL runs.
//!
//! Writes arrive as typed [`Op`]s from many actors. The batch keeps only
//! the last word on each key (a message row, a subscription, a retained
//! topic), and a message that is written and deleted within one batch (it
//! was delivered and acknowledged before its batch committed) is never
//! written at all: its completions run at once. Session-level operations
//! keep their order. What is left becomes a handful of multi-row
//! statements in one transaction (see `commit`).

use super::Op;
use crate::protocol::{LastWill, QoS, TopicFilter, TopicName};
use crate::session::{MessageId, OutboundState, Record};
use ahash::AHashMap;
use bytes::Bytes;
use bytestring::ByteString;
use smallvec::SmallVec;

/// What waits for a write to commit (the broker's `Completion`). The batch
/// drops it once its commit has succeeded, in the order the writes
/// arrived; it never looks inside. A batch that fails to commit is kept
/// and committed again.
pub trait Waiter {
    /// The commit was cut short (the store restarted during it): nothing
    /// may be acknowledged for it.
    fn cut_short(&self);
}

/// Rows (and completions) whose room an emptied batch keeps at most.
const KEPT_CAPACITY: usize = 1 << 16;

/// Session rows, applied in the order they were asked for.
pub(super) enum SessionOp {
    Connected {
        client_id: ByteString,
        username: Option<ByteString>,
        persistent: bool,
        keep_alive: u16,
        will: Option<LastWill>,
    },
    Disconnected {
        client_id: ByteString,
    },
    Delete {
        client_id: ByteString,
        persistent: bool,
        /// Its message rows, by id: those the session held, and those of
        /// this batch that the delete purged.
        rows: Vec<MessageId>,
    },
}

pub(super) enum MessageWrite {
    Upsert { record: Record, new: bool },
    Delete,
}

pub(super) struct PendingMessage<W> {
    pub client_id: ByteString,
    pub write: MessageWrite,
    /// Mostly one: kept inline, so a row costs no allocation of its own.
    completions: SmallVec<[(u64, W); 1]>,
}

pub struct Batch<W: Waiter> {
    pub(super) sessions: Vec<SessionOp>,
    /// `None`: delete the subscription.
    pub(super) subscriptions: AHashMap<(ByteString, TopicFilter), Option<QoS>>,
    pub(super) messages: AHashMap<MessageId, PendingMessage<W>>,
    /// `None`: clear the topic's retained message.
    pub(super) retained: AHashMap<TopicName, Option<(Bytes, QoS)>>,
    /// Run after the commit (those of message rows live with the row), each
    /// numbered in arrival order: completions run in the order their writes
    /// arrived, so packets held back for a commit keep their order.
    completions: Vec<(u64, W)>,
    next_seq: u64,
    /// Operations merged into this batch, for metrics.
    pub(super) ops: usize,
}

impl<W: Waiter> Default for Batch<W> {
    fn default() -> Self {
        Batch {
            sessions: Vec::new(),
            subscriptions: AHashMap::new(),
            messages: AHashMap::new(),
            retained: AHashMap::new(),
            completions: Vec::new(),
            next_seq: 0,
            ops: 0,
        }
    }
}

impl<W: Waiter> Batch<W> {
    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    pub fn len(&self) -> usize {
        self.ops
    }

    /// Nothing but message rows (and barriers) to write.
    pub(super) fn only_messages(&self) -> bool {
        self.sessions.is_empty() && self.subscriptions.is_empty() && self.retained.is_empty()
    }

    pub fn push(&mut self, op: Op, completion: Option<W>) {
        self.ops += 1;
        let completion = completion.map(|c| {
            self.next_seq += 1;
            (self.next_seq, c)
        });
        match op {
            Op::Barrier => {}
            Op::SessionConnected {
                client_id,
                username,
                persistent,
                keep_alive,
                will,
            } => self.sessions.push(SessionOp::Connected {
                client_id,
                username,
                persistent,
                keep_alive,
                will,
            }),
            Op::SessionDisconnected { client_id } => {
                self.sessions.push(SessionOp::Disconnected { client_id })
            }
            Op::DeleteSession {
                client_id,
                persistent,
                mut rows,
            } => {
                self.purge(&client_id, persistent, &mut rows);
                self.sessions.push(SessionOp::Delete {
                    client_id,
                    persistent,
                    rows,
                });
            }
            Op::Subscribe {
                client_id,
                filter,
                qos,
            } => {
                self.subscriptions.insert((client_id, filter), Some(qos));
            }
            Op::Unsubscribe { client_id, filter } => {
                self.subscriptions.insert((client_id, filter), None);
            }
            Op::PutMessage {
                client_id,
                record,
                new,
            } => {
                let id = record.id();
                match self.messages.get_mut(&id) {
                    Some(entry) => {
                        // A row first written in this batch is still new when
                        // updated; a state never moves back (a late first
                        // write from a `WriteGroup` keeps the newer state).
                        let (new, keep) = match &entry.write {
                            MessageWrite::Upsert { new, record: old } => {
                                (*new, rank(old) > rank(&record))
                            }
                            // Ids are never reused: a write after a delete is stale.
                            MessageWrite::Delete => (false, true),
                        };
                        if !keep {
                            entry.write = MessageWrite::Upsert { record, new };
                        }
                        entry.completions.extend(completion);
                    }
                    None => self.insert_pending(
                        id,
                        client_id,
                        MessageWrite::Upsert { record, new },
                        completion,
                    ),
                }
                return;
            }
            Op::DeleteMessage { client_id, id } => {
                match self.messages.get_mut(&id) {
                    Some(PendingMessage {
                        write: MessageWrite::Upsert { new: true, .. },
                        ..
                    }) => {
                        // Written and finished within one batch: nothing to
                        // write, and whoever waited for the row may go on.
                        self.messages.remove(&id);
                        drop(completion);
                    }
                    Some(entry) => {
                        entry.write = MessageWrite::Delete;
                        entry.completions.extend(completion);
                    }
                    None => self.insert_pending(id, client_id, MessageWrite::Delete, completion),
                }
                return;
            }
            Op::SetRetained {
                topic,
                payload,
                qos,
            } => {
                self.retained.insert(topic, Some((payload, qos)));
            }
            Op::ClearRetained { topic } => {
                self.retained.insert(topic, None);
            }
        }
        self.completions.extend(completion);
    }

    fn insert_pending(
        &mut self,
        id: MessageId,
        client_id: ByteString,
        write: MessageWrite,
        completion: Option<(u64, W)>,
    ) {
        let completions = completion.into_iter().collect();
        self.messages.insert(
            id,
            PendingMessage {
                client_id,
                write,
                completions,
            },
        );
    }

    /// Drops pending rows of a session that is being deleted: they belong to
    /// the discarded session, and the delete removes what was committed.
    /// The ids of the message rows dropped join `rows`: one may have been
    /// written by an earlier commit and be waiting here to be deleted.
    /// Only persistent sessions write rows, so only their deletes look.
    fn purge(&mut self, client_id: &ByteString, persistent: bool, rows: &mut Vec<MessageId>) {
        if persistent {
            self.subscriptions.retain(|(c, _), _| c != client_id);
            self.messages.retain(|id, m| {
                let theirs = m.client_id == *client_id;
                if theirs {
                    rows.push(*id);
                }
                !theirs
            });
        }
    }

    /// The commit succeeded: run every completion, in arrival order. The
    /// batch is left empty, with its tables' room kept for the next batch
    /// (a fresh batch grew its tables, and faulted their pages in, anew for
    /// every commit), unless they grew beyond `KEPT_CAPACITY`.
    pub fn release(&mut self) {
        let mut all = std::mem::take(&mut self.completions);
        for (_, m) in self.messages.drain() {
            all.extend(m.completions);
        }
        all.sort_unstable_by_key(|(seq, _)| *seq);
        for (_, c) in all.drain(..) {
            drop(c);
        }
        self.completions = all;
        self.sessions.clear();
        self.subscriptions.clear();
        self.retained.clear();
        self.next_seq = 0;
        self.ops = 0;
        if self.messages.capacity() > KEPT_CAPACITY {
            self.messages = AHashMap::new();
        }
        if self.completions.capacity() > KEPT_CAPACITY {
            self.completions = Vec::new();
        }
    }

    fn each_waiter(&mut self, f: impl Fn(&W)) {
        for (_, w) in self.completions.drain(..) {
            f(&w);
        }
        for (_, m) in self.messages.drain() {
            for (_, w) in &m.completions {
                f(w);
            }
        }
    }
}

/// A batch dropped without [`Batch::release`] (a commit cut short by a
/// restart of the store) acknowledges nothing.
impl<W: Waiter> Drop for Batch<W> {
    fn drop(&mut self) {
        self.each_waiter(W::cut_short);
    }
}

/// How far a row's handshake has come; it never goes back.
fn rank(record: &Record) -> u8 {
    match record {
        Record::Outbound {
            state: OutboundState::Queued,
            ..
        } => 0,
        Record::Outbound {
            state: OutboundState::AwaitingPubComp,
            ..
        } => 2,
        _ => 1,
    }
}

/// A waiter for the store's own tests: runs its closure when the last
/// clone is dropped, unless the commit failed or was cut short.
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct OnDrop(std::sync::Arc<OnDropInner>);

#[cfg(test)]
pub(crate) struct OnDropInner(std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>);

#[cfg(test)]
impl OnDrop {
    pub(crate) fn new(f: impl FnOnce() + Send + 'static) -> OnDrop {
        OnDrop(std::sync::Arc::new(OnDropInner(std::sync::Mutex::new(
            Some(Box::new(f)),
        ))))
    }
}

#[cfg(test)]
impl Waiter for OnDrop {
    fn cut_short(&self) {
        self.0 .0.lock().unwrap().take();
    }
}

#[cfg(test)]
impl Drop for OnDropInner {
    fn drop(&mut self) {
        if let Some(f) = self.0.lock().unwrap().take() {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::protocol::PacketId;
    use crate::session::OutboundState;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn record(id: MessageId) -> Record {
        let message = Message {
            topic: TopicName::new("t".to_string()).unwrap(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
        };
        Record::Outbound {
            id,
            state: OutboundState::AwaitingPubAck,
            packet_id: PacketId::new(1),
            message,
        }
    }

    type Completion = OnDrop;
    type Batch = super::Batch<OnDrop>;

    fn counter() -> (Arc<AtomicUsize>, Completion) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        (
            n,
            Completion::new(move || {
                m.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }

    fn put(b: &mut Batch, client: &str, id: MessageId, new: bool, c: Option<Completion>) {
        b.push(
            Op::PutMessage {
                client_id: client.into(),
                record: record(id),
                new,
            },
            c,
        );
    }

    #[test]
    fn written_and_deleted_in_one_batch_is_never_written() {
        let mut b = Batch::default();
        let (acked, c) = counter();
        put(&mut b, "a", 1, true, Some(c));
        b.push(
            Op::DeleteMessage {
                client_id: "a".into(),
                id: 1,
            },
            None,
        );
        assert!(b.messages.is_empty());
        assert_eq!(
            acked.load(Ordering::SeqCst),
            1,
            "the publisher is acknowledged at once"
        );
    }

    #[test]
    fn delete_of_a_committed_row_is_kept_and_completes_after_commit() {
        let mut b = Batch::default();
        let (done, c) = counter();
        b.push(
            Op::DeleteMessage {
                client_id: "a".into(),
                id: 1,
            },
            Some(c),
        );
        assert!(matches!(b.messages[&1].write, MessageWrite::Delete));
        assert_eq!(done.load(Ordering::SeqCst), 0);
        b.release();
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn update_of_a_new_row_stays_new_and_then_delete_cancels() {
        let mut b = Batch::default();
        put(&mut b, "a", 1, true, None);
        put(&mut b, "a", 1, false, None);
        assert!(matches!(
            b.messages[&1].write,
            MessageWrite::Upsert { new: true, .. }
        ));
        b.push(
            Op::DeleteMessage {
                client_id: "a".into(),
                id: 1,
            },
            None,
        );
        assert!(b.messages.is_empty());
    }

    #[test]
    fn deleting_a_session_purges_its_pending_rows_only() {
        let mut b = Batch::default();
        put(&mut b, "a", 1, true, None);
        put(&mut b, "b", 2, true, None);
        b.push(
            Op::Subscribe {
                client_id: "a".into(),
                filter: TopicFilter::new("x".to_string()).unwrap(),
                qos: QoS::AtMostOnce,
            },
            None,
        );
        b.push(
            Op::DeleteSession {
                client_id: "a".into(),
                persistent: true,
                rows: vec![7],
            },
            None,
        );
        assert_eq!(b.messages.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert!(b.subscriptions.is_empty());
        let Some(SessionOp::Delete { rows, .. }) = b.sessions.last() else {
            panic!()
        };
        assert_eq!(rows, &[7, 1], "its own rows and the pending one purged");
        put(&mut b, "a", 3, true, None);
        assert_eq!(
            b.messages.len(),
            2,
            "rows of the new session after the delete are kept"
        );
    }

    #[test]
    fn completions_run_in_arrival_order() {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut b = Batch::default();
        for i in 0..20u64 {
            let o = order.clone();
            let c = Completion::new(move || o.lock().unwrap().push(i));
            if i % 3 == 0 {
                b.push(Op::Barrier, Some(c));
            } else {
                put(&mut b, "a", 100 + i, true, Some(c));
            }
        }
        b.release();
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn abandoned_batch_acknowledges_nothing() {
        let mut b = Batch::default();
        let (acked, c) = counter();
        put(&mut b, "a", 1, true, Some(c.clone()));
        b.push(
            Op::SetRetained {
                topic: TopicName::new("r".to_string()).unwrap(),
                payload: Bytes::from_static(b"v"),
                qos: QoS::AtLeastOnce,
            },
            Some(c),
        );
        drop(b);
        assert_eq!(acked.load(Ordering::SeqCst), 0);
    }
}
