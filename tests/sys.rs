//! `$SYS` topics under Mosquitto's names, published retained every
//! `broker.sys_interval_secs`; a `#` subscription does not see them
//! [MQTT-4.7.2-1]; clients cannot publish to `$SYS`.

use crate::common::raw::{RawClient, ReceivedPublish};
use crate::common::TestBroker;
use std::collections::HashMap;

fn broker() -> TestBroker {
    TestBroker::start_with(|c| c.broker.sys_interval_secs = 1)
}

/// Reads `$SYS` messages until every name in `wanted` has been seen;
/// returns the last value of each topic.
async fn sys_values(c: &mut RawClient, wanted: &[&str]) -> HashMap<String, String> {
    let mut seen = HashMap::new();
    while !wanted
        .iter()
        .all(|w| seen.contains_key(&format!("$SYS/broker/{w}")))
    {
        let p: ReceivedPublish = c.recv_publish().await;
        seen.insert(p.topic, String::from_utf8_lossy(&p.payload).into_owned());
    }
    seen
}

#[tokio::test]
async fn sys_topics_carry_mosquitto_names_and_arrive_retained_on_subscribe() {
    let broker = broker();
    let mut c = RawClient::connected(broker.addr(), "sys-reader", true).await;
    c.subscribe_ok(1, &[("$SYS/#", 0)]).await;
    let names = [
        "version",
        "uptime",
        "clients/connected",
        "clients/total",
        "clients/disconnected",
        "messages/received",
        "messages/sent",
        "publish/messages/dropped",
        "subscriptions/count",
        "retained messages/count",
        "load/messages/received/1min",
        "load/connections/15min",
    ];
    let values = sys_values(&mut c, &names).await;
    assert!(
        values["$SYS/broker/version"].starts_with("roost "),
        "{values:?}"
    );
    assert!(values["$SYS/broker/uptime"].ends_with(" seconds"));
    for counter in ["clients/connected", "clients/total", "subscriptions/count"] {
        let v = &values[&format!("$SYS/broker/{counter}")];
        assert!(v.parse::<u64>().is_ok(), "{counter} = {v:?}");
    }
}

/// The counters follow the broker: with the reader and a second client
/// connected and subscribed, a later update shows them.
#[tokio::test]
async fn sys_counters_follow_clients_and_subscriptions() {
    let broker = broker();
    let mut c = RawClient::connected(broker.addr(), "sys-reader", true).await;
    let mut other = RawClient::connected(broker.addr(), "sys-other", true).await;
    other.subscribe_ok(1, &[("a/b", 0), ("c/#", 1)]).await;
    c.subscribe_ok(
        1,
        &[
            ("$SYS/broker/clients/connected", 0),
            ("$SYS/broker/subscriptions/count", 0),
        ],
    )
    .await;
    // The next update after both subscriptions: 2 clients, 4 subscriptions.
    loop {
        let values = sys_values(&mut c, &["clients/connected", "subscriptions/count"]).await;
        if values["$SYS/broker/clients/connected"] == "2"
            && values["$SYS/broker/subscriptions/count"] == "4"
        {
            break;
        }
    }
}

/// [MQTT-4.7.2-1] `#` does not match `$SYS` topics; and a client's PUBLISH
/// to `$SYS` is acknowledged but dropped, so the broker's values stand.
#[tokio::test]
async fn clients_cannot_publish_to_sys_and_hash_does_not_match_it_mqtt_4_7_2_1() {
    let broker = broker();
    let mut all = RawClient::connected(broker.addr(), "hash", true).await;
    all.subscribe_ok(1, &[("#", 0)]).await;
    let mut faker = RawClient::connected(broker.addr(), "faker", true).await;
    faker
        .publish_ok("$SYS/broker/version", b"mosquitto 0.0", 1, 1, true)
        .await;
    faker.publish_ok("after/fake", b"marker", 1, 2, false).await;
    all.expect_publish("after/fake", b"marker").await;
    let mut reader = RawClient::connected(broker.addr(), "sys-reader", true).await;
    reader.subscribe_ok(1, &[("$SYS/broker/version", 0)]).await;
    let v = reader.recv_publish().await;
    assert!(
        String::from_utf8_lossy(&v.payload).starts_with("roost "),
        "{v:?}"
    );
}

/// Clients are counted by protocol version, in `$SYS` (roost's own topics,
/// `clients/protocol/3.1` and `clients/protocol/3.1.1`) and in Prometheus
/// (`roost_clients_connected_by_protocol{version}`); a disconnect counts
/// down.
#[tokio::test]
async fn clients_are_counted_by_protocol_version() {
    use crate::common::raw::{ConnectOptions, CONNACK_OK};
    use std::sync::atomic::Ordering::Relaxed;
    let broker = TestBroker::start_with(|c| {
        c.broker.sys_interval_secs = 1;
        c.metrics.listen = "127.0.0.1:0".into();
    });
    let v31 = ConnectOptions {
        protocol_name: "MQIsdp",
        level: 3,
        ..ConnectOptions::new("old-timer")
    };
    let _old = RawClient::connected_expecting(broker.addr(), &v31, &CONNACK_OK).await;
    let mut reader = RawClient::connected(broker.addr(), "sys-reader", true).await;
    let mut third = RawClient::connected(broker.addr(), "third", true).await;
    third.disconnect().await;
    let by = &broker.handle.metrics().clients_connected_by_protocol;
    // The disconnect is counted when the connection ends: look until it is.
    let deadline = std::time::Instant::now() + crate::common::TIMEOUT;
    while by[1].load(Relaxed) != 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!((by[0].load(Relaxed), by[1].load(Relaxed)), (1, 1));
    reader
        .subscribe_ok(1, &[("$SYS/broker/clients/protocol/#", 0)])
        .await;
    // Retained values first, then each second's: one of the next few
    // updates shows (1, 1).
    let wanted = ["clients/protocol/3.1", "clients/protocol/3.1.1"];
    let mut last = None;
    for _ in 0..5 {
        let values = sys_values(&mut reader, &wanted).await;
        let pair = (
            values["$SYS/broker/clients/protocol/3.1"].clone(),
            values["$SYS/broker/clients/protocol/3.1.1"].clone(),
        );
        if pair == ("1".to_string(), "1".to_string()) {
            last = None;
            break;
        }
        last = Some(pair);
    }
    assert_eq!(last, None, "the last $SYS values");
    let addr = broker.handle.metrics_addr().unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    for line in [
        "roost_clients_connected_by_protocol{version=\"3.1\"} 1",
        "roost_clients_connected_by_protocol{version=\"3.1.1\"} 1",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}
