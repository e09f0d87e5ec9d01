//! Session actor: actix glue around `session::SessionState`. One per client
//! id; it outlives its connection when the session is persistent (durable).
//! It owns the client's subscriptions in the topic shards, writes the
//! packets the state machine produces to the attached connection's
//! outbound queue, and, for a durable session, sends the rows to the Store
//! and holds back what must wait for a commit.

use super::connection::Connection;
use super::deliveries::{Deliveries, Inbox, TakeDeliveries};
use super::messages::*;
use super::metrics::Metrics;
use super::outbound::{Outbound, Reply};
use super::registry::SessionRegistry;
use super::router::Router;
use super::store::{Acknowledgement, GroupLinks, StoreHandle, WriteGroup};
use super::supervision::{guard, ActorKind, RestartTracker};
use crate::protocol::{
    ConnAck, ConnectReturnCode, Packet, QoS, SubAck, SubscribeReturnCode, TopicFilter,
};
use crate::session::{Action, DeliverOutcome, Message, MessageId, SessionLimits, SessionState};
use crate::store::{Completion, InOrder, Op};
use actix::prelude::*;
use bytestring::ByteString;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often one session may log that it drops messages.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What every session needs from the rest of the broker.
pub struct SessionDeps {
    pub router: Router,
    pub store: StoreHandle,
    pub metrics: Arc<Metrics>,
    pub limits: SessionLimits,
    /// Persistent sessions whose client is away this long are removed.
    pub expiry: Option<Duration>,
    /// Next message row id, shared by all sessions (rows are ordered by it).
    pub message_ids: Arc<AtomicU64>,
    pub restarts: Arc<RestartTracker>,
    /// Topic length/level and subscription-count limits, and the ACL
    /// (what each client may read); reloaded on SIGHUP.
    pub live: super::Live,
    /// The registry, set when it is created: one address for all sessions
    /// (an `Addr` is 24 bytes and two allocations per clone).
    pub registry: std::sync::OnceLock<Addr<SessionRegistry>>,
}

/// What a session restored from the store starts with.
pub struct Restored {
    /// Seconds its client had already been away.
    pub idle_secs: u64,
    pub username: Option<ByteString>,
}

struct Attached {
    connection_id: ConnectionId,
    connection: Addr<Connection>,
    outbound: Outbound,
}

pub struct Session {
    id: SessionId,
    client_id: ByteString,
    /// Clean session 0: kept across disconnects and restarts, in the store.
    durable: bool,
    state: SessionState,
    attached: Option<Attached>,
    /// The newest registration generation seen (see `Register`).
    generation: u64,
    /// Counts detaches, so an expiry timer knows whether the client came back.
    detach_epoch: u64,
    /// Seconds the client had already been away when the session was restored.
    restored_idle: Option<u32>,
    /// The user name of the client (from its CONNECT, or as stored), for
    /// the ACL's read checks.
    username: Option<ByteString>,
    deps: Arc<SessionDeps>,
    /// The live settings (the ACL) as last seen: a look at a cached copy
    /// costs one atomic read, where a fresh `load` for every delivery was
    /// a few percent of a fan-out.
    live: arc_swap::Cache<super::Live, Arc<super::Reloadable>>,
    /// Drops not yet logged: a flood is logged at most every
    /// `DROP_LOG_INTERVAL`, with counts, never once per message.
    unlogged_drops: u32,
    last_drop_log: Option<std::time::Instant>,
    /// Reused for the actions of each event.
    out: Vec<Action>,
    /// Shared with the completions that send packets after a commit.
    later: Arc<Later>,
    /// Rows whose first write is in a publisher's `WriteGroup` still
    /// gathering: their later writes follow it.
    links: GroupLinks<MessageId>,
    /// Where the shards push this session's deliveries; made at the first
    /// subscription.
    inbox: Option<Arc<Inbox>>,
    /// While a batch of deliveries is handled: the packets for the client,
    /// sent together when the batch ends (one lock and one wake-up of the
    /// writer for the batch, not one per packet). Boxed: 24 bytes less in
    /// every session put its task in tokio's next smaller size class (896
    /// bytes rather than 1024).
    gathered: Option<Box<Gathered>>,
    /// PUBRECs go out in the order of the QoS 2 PUBLISHes [MQTT-4.6.0-3],
    /// whichever commit completes first.
    pubrecs: InOrder,
}

/// What a session shares with the completions that send its packets
/// after a commit.
#[derive(Default)]
struct Later {
    /// Packets held back until a commit and not sent yet. While there are
    /// any, later PUBLISH/PUBREL packets queue behind them (through the
    /// store, which runs completions in order), so the client sees them in
    /// the order they were produced.
    held_back: AtomicUsize,
    /// Inbound QoS 2 ids whose PUBREC was never sent: the commit of the id
    /// and its copies failed. The client's resend of such an id is a new
    /// PUBLISH, not one already stored (see `publish_qos2`).
    abandoned_pubrecs: std::sync::Mutex<Vec<crate::protocol::PacketId>>,
}

impl Later {
    fn abandoned_pubrecs(&self) -> std::sync::MutexGuard<'_, Vec<crate::protocol::PacketId>> {
        self.abandoned_pubrecs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `packet_id`'s PUBREC was abandoned; forgets that it was.
    fn take_abandoned_pubrec(&self, packet_id: crate::protocol::PacketId) -> bool {
        let mut abandoned = self.abandoned_pubrecs();
        match abandoned.iter().position(|p| *p == packet_id) {
            Some(i) => {
                abandoned.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

/// Counts one packet held back until a commit, for as long as its
/// completion's callback exists: until the packet is sent, or until the
/// completion is abandoned (a failed commit) and the callback dropped
/// unrun. An abandoned one left counted would send every later PUBLISH
/// through the store.
struct HeldBack(Arc<Later>);

impl HeldBack {
    fn new(later: Arc<Later>) -> HeldBack {
        later.held_back.fetch_add(1, Ordering::Relaxed);
        HeldBack(later)
    }
}

impl Drop for HeldBack {
    fn drop(&mut self) {
        self.0.held_back.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The PUBREC of a new inbound QoS 2 PUBLISH, held by the completion that
/// sends it once the id and the copies are committed. Dropped unsent (the
/// commit failed), it records the id as abandoned, and its `Reply` closes
/// the connection.
struct PendingPubRec {
    reply: Option<Reply>,
    packet_id: crate::protocol::PacketId,
    held: HeldBack,
}

impl PendingPubRec {
    fn send(mut self) {
        if let Some(reply) = self.reply.take() {
            reply.send();
        }
    }
}

impl Drop for PendingPubRec {
    fn drop(&mut self) {
        if self.reply.is_some() {
            self.held.0.abandoned_pubrecs().push(self.packet_id);
        }
    }
}

#[derive(Default)]
struct Gathered {
    packets: Vec<Packet>,
    /// Their wire length, which counts against `max_outbound_bytes`.
    bytes: usize,
}

impl Session {
    pub(super) fn new(
        id: SessionId,
        client_id: ByteString,
        durable: bool,
        state: SessionState,
        restored: Option<Restored>,
        deps: Arc<SessionDeps>,
    ) -> Session {
        let (restored_idle, username) = match restored {
            Some(r) => (
                Some(u32::try_from(r.idle_secs).unwrap_or(u32::MAX)),
                r.username,
            ),
            None => (None, None),
        };
        Session {
            id,
            client_id,
            durable,
            state,
            attached: None,
            generation: 0,
            detach_epoch: 0,
            restored_idle,
            username,
            links: GroupLinks::default(),
            live: arc_swap::Cache::new(deps.live.clone()),
            deps,
            unlogged_drops: 0,
            last_drop_log: None,
            out: Vec::new(),
            later: Arc::default(),
            inbox: None,
            gathered: None,
            pubrecs: InOrder::default(),
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
            self.state.detach();
            self.state.attach(&mut self.out);
            self.run(None);
        }
        log::warn!(
            "session {:?} restarted: in-flight messages resent",
            self.client_id
        );
    }

    fn tell_registry_ended(&self) {
        if let Some(registry) = self.deps.registry.get() {
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

    /// Whether the ACL (if any) lets this client subscribe to `filter`.
    fn may_subscribe(&self, filter: &TopicFilter) -> bool {
        self.deps.live.load().auth.acl.as_ref().is_none_or(|acl| {
            acl.allows_subscribe(self.username.as_deref(), &self.client_id, filter.as_str())
        })
    }

    /// Whether the ACL (if any) lets this client receive a message of
    /// `topic` now; checked for every delivery, so that a subscription the
    /// ACL no longer allows stops receiving.
    fn may_read(&mut self, topic: &crate::protocol::TopicName) -> bool {
        let allowed = self.live.load().auth.acl.as_ref().is_none_or(|acl| {
            acl.allows(
                self.username.as_deref(),
                &self.client_id,
                topic.as_str(),
                crate::acl::Want::Read,
            )
        });
        if !allowed {
            Metrics::inc(&self.deps.metrics.acl_denied);
        }
        allowed
    }

    /// A row id for a QoS 1/2 message of a durable session.
    fn row_id(&self, qos: QoS) -> Option<MessageId> {
        (self.durable && qos != QoS::AtMostOnce)
            .then(|| self.deps.message_ids.fetch_add(1, Ordering::Relaxed))
    }

    /// A completion that sends `packet` to the attached client.
    fn send_later(&self, packet: Packet) -> Option<Completion> {
        let reply = Reply::new(self.attached.as_ref()?.outbound.clone(), packet);
        let held = HeldBack::new(self.later.clone());
        Some(Completion::new(move || {
            reply.send();
            drop(held);
        }))
    }

    /// Carries out the actions of the last event. `waiting` (a publisher's
    /// acknowledgement) joins the write of every new row, so it completes
    /// only once those rows are durable.
    fn run(&mut self, waiting: Option<&Acknowledgement>) {
        let mut actions = std::mem::take(&mut self.out);
        for action in actions.drain(..) {
            // A packet sent later (by a commit's completion, on the store's
            // thread) must not overtake the packets gathered before it.
            let sends_later = match &action {
                Action::Send(Packet::Publish(_) | Packet::PubRel(_)) => {
                    self.later.held_back.load(Ordering::Relaxed) > 0
                }
                Action::Send(_) => false,
                Action::Persist { then, .. } | Action::Forget { then, .. } => then.is_some(),
            };
            if sends_later {
                self.send_gathered();
            }
            match action {
                Action::Send(packet @ (Packet::Publish(_) | Packet::PubRel(_))) if sends_later => {
                    Metrics::inc(&self.deps.metrics.publishes_sent);
                    let later = self.send_later(packet);
                    self.links.barrier(&self.deps.store, later);
                }
                Action::Send(packet) => {
                    if let Some(a) = &self.attached {
                        if matches!(packet, Packet::Publish(_)) {
                            Metrics::inc(&self.deps.metrics.publishes_sent);
                        }
                        match &mut self.gathered {
                            Some(g) => {
                                g.bytes += packet.wire_len();
                                g.packets.push(packet);
                            }
                            None => a.outbound.send(packet),
                        }
                    }
                }
                Action::Persist { record, new, then } => {
                    let then = then.and_then(|p| self.send_later(p));
                    let id = record.id();
                    let op = Op::PutMessage {
                        client_id: self.client_id.clone(),
                        record,
                        new,
                    };
                    match waiting.filter(|_| new) {
                        Some(ack) => {
                            if let Some(link) = ack.write(&self.deps.store, op, then) {
                                self.links.remember(id, link);
                            }
                        }
                        None => self.links.write(&self.deps.store, &id, op, then),
                    }
                }
                Action::Forget { id, then } => {
                    let then = then.and_then(|p| self.send_later(p));
                    let op = Op::DeleteMessage {
                        client_id: self.client_id.clone(),
                        id,
                    };
                    self.links.write(&self.deps.store, &id, op, then);
                }
            }
        }
        self.out = actions;
    }

    /// Sends the packets gathered so far to the client.
    fn send_gathered(&mut self) {
        if let (Some(a), Some(g)) = (&self.attached, &mut self.gathered) {
            a.outbound
                .send_all(std::mem::take(&mut g.packets), std::mem::take(&mut g.bytes));
        }
    }

    fn deliver(&mut self, message: Message, waiting: Option<&Acknowledgement>) {
        let gathered = self.gathered.as_ref().map_or(0, |g| g.bytes);
        let writable = self
            .attached
            .as_ref()
            .is_some_and(|a| a.outbound.is_writable(gathered));
        let id = self.row_id(message.qos);
        let outcome = self.state.deliver(message, id, writable, &mut self.out);
        self.run(waiting);
        let counter = match outcome {
            DeliverOutcome::Sent | DeliverOutcome::Queued => return,
            DeliverOutcome::DroppedSlowClient => &self.deps.metrics.dropped_slow_client,
            DeliverOutcome::DroppedQueueFull => &self.deps.metrics.dropped_queue_full,
            DeliverOutcome::DroppedOffline => {
                // QoS 0 for an offline client: expected, counted, not logged.
                Metrics::inc(&self.deps.metrics.dropped_offline_qos0);
                return;
            }
        };
        Metrics::inc(counter);
        self.unlogged_drops = self.unlogged_drops.saturating_add(1);
        if self
            .last_drop_log
            .is_none_or(|t| t.elapsed() >= DROP_LOG_INTERVAL)
        {
            log::warn!(
                "client {}: dropped {} message(s) at a bound ({:?}; queued {}, see [session] and [limits] in the config)",
                self.client_id,
                self.unlogged_drops,
                outcome,
                self.state.queued_len()
            );
            self.unlogged_drops = 0;
            self.last_drop_log = Some(std::time::Instant::now());
        }
    }

    fn log_unlogged_drops(&mut self) {
        if self.unlogged_drops > 0 {
            log::warn!(
                "client {}: dropped {} more message(s) at a bound",
                self.client_id,
                self.unlogged_drops
            );
            self.unlogged_drops = 0;
        }
    }

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
                persistent: self.durable,
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
                    "client {}: persistent session expired after {:?} away",
                    act.client_id,
                    after
                );
                Metrics::inc(&act.deps.metrics.sessions_expired);
                // The delete is on its way to the store before the registry
                // can start a new session for this client id.
                act.end(ctx);
                act.tell_registry_ended();
            }
        });
    }

    fn on_subscribe(
        &mut self,
        s: crate::protocol::Subscribe,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<()> {
        let me = ctx.address();
        let mut deliveries: Option<Deliveries> = None;
        let mut codes = Vec::with_capacity(s.topics.len());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut filters: Vec<(TopicFilter, QoS)> = Vec::with_capacity(s.topics.len());
        let live = self.deps.live.load();
        let limits = &live.limits;
        for t in &s.topics {
            let new = !self.state.is_subscribed(&t.filter);
            let at_max = limits.max_subscriptions_per_client > 0
                && self.state.subscription_count() >= limits.max_subscriptions_per_client;
            if !self.may_subscribe(&t.filter) {
                // Not allowed by the ACL: refused like Mosquitto, SUBACK 0x80.
                log::warn!(
                    "client {}: subscription to {:?} refused by the ACL",
                    self.client_id,
                    t.filter.as_str()
                );
                Metrics::inc(&self.deps.metrics.acl_denied);
                codes.push(SubscribeReturnCode::Failure);
                continue;
            }
            if !limits.topic_allowed(t.filter.as_str()) || (new && at_max) {
                // A limit of [limits]: this filter is refused [MQTT-3.9.3-2].
                log::warn!(
                    "client {}: subscription to {:?} refused by a limit (topic length/levels or subscriptions per client)",
                    self.client_id,
                    t.filter.as_str()
                );
                Metrics::inc(&self.deps.metrics.limits_refused);
                codes.push(SubscribeReturnCode::Failure);
                continue;
            }
            // roost supports every QoS, so the granted QoS is the requested
            // one [MQTT-3.9.3-1].
            if new {
                Metrics::inc(&self.deps.metrics.subscriptions);
            }
            self.state.subscribe(t.filter.clone(), t.qos);
            let to = match &deliveries {
                Some(d) => d,
                None => deliveries.insert(self.deliveries(me.clone())),
            };
            self.deps
                .router
                .subscribe(self.id, to, &t.filter, t.qos, self.durable);
            codes.push(SubscribeReturnCode::Granted(t.qos));
            filters.push((t.filter.clone(), t.qos));
        }
        let accepted = filters.clone();
        let suback = Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            codes,
        });
        // SUBACK, then the retained messages of every filter (even a
        // repeated one) [MQTT-3.3.1-6] [MQTT-3.8.4-3]; for a durable
        // session only once the subscriptions are committed.
        let suback = self
            .attached
            .as_ref()
            .map(|a| Reply::new(a.outbound.clone(), suback));
        let retained = self.deps.router.retained().clone();
        let done = Completion::new(move || {
            if let Some(suback) = suback {
                suback.send();
            }
            for (filter, qos) in filters {
                retained.do_send(LookupRetained {
                    filter,
                    qos,
                    session: me.clone(),
                });
            }
            let _ = tx.send(());
        });
        if self.durable {
            for (filter, qos) in accepted {
                let op = Op::Subscribe {
                    client_id: self.client_id.clone(),
                    filter,
                    qos,
                };
                self.write(op, Some(done.clone()));
            }
        }
        drop(done);
        Box::pin(async move {
            let _ = rx.await;
        })
    }

    fn on_unsubscribe(&mut self, u: crate::protocol::Unsubscribe) -> ResponseFuture<()> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let unsuback = self
            .attached
            .as_ref()
            .map(|a| Reply::new(a.outbound.clone(), Packet::UnsubAck(u.packet_id)));
        let done = Completion::new(move || {
            if let Some(unsuback) = unsuback {
                unsuback.send();
            }
            let _ = tx.send(());
        });
        for f in u.filters {
            if self.state.unsubscribe(&f) {
                self.deps
                    .metrics
                    .subscriptions
                    .fetch_sub(1, Ordering::Relaxed);
                self.deps.router.unsubscribe(self.id, &f);
                if self.durable {
                    self.write(
                        Op::Unsubscribe {
                            client_id: self.client_id.clone(),
                            filter: f,
                        },
                        Some(done.clone()),
                    );
                }
            }
        }
        drop(done);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// A session that ended, or whose actor died, closes its inbox: the shards
/// may still push to it until they drop its subscriptions.
impl Drop for Session {
    fn drop(&mut self) {
        if let Some(inbox) = &self.inbox {
            inbox.close();
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A restored session puts its subscriptions back into the shards.
        if self.state.subscriptions().next().is_some() {
            let deliveries = self.deliveries(ctx.address());
            for (filter, qos) in self.state.subscriptions() {
                Metrics::inc(&self.deps.metrics.subscriptions);
                self.deps
                    .router
                    .subscribe(self.id, &deliveries, filter, qos, self.durable);
            }
        }
        if let (Some(idle), Some(expiry)) = (self.restored_idle, self.deps.expiry) {
            self.schedule_expiry(expiry.saturating_sub(Duration::from_secs(idle.into())), ctx);
        }
        log::debug!(
            "session {} for {:?} started (durable: {})",
            self.id,
            self.client_id,
            self.durable
        );
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        log::debug!("session {} for {:?} ended", self.id, self.client_id);
    }
}

impl Handler<Attach> for Session {
    type Result = Result<(), Superseded>;

    fn handle(&mut self, msg: Attach, _: &mut Context<Self>) -> Self::Result {
        let id = self.client_id.clone();
        match guard::<Attach, _>(ActorKind::Session, &id, || self.attach(msg)) {
            Ok(result) => result,
            Err(_) => {
                self.recover();
                Err(Superseded)
            }
        }
    }
}

impl Session {
    fn attach(&mut self, msg: Attach) -> Result<(), Superseded> {
        if msg.generation < self.generation {
            return Err(Superseded);
        }
        self.generation = msg.generation;
        if let Some(old) = self.attached.take() {
            // A new connection for the same client id closes the old one [MQTT-3.1.4-2].
            log::info!(
                "client {}: taken over by a new connection, closing the old one",
                self.client_id
            );
            Metrics::inc(&self.deps.metrics.takeovers);
            old.connection.do_send(TakenOver);
        }
        self.write(
            Op::SessionConnected {
                client_id: self.client_id.clone(),
                username: msg.username.clone(),
                persistent: self.durable,
                keep_alive: msg.keep_alive,
                will: msg.will,
            },
            None,
        );
        self.username = msg.username;
        self.attached = Some(Attached {
            connection_id: msg.connection_id,
            connection: msg.connection,
            outbound: msg.outbound,
        });
        let connack = ConnAck {
            session_present: msg.session_present,
            code: ConnectReturnCode::Accepted,
        };
        self.out.push(Action::Send(Packet::ConnAck(connack)));
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
                    "client {}: {dropped} stored message(s) dropped: the ACL does not let this client read them",
                    self.client_id
                );
                self.deps
                    .metrics
                    .acl_denied
                    .fetch_add(dropped as u64, Ordering::Relaxed);
            }
        }
        self.state.attach(&mut self.out);
        self.run(None);
        // Most clients sit idle after CONNACK: keep no action buffer until
        // there is traffic (a busy session keeps the one it grows then).
        self.out = Vec::new();
        Ok(())
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
    fn detach(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        if !self.is_current(msg.connection_id) {
            return; // a connection that was already taken over
        }
        self.attached = None;
        self.detach_epoch += 1;
        self.state.detach();
        self.log_unlogged_drops();
        if !self.durable {
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
                "client {}: taken over by a new clean session, closing the old connection",
                self.client_id
            );
            Metrics::inc(&self.deps.metrics.takeovers);
            old.connection.do_send(TakenOver);
        }
        self.end(ctx);
    }
}

impl Handler<FromClient> for Session {
    /// A future only for SUBSCRIBE and UNSUBSCRIBE (the connection waits
    /// for them); acknowledgements are handled at once, without spawning
    /// a task per packet.
    type Result = Response<()>;

    fn handle(&mut self, msg: FromClient, ctx: &mut Context<Self>) -> Self::Result {
        let id = self.client_id.clone();
        match guard::<FromClient, _>(ActorKind::Session, &id, || {
            self.handle_client_packet(msg, ctx)
        }) {
            Ok(reply) => reply,
            Err(_) => {
                self.recover();
                Response::reply(())
            }
        }
    }
}

impl Session {
    fn handle_client_packet(&mut self, msg: FromClient, ctx: &mut Context<Self>) -> Response<()> {
        if !self.is_current(msg.connection_id) {
            return Response::reply(());
        }
        match msg.packet {
            Packet::Subscribe(s) => return Response::fut(self.on_subscribe(s, ctx)),
            Packet::Unsubscribe(u) => return Response::fut(self.on_unsubscribe(u)),
            Packet::PubAck(id) => {
                if !self.state.on_puback(id, &mut self.out) {
                    log::debug!(
                        "client {}: PUBACK for unknown packet id {id}",
                        self.client_id
                    );
                }
            }
            Packet::PubRec(id) => {
                if !self.state.on_pubrec(id, &mut self.out) {
                    log::debug!(
                        "client {}: PUBREC for unknown packet id {id}",
                        self.client_id
                    );
                }
            }
            Packet::PubComp(id) => {
                if !self.state.on_pubcomp(id, &mut self.out) {
                    log::debug!(
                        "client {}: PUBCOMP for unknown packet id {id}",
                        self.client_id
                    );
                }
            }
            Packet::PubRel(id) => self.state.on_pubrel(id, &mut self.out),
            other => log::debug!(
                "client {}: session ignores {:?}",
                self.client_id,
                other.packet_type()
            ),
        }
        self.run(None);
        Response::reply(())
    }
}

impl Handler<PublishQoS2> for Session {
    type Result = ();

    fn handle(&mut self, msg: PublishQoS2, _: &mut Context<Self>) {
        let id = self.client_id.clone();
        if guard::<PublishQoS2, _>(ActorKind::Session, &id, || self.publish_qos2(msg)).is_err() {
            self.recover();
        }
    }
}

impl Session {
    fn publish_qos2(&mut self, msg: PublishQoS2) {
        if !self.is_current(msg.connection_id) {
            return;
        }
        let Some(packet_id) = msg.publish.packet_id else {
            return;
        };
        if msg.refused {
            self.pubrec_in_turn(packet_id);
            return;
        }
        if self.later.take_abandoned_pubrec(packet_id) {
            // The first PUBLISH with this id was never acknowledged: the
            // commit of its id and copies failed. This one is stored and
            // routed as new; acknowledging it as a duplicate would tell
            // the client a message nobody stored is safe.
            self.state.forget_inbound_qos2(packet_id, &mut self.out);
            self.run(None);
        }
        let row = self.row_id(QoS::ExactlyOnce);
        if self.state.on_inbound_qos2(packet_id, row, &mut self.out) {
            // PUBREC once the id and every stored copy are durable, all in
            // one transaction (see `WriteGroup`).
            let ack = self.attached.as_ref().map(|a| {
                let pubrec = PendingPubRec {
                    reply: Some(Reply::new(a.outbound.clone(), Packet::PubRec(packet_id))),
                    packet_id,
                    held: HeldBack::new(self.later.clone()),
                };
                let completion = Completion::new(move || pubrec.send());
                self.pubrecs.push(&completion);
                Acknowledgement {
                    completion,
                    group: Some(WriteGroup::new(self.deps.store.clone())),
                }
            });
            self.run(ack.as_ref());
            self.deps
                .router
                .publish(Message::from_publish(&msg.publish), Some(msg.backlog), ack);
        } else {
            // A resent PUBLISH: PUBREC again, but no second delivery [MQTT-4.3.3-2].
            self.pubrec_in_turn(packet_id);
        }
    }

    /// A PUBREC that waits for no commit, sent after the PUBRECs of earlier
    /// QoS 2 PUBLISHes that do.
    fn pubrec_in_turn(&mut self, packet_id: crate::protocol::PacketId) {
        if let Some(a) = &self.attached {
            let pubrec = Reply::new(a.outbound.clone(), Packet::PubRec(packet_id));
            self.pubrecs.push(&pubrec.on_completion());
        }
    }
}

impl Handler<TakeDeliveries> for Session {
    type Result = ();

    fn handle(&mut self, _: TakeDeliveries, _: &mut Context<Self>) {
        let Some(inbox) = &self.inbox else {
            return;
        };
        let batch = inbox.take();
        self.gathered = Some(Box::default());
        for delivery in batch {
            self.deliver_one(delivery);
        }
        self.send_gathered();
        self.gathered = None;
    }
}

impl Session {
    /// The shards' deliveries go through one inbox per session (see
    /// `deliveries`); made at the first subscription.
    fn deliveries(&mut self, me: Addr<Session>) -> Deliveries {
        let inbox = self.inbox.get_or_insert_with(Default::default).clone();
        Deliveries::new(me, inbox)
    }

    fn deliver_one(&mut self, msg: Deliver) {
        // The session's number, not its client id, names it if this panics
        // (`recover` logs the client id when it rebuilds the session): a
        // copy of the client id for every delivery was an atomic count on
        // its buffer.
        let id = self.id;
        let Deliver { message, qos, ack } = msg;
        // The publisher's acknowledgement stays out here, not in the guarded
        // call: a panic would drop it while unwinding, which abandons it
        // (see `Completion`), and a retry that succeeds could then never
        // acknowledge. (A panic after the first attempt had passed a clone
        // of it to the store still abandons it: a clone dropped while
        // unwinding abandons the one callback all clones share.) A QoS 1/2 delivery is kept to try once more after a
        // failure, or it would be lost for this subscriber; a QoS 0 one may
        // be lost, and is not copied (a copy shares the buffers every
        // subscriber shares).
        let retry = (qos.min(message.qos) != QoS::AtMostOnce).then(|| message.clone());
        let delivered = guard::<Deliver, _>(ActorKind::Session, &id, || {
            self.deliver_routed(message, qos, ack.as_ref())
        });
        if delivered.is_ok() {
            return;
        }
        self.recover();
        let retried = retry.is_some_and(|message| {
            let again = guard::<Deliver, _>(ActorKind::Session, &id, || {
                self.deliver_routed(message, qos, ack.as_ref())
            });
            if again.is_err() {
                self.recover();
            }
            again.is_ok()
        });
        if !retried {
            // Lost for this subscriber: the publisher is not told its
            // message is safe.
            if let Some(ack) = &ack {
                ack.completion.abandon();
            }
        }
    }
}

impl Session {
    fn deliver_routed(&mut self, mut message: Message, qos: QoS, ack: Option<&Acknowledgement>) {
        if !self.may_read(&message.topic) {
            return;
        }
        // Delivered QoS is the lower of published and granted; normal
        // forwarding clears RETAIN [MQTT-3.3.1-9].
        message.qos = message.qos.min(qos);
        message.retain = false;
        self.deliver(message, ack);
    }
}

impl Handler<DeliverRetained> for Session {
    type Result = ();

    fn handle(&mut self, msg: DeliverRetained, _: &mut Context<Self>) {
        let id = self.client_id.clone();
        let delivered = guard::<DeliverRetained, _>(ActorKind::Session, &id, || {
            for mut message in msg.messages {
                if !self.may_read(&message.topic) {
                    continue;
                }
                message.qos = message.qos.min(msg.qos);
                message.retain = true;
                self.deliver(message, None);
            }
        });
        if delivered.is_err() {
            self.recover();
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every client has a session task: tokio rounds a task up to 128
    /// bytes, and at 456 bytes or less the session's task is 896 bytes, not
    /// 1024. Box what an idle session does not use before adding fields.
    #[test]
    fn an_idle_session_fits_its_task_size_class() {
        assert!(std::mem::size_of::<super::Session>() <= 456);
    }
}
