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
