//! Sessions (sections 3.1.2.4, 3.2.2.2, 4.1, 4.4): clean and persistent
//! sessions, session present, subscriptions and queues across reconnects,
//! redelivery of unacknowledged messages, queue bounds.
//!
//! Ordering used instead of sleeps: when a client sees its socket closed,
//! the broker has already told the session (Detach is sent before the
//! socket is shut). Messages for an offline session are seen through a
//! second, online "witness" subscriber of the same topic: once the witness
//! has received the last message, the topic shard has handed every message
//! to the offline session too, ahead of the reconnect.

use crate::common::raw::{self, ConnectOptions, CONNACK_OK, CONNACK_PRESENT};
use crate::common::{persistent, RawClient, TestBroker};
use roost::broker::ops::metrics::Metrics;

async fn clean(broker: &TestBroker, id: &str, expected_connack: &[u8]) -> RawClient {
    RawClient::connected_expecting(broker.addr(), &ConnectOptions::new(id), expected_connack).await
}

/// A clean subscriber of `topic` at QoS 2 that reads everything.
async fn witness(broker: &TestBroker, topic: &str) -> RawClient {
    let mut w = RawClient::connected(broker.addr(), "witness", true).await;
    w.subscribe_ok(1, &[(topic, 2)]).await;
    w
}

/// [MQTT-3.2.2-1] If the Server accepts a connection with CleanSession set to
/// 1, the Server MUST set Session Present to 0; [MQTT-3.2.2-3] with
/// CleanSession 0 and no stored session, Session Present is 0 too.
#[tokio::test]
async fn session_present_0_for_new_and_clean_sessions_mqtt_3_2_2_1() {
    let broker = TestBroker::start();
    let mut a = persistent(&broker, "new-persistent", &CONNACK_OK).await;
    a.disconnect().await;
    let mut b = clean(&broker, "new-clean", &CONNACK_OK).await;
    b.disconnect().await;
    // Clean again after a clean session: still 0.
    let mut b = clean(&broker, "new-clean", &CONNACK_OK).await;
    b.disconnect().await;
    // Clean 1 where a persistent session exists: 0, the session is discarded.
    let mut a = clean(&broker, "new-persistent", &CONNACK_OK).await;
    a.disconnect().await;
}

/// [MQTT-3.2.2-2] If the Server accepts a connection with CleanSession set to
/// 0, the value set in Session Present depends on whether the Server already
/// has stored Session state for the supplied client ID: resuming, it is 1.
#[tokio::test]
async fn session_present_1_when_resuming_mqtt_3_2_2_2() {
    let broker = TestBroker::start();
    let mut c = persistent(&broker, "p", &CONNACK_OK).await;
    c.disconnect().await;
    let c = persistent(&broker, "p", &CONNACK_PRESENT).await;
    drop(c);
    // Also after a close without DISCONNECT.
    let mut c = persistent(&broker, "p", &CONNACK_PRESENT).await;
    c.ping().await;
}

/// [MQTT-3.1.2-4] If CleanSession is set to 0, the Server MUST resume
/// communications with the Client based on state from the current Session:
/// subscriptions survive a reconnect.
#[tokio::test]
async fn persistent_session_keeps_subscriptions_mqtt_3_1_2_4() {
    let broker = TestBroker::start();
    let mut c = persistent(&broker, "p", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("keep/a", 1), ("keep/+/b", 2)]).await;
    c.disconnect().await;
    let mut c = persistent(&broker, "p", &CONNACK_PRESENT).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("keep/a", b"a", 2, 1, false).await;
    let got = c.recv_publishes(1).await;
    assert_eq!((got[0].payload.as_slice(), got[0].qos), (&b"a"[..], 1));
    publisher.publish_ok("keep/x/b", b"b", 2, 2, false).await;
    let got = c.recv_publishes(1).await;
    assert_eq!((got[0].payload.as_slice(), got[0].qos), (&b"b"[..], 2));
}

/// [MQTT-3.1.2-6] If CleanSession is set to 1, the Client and Server MUST
/// discard any previous Session and start a new one: the old subscription is
/// gone. Proof of absence: a message published while only the old
/// subscription could match, then a fresh subscription, then a marker; the
/// marker comes first. Returning with CleanSession 0 later finds no session.
#[tokio::test]
async fn clean_session_discards_previous_session_mqtt_3_1_2_6() {
    let broker = TestBroker::start();
    let mut c = persistent(&broker, "p", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("gone", 1)]).await;
    c.disconnect().await;
    let mut c = clean(&broker, "p", &CONNACK_OK).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher
        .publish_ok("gone", b"old subscription", 1, 1, false)
        .await;
    c.subscribe_ok(2, &[("gone", 1)]).await;
    publisher.publish_ok("gone", b"marker", 1, 2, false).await;
    c.expect_publish("gone", b"marker").await;
    c.disconnect().await;
    // The clean session ended with its connection: nothing to resume.
    let mut c = persistent(&broker, "p", &CONNACK_OK).await;
    c.ping().await;
}

/// [MQTT-3.1.2-5] After the disconnection of a Session with CleanSession 0,
/// the Server MUST store further QoS 1 and QoS 2 messages that match any
/// subscriptions and deliver them when the Client reconnects; in the order
/// they were published [MQTT-4.6.0-5].
#[tokio::test]
async fn offline_qos1_and_qos2_queued_and_delivered_in_order_mqtt_3_1_2_5() {
    let broker = TestBroker::start();
    let mut c = persistent(&broker, "p", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("q", 2)]).await;
    c.disconnect().await;
    let mut w = witness(&broker, "q").await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    for i in 0..10u16 {
        publisher
            .publish_ok("q", &i.to_be_bytes(), 1 + (i % 2) as u8, i + 1, false)
            .await;
    }
    w.recv_publishes(10).await;
    let mut c = persistent(&broker, "p", &CONNACK_PRESENT).await;
    let got = c.recv_publishes(10).await;
    for (i, p) in got.iter().enumerate() {
        assert_eq!(
            p.payload,
            (i as u16).to_be_bytes(),
            "queued message {i} out of order"
        );
        assert_eq!(p.qos, 1 + (i % 2) as u8);
        assert!(!p.dup, "a message never sent before must have DUP=0: {p:?}");
    }
}

/// Section 3.1.2.4 (QoS 0 messages MAY be stored; session.queue_qos0 =
/// false by default): QoS 0 messages are not queued for an offline session.
/// A QoS 1 marker published after them is the first thing delivered.
#[tokio::test]
async fn offline_qos0_not_queued_by_default_mqtt_3_1_2_5() {
    let broker = TestBroker::start();
    let mut c = persistent(&broker, "p", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("q", 1)]).await;
    c.disconnect().await;
    let mut w = witness(&broker, "q").await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    for i in 0..3u8 {
        publisher.publish_ok("q", &[i], 0, 0, false).await;
    }
    publisher.publish_ok("q", b"marker", 1, 1, false).await;
    w.recv_publishes(4).await;
    let mut c = persistent(&broker, "p", &CONNACK_PRESENT).await;
    c.expect_publish("q", b"marker").await;
    assert_eq!(
        Metrics::get(&broker.handle.metrics().dropped_offline_qos0),
        3
    );
}

/// session.queue_qos0 = true: QoS 0 messages are queued offline as well.
#[tokio::test]
async fn offline_qos0_queued_when_configured() {
    let broker = TestBroker::start_with(|c| c.session.queue_qos0 = true);
    let mut c = persistent(&broker, "p", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("q", 1)]).await;
    c.disconnect().await;
    let mut w = witness(&broker, "q").await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("q", b"zero", 0, 0, false).await;
    publisher.publish_ok("q", b"one", 1, 1, false).await;
    w.recv_publishes(2).await;
    let mut c = persistent(&broker, "p", &CONNACK_PRESENT).await;
    let p = c.expect_publish("q", b"zero").await;
    assert_eq!(p.qos, 0);
    c.expect_publish("q", b"one").await;
}

/// session.max_queued_messages: with a bound of 5, the first 5 messages
/// queued for an offline session are kept (in order), the rest dropped and
/// counted in `dropped_queue_full`.
#[tokio::test]
async fn offline_queue_bound_drops_and_counts_the_rest() {
    let broker = TestBroker::start_with(|c| c.session.max_queued_messages = 5);
    let mut c = persistent(&broker, "p", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("q", 1)]).await;
    c.disconnect().await;
    let mut w = witness(&broker, "q").await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    for i in 0..8u8 {
        publisher
            .publish_ok("q", &[i], 1, u16::from(i) + 1, false)
            .await;
    }
    w.recv_publishes(8).await;
    let mut c = persistent(&broker, "p", &CONNACK_PRESENT).await;
    let got = c.recv_publishes(5).await;
    let payloads: Vec<u8> = got.iter().map(|p| p.payload[0]).collect();
    assert_eq!(payloads, [0, 1, 2, 3, 4]);
    // Nothing else was kept: a new message is next.
    publisher.publish_ok("q", b"marker", 1, 100, false).await;
    c.expect_publish("q", b"marker").await;
    assert_eq!(Metrics::get(&broker.handle.metrics().dropped_queue_full), 3);
}

/// [MQTT-3.1.4-2] with [MQTT-3.1.2-4]: a second connection with the same
/// client id and CleanSession 0 takes over the session while the first is
/// still connected: the first is closed, the second gets session present 1,
/// the subscriptions and the unacknowledged message (resent with DUP=1).
#[tokio::test]
async fn takeover_of_persistent_session_keeps_state_mqtt_3_1_4_2() {
    let broker = TestBroker::start();
    let mut first = persistent(&broker, "p", &CONNACK_OK).await;
    first.subscribe_ok(1, &[("t", 1)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("t", b"unacked", 1, 1, false).await;
    let p = first.recv().await.publish();
    let mut second = persistent(&broker, "p", &CONNACK_PRESENT).await;
    first.expect_closed().await;
    let again = second.recv().await.publish();
    assert!(again.dup, "{again:?}");
    assert_eq!((again.packet_id, &again.payload), (p.packet_id, &p.payload));
    second.send(&raw::puback(again.packet_id.unwrap())).await;
    publisher
        .publish_ok("t", b"after takeover", 1, 2, false)
        .await;
    second.expect_publish("t", b"after takeover").await;
}

/// [MQTT-3.1.2-6] A clean connection taking over a connected persistent
/// session closes the old connection and starts with nothing: session
/// present 0 and no subscriptions.
#[tokio::test]
async fn clean_takeover_of_persistent_session_discards_it_mqtt_3_1_2_6() {
    let broker = TestBroker::start();
    let mut first = persistent(&broker, "p", &CONNACK_OK).await;
    first.subscribe_ok(1, &[("t", 1)]).await;
    let mut second = clean(&broker, "p", &CONNACK_OK).await;
    first.expect_closed().await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher
        .publish_ok("t", b"old subscription", 1, 1, false)
        .await;
    second.subscribe_ok(2, &[("t", 1)]).await;
    publisher.publish_ok("t", b"marker", 1, 2, false).await;
    second.expect_publish("t", b"marker").await;
}

/// [MQTT-4.3.3-2] with [MQTT-4.4.0-1]: the inbound QoS 2 ids awaiting PUBREL
/// are session state. A persistent publisher that got PUBREC, lost its
/// connection and resends the PUBLISH (DUP=1, same id) after reconnecting
/// gets PUBREC again, and the message is not delivered a second time.
#[tokio::test]
async fn inbound_qos2_not_redelivered_after_publisher_reconnects_mqtt_4_4_0_1() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("once", 2)]).await;
    let mut publisher = persistent(&broker, "pub", &CONNACK_OK).await;
    publisher
        .send(&raw::publish("once", b"exactly once", 2, 7, false, false))
        .await;
    assert_eq!(publisher.recv().await.bytes(), raw::pubrec(7));
    drop(publisher);
    let mut publisher = persistent(&broker, "pub", &CONNACK_PRESENT).await;
    publisher
        .send(&raw::publish("once", b"exactly once", 2, 7, false, true))
        .await;
    assert_eq!(publisher.recv().await.bytes(), raw::pubrec(7));
    publisher.send(&raw::pubrel(7)).await;
    assert_eq!(publisher.recv().await.bytes(), raw::pubcomp(7));
    publisher.publish_ok("once", b"marker", 0, 0, false).await;
    let got = sub.recv_publishes(2).await;
    let payloads: Vec<&[u8]> = got.iter().map(|p| p.payload.as_slice()).collect();
    assert_eq!(
        payloads,
        [&b"exactly once"[..], b"marker"],
        "delivered twice across the reconnect"
    );
}

/// Persistent session expiry (`session.expiry_secs`, Mosquitto's
/// persistent_client_expiration): a session whose client stays away longer
/// is removed with its subscriptions and queued messages; the client then
/// gets session present 0.
#[tokio::test]
async fn abandoned_persistent_session_expires() {
    let broker = TestBroker::start_with(|c| c.session.expiry_secs = 1);
    let mut c = persistent(&broker, "gone-away", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("expiry/t", 1)]).await;
    c.disconnect().await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher
        .publish_ok("expiry/t", b"queued", 1, 1, false)
        .await;
    // Wait for the expiry to happen (the counter is the event).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while Metrics::get(&broker.handle.metrics().sessions_expired) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "session did not expire"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut c = persistent(&broker, "gone-away", &CONNACK_OK).await;
    // Neither the subscription nor the queued message survived.
    c.subscribe_ok(2, &[("expiry/marker", 1)]).await;
    publisher
        .publish_ok("expiry/t", b"after", 1, 2, false)
        .await;
    publisher
        .publish_ok("expiry/marker", b"marker", 1, 3, false)
        .await;
    c.expect_publish("expiry/marker", b"marker").await;
}

/// A persistent session that is still within its expiry survives a
/// reconnect: the timer does not fire for a client that came back.
#[tokio::test]
async fn returning_client_keeps_its_session_despite_expiry_setting() {
    let broker = TestBroker::start_with(|c| c.session.expiry_secs = 1);
    let mut c = persistent(&broker, "back-again", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("expiry/back", 1)]).await;
    c.disconnect().await;
    let mut c = persistent(&broker, "back-again", &CONNACK_PRESENT).await;
    // Stay connected past the expiry interval, proven by the clock.
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(1500) {
        c.ping().await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher
        .publish_ok("expiry/back", b"still subscribed", 1, 1, false)
        .await;
    c.expect_publish("expiry/back", b"still subscribed").await;
    assert_eq!(Metrics::get(&broker.handle.metrics().sessions_expired), 0);
}

/// Polls the broker's metrics until `check` holds (a gauge has no event to
/// wait for), for at most 5 s.
async fn metrics_until(broker: &TestBroker, what: &str, check: impl Fn(&Metrics) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !check(broker.handle.metrics()) {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// [MQTT-3.1.2-4] A persistent session whose client is away sleeps: no
/// actor, its messages queued in the store. The client's return wakes it
/// with session present 1 [MQTT-3.2.2-2], every message in order, and the
/// subscription still routing.
#[tokio::test]
async fn a_persistent_session_sleeps_while_its_client_is_away_and_wakes_with_its_queue_mqtt_3_1_2_4(
) {
    let broker = TestBroker::start();
    let mut c = persistent(&broker, "sleeper", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("sleep/#", 1)]).await;
    c.disconnect().await;
    metrics_until(&broker, "the session sleeps", |m| {
        Metrics::get(&m.sessions_asleep) == 1
    })
    .await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    for i in 1..=5u16 {
        publisher
            .publish_ok("sleep/t", format!("m{i}").as_bytes(), 1, i, false)
            .await;
    }
    let mut c = persistent(&broker, "sleeper", &CONNACK_PRESENT).await;
    let got: Vec<_> = c
        .recv_publishes(5)
        .await
        .iter()
        .map(|p| String::from_utf8(p.payload.clone()).unwrap())
        .collect();
    assert_eq!(got, ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(Metrics::get(&broker.handle.metrics().sessions_asleep), 0);
    publisher.publish_ok("sleep/t", b"awake", 1, 9, false).await;
    c.expect_publish("sleep/t", b"awake").await;
}

/// [MQTT-3.1.2-6] A clean CONNECT for the client id of a sleeping session
/// removes it, its queue with it: the next persistent CONNECT finds no
/// session (session present 0) and no message.
#[tokio::test]
async fn a_clean_connect_removes_a_sleeping_session_mqtt_3_1_2_6() {
    let broker = TestBroker::start();
    let mut c = persistent(&broker, "napper", &CONNACK_OK).await;
    c.subscribe_ok(1, &[("nap/t", 1)]).await;
    c.disconnect().await;
    metrics_until(&broker, "the session sleeps", |m| {
        Metrics::get(&m.sessions_asleep) == 1
    })
    .await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("nap/t", b"lost", 1, 1, false).await;
    let mut clean = RawClient::connected(broker.addr(), "napper", true).await;
    clean.disconnect().await;
    let mut c = persistent(&broker, "napper", &CONNACK_OK).await;
    c.expect_nothing_within(
        std::time::Duration::from_millis(300),
        "the discarded session's queue went with it",
    )
    .await;
    publisher
        .publish_ok("nap/t", b"unrouted", 1, 2, false)
        .await;
    c.expect_nothing_within(
        std::time::Duration::from_millis(300),
        "its subscription went too",
    )
    .await;
}

/// Persistent sessions restored at start sleep until their clients return.
#[tokio::test]
async fn restored_sessions_sleep_until_their_clients_return() {
    let broker = TestBroker::start();
    for i in 0..3 {
        let mut c = persistent(&broker, &format!("r{i}"), &CONNACK_OK).await;
        c.subscribe_ok(1, &[("restored/t", 1)]).await;
        c.disconnect().await;
    }
    let broker = broker.restart();
    assert_eq!(Metrics::get(&broker.handle.metrics().sessions_asleep), 3);
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("restored/t", b"x", 1, 1, false).await;
    let mut c = persistent(&broker, "r1", &CONNACK_PRESENT).await;
    c.expect_publish("restored/t", b"x").await;
    assert_eq!(Metrics::get(&broker.handle.metrics().sessions_asleep), 2);
}
