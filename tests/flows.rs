//! End-to-end flows with a real MQTT client library (rumqttc) against the
//! in-process broker: QoS 0/1/2 in both directions, wildcards, retained
//! messages, wills (on a dropped connection, on keep-alive expiry, and not on
//! a clean DISCONNECT), client-id takeover, persistent sessions with an
//! offline queue, and redelivery of an unacknowledged message with DUP set.
//!
//! Each client's eventloop runs in its own task and forwards every event over
//! a channel; tests wait on those events with [`TIMEOUT`], never on sleeps.
//! The forwarding task stops at the first error, so rumqttc never reconnects
//! behind a test's back.

use crate::common::{TestBroker, TIMEOUT};
use rumqttc::{
    AsyncClient, ConnAck, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, Publish, QoS,
    SubscribeReasonCode,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A connected rumqttc client whose eventloop runs in a spawned task.
struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    task: JoinHandle<()>,
    connack: ConnAck,
    /// Messages that arrived while waiting for something else (a client
    /// subscribed to its own topic may get the message before its PUBACK).
    received: std::collections::VecDeque<Publish>,
}

fn spawn_eventloop(
    mut eventloop: EventLoop,
) -> (
    mpsc::UnboundedReceiver<Result<Event, String>>,
    JoinHandle<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(event) => {
                    if tx.send(Ok(event)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    (rx, task)
}

impl Client {
    async fn connect(options: MqttOptions) -> Client {
        let (client, eventloop) = AsyncClient::new(options, 100);
        let (mut events, task) = spawn_eventloop(eventloop);
        let connack = match next_event(&mut events).await {
            Ok(Event::Incoming(Packet::ConnAck(c))) => c,
            other => panic!("expected CONNACK, got {other:?}"),
        };
        Client {
            client,
            events,
            task,
            connack,
            received: Default::default(),
        }
    }

    /// The next event, or panics after [`TIMEOUT`].
    async fn event(&mut self) -> Result<Event, String> {
        next_event(&mut self.events).await
    }

    /// Waits for the first event `pick` accepts, skipping others (pings, acks).
    async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        loop {
            match self.event().await {
                Ok(event) => {
                    if let Some(t) = pick(&event) {
                        return t;
                    }
                    if let Event::Incoming(Packet::Publish(p)) = event {
                        self.received.push_back(p);
                    }
                }
                Err(e) => panic!("connection failed while waiting for {what}: {e}"),
            }
        }
    }

    async fn publish_received(&mut self) -> Publish {
        if let Some(p) = self.received.pop_front() {
            return p;
        }
        self.wait_for("PUBLISH", |e| match e {
            Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<SubscribeReasonCode> {
        self.client.subscribe(filter, qos).await.unwrap();
        self.wait_for("SUBACK", |e| match e {
            Event::Incoming(Packet::SubAck(s)) => Some(s.return_codes.clone()),
            _ => None,
        })
        .await
    }

    /// Publishes and waits until the broker has completed the flow for it
    /// (the write for QoS 0, PUBACK for QoS 1, PUBCOMP for QoS 2).
    async fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, qos, retain, payload.into())
            .await
            .unwrap();
        self.wait_for("publish completion", |e| match (qos, e) {
            (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_)))
            | (QoS::AtLeastOnce, Event::Incoming(Packet::PubAck(_)))
            | (QoS::ExactlyOnce, Event::Incoming(Packet::PubComp(_))) => Some(()),
            _ => None,
        })
        .await
    }

    /// Sends DISCONNECT and waits until the broker has closed the socket.
    async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        self.wait_for("outgoing DISCONNECT", |e| {
            matches!(e, Event::Outgoing(Outgoing::Disconnect)).then_some(())
        })
        .await;
        self.expect_closed().await;
    }

    /// Waits until the eventloop reports an error (the connection is gone).
    async fn expect_closed(&mut self) -> String {
        loop {
            match self.event().await {
                Ok(_) => continue,
                Err(e) => return e,
            }
        }
    }

    /// Drops the TCP connection without DISCONNECT: the eventloop, and with it
    /// the socket, is dropped with the aborted task.
    async fn drop_connection(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn next_event(
    events: &mut mpsc::UnboundedReceiver<Result<Event, String>>,
) -> Result<Event, String> {
    match tokio::time::timeout(TIMEOUT, events.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => Err("eventloop task ended".to_string()),
        Err(_) => panic!("no event within {TIMEOUT:?}"),
    }
}

fn granted(qos: QoS) -> SubscribeReasonCode {
    SubscribeReasonCode::Success(qos)
}

fn qos_from(n: u8) -> QoS {
    [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][n as usize]
}

/// One subscriber holds `m/0`, `m/1`, `m/2` at QoS 0, 1, 2; a publisher
/// sends one message to each at `pub_qos`. Each arrives once, with its
/// payload, at min(publish QoS, granted QoS) [MQTT-3.8.4-6].
async fn publish_at_qos_to_every_granted_qos(pub_qos: QoS) {
    let broker = TestBroker::start();
    let mut sub = Client::connect(broker.mqtt_options("qos-sub")).await;
    for n in 0..3 {
        assert_eq!(
            sub.subscribe(&format!("m/{n}"), qos_from(n)).await,
            vec![granted(qos_from(n))]
        );
    }
    let mut publisher = Client::connect(broker.mqtt_options("qos-pub")).await;
    for n in 0..3 {
        publisher
            .publish(
                &format!("m/{n}"),
                pub_qos,
                false,
                format!("payload {n} at {pub_qos:?}"),
            )
            .await;
    }
    let mut got = HashMap::new();
    while got.len() < 3 {
        let p = sub.publish_received().await;
        assert!(!p.retain && !p.dup, "{p:?}");
        assert!(got.insert(p.topic.clone(), p).is_none(), "delivered twice");
    }
    for n in 0..3u8 {
        let p = &got[&format!("m/{n}")];
        assert_eq!(p.payload, format!("payload {n} at {pub_qos:?}").as_bytes());
        let expected = if pub_qos < qos_from(n) {
            pub_qos
        } else {
            qos_from(n)
        };
        assert_eq!(p.qos, expected, "topic m/{n}");
    }
    // Still alive and nothing extra: a marker comes next on a topic already used.
    publisher
        .publish("m/2", QoS::AtLeastOnce, false, "marker")
        .await;
    assert_eq!(sub.publish_received().await.payload, "marker".as_bytes());
}

#[tokio::test]
async fn qos0_publish_to_each_granted_qos() {
    publish_at_qos_to_every_granted_qos(QoS::AtMostOnce).await;
}

#[tokio::test]
async fn qos1_publish_to_each_granted_qos() {
    publish_at_qos_to_every_granted_qos(QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn qos2_publish_to_each_granted_qos() {
    publish_at_qos_to_every_granted_qos(QoS::ExactlyOnce).await;
}

/// With one topic shard, every publish of one client goes through the same
/// actor in order, so the final marker proves that the non-matching
/// publishes before it were routed and not delivered.
#[tokio::test]
async fn wildcard_filters_match_the_right_topics() {
    let broker = TestBroker::start_with(|c| c.broker.shards = 1);
    let mut sub = Client::connect(broker.mqtt_options("wild-sub")).await;
    assert_eq!(
        sub.subscribe("building/+/temperature", QoS::AtLeastOnce)
            .await,
        vec![granted(QoS::AtLeastOnce)]
    );
    assert_eq!(
        sub.subscribe("sport/#", QoS::AtLeastOnce).await,
        vec![granted(QoS::AtLeastOnce)]
    );
    let mut publisher = Client::connect(broker.mqtt_options("wild-pub")).await;
    let topics = [
        ("building/a/temperature", true),
        ("building/a/humidity", false),
        ("building/a/b/temperature", false),
        ("building/temperature", false),
        ("building//temperature", true),
        ("sport", true),
        ("sport/tennis/player1", true),
        ("sport/", true),
        ("sports", false),
        ("other/sport", false),
        ("building/b/temperature", true),
    ];
    for (topic, _) in topics {
        publisher
            .publish(topic, QoS::AtLeastOnce, false, topic)
            .await;
    }
    publisher
        .publish("sport/marker", QoS::AtLeastOnce, false, "marker")
        .await;
    let mut expected: Vec<&str> = topics.iter().filter(|(_, m)| *m).map(|(t, _)| *t).collect();
    expected.push("sport/marker");
    let mut received = Vec::new();
    while received.last().map(String::as_str) != Some("sport/marker") {
        let p = sub.publish_received().await;
        if p.topic != "sport/marker" {
            assert_eq!(p.payload, p.topic.as_bytes());
        }
        received.push(p.topic);
    }
    assert_eq!(received, expected);
}

#[tokio::test]
async fn retained_message_reaches_later_subscriber_and_is_cleared_by_empty_payload() {
    let broker = TestBroker::start();
    let mut publisher = Client::connect(broker.mqtt_options("ret-pub")).await;
    publisher
        .publish("house/door", QoS::AtLeastOnce, true, "open")
        .await;

    let mut late = Client::connect(broker.mqtt_options("ret-late")).await;
    late.subscribe("house/+", QoS::AtLeastOnce).await;
    let p = late.publish_received().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.retain, p.qos),
        ("house/door", &b"open"[..], true, QoS::AtLeastOnce)
    );

    // To an existing subscription a retained publish goes out with retain=0
    // [MQTT-3.3.1-9]; the empty one that clears it is forwarded too.
    publisher
        .publish("house/door", QoS::AtLeastOnce, true, "")
        .await;
    let p = late.publish_received().await;
    assert_eq!((&p.payload[..], p.retain), (&b""[..], false));

    let mut later = Client::connect(broker.mqtt_options("ret-later")).await;
    later.subscribe("house/door", QoS::AtLeastOnce).await;
    publisher
        .publish("house/door", QoS::AtLeastOnce, false, "marker")
        .await;
    let p = later.publish_received().await;
    assert_eq!(
        (&p.payload[..], p.retain),
        (&b"marker"[..], false),
        "cleared retained message was delivered"
    );
}

fn with_will(mut o: MqttOptions, topic: &str, payload: &str) -> MqttOptions {
    o.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, false));
    o
}

#[tokio::test]
async fn will_is_published_when_connection_drops_without_disconnect() {
    let broker = TestBroker::start();
    let mut watcher = Client::connect(broker.mqtt_options("will-watch")).await;
    watcher.subscribe("status/#", QoS::AtLeastOnce).await;
    let dying = Client::connect(with_will(
        broker.mqtt_options("will-dying"),
        "status/dying",
        "gone",
    ))
    .await;
    dying.drop_connection().await;
    let p = watcher.publish_received().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("status/dying", &b"gone"[..], QoS::AtLeastOnce)
    );
}

#[tokio::test]
async fn no_will_after_clean_disconnect() {
    let broker = TestBroker::start();
    let mut watcher = Client::connect(broker.mqtt_options("nowill-watch")).await;
    watcher.subscribe("status/#", QoS::AtLeastOnce).await;
    let polite = Client::connect(with_will(
        broker.mqtt_options("nowill-polite"),
        "status/polite",
        "gone",
    ))
    .await;
    // Returns once the broker has closed the socket, i.e. handled DISCONNECT.
    polite.disconnect().await;
    let mut publisher = Client::connect(broker.mqtt_options("nowill-pub")).await;
    publisher
        .publish("status/polite", QoS::AtLeastOnce, false, "marker")
        .await;
    let p = watcher.publish_received().await;
    assert_eq!(
        &p.payload[..],
        b"marker",
        "the will was published after a clean DISCONNECT"
    );
}

/// rumqttc 0.25 accepts any keep-alive of at least 1 s. The client connects
/// with 2 s and then its eventloop is simply not polled again: no PINGREQ,
/// the socket stays open. The broker must close it after 1.5 × 2 s = 3 s
/// [MQTT-3.1.2-24] and publish the will.
#[tokio::test]
async fn keep_alive_expiry_closes_connection_and_publishes_will() {
    let broker = TestBroker::start();
    let mut watcher = Client::connect(broker.mqtt_options("ka-watch")).await;
    watcher.subscribe("status/#", QoS::AtLeastOnce).await;

    let mut o = with_will(
        broker.mqtt_options("ka-silent"),
        "status/silent",
        "timed out",
    );
    o.set_keep_alive(Duration::from_secs(2));
    let (_client, mut eventloop) = AsyncClient::new(o, 10);
    match tokio::time::timeout(TIMEOUT, eventloop.poll()).await {
        Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {}
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let connected = Instant::now();
    // Not polled from here on; kept alive so the socket stays open.
    let p = watcher.publish_received().await;
    let elapsed = connected.elapsed();
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("status/silent", &b"timed out"[..])
    );
    assert!(
        elapsed >= Duration::from_secs(2),
        "closed before the keep-alive even ran out: {elapsed:?}"
    );
    assert!(
        elapsed <= Duration::from_millis(4500),
        "closed too late (limit 3 s + margin): {elapsed:?}"
    );
    drop(eventloop);
}

#[tokio::test]
async fn second_connection_with_same_client_id_takes_over() {
    let broker = TestBroker::start();
    let mut first = Client::connect(broker.mqtt_options("twin")).await;
    first.subscribe("twin/first", QoS::AtLeastOnce).await;
    let mut second = Client::connect(broker.mqtt_options("twin")).await;
    let error = first.expect_closed().await;
    eprintln!("first connection ended with: {error}");

    assert_eq!(
        second.subscribe("twin/echo", QoS::AtLeastOnce).await,
        vec![granted(QoS::AtLeastOnce)]
    );
    second
        .publish("twin/echo", QoS::AtLeastOnce, false, "still here")
        .await;
    let p = second.publish_received().await;
    assert_eq!(&p.payload[..], b"still here");
    // The session was clean, so the first connection's subscription is gone.
    second
        .publish("twin/first", QoS::AtLeastOnce, false, "nobody")
        .await;
    second
        .publish("twin/echo", QoS::AtLeastOnce, false, "marker")
        .await;
    let p = second.publish_received().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("twin/echo", &b"marker"[..])
    );
}

fn persistent(mut o: MqttOptions) -> MqttOptions {
    o.set_clean_session(false);
    o
}

#[tokio::test]
async fn persistent_session_queues_while_offline_and_delivers_in_order() {
    let broker = TestBroker::start();
    let mut sub = Client::connect(persistent(broker.mqtt_options("keeper"))).await;
    assert!(!sub.connack.session_present);
    sub.subscribe("queue/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publisher = Client::connect(broker.mqtt_options("queue-pub")).await;
    for i in 0..10 {
        publisher
            .publish("queue/t", QoS::AtLeastOnce, false, format!("msg {i}"))
            .await;
    }

    let mut sub = Client::connect(persistent(broker.mqtt_options("keeper"))).await;
    assert!(sub.connack.session_present, "{:?}", sub.connack);
    for i in 0..10 {
        let p = sub.publish_received().await;
        assert_eq!((p.topic.as_str(), p.qos), ("queue/t", QoS::AtLeastOnce));
        assert_eq!(
            p.payload,
            format!("msg {i}").as_bytes(),
            "message {i} out of order or missing"
        );
    }
    // The subscription survived too: a live message follows the queued ones.
    publisher
        .publish("queue/t", QoS::AtLeastOnce, false, "live")
        .await;
    assert_eq!(&sub.publish_received().await.payload[..], b"live");
}

#[tokio::test]
async fn unacknowledged_message_is_redelivered_with_dup_after_reconnect() {
    let broker = TestBroker::start();
    let mut o = persistent(broker.mqtt_options("forgetful"));
    o.set_manual_acks(true);
    let mut sub = Client::connect(o).await;
    sub.subscribe("unacked/t", QoS::AtLeastOnce).await;

    let mut publisher = Client::connect(broker.mqtt_options("unacked-pub")).await;
    publisher
        .publish("unacked/t", QoS::AtLeastOnce, false, "ack me")
        .await;
    let first = sub.publish_received().await;
    assert_eq!(
        (&first.payload[..], first.qos, first.dup),
        (&b"ack me"[..], QoS::AtLeastOnce, false)
    );
    // No PUBACK; the connection just drops.
    sub.drop_connection().await;

    let mut sub = Client::connect(persistent(broker.mqtt_options("forgetful"))).await;
    assert!(sub.connack.session_present);
    let again = sub.publish_received().await;
    assert_eq!(
        (again.topic.as_str(), &again.payload[..]),
        ("unacked/t", &b"ack me"[..])
    );
    assert_eq!(again.qos, QoS::AtLeastOnce);
    assert!(
        again.dup,
        "redelivery must set DUP [MQTT-4.4.0-1]: {again:?}"
    );
    assert_eq!(
        again.pkid, first.pkid,
        "redelivery must reuse the packet id"
    );

    // Acked automatically this time; the session then carries on normally.
    publisher
        .publish("unacked/t", QoS::AtLeastOnce, false, "next")
        .await;
    let next = sub.publish_received().await;
    assert_eq!((&next.payload[..], next.dup), (&b"next"[..], false));
}
