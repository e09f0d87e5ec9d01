//! Keep-alive and PINGREQ/PINGRESP (sections 3.1.2.10, 3.12, 3.13).

use crate::common::raw::{self, ConnectOptions, CONNACK_OK};
use crate::common::{RawClient, TestBroker};
use std::time::{Duration, Instant};

async fn connected_with_keep_alive(broker: &TestBroker, id: &str, keep_alive: u16) -> RawClient {
    let options = ConnectOptions {
        keep_alive,
        ..ConnectOptions::new(id)
    };
    RawClient::connected_expecting(broker.addr(), &options, &CONNACK_OK).await
}

/// [MQTT-3.12.4-1] The Server MUST send a PINGRESP Packet in response to a
/// PINGREQ Packet: exactly 0xD0 0x00, once per PINGREQ, also pipelined.
#[tokio::test]
async fn pingreq_answered_with_pingresp_mqtt_3_12_4_1() {
    let broker = TestBroker::start();
    let mut c = RawClient::connected(broker.addr(), "pinger", true).await;
    c.send(&raw::PINGREQ).await;
    assert_eq!(c.recv().await.bytes(), [0xD0, 0x00]);
    for _ in 0..5 {
        c.send(&raw::PINGREQ).await;
    }
    for _ in 0..5 {
        assert_eq!(c.recv().await.bytes(), [0xD0, 0x00]);
    }
}

/// [MQTT-3.1.2-24] If the Keep Alive value is non-zero and the Server does
/// not receive a Control Packet from the Client within one and a half times
/// the Keep Alive time period, it MUST disconnect: keep-alive 1 s, silence,
/// closed after about 1.5 s (not before 1 s, well before 3 s).
#[tokio::test]
async fn silent_client_closed_after_one_and_a_half_keepalive_mqtt_3_1_2_24() {
    let broker = TestBroker::start();
    let mut c = connected_with_keep_alive(&broker, "silent", 1).await;
    let start = Instant::now();
    c.expect_closed_silently().await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1),
        "closed too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "closed too late: {elapsed:?}"
    );
}

/// [MQTT-3.1.2-24] The keep-alive clock restarts with every packet: a
/// PINGREQ every 500 ms keeps a keep-alive 1 s connection open for 3 s, and
/// the client is closed about 1.5 s after it falls silent.
#[tokio::test]
async fn traffic_keeps_connection_alive_mqtt_3_1_2_24() {
    let broker = TestBroker::start();
    let mut c = connected_with_keep_alive(&broker, "chatty", 1).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.ping().await;
    }
    let silent_since = Instant::now();
    c.expect_closed_silently().await;
    let elapsed = silent_since.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1),
        "closed too early after falling silent: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "closed too late after falling silent: {elapsed:?}"
    );
}

/// [MQTT-3.1.2-24] Only a whole Control Packet counts: a client that
/// trickles the bytes of one PUBLISH, a byte every 250 ms and never all of
/// them, is closed about 1.5 s after its last whole packet (CONNECT), like
/// a silent one (bytes are stamped as they are read; a packet takes the
/// stamp of the read that completes it).
#[tokio::test]
async fn bytes_of_an_unfinished_packet_do_not_keep_a_connection_alive_mqtt_3_1_2_24() {
    let broker = TestBroker::start();
    let mut c = connected_with_keep_alive(&broker, "trickle", 1).await;
    let start = Instant::now();
    // PUBLISH, QoS 0, announcing 100 more bytes; at most a dozen ever come.
    c.send(&[0x30, 100]).await;
    let closed_after = loop {
        if c.closed_within(Duration::from_millis(250)).await {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "still open after 3 s of trickled bytes"
        );
        c.send_lossy(b"x").await;
    };
    assert!(
        closed_after >= Duration::from_secs(1),
        "closed too early: {closed_after:?}"
    );
}

/// [MQTT-3.1.2-23] Any Control Packet counts as activity, not only PINGREQ:
/// a client that publishes every 500 ms stays connected.
#[tokio::test]
async fn any_packet_counts_as_activity_mqtt_3_1_2_23() {
    let broker = TestBroker::start();
    let mut c = connected_with_keep_alive(&broker, "publisher", 1).await;
    for i in 0..5u16 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.send(&raw::publish("ka/t", b"x", 1, i + 1, false, false))
            .await;
        assert_eq!(c.recv().await.bytes(), raw::puback(i + 1));
    }
}

/// Section 3.1.2.10: a Keep Alive value of zero has the effect of turning off
/// the keep alive mechanism: a silent client is still connected after 3 s.
#[tokio::test]
async fn keepalive_zero_never_closes_mqtt_3_1_2_10() {
    let broker = TestBroker::start();
    let mut c = connected_with_keep_alive(&broker, "forever", 0).await;
    c.expect_nothing_within(
        Duration::from_secs(3),
        "the broker sent something to an idle client",
    )
    .await;
    c.ping().await;
}
