//! Counters every actor bumps without a hop: plain atomics shared through an
//! `Arc`. Drops are always counted here, whatever bound caused them.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_accepted: AtomicU64,
    /// Sockets closed at once because `limits.max_connections` was reached.
    pub connections_refused: AtomicU64,
    /// Requests refused by a limit of `[limits]` (CONNACK, SUBACK 0x80 or close).
    pub limits_refused: AtomicU64,
    /// CONNECTs refused by authentication (CONNACK 0x04 or 0x05).
    pub auth_failures: AtomicU64,
    /// CONNECTs of persistent sessions refused while the store's commits
    /// fail (CONNACK 0x03).
    pub unavailable_refused: AtomicU64,
    /// Refused by the ACL: PUBLISHes dropped, SUBSCRIBE filters (0x80),
    /// wills (CONNACK 0x05) and messages not delivered to a subscriber.
    pub acl_denied: AtomicU64,
    pub connections_closed: AtomicU64,
    /// Subscriptions held now, over all sessions (a gauge).
    pub subscriptions: AtomicU64,
    /// Sessions held now, connected ones and persistent ones away (a gauge,
    /// set by the session registry).
    pub sessions: AtomicU64,
    /// Of those, persistent sessions asleep (their client away): no actor,
    /// their queue in the store (a gauge, set by the session registry).
    pub sessions_asleep: AtomicU64,
    /// Topics holding a retained message now (a gauge, set by the retained
    /// store).
    pub retained_messages: AtomicU64,
    /// Retained PUBLISHes delivered but not retained: the retained store
    /// was at `limits.max_retained_messages` or `max_retained_bytes`.
    pub retained_refused: AtomicU64,
    /// TLS handshakes that failed or timed out (bad or missing certificates).
    pub tls_handshake_failures: AtomicU64,
    pub clients_connected: AtomicU64,
    /// The same, by protocol version (`ProtocolVersion::index`).
    pub clients_connected_by_protocol: [AtomicU64; crate::protocol::ProtocolVersion::ALL.len()],
    pub protocol_errors: AtomicU64,
    pub publishes_received: AtomicU64,
    pub publishes_sent: AtomicU64,
    /// QoS 0 messages dropped because the client's outbound buffer was full.
    pub dropped_slow_client: AtomicU64,
    /// Messages dropped because a session queue was at its bound.
    pub dropped_queue_full: AtomicU64,
    /// QoS 0 messages not queued for an offline session (`queue_qos0` off).
    pub dropped_offline_qos0: AtomicU64,
    pub wills_published: AtomicU64,
    pub takeovers: AtomicU64,
    /// Store transactions committed, the changes they held, and the time
    /// they took in total (batch size and commit latency are the ratios).
    pub store_commits: AtomicU64,
    /// Store transactions begun, retries of failed ones included.
    pub store_commit_attempts: AtomicU64,
    pub store_ops_committed: AtomicU64,
    pub store_commit_micros: AtomicU64,
    pub store_commit_failures: AtomicU64,
    /// Copies queued for persistent sessions in the store, and the bytes of
    /// queued messages held in memory by the store's cache (gauges, set by
    /// the store after each commit).
    pub queued_messages: AtomicU64,
    pub log_cache_bytes: AtomicU64,
    /// A commit failed and is being tried again: durable acknowledgements
    /// wait, and new persistent sessions are refused (CONNACK 0x03).
    pub store_failing: std::sync::atomic::AtomicBool,
    /// Checkpoints run by the checkpoint thread (WAL pages copied into the
    /// database file), counting those that found nothing to copy.
    pub store_checkpoints: AtomicU64,
    pub sessions_expired: AtomicU64,
    /// MQTT 5.0 messages not delivered because their Message Expiry
    /// Interval passed while they waited (queued, or retained).
    pub messages_expired: AtomicU64,
    /// MQTT 5.0 messages not sent to a client because they were larger
    /// than the Maximum Packet Size it set.
    pub oversized_dropped: AtomicU64,
    /// Bytes not sent thanks to topic aliases roost assigned (5.0).
    pub topic_alias_bytes_saved: AtomicU64,
    /// Actor restarts after a caught panic (any kind).
    pub restarts: AtomicU64,
    /// The same, by `ActorKind` (indexed by `kind as usize`).
    pub restarts_by_kind: [AtomicU64; 7],
    /// Restart storms answered by rebuilding the whole subtree.
    pub subtree_restarts: AtomicU64,
    /// Connections closed because their handler panicked.
    pub connection_panics: AtomicU64,
    /// Commit latency and changes per commit, for `/metrics`.
    pub store_commit_seconds: Histogram<100>,
    pub store_batch_changes: Histogram<1_000_000>,
}

/// A Prometheus histogram (shared by its clones) whose buckets double 16
/// times from `FIRST` millionths: `Histogram<100>` for seconds (100 µs up
/// to 3.3 s), `Histogram<1_000_000>` for counts (1 up to 32,768).
#[derive(Debug, Clone)]
pub struct Histogram<const FIRST: u64>(pub prometheus_client::metrics::histogram::Histogram);

impl<const FIRST: u64> Histogram<FIRST> {
    pub fn observe(&self, v: f64) {
        self.0.observe(v);
    }
}

impl<const FIRST: u64> Default for Histogram<FIRST> {
    fn default() -> Self {
        Histogram(prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(FIRST as f64 / 1e6, 2.0, 16),
        ))
    }
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Drops of every kind, for tests and logs.
    pub fn dropped_total(&self) -> u64 {
        Self::get(&self.dropped_slow_client)
            + Self::get(&self.dropped_queue_full)
            + Self::get(&self.dropped_offline_qos0)
    }
}
