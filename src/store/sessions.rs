//! The `sessions` table: one row per connected client and per persistent session.

use super::batch::SessionOp;
use super::{StoredSession, StoredWill};
use crate::message::Message;
use crate::protocol::TopicName;
use sqlx::{Row, SqliteConnection};

/// A client connected: its row, created or brought up to date.
pub(super) const UPSERT_CONNECTED: &str =
    "INSERT INTO sessions (client_id, persistent, connected, connected_since, last_seen, keep_alive,
                           will_topic, will_payload, will_qos, will_retain, username, protocol,
                           session_expiry)
     VALUES (?1, ?2, 1, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), NULL, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
     ON CONFLICT (client_id) DO UPDATE SET
         persistent = excluded.persistent, connected = 1, connected_since = excluded.connected_since,
         last_seen = NULL, keep_alive = excluded.keep_alive, will_topic = excluded.will_topic,
         will_payload = excluded.will_payload, will_qos = excluded.will_qos,
         will_retain = excluded.will_retain, username = excluded.username,
         protocol = excluded.protocol, session_expiry = excluded.session_expiry";

/// A 5.0 DISCONNECT changed the session's expiry interval.
pub(super) const SET_EXPIRY: &str = "UPDATE sessions SET session_expiry = ?2 WHERE client_id = ?1";

/// A persistent session's client went away.
pub(super) const DISCONNECTED: &str =
    "UPDATE sessions SET connected = 0, last_seen = strftime('%Y-%m-%dT%H:%M:%SZ', 'now'),
         will_topic = NULL, will_payload = NULL, will_qos = NULL, will_retain = NULL
     WHERE client_id = ?1";

/// A session ends: its subscriptions, its row (and its queue, see
/// `queues::delete_client`).
pub(super) const DELETE_SUBSCRIPTIONS: &str = "DELETE FROM subscriptions WHERE client_id = ?1";
pub(super) const DELETE_SESSION: &str = "DELETE FROM sessions WHERE client_id = ?1";

pub(super) async fn write(
    conn: &mut SqliteConnection,
    ops: &[SessionOp],
) -> Result<(), sqlx::Error> {
    for op in ops {
        match op {
            SessionOp::Connected {
                client_id,
                username,
                persistent,
                keep_alive,
                protocol,
                will,
                session_expiry,
            } => {
                sqlx::query(UPSERT_CONNECTED)
                    .bind(client_id.to_string())
                    .bind(*persistent)
                    .bind(i64::from(*keep_alive))
                    .bind(will.as_ref().map(|w| w.topic.as_str().to_string()))
                    .bind(will.as_ref().map(|w| w.payload.to_vec()))
                    .bind(will.as_ref().map(|w| w.qos as i64))
                    .bind(will.as_ref().map(|w| w.retain))
                    .bind(username.as_deref())
                    .bind(protocol.number())
                    .bind(session_expiry.map(i64::from))
                    .execute(&mut *conn)
                    .await?;
            }
            SessionOp::Expiry { client_id, secs } => {
                sqlx::query(SET_EXPIRY)
                    .bind(client_id.to_string())
                    .bind(i64::from(*secs))
                    .execute(&mut *conn)
                    .await?;
            }
            SessionOp::Disconnected { client_id } => {
                sqlx::query(DISCONNECTED)
                    .bind(client_id.to_string())
                    .execute(&mut *conn)
                    .await?;
            }
            SessionOp::Delete {
                client_id,
                persistent,
            } => {
                let id = client_id.to_string();
                if *persistent {
                    sqlx::query(DELETE_SUBSCRIPTIONS)
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?;
                }
                sqlx::query(DELETE_SESSION)
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

/// At start, before `TIDY_*`: the wills of the clients that were connected
/// when roost stopped.
pub(super) const WILLS_OF_CONNECTED: &str =
    "SELECT client_id, username, will_topic, will_payload, will_qos, will_retain
     FROM sessions WHERE connected = 1 AND will_topic IS NOT NULL ORDER BY client_id";

/// At start: clean sessions are gone.
pub(super) const TIDY_CLEAN: &str = "DELETE FROM sessions WHERE persistent = 0";
/// At start: nobody is connected.
pub(super) const TIDY_CONNECTED: &str =
    "UPDATE sessions SET connected = 0, last_seen = COALESCE(last_seen, strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
         will_topic = NULL, will_payload = NULL, will_qos = NULL, will_retain = NULL
     WHERE connected = 1";
/// At start: the persistent sessions.
pub(super) const LOAD: &str = "SELECT client_id, username, session_expiry,
        MAX(0, CAST(strftime('%s', 'now') AS INTEGER) - CAST(strftime('%s', COALESCE(last_seen, 'now')) AS INTEGER)) AS idle
     FROM sessions WHERE persistent = 1 ORDER BY client_id";

/// The wills of the clients that were connected when roost stopped: it
/// ended (a crash, kill -9, a stop) without their connections ending, so
/// their wills were never published.
pub(super) async fn wills_of_connected(
    conn: &mut SqliteConnection,
) -> Result<Vec<StoredWill>, sqlx::Error> {
    let rows = sqlx::query(WILLS_OF_CONNECTED)
        .fetch_all(&mut *conn)
        .await?;
    let mut wills = Vec::with_capacity(rows.len());
    for r in rows {
        let client_id: String = r.get("client_id");
        let topic: String = r.get("will_topic");
        let qos = super::qos_from(r.get::<Option<i64>, _>("will_qos").unwrap_or(0));
        match (TopicName::new(topic.clone()), qos) {
            (Ok(topic), Some(qos)) => wills.push(StoredWill {
                client_id: client_id.into(),
                username: r.get::<Option<String>, _>("username").map(Into::into),
                will: Message {
                    topic,
                    payload: r
                        .get::<Option<Vec<u8>>, _>("will_payload")
                        .unwrap_or_default()
                        .into(),
                    qos,
                    retain: r.get::<Option<bool>, _>("will_retain").unwrap_or(false),
                    // A will's 5.0 properties are not kept in the database yet.
                    properties: None,
                },
            }),
            _ => {
                log::warn!("database: skipping the invalid will {topic:?} of client {client_id:?}")
            }
        }
    }
    Ok(wills)
}

pub(super) async fn tidy(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query(TIDY_CLEAN).execute(&mut *conn).await?;
    sqlx::query(TIDY_CONNECTED).execute(&mut *conn).await?;
    Ok(())
}

pub(super) async fn load_persistent(
    conn: &mut SqliteConnection,
) -> Result<Vec<StoredSession>, sqlx::Error> {
    let rows = sqlx::query(LOAD).fetch_all(&mut *conn).await?;
    Ok(rows
        .into_iter()
        .map(|r| StoredSession {
            client_id: r.get::<String, _>("client_id").into(),
            username: r.get::<Option<String>, _>("username").map(Into::into),
            idle_secs: r.get::<i64, _>("idle").max(0) as u64,
            session_expiry: r
                .get::<Option<i64>, _>("session_expiry")
                .and_then(|s| u32::try_from(s).ok()),
            subscriptions: Vec::new(),
            inbound: Vec::new(),
        })
        .collect())
}
