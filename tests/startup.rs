//! Start-up on stored state: what roost refuses to start on, and that a
//! refusal never renames or changes what is stored; and that restored
//! sessions are complete before the first client is accepted.

use crate::common::raw::{ConnectOptions, CONNACK_PRESENT};
use crate::common::{persistent, RawClient, TestBroker};
use sqlx::{Connection, SqliteConnection};
use std::path::Path;

/// Files beside the database that a reset would have made.
fn moved_aside(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.contains(".damaged-").then_some(name)
        })
        .collect()
}

fn config_on(db: &Path, reset_damaged: bool) -> roost::Config {
    let mut config = roost::Config::defaults();
    config.listener.bind = "127.0.0.1:0".parse().unwrap();
    config.broker.workers = 1;
    config.store.db = db.to_path_buf();
    config.store.reset_damaged = reset_damaged;
    config
}

fn start_error(config: roost::Config) -> String {
    match roost::start(config) {
        Ok(_) => panic!("roost started"),
        Err(e) => e.to_string(),
    }
}

/// Two roost processes on one database would both write rows with the
/// same ids: the second is refused, naming the lock, and the first goes on.
#[tokio::test]
async fn a_second_roost_on_the_same_database_is_refused() {
    let broker = TestBroker::start();
    let mut c = persistent(&broker, "p", &crate::common::raw::CONNACK_OK).await;
    c.subscribe_ok(1, &[("t", 1)]).await;
    let error = start_error(config_on(&broker.db_path(), true));
    assert!(
        error.contains("in use by another roost process") && error.contains("roost.db.lock"),
        "{error}"
    );
    assert!(moved_aside(broker.dir.path()).is_empty());
    c.ping().await;
    // Once the first stops, the database is free again.
    drop(c);
    let broker = broker.restart();
    persistent(&broker, "p", &CONNACK_PRESENT)
        .await
        .ping()
        .await;
}

/// `--db` naming a directory: a clear error, and with `--reset-damaged-db`
/// the directory and what is in it stay as they were.
#[tokio::test]
async fn a_directory_as_the_database_is_refused_and_never_renamed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state");
    std::fs::create_dir(&db).unwrap();
    std::fs::write(db.join("keep.txt"), b"mine").unwrap();
    let error = start_error(config_on(&db, true));
    assert!(error.contains("is a directory"), "{error}");
    assert!(!error.contains("--reset-damaged-db"), "{error}");
    assert_eq!(std::fs::read(db.join("keep.txt")).unwrap(), b"mine");
    assert!(moved_aside(dir.path()).is_empty());
}

/// A database with a migration this roost does not know was written by a
/// newer roost: refused as such, and never reset.
#[tokio::test]
async fn a_database_of_a_newer_roost_is_refused_and_never_reset() {
    let broker = TestBroker::start();
    let db = broker.db_path();
    let dir = broker.dir.clone();
    broker.handle.stop();
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let error = start_error(config_on(&db, true));
    assert!(
        error.contains("written by a newer roost") && error.contains("9999"),
        "{error}"
    );
    assert!(moved_aside(dir.path()).is_empty());
}

/// Another connection holding the write lock (an operator's `sqlite3` in
/// a transaction) is a lock, not damage: refused as such, never reset.
#[tokio::test]
async fn a_database_locked_by_another_writer_is_refused_and_never_reset() {
    let broker = TestBroker::start();
    let db = broker.db_path();
    let dir = broker.dir.clone();
    broker.handle.stop();
    let mut other = SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let config = config_on(&db, true);
    let error = tokio::task::spawn_blocking(move || start_error(config))
        .await
        .unwrap();
    assert!(error.contains("locked by another connection"), "{error}");
    assert!(moved_aside(dir.path()).is_empty());
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    let broker = roost::start(config_on(&db, false)).expect("starts once the lock is gone");
    let options = ConnectOptions::new("after");
    let (mut c, _) = RawClient::connect_with(broker.local_addr(), &options).await;
    c.ping().await;
}

/// Restored sessions' subscriptions are in the shards before the first
/// client is accepted: with 5,000 persistent sessions subscribed to `t/#`
/// (and 4 more filters each), spread over 8 workers, a publisher that
/// connects the moment the broker accepts gets its PUBACK only once a copy
/// is stored for every one of them [MQTT-3.1.2-5].
/// (Before, the listener started while the sessions were still adding
/// their subscriptions, and an early message missed most of them.)
#[tokio::test]
async fn a_publisher_at_start_finds_every_restored_subscription_mqtt_3_1_2_5() {
    const SESSIONS: usize = 5000;
    let broker = TestBroker::start();
    let db = broker.db_path();
    let mut config = broker.config.clone();
    config.broker.workers = 8;
    config.broker.shards = 8;
    // Holds the database directory until the restarted broker is dropped.
    let _dir = broker.dir.clone();
    broker.handle.stop();
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    for i in 0..SESSIONS {
        let id = format!("restored-{i}");
        sqlx::query(
            "INSERT INTO sessions (client_id, persistent, connected, keep_alive) VALUES (?1, 1, 0, 60)",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO subscriptions (client_id, topic_filter, qos) VALUES (?1, 't/#', 1)",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await
        .unwrap();
        for j in 0..4 {
            sqlx::query(
                "INSERT INTO subscriptions (client_id, topic_filter, qos) VALUES (?1, ?2, 1)",
            )
            .bind(&id)
            .bind(format!("x/{i}/{j}/+"))
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
    conn.close().await.unwrap();

    let handle = roost::start(config).expect("restarts");
    let mut publisher = RawClient::connected(handle.local_addr(), "early", true).await;
    publisher.publish_ok("t/a", b"early", 1, 1, false).await;
    let rows = crate::persistence::query(
        &db,
        "SELECT count(*) AS n FROM queued_messages WHERE topic = 't/a'",
    )
    .await;
    let stored: i64 = sqlx::Row::get(&rows[0], "n");
    assert_eq!(stored as usize, SESSIONS, "copies stored before PUBACK");
}
