//! Starts the supervision tree in dependency order; listener last, so by
//! the time a client can connect, everything its connection talks to runs.
//! The restart policy of each kind, and what its restart rebuilds, is the
//! list `TREE` in `restart.rs`; this file says where each actor runs.
//!
//! | # | actor            | where                        | supervised by            |
//! |---|------------------|------------------------------|--------------------------|
//! | 0 | Store            | its own arbiter              | actix `Supervisor`       |
//! | 1 | RetainedStore    | its own arbiter              | actix `Supervisor`       |
//! | 2 | TopicShard × N   | worker arbiters, round robin | actix `Supervisor`       |
//! | 3 | SessionRegistry  | system arbiter               | actix `Supervisor`       |
//! | - | Session          | its connection's arbiter     | itself (`Session::recover`): it also ends on purpose |
//! | 4 | Listener         | system arbiter               | none: a failure stops roost |
//! | - | Connection       | a worker arbiter             | none: a failure is a disconnect |

use super::metrics::Metrics;
use super::restart::{set_thread_broker, Rebuild, RestartTracker, EXIT_SOFTWARE};
use super::sys::SysTopics;
use crate::broker::client::connection::may_publish;
use crate::broker::client::registry::SessionRegistry;
use crate::broker::client::session::SessionDeps;
use crate::broker::client::verifier::Verifier;
use crate::broker::durable::{Flush, QueueSettings, Store, StoreHandle, WriteInbox};
use crate::broker::live::Live;
use crate::broker::net::listener::{Bound, Listener};
use crate::broker::route::retained::RetainedStore;
use crate::broker::route::router::Router;
use crate::broker::route::topic_shard::TopicShard;
use crate::broker::shared::Shared;
use crate::config::Config;
use crate::store::{QueueBounds, Snapshot};
use actix::prelude::*;
use sqlx::SqliteConnection;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;

/// The running tree; dropping it does not stop anything (the System does).
pub struct Tree {
    pub workers: Vec<Arbiter>,
    pub store_arbiter: Arbiter,
    /// The retained store's: a lookup for a wildcard over many retained
    /// topics must not hold up the accept loops and CONNECTs, which run on
    /// the system arbiter.
    pub retained_arbiter: Arbiter,
    pub shared: Arc<Shared>,
    pub store: Addr<Store>,
    pub listener: Addr<Listener>,
    /// The `$SYS` publisher, unless `broker.sys_interval_secs` is 0.
    pub sys: Option<Addr<SysTopics>>,
}

/// Starts every actor on an opened database; must run inside the broker's
/// actix System. Returns once the listener runs, which is only after every
/// restored persistent session has its subscriptions in the shards: a
/// publisher that connects the moment the port accepts must find them.
pub async fn start(
    config: Config,
    listeners: Vec<Bound>,
    metrics: Arc<Metrics>,
    conn: SqliteConnection,
    snapshot: Snapshot,
    broker_id: u64,
    live: Live,
) -> Tree {
    let workers: Vec<Arbiter> = (0..config.workers()).map(|_| Arbiter::new()).collect();
    let handles: Vec<_> = workers.iter().map(|a| a.handle()).collect();
    let store_arbiter = Arbiter::new();
    let retained_arbiter = Arbiter::new();
    for arbiter in workers.iter().chain([&store_arbiter, &retained_arbiter]) {
        arbiter.spawn_fn(move || set_thread_broker(broker_id));
    }
    store_arbiter.spawn_fn(batch_scheduling);
    let store_slot: Arc<std::sync::OnceLock<Addr<Store>>> = Arc::new(std::sync::OnceLock::new());
    let restarts = restart_tracker(&config, metrics.clone(), store_slot.clone());

    // 0. Store, on its own arbiter: SQL encoding never delays a session.
    let limits = config.session_limits();
    let settings = QueueSettings {
        bounds: QueueBounds {
            max_messages: u64::from(limits.max_queued_messages),
            max_bytes: u64::from(limits.max_queued_bytes),
        },
        cache_bytes: config.store.log_cache_mib.saturating_mul(1 << 20),
    };
    let (m, r, db, queues) = (
        metrics.clone(),
        restarts.clone(),
        (config.store.db.clone(), config.store.synchronous),
        snapshot.queues,
    );
    // Set here, before `start` returns, not when the store's actor first
    // runs on its thread: the gauge is read as soon as the broker is up.
    metrics
        .queued_messages
        .store(queues.total(), std::sync::atomic::Ordering::Relaxed);
    let inbox = Arc::new(WriteInbox::default());
    let i = inbox.clone();
    let store = Supervisor::start_in_arbiter(&store_arbiter.handle(), move |_| {
        Store::new(conn, queues, settings, db, m, r, i)
    });
    let _ = store_slot.set(store.clone());
    let store = StoreHandle::new(store, inbox);
    // 1. RetainedStore, loaded from the store.
    let (retained, s, r, m, l) = (
        snapshot.retained,
        store.clone(),
        restarts.clone(),
        metrics.clone(),
        live.clone(),
    );
    let retained = Supervisor::start_in_arbiter(&retained_arbiter.handle(), move |_| {
        RetainedStore::new(retained, s, r, m, l)
    });
    // 2. TopicShard × N, spread over the workers. They number the messages
    // they route to persistent sessions (ids of the store's log).
    let message_ids = Arc::new(AtomicU64::new(snapshot.next_message_id));
    let shards: Vec<Addr<TopicShard>> = (0..config.shards())
        .map(|i| {
            let (r, store, ids) = (restarts.clone(), store.clone(), message_ids.clone());
            let queue_qos0 = limits.queue_qos0;
            Supervisor::start_in_arbiter(&handles[i % handles.len()], move |_| {
                TopicShard::new(i, r, store, ids, queue_qos0)
            })
        })
        .collect();
    let mut subtree: Vec<Recipient<Rebuild>> =
        shards.iter().map(|s| s.clone().recipient()).collect();
    subtree.push(retained.clone().recipient());
    let router = Router::new(shards, retained);
    // 3. SessionRegistry; it restores persistent sessions and starts new ones.
    let deps = Arc::new(SessionDeps {
        router: router.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        limits: config.session_limits(),
        expiry: config.session_expiry(),
        message_ids,
        restarts: restarts.clone(),
        live: live.clone(),
        registry: std::sync::OnceLock::new(),
    });
    let restore = snapshot.sessions;
    let r = restarts.clone();
    let (restored_tx, restored) = tokio::sync::oneshot::channel();
    let registry = Supervisor::start(move |ctx: &mut Context<SessionRegistry>| {
        let me = ctx.address();
        let _ = deps.registry.set((me.clone().recipient(), me.recipient()));
        SessionRegistry::new(deps, restore, restored_tx, r)
    });
    subtree.push(registry.clone().recipient());
    restarts.set_subtree(subtree);
    let sys = (config.broker.sys_interval_secs > 0).then(|| {
        let interval = std::time::Duration::from_secs(config.broker.sys_interval_secs);
        SysTopics::new(router.clone(), metrics.clone(), interval).start()
    });
    let shared = Arc::new(Shared {
        max_session_expiry: u32::try_from(config.session.expiry_secs).unwrap_or(u32::MAX),
        response_information_prefix: Some(&config.broker.response_information_prefix)
            .filter(|p| !p.is_empty())
            .map(|p| Arc::from(p.as_str())),
        router,
        registry,
        metrics,
        next_connection_id: AtomicU64::new(1),
        open_connections: AtomicUsize::new(0),
        // As many password checks at once as there are cores.
        verifier: Verifier::new(std::thread::available_parallelism().map_or(1, |n| n.get())),
        listener_accepted: listeners
            .iter()
            .map(|b| (b.label.clone(), AtomicU64::new(0)))
            .collect(),
        live,
    });
    // 4. Listener, last: once the restored subscriptions are indexed.
    let _ = restored.await;
    publish_wills_left(snapshot.wills, &shared);
    let listener = Listener::new(listeners, handles, shared.clone()).start();
    Tree {
        workers,
        store_arbiter,
        retained_arbiter,
        shared,
        store: store.addr().clone(),
        listener,
        sys,
    }
}

/// Publishes the wills of the clients that were connected when roost last
/// stopped (a crash, kill -9, a stop): their connections ended without
/// DISCONNECT, so their wills are due [MQTT-3.1.2-8]. After the restored
/// subscriptions are indexed, so persistent subscribers queue them; before
/// the listener, so they come before the clients' own new messages. Each
/// is checked against the ACL as it is now.
fn publish_wills_left(wills: Vec<crate::store::StoredWill>, shared: &Shared) {
    if wills.is_empty() {
        return;
    }
    let live = shared.live.load();
    let mut published = 0;
    for w in wills {
        let user = w.username.as_deref();
        if !may_publish(&live, user, &w.client_id, w.will.topic.as_str()) {
            log::warn!(
                "will of client {:?} ({}) to {:?} not published: the ACL no longer lets this user write it",
                w.client_id,
                match user {
                    Some(user) => format!("user {user:?}"),
                    None => "no user name".to_string(),
                },
                w.will.topic.as_str()
            );
            continue;
        }
        shared.router.publish(w.will, None, None);
        published += 1;
    }
    shared
        .metrics
        .wills_published
        .fetch_add(published, std::sync::atomic::Ordering::Relaxed);
    log::info!("{published} wills published of clients connected when roost last stopped");
}

/// The restart limit of `[supervision]`: past it, roost commits what it
/// acknowledged and stops with [`EXIT_SOFTWARE`].
fn restart_tracker(
    config: &Config,
    metrics: Arc<Metrics>,
    store: Arc<std::sync::OnceLock<Addr<Store>>>,
) -> Arc<RestartTracker> {
    let system = System::current();
    let escalated = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let escalate = Box::new(move |_kind| {
        if escalated.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let store = store.get().cloned();
        system.arbiter().spawn(async move {
            if let Some(store) = store {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), store.send(Flush))
                    .await;
            }
            log::error!("roost stopped after a restart storm (exit code {EXIT_SOFTWARE})");
            System::current().stop_with_code(EXIT_SOFTWARE);
        });
    });
    RestartTracker::new(
        config.supervision.max_restarts,
        std::time::Duration::from_secs(config.supervision.window_secs),
        metrics,
        escalate,
    )
}

/// Asks Linux to schedule the calling thread (the store's) as SCHED_BATCH:
/// a write that wakes it then no longer preempts the worker that made it,
/// which goes on with the writes of the same turn, and the store takes
/// them as one batch when the worker waits. On a core shared by both, the
/// store otherwise woke at a worker's first write of a turn and committed
/// it alone. Drain, one publisher with 64 in flight (10 offline × 10,000
/// QoS 1, pinned, 5 alternating runs): queueing 104k → 109k, draining
/// 1.49M → 1.60M. The workers keep the normal policy: as SCHED_BATCH too,
/// latency p99 at 10k msg/s went from 132 to 190 µs.
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: a system call on the calling thread (pid 0) with a valid
        // parameter; it only changes how that thread is scheduled.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            log::debug!(
                "the store's thread keeps the normal scheduling policy: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_store_thread_asks_for_batch_scheduling() {
        let policy = std::thread::spawn(|| {
            super::batch_scheduling();
            // SAFETY: reads the calling thread's policy.
            unsafe { libc::sched_getscheduler(0) }
        })
        .join()
        .unwrap();
        assert_eq!(policy, libc::SCHED_BATCH);
        // SAFETY: as above; this thread was not changed.
        assert_ne!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_BATCH);
    }
}
