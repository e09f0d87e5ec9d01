//! Test support: a real broker in-process on 127.0.0.1:0, and a raw-byte
//! MQTT client whose packets are built here, byte by byte, independently of
//! `roost::protocol`, so a codec bug cannot hide behind itself.

#![allow(dead_code)]

pub mod raw;
pub mod raw5;

use std::time::Duration;

use raw::ConnectOptions;
pub use raw::RawClient;

/// How long any single expected event may take before a test fails.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A broker on an ephemeral loopback port with its own SQLite database in a
/// temporary directory; stopped when dropped.
pub struct TestBroker {
    pub handle: roost::BrokerHandle,
    pub config: roost::Config,
    /// Holds the database directory until the last restart is dropped.
    pub dir: std::sync::Arc<tempfile::TempDir>,
}

impl TestBroker {
    pub fn start() -> TestBroker {
        Self::start_with(|_| {})
    }

    /// Starts with the embedded defaults, changed by `tweak`.
    pub fn start_with(tweak: impl FnOnce(&mut roost::Config)) -> TestBroker {
        let _ = env_logger::builder().is_test(true).try_init();
        let dir = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut config = roost::Config::defaults();
        config.listener.bind = "127.0.0.1:0".parse().unwrap();
        config.broker.workers = 2;
        config.broker.shards = 3;
        config.store.db = dir.path().join("roost.db");
        tweak(&mut config);
        let handle = roost::start(config.clone()).expect("broker starts");
        TestBroker {
            handle,
            config,
            dir,
        }
    }

    /// Stops the broker gracefully (pending writes are committed) and starts
    /// it again on the same database; the port changes.
    pub fn restart(self) -> TestBroker {
        let TestBroker {
            handle,
            config,
            dir,
        } = self;
        handle.stop();
        let handle = roost::start(config.clone()).expect("broker restarts");
        TestBroker {
            handle,
            config,
            dir,
        }
    }

    /// The database file.
    pub fn db_path(&self) -> std::path::PathBuf {
        self.config.store.db.clone()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.handle.local_addr()
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// rumqttc options for this broker.
    pub fn mqtt_options(&self, client_id: &str) -> rumqttc::MqttOptions {
        let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", self.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    }
}

/// A raw client on a persistent session (clean session 0) of `id`, whose
/// CONNACK must be `expected_connack`.
pub async fn persistent(broker: &TestBroker, id: &str, expected_connack: &[u8]) -> RawClient {
    let options = ConnectOptions {
        clean: false,
        ..ConnectOptions::new(id)
    };
    RawClient::connected_expecting(broker.addr(), &options, expected_connack).await
}

/// RSS of process `pid` in KiB, from /proc (0 if it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The highest RSS of process `pid` seen while sampling (every 10 ms).
pub struct PeakRss {
    pub before_kib: u64,
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    pub fn start(pid: u32) -> PeakRss {
        let before_kib = rss_kib(pid);
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before_kib));
        let p = peak.clone();
        let sampler = tokio::spawn(async move {
            loop {
                p.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        PeakRss {
            before_kib,
            peak,
            sampler,
        }
    }

    /// How far RSS grew above where it was at the start, in MiB.
    pub fn grown_mib(&self) -> u64 {
        self.peak
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(self.before_kib)
            / 1024
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.sampler.abort();
    }
}
