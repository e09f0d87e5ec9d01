//! What every connection needs, shared read-only: where to publish and
//! register, the counters, the reloadable settings, and the listeners'
//! connection counts.

use super::client::registry::SessionRegistry;
use super::client::verifier::Verifier;
use super::live::Live;
use super::ops::metrics::Metrics;
use super::route::router::Router;
use actix::Addr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;

pub struct Shared {
    pub router: Router,
    pub registry: Addr<SessionRegistry>,
    pub metrics: Arc<Metrics>,
    pub next_connection_id: AtomicU64,
    /// What SIGHUP reloads: read it through `live.load()`.
    pub live: Live,
    /// Connections accepted by each listener, by its label (see
    /// `net::label`), in the listeners' order.
    pub listener_accepted: Vec<(String, AtomicU64)>,
    /// Connections open now, for `limits.max_connections`.
    pub open_connections: AtomicUsize,
    /// Password checks, bounded (see `verifier`).
    pub verifier: Arc<Verifier>,
    /// The longest Session Expiry Interval a 5.0 client is granted, in
    /// seconds (`session.expiry_secs`); 0: no limit.
    pub max_session_expiry: u32,
    /// `broker.response_information_prefix`; `None` when empty.
    pub response_information_prefix: Option<Arc<str>>,
}
