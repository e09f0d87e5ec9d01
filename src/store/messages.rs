//! The `messages` table: QoS 1/2 messages of persistent sessions that are
//! not finished, outbound (queued or in flight) and inbound (QoS 2 ids
//! awaiting PUBREL).

use super::batch::{MessageWrite, PendingMessage};
use super::bodies::{self, Bodies, BodyId, Plan};
use super::qos_from;
use super::{InsertSql, Tx};
use crate::protocol::{PacketId, TopicName};
use crate::session::{Message, MessageId, OutboundState, Record};
use ahash::AHashMap;
use bytes::Bytes;
use bytestring::ByteString;
use sqlx::{Row, SqliteConnection};
use std::sync::{Arc, LazyLock};

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

/// Text values bound as shared strings: sqlx copies a bound `&str` into a
/// new allocation, while an `Arc<str>` is only counted.
struct Names {
    outbound: Arc<str>,
    inbound: Arc<str>,
    awaiting_pubrel: Arc<str>,
    states: [Arc<str>; 4],
}

static NAMES: LazyLock<Names> = LazyLock::new(|| Names {
    outbound: "outbound".into(),
    inbound: "inbound".into(),
    awaiting_pubrel: "awaiting_pubrel".into(),
    states: [
        OutboundState::Queued,
        OutboundState::AwaitingPubAck,
        OutboundState::AwaitingPubRec,
        OutboundState::AwaitingPubComp,
    ]
    .map(|s| state_name(s).into()),
});

fn state_arg(state: OutboundState) -> Arc<str> {
    NAMES.states[match state {
        OutboundState::Queued => 0,
        OutboundState::AwaitingPubAck => 1,
        OutboundState::AwaitingPubRec => 2,
        OutboundState::AwaitingPubComp => 3,
    }]
    .clone()
}

/// `client_id` as one shared string per commit, however many rows it has.
fn shared<'a>(ids: &mut AHashMap<&'a str, Arc<str>>, client_id: &'a ByteString) -> Arc<str> {
    ids.entry(&**client_id)
        .or_insert_with(|| Arc::from(&**client_id))
        .clone()
}

/// New rows waiting in a queue: four values each.
const QUEUED: InsertSql = InsertSql {
    exact: (
        "INSERT INTO messages (id, client_id, direction, state, packet_id, body_id, qos, retain) VALUES ",
        "(?, ?, 'outbound', 'queued', NULL, ?, ?, 0)",
        "",
    ),
    padded: (
        "INSERT INTO messages (id, client_id, direction, state, packet_id, body_id, qos, retain) \
         SELECT column1, column2, 'outbound', 'queued', NULL, column3, column4, 0 FROM (VALUES ",
        "(?, ?, ?, ?)",
        ") WHERE column1 IS NOT NULL",
    ),
};

/// A row's state only moves forward (queued → sent → PUBREC seen): a write
/// that arrives late must not move it back.
macro_rules! advance_only {
    () => {
        " ON CONFLICT (id) DO UPDATE SET state = excluded.state, packet_id = excluded.packet_id \
         WHERE (CASE excluded.state WHEN 'queued' THEN 0 WHEN 'awaiting_pubcomp' THEN 2 ELSE 1 END) \
            >= (CASE messages.state WHEN 'queued' THEN 0 WHEN 'awaiting_pubcomp' THEN 2 ELSE 1 END)"
    };
}

/// Any other row write: all eight values, as an upsert.
const UPSERT: InsertSql = InsertSql {
    exact: (
        "INSERT INTO messages (id, client_id, direction, state, packet_id, body_id, qos, retain) VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?)",
        advance_only!(),
    ),
    padded: (
        "INSERT INTO messages (id, client_id, direction, state, packet_id, body_id, qos, retain) \
         SELECT * FROM (VALUES ",
        "(?, ?, ?, ?, ?, ?, ?, ?)",
        concat!(") WHERE column1 IS NOT NULL", advance_only!()),
    ),
};

/// Writes the batch's rows, with the bodies `plan` inserts before them and
/// deletes after them.
pub(super) async fn write(
    tx: &mut Tx<'_>,
    pending: &AHashMap<MessageId, PendingMessage>,
    plan: &Plan,
) -> Result<(), sqlx::Error> {
    bodies::insert(tx, &plan.inserts).await?;
    // Rows in id order: ids grow with time, so inserts append to the
    // table's B-tree and deletes walk it once, instead of seeking at random.
    let mut deletes: Vec<i64> = pending
        .iter()
        .filter(|(_, m)| matches!(m.write, MessageWrite::Delete))
        .map(|(id, _)| *id as i64)
        .collect();
    deletes.sort_unstable();
    tx.delete_ids("DELETE FROM messages WHERE id IN (", &deletes)
        .await?;
    // Most rows are new copies waiting in a queue: they are inserted with
    // four values each. Every other write is a full upsert.
    let mut queued: Vec<(&ByteString, MessageId, &Message)> = Vec::new();
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
    queued.sort_unstable_by_key(|(_, id, _)| *id);
    upserts.sort_unstable_by_key(|(_, r)| r.id());
    // One shared copy of each client id for all of its rows.
    let mut client_ids: AHashMap<&str, Arc<str>> = AHashMap::new();
    for (chunk, shape) in super::statement_chunks(&queued, 4) {
        tx.run(QUEUED.text(chunk.len(), shape), |mut query| {
            for (client_id, id, message) in chunk {
                query = query
                    .bind(*id as i64)
                    .bind(shared(&mut client_ids, client_id))
                    .bind(plan.row_body.get(id).copied())
                    .bind(message.qos as i64);
            }
            query
        })
        .await?;
    }
    for (chunk, shape) in super::statement_chunks(&upserts, 8) {
        tx.run(UPSERT.text(chunk.len(), shape), |mut query| {
            for (client_id, record) in chunk {
                let client_id = shared(&mut client_ids, client_id);
                query = match record {
                    Record::Outbound {
                        id,
                        state,
                        packet_id,
                        message,
                    } => query
                        .bind(*id as i64)
                        .bind(client_id)
                        .bind(NAMES.outbound.clone())
                        .bind(state_arg(*state))
                        .bind(packet_id.map(|p| i64::from(p.get())))
                        .bind(plan.row_body.get(id).copied())
                        .bind(message.qos as i64)
                        .bind(message.retain),
                    Record::InboundAwaitingRel { id, packet_id } => query
                        .bind(*id as i64)
                        .bind(client_id)
                        .bind(NAMES.inbound.clone())
                        .bind(NAMES.awaiting_pubrel.clone())
                        .bind(i64::from(packet_id.get()))
                        .bind(None::<i64>)
                        .bind(2i64)
                        .bind(false),
                };
            }
            query
        })
        .await?;
    }
    bodies::delete(tx, &plan.deletes).await
}

pub(super) async fn delete_orphans(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM messages WHERE client_id NOT IN (SELECT client_id FROM sessions)")
        .execute(conn)
        .await
        .map(|_| ())
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
    let rows = sqlx::query(
        "SELECT m.id, m.client_id, m.direction, m.state, m.packet_id, m.body_id, b.topic, b.payload, m.qos, m.retain \
         FROM messages m LEFT JOIN message_bodies b ON b.id = m.body_id ORDER BY m.id",
    )
    .fetch_all(&mut *conn)
    .await?;
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
