//! The `message_bodies` table: each message's topic and payload stored
//! once, however many persistent sessions it is queued for.
//!
//! The rows of one published message share its payload buffer in memory
//! (every session holds a clone of the same `Bytes`), so the store
//! recognises copies of one message by that buffer and its topic. [`Bodies`]
//! counts the rows that refer to each body; a body is written with the
//! first row that needs it and deleted in the transaction that deletes its
//! last row. Both happen in [`Bodies::plan`], which decides, for one batch,
//! which bodies to insert and delete and which body each new row refers to.

use super::batch::{Batch, MessageWrite, SessionOp, Waiter};
use crate::message::Message;
use crate::protocol::TopicName;
use crate::session::{MessageId, Record};
use ahash::AHashMap;
use bytes::Bytes;
use sqlx::{Row, SqliteConnection};

pub type BodyId = i64;

/// Identity of a message's content: the same payload and topic buffers
/// (address and length). Two keys are equal only for identical content, so
/// sharing a body between them is always right; the body keeps both
/// buffers alive, so their addresses cannot be reused for other content
/// meanwhile.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct ContentKey {
    payload: (usize, usize),
    topic: (usize, usize),
}

impl ContentKey {
    fn of(message: &Message) -> ContentKey {
        let topic = message.topic.as_str();
        ContentKey {
            payload: (message.payload.as_ptr() as usize, message.payload.len()),
            topic: (topic.as_ptr() as usize, topic.len()),
        }
    }
}

struct Body {
    /// Rows (committed or in the batch being committed) that refer to it.
    refs: u32,
    /// `None` for a body known only from the database after a failure.
    key: Option<ContentKey>,
    /// Keeps the buffers of `key` alive.
    _content: Option<(TopicName, Bytes)>,
}

/// What one batch does to bodies.
#[derive(Default)]
pub(super) struct Plan {
    pub inserts: Vec<(BodyId, TopicName, Bytes)>,
    pub deletes: Vec<BodyId>,
    /// The body of every outbound row the batch writes.
    pub row_body: AHashMap<MessageId, BodyId>,
}

/// Which rows refer to which bodies, as committed plus the batch being
/// committed.
#[derive(Default)]
pub struct Bodies {
    by_content: AHashMap<ContentKey, BodyId>,
    bodies: AHashMap<BodyId, Body>,
    /// The body of every outbound row.
    rows: AHashMap<MessageId, BodyId>,
    next_id: BodyId,
    /// A commit failed: what the database holds is reloaded before the
    /// next plan.
    stale: bool,
}

impl Bodies {
    /// Bookkeeping that must be reloaded from the database before use.
    pub fn stale() -> Bodies {
        Bodies {
            stale: true,
            ..Bodies::default()
        }
    }

    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// The commit of the last plan failed or was cut short.
    pub fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// A row loaded at start: `message` shares its payload with the other
    /// rows of the same body.
    pub(super) fn loaded(&mut self, row: MessageId, body: BodyId, message: &Message) {
        let entry = self.bodies.entry(body).or_insert_with(|| Body {
            refs: 0,
            key: None,
            _content: Some((message.topic.clone(), message.payload.clone())),
        });
        if entry.key.is_none() {
            let key = ContentKey::of(message);
            self.by_content.insert(key, body);
            entry.key = Some(key);
        }
        entry.refs += 1;
        self.rows.insert(row, body);
        self.next_id = self.next_id.max(body + 1);
    }

    fn release_row(&mut self, row: MessageId, plan: &mut Plan) {
        let Some(body) = self.rows.remove(&row) else {
            return;
        };
        let Some(entry) = self.bodies.get_mut(&body) else {
            return;
        };
        entry.refs -= 1;
        if entry.refs == 0 {
            if let Some(key) = self.bodies.remove(&body).and_then(|b| b.key) {
                self.by_content.remove(&key);
            }
            plan.deletes.push(body);
        }
    }

    /// Decides the body writes of `batch` and counts them as done (a failed
    /// commit marks the bookkeeping stale).
    pub(super) async fn plan<W: Waiter>(
        &mut self,
        conn: &mut SqliteConnection,
        batch: &Batch<W>,
    ) -> Result<Plan, sqlx::Error> {
        if self.stale {
            self.reload(conn).await?;
        }
        let mut plan = Plan {
            row_body: AHashMap::with_capacity(batch.messages.len()),
            ..Plan::default()
        };
        // Session deletes run first in SQL and remove the rows of a
        // persistent session, which it names (see `sessions::write`);
        // others have none.
        for op in &batch.sessions {
            if let SessionOp::Delete {
                persistent: true,
                rows,
                ..
            } = op
            {
                for id in rows {
                    self.release_row(*id, &mut plan);
                }
            }
        }
        for (id, pending) in &batch.messages {
            match &pending.write {
                MessageWrite::Upsert {
                    record: Record::Outbound { message, .. },
                    new,
                } => {
                    // A row's first write cannot have a body yet: no need
                    // to look (in a map of every queued row, a cache miss).
                    if !new {
                        if let Some(body) = self.rows.get(id) {
                            plan.row_body.insert(*id, *body);
                            continue;
                        }
                    }
                    let key = ContentKey::of(message);
                    let body = match self.by_content.get(&key) {
                        Some(body) => *body,
                        None => {
                            let body = self.next_id;
                            self.next_id += 1;
                            self.by_content.insert(key, body);
                            self.bodies.insert(
                                body,
                                Body {
                                    refs: 0,
                                    key: Some(key),
                                    _content: Some((
                                        message.topic.clone(),
                                        message.payload.clone(),
                                    )),
                                },
                            );
                            plan.inserts.push((
                                body,
                                message.topic.clone(),
                                message.payload.clone(),
                            ));
                            body
                        }
                    };
                    if let Some(entry) = self.bodies.get_mut(&body) {
                        entry.refs += 1;
                    }
                    self.rows.insert(*id, body);
                    plan.row_body.insert(*id, body);
                }
                MessageWrite::Upsert { .. } => {}
                MessageWrite::Delete => self.release_row(*id, &mut plan),
            }
        }
        Ok(plan)
    }

    /// Rebuilds the counts from what the database holds.
    async fn reload(&mut self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        *self = Bodies::default();
        let rows = sqlx::query(ROWS_WITH_BODIES).fetch_all(&mut *conn).await?;
        for r in rows {
            let (row, body): (i64, BodyId) = (r.get("id"), r.get("body_id"));
            self.bodies
                .entry(body)
                .or_insert(Body {
                    refs: 0,
                    key: None,
                    _content: None,
                })
                .refs += 1;
            self.rows.insert(row as MessageId, body);
        }
        let max: Option<i64> = sqlx::query_scalar(HIGHEST_ID).fetch_one(&mut *conn).await?;
        self.next_id = max.unwrap_or(0) + 1;
        Ok(())
    }
}

/// At start and after a failed commit: which rows refer to which body.
pub(super) const ROWS_WITH_BODIES: &str =
    "SELECT id, body_id FROM messages WHERE body_id IS NOT NULL";
/// The highest body id, to number new bodies after it.
pub(super) const HIGHEST_ID: &str = "SELECT max(id) FROM message_bodies";
/// At start: bodies no row refers to.
pub(super) const DELETE_ORPHANS: &str =
    "DELETE FROM message_bodies WHERE id NOT IN (SELECT body_id FROM messages WHERE body_id IS NOT NULL)";
/// A body stored with its first row.
pub(super) const INSERT: &str =
    "INSERT OR REPLACE INTO message_bodies (id, topic, payload, created_at) VALUES (?1, ?2, ?3, ?4)";
/// A body deleted with its last row.
pub(super) const DELETE: &str = "DELETE FROM message_bodies WHERE id = ?1";

pub(super) fn insert(
    db: &rusqlite::Connection,
    inserts: &[(BodyId, TopicName, Bytes)],
) -> rusqlite::Result<()> {
    if inserts.is_empty() {
        return Ok(());
    }
    // One time for the whole commit, as SQL formats it.
    let now: String = db.query_row(concat!("SELECT ", super::now_sql!()), [], |r| r.get(0))?;
    let mut insert = db.prepare(INSERT)?;
    for (id, topic, payload) in inserts {
        insert.execute((id, topic.as_str(), &payload[..], &now))?;
    }
    Ok(())
}

pub(super) fn delete(db: &rusqlite::Connection, ids: &[BodyId]) -> rusqlite::Result<()> {
    super::delete_ids(db, DELETE, ids)
}

pub(super) async fn delete_orphans(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query(DELETE_ORPHANS).execute(conn).await.map(|_| ())
}
