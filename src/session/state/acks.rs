//! The acknowledgements of a session's QoS 1 and 2 flows: PUBACK, PUBREC
//! and PUBCOMP for messages sent to the client, PUBREL and the QoS 2 ids
//! of messages received from it, and acknowledgements of the wrong type.

use super::SessionState;
use crate::protocol::{Ack, Packet, PacketId, PacketType};
use crate::session::action::{Action, OutboundState};

impl SessionState {
    /// The acknowledgement a message in flight awaits, when `got` is of
    /// another kind for its packet id: PUBREC or PUBCOMP answering a QoS 1
    /// PUBLISH, PUBACK answering a QoS 2 one, PUBCOMP before PUBREC (no
    /// PUBREL was sent for it to answer). That is a protocol violation
    /// [MQTT-4.8.0-1] (Mosquitto closes too). A repeated PUBREC is of the
    /// QoS 2 flow; an id not in flight is not this.
    pub fn wrong_ack(&self, got: PacketType, packet_id: PacketId) -> Option<PacketType> {
        let entry = self.inflight.iter().find(|e| e.packet_id == packet_id)?;
        let expected = match entry.state {
            OutboundState::AwaitingPubAck => PacketType::PubAck,
            OutboundState::AwaitingPubRec => PacketType::PubRec,
            OutboundState::AwaitingPubComp => PacketType::PubComp,
            OutboundState::Queued => return None,
        };
        let fits = match got {
            PacketType::PubAck => expected == PacketType::PubAck,
            // A repeated PUBREC (its PUBREL was lost) is of the flow.
            PacketType::PubRec => expected != PacketType::PubAck,
            // Before PUBREC, no PUBREL was sent for PUBCOMP to answer.
            PacketType::PubComp => expected == PacketType::PubComp,
            _ => true,
        };
        (!fits).then_some(expected)
    }

    /// PUBACK for an outbound QoS 1 message; false if no such message.
    pub fn on_puback(&mut self, packet_id: PacketId, out: &mut Vec<Action>) -> bool {
        self.finish(packet_id, OutboundState::AwaitingPubAck, out)
    }

    /// The last acknowledgement of a message in flight (PUBACK, PUBCOMP):
    /// it leaves the window and the queue, and the window fills again.
    fn finish(&mut self, packet_id: PacketId, state: OutboundState, out: &mut Vec<Action>) -> bool {
        let Some(entry) = self.take(packet_id, state) else {
            return false;
        };
        if let Some(id) = entry.id {
            out.push(Action::Dequeue {
                id,
                size: entry.message.stored_size(),
            });
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
        let rel = Packet::PubRel(Ack::new(packet_id));
        match entry.id {
            Some(id) => out.push(Action::Sent {
                id,
                packet_id,
                state: OutboundState::AwaitingPubComp,
                then: Some(rel),
            }),
            None => out.push(Action::Send(rel)),
        }
        true
    }

    /// A 5.0 PUBREC with a reason code of 0x80 or above: the client
    /// refused the message, and its QoS 2 flow ends there, without PUBREL
    /// (section 4.3.3): it leaves the window like an acknowledged one.
    pub fn on_pubrec_refused(&mut self, packet_id: PacketId, out: &mut Vec<Action>) -> bool {
        self.finish(packet_id, OutboundState::AwaitingPubRec, out)
    }

    /// PUBCOMP ends an outbound QoS 2 handshake.
    pub fn on_pubcomp(&mut self, packet_id: PacketId, out: &mut Vec<Action>) -> bool {
        self.finish(packet_id, OutboundState::AwaitingPubComp, out)
    }

    /// An inbound QoS 2 PUBLISH: true if it is new and must be routed, false
    /// if it repeats one still awaiting PUBREL. A durable session records
    /// the id. The caller answers PUBREC either way [MQTT-4.3.3-2].
    pub fn on_inbound_qos2(&mut self, packet_id: PacketId, out: &mut Vec<Action>) -> bool {
        if self.inbound_awaiting_rel.contains_key(&packet_id) {
            return false;
        }
        self.inbound_awaiting_rel.insert(packet_id, ());
        if self.pager.is_durable() {
            out.push(Action::Inbound {
                packet_id,
                awaiting: true,
                then: None,
            });
        }
        true
    }

    /// Forgets an inbound QoS 2 id whose PUBREC was never sent (the commit
    /// of the id and its copies failed), so that the client's resend is
    /// taken as a new PUBLISH.
    pub fn forget_inbound_qos2(&mut self, packet_id: PacketId, out: &mut Vec<Action>) {
        if self.inbound_awaiting_rel.remove(&packet_id).is_some() && self.pager.is_durable() {
            out.push(Action::Inbound {
                packet_id,
                awaiting: false,
                then: None,
            });
        }
    }

    /// PUBREL releases an inbound QoS 2 id; PUBCOMP is sent whether or not
    /// the id is known, so a client retrying after a lost PUBCOMP finishes.
    /// A durable session sends it once the release is stored.
    pub fn on_pubrel(&mut self, packet_id: PacketId, out: &mut Vec<Action>) {
        let comp = Packet::PubComp(Ack::new(packet_id));
        match self.inbound_awaiting_rel.remove(&packet_id) {
            Some(()) if self.pager.is_durable() => out.push(Action::Inbound {
                packet_id,
                awaiting: false,
                then: Some(comp),
            }),
            _ => out.push(Action::Send(comp)),
        }
    }
}
