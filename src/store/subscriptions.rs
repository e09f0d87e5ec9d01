//! The `subscriptions` table: subscriptions of persistent sessions.

use super::qos_from;
use crate::protocol::{SubscriptionOptions, TopicFilter};
use crate::routing::Grant;
use crate::session::Subscription;
use ahash::AHashMap;
use bytestring::ByteString;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

/// Subscriptions set, as `UPSERT_PREFIX VALUES (…), (…)`.
pub(super) const UPSERT_PREFIX: &str =
    "INSERT OR REPLACE INTO subscriptions (client_id, topic_filter, qos, no_local, retain_as_published, subscription_identifier) ";
/// An unsubscribe.
pub(super) const DELETE_ONE: &str =
    "DELETE FROM subscriptions WHERE client_id = ?1 AND topic_filter = ?2";

pub(super) async fn write(
    conn: &mut SqliteConnection,
    changes: &AHashMap<(ByteString, TopicFilter), Option<Subscription>>,
) -> Result<(), sqlx::Error> {
    for ((client_id, filter), _) in changes.iter().filter(|(_, q)| q.is_none()) {
        sqlx::query(DELETE_ONE)
            .bind(client_id.to_string())
            .bind(filter.as_str().to_string())
            .execute(&mut *conn)
            .await?;
    }
    let upserts: Vec<_> = changes
        .iter()
        .filter_map(|(k, q)| q.map(|q| (k, q)))
        .collect();
    for chunk in upserts.chunks(super::rows_per_statement(6)) {
        let mut qb = QueryBuilder::<Sqlite>::new(UPSERT_PREFIX);
        qb.push_values(chunk, |mut b, ((client_id, filter), s)| {
            b.push_bind(client_id.to_string())
                .push_bind(filter.as_str().to_string())
                .push_bind(s.grant.qos() as i64)
                .push_bind(s.grant.no_local())
                .push_bind(s.grant.retain_as_published())
                .push_bind(s.id.map(|id| i64::from(id.get())));
        });
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// At start: subscriptions of sessions that no longer exist.
pub(super) const DELETE_ORPHANS: &str =
    "DELETE FROM subscriptions WHERE client_id NOT IN (SELECT client_id FROM sessions)";
/// At start: every subscription.
pub(super) const LOAD: &str =
    "SELECT client_id, topic_filter, qos, no_local, retain_as_published, subscription_identifier \
     FROM subscriptions ORDER BY client_id, topic_filter";

pub(super) async fn delete_orphans(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query(DELETE_ORPHANS).execute(conn).await.map(|_| ())
}

pub(super) async fn load(
    conn: &mut SqliteConnection,
) -> Result<Vec<(ByteString, TopicFilter, Subscription)>, sqlx::Error> {
    let rows = sqlx::query(LOAD).fetch_all(conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let client_id: String = r.get("client_id");
        let filter: String = r.get("topic_filter");
        let options = SubscriptionOptions {
            no_local: r.get("no_local"),
            retain_as_published: r.get("retain_as_published"),
            ..SubscriptionOptions::default()
        };
        match (TopicFilter::new(filter.clone()), qos_from(r.get("qos"))) {
            (Ok(f), Some(q)) => {
                let id = (r.get::<Option<i64>, _>("subscription_identifier"))
                    .and_then(|id| u32::try_from(id).ok())
                    .and_then(std::num::NonZeroU32::new);
                let grant = Grant::new(q, &options);
                out.push((client_id.into(), f, Subscription { grant, id }))
            }
            _ => log::warn!(
                "database: skipping invalid subscription {filter:?} of client {client_id:?}"
            ),
        }
    }
    Ok(out)
}
