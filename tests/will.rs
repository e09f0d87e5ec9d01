//! The will message (sections 3.1.2.5 to 3.1.2.7, 3.14.4): published when
//! a connection ends for any reason other than DISCONNECT, with its QoS and
//! retain flag; discarded after DISCONNECT.

use crate::common::raw::{self, ConnectOptions, Will, CONNACK_OK};
use crate::common::{RawClient, TestBroker};
use roost::broker::ops::metrics::Metrics;

/// A client `id` whose will is `payload` on `topic` at `qos`/`retain`.
async fn with_will(
    broker: &TestBroker,
    id: &str,
    topic: &str,
    payload: &[u8],
    qos: u8,
    retain: bool,
) -> RawClient {
    let will = Will {
        topic,
        payload,
        qos,
        retain,
    };
    let options = ConnectOptions {
        will: Some(will),
        ..ConnectOptions::new(id)
    };
    let mut c = RawClient::connected_expecting(broker.addr(), &options, &CONNACK_OK).await;
    c.ping().await;
    c
}

/// A watcher subscribed to `filter` at `qos`.
async fn watcher(broker: &TestBroker, filter: &str, qos: u8) -> RawClient {
    let mut w = RawClient::connected(broker.addr(), "watcher", true).await;
    w.subscribe_ok(1, &[(filter, qos)]).await;
    w
}

/// [MQTT-3.1.2-8] If the Will Flag is set to 1 ... the Will Message MUST be
/// published when the Network Connection is subsequently closed (here: the
/// client closes its socket without DISCONNECT).
#[tokio::test]
async fn will_published_on_socket_close_without_disconnect_mqtt_3_1_2_8() {
    let broker = TestBroker::start();
    let mut w = watcher(&broker, "will/t", 2).await;
    let client = with_will(&broker, "dying", "will/t", b"gone", 1, false).await;
    drop(client);
    let got = w.recv_publishes(1).await;
    assert_eq!(
        (got[0].topic.as_str(), got[0].payload.as_slice()),
        ("will/t", &b"gone"[..])
    );
    assert_eq!(got[0].qos, 1, "the will's QoS 1 (granted 2)");
    assert!(!got[0].retain);
    assert_eq!(Metrics::get(&broker.handle.metrics().wills_published), 1);
}

/// [MQTT-3.1.2-17] If Will Retain is set to 1, the Server MUST publish the
/// Will Message as a retained message; [MQTT-3.1.2-14] at the will's QoS.
/// A live subscriber gets it with RETAIN=0, a later one with RETAIN=1.
#[tokio::test]
async fn retained_will_published_with_its_qos_and_retained_mqtt_3_1_2_17() {
    let broker = TestBroker::start();
    let mut w = watcher(&broker, "will/r", 2).await;
    let client = with_will(&broker, "dying", "will/r", b"last words", 2, true).await;
    drop(client);
    let got = w.recv_publishes(1).await;
    assert_eq!(got[0].payload, b"last words");
    assert_eq!(got[0].qos, 2);
    assert!(!got[0].retain, "live delivery clears RETAIN [MQTT-3.3.1-9]");
    let mut later = RawClient::connected(broker.addr(), "later", true).await;
    later.subscribe_ok(1, &[("will/r", 2)]).await;
    let got = later.recv_publishes(1).await;
    assert_eq!(got[0].payload, b"last words");
    assert_eq!(got[0].qos, 2);
    assert!(got[0].retain, "the will was not retained");
}

/// [MQTT-3.1.2-16] If Will Retain is set to 0, the Server MUST publish the
/// Will Message as a non-retained message: a later subscriber gets nothing
/// (proven by a retained marker requested in the same SUBSCRIBE, after it).
#[tokio::test]
async fn non_retained_will_is_not_retained_mqtt_3_1_2_16() {
    let broker = TestBroker::start();
    let mut w = watcher(&broker, "will/n", 1).await;
    let client = with_will(&broker, "dying", "will/n", b"bye", 1, false).await;
    drop(client);
    w.expect_publish("will/n", b"bye").await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher
        .publish_ok("will/marker", b"marker", 1, 1, true)
        .await;
    let mut later = RawClient::connected(broker.addr(), "later", true).await;
    later
        .subscribe_ok(1, &[("will/n", 1), ("will/marker", 1)])
        .await;
    let p = later.expect_publish("will/marker", b"marker").await;
    assert!(p.retain);
}

/// [MQTT-3.1.2-10] The Will Message MUST be removed from the stored Session
/// state in the Server once it has been published or the Server has
/// received a DISCONNECT packet from the Client; [MQTT-3.14.4-3] on receipt
/// of DISCONNECT the Server MUST discard any Will Message associated with the
/// current connection without publishing it.
///
/// Absence: after the DISCONNECT has closed the socket (the will would be
/// routed before the close), a marker is published on the will's topic; it
/// must be the watcher's next message.
#[tokio::test]
async fn will_not_published_after_disconnect_mqtt_3_14_4_3() {
    let broker = TestBroker::start();
    let mut w = watcher(&broker, "will/t", 1).await;
    let mut client = with_will(&broker, "polite", "will/t", b"should not appear", 1, false).await;
    client.disconnect().await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("will/t", b"marker", 1, 1, false).await;
    w.expect_publish("will/t", b"marker").await;
    assert_eq!(Metrics::get(&broker.handle.metrics().wills_published), 0);
}

/// [MQTT-3.1.2-8] The will is published when the server closes the
/// connection because of a protocol error (section 4.8 lists it explicitly):
/// here a PUBLISH with QoS 3.
#[tokio::test]
async fn will_published_after_protocol_error_mqtt_3_1_2_8() {
    let broker = TestBroker::start();
    let mut w = watcher(&broker, "will/t", 1).await;
    let mut client = with_will(&broker, "broken", "will/t", b"protocol error", 1, false).await;
    client
        .send_lossy(&raw::packet(0x36, &[0, 1, b't', 0, 1]))
        .await;
    client.expect_closed_silently().await;
    w.expect_publish("will/t", b"protocol error").await;
}

/// [MQTT-3.1.2-8] A second CONNECT is a protocol error too [MQTT-3.1.0-2]:
/// the connection is closed and the will published.
#[tokio::test]
async fn will_published_after_second_connect_mqtt_3_1_0_2() {
    let broker = TestBroker::start();
    let mut w = watcher(&broker, "will/t", 1).await;
    let mut client = with_will(&broker, "twice", "will/t", b"connected twice", 1, false).await;
    client.send_lossy(&raw::connect("twice", true)).await;
    client.expect_closed_silently().await;
    w.expect_publish("will/t", b"connected twice").await;
}

/// [MQTT-3.1.2-8] The will is published when the server closes a connection
/// whose keep-alive expired [MQTT-3.1.2-24].
#[tokio::test]
async fn will_published_after_keepalive_expiry_mqtt_3_1_2_8() {
    let broker = TestBroker::start();
    let mut w = watcher(&broker, "will/t", 1).await;
    let will = Will {
        topic: "will/t",
        payload: b"timed out",
        qos: 1,
        retain: false,
    };
    let options = ConnectOptions {
        keep_alive: 1,
        will: Some(will),
        ..ConnectOptions::new("silent")
    };
    let mut client = RawClient::connected_expecting(broker.addr(), &options, &CONNACK_OK).await;
    // Silence: the broker closes after 1.5 s and publishes the will.
    client.expect_closed_silently().await;
    w.expect_publish("will/t", b"timed out").await;
}

/// [MQTT-3.1.4-2] A new connection that takes over the client id closes
/// the old one. The old connection's will is published when its session
/// ends with it (either connection has clean session 1), as for any close
/// without DISCONNECT [MQTT-3.1.2-8]; not when the new connection resumes
/// the persistent session (both clean session 0): section 3.1.2.5 does not
/// list that, and Mosquitto clears the will then. The new connection
/// (without a will) publishes nothing when it disconnects.
#[tokio::test]
async fn the_will_on_takeover_only_when_the_old_session_ends_mqtt_3_1_4_2() {
    let broker = TestBroker::start();
    let mut w = watcher(&broker, "will/t", 1).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    let cases = [
        (true, true, true),
        (false, true, true),
        (true, false, true),
        (false, false, false),
    ];
    for (n, (old_clean, new_clean, published)) in cases.into_iter().enumerate() {
        let id = format!("takeover-{n}");
        let payload = format!("will of case {n}");
        let will = Will {
            topic: "will/t",
            payload: payload.as_bytes(),
            qos: 1,
            retain: false,
        };
        let options = ConnectOptions {
            clean: old_clean,
            will: Some(will),
            ..ConnectOptions::new(&id)
        };
        let (mut old, _) = RawClient::connect_with(broker.addr(), &options).await;
        old.ping().await;
        let options = ConnectOptions {
            clean: new_clean,
            ..ConnectOptions::new(&id)
        };
        let (mut new, _) = RawClient::connect_with(broker.addr(), &options).await;
        old.expect_closed().await;
        new.ping().await;
        new.disconnect().await;
        let marker = format!("marker {n}");
        publisher
            .publish_ok("will/t", marker.as_bytes(), 1, n as u16 + 1, false)
            .await;
        if published {
            w.expect_publish("will/t", payload.as_bytes()).await;
        }
        // Nothing else came before the marker: no will where none is due.
        w.expect_publish("will/t", marker.as_bytes()).await;
    }
}

/// [MQTT-3.1.2-8] A client that sends CONNECT and closes the socket at once,
/// without waiting for the CONNACK, still had its CONNECT accepted: its will
/// is published.
#[tokio::test]
async fn will_published_when_socket_closes_right_after_connect_mqtt_3_1_2_8() {
    let broker = TestBroker::start();
    let mut w = watcher(&broker, "will/t", 1).await;
    let will = Will {
        topic: "will/t",
        payload: b"hit and run",
        qos: 1,
        retain: false,
    };
    let options = ConnectOptions {
        will: Some(will),
        ..ConnectOptions::new("hasty")
    };
    let mut c = RawClient::connect(broker.addr()).await;
    c.send(&options.bytes()).await;
    drop(c);
    w.expect_publish("will/t", b"hit and run").await;
}

/// [MQTT-3.14.4-3] CONNECT and DISCONNECT sent in one write: the will is
/// discarded, not published.
#[tokio::test]
async fn pipelined_connect_and_disconnect_publish_no_will_mqtt_3_14_4_3() {
    let broker = TestBroker::start();
    let mut w = watcher(&broker, "will/t", 1).await;
    let will = Will {
        topic: "will/t",
        payload: b"should not appear",
        qos: 1,
        retain: false,
    };
    let mut bytes = ConnectOptions {
        will: Some(will),
        ..ConnectOptions::new("brief")
    }
    .bytes();
    bytes.extend(raw::DISCONNECT);
    let mut c = RawClient::connect(broker.addr()).await;
    c.send(&bytes).await;
    let got: Vec<Vec<u8>> = c.expect_closed().await.iter().map(|p| p.bytes()).collect();
    assert_eq!(got, vec![CONNACK_OK.to_vec()]);
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("will/t", b"marker", 1, 1, false).await;
    w.expect_publish("will/t", b"marker").await;
}

/// [MQTT-3.1.2-12] If the Will Flag is set to 0, a Will Message MUST NOT be
/// published when this Network Connection ends. The connection is ended by
/// the server (a protocol error), so its end is observable; with one topic
/// shard, a marker published afterwards on any topic comes next for a `#`
/// watcher if nothing was published in between.
#[tokio::test]
async fn no_will_flag_nothing_published_mqtt_3_1_2_12() {
    let broker = TestBroker::start_with(|c| c.broker.shards = 1);
    let mut w = watcher(&broker, "#", 1).await;
    let mut c = RawClient::connected(broker.addr(), "no-will", true).await;
    c.send_lossy(&[0xF0, 0x00]).await;
    c.expect_closed_silently().await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    publisher.publish_ok("marker", b"marker", 1, 1, false).await;
    w.expect_publish("marker", b"marker").await;
    assert_eq!(Metrics::get(&broker.handle.metrics().wills_published), 0);
}
