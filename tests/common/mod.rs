//! Test support: a real broker in-process on 127.0.0.1:0, and a raw-byte
//! MQTT client whose packets are built here, byte by byte, independently of
//! `roost::protocol`, so a codec bug cannot hide behind itself.

#![allow(dead_code)]

pub mod raw;

use std::time::Duration;

pub use raw::RawClient;

/// How long any single expected event may take before a test fails.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A broker on an ephemeral loopback port; stopped when dropped.
pub struct TestBroker {
    pub handle: roost::BrokerHandle,
}

impl TestBroker {
    pub fn start() -> TestBroker {
        Self::start_with(|_| {})
    }

    /// Starts with the embedded defaults, changed by `tweak`.
    pub fn start_with(tweak: impl FnOnce(&mut roost::Config)) -> TestBroker {
        let _ = env_logger::builder().is_test(true).try_init();
        let mut config = roost::Config::defaults();
        config.listener.bind = "127.0.0.1:0".parse().unwrap();
        config.broker.workers = 2;
        config.broker.shards = 3;
        tweak(&mut config);
        TestBroker { handle: roost::start(config).expect("broker starts") }
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
