//! Retained messages (section 3.3.1.3). Absence is proven without sleeping:
//! a later subscriber subscribes to the topic under test and then, in the
//! same SUBSCRIBE, to a marker topic that holds a retained message; retained
//! messages follow the SUBACK filter by filter, so the marker arriving first
//! proves the topic under test had nothing retained.

use crate::common::raw::{self, ReceivedPublish};
use crate::common::{RawClient, TestBroker};

/// Publishes a retained marker on `retained/marker` (QoS 1, acked).
async fn retain_marker(publisher: &mut RawClient) {
    publisher
        .publish_ok("retained/marker", b"marker", 1, 999, true)
        .await;
}

/// A new client subscribes to `filter` at `qos` and then to the marker topic,
/// in one SUBSCRIBE, and returns what arrived before the marker.
async fn retained_for(
    broker: &TestBroker,
    client_id: &str,
    filter: &str,
    qos: u8,
) -> Vec<ReceivedPublish> {
    let mut sub = RawClient::connected(broker.addr(), client_id, true).await;
    sub.subscribe_ok(1, &[(filter, qos), ("retained/marker", 0)])
        .await;
    let mut got = Vec::new();
    let mut marker_seen = false;
    let mut awaiting_rel = Vec::new();
    // Until the marker has come and every QoS 2 handshake is complete (the
    // QoS 0 marker may overtake a PUBREL).
    while !marker_seen || !awaiting_rel.is_empty() {
        let packet = sub.recv().await;
        if packet.first == 0x62 {
            let id = packet.packet_id();
            awaiting_rel.retain(|&a| a != id);
            sub.send(&raw::pubcomp(id)).await;
            continue;
        }
        let p = packet.publish();
        match (p.qos, p.packet_id) {
            (1, Some(id)) => sub.send(&raw::puback(id)).await,
            (2, Some(id)) => {
                sub.send(&raw::pubrec(id)).await;
                awaiting_rel.push(id);
            }
            _ => {}
        }
        if p.topic == "retained/marker" {
            assert!(p.retain, "the marker is retained: {p:?}");
            marker_seen = true;
        } else {
            assert!(!marker_seen, "retained message after the marker: {p:?}");
            got.push(p);
        }
    }
    got
}

fn payloads(got: &[ReceivedPublish]) -> Vec<String> {
    got.iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

/// [MQTT-3.3.1-6] When a new subscription is established, the last retained
/// message, if any, on each matching topic name MUST be sent to the
/// subscriber; [MQTT-3.3.1-8] with the RETAIN flag set to 1. It follows the
/// SUBACK.
#[tokio::test]
async fn new_subscriber_gets_retained_message_with_retain_1_mqtt_3_3_1_8() {
    let broker = TestBroker::start();
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("r/t", b"kept", 1, 1, true).await;
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("r/t", 1)]).await;
    let p = sub.recv().await;
    assert_eq!(p.first & 0x0F, 0x03, "QoS 1, RETAIN 1, DUP 0: {p:?}");
    let p = p.publish();
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("r/t", &b"kept"[..])
    );
    sub.send(&raw::puback(p.packet_id.unwrap())).await;
    sub.ping().await;
}

/// [MQTT-3.3.1-9] When sending a PUBLISH to a Client the Server MUST set the
/// RETAIN flag to 0 when a PUBLISH is sent to a Client because it matches an
/// established subscription regardless of how the flag was set in the message
/// it received.
#[tokio::test]
async fn live_forwarding_clears_retain_flag_mqtt_3_3_1_9() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("r/live", 2)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    for qos in 0..3u8 {
        publisher.publish_ok("r/live", &[qos], qos, 1, true).await;
        let got = sub.recv_publishes(1).await;
        assert_eq!(got[0].payload, [qos]);
        assert!(
            !got[0].retain,
            "live delivery of a retained QoS {qos} publish has RETAIN=1"
        );
    }
}

/// [MQTT-3.3.1-5] The Server MUST store the Application Message and its QoS,
/// so that it can be delivered to future subscribers; a new retained message
/// for the topic replaces the old one (one message per topic).
#[tokio::test]
async fn new_retained_message_replaces_the_old_mqtt_3_3_1_5() {
    let broker = TestBroker::start();
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("r/t", b"old", 1, 1, true).await;
    publisher.publish_ok("r/t", b"new", 1, 2, true).await;
    retain_marker(&mut publisher).await;
    let got = retained_for(&broker, "sub", "r/t", 1).await;
    assert_eq!(payloads(&got), ["new"]);
    assert!(got[0].retain);
}

/// [MQTT-3.3.1-10] A retained PUBLISH with a zero-byte payload is processed
/// as normal (sent to current subscribers) and removes the retained message;
/// [MQTT-3.3.1-11] a zero-byte retained message MUST NOT be stored.
#[tokio::test]
async fn empty_retained_payload_clears_and_is_not_stored_mqtt_3_3_1_10() {
    let broker = TestBroker::start();
    let mut live = RawClient::connected(broker.addr(), "live", true).await;
    live.subscribe_ok(1, &[("r/clear", 1)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher
        .publish_ok("r/clear", b"soon gone", 1, 1, true)
        .await;
    live.expect_publish("r/clear", b"soon gone").await;
    publisher.publish_ok("r/clear", b"", 1, 2, true).await;
    // Processed as normal: the current subscriber gets the empty message.
    let p = live.expect_publish("r/clear", b"").await;
    assert!(!p.retain);
    retain_marker(&mut publisher).await;
    let got = retained_for(&broker, "later", "r/clear", 1).await;
    assert!(
        got.is_empty(),
        "cleared topic still delivers retained messages: {got:?}"
    );
    // An empty retained message on a topic with nothing retained is not stored either.
    publisher.publish_ok("r/never", b"", 0, 0, true).await;
    let got = retained_for(&broker, "later2", "r/never", 1).await;
    assert!(
        got.is_empty(),
        "a zero-byte retained message was stored: {got:?}"
    );
}

/// [MQTT-3.3.1-6] A wildcard subscription gets the retained message of every
/// matching topic, and of no other topic.
#[tokio::test]
async fn wildcard_subscribe_gets_all_matching_retained_mqtt_3_3_1_6() {
    let broker = TestBroker::start();
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    let topics = [
        "w/a", "w/b", "w/c/d", "w", "x/a", "w2/a", "$ops/w/a", "$x/a",
    ];
    for (i, t) in topics.iter().enumerate() {
        publisher
            .publish_ok(t, t.as_bytes(), 1, i as u16 + 1, true)
            .await;
    }
    retain_marker(&mut publisher).await;
    for (n, (filter, expected)) in [
        ("w/+", vec!["w/a", "w/b"]),
        ("w/#", vec!["w", "w/a", "w/b", "w/c/d"]),
        ("+/a", vec!["w/a", "w2/a", "x/a"]),
        ("w/c/+", vec!["w/c/d"]),
        (
            "#",
            vec!["retained/marker", "w", "w/a", "w/b", "w/c/d", "w2/a", "x/a"],
        ),
        ("$ops/#", vec!["$ops/w/a"]),
        ("$x/+", vec!["$x/a"]),
        ("nothing/+", vec![]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut got: Vec<String> = if filter == "#" {
            // `#` matches the marker itself: collect everything it delivers.
            let mut sub = RawClient::connected(broker.addr(), "all", true).await;
            sub.subscribe_ok(1, &[("#", 0)]).await;
            let got = sub.recv_publishes(expected.len()).await;
            assert!(got.iter().all(|p| p.retain));
            // Nothing more: a live marker on a fresh topic comes next.
            publisher.publish_ok("zz/end", b"end", 0, 0, false).await;
            sub.expect_publish("zz/end", b"end").await;
            got.iter().map(|p| p.topic.clone()).collect()
        } else {
            let got = retained_for(&broker, &format!("sub{n}"), filter, 1).await;
            assert!(got.iter().all(|p| p.retain));
            got.iter().map(|p| p.topic.clone()).collect()
        };
        got.sort();
        assert_eq!(got, expected, "retained messages for filter {filter:?}");
    }
}

/// [MQTT-3.3.1-6] with [MQTT-3.8.4-6]: a retained message is delivered at
/// the minimum of its stored QoS and the granted QoS.
#[tokio::test]
async fn retained_delivered_at_min_of_stored_and_granted_qos_mqtt_3_8_4_6() {
    let broker = TestBroker::start();
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    for stored in 0..3u8 {
        publisher
            .publish_ok(&format!("rq/{stored}"), &[stored], stored, 1, true)
            .await;
    }
    retain_marker(&mut publisher).await;
    for stored in 0..3u8 {
        for granted in 0..3u8 {
            let got = retained_for(
                &broker,
                &format!("s{stored}{granted}"),
                &format!("rq/{stored}"),
                granted,
            )
            .await;
            assert_eq!(got.len(), 1, "stored QoS {stored}, granted {granted}");
            assert_eq!(
                got[0].qos,
                stored.min(granted),
                "stored QoS {stored}, granted {granted}"
            );
            assert!(got[0].retain);
        }
    }
}

/// [MQTT-3.8.4-3] ... Any existing retained messages matching the Topic
/// Filter MUST be re-sent: a repeated SUBSCRIBE gets the retained message
/// again, with RETAIN=1.
#[tokio::test]
async fn resubscribing_resends_retained_mqtt_3_8_4_3() {
    let broker = TestBroker::start();
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("r/again", b"again", 1, 1, true).await;
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    for id in 1..=3u16 {
        sub.subscribe_ok(id, &[("r/again", 1)]).await;
        let p = sub.expect_publish("r/again", b"again").await;
        assert!(p.retain, "subscription {id}: {p:?}");
    }
}

/// [MQTT-3.3.1-7] A retained QoS 0 message replaces what was retained and
/// SHOULD be stored as the new retained message: roost stores it.
#[tokio::test]
async fn retained_qos0_message_is_stored_mqtt_3_3_1_7() {
    let broker = TestBroker::start();
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("r/q0", b"older", 2, 1, true).await;
    publisher.publish_ok("r/q0", b"zero", 0, 0, true).await;
    retain_marker(&mut publisher).await;
    let got = retained_for(&broker, "sub", "r/q0", 2).await;
    assert_eq!(payloads(&got), ["zero"]);
    assert_eq!(got[0].qos, 0);
}

/// [MQTT-3.1.2-7] Retained messages do not form part of the Session state in
/// the Server, they MUST NOT be deleted when the Session ends: a clean
/// publisher's retained message outlives its session.
#[tokio::test]
async fn retained_message_outlives_the_publishers_session_mqtt_3_1_2_7() {
    let broker = TestBroker::start();
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher
        .publish_ok("r/outlives", b"still here", 1, 1, true)
        .await;
    publisher.disconnect().await;
    let mut persistent_publisher = RawClient::connected(broker.addr(), "pub2", false).await;
    persistent_publisher
        .publish_ok("r/outlives2", b"still here too", 1, 1, true)
        .await;
    persistent_publisher.disconnect().await;
    // Ending the persistent session too.
    let mut gone = RawClient::connected(broker.addr(), "pub2", true).await;
    gone.disconnect().await;
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("r/outlives", 1)]).await;
    sub.expect_publish("r/outlives", b"still here").await;
    sub.subscribe_ok(2, &[("r/outlives2", 1)]).await;
    sub.expect_publish("r/outlives2", b"still here too").await;
}
