//! The session state machine. Methods take an event and push [`Action`]s
//! into `out`: packets to send, and, for a durable (persistent) session,
//! changes to its queue in the store, some of which a packet must wait for.
//! They never block and never fail on client input that the codec already
//! validated.
//!
//! A durable session's queue lives in the store (see `store::queues`); the
//! session holds a window of it in memory: the messages in flight and up to
//! [`HOLD_AHEAD`] more as they arrive. Messages that arrive while that is
//! full wait in the store only, and are paged in, [`READ_AHEAD`] at a time
//! ([`Action::PageIn`], [`SessionState::paged`]), as the window drains. A session restored after a restart holds nothing
//! until its client returns.
//!
//! Durability rules (what must be committed before what is sent):
//! - a QoS 2 PUBLISH's packet id, before it is first sent: after a crash it
//!   is resent with the same id, never as a new message;
//! - the PUBREC → awaiting-PUBCOMP step, before PUBREL is sent: after a
//!   crash PUBREL is resent, not the PUBLISH;
//! - an inbound QoS 2 id's release, before PUBCOMP is sent;
//! - a QoS 1 message's packet id is written when its client leaves (so a
//!   client that returns gets it with the same id), not when it is sent:
//!   after a crash, a QoS 1 message that was in flight is sent again with a
//!   new id, a duplicate delivery QoS 1 allows; the publisher's PUBACK
//!   waits, in the broker, for the message to be in every durable queue.

use super::action::{Action, DeliverOutcome, Inflight, MessageId, OutboundState, Paged, Queued};
use super::limits::SessionLimits;
use super::map::SharedSeedMap;
use super::packet_ids::PacketIds;
use super::pager::{Pager, HOLD_AHEAD, READ_AHEAD};
use super::subscriptions::{SubscribeOutcome, Subscription, Subscriptions};
use crate::config::LimitsConfig;
use crate::message::Message;
use crate::protocol::{Packet, PacketId, Publish, QoS, SubscribeTopic, TopicFilter};
use std::collections::VecDeque;
use std::num::NonZeroU32;

mod acks;

pub struct SessionState {
    limits: SessionLimits,
    subscriptions: Subscriptions,
    /// Outbound QoS 1/2 messages in the order they were sent.
    inflight: VecDeque<Inflight>,
    /// Bytes of the messages in `inflight`.
    inflight_bytes: usize,
    packet_ids: PacketIds,
    /// Messages at their delivery QoS, oldest first (for a durable
    /// session: the part of its queue read into memory).
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    /// Inbound QoS 2 packet ids whose PUBLISH was routed and whose PUBREL
    /// has not arrived: a resent PUBLISH with one of these ids is not
    /// routed again (section 4.3.3, method B).
    inbound_awaiting_rel: SharedSeedMap<PacketId, ()>,
    online: bool,
    pager: Pager,
    /// Outbound QoS 1/2 messages let in flight: `max_inflight`, or less
    /// when the client's Receive Maximum (5.0) is lower [MQTT-3.3.4-9].
    /// A `u16`, as packet ids are: no more can be in flight.
    window: u16,
    /// Some subscription has a Subscription Identifier (5.0): messages
    /// sent carry those they match (see `publish`).
    subscription_ids: bool,
}

/// The in-flight window: `max_inflight`, at most the client's Receive
/// Maximum and the 65,535 packet ids, at least 1.
fn window(max_inflight: u32, receive_maximum: Option<u16>) -> u16 {
    let max = u16::try_from(max_inflight).unwrap_or(u16::MAX);
    max.min(receive_maximum.unwrap_or(u16::MAX)).max(1)
}

impl SessionState {
    /// A new session; `durable` for a persistent one (clean session 0).
    pub fn new(limits: SessionLimits, durable: bool) -> SessionState {
        SessionState {
            limits,
            subscriptions: Subscriptions::default(),
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            packet_ids: PacketIds::default(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            inbound_awaiting_rel: SharedSeedMap::default(),
            online: false,
            pager: Pager::new(durable),
            window: window(limits.max_inflight, None),
            subscription_ids: false,
        }
    }

    /// A durable session as the store kept it: its subscriptions and the
    /// inbound QoS 2 ids awaiting PUBREL. Its queue stays in the store
    /// until the client returns (see [`SessionState::paged`]).
    pub fn restore(
        limits: SessionLimits,
        subscriptions: Vec<(TopicFilter, Subscription)>,
        inbound: Vec<PacketId>,
    ) -> SessionState {
        let mut s = SessionState::new(limits, true);
        s.subscriptions = Subscriptions::restore(subscriptions);
        s.subscription_ids = s.subscriptions.any_ids();
        s.inbound_awaiting_rel = inbound.into_iter().map(|p| (p, ())).collect();
        s.pager.reset();
        s
    }

    pub fn is_online(&self) -> bool {
        self.online
    }

    pub fn is_durable(&self) -> bool {
        self.pager.is_durable()
    }

    pub fn subscriptions(&self) -> impl Iterator<Item = (&TopicFilter, Subscription)> {
        self.subscriptions.iter()
    }

    pub fn inflight(&self) -> impl Iterator<Item = &Inflight> {
        self.inflight.iter()
    }

    pub fn queued(&self) -> impl Iterator<Item = &Queued> {
        self.queue.iter()
    }

    /// Messages queued in memory.
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// How many more QoS 1/2 messages the bounds let this session hold now:
    /// free in-flight slots plus free places in the queue. More would be
    /// dropped at the bound (see `deliver`).
    pub fn room(&self) -> usize {
        (self.limits.max_inflight as usize + self.limits.max_queued_messages as usize)
            .saturating_sub(self.inflight.len() + self.queue.len())
    }

    /// A SUBSCRIBE: each filter granted or refused, in order (see
    /// `subscriptions`); `allowed_by_acl` is the ACL as a predicate.
    pub fn on_subscribe(
        &mut self,
        topics: &[SubscribeTopic],
        id: Option<NonZeroU32>,
        limits: &LimitsConfig,
        allowed_by_acl: impl Fn(&TopicFilter) -> bool,
    ) -> SubscribeOutcome {
        let outcome = self
            .subscriptions
            .subscribe(topics, id, limits, allowed_by_acl);
        // Only a session that has identifiers looks through its
        // subscriptions again (a replacement may have dropped the last).
        self.subscription_ids =
            (id.is_some() || self.subscription_ids) && self.subscriptions.any_ids();
        outcome
    }

    /// Removes a subscription; false if there was none.
    pub fn unsubscribe(&mut self, filter: &TopicFilter) -> bool {
        let removed = self.subscriptions.remove(filter);
        self.subscription_ids = self.subscription_ids && self.subscriptions.any_ids();
        removed
    }

    /// The PUBLISH of `message` to this session's client, carrying the
    /// Subscription Identifiers of the subscriptions it matches
    /// [MQTT-3.3.4-3] [MQTT-3.3.4-4].
    fn publish(&self, message: Message, packet_id: Option<PacketId>, dup: bool) -> Publish {
        let mut publish = message.into_publish(packet_id, dup);
        self.add_subscription_ids(&mut publish);
        publish
    }

    /// Adds the Subscription Identifiers `publish` matches, if any.
    fn add_subscription_ids(&self, publish: &mut Publish) {
        if !self.subscription_ids {
            return;
        }
        let ids = self.subscriptions.ids_matching(&publish.topic);
        if !ids.is_empty() {
            publish
                .properties
                .get_or_insert_with(Default::default)
                .subscription_identifiers = ids;
        }
    }

    /// What resends `entry` (see `Inflight::resend`), with its
    /// Subscription Identifiers.
    fn resend(&self, entry: &Inflight) -> Packet {
        let mut packet = entry.resend();
        if let Packet::Publish(p) = &mut packet {
            self.add_subscription_ids(p);
        }
        packet
    }

    /// The Receive Maximum of the client now connected (5.0; `None` for
    /// 3.1.1 and for a 5.0 client that sets none, whose default is 65,535):
    /// at most this many QoS 1/2 messages in flight to it [MQTT-3.3.4-9].
    /// What was in flight already is resent whatever the window.
    pub fn set_receive_maximum(&mut self, receive_maximum: Option<u16>) {
        self.window = window(self.limits.max_inflight, receive_maximum);
    }

    /// The client connected: resend what was in flight with DUP set
    /// [MQTT-4.4.0-1], PUBREL for QoS 2 messages already received, then
    /// queued messages as the window allows (a durable session asks the
    /// store for its queue).
    pub fn attach(&mut self, out: &mut Vec<Action>) {
        self.online = true;
        for entry in &self.inflight {
            out.push(Action::Send(self.resend(entry)));
        }
        self.fill_window(out);
    }

    /// Drops the queued and in-flight outbound messages whose topic
    /// `readable` refuses (the ACL, checked again when a client takes up a
    /// stored session), dequeuing them. Returns how many it dropped.
    pub fn drop_unreadable(
        &mut self,
        readable: impl Fn(&Message) -> bool,
        out: &mut Vec<Action>,
    ) -> usize {
        let mut dropped = 0;
        let mut forget = |id: Option<MessageId>, message: &Message, out: &mut Vec<Action>| {
            dropped += 1;
            if let Some(id) = id {
                out.push(Action::Dequeue {
                    id,
                    size: message.stored_size(),
                });
            }
        };
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for q in self.queue.drain(..) {
            if readable(&q.message) {
                kept.push_back(q);
            } else {
                self.queued_bytes -= q.message.size();
                forget(q.id, &q.message, out);
            }
        }
        self.queue = kept;
        let mut kept = VecDeque::with_capacity(self.inflight.len());
        for e in self.inflight.drain(..) {
            if readable(&e.message) {
                kept.push_back(e);
            } else {
                self.inflight_bytes -= e.message.size();
                forget(e.id, &e.message, out);
            }
        }
        self.inflight = kept;
        dropped
    }

    /// The client went away. A durable session lets go of the messages of
    /// its queue it holds, in flight or read ahead: they are in the store,
    /// with the packet ids of those sent, and are paged in again (and
    /// resent) when the client returns.
    pub fn detach(&mut self, out: &mut Vec<Action>) {
        self.online = false;
        if self.pager.is_durable() {
            self.pager.reset();
            self.save_inflight(out);
            let held = self
                .queue
                .iter()
                .filter_map(|q| q.id)
                .chain(self.inflight.iter().filter_map(|e| e.id));
            for id in held {
                out.push(Action::Unhold { id });
            }
            self.queue.retain(|q| q.id.is_none());
            self.inflight.retain(|e| e.id.is_none());
            self.queued_bytes = self.queue.iter().map(|q| q.message.size()).sum();
            self.inflight_bytes = self.inflight.iter().map(|e| e.message.size()).sum();
            self.queue.shrink_to_fit();
            self.inflight.shrink_to_fit();
        }
    }

    /// Durable: writes the packet ids of the QoS 1 messages in flight, to
    /// be resent with them [MQTT-4.4.0-1] (when the client leaves, and
    /// before roost stops).
    pub fn save_inflight(&self, out: &mut Vec<Action>) {
        for e in &self.inflight {
            if let (Some(id), OutboundState::AwaitingPubAck) = (e.id, e.state) {
                out.push(Action::Sent {
                    id,
                    packet_id: e.packet_id,
                    state: e.state,
                    then: None,
                });
            }
        }
    }

    /// A message routed to this session. `qos` is already min(published,
    /// granted); `id` is its place in the store's log for a durable session
    /// (QoS 1/2, and QoS 0 while the client is away with `queue_qos0`: the
    /// caller releases the id of a QoS 0 message for an online client);
    /// `writable` is false when the client's outbound buffer is full.
    pub fn deliver(
        &mut self,
        message: Message,
        id: Option<MessageId>,
        writable: bool,
        out: &mut Vec<Action>,
    ) -> DeliverOutcome {
        if message.qos == QoS::AtMostOnce {
            if self.online {
                if !writable {
                    return DeliverOutcome::DroppedSlowClient;
                }
                out.push(Action::Send(Packet::Publish(
                    self.publish(message, None, false),
                )));
                return DeliverOutcome::Sent;
            }
            if !self.limits.queue_qos0 {
                return DeliverOutcome::DroppedOffline;
            }
            // `queue_qos0`: a durable session queues it in the store (the
            // shard gave it an id), any other in memory.
            return match id {
                Some(id) => {
                    out.push(Action::Enqueue {
                        id,
                        qos: QoS::AtMostOnce,
                        retain: message.retain,
                        size: message.stored_size(),
                        held: false,
                    });
                    self.pager.stored();
                    DeliverOutcome::Queued
                }
                None => self.enqueue_in_memory(Queued { id: None, message }),
            };
        }
        let Some(id) = id else {
            if self.online && self.queue.is_empty() && self.window_has_room(&message) {
                self.send_inflight(Queued { id: None, message }, out);
                return DeliverOutcome::Sent;
            }
            return self.enqueue_in_memory(Queued { id: None, message });
        };
        let size = message.size();
        let held = self.pager.may_hold();
        let enqueue = |held: bool| Action::Enqueue {
            id,
            qos: message.qos,
            retain: message.retain,
            size: message.stored_size(),
            held,
        };
        if held && self.online && self.queue.is_empty() && self.window_has_room(&message) {
            out.push(enqueue(true));
            self.send_inflight(
                Queued {
                    id: Some(id),
                    message,
                },
                out,
            );
            return DeliverOutcome::Sent;
        }
        if held
            && self.online
            && self.queue.len() < self.hold_ahead()
            && self.queued_bytes + size <= self.limits.max_queued_bytes as usize
        {
            out.push(enqueue(true));
            self.queued_bytes += size;
            self.queue.push_back(Queued {
                id: Some(id),
                message,
            });
            return DeliverOutcome::Queued;
        }
        // The rest of the queue (all of it while the client is away) waits
        // in the store, which applies the queue's bounds to it.
        out.push(enqueue(false));
        self.pager.stored();
        DeliverOutcome::Queued
    }

    fn enqueue_in_memory(&mut self, queued: Queued) -> DeliverOutcome {
        let size = queued.message.size();
        if self.queue.len() >= self.limits.max_queued_messages as usize
            || self.queued_bytes + size > self.limits.max_queued_bytes as usize
        {
            return DeliverOutcome::DroppedQueueFull;
        }
        self.queued_bytes += size;
        self.queue.push_back(queued);
        DeliverOutcome::Queued
    }

    /// Messages of the queue the store handed out after an
    /// [`Action::PageIn`], in order; `more`: the store holds more. Those
    /// that had been sent go back in flight with their packet ids and are
    /// resent with DUP set [MQTT-4.4.0-1].
    pub fn paged(&mut self, messages: Vec<Paged>, more: bool, out: &mut Vec<Action>) {
        if !self.online {
            // The client left while the page was on its way: let go of it.
            self.pager.reset();
            out.extend(messages.into_iter().map(|p| Action::Unhold { id: p.id }));
            return;
        }
        self.pager.answered(more);
        for Paged { id, message, sent } in messages {
            match sent {
                Some((packet_id, state)) if state != OutboundState::Queued => {
                    let entry = Inflight {
                        id: Some(id),
                        packet_id,
                        message,
                        state,
                    };
                    if self.online {
                        out.push(Action::Send(self.resend(&entry)));
                    }
                    self.inflight_bytes += entry.message.size();
                    self.inflight.push_back(entry);
                    self.packet_ids.taken_elsewhere();
                }
                _ => {
                    self.queued_bytes += message.size();
                    self.queue.push_back(Queued {
                        id: Some(id),
                        message,
                    });
                }
            }
        }
        self.fill_window(out);
    }

    /// A page could not be read (the store restarted): ask again later.
    pub fn page_failed(&mut self) {
        self.pager.reset();
    }

    /// The store has more of the queue than the session last heard.
    pub fn more_in_store(&mut self, out: &mut Vec<Action>) {
        self.pager.stored();
        self.fill_window(out);
    }

    /// Puts a message in flight (for a durable one, its queue entry was
    /// already written).
    fn send_inflight(&mut self, queued: Queued, out: &mut Vec<Action>) {
        let Queued { id, message } = queued;
        let packet_id = self.allocate_packet_id();
        let packet = Packet::Publish(self.publish(message.clone(), Some(packet_id), false));
        let state = match message.qos {
            QoS::ExactlyOnce => OutboundState::AwaitingPubRec,
            _ => OutboundState::AwaitingPubAck,
        };
        match id {
            // QoS 2: the id must be durable before the client can see it.
            Some(id) if state == OutboundState::AwaitingPubRec => out.push(Action::Sent {
                id,
                packet_id,
                state,
                then: Some(packet),
            }),
            // QoS 1: sent at once; its packet id is written when the client
            // leaves (see `detach`).
            Some(_) | None => out.push(Action::Send(packet)),
        }
        self.inflight_bytes += message.size();
        self.inflight.push_back(Inflight {
            id,
            packet_id,
            message,
            state,
        });
    }

    /// The next id not used by an in-flight message: ids are unique per
    /// direction while in use [MQTT-2.3.1-2].
    fn allocate_packet_id(&mut self) -> PacketId {
        let inflight = &self.inflight;
        self.packet_ids
            .allocate(|| inflight.iter().map(|e| e.packet_id))
    }

    /// Whether `message` may go in flight now: the window has a free slot,
    /// and room for its bytes (or nothing in flight: one message of any
    /// size always may).
    fn window_has_room(&self, message: &Message) -> bool {
        self.inflight.len() < self.window as usize
            && (self.inflight.is_empty()
                || self.inflight_bytes + message.size() <= self.limits.max_inflight_bytes as usize)
    }

    /// Moves queued messages into the in-flight window while it has room;
    /// a durable session then asks the store for more if it is running low.
    fn fill_window(&mut self, out: &mut Vec<Action>) {
        let now = crate::message::unix_now();
        while self.online && self.inflight.len() < self.window as usize {
            let Some(front) = self.queue.front() else {
                break;
            };
            if front.message.qos != QoS::AtMostOnce && !self.window_has_room(&front.message) {
                break;
            }
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes -= queued.message.size();
            if queued.message.expired(now) {
                // Not delivered [MQTT-3.3.2-5]: it leaves the queue.
                if let Some(id) = queued.id {
                    out.push(Action::Dequeue {
                        id,
                        size: queued.message.stored_size(),
                    });
                }
                out.push(Action::Expired);
                continue;
            }
            if queued.message.qos == QoS::AtMostOnce {
                // No acknowledgement comes: once sent, it leaves the queue.
                if let Some(id) = queued.id {
                    out.push(Action::Dequeue {
                        id,
                        size: queued.message.stored_size(),
                    });
                }
                out.push(Action::Send(Packet::Publish(self.publish(
                    queued.message,
                    None,
                    false,
                ))));
            } else {
                self.send_inflight(queued, out);
            }
        }
        let read_ahead = self.read_ahead();
        if self.pager.ask(self.online, self.queue.len(), read_ahead) {
            // Room to read ahead, and to refill the window: a session taken
            // up again gets everything it had in flight in its first page.
            let window = (self.window as usize).saturating_sub(self.inflight.len());
            out.push(Action::PageIn {
                max: (read_ahead.saturating_sub(self.queue.len()) + window).max(1) as u32,
            });
        }
    }

    /// Messages of the queue a durable session holds in memory beyond
    /// those in flight, at most.
    fn read_ahead(&self) -> usize {
        READ_AHEAD.min(self.limits.max_queued_messages as usize)
    }

    /// Messages arriving for an online durable session that it holds in
    /// memory beyond those in flight, while none of its queue waits in the
    /// store, at most (see [`HOLD_AHEAD`]).
    fn hold_ahead(&self) -> usize {
        HOLD_AHEAD.min(self.limits.max_queued_messages as usize)
    }

    fn take(&mut self, packet_id: PacketId, state: OutboundState) -> Option<Inflight> {
        let i = self
            .inflight
            .iter()
            .position(|e| e.packet_id == packet_id && e.state == state)?;
        let taken = self.inflight.remove(i)?;
        self.inflight_bytes -= taken.message.size();
        Some(taken)
    }

    pub fn inbound_awaiting_rel(&self) -> impl Iterator<Item = PacketId> + '_ {
        self.inbound_awaiting_rel.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Ack, TopicName};
    use bytes::Bytes;

    fn msg(qos: QoS, n: u8) -> Message {
        Message {
            topic: TopicName::new("t".to_string()).unwrap(),
            payload: Bytes::from(vec![n]),
            qos,
            retain: false,
            properties: None,
        }
    }

    fn limits(max_inflight: u32, max_queued: u32) -> SessionLimits {
        SessionLimits {
            max_inflight,
            max_queued_messages: max_queued,
            ..SessionLimits::default()
        }
    }

    fn pid(v: u16) -> PacketId {
        PacketId::new(v).unwrap()
    }

    /// (payload byte, packet id, dup) of each PUBLISH sent at once.
    fn publishes(out: &[Action]) -> Vec<(u8, Option<u16>, bool)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Send(Packet::Publish(p)) => {
                    Some((p.payload[0], p.packet_id.map(|i| i.get()), p.dup))
                }
                _ => None,
            })
            .collect()
    }

    fn sent(out: &[Action]) -> Vec<Packet> {
        out.iter()
            .filter_map(|a| match a {
                Action::Send(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn window_limits_inflight_and_acks_release_queue_in_order() {
        let mut s = SessionState::new(limits(2, 10), false);
        let mut out = Vec::new();
        s.attach(&mut out);
        for n in 0..4 {
            s.deliver(msg(QoS::AtLeastOnce, n), None, true, &mut out);
        }
        assert_eq!(
            publishes(&out),
            vec![(0, Some(1), false), (1, Some(2), false)]
        );
        assert_eq!(s.queued_len(), 2);
        out.clear();
        assert!(s.on_puback(pid(1), &mut out));
        assert_eq!(publishes(&out), vec![(2, Some(3), false)]);
        assert!(!s.on_puback(pid(1), &mut out), "a second PUBACK is unknown");
    }

    /// [MQTT-4.8.0-1] PUBREC or PUBCOMP for a QoS 1 message in flight, or
    /// PUBACK for a QoS 2 one, is of the wrong type; the right one, a
    /// repeated PUBREC and an id not in flight are not.
    #[test]
    fn acknowledgements_of_the_wrong_type_are_found() {
        let mut s = SessionState::new(limits(4, 10), false);
        let mut out = Vec::new();
        s.attach(&mut out);
        s.deliver(msg(QoS::AtLeastOnce, 1), None, true, &mut out);
        s.deliver(msg(QoS::ExactlyOnce, 2), None, true, &mut out);
        use crate::protocol::PacketType::*;
        assert_eq!(s.wrong_ack(PubRec, pid(1)), Some(PubAck));
        assert_eq!(s.wrong_ack(PubComp, pid(1)), Some(PubAck));
        assert_eq!(s.wrong_ack(PubAck, pid(1)), None);
        assert_eq!(s.wrong_ack(PubAck, pid(2)), Some(PubRec));
        assert_eq!(s.wrong_ack(PubRec, pid(2)), None);
        assert_eq!(s.wrong_ack(PubComp, pid(2)), Some(PubRec), "before PUBREC");
        assert!(s.on_pubrec(pid(2), &mut out));
        assert_eq!(s.wrong_ack(PubComp, pid(2)), None);
        assert_eq!(s.wrong_ack(PubAck, pid(2)), Some(PubComp));
        assert_eq!(s.wrong_ack(PubRec, pid(2)), None, "a repeated PUBREC");
        assert_eq!(s.wrong_ack(PubRec, pid(9)), None, "not in flight");
    }

    /// [MQTT-3.3.4-9] The client's Receive Maximum narrows the window
    /// (never widens it past `max_inflight`); a 5.0 PUBREC refusing a
    /// message (0x80 or above) ends its flow without PUBREL (section
    /// 4.3.3), and the window moves on.
    #[test]
    fn receive_maximum_narrows_the_window_and_a_refused_pubrec_ends_the_flow_mqtt_3_3_4_9() {
        let mut s = SessionState::new(limits(4, 10), false);
        let mut out = Vec::new();
        s.set_receive_maximum(Some(2));
        s.attach(&mut out);
        for n in 1..=3 {
            s.deliver(msg(QoS::ExactlyOnce, n), None, true, &mut out);
        }
        assert_eq!(s.inflight().count(), 2, "Receive Maximum 2");
        out.clear();
        assert!(s.on_pubrec_refused(pid(1), &mut out));
        assert_eq!(
            publishes(&out),
            vec![(3, Some(3), false)],
            "no PUBREL; the third goes"
        );
        assert!(!s.on_pubrec_refused(pid(1), &mut out), "gone");
        s.set_receive_maximum(Some(1000));
        for n in 4..=9 {
            s.deliver(msg(QoS::AtLeastOnce, n), None, true, &mut out);
        }
        assert_eq!(s.inflight().count(), 4, "max_inflight still bounds it");
        s.set_receive_maximum(None);
        assert_eq!(s.inflight().count(), 4);
    }

    #[test]
    fn offline_queue_then_resend_with_dup_on_reconnect() {
        let mut s = SessionState::new(limits(1, 10), false);
        let mut out = Vec::new();
        s.attach(&mut out);
        s.deliver(msg(QoS::ExactlyOnce, 7), None, true, &mut out);
        s.detach(&mut out);
        assert_eq!(
            s.deliver(msg(QoS::AtLeastOnce, 8), None, true, &mut out),
            DeliverOutcome::Queued
        );
        assert_eq!(
            s.deliver(msg(QoS::AtMostOnce, 9), None, true, &mut out),
            DeliverOutcome::DroppedOffline
        );
        out.clear();
        s.attach(&mut out);
        assert_eq!(
            publishes(&out),
            vec![(7, Some(1), true)],
            "in-flight resent with DUP=1, window full"
        );
        out.clear();
        s.on_pubrec(pid(1), &mut out);
        assert_eq!(sent(&out), vec![Packet::PubRel(Ack::new(pid(1)))]);
        out.clear();
        s.detach(&mut out);
        s.attach(&mut out);
        assert_eq!(
            sent(&out),
            vec![Packet::PubRel(Ack::new(pid(1)))],
            "PUBREL resent after reconnect"
        );
        out.clear();
        s.on_pubcomp(pid(1), &mut out);
        assert_eq!(publishes(&out), vec![(8, Some(2), false)]);
    }

    #[test]
    fn queue_bounds_drop_and_report() {
        let mut s = SessionState::new(limits(1, 2), false);
        let mut out = Vec::new();
        for n in 0..2 {
            assert_eq!(
                s.deliver(msg(QoS::AtLeastOnce, n), None, true, &mut out),
                DeliverOutcome::Queued
            );
        }
        assert_eq!(
            s.deliver(msg(QoS::AtLeastOnce, 2), None, true, &mut out),
            DeliverOutcome::DroppedQueueFull
        );
        assert!(out.is_empty());
    }

    #[test]
    fn qos0_to_full_outbound_buffer_is_dropped() {
        let mut s = SessionState::new(limits(1, 2), false);
        let mut out = Vec::new();
        s.attach(&mut out);
        assert_eq!(
            s.deliver(msg(QoS::AtMostOnce, 0), None, false, &mut out),
            DeliverOutcome::DroppedSlowClient
        );
        assert!(out.is_empty());
    }

    #[test]
    fn inbound_qos2_is_routed_once_until_pubrel() {
        let mut s = SessionState::new(SessionLimits::default(), false);
        let mut out = Vec::new();
        assert!(s.on_inbound_qos2(pid(5), &mut out));
        assert!(
            !s.on_inbound_qos2(pid(5), &mut out),
            "a resent PUBLISH is not routed twice"
        );
        s.on_pubrel(pid(5), &mut out);
        assert_eq!(sent(&out), vec![Packet::PubComp(Ack::new(pid(5)))]);
        assert!(
            s.on_inbound_qos2(pid(5), &mut out),
            "after PUBREL the id is free again"
        );
    }

    /// [MQTT-2.3.1-2]: over several wraps of the 65,535 ids, with one
    /// message left in flight the whole time and the others acknowledged
    /// out of order, no id is handed out while it is in flight.
    #[test]
    fn packet_ids_stay_unique_over_wraps_mqtt_2_3_1_2() {
        let mut s = SessionState::new(limits(5, 10), false);
        let mut out = Vec::new();
        s.attach(&mut out);
        let mut in_flight: Vec<u16> = Vec::new();
        let (mut last, mut wraps) = (0u16, 0);
        for n in 0..200_000u32 {
            out.clear();
            s.deliver(msg(QoS::AtLeastOnce, n as u8), None, true, &mut out);
            for (_, id, _) in publishes(&out) {
                let id = id.expect("QoS 1 has an id");
                assert!(
                    !in_flight.contains(&id),
                    "id {id} handed out while in flight"
                );
                wraps += usize::from(id < last);
                last = id;
                in_flight.push(id);
            }
            if in_flight.len() == 5 {
                // The first stays; the others leave in an order that varies.
                let id = in_flight.remove(1 + n as usize % 4);
                assert!(s.on_puback(pid(id), &mut out));
            }
        }
        assert_eq!(in_flight[0], 1, "the first message stayed in flight");
        assert!(wraps >= 3, "the ids wrapped {wraps} times");
    }

    #[test]
    fn packet_ids_skip_ids_in_flight() {
        let mut s = SessionState::new(limits(3, 10), false);
        s.packet_ids = PacketIds::starting_at(pid(u16::MAX));
        let mut out = Vec::new();
        s.attach(&mut out);
        s.deliver(msg(QoS::AtLeastOnce, 0), None, true, &mut out);
        s.deliver(msg(QoS::AtLeastOnce, 1), None, true, &mut out);
        assert_eq!(
            publishes(&out),
            vec![(0, Some(u16::MAX), false), (1, Some(1), false)]
        );
    }

    #[test]
    fn durable_qos2_is_stored_before_it_is_sent_and_before_pubrel() {
        let mut s = SessionState::new(limits(10, 10), true);
        let mut out = Vec::new();
        s.attach(&mut out);
        s.deliver(msg(QoS::ExactlyOnce, 1), Some(41), true, &mut out);
        assert!(
            publishes(&out).is_empty(),
            "nothing is sent before its packet id is stored"
        );
        match &out[..] {
            [Action::Enqueue {
                id: 41,
                held: true,
                qos: QoS::ExactlyOnce,
                ..
            }, Action::Sent {
                id: 41,
                packet_id,
                state: OutboundState::AwaitingPubRec,
                then: Some(Packet::Publish(_)),
            }] => assert_eq!(packet_id.get(), 1),
            other => panic!("{other:?}"),
        }
        out.clear();
        s.on_pubrec(pid(1), &mut out);
        assert!(
            matches!(
                &out[..],
                [Action::Sent {
                    state: OutboundState::AwaitingPubComp,
                    then: Some(Packet::PubRel(_)),
                    ..
                }]
            ),
            "{out:?}"
        );
        out.clear();
        s.on_pubcomp(pid(1), &mut out);
        assert!(
            matches!(&out[..], [Action::Dequeue { id: 41, size: 2 }]),
            "{out:?}"
        );
    }

    #[test]
    fn durable_qos1_is_sent_at_once_and_its_packet_id_written_when_the_client_leaves() {
        let mut s = SessionState::new(limits(10, 10), true);
        let mut out = Vec::new();
        s.attach(&mut out);
        s.deliver(msg(QoS::AtLeastOnce, 1), Some(7), true, &mut out);
        assert!(matches!(
            &out[..],
            [Action::Enqueue { held: true, .. }, Action::Send(_)]
        ));
        assert_eq!(publishes(&out), vec![(1, Some(1), false)]);
        out.clear();
        s.detach(&mut out);
        assert!(
            matches!(
                &out[..],
                [
                    Action::Sent {
                        id: 7,
                        state: OutboundState::AwaitingPubAck,
                        then: None,
                        ..
                    },
                    Action::Unhold { id: 7 }
                ]
            ),
            "{out:?}"
        );
    }

    #[test]
    fn durable_inbound_qos2_pubcomp_waits_for_the_release() {
        let mut s = SessionState::new(SessionLimits::default(), true);
        let mut out = Vec::new();
        assert!(s.on_inbound_qos2(pid(3), &mut out));
        assert!(matches!(
            &out[..],
            [Action::Inbound {
                awaiting: true,
                then: None,
                ..
            }]
        ));
        out.clear();
        s.on_pubrel(pid(3), &mut out);
        assert!(
            matches!(
                &out[..],
                [Action::Inbound {
                    awaiting: false,
                    then: Some(Packet::PubComp(_)),
                    ..
                }]
            ),
            "{out:?}"
        );
    }

    fn paged(id: MessageId, m: Message, sent: Option<(u16, OutboundState)>) -> Paged {
        Paged {
            id,
            message: m,
            sent: sent.map(|(p, s)| (pid(p), s)),
        }
    }

    /// A restored session holds nothing until its client returns; then it
    /// asks for its queue, and what had been sent goes back in flight and
    /// is resent with DUP set (PUBREL once PUBREC was seen) [MQTT-4.4.0-1].
    #[test]
    fn restore_pages_the_queue_in_and_resends_in_flight_with_dup() {
        let mut s = SessionState::restore(limits(10, 10), vec![], vec![pid(4)]);
        let mut out = Vec::new();
        s.attach(&mut out);
        assert!(matches!(&out[..], [Action::PageIn { max: 20 }]), "{out:?}");
        out.clear();
        s.paged(
            vec![
                paged(
                    1,
                    msg(QoS::ExactlyOnce, 1),
                    Some((9, OutboundState::AwaitingPubComp)),
                ),
                paged(
                    2,
                    msg(QoS::AtLeastOnce, 2),
                    Some((10, OutboundState::AwaitingPubAck)),
                ),
                paged(3, msg(QoS::AtLeastOnce, 3), None),
            ],
            false,
            &mut out,
        );
        assert_eq!(sent(&out)[0], Packet::PubRel(Ack::new(pid(9))));
        assert_eq!(
            publishes(&out),
            vec![(2, Some(10), true), (3, Some(1), false)]
        );
        out.clear();
        assert!(
            !s.on_inbound_qos2(pid(4), &mut out),
            "restored inbound id is still awaiting PUBREL"
        );
    }

    /// Beyond the window and what it may hold ahead (`HOLD_AHEAD`), a
    /// durable session's messages wait in the store only; they are paged in
    /// (`READ_AHEAD` at a time) once fewer than half a page are held, in
    /// order, and a page that comes back short leaves nothing pending.
    #[test]
    fn a_durable_queue_beyond_the_read_ahead_waits_in_the_store() {
        let mut s = SessionState::new(limits(1, 100_000), true);
        let mut out = Vec::new();
        s.attach(&mut out);
        let total = HOLD_AHEAD as u64 + 11;
        for id in 1..=total {
            s.deliver(msg(QoS::AtLeastOnce, id as u8), Some(id), true, &mut out);
        }
        let held: Vec<_> = out
            .iter()
            .filter_map(|a| match a {
                Action::Enqueue { id, held, .. } => Some((*id, *held)),
                _ => None,
            })
            .collect();
        assert_eq!(held.len() as u64, total);
        assert!(
            held[..=HOLD_AHEAD].iter().all(|(_, h)| *h),
            "1 in flight, the hold full"
        );
        assert!(held[HOLD_AHEAD + 1..].iter().all(|(_, h)| !*h));
        assert_eq!(s.queued_len(), HOLD_AHEAD);
        // The window drains: once fewer than half a page are held, a page
        // is asked for, and not before.
        let mut asked = None;
        for p in 1..=HOLD_AHEAD as u16 {
            out.clear();
            s.on_puback(pid(p), &mut out);
            if let Some(Action::PageIn { max }) =
                out.iter().find(|a| matches!(a, Action::PageIn { .. }))
            {
                asked = Some(*max);
                break;
            }
        }
        let Some(max) = asked else {
            panic!("no page asked for")
        };
        assert_eq!(s.queued_len(), READ_AHEAD / 2 - 1);
        assert!(max as usize >= 10);
        let page: Vec<_> = (HOLD_AHEAD as u64 + 2..=total)
            .map(|id| paged(id, msg(QoS::AtLeastOnce, id as u8), None))
            .collect();
        out.clear();
        s.paged(page, false, &mut out);
        let queued: Vec<_> = s.queued().filter_map(|q| q.id).collect();
        assert_eq!(queued.last(), Some(&total), "in order, after what was held");
        // Nothing more in the store: draining asks for nothing.
        loop {
            let Some(p) = s.inflight().next().map(|e| e.packet_id) else {
                break;
            };
            out.clear();
            s.on_puback(p, &mut out);
            assert!(!out.iter().any(|a| matches!(a, Action::PageIn { .. })));
        }
        assert_eq!(s.queued_len(), 0);
    }

    /// A durable session lets go of its queue when its client leaves; a
    /// delivery while away goes to the store only.
    #[test]
    fn a_durable_session_holds_nothing_while_its_client_is_away() {
        let mut s = SessionState::new(limits(2, 10), true);
        let mut out = Vec::new();
        s.attach(&mut out);
        for id in 1..=4 {
            s.deliver(msg(QoS::AtLeastOnce, id as u8), Some(id), true, &mut out);
        }
        out.clear();
        s.detach(&mut out);
        assert_eq!(s.inflight().count() + s.queued_len(), 0);
        assert_eq!(
            out.iter()
                .filter(|a| matches!(a, Action::Unhold { .. }))
                .count(),
            4
        );
        out.clear();
        s.deliver(msg(QoS::AtLeastOnce, 5), Some(5), true, &mut out);
        assert!(matches!(
            &out[..],
            [Action::Enqueue {
                id: 5,
                held: false,
                ..
            }]
        ));
        out.clear();
        s.attach(&mut out);
        assert!(matches!(&out[..], [Action::PageIn { .. }]));
    }

    /// QoS 1/2 messages in flight are bounded in bytes too: with
    /// `max_inflight_bytes` of 250, two 100-byte messages go out and the
    /// third waits in the queue until a PUBACK frees room; a single message
    /// larger than the bound still goes out when nothing is in flight.
    #[test]
    fn the_window_is_bounded_in_bytes_too() {
        let mut l = limits(10, 10);
        l.max_inflight_bytes = 250;
        let mut s = SessionState::new(l, false);
        let mut out = Vec::new();
        s.attach(&mut out);
        let big = |n: u8, len: usize| Message {
            payload: Bytes::from(vec![n; len]),
            ..msg(QoS::AtLeastOnce, n)
        };
        for n in 0..3 {
            s.deliver(big(n, 99), None, true, &mut out);
        }
        assert_eq!(publishes(&out).len(), 2, "100 + 100 bytes in flight");
        assert_eq!(s.queued_len(), 1);
        out.clear();
        assert!(s.on_puback(pid(1), &mut out));
        assert_eq!(publishes(&out), vec![(2, Some(3), false)]);
        let mut s = SessionState::new(l, false);
        let mut out = Vec::new();
        s.attach(&mut out);
        s.deliver(big(7, 1000), None, true, &mut out);
        assert_eq!(publishes(&out).len(), 1, "one message of any size");
    }
}
