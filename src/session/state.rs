//! The session state machine. Methods take an event and push [`Action`]s
//! into `out`: packets to send, and, for a durable (persistent) session,
//! rows to write or delete before a packet may go out. They never block and
//! never fail on client input that the codec already validated.
//!
//! Durability rules (what must be committed before what is sent):
//! - a QoS 2 PUBLISH with its packet id, before it is first sent: after a
//!   crash it is resent with the same id, never as a new message;
//! - the PUBREC → awaiting-PUBCOMP step, before PUBREL is sent: after a
//!   crash PUBREL is resent, not the PUBLISH;
//! - an inbound QoS 2 id's removal, before PUBCOMP is sent;
//! - QoS 1 rows are written but nothing waits for them here (a QoS 1
//!   duplicate after a crash is allowed); the publisher's PUBACK waits, in
//!   the broker, for the row holding the message.

use super::map::SharedSeedMap;
use super::subscriptions::{SubscribeOutcome, Subscriptions};
use crate::config::LimitsConfig;
use crate::message::Message;
use crate::protocol::{Packet, PacketId, Publish, QoS, SubscribeTopic, TopicFilter};
use std::collections::VecDeque;

/// Identifies a message row of a durable session in the store; allocated by
/// the broker, increasing, so it also records arrival order.
pub type MessageId = u64;

/// Bounds of one session, from `[session]` in the config. Every session
/// holds a copy: `u32`s, not `usize`s, keep sessions in a smaller
/// allocation (the config clamps larger values).
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Outbound QoS 1/2 messages sent and not yet acknowledged.
    pub max_inflight: u32,
    /// The same bound in bytes (topic + payload); one message is let in
    /// flight whatever its size. Keeps what a client that does not read
    /// holds in its outbound queue near `limits.max_outbound_bytes`, not at
    /// `max_inflight` × the packet size.
    pub max_inflight_bytes: u32,
    /// Messages waiting for a free in-flight slot or for the client to return.
    pub max_queued_messages: u32,
    /// The same bound in bytes (topic + payload).
    pub max_queued_bytes: u32,
    /// Whether QoS 0 messages are queued for an offline persistent session.
    pub queue_qos0: bool,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_inflight: 128,
            max_inflight_bytes: 1 << 20,
            max_queued_messages: 10000,
            max_queued_bytes: 16 << 20,
            queue_qos0: false,
        }
    }
}

/// Where an outbound message is (section 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundState {
    /// Not sent yet (client offline, or the in-flight window is full).
    Queued,
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitingPubAck,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitingPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitingPubComp,
}

/// An outbound QoS 1/2 message in the in-flight window.
#[derive(Debug, Clone)]
pub struct Inflight {
    /// The row holding it, for a durable session.
    pub id: Option<MessageId>,
    pub packet_id: PacketId,
    pub message: Message,
    pub state: OutboundState,
}

/// A message waiting for the window or for the client.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: Option<MessageId>,
    pub message: Message,
}

/// A row of a durable session, as the store writes it.
#[derive(Debug, Clone)]
pub enum Record {
    Outbound {
        id: MessageId,
        state: OutboundState,
        packet_id: Option<PacketId>,
        message: Message,
    },
    /// An inbound QoS 2 packet id routed and awaiting PUBREL.
    InboundAwaitingRel { id: MessageId, packet_id: PacketId },
}

impl Record {
    /// The row's id.
    pub fn id(&self) -> MessageId {
        match self {
            Record::Outbound { id, .. } | Record::InboundAwaitingRel { id, .. } => *id,
        }
    }
}

/// What the session actor does for an event, in order.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send this packet to the client now.
    Send(Packet),
    /// Write this row (a new one when `new`); if `then` is set, send that
    /// packet only once the write has committed.
    Persist {
        record: Record,
        new: bool,
        then: Option<Packet>,
    },
    /// Delete this row; if `then` is set, send that packet once the delete
    /// has committed.
    Forget { id: MessageId, then: Option<Packet> },
}

/// What became of one message handed to [`SessionState::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverOutcome {
    Sent,
    Queued,
    /// QoS 0 to a client whose outbound buffer is full: dropped, as QoS 0 allows.
    DroppedSlowClient,
    /// The queue is at `max_queued_messages` or `max_queued_bytes`.
    DroppedQueueFull,
    /// QoS 0 for an offline session with `queue_qos0` off.
    DroppedOffline,
}

pub struct SessionState {
    limits: SessionLimits,
    subscriptions: Subscriptions,
    /// Outbound QoS 1/2 messages in the order they were sent.
    inflight: VecDeque<Inflight>,
    /// Bytes of the messages in `inflight`.
    inflight_bytes: usize,
    next_packet_id: PacketId,
    /// Messages at their delivery QoS, oldest first.
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    /// Inbound QoS 2 packet ids whose PUBLISH was routed and whose PUBREL has
    /// not arrived (with their row, if durable): a resent PUBLISH with one of
    /// these ids is not routed again (section 4.3.3, method B).
    inbound_awaiting_rel: SharedSeedMap<PacketId, Option<MessageId>>,
    online: bool,
}

impl SessionState {
    pub fn new(limits: SessionLimits) -> SessionState {
        SessionState {
            limits,
            subscriptions: Subscriptions::default(),
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            next_packet_id: PacketId::new(1).expect("1 is non-zero"),
            queue: VecDeque::new(),
            queued_bytes: 0,
            inbound_awaiting_rel: SharedSeedMap::default(),
            online: false,
        }
    }

    /// A durable session as the store kept it: `messages` in arrival order
    /// (queued ones are queued again, in-flight ones go back in flight with
    /// their packet ids), `inbound` the QoS 2 ids awaiting PUBREL.
    pub fn restore(
        limits: SessionLimits,
        subscriptions: Vec<(TopicFilter, QoS)>,
        messages: Vec<(MessageId, OutboundState, Option<PacketId>, Message)>,
        inbound: Vec<(PacketId, MessageId)>,
    ) -> SessionState {
        let mut s = SessionState::new(limits);
        s.subscriptions = Subscriptions::restore(subscriptions);
        let mut highest = 0u16;
        for (id, state, packet_id, message) in messages {
            match (state, packet_id) {
                (OutboundState::Queued, _) | (_, None) => {
                    s.queued_bytes += message.size();
                    s.queue.push_back(Queued {
                        id: Some(id),
                        message,
                    });
                }
                (state, Some(packet_id)) => {
                    highest = highest.max(packet_id.get());
                    s.inflight_bytes += message.size();
                    s.inflight.push_back(Inflight {
                        id: Some(id),
                        packet_id,
                        message,
                        state,
                    });
                }
            }
        }
        if let Some(p) = PacketId::new(highest) {
            s.next_packet_id = p.next();
        }
        s.inbound_awaiting_rel = inbound.into_iter().map(|(p, id)| (p, Some(id))).collect();
        s
    }

    pub fn is_online(&self) -> bool {
        self.online
    }

    pub fn subscriptions(&self) -> impl Iterator<Item = (&TopicFilter, QoS)> {
        self.subscriptions.iter()
    }

    pub fn inflight(&self) -> impl Iterator<Item = &Inflight> {
        self.inflight.iter()
    }

    pub fn queued(&self) -> impl Iterator<Item = &Queued> {
        self.queue.iter()
    }

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
        limits: &LimitsConfig,
        allowed_by_acl: impl Fn(&TopicFilter) -> bool,
    ) -> SubscribeOutcome {
        self.subscriptions.subscribe(topics, limits, allowed_by_acl)
    }

    /// Removes a subscription; false if there was none.
    pub fn unsubscribe(&mut self, filter: &TopicFilter) -> bool {
        self.subscriptions.remove(filter)
    }

    /// The client connected: resend what was in flight with DUP set
    /// [MQTT-4.4.0-1], PUBREL for QoS 2 messages already received, then
    /// queued messages as the window allows.
    pub fn attach(&mut self, out: &mut Vec<Action>) {
        self.online = true;
        for entry in &self.inflight {
            out.push(Action::Send(match entry.state {
                OutboundState::AwaitingPubComp => Packet::PubRel(entry.packet_id),
                _ => Packet::Publish(publish(entry.message.clone(), Some(entry.packet_id), true)),
            }));
        }
        self.fill_window(out);
    }

    /// Drops the queued and in-flight outbound messages whose topic
    /// `readable` refuses (the ACL, checked again when a client takes up a
    /// stored session), forgetting their rows. Returns how many it dropped.
    pub fn drop_unreadable(
        &mut self,
        readable: impl Fn(&Message) -> bool,
        out: &mut Vec<Action>,
    ) -> usize {
        let mut dropped = 0;
        let mut forget = |id: Option<MessageId>, out: &mut Vec<Action>| {
            dropped += 1;
            if let Some(id) = id {
                out.push(Action::Forget { id, then: None });
            }
        };
        let mut kept = std::collections::VecDeque::with_capacity(self.queue.len());
        for q in self.queue.drain(..) {
            if readable(&q.message) {
                kept.push_back(q);
            } else {
                self.queued_bytes -= q.message.size();
                forget(q.id, out);
            }
        }
        self.queue = kept;
        let mut kept = std::collections::VecDeque::with_capacity(self.inflight.len());
        for e in self.inflight.drain(..) {
            if readable(&e.message) {
                kept.push_back(e);
            } else {
                self.inflight_bytes -= e.message.size();
                forget(e.id, out);
            }
        }
        self.inflight = kept;
        dropped
    }

    pub fn detach(&mut self) {
        self.online = false;
    }

    /// A message routed to this session. `qos` is already min(published,
    /// granted); `id` is its row for a durable session (QoS 1/2 only);
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
                out.push(Action::Send(Packet::Publish(publish(message, None, false))));
                return DeliverOutcome::Sent;
            }
            if !self.limits.queue_qos0 {
                return DeliverOutcome::DroppedOffline;
            }
            // QoS 0 is queued in memory only.
            return self.enqueue(Queued { id: None, message }, out);
        }
        if self.online && self.queue.is_empty() && self.window_has_room(&message) {
            self.send_inflight(Queued { id, message }, true, out);
            return DeliverOutcome::Sent;
        }
        self.enqueue(Queued { id, message }, out)
    }

    fn enqueue(&mut self, queued: Queued, out: &mut Vec<Action>) -> DeliverOutcome {
        let size = queued.message.size();
        if self.queue.len() >= self.limits.max_queued_messages as usize
            || self.queued_bytes + size > self.limits.max_queued_bytes as usize
        {
            return DeliverOutcome::DroppedQueueFull;
        }
        if let Some(id) = queued.id {
            let record = Record::Outbound {
                id,
                state: OutboundState::Queued,
                packet_id: None,
                message: queued.message.clone(),
            };
            out.push(Action::Persist {
                record,
                new: true,
                then: None,
            });
        }
        self.queued_bytes += size;
        self.queue.push_back(queued);
        DeliverOutcome::Queued
    }

    /// Puts a message in flight. `new`: its row does not exist yet.
    fn send_inflight(&mut self, queued: Queued, new: bool, out: &mut Vec<Action>) {
        let Queued { id, message } = queued;
        let packet_id = self.allocate_packet_id();
        let packet = Packet::Publish(publish(message.clone(), Some(packet_id), false));
        let state = match message.qos {
            QoS::ExactlyOnce => OutboundState::AwaitingPubRec,
            _ => OutboundState::AwaitingPubAck,
        };
        let record = |id| Record::Outbound {
            id,
            state,
            packet_id: Some(packet_id),
            message: message.clone(),
        };
        match id {
            // QoS 2: the id must be durable before the client can see it.
            Some(id) if state == OutboundState::AwaitingPubRec => {
                out.push(Action::Persist {
                    record: record(id),
                    new,
                    then: Some(packet),
                });
            }
            // QoS 1: write the row if it is new; a stale state is harmless.
            Some(id) => {
                if new {
                    out.push(Action::Persist {
                        record: record(id),
                        new,
                        then: None,
                    });
                }
                out.push(Action::Send(packet));
            }
            None => out.push(Action::Send(packet)),
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
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = id.next();
            if !self.inflight.iter().any(|e| e.packet_id == id) {
                return id;
            }
        }
    }

    /// Whether `message` may go in flight now: the window has a free slot,
    /// and room for its bytes (or nothing in flight: one message of any
    /// size always may).
    fn window_has_room(&self, message: &Message) -> bool {
        self.inflight.len() < self.limits.max_inflight as usize
            && (self.inflight.is_empty()
                || self.inflight_bytes + message.size() <= self.limits.max_inflight_bytes as usize)
    }

    /// Moves queued messages into the in-flight window while it has room.
    fn fill_window(&mut self, out: &mut Vec<Action>) {
        while self.online && self.inflight.len() < self.limits.max_inflight as usize {
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
            if queued.message.qos == QoS::AtMostOnce {
                out.push(Action::Send(Packet::Publish(publish(
                    queued.message,
                    None,
                    false,
                ))));
            } else {
                self.send_inflight(queued, false, out);
            }
        }
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

    /// PUBACK for an outbound QoS 1 message; false if no such message.
    pub fn on_puback(&mut self, packet_id: PacketId, out: &mut Vec<Action>) -> bool {
        let Some(entry) = self.take(packet_id, OutboundState::AwaitingPubAck) else {
            return false;
        };
        if let Some(id) = entry.id {
            out.push(Action::Forget { id, then: None });
        }
        self.fill_window(out);
        true
    }

    /// PUBREC for an outbound QoS 2 message: answer PUBREL [MQTT-4.3.3-1],
    /// after recording the step for a durable session.
    pub fn on_pubrec(&mut self, packet_id: PacketId, out: &mut Vec<Action>) -> bool {
        let Some(entry) = self.inflight.iter_mut().find(|e| e.packet_id == packet_id) else {
            return false;
        };
        if entry.state == OutboundState::AwaitingPubAck {
            return false;
        }
        entry.state = OutboundState::AwaitingPubComp;
        let rel = Packet::PubRel(packet_id);
        match entry.id {
            Some(id) => {
                let record = Record::Outbound {
                    id,
                    state: OutboundState::AwaitingPubComp,
                    packet_id: Some(packet_id),
                    message: entry.message.clone(),
                };
                out.push(Action::Persist {
                    record,
                    new: false,
                    then: Some(rel),
                });
            }
            None => out.push(Action::Send(rel)),
        }
        true
    }

    /// PUBCOMP ends an outbound QoS 2 handshake.
    pub fn on_pubcomp(&mut self, packet_id: PacketId, out: &mut Vec<Action>) -> bool {
        let Some(entry) = self.take(packet_id, OutboundState::AwaitingPubComp) else {
            return false;
        };
        if let Some(id) = entry.id {
            out.push(Action::Forget { id, then: None });
        }
        self.fill_window(out);
        true
    }

    /// An inbound QoS 2 PUBLISH: true if it is new and must be routed, false
    /// if it repeats one still awaiting PUBREL. `id` is the row to record it
    /// in for a durable session. The caller answers PUBREC either way
    /// [MQTT-4.3.3-2].
    pub fn on_inbound_qos2(
        &mut self,
        packet_id: PacketId,
        id: Option<MessageId>,
        out: &mut Vec<Action>,
    ) -> bool {
        if self.inbound_awaiting_rel.contains_key(&packet_id) {
            return false;
        }
        self.inbound_awaiting_rel.insert(packet_id, id);
        if let Some(id) = id {
            out.push(Action::Persist {
                record: Record::InboundAwaitingRel { id, packet_id },
                new: true,
                then: None,
            });
        }
        true
    }

    /// Forgets an inbound QoS 2 id whose PUBREC was never sent (the commit
    /// of the id and its copies failed), so that the client's resend is
    /// taken as a new PUBLISH. Its row is deleted in case it was written.
    pub fn forget_inbound_qos2(&mut self, packet_id: PacketId, out: &mut Vec<Action>) {
        if let Some(Some(id)) = self.inbound_awaiting_rel.remove(&packet_id) {
            out.push(Action::Forget { id, then: None });
        }
    }

    /// PUBREL releases an inbound QoS 2 id; PUBCOMP is sent whether or not
    /// the id is known, so a client retrying after a lost PUBCOMP finishes.
    pub fn on_pubrel(&mut self, packet_id: PacketId, out: &mut Vec<Action>) {
        let comp = Packet::PubComp(packet_id);
        match self.inbound_awaiting_rel.remove(&packet_id) {
            Some(Some(id)) => out.push(Action::Forget {
                id,
                then: Some(comp),
            }),
            _ => out.push(Action::Send(comp)),
        }
    }

    /// The ids of every row this session holds: queued, in flight, and
    /// inbound QoS 2 ids awaiting PUBREL (what deleting it must delete).
    pub fn row_ids(&self) -> Vec<MessageId> {
        let queued = self.queue.iter().filter_map(|q| q.id);
        let inflight = self.inflight.iter().filter_map(|e| e.id);
        let inbound = self.inbound_awaiting_rel.values().filter_map(|id| *id);
        queued.chain(inflight).chain(inbound).collect()
    }

    pub fn inbound_awaiting_rel(&self) -> impl Iterator<Item = (PacketId, Option<MessageId>)> + '_ {
        self.inbound_awaiting_rel.iter().map(|(p, id)| (*p, *id))
    }
}

/// The PUBLISH of `message`, taking its buffers. A QoS 0 message is kept
/// by no one once sent, so it is passed in, not copied: each copy is an
/// atomic count on the buffer that every copy of a fan-out shares.
fn publish(message: Message, packet_id: Option<PacketId>, dup: bool) -> Publish {
    Publish {
        dup,
        qos: message.qos,
        retain: message.retain,
        topic: message.topic,
        packet_id,
        payload: message.payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TopicName;
    use bytes::Bytes;

    fn msg(qos: QoS, n: u8) -> Message {
        Message {
            topic: TopicName::new("t".to_string()).unwrap(),
            payload: Bytes::from(vec![n]),
            qos,
            retain: false,
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
        let mut s = SessionState::new(limits(2, 10));
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

    #[test]
    fn offline_queue_then_resend_with_dup_on_reconnect() {
        let mut s = SessionState::new(limits(1, 10));
        let mut out = Vec::new();
        s.attach(&mut out);
        s.deliver(msg(QoS::ExactlyOnce, 7), None, true, &mut out);
        s.detach();
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
        assert_eq!(sent(&out), vec![Packet::PubRel(pid(1))]);
        out.clear();
        s.detach();
        s.attach(&mut out);
        assert_eq!(
            sent(&out),
            vec![Packet::PubRel(pid(1))],
            "PUBREL resent after reconnect"
        );
        out.clear();
        s.on_pubcomp(pid(1), &mut out);
        assert_eq!(publishes(&out), vec![(8, Some(2), false)]);
    }

    #[test]
    fn queue_bounds_drop_and_report() {
        let mut s = SessionState::new(limits(1, 2));
        let mut out = Vec::new();
        for n in 0..2 {
            assert_eq!(
                s.deliver(msg(QoS::AtLeastOnce, n), None, true, &mut out),
                DeliverOutcome::Queued
            );
        }
        assert_eq!(
            s.deliver(msg(QoS::AtLeastOnce, 2), Some(9), true, &mut out),
            DeliverOutcome::DroppedQueueFull
        );
        assert!(out.is_empty(), "a dropped message writes no row");
    }

    #[test]
    fn qos0_to_full_outbound_buffer_is_dropped() {
        let mut s = SessionState::new(limits(1, 2));
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
        let mut s = SessionState::new(SessionLimits::default());
        let mut out = Vec::new();
        assert!(s.on_inbound_qos2(pid(5), None, &mut out));
        assert!(
            !s.on_inbound_qos2(pid(5), None, &mut out),
            "a resent PUBLISH is not routed twice"
        );
        s.on_pubrel(pid(5), &mut out);
        assert_eq!(sent(&out), vec![Packet::PubComp(pid(5))]);
        assert!(
            s.on_inbound_qos2(pid(5), None, &mut out),
            "after PUBREL the id is free again"
        );
    }

    #[test]
    fn packet_ids_skip_ids_in_flight() {
        let mut s = SessionState::new(limits(3, 10));
        s.next_packet_id = pid(u16::MAX);
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
    fn durable_qos2_is_persisted_before_it_is_sent_and_before_pubrel() {
        let mut s = SessionState::new(limits(10, 10));
        let mut out = Vec::new();
        s.attach(&mut out);
        s.deliver(msg(QoS::ExactlyOnce, 1), Some(41), true, &mut out);
        assert!(
            publishes(&out).is_empty(),
            "nothing is sent before the row commits"
        );
        match &out[..] {
            [Action::Persist {
                record:
                    Record::Outbound {
                        id: 41,
                        state,
                        packet_id: Some(p),
                        ..
                    },
                new: true,
                then: Some(Packet::Publish(_)),
            }] => {
                assert_eq!((*state, p.get()), (OutboundState::AwaitingPubRec, 1));
            }
            other => panic!("{other:?}"),
        }
        out.clear();
        s.on_pubrec(pid(1), &mut out);
        assert!(
            matches!(
                &out[..],
                [Action::Persist {
                    record: Record::Outbound {
                        state: OutboundState::AwaitingPubComp,
                        ..
                    },
                    new: false,
                    then: Some(Packet::PubRel(_))
                }]
            ),
            "{out:?}"
        );
        out.clear();
        s.on_pubcomp(pid(1), &mut out);
        assert!(
            matches!(&out[..], [Action::Forget { id: 41, then: None }]),
            "{out:?}"
        );
    }

    #[test]
    fn durable_qos1_is_sent_at_once_and_its_row_written() {
        let mut s = SessionState::new(limits(10, 10));
        let mut out = Vec::new();
        s.attach(&mut out);
        s.deliver(msg(QoS::AtLeastOnce, 1), Some(7), true, &mut out);
        assert!(matches!(
            &out[0],
            Action::Persist {
                new: true,
                then: None,
                ..
            }
        ));
        assert_eq!(publishes(&out), vec![(1, Some(1), false)]);
    }

    #[test]
    fn durable_inbound_qos2_pubcomp_waits_for_the_delete() {
        let mut s = SessionState::new(SessionLimits::default());
        let mut out = Vec::new();
        assert!(s.on_inbound_qos2(pid(3), Some(12), &mut out));
        assert!(matches!(
            &out[..],
            [Action::Persist {
                record: Record::InboundAwaitingRel { id: 12, .. },
                new: true,
                ..
            }]
        ));
        out.clear();
        s.on_pubrel(pid(3), &mut out);
        assert!(
            matches!(
                &out[..],
                [Action::Forget {
                    id: 12,
                    then: Some(Packet::PubComp(_))
                }]
            ),
            "{out:?}"
        );
    }

    #[test]
    fn restore_requeues_and_resends_in_flight_with_dup() {
        let messages = vec![
            (
                1,
                OutboundState::AwaitingPubComp,
                Some(pid(9)),
                msg(QoS::ExactlyOnce, 1),
            ),
            (
                2,
                OutboundState::AwaitingPubAck,
                Some(pid(10)),
                msg(QoS::AtLeastOnce, 2),
            ),
            (3, OutboundState::Queued, None, msg(QoS::AtLeastOnce, 3)),
        ];
        let mut s = SessionState::restore(limits(10, 10), vec![], messages, vec![(pid(4), 5)]);
        let mut out = Vec::new();
        s.attach(&mut out);
        let packets = sent(&out);
        assert_eq!(packets[0], Packet::PubRel(pid(9)));
        assert_eq!(
            publishes(&out),
            vec![(2, Some(10), true), (3, Some(11), false)]
        );
        out.clear();
        assert!(
            !s.on_inbound_qos2(pid(4), Some(99), &mut out),
            "restored inbound id is still awaiting PUBREL"
        );
    }

    /// QoS 1/2 messages in flight are bounded in bytes too: with
    /// `max_inflight_bytes` of 250, two 100-byte messages go out and the
    /// third waits in the queue until a PUBACK frees room; a single message
    /// larger than the bound still goes out when nothing is in flight.
    #[test]
    fn the_window_is_bounded_in_bytes_too() {
        let mut l = limits(10, 10);
        l.max_inflight_bytes = 250;
        let mut s = SessionState::new(l);
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
        let mut s = SessionState::new(l);
        let mut out = Vec::new();
        s.attach(&mut out);
        s.deliver(big(7, 1000), None, true, &mut out);
        assert_eq!(publishes(&out).len(), 1, "one message of any size");
    }
}
