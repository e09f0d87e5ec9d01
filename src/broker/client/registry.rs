//! SessionRegistry: client id → Session. Decides, for each CONNECT, whether
//! the client resumes its persistent session or starts a fresh one, and
//! whether CONNACK says "session present". At start it brings back the
//! persistent sessions the store kept.
//!
//! A persistent session whose client is away sleeps: it has no actor, only
//! an entry here ([`Dormant`]) and its subscriptions in the shards, which
//! deliver through its inbox straight into its queue in the store. The
//! session goes to sleep itself once its client has left ([`Retire`]); the
//! registry wakes it (starts an actor for it again) when its client
//! returns, removes it when it expires or a clean session replaces it, and
//! starts every session restored from the store asleep.

use super::messages::{Discard, Dormant, Retire, SaveInflight, SessionEnded, SessionId};
use super::session::{Session, SessionDeps};
use crate::broker::durable::Completion;
use crate::broker::ops::restart::{guard, ActorKind, Rebuild, RestartTracker};
use crate::broker::route::delivery_inbox::{drop_delivery, DormantSink};
use crate::message::Message;
use crate::session::connect::{takeover, Takeover};
use crate::session::SessionState;
use crate::store::{Op, StoredSession};
use actix::prelude::*;
use ahash::AHashMap;
use bytestring::ByteString;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod away;
mod restore;

/// How often sleeping sessions are checked for expiry.
const EXPIRY_CHECK: Duration = Duration::from_secs(1);

/// Connection → SessionRegistry, after a valid CONNECT: find or create the
/// session for this client id.
#[derive(Message)]
#[rtype(result = "Result<Registered, RegistryError>")]
pub struct Register {
    pub client_id: ByteString,
    /// Discard any existing session (3.1.1's clean session 1, 5.0's Clean
    /// Start 1).
    pub clean_session: bool,
    /// A new session outlives its connection (3.1.1's clean session 0, a
    /// 5.0 Session Expiry Interval above 0).
    pub durable: bool,
    /// How long it is kept once its client has gone; `None`: for ever.
    pub expiry: Option<Duration>,
    /// Where a new session is started: the connection's own arbiter.
    pub arbiter: actix::dev::ArbiterHandle,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the session registry failed while handling this connect (it restarts; the client may retry)")]
    Failed,
    #[error("{max} persistent sessions are kept already (limits.max_persistent_sessions)")]
    TooManyPersistentSessions { max: usize },
}

pub struct Registered {
    pub session: Addr<Session>,
    /// The session's id in the shards' index (a message its client
    /// publishes comes from it, for No Local).
    pub session_id: SessionId,
    pub session_present: bool,
    /// Increases with every registration of this client id: a session accepts
    /// an attach only from its newest registration, so of two racing
    /// connections the later one wins [MQTT-3.1.4-2].
    pub generation: u64,
}

struct Entry {
    session_id: SessionId,
    held: Held,
    durable: bool,
    generation: u64,
    /// How long the session is kept asleep before it expires (its client's
    /// Session Expiry Interval, or `session.expiry_secs`); `None`: for ever.
    expiry: Option<Duration>,
}

/// A session with an actor, or one asleep.
enum Held {
    Awake(Addr<Session>),
    Asleep(Box<Dormant>),
}

pub struct SessionRegistry {
    sessions: AHashMap<ByteString, Entry>,
    /// How many of `sessions` are persistent, for
    /// `limits.max_persistent_sessions`.
    durable: usize,
    /// How many of `sessions` are asleep.
    asleep: usize,
    next_session_id: SessionId,
    deps: Arc<SessionDeps>,
    /// Persistent sessions from the store, started when the registry starts.
    restore: Vec<StoredSession>,
    /// Told once every restored session's subscriptions are in the shards
    /// (the first start only; see `ops::tree`).
    restored: Option<tokio::sync::oneshot::Sender<()>>,
    restarts: Arc<RestartTracker>,
    /// What sleeping sessions' inboxes write through.
    sink: Arc<DormantSink>,
    /// When sleeping sessions expire, soonest first (entries of sessions
    /// woken or removed since are skipped when they come up).
    expiries: BinaryHeap<Reverse<(Instant, SessionId, ByteString)>>,
    /// Wills waiting for their Will Delay Interval (5.0), by client id:
    /// published when it passes or the session ends, dropped when the
    /// session resumes first. In memory: a restart publishes none of them.
    delayed_wills: AHashMap<ByteString, (Instant, Message)>,
}

impl SessionRegistry {
    pub fn new(
        deps: Arc<SessionDeps>,
        restore: Vec<StoredSession>,
        restored: tokio::sync::oneshot::Sender<()>,
        restarts: Arc<RestartTracker>,
    ) -> Self {
        let sink = Arc::new(DormantSink {
            store: deps.store.clone(),
            metrics: deps.metrics.clone(),
        });
        SessionRegistry {
            sessions: AHashMap::new(),
            durable: 0,
            asleep: 0,
            next_session_id: 1,
            deps,
            restore,
            restored: Some(restored),
            restarts,
            sink,
            expiries: BinaryHeap::new(),
            delayed_wills: AHashMap::new(),
        }
    }

    /// Starts a session actor: a new one (`woken` None), or one woken
    /// from sleep, which keeps its session id (the shards' key) and inbox.
    #[allow(clippy::too_many_arguments)]
    fn start_session(
        &mut self,
        client_id: ByteString,
        durable: bool,
        state: SessionState,
        woken: Option<(SessionId, Box<Dormant>)>,
        arbiter: &actix::dev::ArbiterHandle,
        generation: u64,
    ) -> (Addr<Session>, SessionId) {
        let (session_id, username, inbox) = match woken {
            Some((id, dormant)) => (id, dormant.username, dormant.inbox),
            None => {
                self.next_session_id += 1;
                (self.next_session_id - 1, None, None)
            }
        };
        let (id, deps) = (client_id.clone(), self.deps.clone());
        // Sessions recover in place after a failure (`Session::recover`):
        // an actix Supervisor would also restart a session that ended on purpose.
        let session = Session::start_in_arbiter(arbiter, move |_| {
            Session::new(session_id, id, state, username, inbox, deps)
        });
        let entry = Entry {
            session_id,
            held: Held::Awake(session.clone()),
            durable,
            generation,
            expiry: self.deps.expiry,
        };
        self.insert(client_id, entry);
        (session, session_id)
    }

    /// Wakes a sleeping session for its returning client: an actor again,
    /// its queue paged in from the store once it attaches.
    fn wake(
        &mut self,
        client_id: ByteString,
        session_id: SessionId,
        dormant: Box<Dormant>,
        arbiter: &actix::dev::ArbiterHandle,
        generation: u64,
    ) -> (Addr<Session>, SessionId) {
        let state = SessionState::restore(
            self.deps.limits,
            dormant.subscriptions.to_vec(),
            dormant.inbound.to_vec(),
        );
        self.start_session(
            client_id,
            true,
            state,
            Some((session_id, dormant)),
            arbiter,
            generation,
        )
    }

    /// Puts a session to sleep, or starts a restored one asleep.
    fn put_to_sleep(&mut self, client_id: ByteString, session_id: SessionId, dormant: Dormant) {
        if let Some(inbox) = &dormant.inbox {
            inbox.go_dormant(client_id.clone(), self.sink.clone());
        }
        if let Some(at) = dormant.expires_at {
            self.expiries
                .push(Reverse((at, session_id, client_id.clone())));
        }
        if let Some(entry) = self.sessions.get_mut(&client_id) {
            if matches!(entry.held, Held::Awake(_)) {
                self.asleep += 1;
            }
            entry.held = Held::Asleep(Box::new(dormant));
        }
        self.count();
    }

    /// Removes a sleeping session for good: its subscriptions leave the
    /// shards, its rows the store.
    fn remove_asleep(&mut self, client_id: &ByteString, session_id: SessionId, dormant: Dormant) {
        for (filter, _) in dormant.subscriptions.iter() {
            self.deps.router.unsubscribe(session_id, filter);
            self.deps
                .metrics
                .subscriptions
                .fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(inbox) = dormant.inbox {
            for left in inbox.close() {
                drop_delivery(&self.deps.store, left);
            }
        }
        self.deps.store.write(
            Op::DeleteSession {
                client_id: client_id.clone(),
                persistent: true,
            },
            None,
        );
    }

    /// Adds (or replaces) an entry, keeping the counts.
    fn insert(&mut self, client_id: ByteString, entry: Entry) {
        self.durable += usize::from(entry.durable);
        self.asleep += usize::from(matches!(entry.held, Held::Asleep(_)));
        if let Some(replaced) = self.sessions.insert(client_id, entry) {
            self.forget(&replaced);
        }
        self.count();
    }

    /// Removes an entry, keeping the counts.
    fn remove(&mut self, client_id: &ByteString) -> Option<Entry> {
        let gone = self.sessions.remove(client_id)?;
        self.forget(&gone);
        self.count();
        Some(gone)
    }

    fn forget(&mut self, gone: &Entry) {
        self.durable -= usize::from(gone.durable);
        self.asleep -= usize::from(matches!(gone.held, Held::Asleep(_)));
    }

    /// Updates the gauge of sessions held.
    fn count(&self) {
        let m = &self.deps.metrics;
        m.sessions
            .store(self.sessions.len() as u64, Ordering::Relaxed);
        m.sessions_asleep
            .store(self.asleep as u64, Ordering::Relaxed);
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        ctx.run_interval(EXPIRY_CHECK, |act, _| act.expire());
        let restore = std::mem::take(&mut self.restore);
        let count = restore.len();
        let started = Instant::now();
        let restored = self.restored.take();
        let indexed = Completion::new(move || {
            if count > 0 {
                log::info!(
                    "{count} persistent sessions restored, their subscriptions indexed in {} ms",
                    started.elapsed().as_millis()
                );
            }
            if let Some(restored) = restored {
                let _ = restored.send(());
            }
        });
        // Restored sessions start asleep: no actor until their clients return.
        for stored in restore {
            self.restore_asleep(stored, &indexed);
        }
    }
}

impl Supervised for SessionRegistry {
    /// Keeps its map (fields survive the restart) but drops entries whose
    /// session no longer runs.
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.restarts.record(ActorKind::SessionRegistry);
        self.sweep();
    }
}

impl Handler<Rebuild> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, _: Rebuild, _: &mut Context<Self>) {
        self.sweep();
    }
}

impl SessionRegistry {
    fn sweep(&mut self) {
        let before = self.sessions.len();
        self.sessions.retain(|_, e| match &e.held {
            Held::Awake(session) => session.connected(),
            Held::Asleep(_) => true,
        });
        self.durable = self.sessions.values().filter(|e| e.durable).count();
        self.asleep = self
            .sessions
            .values()
            .filter(|e| matches!(e.held, Held::Asleep(_)))
            .count();
        self.count();
        log::warn!(
            "session registry restarted: {} sessions kept, {} stale entries dropped",
            self.sessions.len(),
            before - self.sessions.len()
        );
    }
}

impl Handler<Register> for SessionRegistry {
    /// Atomic: while an old session is being discarded, no other
    /// registration runs, so two connections of one client id stay ordered.
    type Result = AtomicResponse<Self, Result<Registered, RegistryError>>;

    fn handle(&mut self, msg: Register, ctx: &mut Context<Self>) -> Self::Result {
        let id = msg.client_id.clone();
        match guard::<Register, _>(ActorKind::SessionRegistry, &id, || self.register(msg)) {
            Ok(response) => response,
            Err(_) => {
                ctx.stop();
                AtomicResponse::new(Box::pin(fut::ready(Err(RegistryError::Failed))))
            }
        }
    }
}

impl SessionRegistry {
    fn register(
        &mut self,
        msg: Register,
    ) -> AtomicResponse<Self, Result<Registered, RegistryError>> {
        let mut generation = 1;
        let mut discard = None;
        let decision = takeover(
            self.sessions.get(&msg.client_id).map(|e| e.durable),
            msg.clean_session,
        );
        // A delayed will: dropped if the session resumes within the delay,
        // published if it ends (replaced by a clean one) [MQTT-3.1.3-9].
        match decision {
            Takeover::Resume => {
                if self.delayed_wills.remove(&msg.client_id).is_some() {
                    log::info!(
                        "client {:?}: delayed will dropped, its session resumed in time",
                        msg.client_id
                    );
                }
            }
            _ => self.publish_delayed_will(&msg.client_id),
        }
        let existing = self.sessions.get_mut(&msg.client_id);
        let max = self.deps.live.load().limits.max_persistent_sessions;
        if decision != Takeover::Resume && msg.durable && max > 0 && self.durable >= max {
            let refused = Err(RegistryError::TooManyPersistentSessions { max });
            return AtomicResponse::new(Box::pin(fut::ready(refused)));
        }
        if let Some(entry) = existing {
            entry.generation += 1;
            generation = entry.generation;
            // The newest CONNECT says how long the session is kept.
            entry.expiry = msg.expiry;
            let session_id = entry.session_id;
            match (&entry.held, decision) {
                (Held::Awake(session), Takeover::Resume) => {
                    let registered = Registered {
                        session: session.clone(),
                        session_id,
                        session_present: true,
                        generation,
                    };
                    return AtomicResponse::new(Box::pin(fut::ready(Ok(registered))));
                }
                (Held::Awake(session), _) => discard = Some(session.clone()),
                (Held::Asleep(_), decision) => {
                    let Some(Entry {
                        held: Held::Asleep(dormant),
                        ..
                    }) = self.remove(&msg.client_id)
                    else {
                        unreachable!("the entry was just matched asleep");
                    };
                    if decision == Takeover::Resume {
                        let client_id = msg.client_id.clone();
                        let (session, session_id) =
                            self.wake(msg.client_id, session_id, dormant, &msg.arbiter, generation);
                        self.set_expiry(&client_id, msg.expiry);
                        let registered = Registered {
                            session,
                            session_id,
                            session_present: true,
                            generation,
                        };
                        return AtomicResponse::new(Box::pin(fut::ready(Ok(registered))));
                    }
                    // Replaced by a clean session: removed before it starts.
                    self.remove_asleep(&msg.client_id, session_id, *dormant);
                }
            }
        }
        // The old session finishes (its last store writes go out) before the
        // new one starts, so the new session's rows are never deleted by it.
        let discarded = async move {
            if let Some(old) = discard {
                let _ = old.send(Discard).await;
            }
        };
        AtomicResponse::new(Box::pin(discarded.into_actor(self).map(
            move |(), act, _| {
                let durable = msg.durable;
                let state = SessionState::new(act.deps.limits, durable);
                let client_id = msg.client_id.clone();
                let (session, session_id) = act.start_session(
                    msg.client_id,
                    durable,
                    state,
                    None,
                    &msg.arbiter,
                    generation,
                );
                act.set_expiry(&client_id, msg.expiry);
                // A new session (`Takeover::New` or `Replace`): session
                // present is 0 [MQTT-3.2.2-1] [MQTT-3.2.2-3].
                Ok(Registered {
                    session,
                    session_id,
                    session_present: false,
                    generation,
                })
            },
        )))
    }
}

impl Handler<SaveInflight> for SessionRegistry {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: SaveInflight, _: &mut Context<Self>) -> Self::Result {
        let asked: Vec<_> = self
            .sessions
            .values()
            .filter_map(|e| match &e.held {
                Held::Awake(session) if e.durable => Some(session.send(SaveInflight)),
                _ => None,
            })
            .collect();
        Box::pin(async move {
            futures::future::join_all(asked).await;
        })
    }
}

impl Handler<Retire> for SessionRegistry {
    type Result = bool;

    fn handle(&mut self, msg: Retire, ctx: &mut Context<Self>) -> bool {
        let Retire {
            client_id,
            session_id,
            generation,
            dormant,
        } = msg;
        let Some(entry) = self.sessions.get(&client_id).filter(|e| {
            e.session_id == session_id
                && e.generation == generation
                && matches!(e.held, Held::Awake(_))
        }) else {
            return false;
        };
        // Its own expiry: the client's Session Expiry Interval (5.0).
        let dormant = Dormant {
            expires_at: entry.expiry.map(|e| Instant::now() + e),
            ..dormant
        };
        let id = client_id.clone();
        let slept = guard::<Retire, _>(ActorKind::SessionRegistry, &id, || {
            self.put_to_sleep(client_id, session_id, dormant)
        });
        if slept.is_err() {
            ctx.stop();
            return false;
        }
        true
    }
}

impl Handler<SessionEnded> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, ctx: &mut Context<Self>) {
        let ended = guard::<SessionEnded, _>(ActorKind::SessionRegistry, &msg.client_id, || {
            if self
                .sessions
                .get(&msg.client_id)
                .is_some_and(|e| e.session_id == msg.session_id)
            {
                self.remove(&msg.client_id);
            }
        });
        if ended.is_err() {
            ctx.stop();
        }
    }
}
