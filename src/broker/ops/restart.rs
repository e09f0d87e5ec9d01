//! What happens when an actor fails: the restart policy of each kind, the
//! panic guard every handler runs in, and the escalation of restart storms.
//! (Where each actor runs, and the order they start in, is `tree`.)
//!
//! actix's `Supervisor` restarts an actor only after `ctx.stop()`; a panic
//! kills it for good. So every handler of a supervised actor runs inside
//! [`guard`], which catches the panic, logs it once at warn (actor kind,
//! id, message type), and stops the actor so that the `Supervisor` restarts
//! it. Each kind's `restarting` rebuilds what the failure may have broken
//! (see [`TREE`]). A Connection is never restarted: a panic there closes
//! that one connection (its will is published) and nobody else notices.
//!
//! Restart storms escalate instead of looping: more than
//! `supervision.max_restarts` restarts within `supervision.window_secs`
//! restart the whole subtree; a second storm within the window shuts roost
//! down with a clear log line and exit code [`EXIT_SOFTWARE`].

use super::metrics::Metrics;
use std::cell::Cell;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// Exit code when roost stops itself after an internal failure it cannot
/// recover from: a second restart storm, or a failed listener
/// (EX_SOFTWARE of sysexits.h).
pub const EXIT_SOFTWARE: i32 = 70;

/// The kinds of actor, for logs, metrics, fault injection and policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKind {
    Store,
    RetainedStore,
    TopicShard,
    SessionRegistry,
    Session,
    Listener,
    Connection,
}

impl ActorKind {
    pub const ALL: [ActorKind; 7] = [
        ActorKind::Store,
        ActorKind::RetainedStore,
        ActorKind::TopicShard,
        ActorKind::SessionRegistry,
        ActorKind::Session,
        ActorKind::Listener,
        ActorKind::Connection,
    ];
}

impl fmt::Display for ActorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What a failure of an actor kind leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restarted in place; `restarting` rebuilds its state.
    Restart,
    /// Not restarted: the failure ends it (a connection: a disconnect).
    Stop,
}

/// The supervision tree, in start order (dependencies first, listener
/// last), with each kind's policy and what its restart rebuilds.
pub const TREE: &[(ActorKind, RestartPolicy, &str)] = &[
    (ActorKind::Store, RestartPolicy::Restart, "keeps its connection, or reopens it (each failed reopen counts as a restart); the batch being written is abandoned (not acknowledged, clients resend)"),
    (ActorKind::RetainedStore, RestartPolicy::Restart, "reloads every retained message from SQLite"),
    (ActorKind::TopicShard, RestartPolicy::Restart, "empties its index; every session sends its subscriptions for this shard again"),
    (ActorKind::SessionRegistry, RestartPolicy::Restart, "drops entries of sessions that no longer run"),
    (ActorKind::Session, RestartPolicy::Restart, "keeps its state; resends in-flight messages to its connection"),
    (ActorKind::Listener, RestartPolicy::Stop, "a listener failure stops roost (exit code 70)"),
    (ActorKind::Connection, RestartPolicy::Stop, "never restarted: the connection closes and its will is published"),
];

pub fn policy(kind: ActorKind) -> RestartPolicy {
    TREE.iter()
        .find(|(k, _, _)| *k == kind)
        .map_or(RestartPolicy::Stop, |(_, p, _)| *p)
}

thread_local! {
    /// Set while a guarded handler runs: the panic hook stays quiet, since
    /// `guard` logs the panic itself (once, at warn).
    static IN_GUARD: Cell<bool> = const { Cell::new(false) };
}

/// Installs (once per process) a panic hook that defers to the previous one
/// except inside [`guard`].
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_GUARD.with(|g| g.get()) {
                previous(info);
            }
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_string()
    }
}

/// A handler body panicked (already logged by [`guard`]).
#[derive(Debug)]
pub struct Panicked;

/// Runs one handler body; a panic is caught, logged and reported as `Err`
/// so the caller can stop the actor (and its supervisor restart it).
pub fn guard<M, R>(
    kind: ActorKind,
    id: &dyn fmt::Display,
    f: impl FnOnce() -> R,
) -> Result<R, Panicked> {
    let was = IN_GUARD.with(|g| g.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fault::maybe_panic(kind);
        f()
    }));
    IN_GUARD.with(|g| g.set(was));
    result.map_err(|payload| {
        let what = match policy(kind) {
            RestartPolicy::Restart => "restarting it",
            RestartPolicy::Stop => "stopping it",
        };
        // The id may be a client id, chosen by the client: escaped, so
        // that it cannot forge log lines.
        log::warn!(
            "{kind} {} panicked while handling {}: {}; {what}",
            id.to_string().escape_debug(),
            std::any::type_name::<M>(),
            panic_message(payload.as_ref()).escape_debug()
        );
        Panicked
    })
}

/// Supervisor → a supervised actor: rebuild your state as after a restart
/// (the subtree restart of a restart storm).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Rebuild;

/// Counts restarts and escalates restart storms, in two steps:
/// 1. more than `max_restarts` within `window`: the whole subtree (every
///    shard, the retained store, the registry) rebuilds its state, and
///    counting starts again;
/// 2. another storm within `window` of that: roost commits what it
///    acknowledged and shuts down with exit code 70.
pub struct RestartTracker {
    max_restarts: usize,
    window: Duration,
    state: Mutex<StormState>,
    metrics: Arc<Metrics>,
    /// The actors a subtree restart rebuilds, known once they are started.
    subtree: std::sync::OnceLock<Vec<actix::Recipient<Rebuild>>>,
    /// Shuts roost down (step 2).
    escalate: Box<dyn Fn(ActorKind) + Send + Sync>,
}

#[derive(Default)]
struct StormState {
    recent: Vec<Instant>,
    subtree_restarted_at: Option<Instant>,
}

impl RestartTracker {
    pub fn new(
        max_restarts: usize,
        window: Duration,
        metrics: Arc<Metrics>,
        escalate: Box<dyn Fn(ActorKind) + Send + Sync>,
    ) -> Arc<RestartTracker> {
        Arc::new(RestartTracker {
            max_restarts,
            window,
            state: Mutex::new(StormState::default()),
            metrics,
            subtree: std::sync::OnceLock::new(),
            escalate,
        })
    }

    /// Names the actors a subtree restart rebuilds.
    pub fn set_subtree(&self, actors: Vec<actix::Recipient<Rebuild>>) {
        let _ = self.subtree.set(actors);
    }

    /// Records a restart of `kind`. Returns false when the restart storm
    /// escalated to a shutdown.
    pub fn record(&self, kind: ActorKind) -> bool {
        self.metrics.restarts.fetch_add(1, Ordering::Relaxed);
        self.metrics.restarts_by_kind[kind as usize].fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let (storm, second) = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state
                .recent
                .retain(|t| now.duration_since(*t) < self.window);
            state.recent.push(now);
            if state.recent.len() <= self.max_restarts {
                (false, false)
            } else {
                state.recent.clear();
                let second = state
                    .subtree_restarted_at
                    .is_some_and(|t| now.duration_since(t) < self.window);
                state.subtree_restarted_at = Some(now);
                (true, second)
            }
        };
        if !storm {
            return true;
        }
        if second {
            log::error!(
                "a second restart storm within {} s (supervision.window_secs; last restart: {kind}): shutting roost down",
                self.window.as_secs()
            );
            (self.escalate)(kind);
            return false;
        }
        log::error!(
            "more than {} actor restarts within {} s (supervision.max_restarts, window_secs; last: {kind}): restarting the whole subtree",
            self.max_restarts,
            self.window.as_secs()
        );
        self.metrics
            .subtree_restarts
            .fetch_add(1, Ordering::Relaxed);
        for actor in self.subtree.get().into_iter().flatten() {
            actor.do_send(Rebuild);
        }
        true
    }
}

thread_local! {
    /// The broker whose actors run on this thread (each broker has its own
    /// arbiters), so fault injection hits only the broker a test armed.
    static BROKER: Cell<u64> = const { Cell::new(0) };
}

/// Marks the current thread as running actors of broker `id`.
pub fn set_thread_broker(id: u64) {
    BROKER.with(|b| b.set(id));
}

/// Fault injection for tests (cargo feature `fault-injection`): make the
/// next message handled by an actor of a kind, in one broker, panic.
pub mod fault {
    use super::ActorKind;

    #[cfg(feature = "fault-injection")]
    static ARMED: std::sync::Mutex<Vec<(u64, ActorKind)>> = std::sync::Mutex::new(Vec::new());

    /// Arms one panic for the next guarded handler of `kind` in broker
    /// `broker` (see `BrokerHandle::id`).
    #[cfg(feature = "fault-injection")]
    pub fn arm(broker: u64, kind: ActorKind) {
        ARMED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((broker, kind));
    }

    #[cfg(feature = "fault-injection")]
    pub(super) fn maybe_panic(kind: ActorKind) {
        let broker = super::BROKER.with(|b| b.get());
        let hit = {
            let mut armed = ARMED.lock().unwrap_or_else(|p| p.into_inner());
            match armed.iter().position(|a| *a == (broker, kind)) {
                Some(i) => {
                    armed.remove(i);
                    true
                }
                None => false,
            }
        };
        if hit {
            panic!("injected fault");
        }
    }

    #[cfg(not(feature = "fault-injection"))]
    #[inline(always)]
    pub(super) fn maybe_panic(_: ActorKind) {}

    #[cfg(feature = "fault-injection")]
    static FAILING_COMMITS: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

    /// Makes the next database commit of broker `broker` fail without
    /// writing anything, as a full disk or an I/O error would.
    #[cfg(feature = "fault-injection")]
    pub fn fail_next_commit(broker: u64) {
        FAILING_COMMITS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(broker);
    }

    /// Whether the commit about to start must fail (see `fail_next_commit`).
    #[cfg(feature = "fault-injection")]
    pub fn commit_fails() -> bool {
        let broker = super::BROKER.with(|b| b.get());
        let mut failing = FAILING_COMMITS.lock().unwrap_or_else(|p| p.into_inner());
        match failing.iter().position(|b| *b == broker) {
            Some(i) => {
                failing.remove(i);
                true
            }
            None => false,
        }
    }

    #[cfg(not(feature = "fault-injection"))]
    #[inline(always)]
    pub fn commit_fails() -> bool {
        false
    }

    #[cfg(feature = "fault-injection")]
    static FAILING_REOPENS: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

    /// Makes every later reopen of broker `broker`'s database (after a
    /// restart of its store) fail, as an unreadable file would.
    #[cfg(feature = "fault-injection")]
    pub fn fail_reopens(broker: u64) {
        FAILING_REOPENS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(broker);
    }

    /// Whether a reopen of the database must fail (see `fail_reopens`).
    #[cfg(feature = "fault-injection")]
    pub fn reopen_fails() -> bool {
        let broker = super::BROKER.with(|b| b.get());
        FAILING_REOPENS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&broker)
    }

    #[cfg(not(feature = "fault-injection"))]
    #[inline(always)]
    pub fn reopen_fails() -> bool {
        false
    }
}
