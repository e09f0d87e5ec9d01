//! PUBLISH and the QoS protocols (sections 3.3 to 3.7, 4.3, 4.6): the exact
//! handshakes in both directions, delivered QoS, exactly-once inbound,
//! packet ids, the in-flight window, ordering, and slow subscribers.

use crate::common::raw;
use crate::common::{RawClient, TestBroker};
use roost::broker::ops::metrics::Metrics;
use std::collections::HashSet;

/// A subscriber with one filter at `qos` (SUBACK awaited) and a publisher
/// that subscribes to nothing.
async fn pair(broker: &TestBroker, filter: &str, qos: u8) -> (RawClient, RawClient) {
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[(filter, qos)]).await;
    let publisher = RawClient::connected(broker.addr(), "pub", true).await;
    (sub, publisher)
}

/// [MQTT-4.3.1-1] QoS 0: the sender sends a PUBLISH with QoS 0 and no packet
/// identifier, and nothing acknowledges it, in either direction.
#[tokio::test]
async fn qos0_both_directions_without_acks_mqtt_4_3_1_1() {
    let broker = TestBroker::start();
    let (mut sub, mut publisher) = pair(&broker, "q0", 0).await;
    publisher
        .send(&raw::publish("q0", b"hello", 0, 0, false, false))
        .await;
    // Exactly the bytes the publisher sent: 0x30, topic, payload, no id.
    assert_eq!(
        sub.recv().await.bytes(),
        raw::publish("q0", b"hello", 0, 0, false, false)
    );
    // The publisher gets nothing back: its next packet is the PINGRESP.
    publisher.ping().await;
    sub.ping().await;
}

/// [MQTT-4.3.2-2] In the QoS 1 delivery protocol, the Receiver MUST respond
/// with a PUBACK Packet containing the Packet Identifier from the incoming
/// PUBLISH Packet.
#[tokio::test]
async fn qos1_inbound_answered_with_puback_same_id_mqtt_4_3_2_2() {
    let broker = TestBroker::start();
    let (mut sub, mut publisher) = pair(&broker, "q1", 1).await;
    publisher
        .send(&raw::publish("q1", b"one", 1, 0x1234, false, false))
        .await;
    assert_eq!(publisher.recv().await.bytes(), [0x40, 0x02, 0x12, 0x34]);
    let p = sub.recv().await;
    assert_eq!(p.first, 0x32, "QoS 1, DUP 0, RETAIN 0: {p:?}");
    assert_eq!(p.publish().payload, b"one");
}

/// [MQTT-4.3.2-1] QoS 1 from the server: PUBLISH with QoS 1, DUP 0 and an
/// unused non-zero packet id, unacknowledged until the PUBACK; after the
/// PUBACK nothing is resent.
#[tokio::test]
async fn qos1_outbound_handshake_mqtt_4_3_2_1() {
    let broker = TestBroker::start();
    let (mut sub, mut publisher) = pair(&broker, "q1", 1).await;
    publisher.publish_ok("q1", b"one", 1, 1, false).await;
    let p = sub.recv().await;
    assert_eq!(p.first, 0x32, "QoS 1, DUP 0, RETAIN 0: {p:?}");
    let id = p.publish().packet_id.unwrap();
    assert_ne!(id, 0);
    sub.send(&raw::puback(id)).await;
    // Acknowledged: the next thing is the next message, not a resend.
    publisher.publish_ok("q1", b"two", 0, 0, false).await;
    sub.expect_publish("q1", b"two").await;
}

/// [MQTT-4.3.3-2] QoS 2 into the server: PUBREC with the PUBLISH's id, and
/// PUBCOMP with the PUBREL's id; the message is delivered once.
#[tokio::test]
async fn qos2_inbound_handshake_mqtt_4_3_3_2() {
    let broker = TestBroker::start();
    let (mut sub, mut publisher) = pair(&broker, "q2", 2).await;
    publisher
        .send(&raw::publish("q2", b"two", 2, 0x0102, false, false))
        .await;
    assert_eq!(
        publisher.recv().await.bytes(),
        [0x50, 0x02, 0x01, 0x02],
        "PUBREC"
    );
    publisher.send(&raw::pubrel(0x0102)).await;
    assert_eq!(
        publisher.recv().await.bytes(),
        [0x70, 0x02, 0x01, 0x02],
        "PUBCOMP"
    );
    let got = sub.recv_publishes(1).await;
    assert_eq!(got[0].payload, b"two");
    assert_eq!(got[0].qos, 2);
}

/// [MQTT-3.6.1-1] Bits 3,2,1 and 0 of the fixed header in the PUBREL Control
/// Packet are reserved and MUST be set to 0,0,1 and 0 respectively: the
/// server's QoS 2 handshake is PUBLISH (0x34), PUBREC from the client,
/// PUBREL 0x62 with the same id, PUBCOMP from the client [MQTT-4.3.3-1].
#[tokio::test]
async fn qos2_outbound_handshake_pubrel_flags_0x62_mqtt_3_6_1_1() {
    let broker = TestBroker::start();
    let (mut sub, mut publisher) = pair(&broker, "q2", 2).await;
    publisher.publish_ok("q2", b"two", 2, 9, false).await;
    let p = sub.recv().await;
    assert_eq!(p.first, 0x34, "QoS 2, DUP 0, RETAIN 0: {p:?}");
    let id = p.publish().packet_id.unwrap();
    assert_ne!(id, 0);
    sub.send(&raw::pubrec(id)).await;
    let rel = sub.recv().await;
    assert_eq!(
        rel.bytes(),
        raw::pubrel(id),
        "PUBREL must be 0x62 0x02 + the PUBLISH's id"
    );
    sub.send(&raw::pubcomp(id)).await;
    // Complete: no resend of PUBLISH or PUBREL comes before the next message.
    publisher.publish_ok("q2", b"next", 0, 0, false).await;
    sub.expect_publish("q2", b"next").await;
}

/// [MQTT-3.8.4-6] The QoS of Payload Messages sent in response to a
/// Subscription MUST be the minimum of the QoS of the originally published
/// message and the maximum QoS granted by the Server: all 9 combinations.
#[tokio::test]
async fn delivered_qos_is_min_of_published_and_granted_mqtt_3_8_4_6() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("min/0", 0), ("min/1", 1), ("min/2", 2)])
        .await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    let mut id = 0;
    for granted in 0..3u8 {
        for published in 0..3u8 {
            id += 1;
            let topic = format!("min/{granted}");
            let payload = format!("published {published}, granted {granted}");
            publisher
                .publish_ok(&topic, payload.as_bytes(), published, id, false)
                .await;
            let got = sub.recv_publishes(1).await;
            assert_eq!(got[0].payload, payload.as_bytes());
            assert_eq!(
                got[0].qos,
                published.min(granted),
                "{payload}: delivered at QoS {}",
                got[0].qos
            );
        }
    }
}

/// [MQTT-4.3.3-2] QoS 2 exactly once, method B: until the PUBREL, a resent
/// PUBLISH (DUP=1, same id) is answered with PUBREC again but not delivered
/// again. After PUBCOMP the id is free and a new message with it is delivered.
#[tokio::test]
async fn qos2_resent_publish_before_pubrel_not_delivered_twice_mqtt_4_3_3_2() {
    let broker = TestBroker::start();
    let (mut sub, mut publisher) = pair(&broker, "once", 2).await;
    publisher
        .send(&raw::publish("once", b"first", 2, 5, false, false))
        .await;
    assert_eq!(publisher.recv().await.bytes(), raw::pubrec(5));
    publisher
        .send(&raw::publish("once", b"first", 2, 5, false, true))
        .await;
    assert_eq!(
        publisher.recv().await.bytes(),
        raw::pubrec(5),
        "a resent PUBLISH is answered with PUBREC too"
    );
    publisher
        .send(&raw::publish("once", b"first", 2, 5, false, true))
        .await;
    assert_eq!(publisher.recv().await.bytes(), raw::pubrec(5));
    publisher.send(&raw::pubrel(5)).await;
    assert_eq!(publisher.recv().await.bytes(), raw::pubcomp(5));
    // Routed before the PUBCOMP; the marker follows on the same topic.
    publisher.publish_ok("once", b"marker", 0, 0, false).await;
    let got = sub.recv_publishes(2).await;
    let payloads: Vec<&[u8]> = got.iter().map(|p| p.payload.as_slice()).collect();
    assert_eq!(
        payloads,
        [&b"first"[..], b"marker"],
        "the resent PUBLISH was delivered again"
    );
    // The id is released: reusing it carries a new message.
    publisher.publish_ok("once", b"second", 2, 5, false).await;
    sub.expect_publish("once", b"second").await;
}

/// [MQTT-4.3.3-2] The receiver MUST respond to a PUBREL by sending a PUBCOMP
/// containing the same Packet Identifier: also for an id it does not know
/// (a retry after a lost PUBCOMP).
#[tokio::test]
async fn pubrel_for_unknown_id_gets_pubcomp_mqtt_4_3_3_2() {
    let broker = TestBroker::start();
    let mut c = RawClient::connected(broker.addr(), "c", true).await;
    c.send(&raw::pubrel(0x4242)).await;
    assert_eq!(c.recv().await.bytes(), raw::pubcomp(0x4242));
    c.ping().await;
}

/// [MQTT-2.3.1-2] Each time a Client/Server sends a new QoS 1 or 2 PUBLISH it
/// MUST assign it a currently unused non-zero Packet Identifier: 20
/// unacknowledged messages (10 QoS 1, 10 QoS 2) carry 20 distinct ids.
#[tokio::test]
async fn outbound_packet_ids_nonzero_and_distinct_mqtt_2_3_1_2() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("ids/1", 1), ("ids/2", 2)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    for i in 0..10u16 {
        publisher.publish_ok("ids/1", b"x", 1, i + 1, false).await;
        publisher.publish_ok("ids/2", b"y", 2, i + 100, false).await;
    }
    let mut ids = HashSet::new();
    for _ in 0..20 {
        let p = sub.recv().await.publish();
        let id = p.packet_id.expect("QoS > 0 has an id");
        assert_ne!(id, 0, "packet id 0 on {p:?}");
        assert!(
            ids.insert(id),
            "packet id {id} reused while unacknowledged: {p:?}"
        );
    }
}

/// session.max_inflight: with a window of 2, a subscriber that does not
/// acknowledge holds exactly 2 QoS 1 messages; each PUBACK releases the next,
/// in order. (A QoS 0 message is not held back by the window: it proves that
/// nothing else was sent.)
#[tokio::test]
async fn inflight_window_holds_back_qos1_until_acked_mqtt_4_3_2_1() {
    let broker = TestBroker::start_with(|c| c.session.max_inflight = 2);
    let (mut sub, mut publisher) = pair(&broker, "win", 1).await;
    for i in 0..5u16 {
        publisher
            .publish_ok("win", format!("m{i}").as_bytes(), 1, i + 1, false)
            .await;
    }
    publisher
        .publish_ok("win", b"qos0 marker", 0, 0, false)
        .await;
    let first = sub.recv().await.publish();
    let second = sub.recv().await.publish();
    assert_eq!(
        (first.payload.as_slice(), second.payload.as_slice()),
        (&b"m0"[..], &b"m1"[..])
    );
    let marker = sub.recv().await.publish();
    assert_eq!(
        marker.payload, b"qos0 marker",
        "more than 2 QoS 1 messages in flight: {marker:?}"
    );
    let mut unacked = vec![first.packet_id.unwrap(), second.packet_id.unwrap()];
    for i in 2..5 {
        sub.send(&raw::puback(unacked.remove(0))).await;
        let p = sub.recv().await.publish();
        assert_eq!(
            p.payload,
            format!("m{i}").as_bytes(),
            "released out of order: {p:?}"
        );
        assert!(!p.dup);
        unacked.push(p.packet_id.unwrap());
    }
    for id in unacked {
        sub.send(&raw::puback(id)).await;
    }
    publisher.publish_ok("win", b"end", 0, 0, false).await;
    sub.expect_publish("win", b"end").await;
}

/// [MQTT-4.6.0-5] The server MUST send PUBLISH packets to consumers (for the
/// same Topic and QoS) in the order that they were received from any given
/// Client: 100 pipelined QoS 1 messages arrive in order (through the
/// in-flight window of 64 and the queue behind it).
#[tokio::test]
async fn qos1_order_preserved_mqtt_4_6_0_5() {
    let broker = TestBroker::start();
    let (mut sub, mut publisher) = pair(&broker, "order", 1).await;
    for i in 0..100u16 {
        publisher
            .send(&raw::publish(
                "order",
                &i.to_be_bytes(),
                1,
                i + 1,
                false,
                false,
            ))
            .await;
    }
    for i in 0..100u16 {
        assert_eq!(publisher.recv().await.bytes(), raw::puback(i + 1));
    }
    for i in 0..100u16 {
        let p = sub.recv_publish().await;
        assert_eq!(p.payload, i.to_be_bytes(), "message {i} out of order");
        assert_eq!(p.qos, 1);
    }
}

/// [MQTT-4.6.0-5] [MQTT-4.6.0-6] Ordering in a fan-out: the shards hand
/// each subscriber's session its deliveries in batches, and the session
/// writes a batch to the client in one go. 400 pipelined messages,
/// alternately QoS 0 and QoS 1 on two topics, reach three subscribers (one
/// with a persistent session, whose QoS 1 copies wait for a commit)
/// complete, and in publish order within each topic and QoS; the
/// publisher's PUBACKs come in the order of its PUBLISHes.
#[tokio::test]
async fn fan_out_keeps_order_per_topic_and_qos_and_pubacks_in_order_mqtt_4_6_0_6() {
    let broker = TestBroker::start_with(|c| c.broker.shards = 4);
    let mut subs = Vec::new();
    for (id, clean) in [("fo-1", true), ("fo-2", true), ("fo-3", false)] {
        let mut sub = RawClient::connected(broker.addr(), id, clean).await;
        sub.subscribe_ok(1, &[("fan/#", 1)]).await;
        subs.push(sub);
    }
    let mut publisher = RawClient::connected(broker.addr(), "fo-pub", true).await;
    for i in 0..400u16 {
        let (qos, id) = if i % 2 == 0 { (0, 0) } else { (1, i) };
        let topic = if i % 3 == 0 { "fan/a" } else { "fan/b/c" };
        publisher
            .send(&raw::publish(
                topic,
                &i.to_be_bytes(),
                qos,
                id,
                false,
                false,
            ))
            .await;
    }
    // PUBACKs in the order of the PUBLISHes, though those of one topic
    // wait for the persistent subscriber's commit and go through another
    // shard than those of the other: section 4.6's rule for the receiver
    // of PUBLISHes [MQTT-4.6.0-2], which roost follows as Mosquitto does.
    for i in (1..400u16).step_by(2) {
        assert_eq!(
            publisher.recv().await.bytes(),
            raw::puback(i),
            "PUBACK out of order"
        );
    }
    for sub in &mut subs {
        let got = sub.recv_publishes(400).await;
        for (topic, qos) in [("fan/a", 0u8), ("fan/a", 1), ("fan/b/c", 0), ("fan/b/c", 1)] {
            let seq: Vec<u16> = got
                .iter()
                .filter(|p| p.topic == topic && p.qos == qos)
                .map(|p| u16::from_be_bytes([p.payload[0], p.payload[1]]))
                .collect();
            let expected: Vec<u16> = (0..400u16)
                .filter(|i| i % 2 == u16::from(qos) && (i % 3 == 0) == (topic == "fan/a"))
                .collect();
            assert_eq!(
                seq, expected,
                "{topic} at QoS {qos}: incomplete or out of order"
            );
        }
    }
}

/// [MQTT-4.6.0-3] PUBRECs in the order of the QoS 2 PUBLISHes (section
/// 4.6 states the rule for the client; roost follows it as receiver too),
/// when the PUBLISHes go to two topics (two shards) and a persistent
/// subscriber's copies make each PUBREC wait for its own commit.
#[tokio::test]
async fn pubrecs_in_order_across_topics_and_commits_mqtt_4_6_0_3() {
    let broker = TestBroker::start_with(|c| c.broker.shards = 4);
    let mut sub = RawClient::connected(broker.addr(), "rec-sub", false).await;
    sub.subscribe_ok(1, &[("rec/#", 2)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "rec-pub", true).await;
    for i in 1..=60u16 {
        let topic = if i % 3 == 0 { "rec/a" } else { "rec/b/c" };
        publisher
            .send(&raw::publish(topic, &i.to_be_bytes(), 2, i, false, false))
            .await;
    }
    for i in 1..=60u16 {
        assert_eq!(
            publisher.recv().await.bytes(),
            raw::pubrec(i),
            "PUBREC out of order"
        );
    }
    for i in 1..=60u16 {
        publisher.send(&raw::pubrel(i)).await;
        assert_eq!(publisher.recv().await.bytes(), raw::pubcomp(i));
    }
    assert_eq!(sub.recv_publishes(60).await.len(), 60);
}

/// [MQTT-4.6.0-5] Ordering at QoS 2 too: 30 pipelined QoS 2 messages arrive in
/// order while their handshakes interleave; PUBRECs are sent in the order of
/// the PUBLISHes [MQTT-4.6.0-3], PUBCOMPs in the order of the PUBRELs.
#[tokio::test]
async fn qos2_order_preserved_mqtt_4_6_0_5() {
    let broker = TestBroker::start();
    let (mut sub, mut publisher) = pair(&broker, "order2", 2).await;
    for i in 0..30u16 {
        publisher
            .send(&raw::publish(
                "order2",
                &i.to_be_bytes(),
                2,
                i + 1,
                false,
                false,
            ))
            .await;
    }
    // PUBRECs come in order, and so do PUBCOMPs; the two kinds may
    // interleave (a PUBCOMP may overtake a later PUBREC).
    let (mut next_rec, mut next_comp) = (1u16, 1u16);
    while next_rec <= 30 || next_comp <= 30 {
        let p = publisher.recv().await;
        match p.kind() {
            5 => {
                assert_eq!(p.bytes(), raw::pubrec(next_rec), "PUBREC out of order");
                publisher.send(&raw::pubrel(next_rec)).await;
                next_rec += 1;
            }
            7 => {
                assert_eq!(p.bytes(), raw::pubcomp(next_comp), "PUBCOMP out of order");
                next_comp += 1;
            }
            _ => panic!("expected PUBREC or PUBCOMP, got {p:?}"),
        }
    }
    let got = sub.recv_publishes(30).await;
    for (i, p) in got.iter().enumerate() {
        assert_eq!(
            p.payload,
            (i as u16).to_be_bytes(),
            "message {i} out of order"
        );
    }
}

/// limits.max_outbound_bytes: a subscriber that stops reading during a QoS 0
/// flood has its QoS 0 messages dropped (and counted in
/// `dropped_slow_client`); another subscriber of the same topic still
/// receives every message, in order.
#[tokio::test]
async fn slow_qos0_subscriber_does_not_stall_others() {
    let broker = TestBroker::start_with(|c| c.limits.max_outbound_bytes = 65536);
    let mut slow = RawClient::connect_with_recv_buffer(broker.addr(), 4096).await;
    slow.send(&raw::connect("slow", true)).await;
    assert_eq!(slow.recv().await.bytes(), raw::CONNACK_OK);
    slow.subscribe_ok(1, &[("flood", 0)]).await;
    // From here on `slow` reads nothing.
    let (mut fast, mut publisher) = pair(&broker, "flood", 0).await;
    publisher.stream.set_nodelay(true).unwrap();
    let metrics = broker.handle.metrics().clone();
    const BATCH: u32 = 4;
    const PAYLOAD: usize = 8 * 1024;
    const MAX_BATCHES: u32 = 2048; // 64 MB: far more than any socket buffers
    let mut seq = 0u32;
    let mut batches_after_drop = None;
    for _ in 0..MAX_BATCHES {
        let start = seq;
        let mut batch = Vec::new();
        for _ in 0..BATCH {
            let mut payload = vec![0xAB; PAYLOAD];
            payload[..4].copy_from_slice(&seq.to_be_bytes());
            batch.extend(raw::publish("flood", &payload, 0, 0, false, false));
            seq += 1;
        }
        publisher.send(&batch).await;
        // Pace the publisher by the fast reader, so that only the slow one
        // can fall behind.
        for expected in start..seq {
            let p = fast.recv().await.publish();
            assert_eq!(
                p.payload[..4],
                expected.to_be_bytes(),
                "fast subscriber lost or reordered a message"
            );
            assert_eq!(p.payload.len(), PAYLOAD);
        }
        if Metrics::get(&metrics.dropped_slow_client) > 0 {
            // Keep going a little after the first drop.
            let left = batches_after_drop.get_or_insert(16);
            if *left == 0 {
                break;
            }
            *left -= 1;
        }
    }
    let dropped = Metrics::get(&metrics.dropped_slow_client);
    assert!(
        dropped > 0,
        "{seq} messages of {PAYLOAD} bytes and nothing was dropped for the slow client"
    );
    // The broker is still responsive to everyone who reads.
    fast.ping().await;
    publisher.ping().await;
}

/// [MQTT-3.3.1-3] The value of the DUP flag from an incoming PUBLISH packet is
/// not propagated when the PUBLISH Packet is sent to subscribers by the
/// Server: a first delivery has DUP=0.
#[tokio::test]
async fn incoming_dup_flag_not_propagated_mqtt_3_3_1_3() {
    let broker = TestBroker::start();
    let (mut sub, mut publisher) = pair(&broker, "dup", 2).await;
    publisher
        .send(&raw::publish("dup", b"one", 1, 1, false, true))
        .await;
    assert_eq!(publisher.recv().await.bytes(), raw::puback(1));
    let got = sub.recv_publishes(1).await;
    assert!(!got[0].dup, "DUP propagated: {:?}", got[0]);
    publisher
        .send(&raw::publish("dup", b"two", 2, 2, false, true))
        .await;
    assert_eq!(publisher.recv().await.bytes(), raw::pubrec(2));
    publisher.send(&raw::pubrel(2)).await;
    assert_eq!(publisher.recv().await.bytes(), raw::pubcomp(2));
    let got = sub.recv_publishes(1).await;
    assert!(!got[0].dup, "DUP propagated: {:?}", got[0]);
}

/// Section 3.3.3: the payload is application data, forwarded byte for byte:
/// all 256 byte values, and an empty payload.
#[tokio::test]
async fn payload_forwarded_byte_for_byte_mqtt_3_3_3() {
    let broker = TestBroker::start();
    let (mut sub, mut publisher) = pair(&broker, "bytes", 1).await;
    let all: Vec<u8> = (0..=255u8).collect();
    publisher.publish_ok("bytes", &all, 1, 1, false).await;
    sub.expect_publish("bytes", &all).await;
    publisher.publish_ok("bytes", b"", 1, 2, false).await;
    sub.expect_publish("bytes", b"").await;
}

/// [MQTT-2.2.3] The server encodes the Remaining Length correctly at every
/// boundary of the variable-length encoding (1 to 4 bytes): sizes 127/128,
/// 16383/16384 and 2097151/2097152 arrive intact.
#[tokio::test]
async fn remaining_length_boundaries_round_trip_mqtt_2_2_3() {
    let broker = TestBroker::start_with(|c| c.limits.max_packet_size = 4 << 20);
    let (mut sub, mut publisher) = pair(&broker, "rl", 0).await;
    // Remaining length of a QoS 0 PUBLISH to "rl" = 2 + 2 + payload.
    for remaining in [127usize, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
        let payload: Vec<u8> = (0..remaining - 4).map(|i| (i % 251) as u8).collect();
        publisher
            .send(&raw::publish("rl", &payload, 0, 0, false, false))
            .await;
        let p = sub.recv().await;
        assert_eq!(p.body.len(), remaining);
        assert_eq!(
            p.publish().payload,
            payload,
            "payload corrupted at remaining length {remaining}"
        );
    }
}

/// session.max_inflight counts a QoS 2 message until its PUBCOMP, not its
/// PUBREC: with a window of 1, the next message waits for the PUBCOMP.
#[tokio::test]
async fn qos2_occupies_the_window_until_pubcomp_mqtt_4_3_3_1() {
    let broker = TestBroker::start_with(|c| c.session.max_inflight = 1);
    let (mut sub, mut publisher) = pair(&broker, "w2", 2).await;
    publisher.publish_ok("w2", b"a", 2, 1, false).await;
    publisher.publish_ok("w2", b"b", 2, 2, false).await;
    let a = sub.recv().await.publish();
    assert_eq!(a.payload, b"a");
    let id = a.packet_id.unwrap();
    sub.send(&raw::pubrec(id)).await;
    assert_eq!(
        sub.recv().await.bytes(),
        raw::pubrel(id),
        "PUBREL, not the next PUBLISH, after PUBREC"
    );
    publisher
        .publish_ok("w2", b"qos0 marker", 0, 0, false)
        .await;
    assert_eq!(
        sub.recv().await.publish().payload,
        b"qos0 marker",
        "window of 1 exceeded"
    );
    sub.send(&raw::pubcomp(id)).await;
    let b = sub.recv_publishes(1).await;
    assert_eq!(b[0].payload, b"b");
}

/// [MQTT-4.8.0-1] An acknowledgement of the wrong type for a packet id in
/// flight is a protocol violation: PUBREC or PUBCOMP answering a QoS 1
/// PUBLISH, PUBACK answering a QoS 2 one, PUBCOMP before PUBREC. The connection closes and the
/// violation is counted, as Mosquitto does (it used to be ignored, and the
/// connection answered the next PINGREQ).
#[tokio::test]
async fn an_acknowledgement_of_the_wrong_type_closes_the_connection_mqtt_4_8_0_1() {
    let broker = TestBroker::start();
    type Ack = fn(u16) -> Vec<u8>;
    // The last: PUBCOMP before PUBREC, when no PUBREL was sent to answer.
    let cases: [(u8, Ack); 4] = [
        (1, raw::pubrec),
        (1, raw::pubcomp),
        (2, raw::puback),
        (2, raw::pubcomp),
    ];
    for (n, (qos, wrong)) in cases.into_iter().enumerate() {
        let topic = format!("wrong-ack/{n}");
        let (mut sub, mut publisher) = pair(&broker, &topic, qos).await;
        publisher.publish_ok(&topic, b"x", qos, 1, false).await;
        // Not `recv_publish`, which acknowledges.
        let p = sub.recv().await.publish();
        assert_eq!(p.qos, qos);
        sub.send_lossy(&wrong(p.packet_id.unwrap())).await;
        sub.send_lossy(&raw::PINGREQ).await;
        let after = sub.expect_closed().await;
        assert!(after.is_empty(), "case {n}: {after:?}");
        let errors = broker
            .handle
            .metrics()
            .protocol_errors
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(errors, n as u64 + 1, "case {n}");
    }
    // The right acknowledgement, or one for an id not in flight, is fine.
    let (mut sub, mut publisher) = pair(&broker, "right-ack", 1).await;
    publisher.publish_ok("right-ack", b"x", 1, 1, false).await;
    let p = sub.recv().await.publish();
    sub.send(&raw::pubrec(p.packet_id.unwrap().wrapping_add(7)))
        .await;
    sub.send(&raw::puback(p.packet_id.unwrap())).await;
    sub.ping().await;
}
