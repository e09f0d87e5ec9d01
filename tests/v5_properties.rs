//! MQTT 5.0 message properties: forwarded unchanged to 5.0 subscribers,
//! live, queued and retained, across a restart, and stored in columns a
//! person can query; left out for 3.1.1 subscribers; and the Message
//! Expiry Interval, after which a waiting message is not delivered.

use crate::common::raw::{self, RawClient};
use crate::common::raw5::{self, Prop};
use crate::common::TestBroker;
use crate::persistence::query;
use sqlx::Row;
use std::sync::atomic::Ordering;

/// The properties a publisher sets that roost forwards: payload format,
/// content type, response topic, correlation data, and user properties
/// with a repeated name, in an order that is not sorted.
fn forwarded() -> Vec<Prop> {
    vec![
        Prop::Byte(0x01, 1),
        Prop::Str(0x03, "text/plain".into()),
        Prop::Str(0x08, "reply/to/me".into()),
        Prop::Bin(0x09, vec![0xCA, 0xFE]),
        Prop::User("z".into(), "1".into()),
        Prop::User("a".into(), "2".into()),
        Prop::User("z".into(), "3".into()),
    ]
}

/// The properties of a received PUBLISH, without its Message Expiry
/// Interval (which counts down) and Subscription Identifiers.
fn without_expiry(props: &[Prop]) -> Vec<Prop> {
    props
        .iter()
        .filter(|p| !matches!(p, Prop::Four(0x02, _) | Prop::Var(0x0B, _)))
        .cloned()
        .collect()
}

fn expiry_of(props: &[Prop]) -> Option<u32> {
    props.iter().find_map(|p| match p {
        Prop::Four(0x02, v) => Some(*v),
        _ => None,
    })
}

async fn subscribed_v5(
    broker: &TestBroker,
    id: &str,
    filter: &str,
    clean: bool,
    connect: &[Prop],
) -> RawClient {
    let (mut c, _) = RawClient::connected_v5(broker.addr(), id, clean, connect).await;
    c.send(&raw5::subscribe(1, &[(filter, 1)], &[])).await;
    assert_eq!(c.recv().await.kind(), 9, "SUBACK");
    c
}

/// [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17]
/// [MQTT-3.3.2-18] [MQTT-3.3.2-20] A live message reaches a 5.0 subscriber
/// with its properties unchanged, user properties in their order, and
/// [MQTT-3.3.2-6] the Message Expiry Interval less the time it waited; a
/// 3.1.1 subscriber gets the same message without properties.
#[tokio::test]
async fn properties_are_forwarded_unchanged_mqtt_3_3_2_4_to_3_3_2_20() {
    let broker = TestBroker::start();
    let mut five = subscribed_v5(&broker, "five", "p/#", true, &[]).await;
    let mut three = RawClient::connected(broker.addr(), "three", true).await;
    three.subscribe_ok(1, &[("p/#", 1)]).await;
    let (mut publisher, _) = RawClient::connected_v5(broker.addr(), "pub", true, &[]).await;
    let mut props = forwarded();
    props.push(Prop::Four(0x02, 3600));
    publisher
        .send(&raw5::publish("p/1", b"hello", 1, 1, &props))
        .await;
    assert_eq!(publisher.recv().await.bytes(), raw::puback(1));
    let got = raw5::Publish::parse(&five.recv().await);
    assert_eq!(got.payload, b"hello");
    assert_eq!(without_expiry(&got.props), forwarded());
    let left = expiry_of(&got.props).expect("the expiry interval forwarded");
    assert!((3598..=3600).contains(&left), "{left}");
    five.send(&raw::puback(got.packet_id.unwrap())).await;
    let plain = three.recv().await;
    assert_eq!(
        plain.publish().payload,
        b"hello",
        "3.1.1: no property block"
    );
}

/// Properties of a message queued for an offline persistent session, and
/// of a retained message, survive a restart: stored in `message_log` and
/// `retained` in columns a person can read (user properties as JSON), and
/// delivered with the message afterwards.
#[tokio::test]
async fn queued_and_retained_properties_survive_a_restart() {
    let broker = TestBroker::start();
    let expiry = [Prop::Four(raw5::SESSION_EXPIRY, 3600)];
    let mut away = subscribed_v5(&broker, "away", "q/#", true, &expiry).await;
    away.send(&raw5::disconnect(0, &[])).await;
    away.expect_closed_silently().await;
    let (mut publisher, _) = RawClient::connected_v5(broker.addr(), "pub", true, &[]).await;
    publisher
        .send(&raw5::publish("q/1", b"queued", 1, 1, &forwarded()))
        .await;
    assert_eq!(publisher.recv().await.bytes(), raw::puback(1));
    let mut retained = raw5::publish("r/1", b"kept", 1, 2, &forwarded());
    retained[0] |= 1; // RETAIN
    publisher.send(&retained).await;
    assert_eq!(publisher.recv().await.bytes(), raw::puback(2));
    drop(publisher);
    let broker = broker.restart();

    let db = broker.db_path();
    for table in ["message_log", "retained"] {
        let rows = query(
            &db,
            &format!(
                "SELECT payload_format, content_type, response_topic, correlation_data, \
                 user_properties FROM {table}"
            ),
        )
        .await;
        assert_eq!(rows.len(), 1, "{table}");
        let r = &rows[0];
        assert_eq!(r.get::<i64, _>(0), 1, "{table}");
        assert_eq!(r.get::<String, _>(1), "text/plain");
        assert_eq!(r.get::<String, _>(2), "reply/to/me");
        assert_eq!(r.get::<Vec<u8>, _>(3), [0xCA, 0xFE]);
        assert_eq!(
            r.get::<String, _>(4),
            r#"[["z","1"],["a","2"],["z","3"]]"#,
            "{table}"
        );
    }

    let (mut back, ack) = RawClient::connected_v5(broker.addr(), "away", false, &expiry).await;
    assert!(ack.session_present);
    let got = raw5::Publish::parse(&back.recv().await);
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice()),
        ("q/1", &b"queued"[..])
    );
    assert_eq!(without_expiry(&got.props), forwarded());
    back.send(&raw::puback(got.packet_id.unwrap())).await;

    let mut late = subscribed_v5(&broker, "late", "r/#", true, &[]).await;
    let got = raw5::Publish::parse(&late.recv().await);
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice()),
        ("r/1", &b"kept"[..])
    );
    assert_eq!(without_expiry(&got.props), forwarded());
}

/// [MQTT-3.3.2-5] A message whose Message Expiry Interval passes while it
/// waits is not delivered: queued for an offline session, or retained.
/// Each copy not delivered is counted (`messages_expired`). The expiry is an absolute time,
/// so a restart does not restart it.
#[tokio::test]
async fn an_expired_message_is_not_delivered_mqtt_3_3_2_5() {
    let broker = TestBroker::start();
    let expiry = [Prop::Four(raw5::SESSION_EXPIRY, 3600)];
    let mut away = subscribed_v5(&broker, "away", "e/#", true, &expiry).await;
    away.send(&raw5::disconnect(0, &[])).await;
    away.expect_closed_silently().await;
    let (mut publisher, _) = RawClient::connected_v5(broker.addr(), "pub", true, &[]).await;
    let one_second = [Prop::Four(0x02, 1)];
    publisher
        .send(&raw5::publish("e/short", b"gone", 1, 1, &one_second))
        .await;
    assert_eq!(publisher.recv().await.bytes(), raw::puback(1));
    let mut retained = raw5::publish("e/retained", b"gone too", 1, 2, &one_second);
    retained[0] |= 1;
    publisher.send(&retained).await;
    assert_eq!(publisher.recv().await.bytes(), raw::puback(2));
    publisher
        .send(&raw5::publish("e/long", b"still here", 1, 3, &[]))
        .await;
    assert_eq!(publisher.recv().await.bytes(), raw::puback(3));
    drop(publisher);
    let broker = broker.restart();
    // The condition under test is time itself: the interval must pass.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    let (mut back, _) = RawClient::connected_v5(broker.addr(), "away", false, &expiry).await;
    let got = raw5::Publish::parse(&back.recv().await);
    assert_eq!(got.payload, b"still here", "the expired one was skipped");
    back.send(&raw::puback(got.packet_id.unwrap())).await;
    let mut late = RawClient::connected(broker.addr(), "late", true).await;
    late.send(&raw::subscribe(1, &[("e/retained", 0)])).await;
    assert_eq!(late.recv().await.kind(), 9);
    late.expect_nothing_within(
        std::time::Duration::from_millis(300),
        "an expired retained message",
    )
    .await;
    // Both queued for "away" (the retained one was routed to it too), and
    // the retained one once more for "late".
    let expired = broker
        .handle
        .metrics()
        .messages_expired
        .load(Ordering::Relaxed);
    assert_eq!(expired, 3);
}

/// The options byte of a 5.0 SUBSCRIBE: QoS, No Local (bit 2), Retain As
/// Published (bit 3), Retain Handling (bits 4-5).
fn options(qos: u8, no_local: bool, rap: bool, retain_handling: u8) -> u8 {
    qos | u8::from(no_local) << 2 | u8::from(rap) << 3 | retain_handling << 4
}

/// [MQTT-3.8.3-3] No Local: a client's own messages do not come back on a
/// subscription with it set (they do on one without, and to others).
/// [MQTT-3.3.1-12] [MQTT-3.3.1-13] Retain As Published keeps the RETAIN
/// flag a live message was published with; otherwise it is cleared.
/// Both survive a restart (the `subscriptions` columns).
#[tokio::test]
async fn no_local_and_retain_as_published_mqtt_3_8_3_3_and_3_3_1_13() {
    let broker = TestBroker::start();
    let expiry = [Prop::Four(raw5::SESSION_EXPIRY, 3600)];
    let (mut me, _) = RawClient::connected_v5(broker.addr(), "me", true, &expiry).await;
    me.send(&raw5::subscribe(
        1,
        &[
            ("nl/#", options(1, true, true, 0)),
            ("keep/#", options(1, false, true, 0)),
        ],
        &[],
    ))
    .await;
    assert_eq!(me.recv().await.kind(), 9);
    me.send(&raw5::disconnect(0, &[])).await;
    me.expect_closed_silently().await;
    let broker = broker.restart();
    let rows = query(
        &broker.db_path(),
        "SELECT topic_filter, no_local, retain_as_published FROM subscriptions ORDER BY topic_filter",
    )
    .await;
    let kept: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(kept, [("keep/#".into(), 0, 1), ("nl/#".into(), 1, 1)]);

    let (mut me, ack) = RawClient::connected_v5(broker.addr(), "me", false, &expiry).await;
    assert!(ack.session_present);
    let mut other = RawClient::connected(broker.addr(), "other", true).await;
    other.subscribe_ok(1, &[("nl/#", 1)]).await;
    // My own message on nl/ does not come back; the other client gets it.
    me.send(&raw5::publish("nl/mine", b"mine", 1, 1, &[])).await;
    assert_eq!(me.recv().await.bytes(), raw::puback(1));
    assert_eq!(other.recv_publishes(1).await[0].payload, b"mine");
    // Published with RETAIN by another: kept on keep/# (Retain As Published).
    other.publish_ok("keep/r", b"retained", 1, 2, true).await;
    let got = raw5::Publish::parse(&me.recv().await);
    assert_eq!(got.payload, b"retained");
    // The RETAIN flag of a live message, kept as published.
    me.send(&raw::puback(got.packet_id.unwrap())).await;
    other.publish_ok("nl/theirs", b"theirs", 1, 3, true).await;
    let theirs = me.recv().await;
    assert_eq!(theirs.first & 1, 1, "RETAIN kept (Retain As Published)");
    me.send(&raw::puback(
        raw5::Publish::parse(&theirs).packet_id.unwrap(),
    ))
    .await;
    me.expect_nothing_within(
        std::time::Duration::from_millis(200),
        "my own message (No Local)",
    )
    .await;
}

/// [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11] Retain Handling: 0 sends
/// the retained messages at every SUBSCRIBE, 1 only when the subscription
/// is new (also on a resumed session), 2 never.
#[tokio::test]
async fn retain_handling_mqtt_3_3_1_9_to_3_3_1_11() {
    let broker = TestBroker::start();
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("rh/t", b"kept", 1, 1, true).await;
    let expiry = [Prop::Four(raw5::SESSION_EXPIRY, 3600)];
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "rh", true, &expiry).await;
    // Returns whether the retained message came for a SUBSCRIBE of `rh/#`.
    async fn sent(c: &mut RawClient, id: u16, retain_handling: u8) -> bool {
        c.send(&raw5::subscribe(
            id,
            &[("rh/#", options(0, false, false, retain_handling))],
            &[],
        ))
        .await;
        assert_eq!(c.recv().await.kind(), 9);
        match c.next_within(std::time::Duration::from_millis(300)).await {
            crate::common::raw::Next::Packet(p) => {
                assert_eq!(raw5::Publish::parse(&p).payload, b"kept");
                true
            }
            _ => false,
        }
    }
    assert!(sent(&mut c, 1, 1).await, "1, new");
    assert!(!sent(&mut c, 2, 1).await, "1, existing");
    assert!(sent(&mut c, 3, 0).await, "0, existing");
    assert!(!sent(&mut c, 4, 2).await, "2");
    c.send(&raw5::disconnect(0, &[])).await;
    c.expect_closed_silently().await;
    let (mut c, ack) = RawClient::connected_v5(broker.addr(), "rh", false, &expiry).await;
    assert!(ack.session_present);
    assert!(
        !sent(&mut c, 5, 1).await,
        "1, existing in the resumed session"
    );
}

fn ids_of(props: &[Prop]) -> Vec<u32> {
    props
        .iter()
        .filter_map(|p| match p {
            Prop::Var(0x0B, id) => Some(*id),
            _ => None,
        })
        .collect()
}

/// [MQTT-3.3.4-3] A message sent on a subscription with a Subscription
/// Identifier carries it; [MQTT-3.3.4-4] where a client's subscriptions
/// overlap, the one copy at the highest QoS carries every matching
/// identifier; a retained message sent at SUBSCRIBE carries its filter's.
/// The identifiers are kept in `subscriptions` and still sent after a
/// restart.
#[tokio::test]
async fn subscription_identifiers_are_echoed_mqtt_3_3_4_3_and_3_3_4_4() {
    let broker = TestBroker::start();
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("id/r", b"retained", 0, 0, true).await;
    let expiry = [Prop::Four(raw5::SESSION_EXPIRY, 3600)];
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "ids", true, &expiry).await;
    c.send(&raw5::subscribe(1, &[("id/#", 1)], &[Prop::Var(0x0B, 7)]))
        .await;
    assert_eq!(c.recv().await.kind(), 9);
    let retained = raw5::Publish::parse(&c.recv().await);
    assert_eq!(
        (retained.payload.as_slice(), ids_of(&retained.props)),
        (&b"retained"[..], vec![7])
    );
    c.send(&raw5::subscribe(
        2,
        &[("id/+/x", 0)],
        &[Prop::Var(0x0B, 300)],
    ))
    .await;
    assert_eq!(c.recv().await.kind(), 9);
    c.send(&raw5::subscribe(3, &[("plain/#", 0)], &[])).await;
    assert_eq!(c.recv().await.kind(), 9);
    publisher.publish_ok("id/a/x", b"both", 1, 1, false).await;
    let got = raw5::Publish::parse(&c.recv().await);
    assert_eq!(
        (got.qos, ids_of(&got.props)),
        (1, vec![7, 300]),
        "one copy, both ids"
    );
    c.send(&raw::puback(got.packet_id.unwrap())).await;
    publisher.publish_ok("plain/p", b"none", 0, 0, false).await;
    let got = raw5::Publish::parse(&c.recv().await);
    assert_eq!(ids_of(&got.props), Vec::<u32>::new());

    c.send(&raw5::disconnect(0, &[])).await;
    c.expect_closed_silently().await;
    publisher.publish_ok("id/b/x", b"queued", 1, 2, false).await;
    drop(publisher);
    let broker = broker.restart();
    let rows = query(
        &broker.db_path(),
        "SELECT topic_filter, subscription_identifier FROM subscriptions ORDER BY topic_filter",
    )
    .await;
    let kept: Vec<(String, Option<i64>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        kept,
        [
            ("id/#".into(), Some(7)),
            ("id/+/x".into(), Some(300)),
            ("plain/#".into(), None)
        ]
    );
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "ids", false, &expiry).await;
    let got = raw5::Publish::parse(&c.recv().await);
    assert_eq!(
        (got.payload.as_slice(), ids_of(&got.props)),
        (&b"queued"[..], vec![7, 300])
    );
}

/// [MQTT-3.1.2-23] A 5.0 session's own Session Expiry Interval is kept in
/// `sessions.session_expiry` (NULL for 3.1.1), also as a DISCONNECT changes
/// it, and a restart honours it: sessions of 2 s are gone after it, one of
/// an hour is not.
#[tokio::test]
async fn session_expiry_intervals_survive_a_restart_mqtt_3_1_2_23() {
    let broker = TestBroker::start();
    let secs = |s| vec![Prop::Four(raw5::SESSION_EXPIRY, s)];
    for (id, at_connect, at_disconnect) in [
        ("short", 2, None),
        ("changed", 3600, Some(2)),
        ("long", 3600, None),
    ] {
        let (mut c, _) = RawClient::connected_v5(broker.addr(), id, true, &secs(at_connect)).await;
        c.send(&raw5::subscribe(1, &[("s/#", 1)], &[])).await;
        assert_eq!(c.recv().await.kind(), 9);
        let props = at_disconnect.map(secs).unwrap_or_default();
        c.send(&raw5::disconnect(0, &props)).await;
        c.expect_closed_silently().await;
    }
    RawClient::connected(broker.addr(), "three", false).await;
    let broker = broker.restart();
    let rows = query(
        &broker.db_path(),
        "SELECT client_id, session_expiry FROM sessions ORDER BY client_id",
    )
    .await;
    let kept: Vec<(String, Option<i64>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        kept,
        [
            ("changed".into(), Some(2)),
            ("long".into(), Some(3600)),
            ("short".into(), Some(2)),
            ("three".into(), None)
        ]
    );
    // The condition under test is time itself: the interval must pass.
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    for (id, present) in [("short", false), ("changed", false), ("long", true)] {
        let (_c, ack) = RawClient::connected_v5(broker.addr(), id, false, &secs(3600)).await;
        assert_eq!(ack.session_present, present, "{id}");
    }
}
