//! The `messages` table: QoS 1/2 messages of persistent sessions that are
//! not finished, outbound (queued or in flight) and inbound (QoS 2 ids
//! awaiting PUBREL).

use super::batch::{MessageWrite, PendingMessage};
use super::bodies::{self, Bodies, BodyId, Plan};
use super::qos_from;
use crate::message::Message;
use crate::protocol::{PacketId, TopicName};
use crate::session::{MessageId, OutboundState, Record};
use ahash::AHashMap;
use bytes::Bytes;
use bytestring::ByteString;
use sqlx::{Row, SqliteConnection};

fn state_name(state: OutboundState) -> &'static str {
    match state {
        OutboundState::Queued => "queued",
        OutboundState::AwaitingPubAck => "awaiting_puback",
        OutboundState::AwaitingPubRec => "awaiting_pubrec",
        OutboundState::AwaitingPubComp => "awaiting_pubcomp",
    }
}

fn state_from(name: &str) -> Option<OutboundState> {
    Some(match name {
        "queued" => OutboundState::Queued,
        "awaiting_puback" => OutboundState::AwaitingPubAck,
        "awaiting_pubrec" => OutboundState::AwaitingPubRec,
        "awaiting_pubcomp" => OutboundState::AwaitingPubComp,
        _ => return None,
    })
}

/// At start: rows of sessions that no longer exist.
pub(super) const DELETE_ORPHANS: &str =
    "DELETE FROM messages WHERE client_id NOT IN (SELECT client_id FROM sessions)";
/// At start: every row, with its body, in arrival order.
pub(super) const LOAD: &str =
    "SELECT m.id, m.client_id, m.direction, m.state, m.packet_id, m.body_id, b.topic, b.payload, m.qos, m.retain \
     FROM messages m LEFT JOIN message_bodies b ON b.id = m.body_id ORDER BY m.id";

/// A finished row.
pub(super) const DELETE: &str = "DELETE FROM messages WHERE id = ?1";

/// New rows waiting in a queue: four values each.
pub(super) const QUEUED: &str =
    "INSERT INTO messages (id, client_id, direction, state, packet_id, body_id, qos, retain) \
     VALUES (?1, ?2, 'outbound', 'queued', NULL, ?3, ?4, 0)";

/// Any other row write, as an upsert. A row's state only moves forward
/// (queued → sent → PUBREC seen): a write that arrives late must not move
/// it back.
pub(super) const UPSERT: &str =
    "INSERT INTO messages (id, client_id, direction, state, packet_id, body_id, qos, retain) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
     ON CONFLICT (id) DO UPDATE SET state = excluded.state, packet_id = excluded.packet_id \
     WHERE (CASE excluded.state WHEN 'queued' THEN 0 WHEN 'awaiting_pubcomp' THEN 2 ELSE 1 END) \
        >= (CASE messages.state WHEN 'queued' THEN 0 WHEN 'awaiting_pubcomp' THEN 2 ELSE 1 END)";

/// Writes the batch's rows, with the bodies `plan` inserts before them and
/// deletes after them, inside the caller's transaction.
pub(super) fn write<W>(
    db: &rusqlite::Connection,
    pending: &AHashMap<MessageId, PendingMessage<W>>,
    plan: &Plan,
) -> rusqlite::Result<()> {
    bodies::insert(db, &plan.inserts)?;
    // Rows in id order: ids grow with time, so inserts append to the
    // table's B-tree and deletes walk it once, instead of seeking at random.
    let mut deletes: Vec<i64> = pending
        .iter()
        .filter(|(_, m)| matches!(m.write, MessageWrite::Delete))
        .map(|(id, _)| *id as i64)
        .collect();
    deletes.sort_unstable();
    super::delete_ids(db, DELETE, &deletes)?;
    // Most rows are new copies waiting in a queue: they are inserted with
    // four values each. Every other write is a full upsert.
    let mut queued: Vec<(&ByteString, MessageId, &Message)> = Vec::with_capacity(pending.len());
    let mut upserts: Vec<(&ByteString, &Record)> = Vec::new();
    for m in pending.values() {
        match &m.write {
            MessageWrite::Upsert {
                record:
                    Record::Outbound {
                        id,
                        state: OutboundState::Queued,
                        packet_id: None,
                        message,
                    },
                new: true,
            } if !message.retain => queued.push((&m.client_id, *id, message)),
            MessageWrite::Upsert { record, .. } => upserts.push((&m.client_id, record)),
            MessageWrite::Delete => {}
        }
    }
    if !queued.is_empty() {
        queued.sort_unstable_by_key(|(_, id, _)| *id);
        let mut insert = db.prepare(QUEUED)?;
        for (client_id, id, message) in queued {
            insert.execute((
                id as i64,
                &**client_id,
                plan.row_body.get(&id),
                message.qos as i64,
            ))?;
        }
    }
    if !upserts.is_empty() {
        upserts.sort_unstable_by_key(|(_, r)| r.id());
        let mut upsert = db.prepare(UPSERT)?;
        for (client_id, record) in upserts {
            match record {
                Record::Outbound {
                    id,
                    state,
                    packet_id,
                    message,
                } => upsert.execute((
                    *id as i64,
                    &**client_id,
                    "outbound",
                    state_name(*state),
                    packet_id.map(|p| i64::from(p.get())),
                    plan.row_body.get(id),
                    message.qos as i64,
                    message.retain,
                ))?,
                Record::InboundAwaitingRel { id, packet_id } => upsert.execute((
                    *id as i64,
                    &**client_id,
                    "inbound",
                    "awaiting_pubrel",
                    i64::from(packet_id.get()),
                    None::<i64>,
                    2i64,
                    false,
                ))?,
            };
        }
    }
    bodies::delete(db, &plan.deletes)
}

pub(super) async fn delete_orphans(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query(DELETE_ORPHANS).execute(conn).await.map(|_| ())
}

pub(super) enum Loaded {
    Outbound(MessageId, OutboundState, Option<PacketId>, Message),
    Inbound(PacketId, MessageId),
}

/// Hands every row to `each` in arrival order, and counts each body's rows
/// in `bodies`; returns the first free id. Rows of one body share its
/// topic and payload in memory.
pub(super) async fn load(
    conn: &mut SqliteConnection,
    bodies: &mut Bodies,
    each: &mut dyn FnMut(ByteString, Loaded),
) -> Result<MessageId, sqlx::Error> {
    let rows = sqlx::query(LOAD).fetch_all(&mut *conn).await?;
    let mut shared: AHashMap<BodyId, (TopicName, Bytes)> = AHashMap::new();
    let mut next = 1u64;
    for r in rows {
        let id: i64 = r.get("id");
        next = next.max(id as u64 + 1);
        let client_id: ByteString = r.get::<String, _>("client_id").into();
        let direction: String = r.get("direction");
        let state: String = r.get("state");
        let packet_id = r
            .get::<Option<i64>, _>("packet_id")
            .and_then(|p| u16::try_from(p).ok())
            .and_then(PacketId::new);
        let loaded = if direction == "inbound" {
            packet_id.map(|p| Loaded::Inbound(p, id as u64))
        } else {
            let body_id: Option<BodyId> = r.get("body_id");
            let body = match body_id {
                Some(b) => match shared.get(&b) {
                    Some(body) => Some(body.clone()),
                    None => {
                        let topic = r
                            .get::<Option<String>, _>("topic")
                            .and_then(|t| TopicName::new(t).ok());
                        let payload: Option<Vec<u8>> = r.get("payload");
                        match (topic, payload) {
                            (Some(topic), Some(payload)) => {
                                let body = (topic, Bytes::from(payload));
                                shared.insert(b, body.clone());
                                Some(body)
                            }
                            _ => None,
                        }
                    }
                },
                None => None,
            };
            match (body_id, body, state_from(&state), qos_from(r.get("qos"))) {
                (Some(body_id), Some((topic, payload)), Some(state), Some(qos)) => {
                    let message = Message {
                        topic,
                        payload,
                        qos,
                        retain: r.get("retain"),
                    };
                    bodies.loaded(id as u64, body_id, &message);
                    Some(Loaded::Outbound(id as u64, state, packet_id, message))
                }
                _ => None,
            }
        };
        match loaded {
            Some(row) => each(client_id, row),
            None => {
                log::warn!("database: skipping invalid message row {id} of client {client_id:?}")
            }
        }
    }
    Ok(next)
}
