//! The delivery path of a session: messages the topic shards routed to it
//! (through its inbox, a batch at a time) and the retained messages of a
//! new subscription, handed to the state machine ([`Session::deliver`]),
//! and the actions that come out carried out ([`Session::run`]): packets to
//! the client, now or once a commit is done, and rows to the store.
//!
//! Names: a [`Delivery`] is one routed message; the session's
//! `on_delivery` takes one from the inbox, `deliver_routed` applies the
//! ACL and the granted QoS, and `deliver` is the one place a message
//! enters the state machine (sent, queued, or dropped and counted).

use super::{LinkKey, Session};
use crate::broker::durable::{Acknowledgement, Completion};
use crate::broker::ops::log_limit::OVERSIZED_DROPS;
use crate::broker::ops::metrics::Metrics;
use crate::broker::ops::restart::{guard, ActorKind};
use crate::broker::route::delivery_inbox::{
    release, Delivery, DeliveryInbox, DrainInbox, InboxHandle,
};
use crate::broker::route::messages::{LookupRetained, RetainedMatches};
use crate::message::Message;
use crate::protocol::{Packet, PacketId, QoS, TopicFilter};
use crate::session::{Action, DeliverOutcome, MessageId};
use crate::store::Op;
use actix::prelude::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How often one session may log that it drops messages.
const DROP_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Session {
    /// Whether the ACL (if any) lets this client receive a message of
    /// `topic` now; checked for every delivery, so that a subscription the
    /// ACL no longer allows stops receiving.
    pub(super) fn may_read(&mut self, topic: &crate::protocol::TopicName) -> bool {
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

    /// A completion that sends `packet` to the attached client once what it
    /// waits for is committed.
    fn send_later(&self, packet: Packet) -> Option<Completion> {
        let outbound = self.attached.as_ref()?.outbound.clone();
        Some(self.held.send_later(outbound, packet))
    }

    /// Carries out the actions of the last event. `waiting` (a publisher's
    /// acknowledgement) joins every write that puts a message in the
    /// session's queue, so it completes only once those are durable.
    pub(super) fn run(&mut self, waiting: Option<&Acknowledgement>) {
        let mut actions = std::mem::take(&mut self.out);
        // PUBLISHes above the client's Maximum Packet Size, not sent.
        let mut oversized: Vec<(QoS, Option<PacketId>)> = Vec::new();
        for action in actions.drain(..) {
            if let (Action::Send(Packet::Publish(p)), Some(a)) = (&action, &self.attached) {
                if !a.outbound.fits(p) {
                    oversized.push((p.qos, p.packet_id));
                    continue;
                }
            }
            // A packet sent later (by a commit's completion, on the store's
            // thread) must not overtake the packets gathered before it.
            let sends_later = match &action {
                Action::Send(Packet::Publish(_) | Packet::PubRel(_)) => self.held.any_held_back(),
                Action::Send(_) => false,
                Action::Sent { then, .. } | Action::Inbound { then, .. } => then.is_some(),
                _ => false,
            };
            if sends_later {
                self.send_gathered();
            }
            let client_id = || self.client_id.clone();
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
                                g.bytes += a.outbound.wire_len(&packet);
                                g.packets.push(packet);
                            }
                            None => a.outbound.send(packet),
                        }
                    }
                }
                Action::Enqueue {
                    id,
                    qos,
                    retain,
                    size,
                    held,
                } => {
                    let op = Op::Enqueue {
                        client_id: client_id(),
                        id,
                        qos,
                        retain,
                        size,
                        held,
                    };
                    let key = LinkKey::Message(id);
                    match waiting {
                        Some(ack) => {
                            if let Some(link) = ack.write(&self.deps.store, op, None) {
                                self.links.remember(key, link);
                            }
                        }
                        None => self.links.write(&self.deps.store, &key, op, None),
                    }
                }
                Action::Sent {
                    id,
                    packet_id,
                    state,
                    then,
                } => {
                    let then = then.and_then(|p| self.send_later(p));
                    let op = Op::Sent {
                        client_id: client_id(),
                        id,
                        packet_id,
                        state,
                    };
                    self.links
                        .write(&self.deps.store, &LinkKey::Message(id), op, then);
                }
                Action::Dequeue { id, size } => {
                    let op = Op::Dequeue {
                        client_id: client_id(),
                        id,
                        size,
                    };
                    self.links
                        .write(&self.deps.store, &LinkKey::Message(id), op, None);
                }
                Action::Expired => Metrics::inc(&self.deps.metrics.messages_expired),
                Action::Unhold { id } => {
                    let op = Op::Unhold {
                        client_id: client_id(),
                        id,
                    };
                    self.links
                        .write(&self.deps.store, &LinkKey::Message(id), op, None);
                }
                Action::Inbound {
                    packet_id,
                    awaiting,
                    then,
                } => {
                    let then = then.and_then(|p| self.send_later(p));
                    let op = Op::Inbound {
                        client_id: client_id(),
                        packet_id,
                        awaiting,
                    };
                    let key = LinkKey::Inbound(packet_id);
                    match waiting.filter(|_| awaiting) {
                        Some(ack) => {
                            if let Some(link) = ack.write(&self.deps.store, op, then) {
                                self.links.remember(key, link);
                            }
                        }
                        None => self.links.write(&self.deps.store, &key, op, then),
                    }
                }
                Action::PageIn { max } => self.page_wanted = max,
            }
        }
        self.out = actions;
        if !oversized.is_empty() {
            self.drop_oversized(oversized, waiting);
        }
    }

    /// PUBLISHes larger than the client's Maximum Packet Size: discarded
    /// unsent, and the session goes on as if each had been delivered
    /// [MQTT-3.1.2-25] (a QoS 1 one as if acknowledged, a QoS 2 one as if
    /// its flow ended), counted and logged.
    fn drop_oversized(
        &mut self,
        oversized: Vec<(QoS, Option<PacketId>)>,
        waiting: Option<&Acknowledgement>,
    ) {
        self.deps
            .metrics
            .oversized_dropped
            .fetch_add(oversized.len() as u64, Ordering::Relaxed);
        if OVERSIZED_DROPS.allow() {
            log::warn!(
                "client {:?}: {} message(s) larger than the Maximum Packet Size it set in CONNECT not sent [MQTT-3.1.2-25]",
                self.client_id,
                oversized.len()
            );
        }
        for (qos, packet_id) in oversized {
            match (qos, packet_id) {
                (QoS::AtLeastOnce, Some(id)) => {
                    self.state.on_puback(id, &mut self.out);
                }
                (QoS::ExactlyOnce, Some(id)) => {
                    self.state.on_pubrec_refused(id, &mut self.out);
                }
                _ => {}
            }
        }
        self.run(waiting);
    }

    /// From now on, packets for the client are gathered, to go out
    /// together (see `end_gathering`).
    pub(super) fn begin_gathering(&mut self) {
        self.gathered = Some(Box::default());
    }

    /// Sends what was gathered, with one wake-up of the client's writer,
    /// and sends each packet at once again.
    pub(super) fn end_gathering(&mut self) {
        self.send_gathered();
        self.gathered = None;
    }

    /// Sends the packets gathered so far to the client.
    pub(super) fn send_gathered(&mut self) {
        if let (Some(a), Some(g)) = (&self.attached, &mut self.gathered) {
            a.outbound
                .send_all(std::mem::take(&mut g.packets), std::mem::take(&mut g.bytes));
        }
    }

    /// Hands one message to the state machine: sent, queued, or dropped at
    /// a bound (counted, and logged at most every `DROP_LOG_INTERVAL`).
    /// `id` is its place in the store's log, for a durable copy.
    fn deliver(
        &mut self,
        message: Message,
        id: Option<MessageId>,
        waiting: Option<&Acknowledgement>,
    ) {
        let gathered = self.gathered.as_ref().map_or(0, |g| g.bytes);
        let writable = self
            .attached
            .as_ref()
            .is_some_and(|a| a.outbound.is_writable(gathered));
        // QoS 0 to a client that is here is sent, never queued in the store.
        let id = match id {
            Some(id) if message.qos == QoS::AtMostOnce && self.state.is_online() => {
                release(&self.deps.store, id, waiting);
                None
            }
            id => id,
        };
        let outcome = self.state.deliver(message, id, writable, &mut self.out);
        self.run(waiting);
        match outcome {
            DeliverOutcome::Sent | DeliverOutcome::Queued => {}
            // QoS 0 for an offline client: expected, counted, not logged.
            DeliverOutcome::DroppedOffline => Metrics::inc(&self.deps.metrics.dropped_offline_qos0),
            dropped => self.dropped_at_a_bound(1, dropped),
        }
    }

    /// Counts `n` messages dropped at a bound, and logs them at most every
    /// `DROP_LOG_INTERVAL`, with counts, never once per message.
    pub(super) fn dropped_at_a_bound(&mut self, n: u64, outcome: DeliverOutcome) {
        let counter = match outcome {
            DeliverOutcome::DroppedSlowClient => &self.deps.metrics.dropped_slow_client,
            _ => &self.deps.metrics.dropped_queue_full,
        };
        counter.fetch_add(n, Ordering::Relaxed);
        self.unlogged_drops = self
            .unlogged_drops
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        if self
            .last_drop_log
            .is_none_or(|t| t.elapsed() >= DROP_LOG_INTERVAL)
        {
            let bound = match outcome {
                DeliverOutcome::DroppedSlowClient => {
                    "QoS 0 to a client that does not read: limits.max_outbound_bytes"
                }
                DeliverOutcome::DroppedQueueFull => {
                    "its queue is full: session.max_queued_messages or max_queued_bytes"
                }
                _ => "QoS 0 for an offline session (session.queue_qos0 is off)",
            };
            log::warn!(
                "client {:?}: dropped {} message(s) at a bound ({bound}; {} queued)",
                self.client_id,
                self.unlogged_drops,
                self.state.queued_len()
            );
            self.unlogged_drops = 0;
            self.last_drop_log = Some(std::time::Instant::now());
        }
    }

    pub(super) fn log_unlogged_drops(&mut self) {
        if self.unlogged_drops > 0 {
            log::warn!(
                "client {:?}: dropped {} more message(s) at a bound",
                self.client_id,
                self.unlogged_drops
            );
            self.unlogged_drops = 0;
        }
    }
}

impl Handler<DrainInbox> for Session {
    type Result = ();

    fn handle(&mut self, _: DrainInbox, ctx: &mut Context<Self>) {
        let Some(inbox) = &self.inbox else {
            return;
        };
        let taken = inbox.take();
        self.begin_gathering();
        for delivery in taken.deliveries {
            self.on_delivery(delivery);
        }
        self.end_gathering();
        if taken.dropped > 0 {
            self.dropped_at_a_bound(taken.dropped, DeliverOutcome::DroppedQueueFull);
        }
        self.request_page(ctx);
    }
}

impl Session {
    /// The shards' deliveries go through one inbox per session (see
    /// `delivery_inbox`); made at the first subscription.
    pub(super) fn inbox_handle(&mut self, me: Addr<Session>) -> InboxHandle {
        let limits = self.deps.limits;
        let inbox = self
            .inbox
            .get_or_insert_with(|| {
                let inbox = DeliveryInbox::for_limits(&limits);
                inbox.go_live(me.recipient());
                Arc::new(inbox)
            })
            .clone();
        InboxHandle::new(inbox)
    }

    /// One delivery from the inbox, guarded: after a panic the session
    /// recovers and a QoS 1/2 delivery is tried once more.
    fn on_delivery(&mut self, msg: Delivery) {
        // The session's number, not its client id, names it if this panics
        // (`recover` logs the client id when it rebuilds the session): a
        // copy of the client id for every delivery was an atomic count on
        // its buffer.
        let id = self.id;
        let Delivery {
            message,
            qos,
            ack,
            log_id,
        } = msg;
        // The publisher's acknowledgement stays out here, not in the guarded
        // call. A panic would drop it while unwinding, which abandons it
        // (see `Completion`), and a retry that succeeds could then never
        // acknowledge.
        //
        // A panic after the first attempt had passed a clone of it to the
        // store still abandons it: a clone dropped while unwinding abandons
        // the one callback all clones share.
        //
        // A QoS 1/2 delivery is kept to try once more after a failure, or it
        // would be lost for this subscriber. A QoS 0 one may be lost, and is
        // not copied: a copy shares the buffers every subscriber shares.
        let retry = (qos.min(message.qos) != QoS::AtMostOnce).then(|| message.clone());
        let delivered = guard::<Delivery, _>(ActorKind::Session, &id, || {
            self.deliver_routed(message, qos, log_id, ack.as_ref())
        });
        if delivered.is_ok() {
            return;
        }
        self.recover();
        let retried = retry.is_some_and(|message| {
            let again = guard::<Delivery, _>(ActorKind::Session, &id, || {
                self.deliver_routed(message, qos, log_id, ack.as_ref())
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

    /// A routed message: read access checked, delivered at the lower of the
    /// published and the granted QoS, RETAIN cleared. A durable copy the
    /// ACL refuses releases its place in the log.
    fn deliver_routed(
        &mut self,
        mut message: Message,
        qos: QoS,
        log_id: Option<MessageId>,
        ack: Option<&Acknowledgement>,
    ) {
        if !self.may_read(&message.topic) {
            if let Some(id) = log_id {
                release(&self.deps.store, id, ack);
            }
            return;
        }
        // Delivered QoS is the lower of published and granted; the shard
        // cleared RETAIN [MQTT-3.3.1-9] unless Retain As Published keeps it.
        message.qos = message.qos.min(qos);
        self.deliver(message, log_id, ack);
    }
}

/// Session ← itself (the completion of a SUBSCRIBE, once SUBACK is out):
/// send the retained messages of these granted filters [MQTT-3.3.1-6].
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SendRetained(pub Vec<(TopicFilter, QoS)>);

impl Handler<SendRetained> for Session {
    type Result = ();

    fn handle(&mut self, msg: SendRetained, ctx: &mut Context<Self>) {
        let pending = self.retained_pending.get_or_insert_with(Default::default);
        let idle = pending.is_empty();
        pending.extend(msg.0);
        if idle {
            self.look_up_retained(ctx);
        }
    }
}

impl Session {
    /// Asks the retained store for the first pending filter's messages, as
    /// many as the session's bounds have room for now; delivers them when
    /// they come, then asks for the next filter. One filter at a time: what
    /// is in flight to the session is one such chunk, however many filters
    /// a client subscribes to.
    fn look_up_retained(&mut self, ctx: &mut Context<Self>) {
        let Some((filter, _)) = self.retained_pending.as_ref().and_then(|p| p.front()) else {
            self.retained_pending = None;
            return;
        };
        let lookup = LookupRetained {
            filter: filter.clone(),
            room: self.state.room(),
        };
        let asked = self.deps.router.retained().send(lookup);
        ctx.spawn(asked.into_actor(self).map(|found, act, ctx| {
            let front = act.retained_pending.as_mut().and_then(|p| p.pop_front());
            if let (Some((_, qos)), Ok(found)) = (front, found) {
                act.deliver_retained(found, qos);
            }
            act.request_page(ctx);
            act.look_up_retained(ctx);
        }));
    }

    /// Retained messages of a new subscription, with RETAIN=1
    /// [MQTT-3.3.1-8], at the lower of their QoS and the granted one;
    /// those the store left out (no room) are counted as dropped.
    fn deliver_retained(&mut self, found: RetainedMatches, qos: QoS) {
        let id = self.client_id.clone();
        let delivered = guard::<RetainedMatches, _>(ActorKind::Session, &id, || {
            for mut message in found.messages {
                if !self.may_read(&message.topic) {
                    continue;
                }
                message.qos = message.qos.min(qos);
                message.retain = true;
                // A durable copy enters the log first, as a routed one does.
                let id = self.new_message_id(message.qos);
                if let Some(id) = id {
                    self.write(
                        Op::Append {
                            id,
                            message: message.clone(),
                            copies: 1,
                        },
                        None,
                    );
                }
                self.deliver(message, id, None);
            }
        });
        if delivered.is_err() {
            self.recover();
        }
        self.deps
            .metrics
            .messages_expired
            .fetch_add(found.expired as u64, Ordering::Relaxed);
        if found.skipped > 0 {
            self.dropped_at_a_bound(found.skipped as u64, DeliverOutcome::DroppedQueueFull);
        }
    }
}
