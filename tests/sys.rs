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
