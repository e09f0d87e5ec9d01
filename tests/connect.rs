//! CONNECT and CONNACK (sections 3.1, 3.2, 3.1.4), tested with raw bytes:
//! what a valid first packet gets, and every way a CONNECT is refused.

use crate::common::raw::{self, connack_refused, ConnectOptions, Will, CONNACK_OK};
use crate::common::{RawClient, TestBroker};
use std::time::{Duration, Instant};

/// Opens a socket, sends `bytes` and asserts the broker closes it without
/// sending anything.
async fn closes_silently(broker: &TestBroker, bytes: &[u8]) {
    let mut c = RawClient::connect(broker.addr()).await;
    c.send_lossy(bytes).await;
    c.expect_closed_silently().await;
}

/// Opens a socket, sends `bytes` and asserts the broker answers exactly one
/// CONNACK with return code `code`, then closes.
async fn refused_with_code(broker: &TestBroker, bytes: &[u8], code: u8) {
    let mut c = RawClient::connect(broker.addr()).await;
    c.send_lossy(bytes).await;
    let got: Vec<Vec<u8>> = c.expect_closed().await.iter().map(|p| p.bytes()).collect();
    assert_eq!(
        got,
        vec![connack_refused(code)],
        "expected CONNACK with return code {code:#04x}, then a close"
    );
}

/// [MQTT-3.2.2-1] A clean session: CONNACK accepted, session present 0.
#[tokio::test]
async fn connect_accepted_mqtt_3_2_2_1() {
    let broker = TestBroker::start();
    let mut c = RawClient::connect(broker.addr()).await;
    c.send(&raw::connect("c1", true)).await;
    assert_eq!(c.recv().await.bytes(), CONNACK_OK);
    c.ping().await;
}

/// [MQTT-3.1.0-1] After a Network Connection is established by a Client to a
/// Server, the first Packet sent from the Client to the Server MUST be a
/// CONNECT Packet: a SUBSCRIBE first closes the connection.
#[tokio::test]
async fn subscribe_before_connect_closes_mqtt_3_1_0_1() {
    let broker = TestBroker::start();
    closes_silently(&broker, &raw::subscribe(1, &[("t", 0)])).await;
}

/// [MQTT-3.1.0-1] The first packet MUST be CONNECT: a PUBLISH first closes
/// the connection, and the message is not routed.
#[tokio::test]
async fn publish_before_connect_closes_and_is_not_routed_mqtt_3_1_0_1() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("t", 0)]).await;
    closes_silently(&broker, &raw::publish("t", b"sneaky", 0, 0, false, false)).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("t", b"marker", 0, 0, false).await;
    sub.expect_publish("t", b"marker").await;
}

/// [MQTT-3.1.0-1] The first packet MUST be CONNECT: a PINGREQ first gets no
/// PINGRESP, only a close.
#[tokio::test]
async fn pingreq_before_connect_closes_mqtt_3_1_0_1() {
    let broker = TestBroker::start();
    closes_silently(&broker, &raw::PINGREQ).await;
}

/// [MQTT-3.1.0-2] The Server MUST process a second CONNECT Packet sent from a
/// Client as a protocol violation and disconnect the Client.
#[tokio::test]
async fn second_connect_closes_connection_mqtt_3_1_0_2() {
    let broker = TestBroker::start();
    let mut c = RawClient::connected(broker.addr(), "twice", true).await;
    c.ping().await;
    c.send_lossy(&raw::connect("twice", true)).await;
    c.expect_closed_silently().await;
}

/// [MQTT-3.1.2-2] The Server MUST respond to the CONNECT Packet with a CONNACK
/// return code 0x01 (unacceptable protocol level) and then disconnect the
/// Client if the Protocol Level is not supported: level 6 (5 is MQTT 5.0).
#[tokio::test]
async fn protocol_level_6_refused_with_0x01_mqtt_3_1_2_2() {
    let broker = TestBroker::start();
    let bytes = ConnectOptions {
        level: 6,
        ..ConnectOptions::new("v6")
    }
    .bytes();
    refused_with_code(&broker, &bytes, 0x01).await;
}

/// [MQTT-3.1.2-2] Unsupported protocol level gets CONNACK 0x01 then a close:
/// level 3 with the 3.1.1 name "MQTT" (3.1 clients say "MQIsdp").
#[tokio::test]
async fn protocol_level_3_with_mqtt_name_refused_with_0x01_mqtt_3_1_2_2() {
    let broker = TestBroker::start();
    let bytes = ConnectOptions {
        level: 3,
        ..ConnectOptions::new("v3")
    }
    .bytes();
    refused_with_code(&broker, &bytes, 0x01).await;
}

/// [MQTT-3.1.2-1] If the protocol name is incorrect the Server MAY disconnect
/// the Client: roost closes without a CONNACK ("MQTX", and lower-case "mqtt").
#[tokio::test]
async fn bad_protocol_name_closes_mqtt_3_1_2_1() {
    let broker = TestBroker::start();
    for name in ["MQTX", "mqtt", "MQIsdpX", ""] {
        let bytes = ConnectOptions {
            protocol_name: name,
            ..ConnectOptions::new("badname")
        }
        .bytes();
        closes_silently(&broker, &bytes).await;
    }
}

/// MQTT 3.1 (protocol name "MQIsdp", level 3) is accepted, and such a client
/// can subscribe and receive.
#[tokio::test]
async fn mqtt_3_1_mqisdp_level_3_accepted() {
    let broker = TestBroker::start();
    let options = ConnectOptions {
        protocol_name: "MQIsdp",
        level: 3,
        ..ConnectOptions::new("old-client")
    };
    let mut c = RawClient::connected_expecting(broker.addr(), &options, &CONNACK_OK).await;
    c.subscribe_ok(1, &[("old/t", 1)]).await;
    c.send(&raw::publish("old/t", b"hi", 0, 0, false, false))
        .await;
    let p = c.expect_publish("old/t", b"hi").await;
    assert_eq!(p.qos, 0);
}

/// MQTT 3.1 (section 3.1, Client Identifier): between 1 and 23 characters;
/// a longer one gets CONNACK 0x02 (identifier rejected), then a close.
/// Exactly 23 is accepted.
#[tokio::test]
async fn mqtt_3_1_client_id_over_23_chars_refused_with_0x02() {
    let broker = TestBroker::start();
    let id24 = "abcdefghijklmnopqrstuvwx";
    assert_eq!(id24.len(), 24);
    let bytes = ConnectOptions {
        protocol_name: "MQIsdp",
        level: 3,
        ..ConnectOptions::new(id24)
    }
    .bytes();
    refused_with_code(&broker, &bytes, 0x02).await;
    let id23 = &id24[..23];
    let options = ConnectOptions {
        protocol_name: "MQIsdp",
        level: 3,
        ..ConnectOptions::new(id23)
    };
    let mut c = RawClient::connected_expecting(broker.addr(), &options, &CONNACK_OK).await;
    c.ping().await;
}

/// MQTT 3.1 has no server-assigned identifiers: an empty client id gets
/// CONNACK 0x02 even with clean session 1.
#[tokio::test]
async fn mqtt_3_1_empty_client_id_refused_with_0x02() {
    let broker = TestBroker::start();
    let bytes = ConnectOptions {
        protocol_name: "MQIsdp",
        level: 3,
        ..ConnectOptions::new("")
    }
    .bytes();
    refused_with_code(&broker, &bytes, 0x02).await;
}

/// [MQTT-3.1.2-3] The Server MUST validate that the reserved flag in the
/// CONNECT Control Packet is set to zero and disconnect the Client if it is
/// not zero.
#[tokio::test]
async fn reserved_connect_flag_closes_mqtt_3_1_2_3() {
    let broker = TestBroker::start();
    let bytes = ConnectOptions {
        extra_flags: 0x01,
        ..ConnectOptions::new("reserved")
    }
    .bytes();
    closes_silently(&broker, &bytes).await;
}

/// [MQTT-3.1.2-11] If the Will Flag is set to 0 the Will QoS and Will Retain
/// fields in the Connect Flags MUST be set to zero: both set closes.
#[tokio::test]
async fn will_qos_and_retain_without_will_flag_close_mqtt_3_1_2_11() {
    let broker = TestBroker::start();
    let bytes = ConnectOptions {
        extra_flags: 0x28,
        ..ConnectOptions::new("nowill")
    }
    .bytes();
    closes_silently(&broker, &bytes).await;
}

/// [MQTT-3.1.2-13] If the Will Flag is set to 0, then the Will QoS MUST be set
/// to 0 (0x00): will QoS 1 or 2 without the will flag closes.
#[tokio::test]
async fn will_qos_without_will_flag_closes_mqtt_3_1_2_13() {
    let broker = TestBroker::start();
    for flags in [0x08u8, 0x10] {
        let bytes = ConnectOptions {
            extra_flags: flags,
            ..ConnectOptions::new("nowill")
        }
        .bytes();
        closes_silently(&broker, &bytes).await;
    }
}

/// [MQTT-3.1.2-15] If the Will Flag is set to 0, then the Will Retain Flag
/// MUST be set to 0: will retain without the will flag closes.
#[tokio::test]
async fn will_retain_without_will_flag_closes_mqtt_3_1_2_15() {
    let broker = TestBroker::start();
    let bytes = ConnectOptions {
        extra_flags: 0x20,
        ..ConnectOptions::new("nowill")
    }
    .bytes();
    closes_silently(&broker, &bytes).await;
}

/// [MQTT-3.1.2-14] If the Will Flag is set to 1, the value of Will QoS can be
/// 0, 1, or 2. It MUST NOT be 3.
#[tokio::test]
async fn will_qos_3_closes_mqtt_3_1_2_14() {
    let broker = TestBroker::start();
    let will = Will {
        topic: "w",
        payload: b"bye",
        qos: 3,
        retain: false,
    };
    let bytes = ConnectOptions {
        will: Some(will),
        ..ConnectOptions::new("will3")
    }
    .bytes();
    closes_silently(&broker, &bytes).await;
}

/// [MQTT-3.1.2-22] If the User Name Flag is set to 0, the Password Flag MUST
/// be set to 0: a password without a user name closes.
#[tokio::test]
async fn password_without_username_closes_mqtt_3_1_2_22() {
    let broker = TestBroker::start();
    let bytes = ConnectOptions {
        password: Some(b"secret"),
        ..ConnectOptions::new("pw")
    }
    .bytes();
    closes_silently(&broker, &bytes).await;
}

/// [MQTT-3.1.2-19] [MQTT-3.1.2-21] User name and password, when flagged, are
/// read from the payload; roost has no authentication, so they are accepted.
#[tokio::test]
async fn username_and_password_accepted_mqtt_3_1_2_21() {
    let broker = TestBroker::start();
    let options = ConnectOptions {
        username: Some("user"),
        password: Some(b"pw"),
        ..ConnectOptions::new("creds")
    };
    let mut c = RawClient::connected_expecting(broker.addr(), &options, &CONNACK_OK).await;
    c.ping().await;
}

/// [MQTT-3.1.3-8] If the Client supplies a zero-byte ClientId with
/// CleanSession set to 0, the Server MUST respond to the CONNECT Packet with
/// a CONNACK return code 0x02 (Identifier rejected) and then close the
/// Network Connection.
#[tokio::test]
async fn empty_client_id_with_clean_0_refused_with_0x02_mqtt_3_1_3_8() {
    let broker = TestBroker::start();
    refused_with_code(&broker, &raw::connect("", false), 0x02).await;
}

/// [MQTT-3.1.3-6] A Server MAY allow a Client to supply a ClientId that has a
/// length of zero bytes, however if it does so the Server MUST treat this as
/// a special case and assign a unique ClientId to that Client: two such
/// clients are both accepted and neither takes the other over.
#[tokio::test]
async fn empty_client_id_with_clean_1_gets_unique_id_mqtt_3_1_3_6() {
    let broker = TestBroker::start();
    let mut a = RawClient::connected(broker.addr(), "", true).await;
    a.subscribe_ok(1, &[("anon/a", 0)]).await;
    let mut b = RawClient::connected(broker.addr(), "", true).await;
    b.subscribe_ok(1, &[("anon/b", 0)]).await;
    // Both still open, each with its own subscriptions.
    a.ping().await;
    b.ping().await;
    b.send(&raw::publish("anon/a", b"to a", 0, 0, false, false))
        .await;
    a.expect_publish("anon/a", b"to a").await;
    a.send(&raw::publish("anon/b", b"to b", 0, 0, false, false))
        .await;
    b.expect_publish("anon/b", b"to b").await;
    assert_eq!(
        roost::broker::ops::metrics::Metrics::get(&broker.handle.metrics().takeovers),
        0
    );
}

/// Section 3.1.4 (connect timeout, limits.connect_timeout_secs): a socket
/// that sends nothing is closed once the timeout passes.
#[tokio::test]
async fn silent_socket_closed_after_connect_timeout_mqtt_3_1_4() {
    let broker = TestBroker::start_with(|c| c.limits.connect_timeout_secs = 1);
    let mut c = RawClient::connect(broker.addr()).await;
    let start = Instant::now();
    c.expect_closed_silently().await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "closed too late: {elapsed:?}"
    );
}

/// Section 3.1.4 (connect timeout): a socket that sends half a CONNECT and
/// stops is closed once the timeout passes.
#[tokio::test]
async fn half_connect_closed_after_connect_timeout_mqtt_3_1_4() {
    let broker = TestBroker::start_with(|c| c.limits.connect_timeout_secs = 1);
    let mut c = RawClient::connect(broker.addr()).await;
    let bytes = raw::connect("half", true);
    c.send(&bytes[..bytes.len() / 2]).await;
    let start = Instant::now();
    c.expect_closed_silently().await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "closed too late: {elapsed:?}"
    );
}

/// [MQTT-3.1.4-2] If the ClientId represents a Client already connected to
/// the Server then the Server MUST disconnect the existing Client; the new
/// connection works.
#[tokio::test]
async fn same_client_id_takes_over_mqtt_3_1_4_2() {
    let broker = TestBroker::start();
    let mut first = RawClient::connected(broker.addr(), "dup-id", true).await;
    first.ping().await;
    let mut second = RawClient::connected(broker.addr(), "dup-id", true).await;
    first.expect_closed().await;
    second.ping().await;
    second.subscribe_ok(1, &[("takeover/t", 1)]).await;
    second
        .send(&raw::publish("takeover/t", b"works", 0, 0, false, false))
        .await;
    second.expect_publish("takeover/t", b"works").await;
}

/// [MQTT-3.2.0-1] The first packet sent from the Server to the Client MUST be
/// a CONNACK Packet. Clients need not wait for it (section 3.1.4): packets
/// pipelined behind the CONNECT in one write are all answered after it.
#[tokio::test]
async fn connack_first_then_pipelined_packets_answered_mqtt_3_2_0_1() {
    let broker = TestBroker::start();
    let mut c = RawClient::connect(broker.addr()).await;
    let mut bytes = raw::connect("eager", true);
    bytes.extend(raw::subscribe(1, &[("eager/t", 1)]));
    bytes.extend(raw::publish("eager/other", b"x", 1, 2, false, false));
    bytes.extend(raw::PINGREQ);
    c.send(&bytes).await;
    assert_eq!(
        c.recv().await.bytes(),
        CONNACK_OK,
        "CONNACK must come first"
    );
    // SUBACK answers the request sent first; PUBACK and PINGRESP follow
    // (in either order: PUBACK waits for the message to be routed).
    assert_eq!(c.recv().await.bytes(), raw::suback(1, &[1]));
    let mut rest = vec![c.recv().await.bytes(), c.recv().await.bytes()];
    rest.sort();
    assert_eq!(rest, vec![raw::puback(2), vec![0xD0, 0]]);
    // The subscription made before the CONNACK is in place.
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("eager/t", b"hello", 1, 1, false).await;
    c.expect_publish("eager/t", b"hello").await;
}

/// A PUBLISH pipelined right behind a SUBSCRIBE to the same topic, without
/// waiting for SUBACK, reaches the new subscription (as Mosquitto does):
/// the broker processes one client's packets in order [MQTT-4.6.0-6].
#[tokio::test]
async fn publish_pipelined_behind_subscribe_reaches_it() {
    let broker = TestBroker::start();
    let mut c = RawClient::connected(broker.addr(), "own", true).await;
    for i in 0..20u16 {
        let topic = format!("own/{i}");
        let mut bytes = raw::subscribe(i + 1, &[(topic.as_str(), 0)]);
        bytes.extend(raw::publish(&topic, b"mine", 0, 0, false, false));
        c.send(&bytes).await;
        assert_eq!(c.recv().await.bytes(), raw::suback(i + 1, &[0]));
        let p = c.recv().await.publish();
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice()),
            (topic.as_str(), &b"mine"[..])
        );
    }
}

/// [MQTT-3.1.4-5] If the Server rejects the CONNECT, it MUST NOT process any
/// data sent by the Client after the CONNECT Packet: a PUBLISH pipelined
/// behind a refused CONNECT is not routed.
#[tokio::test]
async fn data_after_refused_connect_not_processed_mqtt_3_1_4_5() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("t", 0)]).await;
    for (case, connect) in [
        ("empty id, clean 0", raw::connect("", false)),
        (
            "protocol level 6",
            ConnectOptions {
                level: 6,
                ..ConnectOptions::new("v6")
            }
            .bytes(),
        ),
    ] {
        let mut bytes = connect;
        bytes.extend(raw::publish("t", b"must not be routed", 0, 0, false, false));
        let mut c = RawClient::connect(broker.addr()).await;
        c.send(&bytes).await;
        let got = c.expect_closed().await;
        assert_eq!(
            got.len(),
            1,
            "{case}: expected only the refusing CONNACK, got {got:?}"
        );
        let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
        publisher
            .publish_ok("t", case.as_bytes(), 0, 0, false)
            .await;
        sub.expect_publish("t", case.as_bytes()).await;
    }
}

/// [MQTT-3.1.0-1] A CONNECT that follows a non-CONNECT first packet in the
/// same write is not processed: no CONNACK, and the PUBLISH after it is not
/// routed [MQTT-4.8.0-1].
#[tokio::test]
async fn connect_after_a_wrong_first_packet_not_processed_mqtt_3_1_0_1() {
    let broker = TestBroker::start();
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("t", 0)]).await;
    let mut bytes = raw::PINGREQ.to_vec();
    bytes.extend(raw::connect("late", true));
    bytes.extend(raw::publish("t", b"must not be routed", 0, 0, false, false));
    closes_silently(&broker, &bytes).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("t", b"marker", 0, 0, false).await;
    sub.expect_publish("t", b"marker").await;
}

/// [MQTT-3.1.3-5] The Server MUST allow ClientIds which are between 1 and 23
/// UTF-8 encoded bytes in length, and that contain only the characters
/// 0-9a-zA-Z; it MAY allow more: roost accepts longer ids with any
/// characters [MQTT-3.1.3-4].
#[tokio::test]
async fn client_ids_of_1_to_23_alphanumerics_accepted_mqtt_3_1_3_5() {
    let broker = TestBroker::start();
    let long = "x".repeat(200);
    for id in [
        "a",
        "0123456789abcdefghijKLM",
        "Z9",
        "with/slash and spaces",
        "ünïcødé-✓",
        long.as_str(),
    ] {
        let (mut c, ack) = RawClient::connect_with(broker.addr(), &ConnectOptions::new(id)).await;
        assert_eq!(ack.bytes(), CONNACK_OK, "client id {id:?}");
        c.ping().await;
    }
}
