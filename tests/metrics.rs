//! Prometheus metrics over HTTP (`metrics.listen`): `GET /metrics` in the
//! OpenMetrics text format, with counters, drops by reason, restarts by
//! actor kind, connections by listener, gauges and the store's commit
//! histograms; other paths get 404.

use crate::common::raw::RawClient;
use crate::common::TestBroker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].trim().parse().ok())
}

#[tokio::test]
async fn metrics_endpoint_serves_counters_gauges_and_histograms() {
    let broker = TestBroker::start_with(|c| c.metrics.listen = "127.0.0.1:0".into());
    let addr = broker.handle.metrics_addr().expect("metrics listener");
    let mut sub = RawClient::connected(broker.addr(), "m-sub", false).await;
    sub.subscribe_ok(1, &[("m/#", 1)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "m-pub", true).await;
    publisher.publish_ok("m/a", b"1", 1, 1, false).await;
    publisher.publish_ok("m/b", b"2", 1, 2, true).await;
    sub.recv_publishes(2).await;

    let response = get(addr, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("application/openmetrics-text"));
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(
        value(body, "roost_publishes_received_total"),
        Some(2.0),
        "{body}"
    );
    assert_eq!(value(body, "roost_clients_connected"), Some(2.0));
    assert_eq!(value(body, "roost_subscriptions"), Some(1.0));
    assert_eq!(value(body, "roost_sessions"), Some(2.0));
    assert!(value(body, "roost_retained_messages").is_some_and(|n| n >= 1.0));
    assert_eq!(
        value(body, "roost_messages_dropped_total{reason=\"queue_full\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(body, "roost_actor_restarts_total{kind=\"Session\"}"),
        Some(0.0)
    );
    let listener = format!(
        "roost_listener_connections_total{{listener=\"{}\"}}",
        broker.addr()
    );
    assert_eq!(value(body, &listener), Some(2.0), "{body}");
    // The persistent subscription committed at least once.
    assert!(value(body, "roost_store_commit_seconds_count").is_some_and(|n| n >= 1.0));
    assert!(body.contains("roost_store_batch_changes_bucket{le="));
    assert!(body.trim_end().ends_with("# EOF"));

    assert!(get(addr, "/other").await.starts_with("HTTP/1.1 404"));
}

/// The endpoint cannot be held open: connections beyond 8 get 503 at once,
/// and a client that trickles its request, a byte within every read
/// timeout, is closed at the request deadline (5 s in all), which frees its
/// place.
#[tokio::test]
async fn metrics_connections_are_capped_and_a_request_has_one_deadline() {
    let broker = TestBroker::start_with(|c| c.metrics.listen = "127.0.0.1:0".into());
    let addr = broker.handle.metrics_addr().expect("metrics listener");
    let started = std::time::Instant::now();
    let mut holders = Vec::new();
    for _ in 0..8 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metr").await.unwrap();
        holders.push(s);
    }
    // Every place is held: the next connection is refused at once (a 503,
    // or a reset when the refusal beats the request to the socket).
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut response = String::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        s.read_to_string(&mut response),
    )
    .await
    .expect("refused at once, not left waiting");
    assert!(
        read.is_err() || response.is_empty() || response.starts_with("HTTP/1.1 503"),
        "{response}"
    );
    // One holder keeps sending a byte a second: it is still cut off.
    let mut trickle = holders.pop().unwrap();
    let closed = async {
        let mut byte = [0u8; 1];
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            if trickle.write_all(b"i").await.is_err() {
                return;
            }
            if let Ok(Ok(0)) =
                tokio::time::timeout(std::time::Duration::from_millis(1), trickle.read(&mut byte))
                    .await
            {
                return;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), closed)
        .await
        .expect("the trickling client is closed at the deadline");
    assert!(started.elapsed() >= std::time::Duration::from_secs(4));
    // The held places are free again.
    drop(holders);
    let response = get(addr, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
}

/// Every connection is counted accepted once and closed once, whatever
/// ends it: a client that disconnects, one refused at CONNECT, a socket
/// closed before CONNECT, a protocol error, and a failed WebSocket upgrade
/// (which used to count as closed without ever being accepted). At every
/// scrape accepted >= closed, and `connections_open` = accepted - closed.
#[tokio::test]
async fn accepted_and_closed_connections_add_up() {
    use crate::common::raw::{self, ConnectOptions};
    use std::sync::atomic::Ordering::Relaxed;
    let broker = TestBroker::start_with(|c| {
        c.metrics.listen = "127.0.0.1:0".into();
        c.websocket.listen = "127.0.0.1:0".into();
    });
    let ws = *broker.handle.local_addrs().last().unwrap();
    let mut open = RawClient::connected(broker.addr(), "stays", true).await;
    let mut gone = RawClient::connected(broker.addr(), "goes", true).await;
    gone.disconnect().await;
    let v31_too_long = ConnectOptions {
        protocol_name: "MQIsdp",
        level: 3,
        ..ConnectOptions::new("a-client-id-longer-than-23-bytes")
    };
    RawClient::connected_expecting(broker.addr(), &v31_too_long, &raw::connack_refused(2)).await;
    drop(RawClient::connect(broker.addr()).await);
    let mut bad = RawClient::connect(broker.addr()).await;
    bad.send_lossy(&raw::PINGREQ).await;
    bad.expect_closed_silently().await;
    let mut http = tokio::net::TcpStream::connect(ws).await.unwrap();
    http.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    http.read_to_end(&mut answer).await.unwrap();
    open.ping().await;

    let scrape = || async {
        let response = get(broker.handle.metrics_addr().unwrap(), "/metrics").await;
        let body = response.split("\r\n\r\n").nth(1).unwrap().to_string();
        let read =
            |series: &str| value(&body, series).unwrap_or_else(|| panic!("{series}: {body}"));
        let accepted = read("roost_connections_accepted_total");
        let closed = read("roost_connections_closed_total");
        assert!(accepted >= closed, "{accepted} accepted, {closed} closed");
        assert_eq!(read("roost_connections_open"), accepted - closed);
        (accepted, closed)
    };
    // Six accepted; all but `stays` end, each counted once, in their own time.
    let deadline = std::time::Instant::now() + crate::common::TIMEOUT;
    loop {
        let m = broker.handle.metrics();
        let (accepted, closed) = (
            m.connections_accepted.load(Relaxed),
            m.connections_closed.load(Relaxed),
        );
        if closed == 5 || std::time::Instant::now() > deadline {
            assert_eq!((accepted, closed), (6, 5));
            break;
        }
        // No event says a counter moved: look again shortly.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(scrape().await, (6.0, 5.0));
}
