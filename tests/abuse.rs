//! Resource bounds under abuse, measured on the `roost` binary (its own
//! process, so its memory is its own): what one client can make the broker
//! do, and that other clients are served meanwhile.

use crate::common::raw::{self, RawClient, CONNACK_OK};
use crate::common::PeakRss;
use crate::crash::Roost;
use std::time::{Duration, Instant};

/// One SUBSCRIBE must not buy minutes of work: with 10,000 retained
/// messages, a 1 MiB SUBSCRIBE holding 262,000 copies of `#` grows the
/// broker by less than 256 MiB, and a fresh client's CONNECT meanwhile is
/// answered within 1 s. (Each copy used to be a walk of the whole retained
/// index, every match cloned, on the thread that also accepts
/// connections: 2.6 × 10⁹ clones.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_of_262000_wildcards_over_10000_retained_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(&dir.path().join("roost.db"), &[]).await;
    let mut publisher = RawClient::connected(roost.addr, "retainer", true).await;
    let mut bytes = Vec::new();
    for i in 0..10_000u32 {
        bytes.extend(raw::publish(
            &format!("r/{i}"),
            &[b'x'; 100],
            0,
            0,
            true,
            false,
        ));
    }
    publisher.send(&bytes).await;
    // Acknowledged once the retained store has it, and so every one before.
    publisher.publish_ok("r/last", b"marker", 1, 1, true).await;

    let peak = PeakRss::start(roost.pid());
    let mut attacker = RawClient::connect(roost.addr).await;
    attacker.send(&raw::connect("attacker", true)).await;
    assert_eq!(attacker.recv().await.bytes(), CONNACK_OK);
    let filters = vec![("#", 0u8); 262_000];
    let subscribe = raw::subscribe(1, &filters);
    assert!(subscribe.len() <= 1 << 20, "{} bytes", subscribe.len());
    attacker.send_lossy(&subscribe).await;
    // The attacker reads nothing from here on.

    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked = Instant::now();
        let mut fresh = RawClient::connect(roost.addr).await;
        fresh.send(&raw::connect(&format!("fresh-{i}"), true)).await;
        assert_eq!(fresh.recv().await.bytes(), CONNACK_OK);
        slowest = slowest.max(asked.elapsed());
    }
    let grown = peak.grown_mib();
    println!("SUBSCRIBE of 262,000 x '#' over 10,000 retained: RSS +{grown} MiB, slowest fresh CONNECT {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "a fresh CONNECT took {slowest:?}"
    );
    assert!(grown < 256, "RSS grew by {grown} MiB");
}

/// PUBACKs waiting for a commit count against the publisher's backlog
/// (`limits.max_routing_backlog`): while commits cannot proceed (another
/// connection holds the write lock), a client pipelining 5,000 QoS 1
/// PUBLISHes for a persistent subscriber is read only up to that bound,
/// so nothing grows with what it sends; every PUBLISH is acknowledged once
/// the lock is gone. (Before, PUBACKs waiting for a commit did not count,
/// and all 5,000 were read, routed and queued for the store.)
#[tokio::test]
async fn pubacks_waiting_for_a_commit_hold_back_the_publishers_reads() {
    use crate::common::{persistent, TestBroker};
    use sqlx::Connection;
    let broker = TestBroker::start_with(|c| c.limits.max_routing_backlog = 100);
    let mut sub = persistent(&broker, "durable", &raw::CONNACK_OK).await;
    sub.subscribe_ok(1, &[("held/#", 1)]).await;
    sub.disconnect().await;
    let mut other =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", broker.db_path().display()))
            .await
            .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let mut publisher = RawClient::connected(broker.addr(), "flood", true).await;
    let mut bytes = Vec::new();
    for n in 1..=5000u16 {
        bytes.extend(raw::publish("held/t", &n.to_be_bytes(), 1, n, false, false));
    }
    let writer = tokio::spawn(async move {
        publisher.send_lossy(&bytes).await;
        publisher
    });
    // Give the broker time to read all it will: it must stop near 100.
    let received = &broker.handle.metrics().publishes_received;
    let mut last = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = roost::broker::ops::metrics::Metrics::get(received);
    }
    assert!(
        last <= 101,
        "{last} PUBLISHes read while their PUBACKs could not be sent"
    );
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    let mut publisher = writer.await.unwrap();
    let mut acked = 0;
    while acked < 5000 {
        let p = publisher.recv().await;
        assert_eq!(p.first, 0x40, "{p:?}");
        acked += 1;
    }
}

/// A QoS 1 subscriber that reads nothing holds at most
/// `limits.max_outbound_bytes` (1 MiB) of messages in flight, not
/// `session.max_inflight` (128) of them: with 256 KiB messages, the broker
/// grows by about its queue bound (16 MiB) and that, not by 32 MiB more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos1_subscriber_that_never_reads_holds_max_outbound_bytes_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let roost = Roost::start(&dir.path().join("roost.db"), &[]).await;
    // A 4 KiB receive buffer, and nothing read after SUBACK.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(roost.addr).await.unwrap();
    let mut stalled = RawClient::from_stream(stream);
    stalled.send(&raw::connect("stalled", true)).await;
    assert_eq!(stalled.recv().await.bytes(), CONNACK_OK);
    stalled.subscribe_ok(1, &[("big/#", 1)]).await;

    let peak = PeakRss::start(roost.pid());
    let mut publisher = RawClient::connected(roost.addr, "big-pub", true).await;
    let payload = vec![b'p'; 256 * 1024];
    for n in 1..=200u16 {
        publisher.publish_ok("big/t", &payload, 1, n, false).await;
    }
    // One more round trip: the last delivery has been handed to the session.
    publisher.ping().await;
    let grown = peak.grown_mib();
    println!("200 x 256 KiB QoS 1 to a subscriber that never reads: RSS +{grown} MiB");
    assert!(grown < 30, "RSS grew by {grown} MiB");
}
