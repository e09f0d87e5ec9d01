//! MQTT 5.0 on the wire: CONNECT and CONNACK with properties, reason codes
//! on acknowledgements and DISCONNECT, topic aliases from the client, and
//! 5.0 and 3.1.1 clients on one broker. Packets are built by hand in
//! `common::raw5`; the last tests use rumqttc's 5.0 client.

use crate::common::raw::{self, RawClient};
use crate::common::raw5::{self, ConnAck, Prop};
use crate::common::{TestBroker, TIMEOUT};

/// [MQTT-3.1.2-2] level 5 is supported: CONNACK in the 5.0 form (reason
/// code, then properties) says what the server allows (section 3.2.2.3):
/// its Receive Maximum, Maximum Packet Size and Topic Alias Maximum, and
/// that shared subscriptions are not offered yet (the default is
/// "available"; so it is for subscription identifiers).
#[tokio::test]
async fn a_v5_connect_gets_a_v5_connack_with_the_servers_limits_mqtt_3_1_2_2() {
    let broker = TestBroker::start_with(|c| {
        c.limits.max_routing_backlog = 500;
        c.limits.max_packet_size = 65536;
        c.limits.topic_alias_maximum = 7;
    });
    let (_c, ack) = RawClient::connected_v5(broker.addr(), "v5", true, &[]).await;
    assert!(!ack.session_present);
    assert_eq!(ack.number(raw5::RECEIVE_MAXIMUM), Some(500));
    assert_eq!(ack.number(raw5::MAXIMUM_PACKET_SIZE), Some(65536));
    assert_eq!(ack.number(raw5::TOPIC_ALIAS_MAXIMUM), Some(7));
    assert_eq!(
        ack.number(raw5::SUBSCRIPTION_ID_AVAILABLE),
        None,
        "available"
    );
    assert_eq!(ack.number(raw5::SHARED_SUBSCRIPTION_AVAILABLE), Some(0));
    assert_eq!(ack.string(raw5::ASSIGNED_CLIENT_ID), None);
    assert_eq!(ack.number(raw5::SERVER_KEEP_ALIVE), None);
}

/// [MQTT-3.1.3-6] [MQTT-3.1.3-7] An empty client id is assigned one, also
/// with Clean Start 0, and CONNACK names it; [MQTT-3.2.2-21] a keep-alive
/// above `max_keepalive` is lowered and told (3.1.1 is refused instead).
#[tokio::test]
async fn an_empty_id_is_assigned_and_a_long_keep_alive_is_lowered_mqtt_3_1_3_7_and_3_2_2_21() {
    let broker = TestBroker::start_with(|c| c.limits.max_keepalive = 30);
    let mut c = RawClient::connect(broker.addr()).await;
    c.send(&raw5::connect("", false, 120, &[])).await;
    let ack = ConnAck::parse(&c.recv().await);
    assert_eq!(ack.reason, 0);
    let assigned = ack.string(raw5::ASSIGNED_CLIENT_ID).expect("assigned id");
    assert!(assigned.starts_with("roost-"), "{assigned}");
    assert_eq!(ack.number(raw5::SERVER_KEEP_ALIVE), Some(30));
}

/// A 5.0 publisher and a 3.1.1 subscriber, and the other way round, at
/// each QoS: the 5.0 side sees 5.0 packets (a PUBLISH with a property
/// block), the 3.1.1 side 3.1.1 ones.
#[tokio::test]
async fn v5_and_v311_clients_exchange_messages_at_every_qos() {
    let broker = TestBroker::start();
    let (mut v5, _) = RawClient::connected_v5(broker.addr(), "five", true, &[]).await;
    let mut v311 = RawClient::connected(broker.addr(), "three", true).await;
    v311.subscribe_ok(1, &[("to/three", 2)]).await;
    v5.send(&raw5::subscribe(1, &[("to/five", 2)], &[])).await;
    let suback = v5.recv().await;
    // Packet id, an empty property block, QoS 2 granted.
    assert_eq!(suback.bytes(), [0x90, 4, 0, 1, 0, 2]);
    for qos in 0..=2u8 {
        let id = u16::from(qos) + 10;
        // 5.0 → 3.1.1
        v5.send(&raw5::publish("to/three", b"from five", qos, id, &[]))
            .await;
        match qos {
            0 => {}
            1 => assert_eq!(v5.recv().await.bytes(), raw::puback(id)),
            _ => {
                assert_eq!(v5.recv().await.bytes(), raw::pubrec(id));
                v5.send(&raw::pubrel(id)).await;
                assert_eq!(v5.recv().await.bytes(), raw::pubcomp(id));
            }
        }
        let got = v311.recv_publishes(1).await;
        assert_eq!((got[0].topic.as_str(), got[0].qos), ("to/three", qos));
        assert_eq!(got[0].payload, b"from five");
        // 3.1.1 → 5.0
        v311.publish_ok("to/five", b"from three", qos, id, false)
            .await;
        let p = v5.recv().await;
        let p = raw5::Publish::parse(&p);
        assert_eq!(
            (p.topic.as_str(), p.qos, p.payload.as_slice(), p.props.len()),
            ("to/five", qos, &b"from three"[..], 0)
        );
        match (qos, p.packet_id) {
            (1, Some(id)) => v5.send(&raw::puback(id)).await,
            (2, Some(id)) => {
                v5.send(&raw::pubrec(id)).await;
                assert_eq!(v5.recv().await.bytes(), raw::pubrel(id));
                v5.send(&raw::pubcomp(id)).await;
            }
            _ => {}
        }
    }
}

/// UNSUBACK carries a reason code per filter in 5.0, in the filters' order
/// (section 3.11.3): 0x00 where the subscription existed, 0x11 where it
/// did not.
#[tokio::test]
async fn unsuback_says_which_subscriptions_existed() {
    let broker = TestBroker::start();
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "u", true, &[]).await;
    c.send(&raw5::subscribe(1, &[("a", 0)], &[])).await;
    assert_eq!(c.recv().await.kind(), 9);
    c.send(&raw5::unsubscribe(2, &["a", "b"])).await;
    assert_eq!(c.recv().await.bytes(), [0xB0, 5, 0, 2, 0, 0x00, 0x11]);
}

/// [MQTT-3.3.2-12] roost accepts topic aliases 1 to the maximum it
/// announced: an alias set with a topic name is used by a PUBLISH with an
/// empty one, and the subscriber gets the full name.
#[tokio::test]
async fn a_topic_alias_stands_for_its_topic_mqtt_3_3_2_12() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("long/topic/name", 0)]).await;
    let (mut c, ack) = RawClient::connected_v5(broker.addr(), "aliaser", true, &[]).await;
    assert_eq!(ack.number(raw5::TOPIC_ALIAS_MAXIMUM), Some(10));
    let alias = [Prop::Two(raw5::TOPIC_ALIAS, 10)];
    c.send(&raw5::publish("long/topic/name", b"one", 0, 0, &alias))
        .await;
    c.send(&raw5::publish("", b"two", 1, 1, &alias)).await;
    assert_eq!(c.recv().await.bytes(), raw::puback(1));
    sub.expect_publish("long/topic/name", b"one").await;
    sub.expect_publish("long/topic/name", b"two").await;
}

/// [MQTT-3.3.2-8] alias 0 and [MQTT-3.3.2-9] one above the maximum get
/// DISCONNECT 0x94 (topic alias invalid), not a dropped socket; an alias
/// never set, with an empty topic, is a protocol error (0x82).
#[tokio::test]
async fn an_invalid_topic_alias_gets_disconnect_0x94_mqtt_3_3_2_8_and_3_3_2_9() {
    let broker = TestBroker::start();
    for (case, alias, topic, reason) in [
        ("alias 0", 0, "t", 0x94),
        ("above the maximum", 11, "t", 0x94),
        ("never set", 3, "", 0x82),
    ] {
        let (mut c, _) = RawClient::connected_v5(broker.addr(), case, true, &[]).await;
        let props = [Prop::Two(raw5::TOPIC_ALIAS, alias)];
        c.send(&raw5::publish(topic, b"x", 0, 0, &props)).await;
        c.expect_disconnect(reason).await;
    }
}

/// A property not allowed in its packet makes it malformed (section
/// 2.2.2.2: DISCONNECT 0x81); one given twice is a protocol error (0x82);
/// AUTH without an Authentication Method in CONNECT is one too (section
/// 4.12).
#[tokio::test]
async fn bad_properties_and_unasked_auth_get_a_disconnect_with_the_reason() {
    let broker = TestBroker::start();
    let will_delay = Prop::Four(raw5::WILL_DELAY, 1);
    let alias = Prop::Two(raw5::TOPIC_ALIAS, 1);
    let cases: [(&str, Vec<u8>, u8); 3] = [
        (
            "will delay in PUBLISH",
            raw5::publish("t", b"x", 0, 0, &[will_delay]),
            0x81,
        ),
        (
            "topic alias twice",
            raw5::publish("t", b"x", 0, 0, &[alias.clone(), alias]),
            0x82,
        ),
        ("AUTH", vec![0xF0, 0], 0x82),
    ];
    for (case, bytes, reason) in cases {
        let (mut c, _) = RawClient::connected_v5(broker.addr(), case, true, &[]).await;
        c.send(&bytes).await;
        c.expect_disconnect(reason).await;
    }
}

/// [MQTT-3.14.4-3] A 5.0 DISCONNECT with reason 0x00 discards the will;
/// the broker closes without a DISCONNECT of its own. When a new
/// connection takes the client id over, the old one is told 0x8E
/// (session taken over).
#[tokio::test]
async fn takeover_is_told_with_0x8e_mqtt_3_1_4_3() {
    let broker = TestBroker::start();
    let (mut old, _) = RawClient::connected_v5(broker.addr(), "twice", true, &[]).await;
    let (mut new, _) = RawClient::connected_v5(broker.addr(), "twice", true, &[]).await;
    old.expect_disconnect(0x8E).await;
    new.send(&raw5::disconnect(0, &[])).await;
    new.expect_closed_silently().await;
}

/// [MQTT-3.1.2-23] A 5.0 session with a Session Expiry Interval above 0
/// outlives its connection: messages published while it is away are
/// delivered when it returns with Clean Start 0, and CONNACK says the
/// session is present. One with interval 0 (the default) does not.
#[tokio::test]
async fn a_session_with_an_expiry_interval_keeps_its_messages_mqtt_3_1_2_23() {
    let broker = TestBroker::start();
    let expiry = [Prop::Four(raw5::SESSION_EXPIRY, 3600)];
    let (mut c, ack) = RawClient::connected_v5(broker.addr(), "keeps", true, &expiry).await;
    assert!(!ack.session_present);
    c.send(&raw5::subscribe(1, &[("kept", 1)], &[])).await;
    assert_eq!(c.recv().await.kind(), 9);
    c.send(&raw5::disconnect(0, &[])).await;
    c.expect_closed_silently().await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher
        .publish_ok("kept", b"while away", 1, 1, false)
        .await;
    let (mut c, ack) = RawClient::connected_v5(broker.addr(), "keeps", false, &expiry).await;
    assert!(ack.session_present, "[MQTT-3.2.2-2]");
    let p = raw5::Publish::parse(&c.recv().await);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("kept", &b"while away"[..])
    );
    c.send(&raw::puback(p.packet_id.unwrap())).await;

    // Interval 0: nothing is kept.
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "forgets", true, &[]).await;
    c.send(&raw5::subscribe(1, &[("forgot", 1)], &[])).await;
    assert_eq!(c.recv().await.kind(), 9);
    c.send(&raw5::disconnect(0, &[])).await;
    c.expect_closed_silently().await;
    let (_c, ack) = RawClient::connected_v5(broker.addr(), "forgets", false, &[]).await;
    assert!(!ack.session_present);
}

/// rumqttc's 5.0 client connects, subscribes and gets what a 3.1.1 client
/// publishes, at QoS 1.
#[tokio::test]
async fn rumqttc_v5_subscribes_and_receives() {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let broker = TestBroker::start();
    let options = MqttOptions::new("rumqttc-v5", "127.0.0.1", broker.port());
    let (client, mut events) = AsyncClient::new(options, 10);
    client.subscribe("v5/#", QoS::AtLeastOnce).await.unwrap();
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    let mut published = false;
    let got = tokio::time::timeout(TIMEOUT, async {
        loop {
            match events.poll().await.expect("event loop") {
                Event::Incoming(Packet::ConnAck(ack)) => {
                    assert_eq!(
                        ack.code,
                        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
                    );
                }
                Event::Incoming(Packet::SubAck(_)) if !published => {
                    publisher.publish_ok("v5/x", b"hello", 1, 1, false).await;
                    published = true;
                }
                Event::Incoming(Packet::Publish(p)) => return p,
                _ => {}
            }
        }
    })
    .await
    .expect("a PUBLISH within the timeout");
    assert_eq!(&got.topic[..], b"v5/x");
    assert_eq!(&got.payload[..], b"hello");
    assert_eq!(got.qos, QoS::AtLeastOnce);
}

/// [MQTT-3.3.4-9] roost sends a client no more unacknowledged QoS 1/2
/// PUBLISHes than its Receive Maximum: with 2, the third of three waits
/// for a PUBACK.
#[tokio::test]
async fn the_clients_receive_maximum_bounds_what_is_in_flight_mqtt_3_3_4_9() {
    let broker = TestBroker::start();
    let two = [Prop::Two(raw5::RECEIVE_MAXIMUM, 2)];
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "slow", true, &two).await;
    c.send(&raw5::subscribe(1, &[("w", 1)], &[])).await;
    assert_eq!(c.recv().await.kind(), 9);
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    for n in 1..=3u16 {
        publisher
            .publish_ok("w", &n.to_be_bytes(), 1, n, false)
            .await;
    }
    let first = raw5::Publish::parse(&c.recv().await);
    let second = raw5::Publish::parse(&c.recv().await);
    assert_eq!((first.payload, second.payload), (vec![0, 1], vec![0, 2]));
    c.expect_nothing_within(
        std::time::Duration::from_millis(300),
        "a third PUBLISH beyond Receive Maximum 2",
    )
    .await;
    c.send(&raw::puback(first.packet_id.unwrap())).await;
    let third = raw5::Publish::parse(&c.recv().await);
    assert_eq!(third.payload, vec![0, 3]);
}

/// [MQTT-3.1.2-4] Clean Start 1 discards the existing session, though the
/// new one has an expiry interval too: its queued message is gone and
/// CONNACK says no session is present [MQTT-3.2.2-2].
#[tokio::test]
async fn clean_start_discards_a_kept_session_mqtt_3_1_2_4() {
    let broker = TestBroker::start();
    let expiry = [Prop::Four(raw5::SESSION_EXPIRY, 3600)];
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "restart", true, &expiry).await;
    c.send(&raw5::subscribe(1, &[("old", 1)], &[])).await;
    assert_eq!(c.recv().await.kind(), 9);
    c.send(&raw5::disconnect(0, &[])).await;
    c.expect_closed_silently().await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("old", b"queued", 1, 1, false).await;
    let (mut c, ack) = RawClient::connected_v5(broker.addr(), "restart", true, &expiry).await;
    assert!(!ack.session_present);
    c.expect_nothing_within(
        std::time::Duration::from_millis(300),
        "a message of the discarded session",
    )
    .await;
    // The new session is kept: it has no subscription, and is present.
    c.send(&raw5::disconnect(0, &[])).await;
    c.expect_closed_silently().await;
    let (_c, ack) = RawClient::connected_v5(broker.addr(), "restart", false, &expiry).await;
    assert!(ack.session_present);
}

/// A 5.0 client is told why a PUBLISH is refused: 0x87 (not authorized)
/// when the ACL does not let it write the topic, in PUBACK and PUBREC
/// (section 3.4.2.1), where a 3.1.1 client gets a plain acknowledgement.
#[tokio::test]
async fn a_publish_the_acl_refuses_gets_0x87() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic readwrite open/#\n").unwrap();
    let broker = TestBroker::start_with(|c| c.auth.acl_file = acl.clone());
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "writer", true, &[]).await;
    c.send(&raw5::publish("closed/x", b"no", 1, 1, &[])).await;
    assert_eq!(c.recv().await.bytes(), [0x40, 3, 0, 1, 0x87]);
    c.send(&raw5::publish("closed/x", b"no", 2, 2, &[])).await;
    assert_eq!(c.recv().await.bytes(), [0x50, 3, 0, 2, 0x87]);
    // A PUBREC of 0x80 or above ends the flow: the next one goes on.
    c.send(&raw5::publish("open/x", b"yes", 1, 3, &[])).await;
    assert_eq!(c.recv().await.bytes(), raw::puback(3));
}

/// A payload said to be UTF-8 (Payload Format Indicator 1, section
/// 3.3.2.3.2) that is not gets 0x99 (payload format invalid): in PUBACK at QoS 1 (not
/// routed), in DISCONNECT at QoS 0, which has no acknowledgement.
#[tokio::test]
async fn a_payload_that_is_not_the_utf8_it_says_gets_0x99() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("f/#", 1)]).await;
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "bytes", true, &[]).await;
    let utf8 = [Prop::Byte(0x01, 1)];
    c.send(&raw5::publish("f/bad", &[0xFF, 0xFE], 1, 1, &utf8))
        .await;
    assert_eq!(c.recv().await.bytes(), [0x40, 3, 0, 1, 0x99]);
    c.send(&raw5::publish("f/good", "é".as_bytes(), 1, 2, &utf8))
        .await;
    assert_eq!(c.recv().await.bytes(), raw::puback(2));
    sub.expect_publish("f/good", "é".as_bytes()).await;
    c.send(&raw5::publish("f/bad", &[0xFF], 0, 0, &utf8)).await;
    c.expect_disconnect(0x99).await;
}

/// Request/response (section 4.10): a client that asks for Response
/// Information (property 0x19 = 1) is told the configured prefix and its
/// client id; one that does not ask is told nothing.
#[tokio::test]
async fn response_information_is_given_when_asked() {
    let broker = TestBroker::start_with(|c| {
        c.broker.response_information_prefix = "reply/".into();
    });
    let ask = [Prop::Byte(0x19, 1)];
    let (_c, ack) = RawClient::connected_v5(broker.addr(), "asker", true, &ask).await;
    assert_eq!(ack.string(0x1A), Some("reply/asker"));
    let (_c, ack) = RawClient::connected_v5(broker.addr(), "quiet", true, &[]).await;
    assert_eq!(ack.string(0x1A), None);
}

/// [MQTT-3.1.2-24] [MQTT-3.1.2-25] roost never sends a client a packet
/// above the Maximum Packet Size it set: such a message is discarded and
/// the session goes on as if it was delivered (the QoS 1 window does not
/// wait for it), counted.
#[tokio::test]
async fn a_message_above_the_clients_maximum_packet_size_is_dropped_mqtt_3_1_2_25() {
    let broker = TestBroker::start();
    let small = [
        Prop::Four(raw5::MAXIMUM_PACKET_SIZE, 64),
        Prop::Two(raw5::RECEIVE_MAXIMUM, 1),
    ];
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "small", true, &small).await;
    c.send(&raw5::subscribe(1, &[("m/#", 1)], &[])).await;
    assert_eq!(c.recv().await.kind(), 9);
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher
        .publish_ok("m/big", &[b'x'; 100], 1, 1, false)
        .await;
    publisher.publish_ok("m/small", b"fits", 1, 2, false).await;
    let got = raw5::Publish::parse(&c.recv().await);
    assert_eq!(
        got.payload, b"fits",
        "the big one dropped, the window not held"
    );
    let dropped = broker
        .handle
        .metrics()
        .oversized_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 1);
}

/// DISCONNECT and the Session Expiry Interval (section 3.14.2.2.2): from
/// 0 it may not be changed (0x82); set to 0 there, a persistent session
/// ends with the connection. [MQTT-3.14.4-3] DISCONNECT 0x04 asks for the
/// will to be published.
#[tokio::test]
async fn disconnect_may_end_a_session_and_may_ask_for_the_will() {
    let broker = TestBroker::start();
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "zero", true, &[]).await;
    c.send(&raw5::disconnect(
        0,
        &[Prop::Four(raw5::SESSION_EXPIRY, 60)],
    ))
    .await;
    c.expect_disconnect(0x82).await;

    let expiry = [Prop::Four(raw5::SESSION_EXPIRY, 3600)];
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "ends", true, &expiry).await;
    c.send(&raw5::disconnect(0, &[Prop::Four(raw5::SESSION_EXPIRY, 0)]))
        .await;
    c.expect_closed_silently().await;
    let (_c, ack) = RawClient::connected_v5(broker.addr(), "ends", false, &expiry).await;
    assert!(!ack.session_present, "the session ended at DISCONNECT");

    let mut watcher = RawClient::connected(broker.addr(), "watcher", true).await;
    watcher.subscribe_ok(1, &[("wills/#", 0)]).await;
    let packet = raw5::connect_with_will("leaver", &[], "wills/leaver", b"gone", &[]);
    let mut c = RawClient::connect(broker.addr()).await;
    c.send(&packet).await;
    assert_eq!(ConnAck::parse(&c.recv().await).reason, 0);
    c.send(&raw5::disconnect(0x04, &[])).await;
    c.expect_closed_silently().await;
    watcher.expect_publish("wills/leaver", b"gone").await;
}

/// Server redirection (section 4.11): with `[redirect]` set by a reload, a
/// new 5.0 client gets CONNACK 0x9C (use another server) naming the
/// server, or 0x9D (server moved) when permanent; clients connected
/// already stay, 3.1.1 clients are accepted; a reload turns it off.
#[tokio::test]
async fn server_redirection_is_turned_on_and_off_by_a_reload() {
    let broker = TestBroker::start();
    let (mut before, _) = RawClient::connected_v5(broker.addr(), "before", true, &[]).await;
    let redirected = |reference: &str, permanent: bool| {
        let mut c = broker.config.clone();
        c.redirect.server_reference = reference.into();
        c.redirect.permanent = permanent;
        c
    };
    async fn refused(broker: &TestBroker, id: &str) -> ConnAck {
        let mut c = RawClient::connect(broker.addr()).await;
        c.send(&raw5::connect(id, true, 60, &[])).await;
        let got = c.expect_closed().await;
        assert_eq!(got.len(), 1, "one CONNACK, then the close: {got:?}");
        ConnAck::parse(&got[0])
    }
    for (permanent, reason) in [(false, 0x9C), (true, 0x9D)] {
        broker
            .handle
            .reload(&redirected("mqtt2.example.net:1883", permanent))
            .unwrap();
        let ack = refused(&broker, "moving").await;
        assert_eq!(ack.reason, reason);
        assert_eq!(ack.string(0x1C), Some("mqtt2.example.net:1883"));
    }
    RawClient::connected(broker.addr(), "three", true).await;
    before.ping().await;
    broker.handle.reload(&broker.config).unwrap();
    RawClient::connected_v5(broker.addr(), "after", true, &[]).await;
}

/// [MQTT-3.1.2-26] [MQTT-3.3.2-11] roost assigns topic aliases to a client
/// that accepts them, never above its Topic Alias Maximum: the first
/// topics get one (set with the topic name, then used with an empty one),
/// later ones go out in full; the bytes saved are counted.
#[tokio::test]
async fn roost_assigns_topic_aliases_within_the_clients_maximum_mqtt_3_3_2_11() {
    let broker = TestBroker::start();
    let two = [Prop::Two(raw5::TOPIC_ALIAS_MAXIMUM, 2)];
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "aliased", true, &two).await;
    c.send(&raw5::subscribe(1, &[("sensors/#", 0)], &[])).await;
    assert_eq!(c.recv().await.kind(), 9);
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    for topic in [
        "sensors/1",
        "sensors/1",
        "sensors/2",
        "sensors/3",
        "sensors/2",
    ] {
        publisher
            .publish_ok(topic, topic.as_bytes(), 0, 0, false)
            .await;
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        let p = raw5::Publish::parse(&c.recv().await);
        let alias = p.props.iter().find_map(|p| match p {
            Prop::Two(raw5::TOPIC_ALIAS, a) => Some(*a),
            _ => None,
        });
        got.push((p.topic, alias, String::from_utf8(p.payload).unwrap()));
    }
    let expected = [
        ("sensors/1", Some(1), "sensors/1"),
        ("", Some(1), "sensors/1"),
        ("sensors/2", Some(2), "sensors/2"),
        ("sensors/3", None, "sensors/3"),
        ("", Some(2), "sensors/2"),
    ];
    let got: Vec<(&str, Option<u16>, &str)> = got
        .iter()
        .map(|(t, a, p)| (t.as_str(), *a, p.as_str()))
        .collect();
    assert_eq!(got, expected);
    let saved = broker
        .handle
        .metrics()
        .topic_alias_bytes_saved
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        saved,
        2 * (9 - 3) as u64,
        "two PUBLISHes without their 9-byte topic"
    );
}

/// Will Delay Interval (section 3.1.3.2.2): the will of a persistent
/// session is published once the delay has passed; [MQTT-3.1.3-9] not if
/// the session resumes first; at once if the session ends with the
/// connection (expiry 0), which comes first.
#[tokio::test]
async fn a_will_waits_for_its_delay_unless_the_session_resumes_mqtt_3_1_3_9() {
    let broker = TestBroker::start();
    let mut watcher = RawClient::connected(broker.addr(), "watcher", true).await;
    watcher.subscribe_ok(1, &[("wills/#", 0)]).await;
    let expiry = [Prop::Four(raw5::SESSION_EXPIRY, 3600)];
    async fn connected(
        addr: std::net::SocketAddr,
        id: &str,
        connect: &[Prop],
        secs: u32,
    ) -> RawClient {
        let delay = [Prop::Four(raw5::WILL_DELAY, secs)];
        let topic = format!("wills/{id}");
        let mut c = RawClient::connect(addr).await;
        c.send(&raw5::connect_with_will(
            id, connect, &topic, b"gone", &delay,
        ))
        .await;
        assert_eq!(ConnAck::parse(&c.recv().await).reason, 0);
        c
    }
    let addr = broker.addr();
    // Dropped without DISCONNECT: the will comes after its delay.
    drop(connected(addr, "late", &expiry, 1).await);
    watcher
        .expect_nothing_within(
            std::time::Duration::from_millis(500),
            "a will before its delay",
        )
        .await;
    watcher.expect_publish("wills/late", b"gone").await;

    // The session resumes within the delay: no will.
    drop(connected(addr, "back", &expiry, 2).await);
    let (_back, ack) = RawClient::connected_v5(broker.addr(), "back", false, &expiry).await;
    assert!(ack.session_present);
    watcher
        .expect_nothing_within(
            std::time::Duration::from_millis(3000),
            "the will of a resumed session",
        )
        .await;

    // No session expiry: the session ends at once, and the will with it.
    drop(connected(addr, "ends", &[], 60).await);
    watcher.expect_publish("wills/ends", b"gone").await;
}

/// [MQTT-3.3.2-14] A Response Topic with a wildcard is a protocol error
/// (0x82); enhanced authentication, not offered, gets CONNACK 0x8C (bad
/// authentication method, section 4.12) naming no method of its own.
#[tokio::test]
async fn a_wildcard_response_topic_and_an_unknown_auth_method_are_refused_mqtt_3_3_2_14() {
    let broker = TestBroker::start();
    let (mut c, _) = RawClient::connected_v5(broker.addr(), "asks", true, &[]).await;
    let wild = [Prop::Str(0x08, "replies/+".into())];
    c.send(&raw5::publish("q", b"x", 0, 0, &wild)).await;
    c.expect_disconnect(0x82).await;

    let mut c = RawClient::connect(broker.addr()).await;
    let scram = [Prop::Str(0x15, "SCRAM-SHA-256".into())];
    c.send(&raw5::connect("scram", true, 60, &scram)).await;
    let got = c.expect_closed().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(ConnAck::parse(&got[0]).reason, 0x8C);
}

/// [MQTT-3.1.2-23] A session is kept for its own Session Expiry Interval,
/// then removed with its queue: one of 1 s at CONNECT, one changed to 1 s
/// by DISCONNECT (section 3.14.2.2.2) are gone after it; one of an hour is
/// still there.
#[tokio::test]
async fn each_session_expires_after_its_own_interval_mqtt_3_1_2_23() {
    let broker = TestBroker::start();
    let secs = |s| [Prop::Four(raw5::SESSION_EXPIRY, s)];
    for (id, at_connect, at_disconnect) in [
        ("short", 1, None),
        ("changed", 3600, Some(1)),
        ("long", 3600, None),
    ] {
        let (mut c, _) = RawClient::connected_v5(broker.addr(), id, true, &secs(at_connect)).await;
        c.send(&raw5::subscribe(1, &[("e/#", 1)], &[])).await;
        assert_eq!(c.recv().await.kind(), 9);
        let props: Vec<Prop> = at_disconnect.map(|s| secs(s).to_vec()).unwrap_or_default();
        c.send(&raw5::disconnect(0, &props)).await;
        c.expect_closed_silently().await;
    }
    // The condition under test is time itself: the interval must pass.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    for (id, present) in [("short", false), ("changed", false), ("long", true)] {
        let (_c, ack) = RawClient::connected_v5(broker.addr(), id, false, &secs(3600)).await;
        assert_eq!(ack.session_present, present, "{id}");
    }
}
