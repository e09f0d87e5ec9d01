//! The supervision tree, started in dependency order with each actor kind's
//! restart policy beside it. Listener last: by the time a client can
//! connect, everything its connection talks to is running.
//!
//! | # | actor            | where                    | restart policy                         |
//! |---|------------------|--------------------------|----------------------------------------|
//! | 1 | RetainedStore    | system arbiter           | supervised: restarted by actix          |
//! | 2 | TopicShard × N   | worker arbiters, round robin | supervised: restarted by actix      |
//! | 3 | SessionRegistry  | system arbiter           | supervised: restarted by actix          |
//! | - | Session          | its connection's arbiter | started by the registry                |
//! | 4 | Listener         | system arbiter           | not restarted: a failure stops roost   |
//! | - | Connection       | a worker arbiter         | never restarted: a failure is a disconnect |
//!
//! actix's `Supervisor` restarts an actor after `ctx.stop()`, not after a
//! panic, and keeps its fields; rebuilding state after a failure is the
//! subject of the supervision work in a later issue.

use super::listener::Listener;
use super::metrics::Metrics;
use super::registry::SessionRegistry;
use super::retained::RetainedStore;
use super::router::Router;
use super::topic_shard::TopicShard;
use super::Shared;
use crate::config::Config;
use actix::prelude::*;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// The running tree; dropping it does not stop anything (the System does).
pub struct Tree {
    pub workers: Vec<Arbiter>,
    pub shared: Arc<Shared>,
    pub listener: Addr<Listener>,
}

/// Starts every actor; must run inside the broker's actix System.
pub fn start(config: Config, listener: tokio::net::TcpListener, metrics: Arc<Metrics>) -> Tree {
    let workers: Vec<Arbiter> = (0..config.workers()).map(|_| Arbiter::new()).collect();
    let handles: Vec<_> = workers.iter().map(|a| a.handle()).collect();

    // 1. RetainedStore.
    let retained = Supervisor::start(|_| RetainedStore::default());
    // 2. TopicShard × N, spread over the workers.
    let shards = (0..config.shards())
        .map(|i| Supervisor::start_in_arbiter(&handles[i % handles.len()], move |_| TopicShard::new(i)))
        .collect();
    let router = Router::new(shards, retained);
    // 3. SessionRegistry (it starts Sessions on demand).
    let (limits, r, m) = (config.session_limits(), router.clone(), metrics.clone());
    let registry = Supervisor::start(move |_| SessionRegistry::new(limits, r, m));
    let shared = Arc::new(Shared { config, router, registry, metrics, next_connection_id: AtomicU64::new(1) });
    // 4. Listener, last.
    let listener = Listener::new(listener, handles, shared.clone()).start();
    Tree { workers, shared, listener }
}
