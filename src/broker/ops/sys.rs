//! `$SYS` topics with Mosquitto's names, published as retained QoS 0
//! messages every `broker.sys_interval_secs` (they live in memory only:
//! the retained store does not write `$SYS` topics to the database).
//! Clients may not publish to `$SYS` (see `Connection::may_publish`).
//!
//! `messages/received` and `messages/sent` count PUBLISH packets (Mosquitto
//! counts every packet there); `publish/messages/*` are the same counts
//! under Mosquitto's PUBLISH-only names. The `load/*` figures are per-minute
//! rates averaged over 1, 5 and 15 minutes, as Mosquitto's.

use super::metrics::Metrics;
use crate::broker::route::router::Router;
use crate::message::Message;
use crate::protocol::{QoS, TopicName};
use actix::prelude::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const VERSION: &str = concat!("roost ", env!("CARGO_PKG_VERSION"));

/// Exponential moving averages of a counter's rate per minute.
#[derive(Default)]
struct Load {
    last: u64,
    averages: [f64; 3],
}

impl Load {
    const WINDOWS_SECS: [f64; 3] = [60.0, 300.0, 900.0];

    fn update(&mut self, now: u64, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let per_minute = now.saturating_sub(self.last) as f64 * 60.0 / secs;
        self.last = now;
        for (avg, window) in self.averages.iter_mut().zip(Self::WINDOWS_SECS) {
            let k = (-secs / window).exp();
            *avg = *avg * k + per_minute * (1.0 - k);
        }
    }
}

pub struct SysTopics {
    router: Router,
    metrics: Arc<Metrics>,
    interval: Duration,
    started: Instant,
    last_tick: Instant,
    /// messages received, messages sent, connections.
    loads: [Load; 3],
}

impl SysTopics {
    pub fn new(router: Router, metrics: Arc<Metrics>, interval: Duration) -> SysTopics {
        SysTopics {
            router,
            metrics,
            interval,
            started: Instant::now(),
            last_tick: Instant::now(),
            loads: Default::default(),
        }
    }

    fn publish(&self, topic: &str, value: String) {
        let Ok(topic) = TopicName::new(format!("$SYS/broker/{topic}")) else {
            return;
        };
        self.router.publish(
            Message {
                topic,
                payload: value.into(),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: None,
            },
            None,
            None,
        );
    }

    fn tick(&mut self) {
        let m = &self.metrics;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let received = get(&m.publishes_received);
        let sent = get(&m.publishes_sent);
        let connections = get(&m.connections_accepted);
        let dropped = m.dropped_total();
        let connected = get(&m.clients_connected);
        let elapsed = self.last_tick.elapsed();
        self.last_tick = Instant::now();
        for (load, now) in self.loads.iter_mut().zip([received, sent, connections]) {
            load.update(now, elapsed);
        }
        self.publish("version", VERSION.to_string());
        self.publish(
            "uptime",
            format!("{} seconds", self.started.elapsed().as_secs()),
        );
        self.publish("clients/connected", connected.to_string());
        // roost's own: Mosquitto has no count by protocol version.
        for version in crate::protocol::ProtocolVersion::ALL {
            let n = get(&m.clients_connected_by_protocol[version.index()]);
            self.publish(
                &format!("clients/protocol/{}", version.number()),
                n.to_string(),
            );
        }
        self.publish("messages/received", received.to_string());
        self.publish("messages/sent", sent.to_string());
        self.publish("publish/messages/received", received.to_string());
        self.publish("publish/messages/sent", sent.to_string());
        self.publish("publish/messages/dropped", dropped.to_string());
        self.publish("subscriptions/count", get(&m.subscriptions).to_string());
        for (name, load) in ["messages/received", "messages/sent", "connections"]
            .iter()
            .zip(&self.loads)
        {
            for (window, avg) in ["1min", "5min", "15min"].iter().zip(load.averages) {
                self.publish(&format!("load/{name}/{window}"), format!("{avg:.2}"));
            }
        }
        let total = get(&m.sessions);
        self.publish("clients/total", total.to_string());
        self.publish(
            "clients/disconnected",
            total.saturating_sub(connected).to_string(),
        );
        self.publish(
            "retained messages/count",
            get(&m.retained_messages).to_string(),
        );
    }
}

impl Actor for SysTopics {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.tick();
        ctx.run_interval(self.interval, |act, _| act.tick());
    }
}
