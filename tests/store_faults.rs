//! Failed commits (`cargo test --features fault-injection`): a commit that
//! fails (a full disk, an I/O error, a lock held too long) is kept and
//! committed again until it succeeds. Nothing that waits for it is sent
//! before; nothing in memory runs ahead of what is stored; the clients
//! that wait get their acknowledgements late, on the same connection.
//! Meanwhile new persistent sessions are refused (CONNACK 0x03). A store
//! that cannot even reopen its database stops roost (exit code 70).

use crate::common::raw::{self, ConnectOptions, CONNACK_OK, CONNACK_PRESENT};
use crate::common::{persistent, RawClient, TestBroker, TIMEOUT};
use roost::broker::ops::metrics::Metrics;
use roost::broker::ops::restart::{fault, ActorKind};
use sqlx::Connection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Waits until `counter` reaches `at_least`: the broker's own count of an
/// event (polled; the event has no other outlet a test can wait on).
async fn counted(counter: &AtomicU64, at_least: u64) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while counter.load(Ordering::Relaxed) < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {} after {TIMEOUT:?}, waited for {at_least}",
            counter.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Issue (a): the row of a new persistent session is written when its
/// client connects. If that commit fails, CONNACK waits for the retry, and
/// the session, its subscription and what is queued for it are all there
/// after a restart [MQTT-3.1.2-4]. (Before, CONNACK went out at once, the
/// failed row was dropped, and the next start deleted the session's later
/// rows as orphans.)
#[tokio::test]
async fn fault_in_store_a_new_persistent_session_is_stored_before_connack_mqtt_3_1_2_4() {
    let broker = TestBroker::start();
    fault::fail_next_commit(broker.handle.id());
    let mut c = persistent(&broker, "fresh", &CONNACK_OK).await;
    assert_eq!(
        Metrics::get(&broker.handle.metrics().store_commit_failures),
        1,
        "the injected failure did not happen"
    );
    c.subscribe_ok(1, &[("fresh/#", 1)]).await;
    c.disconnect().await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher
        .publish_ok("fresh/t", b"queued", 1, 1, false)
        .await;
    drop(publisher);
    let broker = broker.restart();
    let mut c = persistent(&broker, "fresh", &CONNACK_PRESENT).await;
    c.expect_publish("fresh/t", b"queued").await;
}

/// Issue (b): PUBREL releases an inbound QoS 2 id. If the commit of that
/// release fails, PUBCOMP waits for the retry, and after a restart the id
/// is free: the client's next QoS 2 PUBLISH with it is a new message,
/// routed, not a duplicate [MQTT-4.3.3-2] [MQTT-4.3.3-3]. (Before, the id
/// was forgotten in memory only, came back at the next start, and the new
/// message was swallowed as a duplicate.)
#[tokio::test]
async fn fault_in_store_a_released_qos2_id_is_free_after_restart_mqtt_4_3_3_2() {
    let broker = TestBroker::start();
    let mut sub = persistent(&broker, "rel-sub", &CONNACK_OK).await;
    sub.subscribe_ok(1, &[("rel/#", 1)]).await;
    let mut p = persistent(&broker, "rel-pub", &CONNACK_OK).await;
    p.send(&raw::publish("rel/t", b"first", 2, 7, false, false))
        .await;
    assert_eq!(p.recv().await.bytes(), raw::pubrec(7));
    sub.expect_publish("rel/t", b"first").await;
    fault::fail_next_commit(broker.handle.id());
    p.send(&raw::pubrel(7)).await;
    assert_eq!(p.recv().await.bytes(), raw::pubcomp(7));
    assert_eq!(
        Metrics::get(&broker.handle.metrics().store_commit_failures),
        1
    );
    let broker = broker.restart();
    drop((sub, p));
    let mut sub = persistent(&broker, "rel-sub", &CONNACK_PRESENT).await;
    let mut p = persistent(&broker, "rel-pub", &CONNACK_PRESENT).await;
    p.send(&raw::publish("rel/t", b"second", 2, 7, false, false))
        .await;
    assert_eq!(p.recv().await.bytes(), raw::pubrec(7));
    p.send(&raw::pubrel(7)).await;
    assert_eq!(p.recv().await.bytes(), raw::pubcomp(7));
    sub.expect_publish("rel/t", b"second").await;
}

/// A QoS 2 PUBLISH whose commit (the id and the offline subscriber's
/// copy, one transaction) fails gets its PUBREC once the retry commits, on
/// the same connection, and the copy is there after a restart.
#[tokio::test]
async fn fault_in_store_a_qos2_publish_is_acknowledged_once_the_retry_commits() {
    let broker = TestBroker::start();
    let mut subscriber = persistent(&broker, "offline-sub2", &CONNACK_OK).await;
    subscriber.subscribe_ok(1, &[("q2/#", 2)]).await;
    subscriber.disconnect().await;
    let mut publisher = persistent(&broker, "publisher2", &CONNACK_OK).await;
    // Acknowledged after a commit: the store has taken every write before.
    publisher.publish_ok("q2/warm", b"up", 1, 1, false).await;
    fault::fail_next_commit(broker.handle.id());
    publisher
        .send(&raw::publish("q2/a", b"once", 2, 7, false, false))
        .await;
    assert_eq!(publisher.recv().await.bytes(), raw::pubrec(7));
    publisher.send(&raw::pubrel(7)).await;
    assert_eq!(publisher.recv().await.bytes(), raw::pubcomp(7));
    assert_eq!(
        Metrics::get(&broker.handle.metrics().store_commit_failures),
        1,
        "the injected failure did not happen"
    );
    drop(publisher);
    let broker = broker.restart();
    let mut subscriber = persistent(&broker, "offline-sub2", &CONNACK_PRESENT).await;
    let got = subscriber.recv_publishes(2).await;
    assert_eq!(
        (got[1].topic.as_str(), got[1].payload.as_slice()),
        ("q2/a", &b"once"[..])
    );
}

/// A QoS 2 PUBLISH held back from a persistent subscriber until its row is
/// committed goes out once the retry commits: the subscriber's connection
/// stays open and it arrives once, not as a resend.
#[tokio::test]
async fn fault_in_store_a_held_back_publish_goes_out_once_the_retry_commits() {
    let broker = TestBroker::start();
    let mut subscriber = persistent(&broker, "held-sub", &CONNACK_OK).await;
    subscriber.subscribe_ok(1, &[("held/#", 2)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "held-pub", true).await;
    // The subscriber does not acknowledge it, which would be another write.
    publisher.publish_ok("held/warm", b"up", 1, 1, false).await;
    assert_eq!(subscriber.recv().await.publish().payload, b"up");
    fault::fail_next_commit(broker.handle.id());
    publisher
        .send(&raw::publish("held/a", b"once", 2, 2, false, false))
        .await;
    let p = subscriber.recv().await.publish();
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice(), p.dup),
        ("held/a", &b"once"[..], false)
    );
    assert_eq!(
        Metrics::get(&broker.handle.metrics().store_commit_failures),
        1
    );
}

/// The client that waits for a failed commit keeps its connection: its
/// PUBACK comes once the retry commits, and no will is published.
#[tokio::test]
async fn fault_in_store_a_failed_commit_keeps_the_connection_and_publishes_no_will() {
    let broker = TestBroker::start();
    let mut durable = persistent(&broker, "will-sub", &CONNACK_OK).await;
    durable.subscribe_ok(1, &[("w/data", 1)]).await;
    let mut watcher = RawClient::connected(broker.addr(), "will-watcher", true).await;
    watcher.subscribe_ok(1, &[("w/will", 0)]).await;
    let options = ConnectOptions {
        will: Some(raw::Will {
            topic: "w/will",
            payload: b"gone",
            qos: 0,
            retain: false,
        }),
        ..ConnectOptions::new("will-pub")
    };
    let mut publisher = RawClient::connected_expecting(broker.addr(), &options, &CONNACK_OK).await;
    publisher.publish_ok("w/data", b"warm", 1, 1, false).await;
    assert_eq!(durable.recv().await.publish().payload, b"warm");
    fault::fail_next_commit(broker.handle.id());
    publisher.publish_ok("w/data", b"x", 1, 2, false).await;
    assert_eq!(
        Metrics::get(&broker.handle.metrics().store_commit_failures),
        1
    );
    // The first thing the watcher sees is this marker, not the will.
    let mut other = RawClient::connected(broker.addr(), "other", true).await;
    other.publish_ok("w/will", b"marker", 1, 1, false).await;
    watcher.expect_publish("w/will", b"marker").await;
    publisher.ping().await;
}

/// While commits keep failing, a persistent session is refused with 0x03
/// (server unavailable, section 3.2.2.3) and a clean one is accepted; once
/// a retry commits, persistent sessions are accepted again.
#[tokio::test]
async fn fault_in_store_persistent_sessions_are_refused_while_commits_fail() {
    let broker = TestBroker::start();
    let metrics = broker.handle.metrics().clone();
    for _ in 0..4 {
        fault::fail_next_commit(broker.handle.id());
    }
    // A write to fail: a persistent client's row (its CONNACK waits).
    let waiting = tokio::spawn({
        let addr = broker.addr();
        async move {
            let options = ConnectOptions {
                clean: false,
                ..ConnectOptions::new("first")
            };
            RawClient::connected_expecting(addr, &options, &CONNACK_OK).await
        }
    });
    counted(&metrics.store_commit_failures, 1).await;
    let options = ConnectOptions {
        clean: false,
        ..ConnectOptions::new("refused")
    };
    RawClient::connected_expecting(broker.addr(), &options, &raw::connack_refused(3)).await;
    RawClient::connected(broker.addr(), "clean", true)
        .await
        .ping()
        .await;
    // The fourth failure is the last; the retry after it commits.
    let mut first = waiting.await.unwrap();
    first.ping().await;
    assert_eq!(Metrics::get(&metrics.store_commit_failures), 4);
    persistent(&broker, "accepted", &CONNACK_OK)
        .await
        .ping()
        .await;
    assert_eq!(Metrics::get(&metrics.unavailable_refused), 1);
}

/// A store that restarts in the middle of a commit reopens its database;
/// if that keeps failing, the restarts add up to the restart policy's
/// limit and roost stops with exit code 70, rather than running on with a
/// store that acknowledges nothing.
#[tokio::test]
async fn fault_in_store_a_reopen_that_keeps_failing_stops_roost_with_exit_code_70() {
    let mut broker = TestBroker::start_with(|c| c.supervision.max_restarts = 2);
    let db = broker.db_path();
    let mut c = persistent(&broker, "p", &CONNACK_OK).await;
    fault::fail_reopens(broker.handle.id());
    // Another writer holds the lock, so the next commit waits on it (up
    // to SQLite's busy timeout) while the store is made to fail.
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let attempts = Metrics::get(&broker.handle.metrics().store_commit_attempts);
    c.send(&raw::subscribe(1, &[("t", 1)])).await;
    counted(&broker.handle.metrics().store_commit_attempts, attempts + 1).await;
    fault::arm(broker.handle.id(), ActorKind::Store);
    // One more write (a clean client's row): taking it into the batch
    // meets the armed panic, and the restart cuts the waiting commit short.
    RawClient::connected(broker.addr(), "late", true)
        .await
        .ping()
        .await;
    let code = tokio::time::timeout(Duration::from_secs(30), broker.handle.exited())
        .await
        .expect("roost stopped by itself");
    assert_eq!(code, 70);
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
}
