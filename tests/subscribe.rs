//! SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK (sections 3.8 to 3.11) and topic
//! matching (section 4.7). Absence is proven with a marker published after
//! the message that must not arrive: on the same topic (same shard), or with
//! a single topic shard where the topics differ.

use crate::common::raw;
use crate::common::{RawClient, TestBroker};

/// [MQTT-3.8.4-1] The Server MUST respond with a SUBACK Packet with the same
/// Packet Identifier; [MQTT-3.9.3-1] the order of return codes in the SUBACK
/// MUST match the order of Topic Filters in the SUBSCRIBE.
#[tokio::test]
async fn suback_grants_each_filter_in_order_mqtt_3_9_3_1() {
    let broker = TestBroker::start();
    let mut c = RawClient::connected(broker.addr(), "c", true).await;
    c.send(&raw::subscribe(
        0xBEEF,
        &[("a", 2), ("b/+", 0), ("c/#", 1), ("d", 0), ("e", 2)],
    ))
    .await;
    assert_eq!(
        c.recv().await.bytes(),
        raw::suback(0xBEEF, &[2, 0, 1, 0, 2])
    );
    // Each filter works, at its own QoS.
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    for (topic, granted) in [("a", 2), ("b/x", 0), ("c/y/z", 1), ("d", 0), ("e", 2)] {
        publisher
            .publish_ok(topic, topic.as_bytes(), 2, 1, false)
            .await;
        let got = c.recv_publishes(1).await;
        assert_eq!((got[0].topic.as_str(), got[0].qos), (topic, granted));
    }
}

/// [MQTT-3.8.4-1] SUBACK echoes the packet id of each SUBSCRIBE, one SUBACK
/// per SUBSCRIBE, for pipelined SUBSCRIBEs too.
#[tokio::test]
async fn suback_per_subscribe_with_its_packet_id_mqtt_3_8_4_1() {
    let broker = TestBroker::start();
    let mut c = RawClient::connected(broker.addr(), "c", true).await;
    for id in [1u16, 300, 65535] {
        c.send(&raw::subscribe(id, &[("t", 1)])).await;
    }
    for id in [1u16, 300, 65535] {
        assert_eq!(c.recv().await.bytes(), raw::suback(id, &[1]));
    }
}

/// [MQTT-3.8.4-3] If a Server receives a SUBSCRIBE Packet containing a Topic
/// Filter that is identical to an existing Subscription's Topic Filter then it
/// MUST completely replace that existing Subscription with a new
/// Subscription: the new QoS applies, and one copy is delivered.
#[tokio::test]
async fn repeated_subscription_replaces_the_old_one_mqtt_3_8_4_3() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("rep", 0)]).await;
    sub.subscribe_ok(2, &[("rep", 2)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("rep", b"at qos 2", 2, 1, false).await;
    let got = sub.recv_publishes(1).await;
    assert_eq!(
        (got[0].payload.as_slice(), got[0].qos),
        (&b"at qos 2"[..], 2)
    );
    publisher.publish_ok("rep", b"marker", 0, 0, false).await;
    sub.expect_publish("rep", b"marker").await;
    // And downgrading works the same way.
    sub.subscribe_ok(3, &[("rep", 1)]).await;
    publisher.publish_ok("rep", b"at qos 1", 2, 2, false).await;
    let got = sub.recv_publishes(1).await;
    assert_eq!(
        (got[0].payload.as_slice(), got[0].qos),
        (&b"at qos 1"[..], 1)
    );
    publisher.publish_ok("rep", b"marker", 0, 0, false).await;
    sub.expect_publish("rep", b"marker").await;
}

/// [MQTT-3.10.4-4] The Server MUST respond to an UNSUBSUBCRIBE request by
/// sending an UNSUBACK packet with the same Packet Identifier; [MQTT-3.10.4-2]
/// it MUST stop adding any new messages for delivery to the Client.
///
/// Absence: a message published after the UNSUBACK, then a re-subscription,
/// then a marker; the subscriber's next message must be the marker.
#[tokio::test]
async fn unsubscribe_acked_with_same_id_then_no_delivery_mqtt_3_10_4_4() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("uns", 1)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("uns", b"before", 1, 1, false).await;
    sub.expect_publish("uns", b"before").await;
    sub.send(&raw::unsubscribe(0x0A0B, &["uns"])).await;
    assert_eq!(sub.recv().await.bytes(), [0xB0, 0x02, 0x0A, 0x0B]);
    publisher
        .publish_ok("uns", b"after unsubscribe", 1, 2, false)
        .await;
    sub.subscribe_ok(2, &[("uns", 1)]).await;
    publisher.publish_ok("uns", b"marker", 1, 3, false).await;
    sub.expect_publish("uns", b"marker").await;
}

/// [MQTT-3.10.4-2] Unsubscribing a wildcard filter (which lives in every topic
/// shard) stops delivery from all of them. Same proof as above.
#[tokio::test]
async fn unsubscribe_wildcard_filter_stops_delivery_mqtt_3_10_4_2() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("wu/+", 1)]).await;
    sub.unsubscribe_ok(2, &["wu/+"]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    for (n, topic) in ["wu/a", "wu/b", "wu/c", "wu/d"].into_iter().enumerate() {
        publisher
            .publish_ok(topic, b"after unsubscribe", 1, 1, false)
            .await;
        sub.subscribe_ok(3, &[(topic, 1)]).await;
        publisher.publish_ok(topic, b"marker", 1, 2, false).await;
        sub.expect_publish(topic, b"marker").await;
        sub.unsubscribe_ok(4 + n as u16, &[topic]).await;
    }
}

/// [MQTT-3.8.4-3] Replacing a wildcard subscription (held in every shard)
/// changes its QoS everywhere.
#[tokio::test]
async fn repeated_wildcard_subscription_replaces_the_old_one_mqtt_3_8_4_3() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("rw/+", 0)]).await;
    sub.subscribe_ok(2, &[("rw/+", 2)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    for (i, topic) in ["rw/a", "rw/b", "rw/c", "rw/d", "rw/e"]
        .into_iter()
        .enumerate()
    {
        publisher
            .publish_ok(topic, b"x", 2, i as u16 + 1, false)
            .await;
        let got = sub.recv_publishes(1).await;
        assert_eq!((got[0].topic.as_str(), got[0].qos), (topic, 2));
        publisher.publish_ok(topic, b"marker", 0, 0, false).await;
        sub.expect_publish(topic, b"marker").await;
    }
}

/// [MQTT-3.10.4-4] UNSUBACK with the same id also for a filter that was never
/// subscribed (and for several filters in one packet); other subscriptions
/// stay: unsubscribing one of two overlapping filters leaves the other, at
/// its own QoS.
#[tokio::test]
async fn unsubscribe_one_of_overlapping_filters_keeps_the_other_mqtt_3_10_4_4() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("o/a", 2), ("o/+", 0)]).await;
    sub.unsubscribe_ok(7, &["never/subscribed", "o/a"]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("o/a", b"x", 2, 1, false).await;
    let got = sub.recv_publishes(1).await;
    assert_eq!(
        got[0].qos, 0,
        "only `o/+` (QoS 0) should remain: {:?}",
        got[0]
    );
}

/// Matching rows checked by one subscriber per filter, on a broker with one
/// topic shard so that a marker published after every topic proves absence.
/// Each row is (filter, topic, matches).
async fn check_matching(rows: &[(&str, &str, bool)]) {
    let broker = TestBroker::start_with(|c| c.broker.shards = 1);
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    for (n, &(filter, topic, matches)) in rows.iter().enumerate() {
        let id = format!("sub{n}");
        let mut sub = RawClient::connected(broker.addr(), &id, true).await;
        sub.subscribe_ok(1, &[(filter, 0), ("marker", 0)]).await;
        publisher
            .publish_ok(topic, topic.as_bytes(), 0, 0, false)
            .await;
        publisher.publish_ok("marker", b"marker", 0, 0, false).await;
        let first = sub.recv_publish().await;
        if matches {
            assert_eq!(
                first.topic, topic,
                "filter {filter:?} should match topic {topic:?}"
            );
            let next = sub.recv_publish().await;
            assert_eq!(
                next.topic, "marker",
                "filter {filter:?}, topic {topic:?}: delivered twice?"
            );
        } else {
            assert_eq!(
                first.topic, "marker",
                "filter {filter:?} must not match topic {topic:?}"
            );
        }
    }
}

/// [MQTT-4.7.1-3] The single-level wildcard `+` matches exactly one topic
/// level, including an empty one.
#[tokio::test]
async fn single_level_wildcard_matches_one_level_mqtt_4_7_1_3() {
    check_matching(&[
        ("+", "a", true),
        ("+", "a/b", false),
        ("+", "/a", false),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("a/+/c", "a/b/c", true),
        ("a/+/c", "a//c", true),
        ("a/+/c", "a/b/c/d", false),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
    ])
    .await;
}

/// [MQTT-4.7.1-2] The multi-level wildcard `#` matches the parent and any
/// number of child levels: `sport/#` matches `sport` itself.
#[tokio::test]
async fn multi_level_wildcard_matches_parent_and_children_mqtt_4_7_1_2() {
    check_matching(&[
        ("#", "a", true),
        ("#", "a/b/c", true),
        ("#", "/", true),
        ("sport/#", "sport", true),
        ("sport/#", "sport/tennis/player1", true),
        ("sport/#", "sports", false),
        ("sport/#", "sport/", true),
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        ("sport/tennis/player1/#", "sport/tennis", false),
        ("a/+/#", "a/b", true),
        ("a/+/#", "a", false),
    ])
    .await;
}

/// [MQTT-4.7.3-1] (and section 4.7.3) Topic levels may be empty: `a//b` and
/// `/x` are distinct topics, matched level by level.
#[tokio::test]
async fn empty_topic_levels_are_levels_mqtt_4_7_3() {
    check_matching(&[
        ("a//b", "a//b", true),
        ("a//b", "a/b", false),
        ("a/b", "a//b", false),
        ("a//b", "a/x/b", false),
        ("+/x", "/x", true),
        ("/x", "/x", true),
        ("/x", "x", false),
        ("x", "/x", false),
        ("a/", "a", false),
        ("a", "a/", false),
    ])
    .await;
}

/// Topic names and filters are case sensitive and compared exactly (section
/// 4.7.3): no prefix or case-insensitive matches.
#[tokio::test]
async fn topic_matching_is_exact_and_case_sensitive_mqtt_4_7_3() {
    check_matching(&[
        ("ACCOUNTS", "Accounts", false),
        ("Accounts", "Accounts", true),
        ("a/b", "a/b/c", false),
        ("a/b/c", "a/b", false),
        ("a b", "a b", true),
        // [MQTT-1.5.3-3] U+FEFF is not stripped: it is part of the level.
        ("t", "\u{FEFF}t", false),
        ("\u{FEFF}t", "\u{FEFF}t", true),
        // [MQTT-4.7.3-4] No normalization: precomposed and decomposed é differ.
        ("caf\u{E9}", "cafe\u{301}", false),
        ("cafe\u{301}", "cafe\u{301}", true),
    ])
    .await;
}

/// [MQTT-4.7.2-1] The Server MUST NOT match Topic Filters starting with a
/// wildcard character (# or +) with Topic Names beginning with a $ character:
/// `#` and `+/x` skip `$ops/x`, `$ops/#` and `$ops/+` match it (a `$` topic
/// other than `$SYS`, which clients may not publish to: see tests/sys.rs).
#[tokio::test]
async fn dollar_topics_not_matched_by_leading_wildcards_mqtt_4_7_2_1() {
    check_matching(&[
        ("#", "$ops/x", false),
        ("+/x", "$ops/x", false),
        ("+", "$ops", false),
        ("+/#", "$ops/x", false),
        ("$ops/#", "$ops/x", true),
        ("$ops/+", "$ops/x", true),
        ("$ops/x", "$ops/x", true),
        ("#", "a/$ops", true),
        ("+/x", "a$/x", true),
    ])
    .await;
}

/// [MQTT-3.3.5-1] The Server MUST deliver the message to the Client
/// respecting the maximum QoS of all the matching subscriptions: `a/#` at QoS
/// 0 and `a/+` at QoS 2 give one copy at QoS 2.
#[tokio::test]
async fn overlapping_subscriptions_deliver_one_copy_at_max_qos_mqtt_3_3_5_1() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("a/#", 0), ("a/+", 2)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("a/b", b"overlap", 2, 1, false).await;
    let got = sub.recv_publishes(1).await;
    assert_eq!(
        (got[0].payload.as_slice(), got[0].qos),
        (&b"overlap"[..], 2)
    );
    publisher.publish_ok("a/b", b"marker", 0, 0, false).await;
    sub.expect_publish("a/b", b"marker").await;
    // `a/b/c` matches only `a/#`: one copy at QoS 0.
    publisher.publish_ok("a/b/c", b"deep", 2, 2, false).await;
    let got = sub.recv_publishes(1).await;
    assert_eq!((got[0].payload.as_slice(), got[0].qos), (&b"deep"[..], 0));
    publisher.publish_ok("a/b/c", b"marker", 0, 0, false).await;
    sub.expect_publish("a/b/c", b"marker").await;
}

/// [MQTT-3.3.5-1] Overlap between an exact filter and a wildcard (which live
/// in different places in the shard index): one copy, at the higher QoS.
#[tokio::test]
async fn exact_and_wildcard_overlap_deliver_one_copy_mqtt_3_3_5_1() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("x/y", 1), ("#", 0), ("x/+", 0)])
        .await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("x/y", b"once", 2, 1, false).await;
    let got = sub.recv_publishes(1).await;
    assert_eq!((got[0].payload.as_slice(), got[0].qos), (&b"once"[..], 1));
    publisher.publish_ok("x/y", b"marker", 0, 0, false).await;
    sub.expect_publish("x/y", b"marker").await;
}

/// A message goes to every matching subscriber, each at its own granted QoS
/// (section 3.3.5).
#[tokio::test]
async fn every_matching_subscriber_gets_a_copy_mqtt_3_3_5_1() {
    let broker = TestBroker::start();
    let mut subs = Vec::new();
    for (n, (filter, qos)) in [("fan/out", 0u8), ("fan/+", 1), ("#", 2)]
        .into_iter()
        .enumerate()
    {
        let mut s = RawClient::connected(broker.addr(), &format!("s{n}"), true).await;
        s.subscribe_ok(1, &[(filter, qos)]).await;
        subs.push((s, qos));
    }
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("fan/out", b"all", 2, 1, false).await;
    for (s, qos) in &mut subs {
        let got = s.recv_publishes(1).await;
        assert_eq!((got[0].payload.as_slice(), got[0].qos), (&b"all"[..], *qos));
    }
}

/// [MQTT-3.10.4-1] The Topic Filters in an UNSUBSCRIBE packet MUST be compared
/// character-by-character with the current set of Topic Filters held by the
/// Server for the Client; only an exact match deletes a subscription:
/// unsubscribing `u/b` or `u/#` leaves `u/+` in place.
#[tokio::test]
async fn unsubscribe_compares_filters_character_by_character_mqtt_3_10_4_1() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("u/+", 1)]).await;
    // [MQTT-3.10.4-5] UNSUBACK even when nothing was deleted.
    sub.unsubscribe_ok(2, &["u/b", "u/#", "+/+", "U/+"]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher
        .publish_ok("u/b", b"still subscribed", 1, 1, false)
        .await;
    sub.expect_publish("u/b", b"still subscribed").await;
    sub.unsubscribe_ok(3, &["u/+"]).await;
    publisher
        .publish_ok("u/b", b"after unsubscribe", 1, 2, false)
        .await;
    sub.subscribe_ok(4, &[("u/b", 1)]).await;
    publisher.publish_ok("u/b", b"marker", 1, 3, false).await;
    sub.expect_publish("u/b", b"marker").await;
}
