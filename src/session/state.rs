//! The session state machine. Methods take an event and push the packets to
//! send into `out`; they never block and never fail on client input that the
//! codec already validated.

use super::Message;
use crate::protocol::{Packet, PacketId, Publish, QoS, TopicFilter};
use ahash::{AHashMap, AHashSet};
use std::collections::VecDeque;

/// Bounds of one session, from `[session]` in the config.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Outbound QoS 1/2 messages sent and not yet acknowledged.
    pub max_inflight: usize,
    /// Messages waiting for a free in-flight slot or for the client to return.
    pub max_queued_messages: usize,
    /// The same bound in bytes (topic + payload).
    pub max_queued_bytes: usize,
    /// Whether QoS 0 messages are queued for an offline persistent session.
    pub queue_qos0: bool,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits { max_inflight: 128, max_queued_messages: 10000, max_queued_bytes: 16 << 20, queue_qos0: false }
    }
}

/// Where an outbound QoS 1/2 message is in its handshake (section 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflightState {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitingPubAck,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitingPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitingPubComp,
}

#[derive(Debug, Clone)]
pub struct Inflight {
    pub packet_id: PacketId,
    pub message: Message,
    pub state: InflightState,
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
    subscriptions: AHashMap<TopicFilter, QoS>,
    /// Outbound QoS 1/2 messages in the order they were sent.
    inflight: VecDeque<Inflight>,
    next_packet_id: PacketId,
    /// Messages at their delivery QoS, oldest first.
    queue: VecDeque<Message>,
    queued_bytes: usize,
    /// Inbound QoS 2 packet ids whose PUBLISH was routed and whose PUBREL has
    /// not arrived: a resent PUBLISH with one of these ids is not routed
    /// again (section 4.3.3, method B).
    inbound_awaiting_rel: AHashSet<PacketId>,
    online: bool,
}

impl SessionState {
    pub fn new(limits: SessionLimits) -> SessionState {
        SessionState {
            limits,
            subscriptions: AHashMap::new(),
            inflight: VecDeque::new(),
            next_packet_id: PacketId::new(1).expect("1 is non-zero"),
            queue: VecDeque::new(),
            queued_bytes: 0,
            inbound_awaiting_rel: AHashSet::new(),
            online: false,
        }
    }

    pub fn is_online(&self) -> bool {
        self.online
    }

    pub fn subscriptions(&self) -> impl Iterator<Item = (&TopicFilter, QoS)> {
        self.subscriptions.iter().map(|(f, q)| (f, *q))
    }

    pub fn inflight(&self) -> impl Iterator<Item = &Inflight> {
        self.inflight.iter()
    }

    pub fn queued(&self) -> impl Iterator<Item = &Message> {
        self.queue.iter()
    }

    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Adds or replaces a subscription [MQTT-3.8.4-3]; returns the previous QoS.
    pub fn subscribe(&mut self, filter: TopicFilter, qos: QoS) -> Option<QoS> {
        self.subscriptions.insert(filter, qos)
    }

    pub fn unsubscribe(&mut self, filter: &TopicFilter) -> bool {
        self.subscriptions.remove(filter).is_some()
    }

    /// The client connected: resend what was in flight with DUP set
    /// [MQTT-4.4.0-1], PUBREL for QoS 2 messages already received, then
    /// queued messages as the window allows.
    pub fn attach(&mut self, out: &mut Vec<Packet>) {
        self.online = true;
        for entry in &self.inflight {
            out.push(match entry.state {
                InflightState::AwaitingPubComp => Packet::PubRel(entry.packet_id),
                _ => Packet::Publish(publish(&entry.message, Some(entry.packet_id), true)),
            });
        }
        self.fill_window(out);
    }

    pub fn detach(&mut self) {
        self.online = false;
    }

    /// A message routed to this session. `qos` is already min(published,
    /// granted); `writable` is false when the client's outbound buffer is full.
    pub fn deliver(&mut self, message: Message, writable: bool, out: &mut Vec<Packet>) -> DeliverOutcome {
        if message.qos == QoS::AtMostOnce {
            if self.online {
                if !writable {
                    return DeliverOutcome::DroppedSlowClient;
                }
                out.push(Packet::Publish(publish(&message, None, false)));
                return DeliverOutcome::Sent;
            }
            if !self.limits.queue_qos0 {
                return DeliverOutcome::DroppedOffline;
            }
            return self.enqueue(message);
        }
        if self.online && self.queue.is_empty() && self.inflight.len() < self.limits.max_inflight {
            self.send_inflight(message, out);
            return DeliverOutcome::Sent;
        }
        self.enqueue(message)
    }

    fn enqueue(&mut self, message: Message) -> DeliverOutcome {
        let size = message.size();
        if self.queue.len() >= self.limits.max_queued_messages
            || self.queued_bytes + size > self.limits.max_queued_bytes
        {
            return DeliverOutcome::DroppedQueueFull;
        }
        self.queued_bytes += size;
        self.queue.push_back(message);
        DeliverOutcome::Queued
    }

    fn send_inflight(&mut self, message: Message, out: &mut Vec<Packet>) {
        let packet_id = self.allocate_packet_id();
        out.push(Packet::Publish(publish(&message, Some(packet_id), false)));
        let state = match message.qos {
            QoS::ExactlyOnce => InflightState::AwaitingPubRec,
            _ => InflightState::AwaitingPubAck,
        };
        self.inflight.push_back(Inflight { packet_id, message, state });
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

    /// Moves queued messages into the in-flight window while it has room.
    fn fill_window(&mut self, out: &mut Vec<Packet>) {
        while self.online && self.inflight.len() < self.limits.max_inflight {
            let Some(message) = self.queue.pop_front() else { break };
            self.queued_bytes -= message.size();
            if message.qos == QoS::AtMostOnce {
                out.push(Packet::Publish(publish(&message, None, false)));
            } else {
                self.send_inflight(message, out);
            }
        }
    }

    fn position(&self, id: PacketId, state: InflightState) -> Option<usize> {
        self.inflight.iter().position(|e| e.packet_id == id && e.state == state)
    }

    /// PUBACK for an outbound QoS 1 message; false if no such message.
    pub fn on_puback(&mut self, id: PacketId, out: &mut Vec<Packet>) -> bool {
        let Some(i) = self.position(id, InflightState::AwaitingPubAck) else { return false };
        self.inflight.remove(i);
        self.fill_window(out);
        true
    }

    /// PUBREC for an outbound QoS 2 message: answer PUBREL [MQTT-4.3.3-1].
    pub fn on_pubrec(&mut self, id: PacketId, out: &mut Vec<Packet>) -> bool {
        let known = match self.inflight.iter_mut().find(|e| e.packet_id == id) {
            Some(e) if e.state != InflightState::AwaitingPubAck => {
                e.state = InflightState::AwaitingPubComp;
                true
            }
            _ => false,
        };
        if known {
            out.push(Packet::PubRel(id));
        }
        known
    }

    /// PUBCOMP ends an outbound QoS 2 handshake.
    pub fn on_pubcomp(&mut self, id: PacketId, out: &mut Vec<Packet>) -> bool {
        let Some(i) = self.position(id, InflightState::AwaitingPubComp) else { return false };
        self.inflight.remove(i);
        self.fill_window(out);
        true
    }

    /// An inbound QoS 2 PUBLISH: true if it is new and must be routed, false
    /// if it repeats one still awaiting PUBREL. Either way the caller answers
    /// PUBREC [MQTT-4.3.3-2].
    pub fn on_inbound_qos2(&mut self, id: PacketId) -> bool {
        self.inbound_awaiting_rel.insert(id)
    }

    /// PUBREL releases an inbound QoS 2 id; PUBCOMP is sent whether or not
    /// the id is known, so a client retrying after a lost PUBCOMP finishes.
    pub fn on_pubrel(&mut self, id: PacketId, out: &mut Vec<Packet>) {
        self.inbound_awaiting_rel.remove(&id);
        out.push(Packet::PubComp(id));
    }

    pub fn inbound_awaiting_rel(&self) -> impl Iterator<Item = PacketId> + '_ {
        self.inbound_awaiting_rel.iter().copied()
    }
}

fn publish(message: &Message, packet_id: Option<PacketId>, dup: bool) -> Publish {
    Publish {
        dup,
        qos: message.qos,
        retain: message.retain,
        topic: message.topic.clone(),
        packet_id,
        payload: message.payload.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TopicName;
    use bytes::Bytes;

    fn msg(qos: QoS, n: u8) -> Message {
        Message { topic: TopicName::new("t".to_string()).unwrap(), payload: Bytes::from(vec![n]), qos, retain: false }
    }

    fn limits(max_inflight: usize, max_queued: usize) -> SessionLimits {
        SessionLimits { max_inflight, max_queued_messages: max_queued, ..SessionLimits::default() }
    }

    fn publishes(out: &[Packet]) -> Vec<(u8, Option<u16>, bool)> {
        out.iter()
            .filter_map(|p| match p {
                Packet::Publish(p) => Some((p.payload[0], p.packet_id.map(|i| i.get()), p.dup)),
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
            s.deliver(msg(QoS::AtLeastOnce, n), true, &mut out);
        }
        assert_eq!(publishes(&out), vec![(0, Some(1), false), (1, Some(2), false)]);
        assert_eq!(s.queued_len(), 2);
        out.clear();
        assert!(s.on_puback(PacketId::new(1).unwrap(), &mut out));
        assert_eq!(publishes(&out), vec![(2, Some(3), false)]);
        assert!(!s.on_puback(PacketId::new(1).unwrap(), &mut out), "a second PUBACK is unknown");
    }

    #[test]
    fn offline_queue_then_resend_with_dup_on_reconnect() {
        let mut s = SessionState::new(limits(1, 10));
        let mut out = Vec::new();
        s.attach(&mut out);
        s.deliver(msg(QoS::ExactlyOnce, 7), true, &mut out);
        s.detach();
        assert_eq!(s.deliver(msg(QoS::AtLeastOnce, 8), true, &mut out), DeliverOutcome::Queued);
        assert_eq!(s.deliver(msg(QoS::AtMostOnce, 9), true, &mut out), DeliverOutcome::DroppedOffline);
        out.clear();
        s.attach(&mut out);
        assert_eq!(publishes(&out), vec![(7, Some(1), true)], "in-flight resent with DUP=1, window full");
        out.clear();
        s.on_pubrec(PacketId::new(1).unwrap(), &mut out);
        assert_eq!(out, vec![Packet::PubRel(PacketId::new(1).unwrap())]);
        out.clear();
        s.detach();
        s.attach(&mut out);
        assert_eq!(out, vec![Packet::PubRel(PacketId::new(1).unwrap())], "PUBREL resent after reconnect");
        out.clear();
        s.on_pubcomp(PacketId::new(1).unwrap(), &mut out);
        assert_eq!(publishes(&out), vec![(8, Some(2), false)]);
    }

    #[test]
    fn queue_bounds_drop_and_report() {
        let mut s = SessionState::new(limits(1, 2));
        let mut out = Vec::new();
        for n in 0..2 {
            assert_eq!(s.deliver(msg(QoS::AtLeastOnce, n), true, &mut out), DeliverOutcome::Queued);
        }
        assert_eq!(s.deliver(msg(QoS::AtLeastOnce, 2), true, &mut out), DeliverOutcome::DroppedQueueFull);
    }

    #[test]
    fn qos0_to_full_outbound_buffer_is_dropped() {
        let mut s = SessionState::new(limits(1, 2));
        let mut out = Vec::new();
        s.attach(&mut out);
        assert_eq!(s.deliver(msg(QoS::AtMostOnce, 0), false, &mut out), DeliverOutcome::DroppedSlowClient);
        assert!(out.is_empty());
    }

    #[test]
    fn inbound_qos2_is_routed_once_until_pubrel() {
        let mut s = SessionState::new(SessionLimits::default());
        let id = PacketId::new(5).unwrap();
        assert!(s.on_inbound_qos2(id));
        assert!(!s.on_inbound_qos2(id), "a resent PUBLISH is not routed twice");
        let mut out = Vec::new();
        s.on_pubrel(id, &mut out);
        assert_eq!(out, vec![Packet::PubComp(id)]);
        assert!(s.on_inbound_qos2(id), "after PUBREL the id is free again");
    }

    #[test]
    fn packet_ids_skip_ids_in_flight() {
        let mut s = SessionState::new(limits(3, 10));
        s.next_packet_id = PacketId::new(u16::MAX).unwrap();
        let mut out = Vec::new();
        s.attach(&mut out);
        s.deliver(msg(QoS::AtLeastOnce, 0), true, &mut out);
        s.deliver(msg(QoS::AtLeastOnce, 1), true, &mut out);
        assert_eq!(publishes(&out), vec![(0, Some(u16::MAX), false), (1, Some(1), false)]);
    }
}
