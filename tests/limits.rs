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
