//! The rows of the queue tables (`queue_runs`, `inflight`,
//! `inbound_qos2`): what `Queues::take_writes` says to write, written
//! inside a commit's transaction, and every queue loaded at start (runs of
//! message ids, never a message's content).

use super::message_log;
use crate::protocol::{PacketId, QoS};
use crate::session::{MessageId, OutboundState};
use bytestring::ByteString;

/// Consecutive message ids of one queue, delivered at one QoS with one
/// RETAIN flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Its key in `queue_runs`, with the client id.
    pub first: MessageId,
    pub last: MessageId,
    pub qos: QoS,
    pub retain: bool,
    /// Topic and payload bytes of its messages (shared out in proportion
    /// when an acknowledgement out of order splits a run).
    pub bytes: u64,
}

impl Run {
    /// Messages in the run (never 0: an empty run is deleted).
    pub fn messages(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// A sent message's packet id and the step of its handshake.
pub type SentState = (PacketId, OutboundState);

/// Rows to write for what changed since the last commit.
#[derive(Default)]
pub struct QueueWrites {
    pub log_inserts: Vec<(MessageId, super::message_log::Logged)>,
    pub log_deletes: Vec<(MessageId, MessageId)>,
    /// Every range of ids whose last reference went, written or not (for
    /// the cache to forget).
    pub forgotten: Vec<(MessageId, MessageId)>,
    pub runs: Vec<(ByteString, Run)>,
    pub run_deletes: Vec<(ByteString, MessageId)>,
    /// `Some`: write the packet id and state; `None`: delete the row.
    pub sent: Vec<(ByteString, MessageId, Option<SentState>)>,
    /// `true`: insert; `false`: delete.
    pub inbound: Vec<(ByteString, PacketId, bool)>,
}

impl QueueWrites {
    pub fn is_empty(&self) -> bool {
        self.log_inserts.is_empty()
            && self.log_deletes.is_empty()
            && self.runs.is_empty()
            && self.run_deletes.is_empty()
            && self.sent.is_empty()
            && self.inbound.is_empty()
    }
}

fn state_name(state: OutboundState) -> &'static str {
    match state {
        OutboundState::Queued => "queued",
        OutboundState::AwaitingPubAck => "awaiting_puback",
        OutboundState::AwaitingPubRec => "awaiting_pubrec",
        OutboundState::AwaitingPubComp => "awaiting_pubcomp",
    }
}

fn state_from_name(name: &str) -> Option<OutboundState> {
    Some(match name {
        "queued" => OutboundState::Queued,
        "awaiting_puback" => OutboundState::AwaitingPubAck,
        "awaiting_pubrec" => OutboundState::AwaitingPubRec,
        "awaiting_pubcomp" => OutboundState::AwaitingPubComp,
        _ => return None,
    })
}

/// A run written: created, or with its last id or bytes changed.
pub(super) const RUN_UPSERT: &str =
    "INSERT INTO queue_runs (client_id, first_id, last_id, qos, retain, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT (client_id, first_id) DO UPDATE SET last_id = excluded.last_id, qos = excluded.qos, \
     retain = excluded.retain, bytes = excluded.bytes";
/// A run gone (emptied, or its first id moved on).
pub(super) const RUN_DELETE: &str = "DELETE FROM queue_runs WHERE client_id = ?1 AND first_id = ?2";
/// A queued message sent, or moved on in its handshake.
pub(super) const SENT_UPSERT: &str =
    "INSERT INTO inflight (client_id, message_id, packet_id, state) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (client_id, message_id) DO UPDATE SET packet_id = excluded.packet_id, state = excluded.state";
pub(super) const SENT_DELETE: &str =
    "DELETE FROM inflight WHERE client_id = ?1 AND message_id = ?2";
pub(super) const INBOUND_INSERT: &str =
    "INSERT OR IGNORE INTO inbound_qos2 (client_id, packet_id) VALUES (?1, ?2)";
pub(super) const INBOUND_DELETE: &str =
    "DELETE FROM inbound_qos2 WHERE client_id = ?1 AND packet_id = ?2";
/// A persistent session deleted: its queue, by client id.
pub(super) const DELETE_CLIENT_RUNS: &str = "DELETE FROM queue_runs WHERE client_id = ?1";
pub(super) const DELETE_CLIENT_SENT: &str = "DELETE FROM inflight WHERE client_id = ?1";
pub(super) const DELETE_CLIENT_INBOUND: &str = "DELETE FROM inbound_qos2 WHERE client_id = ?1";

/// At start: rows of sessions that no longer exist.
pub(super) const DELETE_ORPHAN_RUNS: &str =
    "DELETE FROM queue_runs WHERE client_id NOT IN (SELECT client_id FROM sessions)";
pub(super) const DELETE_ORPHAN_SENT: &str =
    "DELETE FROM inflight WHERE client_id NOT IN (SELECT client_id FROM sessions)";
pub(super) const DELETE_ORPHAN_INBOUND: &str =
    "DELETE FROM inbound_qos2 WHERE client_id NOT IN (SELECT client_id FROM sessions)";
/// At start: every run, every sent state, every inbound id (no payloads).
pub(super) const LOAD_RUNS: &str =
    "SELECT client_id, first_id, last_id, qos, retain, bytes FROM queue_runs";
pub(super) const LOAD_SENT: &str = "SELECT client_id, message_id, packet_id, state FROM inflight";
pub(super) const LOAD_INBOUND: &str = "SELECT client_id, packet_id FROM inbound_qos2";

/// Writes `w`'s rows inside the caller's transaction, the log's inserts
/// first and its deletes last.
pub(super) fn write(db: &rusqlite::Connection, w: &QueueWrites) -> rusqlite::Result<()> {
    message_log::insert(db, &w.log_inserts)?;
    if !w.run_deletes.is_empty() {
        let mut delete = db.prepare_cached(RUN_DELETE)?;
        for (client_id, first) in &w.run_deletes {
            delete.execute((&**client_id, *first as i64))?;
        }
    }
    if !w.runs.is_empty() {
        let mut upsert = db.prepare_cached(RUN_UPSERT)?;
        for (client_id, run) in &w.runs {
            upsert.execute((
                &**client_id,
                run.first as i64,
                run.last as i64,
                run.qos as i64,
                run.retain,
                run.bytes as i64,
            ))?;
        }
    }
    if !w.sent.is_empty() {
        let (mut upsert, mut delete) = (
            db.prepare_cached(SENT_UPSERT)?,
            db.prepare_cached(SENT_DELETE)?,
        );
        for (client_id, id, sent) in &w.sent {
            match sent {
                Some((packet_id, state)) => upsert.execute((
                    &**client_id,
                    *id as i64,
                    i64::from(packet_id.get()),
                    state_name(*state),
                ))?,
                None => delete.execute((&**client_id, *id as i64))?,
            };
        }
    }
    if !w.inbound.is_empty() {
        let (mut insert, mut delete) = (
            db.prepare_cached(INBOUND_INSERT)?,
            db.prepare_cached(INBOUND_DELETE)?,
        );
        for (client_id, packet_id, awaiting) in &w.inbound {
            let statement = if *awaiting { &mut insert } else { &mut delete };
            statement.execute((&**client_id, i64::from(packet_id.get())))?;
        }
    }
    message_log::delete_ranges(db, &w.log_deletes)
}

/// Deletes a persistent session's queue rows.
pub(super) fn delete_client(db: &rusqlite::Connection, client_id: &str) -> rusqlite::Result<()> {
    for sql in [
        DELETE_CLIENT_RUNS,
        DELETE_CLIENT_SENT,
        DELETE_CLIENT_INBOUND,
    ] {
        db.execute(sql, [client_id])?;
    }
    Ok(())
}

/// At start: drops the rows of sessions that no longer exist.
pub(super) fn delete_orphans(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    for sql in [
        DELETE_ORPHAN_RUNS,
        DELETE_ORPHAN_SENT,
        DELETE_ORPHAN_INBOUND,
    ] {
        db.execute(sql, [])?;
    }
    Ok(())
}

/// Every queue as stored, without a message's content.
#[derive(Default)]
pub(super) struct Loaded {
    pub runs: Vec<(ByteString, Run)>,
    pub sent: Vec<(ByteString, MessageId, PacketId, OutboundState)>,
    pub inbound: Vec<(ByteString, PacketId)>,
}

/// At start: every queue as stored, without a message's content.
pub(super) fn load(db: &rusqlite::Connection) -> rusqlite::Result<Loaded> {
    let mut loaded = Loaded::default();
    let mut runs = db.prepare(LOAD_RUNS)?;
    let mut rows = runs.query([])?;
    while let Some(r) = rows.next()? {
        let client_id: String = r.get(0)?;
        let (first, last): (i64, i64) = (r.get(1)?, r.get(2)?);
        let qos = super::qos_from(r.get(3)?);
        match qos.filter(|_| first > 0 && last >= first) {
            Some(qos) => loaded.runs.push((
                client_id.into(),
                Run {
                    first: first as MessageId,
                    last: last as MessageId,
                    qos,
                    retain: r.get(4)?,
                    bytes: r.get::<_, i64>(5)?.max(0) as u64,
                },
            )),
            None => log::warn!(
                "database: skipping the invalid queue run {first}..{last} of client {client_id:?}"
            ),
        }
    }
    let mut sent = db.prepare(LOAD_SENT)?;
    let mut rows = sent.query([])?;
    while let Some(r) = rows.next()? {
        let client_id: String = r.get(0)?;
        let id: i64 = r.get(1)?;
        let packet_id = u16::try_from(r.get::<_, i64>(2)?)
            .ok()
            .and_then(PacketId::new);
        let state: String = r.get(3)?;
        match (packet_id, state_from_name(&state)) {
            (Some(p), Some(state)) => {
                loaded
                    .sent
                    .push((client_id.into(), id as MessageId, p, state))
            }
            _ => log::warn!(
                "database: skipping the invalid in-flight row {id} of client {client_id:?}"
            ),
        }
    }
    let mut inbound = db.prepare(LOAD_INBOUND)?;
    let mut rows = inbound.query([])?;
    while let Some(r) = rows.next()? {
        let client_id: String = r.get(0)?;
        match u16::try_from(r.get::<_, i64>(1)?)
            .ok()
            .and_then(PacketId::new)
        {
            Some(p) => loaded.inbound.push((client_id.into(), p)),
            None => {
                log::warn!("database: skipping an invalid QoS 2 packet id of client {client_id:?}")
            }
        }
    }
    Ok(loaded)
}
