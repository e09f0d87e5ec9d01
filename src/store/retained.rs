//! The `retained` table: the retained message of each topic.

use super::properties::Columns;
use super::qos_from;
use crate::message::{Message, MessageProperties};
use crate::protocol::{QoS, TopicName};
use ahash::AHashMap;
use bytes::Bytes;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use std::sync::Arc;

/// A retained message as it is written: payload, QoS, properties.
pub(super) type Retained = (Bytes, QoS, Option<Arc<MessageProperties>>);

/// Topics cleared, as `CLEAR_PREFIX ?, ?, … )`.
pub(super) const CLEAR_PREFIX: &str = "DELETE FROM retained WHERE topic IN (";
/// Topics set, as `SET_PREFIX VALUES (…), (…)`.
pub(super) const SET_PREFIX: &str =
    "INSERT OR REPLACE INTO retained (topic, payload, qos, updated_at, \
     expires_at, payload_format, content_type, response_topic, correlation_data, user_properties) ";

/// At start, and when the retained store restarts: every retained message.
pub(super) const LOAD: &str =
    "SELECT topic, payload, qos, expires_at, payload_format, content_type, \
     response_topic, correlation_data, user_properties FROM retained";

pub(super) async fn write(
    conn: &mut SqliteConnection,
    changes: &AHashMap<TopicName, Option<Retained>>,
) -> Result<(), sqlx::Error> {
    let cleared: Vec<_> = changes
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(t, _)| t)
        .collect();
    for chunk in cleared.chunks(super::rows_per_statement(1)) {
        let mut qb = QueryBuilder::<Sqlite>::new(CLEAR_PREFIX);
        let mut sep = qb.separated(", ");
        for t in chunk {
            sep.push_bind(t.as_str().to_string());
        }
        qb.push(")");
        qb.build().execute(&mut *conn).await?;
    }
    let set: Vec<_> = changes
        .iter()
        .filter_map(|(t, v)| v.as_ref().map(|v| (t, v)))
        .collect();
    for chunk in set.chunks(super::rows_per_statement(9)) {
        let mut qb = QueryBuilder::<Sqlite>::new(SET_PREFIX);
        qb.push_values(chunk, |mut b, (topic, (payload, qos, properties))| {
            let p = Columns::of(properties.as_deref());
            b.push_bind(topic.as_str().to_string())
                .push_bind(payload.to_vec())
                .push_bind(*qos as i64)
                .push(super::NOW)
                .push_bind(p.expires_at)
                .push_bind(p.payload_format)
                .push_bind(p.content_type)
                .push_bind(p.response_topic)
                .push_bind(p.correlation_data)
                .push_bind(p.user_properties);
        });
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

pub(super) async fn load(conn: &mut SqliteConnection) -> Result<Vec<Message>, sqlx::Error> {
    let rows = sqlx::query(LOAD).fetch_all(conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let topic: String = r.get("topic");
        let payload: Vec<u8> = r.get("payload");
        match (TopicName::new(topic.clone()), qos_from(r.get("qos"))) {
            (Ok(topic), Some(qos)) if !payload.is_empty() => out.push(Message {
                properties: Columns::from_sqlx(&r)
                    .properties(format_args!("the retained message of {topic:?}")),
                topic,
                payload: payload.into(),
                qos,
                retain: true,
            }),
            _ => log::warn!("database: skipping invalid retained message on {topic:?}"),
        }
    }
    Ok(out)
}
