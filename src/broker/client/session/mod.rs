//! Session actor: actix glue around `session::SessionState`. One per client
//! id; it outlives its connection when the session is persistent (durable).
//! It owns the client's subscriptions in the topic shards, writes the
//! packets the state machine produces to the attached connection's
//! outbound queue, and, for a durable session, sends the rows to the Store
//! and holds back what must wait for a commit.
//!
//! This file holds the actor and its life: attach, detach, takeover,
//! expiry, recovery after a panic. The paths through it each have a file:
//! [`deliver`] (messages routed to this session, and the actions of the
//! state machine), [`packets`] (what the client sends: acks, SUBSCRIBE,
//! UNSUBSCRIBE, QoS 2 PUBLISH) and [`paging`] (a durable session reading
//! its queue from the store).

mod deliver;
mod packets;
mod paging;

use super::messages::*;
use crate::broker::durable::{Completion, GroupLinks, HeldForCommit, InOrder, Reply, StoreHandle};
use crate::broker::live::{Live, Reloadable};
use crate::broker::net::outbound::Outbound;
use crate::broker::ops::metrics::Metrics;
use crate::broker::ops::restart::{guard, ActorKind, RestartTracker};
use crate::broker::route::delivery_inbox::{drop_delivery, DeliveryInbox};
use crate::broker::route::router::Router;
use crate::protocol::PacketId;
use crate::protocol::{ConnAck, ConnectReturnCode, Packet, QoS, TopicFilter};
use crate::session::{Action, MessageId, SessionLimits, SessionState};
use crate::store::Op;
use actix::prelude::*;
use bytestring::ByteString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What every session needs from the rest of the broker.
pub struct SessionDeps {
    pub router: Router,
    pub store: StoreHandle,
    pub metrics: Arc<Metrics>,
    pub limits: SessionLimits,
    /// Persistent sessions whose client is away this long are removed.
    pub expiry: Option<Duration>,
    /// Next id of the store's log, shared with the topic shards (it orders
    /// the messages of persistent sessions).
    pub message_ids: Arc<AtomicU64>,
    pub restarts: Arc<RestartTracker>,
    /// Topic length/level and subscription-count limits, and the ACL
    /// (what each client may read); reloaded on SIGHUP.
    pub live: Live,
    /// Where a session that ended tells the registry, and where a
    /// persistent one whose client left goes to sleep; set when the
    /// registry is created. One for all sessions: each clone of an actix
    /// address or recipient is an allocation.
    pub registry: std::sync::OnceLock<(Recipient<SessionEnded>, Recipient<Retire>)>,
}

/// What a later write of the same thing follows, while the first one is in
/// a publisher's group that has not gone to the store yet.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum LinkKey {
    /// A message of the session's queue.
    Message(MessageId),
    /// An inbound QoS 2 packet id.
    Inbound(PacketId),
}

struct Attached {
    connection_id: ConnectionId,
    /// Told when another connection takes the session over.
    connection: Recipient<Close>,
    outbound: Outbound,
}

pub struct Session {
    id: SessionId,
    client_id: ByteString,
    /// Durable (clean session 0: kept across disconnects and restarts, in
    /// the store) or not: see `SessionState::is_durable`.
    state: SessionState,
    attached: Option<Attached>,
    /// The newest registration generation seen (see `Register`).
    generation: u64,
    /// Counts detaches, so an expiry timer knows whether the client came back.
    detach_epoch: u64,
    /// A page of the queue was asked for and has not come: the session
    /// cannot go to sleep before it has let go of it.
    paging: bool,
    /// The user name of the client (from its CONNECT, or as stored), for
    /// the ACL's read checks.
    username: Option<ByteString>,
    deps: Arc<SessionDeps>,
    /// The live settings (the ACL) as last seen: a look at a cached copy
    /// costs one atomic read, where a fresh `load` for every delivery was
    /// a few percent of a fan-out.
    live: arc_swap::Cache<Live, Arc<Reloadable>>,
    /// Drops not yet logged: a flood is logged at most every
    /// `DROP_LOG_INTERVAL`, with counts, never once per message.
    unlogged_drops: u32,
    last_drop_log: Option<std::time::Instant>,
    /// Reused for the actions of each event.
    out: Vec<Action>,
    /// Shared with the completions that send packets after a commit.
    held: Arc<HeldForCommit>,
    /// Queue entries and inbound ids whose first write is in a publisher's
    /// `WriteGroup` still gathering: their later writes follow it.
    links: GroupLinks<LinkKey>,
    /// The size of the page of the queue the state machine asked for, to
    /// request from the store at the end of the current handler (see
    /// `paging`); 0: none.
    page_wanted: u32,
    /// Where the shards push this session's deliveries; made at the first
    /// subscription.
    inbox: Option<Arc<DeliveryInbox>>,
    /// While a batch of deliveries is handled: the packets for the client,
    /// sent together when the batch ends (one lock and one wake-up of the
    /// writer for the batch, not one per packet). Boxed: 24 bytes less in
    /// every session put its task in tokio's next smaller size class (896
    /// bytes rather than 1024).
    gathered: Option<Box<Gathered>>,
    /// PUBRECs go out in the order of the QoS 2 PUBLISHes [MQTT-4.6.0-3],
    /// whichever commit completes first.
    pubrecs: InOrder,
    /// New subscriptions whose retained messages are still to send, the
    /// first one being looked up (see `deliver::look_up_retained`); boxed,
    /// as nearly always there are none (8 bytes in every session, not 32).
    #[allow(clippy::box_collection)]
    retained_pending: Option<Box<std::collections::VecDeque<(TopicFilter, QoS)>>>,
}

#[derive(Default)]
struct Gathered {
    packets: Vec<Packet>,
    /// Their wire length, which counts against `max_outbound_bytes`.
    bytes: usize,
}

impl Session {
    /// A new session, or one woken from sleep (see `client::registry`):
    /// then with its user name and the inbox the shards deliver to.
    pub(in crate::broker) fn new(
        id: SessionId,
        client_id: ByteString,
        state: SessionState,
        username: Option<ByteString>,
        inbox: Option<Arc<DeliveryInbox>>,
        deps: Arc<SessionDeps>,
    ) -> Session {
        Session {
            id,
            client_id,
            state,
            attached: None,
            generation: 0,
            detach_epoch: 0,
            paging: false,
            username,
            links: GroupLinks::default(),
            page_wanted: 0,
            live: arc_swap::Cache::new(deps.live.clone()),
            deps,
            unlogged_drops: 0,
            last_drop_log: None,
            out: Vec::new(),
            held: Arc::default(),
            inbox,
            gathered: None,
            pubrecs: InOrder::default(),
            retained_pending: None,
        }
    }

    /// After a handler failed: the session restarts in place. Its state is
    /// kept (durable parts are mirrored in the store); what the client may
    /// have missed is resent: in-flight messages with DUP set, then the queue.
    fn recover(&mut self) {
        if !self.deps.restarts.record(ActorKind::Session) {
            return;
        }
        self.out.clear();
        if self.attached.is_some() {
            self.state.detach(&mut self.out);
            self.state.attach(&mut self.out);
            self.run(None);
        }
        log::warn!(
            "session {:?} restarted: in-flight messages resent",
            self.client_id
        );
    }

    fn tell_registry_ended(&self) {
        if let Some((registry, _)) = self.deps.registry.get() {
            registry.do_send(SessionEnded {
                client_id: self.client_id.clone(),
                session_id: self.id,
            });
        }
    }

    /// Whether `connection_id` is the attached connection (not one taken over).
    fn is_current(&self, connection_id: ConnectionId) -> bool {
        self.attached
            .as_ref()
            .is_some_and(|a| a.connection_id == connection_id)
    }

    /// A write that no pending group holds rows for (session-level rows).
    fn write(&self, op: Op, completion: Option<Completion>) {
        self.deps.store.write(op, completion);
    }

    /// An id in the store's log for a QoS 1/2 message of a durable session
    /// that the session itself adds (a retained message on subscribe).
    fn new_message_id(&self, qos: QoS) -> Option<MessageId> {
        (self.state.is_durable() && qos != QoS::AtMostOnce)
            .then(|| self.deps.message_ids.fetch_add(1, Ordering::Relaxed))
    }

    /// Stops every subscription of this session in the shards.
    fn remove_all_subscriptions(&mut self) {
        let filters: Vec<_> = self.state.subscriptions().map(|(f, _)| f.clone()).collect();
        for f in &filters {
            self.deps.router.unsubscribe(self.id, f);
            if self.state.unsubscribe(f) {
                self.deps
                    .metrics
                    .subscriptions
                    .fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Ends a session for good: its subscriptions leave the shards and its
    /// rows leave the store.
    fn end(&mut self, ctx: &mut Context<Self>) {
        self.remove_all_subscriptions();
        // Rows still gathering in publishers' groups would otherwise be
        // written after the delete and outlive the session.
        self.links.withdraw(&self.client_id);
        self.write(
            Op::DeleteSession {
                client_id: self.client_id.clone(),
                persistent: self.state.is_durable(),
            },
            None,
        );
        ctx.stop();
    }

    fn schedule_expiry(&mut self, after: Duration, ctx: &mut Context<Self>) {
        let epoch = self.detach_epoch;
        ctx.run_later(after, move |act, ctx| {
            if act.attached.is_none() && act.detach_epoch == epoch {
                log::info!(
                    "client {:?}: persistent session expired after {} s away (session.expiry_secs)",
                    act.client_id,
                    after.as_secs()
                );
                Metrics::inc(&act.deps.metrics.sessions_expired);
                // The delete is on its way to the store before the registry
                // can start a new session for this client id.
                act.end(ctx);
                act.tell_registry_ended();
            }
        });
    }
}

/// A session that ended, or whose actor died, closes its inbox: the shards
/// may still push to it until they drop its subscriptions.
impl Drop for Session {
    fn drop(&mut self) {
        if let Some(inbox) = &self.inbox {
            for left in inbox.close() {
                drop_delivery(&self.deps.store, left);
            }
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Woken from sleep: the shards' deliveries come here again.
        if let Some(inbox) = &self.inbox {
            inbox.go_live(ctx.address().recipient());
        }
        log::debug!(
            "session {} for {:?} started (durable: {})",
            self.id,
            self.client_id,
            self.state.is_durable()
        );
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        log::debug!("session {} for {:?} ended", self.id, self.client_id);
    }
}

impl Handler<Attach> for Session {
    /// Answered once CONNACK is on its way: at once, or for a new
    /// persistent session once its row is committed.
    type Result = Response<Result<(), Superseded>>;

    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) -> Self::Result {
        let id = self.client_id.clone();
        let attached = guard::<Attach, _>(ActorKind::Session, &id, || self.attach(msg));
        self.request_page(ctx);
        match attached {
            Ok(Ok(Some(stored))) => Response::fut(async move {
                // Dropped unsent only if the work was cut short (a panic):
                // the connection then closes, and the client reconnects.
                stored.await.map_err(|_| Superseded)
            }),
            Ok(Ok(None)) => Response::reply(Ok(())),
            Ok(Err(e)) => Response::reply(Err(e)),
            Err(_) => {
                self.recover();
                Response::reply(Err(Superseded))
            }
        }
    }
}

impl Session {
    /// Attaches a connection. For a new persistent session, CONNACK waits
    /// for the session's row: a client must not be told it has a session
    /// that a crash could lose. The receiver says when CONNACK went out.
    fn attach(
        &mut self,
        mut msg: Attach,
    ) -> Result<Option<tokio::sync::oneshot::Receiver<()>>, Superseded> {
        if msg.generation < self.generation {
            return Err(Superseded);
        }
        self.generation = msg.generation;
        if let Some(old) = self.attached.take() {
            // A new connection for the same client id closes the old one [MQTT-3.1.4-2].
            log::info!(
                "client {:?}: taken over by a new connection, closing the old one",
                self.client_id
            );
            Metrics::inc(&self.deps.metrics.takeovers);
            old.connection.do_send(Close::TakenOver {
                // The session goes on with the new connection: a persistent
                // one resumed. A will is for a session that ends.
                publish_will: !self.state.is_durable(),
            });
        }
        let connack = Packet::ConnAck(ConnAck {
            session_present: msg.session_present,
            reason: ConnectReturnCode::Accepted.into(),
            properties: msg.connack.take(),
        });
        let mut stored = None;
        let after_commit = match self.state.is_durable() && !msg.session_present {
            true => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                stored = Some(rx);
                let reply = Reply::new(msg.outbound.clone(), connack.clone());
                Some(Reply::then(Some(reply), move || {
                    let _ = tx.send(());
                }))
            }
            false => {
                self.out.push(Action::Send(connack));
                None
            }
        };
        self.write(
            Op::SessionConnected(Box::new(crate::store::Connected {
                client_id: self.client_id.clone(),
                username: msg.username.clone(),
                persistent: self.state.is_durable(),
                keep_alive: msg.keep_alive,
                protocol: msg.protocol,
                will: msg.will,
                session_expiry: msg.session_expiry,
            })),
            after_commit,
        );
        self.username = msg.username;
        self.attached = Some(Attached {
            connection_id: msg.connection_id,
            connection: msg.connection,
            outbound: msg.outbound,
        });
        // What waited for this session was checked against the ACL when it
        // was routed; check it again for the client taking it up now (its
        // user name, or an ACL reloaded since).
        if let Some(acl) = self.deps.live.load().auth.acl.clone() {
            let (user, client) = (self.username.clone(), self.client_id.clone());
            let dropped = self.state.drop_unreadable(
                |m| {
                    acl.allows(
                        user.as_deref(),
                        &client,
                        m.topic.as_str(),
                        crate::acl::Want::Read,
                    )
                },
                &mut self.out,
            );
            if dropped > 0 {
                log::warn!(
                    "client {:?}, {}: {dropped} stored message(s) dropped: the ACL does not let this user read them",
                    self.client_id,
                    match &user {
                        Some(user) => format!("user {:?}", &**user),
                        None => "no user name".to_string(),
                    }
                );
                self.deps
                    .metrics
                    .acl_denied
                    .fetch_add(dropped as u64, Ordering::Relaxed);
            }
        }
        self.state.set_receive_maximum(msg.receive_maximum);
        self.state.attach(&mut self.out);
        self.run(None);
        // Most clients sit idle after CONNACK: keep no action buffer until
        // there is traffic (a busy session keeps the one it grows then).
        self.out = Vec::new();
        Ok(stored)
    }
}

impl Handler<Detach> for Session {
    type Result = ();

    fn handle(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        let id = self.client_id.clone();
        if guard::<Detach, _>(ActorKind::Session, &id, || self.detach(msg, ctx)).is_err() {
            self.recover();
        }
    }
}

impl Session {
    pub(super) fn detach(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        if !self.is_current(msg.connection_id) {
            return; // a connection that was already taken over
        }
        self.attached = None;
        self.detach_epoch += 1;
        self.state.detach(&mut self.out);
        self.run(None);
        self.page_wanted = 0;
        self.log_unlogged_drops();
        if !self.state.is_durable() || msg.end_session {
            if msg.end_session {
                log::info!(
                    "client {:?}: persistent session ended: DISCONNECT set its expiry interval to 0",
                    self.client_id
                );
            }
            // Delete first: a new session for this client id, which the
            // registry may start once it hears of the end, writes after it.
            self.end(ctx);
            self.tell_registry_ended();
            return;
        }
        self.write(
            Op::SessionDisconnected {
                client_id: self.client_id.clone(),
            },
            None,
        );
        if let Some(expiry) = self.deps.expiry {
            self.schedule_expiry(expiry, ctx);
        }
        self.sleep(ctx);
    }

    /// A persistent session whose client is away goes to sleep: the
    /// registry keeps what it needs to wake it (subscriptions, inbound QoS 2
    /// ids, user name), the shards' deliveries go to its queue in the store,
    /// and the actor stops, holding no memory while the client is away.
    /// Not while a page of its queue is on its way (it lets go of it first),
    /// and not if a new connection registered meanwhile (the registry says).
    fn sleep(&mut self, ctx: &mut Context<Self>) {
        if self.attached.is_some() || self.paging || !self.state.is_durable() {
            return;
        }
        let Some((_, registry)) = self.deps.registry.get() else {
            return;
        };
        let dormant = Dormant {
            username: self.username.clone(),
            subscriptions: self
                .state
                .subscriptions()
                .map(|(f, q)| (f.clone(), q))
                .collect(),
            inbound: self.state.inbound_awaiting_rel().collect(),
            inbox: self.inbox.clone(),
            expires_at: self.deps.expiry.map(|e| std::time::Instant::now() + e),
        };
        let retire = Retire {
            client_id: self.client_id.clone(),
            session_id: self.id,
            generation: self.generation,
            dormant,
        };
        let epoch = self.detach_epoch;
        ctx.spawn(
            registry
                .send(retire)
                .into_actor(self)
                .map(move |accepted, act, ctx| {
                    if accepted == Ok(true) && act.attached.is_none() && act.detach_epoch == epoch {
                        // The inbox is the sleeping session's now: not closed
                        // when this actor is dropped.
                        act.inbox = None;
                        ctx.stop();
                    }
                }),
        );
    }
}

impl Handler<SaveInflight> for Session {
    type Result = ();

    fn handle(&mut self, _: SaveInflight, _: &mut Context<Self>) {
        self.state.save_inflight(&mut self.out);
        self.run(None);
    }
}

impl Handler<Discard> for Session {
    type Result = ();

    fn handle(&mut self, _: Discard, ctx: &mut Context<Self>) {
        let id = self.client_id.clone();
        if guard::<Discard, _>(ActorKind::Session, &id, || self.discard(ctx)).is_err() {
            // A discard must still happen: end without the failed step.
            self.end(ctx);
        }
    }
}

impl Session {
    fn discard(&mut self, ctx: &mut Context<Self>) {
        if let Some(old) = self.attached.take() {
            log::info!(
                "client {:?}: taken over by a new clean session, closing the old connection",
                self.client_id
            );
            Metrics::inc(&self.deps.metrics.takeovers);
            // The old session ends with its connection: its will is due.
            old.connection
                .do_send(Close::TakenOver { publish_will: true });
        }
        self.end(ctx);
    }
}

#[cfg(test)]
mod tests {
    /// Every client has a session task: tokio rounds a task up to 128
    /// bytes, and at 456 bytes or less the session's task is 896 bytes, not
    /// 1024. Box what an idle session does not use before adding fields.
    #[test]
    fn an_idle_session_fits_its_task_size_class() {
        let size = std::mem::size_of::<super::Session>();
        assert!(size <= 456, "{size} bytes");
    }
}
