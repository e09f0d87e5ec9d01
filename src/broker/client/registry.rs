//! SessionRegistry: client id → Session. Decides, for each CONNECT, whether
//! the client resumes its persistent session or starts a fresh one, and
//! whether CONNACK says "session present". At start it brings back the
//! persistent sessions the store kept.

use super::messages::{Discard, SaveInflight, SessionEnded, SessionId};
use super::session::{Restored, Session, SessionDeps};
use crate::broker::durable::Completion;
use crate::broker::ops::restart::{guard, ActorKind, Rebuild, RestartTracker};
use crate::session::connect::{takeover, Takeover};
use crate::session::SessionState;
use crate::store::StoredSession;
use actix::prelude::*;
use ahash::AHashMap;
use bytestring::ByteString;
use std::sync::Arc;

/// Connection → SessionRegistry, after a valid CONNECT: find or create the
/// session for this client id.
#[derive(Message)]
#[rtype(result = "Result<Registered, RegistryError>")]
pub struct Register {
    pub client_id: ByteString,
    pub clean_session: bool,
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
    pub session_present: bool,
    /// Increases with every registration of this client id: a session accepts
    /// an attach only from its newest registration, so of two racing
    /// connections the later one wins [MQTT-3.1.4-2].
    pub generation: u64,
}

struct Entry {
    session_id: SessionId,
    session: Addr<Session>,
    durable: bool,
    generation: u64,
}

pub struct SessionRegistry {
    sessions: AHashMap<ByteString, Entry>,
    /// How many of `sessions` are persistent, for
    /// `limits.max_persistent_sessions`.
    durable: usize,
    next_session_id: SessionId,
    deps: Arc<SessionDeps>,
    /// Persistent sessions from the store, started when the registry starts.
    restore: Vec<StoredSession>,
    /// Told once every restored session's subscriptions are in the shards
    /// (the first start only; see `ops::tree`).
    restored: Option<tokio::sync::oneshot::Sender<()>>,
    /// Arbiters restored sessions are spread over.
    workers: Vec<actix::dev::ArbiterHandle>,
    restarts: Arc<RestartTracker>,
}

impl SessionRegistry {
    pub fn new(
        deps: Arc<SessionDeps>,
        restore: Vec<StoredSession>,
        restored: tokio::sync::oneshot::Sender<()>,
        workers: Vec<actix::dev::ArbiterHandle>,
        restarts: Arc<RestartTracker>,
    ) -> Self {
        SessionRegistry {
            sessions: AHashMap::new(),
            durable: 0,
            next_session_id: 1,
            deps,
            restore,
            restored: Some(restored),
            workers,
            restarts,
        }
    }

    #[allow(clippy::too_many_arguments)] // one call for new sessions, one for restored ones
    fn start_session(
        &mut self,
        client_id: ByteString,
        durable: bool,
        state: SessionState,
        restored: Option<(Restored, Completion)>,
        arbiter: &actix::dev::ArbiterHandle,
        generation: u64,
    ) -> Addr<Session> {
        let session_id = self.next_session_id;
        self.next_session_id += 1;
        let (id, deps) = (client_id.clone(), self.deps.clone());
        // Sessions recover in place after a failure (`Session::recover`):
        // an actix Supervisor would also restart a session that ended on purpose.
        let session = Session::start_in_arbiter(arbiter, move |ctx| match restored {
            Some((restored, indexed)) => {
                let mut session = Session::new(session_id, id, state, Some(restored), deps);
                session.restore_subscriptions(ctx.address(), &indexed);
                session
            }
            None => Session::new(session_id, id, state, None, deps),
        });
        let entry = Entry {
            session_id,
            session: session.clone(),
            durable,
            generation,
        };
        if let Some(replaced) = self.sessions.insert(client_id, entry) {
            self.durable -= usize::from(replaced.durable);
        }
        self.durable += usize::from(durable);
        self.count();
        session
    }

    /// Updates the gauge of sessions held.
    fn count(&self) {
        self.deps.metrics.sessions.store(
            self.sessions.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        let restore = std::mem::take(&mut self.restore);
        let count = restore.len();
        let started = std::time::Instant::now();
        let restored = self.restored.take();
        let indexed = Completion::new(move || {
            if count > 0 {
                log::info!(
                    "{count} persistent sessions restored, their subscriptions indexed in {:.1?}",
                    started.elapsed()
                );
            }
            if let Some(restored) = restored {
                let _ = restored.send(());
            }
        });
        for (i, stored) in restore.into_iter().enumerate() {
            let state =
                SessionState::restore(self.deps.limits, stored.subscriptions, stored.inbound);
            let arbiter = self.workers[i % self.workers.len()].clone();
            self.start_session(
                stored.client_id,
                true,
                state,
                Some((
                    Restored {
                        idle_secs: stored.idle_secs,
                        username: stored.username,
                    },
                    indexed.clone(),
                )),
                &arbiter,
                0,
            );
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
        self.sessions.retain(|_, e| e.session.connected());
        self.durable = self.sessions.values().filter(|e| e.durable).count();
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
        let existing = self.sessions.get_mut(&msg.client_id);
        let decision = takeover(existing.as_ref().map(|e| e.durable), msg.clean_session);
        let max = self.deps.live.load().limits.max_persistent_sessions;
        if decision != Takeover::Resume && !msg.clean_session && max > 0 && self.durable >= max {
            let refused = Err(RegistryError::TooManyPersistentSessions { max });
            return AtomicResponse::new(Box::pin(fut::ready(refused)));
        }
        if let Some(entry) = existing {
            entry.generation += 1;
            generation = entry.generation;
            if decision == Takeover::Resume {
                let registered = Registered {
                    session: entry.session.clone(),
                    session_present: true,
                    generation,
                };
                return AtomicResponse::new(Box::pin(fut::ready(Ok(registered))));
            }
            discard = Some(entry.session.clone());
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
                let durable = !msg.clean_session;
                let state = SessionState::new(act.deps.limits, durable);
                let session = act.start_session(
                    msg.client_id,
                    durable,
                    state,
                    None,
                    &msg.arbiter,
                    generation,
                );
                // A new session (`Takeover::New` or `Replace`): session
                // present is 0 [MQTT-3.2.2-1] [MQTT-3.2.2-3].
                Ok(Registered {
                    session,
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
            .filter(|e| e.durable)
            .map(|e| e.session.send(SaveInflight))
            .collect();
        Box::pin(async move {
            futures::future::join_all(asked).await;
        })
    }
}

impl Handler<SessionEnded> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, ctx: &mut Context<Self>) {
        let (sessions, durable) = (&mut self.sessions, &mut self.durable);
        let ended = guard::<SessionEnded, _>(ActorKind::SessionRegistry, &msg.client_id, || {
            if sessions
                .get(&msg.client_id)
                .is_some_and(|e| e.session_id == msg.session_id)
            {
                if let Some(gone) = sessions.remove(&msg.client_id) {
                    *durable -= usize::from(gone.durable);
                }
            }
        });
        self.count();
        if ended.is_err() {
            ctx.stop();
        }
    }
}
