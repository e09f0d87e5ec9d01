//! The `messages` table: QoS 1/2 messages of persistent sessions that are
//! not finished, outbound (queued or in flight) and inbound (QoS 2 ids
//! awaiting PUBREL).

use super::batch::{MessageWrite, PendingMessage};
use super::qos_from;
use crate::protocol::{PacketId, TopicName};
use crate::session::{Message, MessageId, OutboundState, Record};
use ahash::AHashMap;
use bytestring::ByteString;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

/// Rows per multi-row statement (10 columns each).
const ROWS_PER_STATEMENT: usize = 1000;

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

pub(super) async fn write(
    conn: &mut SqliteConnection,
    pending: &AHashMap<MessageId, PendingMessage>,
) -> Result<(), sqlx::Error> {
    let deletes: Vec<i64> = pending
        .iter()
        .filter(|(_, m)| matches!(m.write, MessageWrite::Delete))
        .map(|(id, _)| *id as i64)
        .collect();
    for chunk in deletes.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM messages WHERE id IN (");
        let mut sep = qb.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        qb.push(")");
        qb.build().execute(&mut *conn).await?;
    }
    let upserts: Vec<(&ByteString, &Record)> = pending
        .values()
        .filter_map(|m| match &m.write {
            MessageWrite::Upsert { record, .. } => Some((&m.client_id, record)),
            MessageWrite::Delete => None,
        })
        .collect();
    for chunk in upserts.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (id, client_id, direction, state, packet_id, topic, payload, qos, retain, created_at) ",
        );
        qb.push_values(chunk, |mut b, (client_id, record)| match record {
            Record::Outbound {
                id,
                state,
                packet_id,
                message,
            } => {
                b.push_bind(*id as i64)
                    .push_bind(client_id.to_string())
                    .push_bind("outbound")
                    .push_bind(state_name(*state))
                    .push_bind(packet_id.map(|p| i64::from(p.get())))
                    .push_bind(message.topic.as_str().to_string())
                    .push_bind(message.payload.to_vec())
                    .push_bind(message.qos as i64)
                    .push_bind(message.retain)
                    .push(super::NOW);
            }
            Record::InboundAwaitingRel { id, packet_id } => {
                b.push_bind(*id as i64)
                    .push_bind(client_id.to_string())
                    .push_bind("inbound")
                    .push_bind("awaiting_pubrel")
                    .push_bind(i64::from(packet_id.get()))
                    .push_bind(None::<String>)
                    .push_bind(None::<Vec<u8>>)
                    .push_bind(2i64)
                    .push_bind(false)
                    .push(super::NOW);
            }
        });
        // A row's state only moves forward (queued → sent → PUBREC seen). A
        // write that arrives late (the first write of a copy travels in a
        // `WriteGroup`) must not move it back.
        qb.push(
            " ON CONFLICT (id) DO UPDATE SET state = excluded.state, packet_id = excluded.packet_id \
             WHERE (CASE excluded.state WHEN 'queued' THEN 0 WHEN 'awaiting_pubcomp' THEN 2 ELSE 1 END) \
                >= (CASE messages.state WHEN 'queued' THEN 0 WHEN 'awaiting_pubcomp' THEN 2 ELSE 1 END)",
        );
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
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

/// Hands every row to `each` in arrival order; returns the first free id.
pub(super) async fn load(
    conn: &mut SqliteConnection,
    each: &mut dyn FnMut(ByteString, Loaded),
) -> Result<MessageId, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, client_id, direction, state, packet_id, topic, payload, qos, retain FROM messages ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut next = 1u64;
    for r in rows {
        let id: i64 = r.get("id");
        next = next.max(id as u64 + 1);
        let client_id: String = r.get("client_id");
        let direction: String = r.get("direction");
        let state: String = r.get("state");
        let packet_id = r
            .get::<Option<i64>, _>("packet_id")
            .and_then(|p| u16::try_from(p).ok())
            .and_then(PacketId::new);
        let loaded = if direction == "inbound" {
            packet_id.map(|p| Loaded::Inbound(p, id as u64))
        } else {
            let topic = r
                .get::<Option<String>, _>("topic")
                .and_then(|t| TopicName::new(t).ok());
            let payload: Option<Vec<u8>> = r.get("payload");
            match (topic, state_from(&state), qos_from(r.get("qos"))) {
                (Some(topic), Some(state), Some(qos)) => {
                    let message = Message {
                        topic,
                        payload: payload.unwrap_or_default().into(),
                        qos,
                        retain: r.get("retain"),
                    };
                    Some(Loaded::Outbound(id as u64, state, packet_id, message))
                }
                _ => None,
            }
        };
        match loaded {
            Some(row) => each(client_id.into(), row),
            None => {
                log::warn!("database: skipping invalid message row {id} of client {client_id:?}")
            }
        }
    }
    Ok(next)
}
