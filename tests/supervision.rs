//! Supervision under live traffic (`cargo test --features fault-injection`):
//! a panic injected into each supervised actor kind is caught, the actor
//! restarts and rebuilds its state, and clients see what the protocol
//! allows: every acknowledged QoS 1/2 message arrives, subscribers keep
//! receiving, retained messages are still served, new connections are
//! accepted. A restart storm stops roost with exit code 70.

use crate::common::raw::{self, Next, RawClient};
use crate::common::{TestBroker, TIMEOUT};
use roost::broker::ops::metrics::Metrics;
use roost::broker::ops::restart::{fault, ActorKind};
use std::collections::BTreeSet;
use std::time::Duration;

/// Publishes `count` QoS 1 messages numbered from `first` on `topic`,
/// pipelined, and returns the numbers the broker acknowledged. A message
/// caught in a failure may go unacknowledged. If the broker closed the
/// connection, the publisher is replaced by a new connection with the same
/// client id.
async fn publish_batch(
    broker: &TestBroker,
    publisher: &mut RawClient,
    topic: &str,
    first: u16,
    count: u16,
) -> BTreeSet<u16> {
    let mut bytes = Vec::new();
    for n in first..first + count {
        bytes.extend(raw::publish(topic, &n.to_be_bytes(), 1, n, false, false));
    }
    publisher.send_lossy(&bytes).await;
    let mut acked = BTreeSet::new();
    while acked.len() < count as usize {
        match publisher.next_within(Duration::from_secs(1)).await {
            Next::Packet(p) if p.first == 0x40 => {
                acked.insert(p.packet_id());
            }
            Next::Packet(_) => {}
            Next::Silent => break, // the rest will not be acknowledged
            Next::Closed => {
                *publisher = RawClient::connected(broker.addr(), "publisher", true).await;
                break;
            }
        }
    }
    acked
}

/// Receives until every number in `expected` has arrived (acking each).
async fn receive_all(subscriber: &mut RawClient, expected: &BTreeSet<u16>) {
    let mut missing = expected.clone();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !missing.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "acknowledged but never delivered: {missing:?}"
        );
        let p = subscriber.recv_publish().await;
        missing.remove(&u16::from_be_bytes([p.payload[0], p.payload[1]]));
    }
}

/// The common scenario: live QoS 1 traffic to a persistent and a clean
/// subscriber, a fault in `kind` in the middle, and the checks after it.
async fn survives_fault(kind: ActorKind) {
    let broker = TestBroker::start();
    let mut durable = RawClient::connected(broker.addr(), "durable-sub", false).await;
    durable.subscribe_ok(1, &[("live/#", 1)]).await;
    let mut clean = RawClient::connected(broker.addr(), "clean-sub", true).await;
    clean.subscribe_ok(1, &[("live/#", 1)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "publisher", true).await;
    publisher
        .publish_ok("retained/before", b"kept", 1, 60000, true)
        .await;

    let before = publish_batch(&broker, &mut publisher, "live/a", 1, 50).await;
    assert_eq!(before.len(), 50);
    fault::arm(broker.handle.id(), kind);
    let during = publish_batch(&broker, &mut publisher, "live/a", 51, 50).await;
    let after = publish_batch(&broker, &mut publisher, "live/a", 101, 50).await;
    assert_eq!(
        after.len(),
        50,
        "{kind}: publishing did not go on after the fault"
    );

    let acked: BTreeSet<u16> = before
        .iter()
        .chain(&during)
        .chain(&after)
        .copied()
        .collect();
    receive_all(&mut durable, &acked).await;
    receive_all(&mut clean, &acked).await;

    // New connections are accepted and retained messages are still served.
    let mut late = RawClient::connected(broker.addr(), "late", true).await;
    late.send(&raw::subscribe(1, &[("retained/#", 1)])).await;
    let mut got_retained = false;
    while !got_retained {
        let p = late.recv().await;
        if p.kind() == 3 {
            let p = p.publish();
            assert_eq!(
                (p.topic.as_str(), p.payload.as_slice()),
                ("retained/before", &b"kept"[..])
            );
            got_retained = true;
        }
    }
    assert!(
        Metrics::get(&broker.handle.metrics().restarts) >= 1,
        "{kind}: no restart was recorded"
    );
}

#[tokio::test]
async fn fault_in_topic_shard_restarts_it_and_routing_goes_on() {
    survives_fault(ActorKind::TopicShard).await;
}

#[tokio::test]
async fn fault_in_session_restarts_it_in_place() {
    survives_fault(ActorKind::Session).await;
}

#[tokio::test]
async fn fault_in_store_restarts_it_and_nothing_acknowledged_is_lost() {
    survives_fault(ActorKind::Store).await;
}

/// A delivery whose first attempt fails is tried once more, and when the
/// retry stores the persistent subscriber's copy the publisher is
/// acknowledged: the failed attempt must not take the acknowledgement with
/// it. Later publishes are acknowledged in order after it.
#[tokio::test]
async fn fault_in_a_delivery_retries_it_and_acknowledges_the_publisher() {
    let broker = TestBroker::start();
    let mut durable = RawClient::connected(broker.addr(), "retry-sub", false).await;
    durable.subscribe_ok(1, &[("retry/#", 1)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "retry-pub", true).await;
    fault::arm(broker.handle.id(), ActorKind::Session);
    publisher
        .send(&raw::publish("retry/a", b"first", 1, 1, false, false))
        .await;
    publisher
        .send(&raw::publish("retry/a", b"second", 1, 2, false, false))
        .await;
    for id in [1, 2] {
        let ack = publisher.recv_within(TIMEOUT).await;
        assert_eq!(
            ack.map(|p| p.bytes()),
            Some(raw::puback(id)),
            "PUBACK {id} missing or out of order"
        );
    }
    durable.expect_publish("retry/a", b"first").await;
    durable.expect_publish("retry/a", b"second").await;
    assert!(
        Metrics::get(&broker.handle.metrics().restarts) >= 1,
        "the fault did not fire"
    );
}

/// A failure in the store acknowledges nothing it did not commit: with a
/// fault armed, every QoS 1 message acknowledged for an offline persistent
/// subscriber is in the database when its PUBACK arrives, the writes that
/// waited in the store's inbox when it failed included.
#[tokio::test]
async fn fault_in_store_acknowledges_only_committed_rows() {
    let broker = TestBroker::start();
    let mut subscriber = RawClient::connected(broker.addr(), "offline-sub", false).await;
    subscriber.subscribe_ok(1, &[("q/#", 1)]).await;
    subscriber.disconnect().await;
    let mut publisher = RawClient::connected(broker.addr(), "publisher", true).await;
    fault::arm(broker.handle.id(), ActorKind::Store);
    let acked = publish_batch(&broker, &mut publisher, "q/a", 1, 50).await;
    assert!(!acked.is_empty(), "nothing acknowledged after the fault");
    let rows = crate::persistence::query(
        &broker.db_path(),
        "SELECT count(*) AS n FROM queued_messages WHERE client_id = 'offline-sub'",
    )
    .await;
    let stored: i64 = sqlx::Row::get(&rows[0], "n");
    assert!(
        stored as usize >= acked.len(),
        "{} messages acknowledged but only {stored} rows committed",
        acked.len()
    );
    assert!(
        Metrics::get(&broker.handle.metrics().restarts) >= 1,
        "no restart was recorded"
    );
}

#[tokio::test]
async fn fault_in_retained_store_restart_reloads_retained_from_sqlite() {
    let broker = TestBroker::start();
    let mut publisher = RawClient::connected(broker.addr(), "publisher", true).await;
    publisher.publish_ok("retained/a", b"one", 1, 1, true).await;
    publisher.publish_ok("retained/b", b"two", 1, 2, true).await;
    fault::arm(broker.handle.id(), ActorKind::RetainedStore);
    // This retained publish meets the fault: it is not acknowledged, and
    // the connection stays open (a message that made roost panic is not
    // asked for again).
    publisher
        .send(&raw::publish("retained/c", b"lost", 1, 3, true, false))
        .await;
    // After the restart both earlier retained messages are served again.
    publisher
        .publish_ok("retained/d", b"four", 1, 4, true)
        .await;
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("retained/+", 1)]).await;
    let mut seen = BTreeSet::new();
    while seen.len() < 3 {
        let p = sub.recv_publish().await;
        assert!(p.retain);
        seen.insert((p.topic, p.payload));
    }
    assert!(seen.contains(&("retained/a".to_string(), b"one".to_vec())));
    assert!(seen.contains(&("retained/b".to_string(), b"two".to_vec())));
    assert!(seen.contains(&("retained/d".to_string(), b"four".to_vec())));
    assert_eq!(Metrics::get(&broker.handle.metrics().restarts), 1);
}

#[tokio::test]
async fn fault_in_session_registry_restarts_it_and_connects_go_on() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", false).await;
    sub.subscribe_ok(1, &[("reg/#", 1)]).await;
    fault::arm(broker.handle.id(), ActorKind::SessionRegistry);
    // This connect meets the fault: the connection is closed, not answered.
    let mut unlucky = RawClient::connect(broker.addr()).await;
    unlucky.send(&raw::connect("unlucky", true)).await;
    unlucky.expect_closed().await;
    // The next ones work, and existing sessions are still known (takeover
    // of "sub" resumes its session).
    let mut publisher = RawClient::connected(broker.addr(), "publisher", true).await;
    publisher.publish_ok("reg/x", b"after", 1, 1, false).await;
    sub.expect_publish("reg/x", b"after").await;
    let mut again = RawClient::connect(broker.addr()).await;
    again.send(&raw::connect("sub", false)).await;
    assert_eq!(again.recv().await.bytes(), raw::CONNACK_PRESENT);
    assert_eq!(Metrics::get(&broker.handle.metrics().restarts), 1);
}

#[tokio::test]
async fn fault_in_one_connection_closes_only_it_and_publishes_its_will() {
    let broker = TestBroker::start();
    let mut watcher = RawClient::connected(broker.addr(), "watcher", true).await;
    watcher.subscribe_ok(1, &[("wills/#", 1)]).await;
    let will = raw::Will {
        topic: "wills/victim",
        payload: b"gone",
        qos: 1,
        retain: false,
    };
    let options = raw::ConnectOptions {
        will: Some(will),
        ..raw::ConnectOptions::new("victim")
    };
    let mut victim =
        RawClient::connected_expecting(broker.addr(), &options, &raw::CONNACK_OK).await;
    fault::arm(broker.handle.id(), ActorKind::Connection);
    victim.send(&raw::PINGREQ).await;
    victim.expect_closed().await;
    watcher.expect_publish("wills/victim", b"gone").await;
    // Everyone else is untouched.
    watcher.ping().await;
    let mut other = RawClient::connected(broker.addr(), "other", true).await;
    other.publish_ok("wills/other", b"fine", 1, 1, false).await;
    watcher.expect_publish("wills/other", b"fine").await;
    assert_eq!(Metrics::get(&broker.handle.metrics().connection_panics), 1);
}

/// More than `supervision.max_restarts` restarts within the window is a
/// restart storm: first the whole subtree rebuilds its state and roost
/// goes on; a second storm within the window makes roost commit, log it and
/// stop with exit code 70 instead of restarting forever.
#[tokio::test]
async fn restart_storm_escalates_to_subtree_restart_then_shutdown_with_exit_code_70() {
    let mut broker = TestBroker::start_with(|c| {
        c.supervision.max_restarts = 3;
        c.broker.shards = 1;
    });
    let mut subscriber = RawClient::connected(broker.addr(), "subscriber", true).await;
    subscriber.subscribe_ok(1, &[("storm", 1)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "publisher", true).await;
    // First storm: 4 restarts > 3.
    for _ in 0..4 {
        fault::arm(broker.handle.id(), ActorKind::TopicShard);
    }
    // Each publish is a run of its own (the PINGREQ after it ends the
    // run), so it reaches the shard as a message of its own: four
    // handlers, four panics.
    for n in 0..4u16 {
        publisher
            .send(&raw::publish("storm", &n.to_be_bytes(), 0, 0, false, false))
            .await;
        publisher.ping().await;
    }
    // Roost goes on after the subtree restart: routing works.
    publisher
        .publish_ok("storm", b"after the first storm", 1, 1, false)
        .await;
    subscriber
        .expect_publish("storm", b"after the first storm")
        .await;
    assert_eq!(Metrics::get(&broker.handle.metrics().subtree_restarts), 1);
    // Second storm within the window: shutdown.
    for _ in 0..4 {
        fault::arm(broker.handle.id(), ActorKind::TopicShard);
    }
    for n in 0..4u16 {
        let publish = raw::publish("storm", &n.to_be_bytes(), 0, 0, false, false);
        publisher
            .send_lossy(&[publish, raw::PINGREQ.to_vec()].concat())
            .await;
    }
    let code = tokio::time::timeout(TIMEOUT, broker.handle.exited())
        .await
        .expect("roost stopped by itself");
    assert_eq!(code, 70);
    assert!(Metrics::get(&broker.handle.metrics().restarts) >= 8);
}

/// A shard restart rebuilds a large index (10,000 subscriptions) while
/// traffic goes on, and every filter still matches afterwards. (With
/// `RUST_LOG=warn` the log line gives the rebuild time.)
#[tokio::test]
async fn fault_in_shard_with_10000_subscriptions_rebuilds_every_one() {
    let broker = TestBroker::start_with(|c| c.broker.shards = 1);
    let mut sub = RawClient::connected(broker.addr(), "many", true).await;
    for batch in 0..100u16 {
        let filters: Vec<String> = (0..100u16).map(|i| format!("big/{batch}/{i}")).collect();
        let pairs: Vec<(&str, u8)> = filters.iter().map(|f| (f.as_str(), 1)).collect();
        sub.send(&raw::subscribe(batch + 1, &pairs)).await;
        assert_eq!(sub.recv().await.first, 0x90);
    }
    let mut publisher = RawClient::connected(broker.addr(), "publisher", true).await;
    fault::arm(broker.handle.id(), ActorKind::TopicShard);
    publisher
        .send(&raw::publish(
            "big/0/0",
            b"meets the fault",
            0,
            0,
            false,
            false,
        ))
        .await;
    // Read, and routed alone (the PINGREQ ends its run of publishes):
    // the next publish is not in the message that meets the fault.
    publisher.ping().await;
    for (n, topic) in ["big/0/0", "big/57/13", "big/99/99"].iter().enumerate() {
        publisher
            .publish_ok(topic, topic.as_bytes(), 1, n as u16 + 1, false)
            .await;
        sub.expect_publish(topic, topic.as_bytes()).await;
    }
    assert_eq!(Metrics::get(&broker.handle.metrics().restarts), 1);
}
