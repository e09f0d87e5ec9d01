//! Limits of `[limits]`: each enforced the way the spec allows (a CONNACK
//! code, SUBACK 0x80, or a close), counted, and without affecting others.

use crate::common::raw::{self, ConnectOptions, RawClient, CONNACK_OK};
use crate::common::TestBroker;
use roost::broker::ops::metrics::Metrics;

#[tokio::test]
async fn keep_alive_above_max_keepalive_is_refused_with_0x02() {
    let broker = TestBroker::start_with(|c| c.limits.max_keepalive = 60);
    let options = ConnectOptions {
        keep_alive: 61,
        ..ConnectOptions::new("sleepy")
    };
    let (mut c, ack) = RawClient::connect_with(broker.addr(), &options).await;
    assert_eq!(ack.bytes(), raw::connack_refused(2));
    c.expect_closed().await;
    let ok = ConnectOptions {
        keep_alive: 60,
        ..ConnectOptions::new("awake")
    };
    RawClient::connected_expecting(broker.addr(), &ok, &CONNACK_OK).await;
    assert_eq!(Metrics::get(&broker.handle.metrics().limits_refused), 1);
}

#[tokio::test]
async fn client_id_longer_than_max_is_refused_with_0x02() {
    let broker = TestBroker::start_with(|c| c.limits.max_client_id_length = 8);
    let (mut c, ack) =
        RawClient::connect_with(broker.addr(), &ConnectOptions::new("nine-char")).await;
    assert_eq!(ack.bytes(), raw::connack_refused(2));
    c.expect_closed().await;
    RawClient::connected_expecting(broker.addr(), &ConnectOptions::new("eight-ch"), &CONNACK_OK)
        .await;
}

#[tokio::test]
async fn publish_topic_beyond_max_levels_closes_only_that_client() {
    let broker = TestBroker::start_with(|c| c.limits.max_topic_levels = 4);
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("a/#", 0)]).await;
    let mut deep = RawClient::connected(broker.addr(), "deep", true).await;
    deep.send(&raw::publish("a/b/c/d/e", b"too deep", 0, 0, false, false))
        .await;
    deep.expect_closed().await;
    let mut ok = RawClient::connected(broker.addr(), "ok", true).await;
    ok.publish_ok("a/b/c/d", b"four levels", 1, 1, false).await;
    sub.expect_publish("a/b/c/d", b"four levels").await;
}

/// Publishes read together are handled together (a run), but one that
/// closes the connection still ends it there: the one before it is
/// routed, the one after it never is, as if each had been read alone.
#[tokio::test]
async fn a_publish_that_closes_the_connection_ends_its_run_there() {
    let broker = TestBroker::start_with(|c| c.limits.max_topic_levels = 4);
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("a/#", 0)]).await;
    let mut deep = RawClient::connected(broker.addr(), "deep", true).await;
    let one_write = [
        raw::publish("a/before", b"before", 0, 0, false, false),
        raw::publish("a/b/c/d/e", b"too deep", 0, 0, false, false),
        raw::publish("a/after", b"after", 0, 0, false, false),
    ]
    .concat();
    deep.send(&one_write).await;
    deep.expect_closed().await;
    sub.expect_publish("a/before", b"before").await;
    // "a/after" would have been routed before the close; the next message
    // the subscriber gets is one published after it.
    let mut ok = RawClient::connected(broker.addr(), "ok", true).await;
    ok.publish_ok("a/later", b"later", 1, 1, false).await;
    sub.expect_publish("a/later", b"later").await;
}

#[tokio::test]
async fn filter_beyond_max_length_gets_suback_0x80_and_others_are_granted() {
    let broker = TestBroker::start_with(|c| c.limits.max_topic_length = 10);
    let mut c = RawClient::connected(broker.addr(), "c", true).await;
    c.send(&raw::subscribe(
        1,
        &[("short/#", 1), ("much/too/long/#", 1)],
    ))
    .await;
    assert_eq!(c.recv().await.bytes(), raw::suback(1, &[1, 0x80]));
    c.ping().await;
}

#[tokio::test]
async fn subscriptions_beyond_max_per_client_get_suback_0x80() {
    let broker = TestBroker::start_with(|c| c.limits.max_subscriptions_per_client = 2);
    let mut c = RawClient::connected(broker.addr(), "c", true).await;
    c.send(&raw::subscribe(1, &[("a", 0), ("b", 0), ("c", 0)]))
        .await;
    assert_eq!(c.recv().await.bytes(), raw::suback(1, &[0, 0, 0x80]));
    // Re-subscribing to a filter it holds replaces it and is not refused.
    c.send(&raw::subscribe(2, &[("a", 1)])).await;
    assert_eq!(c.recv().await.bytes(), raw::suback(2, &[1]));
    // After an unsubscribe there is room again.
    c.unsubscribe_ok(3, &["b"]).await;
    c.send(&raw::subscribe(4, &[("c", 0)])).await;
    assert_eq!(c.recv().await.bytes(), raw::suback(4, &[0]));
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_at_once() {
    let broker = TestBroker::start_with(|c| c.limits.max_connections = 2);
    let mut a = RawClient::connected(broker.addr(), "a", true).await;
    let _b = RawClient::connected(broker.addr(), "b", true).await;
    let mut third = RawClient::connect(broker.addr()).await;
    third.send_lossy(&raw::connect("c", true)).await;
    third.expect_closed_silently().await;
    assert_eq!(
        Metrics::get(&broker.handle.metrics().connections_refused),
        1
    );
    // Once one leaves (its count is released before its socket closes), a
    // new one is accepted.
    a.disconnect().await;
    RawClient::connected(broker.addr(), "d", true).await;
}

/// `limits.max_will_bytes`: a CONNECT whose will (topic and payload) is
/// larger is refused with 0x02, as the other CONNECT limits are.
#[tokio::test]
async fn a_will_larger_than_max_will_bytes_is_refused_with_0x02() {
    let broker = TestBroker::start_with(|c| c.limits.max_will_bytes = 16);
    let payload = [b'w'; 12];
    let with_will = |topic: &'static str| ConnectOptions {
        will: Some(raw::Will {
            topic,
            payload: &payload,
            qos: 0,
            retain: false,
        }),
        ..ConnectOptions::new("willing")
    };
    let (c, ack) = RawClient::connect_with(broker.addr(), &with_will("w/ab")).await;
    assert_eq!(ack.bytes(), CONNACK_OK, "4 + 12 bytes fit");
    drop(c);
    let (mut c, ack) = RawClient::connect_with(broker.addr(), &with_will("w/abc")).await;
    assert_eq!(ack.bytes(), raw::connack_refused(2));
    c.expect_closed().await;
    assert!(Metrics::get(&broker.handle.metrics().limits_refused) >= 1);
}

/// `limits.max_persistent_sessions`: a CONNECT that would start one more
/// persistent session is refused with 0x03 (server unavailable); resuming
/// one that exists, and clean sessions, go on.
#[tokio::test]
async fn persistent_sessions_beyond_the_limit_are_refused_with_0x03() {
    use crate::common::persistent;
    let broker = TestBroker::start_with(|c| c.limits.max_persistent_sessions = 2);
    persistent(&broker, "p1", &CONNACK_OK)
        .await
        .disconnect()
        .await;
    persistent(&broker, "p2", &CONNACK_OK).await;
    persistent(&broker, "p3", &raw::connack_refused(3)).await;
    persistent(&broker, "p1", &raw::CONNACK_PRESENT)
        .await
        .ping()
        .await;
    RawClient::connected(broker.addr(), "clean", true)
        .await
        .ping()
        .await;
    assert_eq!(
        Metrics::get(&broker.handle.metrics().unavailable_refused),
        1
    );
}

/// `limits.max_retained_messages`: a retained PUBLISH on a new topic beyond
/// the limit is delivered but not retained; replacing a retained message,
/// and clearing one (which makes room), work as ever.
#[tokio::test]
async fn retained_messages_beyond_the_limit_are_delivered_but_not_kept() {
    let broker = TestBroker::start_with(|c| c.limits.max_retained_messages = 2);
    let mut live = RawClient::connected(broker.addr(), "live", true).await;
    live.subscribe_ok(1, &[("r/+", 0)]).await;
    let mut p = RawClient::connected(broker.addr(), "pub", true).await;
    p.publish_ok("r/a", b"a", 1, 1, true).await;
    p.publish_ok("r/b", b"b", 1, 2, true).await;
    p.publish_ok("r/c", b"c", 1, 3, true).await;
    for topic in ["r/a", "r/b", "r/c"] {
        live.expect_publish(topic, &topic.as_bytes()[2..]).await;
    }
    p.publish_ok("r/a", b"a2", 1, 4, true).await;
    let addr = broker.addr();
    let retained = |n: usize| async move {
        let mut c = RawClient::connected(addr, "late", true).await;
        c.subscribe_ok(1, &[("r/+", 0)]).await;
        let mut got: Vec<(String, Vec<u8>)> = c
            .recv_publishes(n)
            .await
            .into_iter()
            .map(|p| (p.topic, p.payload))
            .collect();
        got.sort();
        c.ping().await;
        got
    };
    assert_eq!(
        retained(2).await,
        [
            ("r/a".into(), b"a2".to_vec()),
            ("r/b".into(), b"b".to_vec())
        ]
    );
    assert_eq!(Metrics::get(&broker.handle.metrics().retained_refused), 1);
    p.publish_ok("r/b", b"", 1, 5, true).await;
    p.publish_ok("r/c", b"c", 1, 6, true).await;
    assert_eq!(
        retained(2).await,
        [
            ("r/a".into(), b"a2".to_vec()),
            ("r/c".into(), b"c".to_vec())
        ]
    );
}

/// The defaults bound what one client may hold: a filter deeper than 32
/// levels gets 0x80, and so does a subscription beyond 10,000.
#[tokio::test]
async fn default_limits_bound_topic_depth_and_subscriptions() {
    let broker = TestBroker::start();
    let mut c = RawClient::connected(broker.addr(), "deep", true).await;
    let deep = vec!["l"; 33].join("/");
    c.send(&raw::subscribe(1, &[(deep.as_str(), 0), ("ok", 0)]))
        .await;
    assert_eq!(c.recv().await.bytes(), raw::suback(1, &[0x80, 0x00]));
    for batch in 0..10u16 {
        let filters: Vec<String> = (0..1000).map(|i| format!("many/{batch}/{i}")).collect();
        let refs: Vec<(&str, u8)> = filters.iter().map(|f| (f.as_str(), 0)).collect();
        c.send(&raw::subscribe(batch + 2, &refs)).await;
        let suback = c.recv().await;
        let codes = &suback.body[2..];
        let granted = codes.iter().filter(|b| **b == 0).count();
        // "ok" is one of the 10,000: the last batch has room for 999.
        assert_eq!(granted, if batch < 9 { 1000 } else { 999 }, "batch {batch}");
    }
}
