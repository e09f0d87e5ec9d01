//! What the session state machine says: the [`Action`]s an event leads to,
//! what became of a delivered message ([`DeliverOutcome`]), where an
//! outbound message is in its handshake ([`OutboundState`]), and a message
//! of a durable session's queue as the store hands it back ([`Paged`]),
//! and the messages a session holds ([`Inflight`], [`Queued`]).

use crate::message::Message;
use crate::protocol::{Ack, Packet, PacketId, QoS};

/// Identifies a message in the store's log of queued messages; allocated
/// by the broker when a message is first routed to a durable session,
/// increasing, so it also records arrival order.
pub type MessageId = u64;

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

/// A message of a durable session's queue, paged in from the store.
#[derive(Debug, Clone)]
pub struct Paged {
    pub id: MessageId,
    /// At its delivery QoS and RETAIN flag.
    pub message: Message,
    /// Its packet id and state if it had been sent.
    pub sent: Option<(PacketId, OutboundState)>,
}

/// What the session actor does for an event, in order.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send this packet to the client now.
    Send(Packet),
    /// Durable: message `id` joins the session's queue in the store, at
    /// its delivery QoS and RETAIN flag; `held` if the session holds it in
    /// memory too.
    Enqueue {
        id: MessageId,
        qos: QoS,
        retain: bool,
        size: u32,
        held: bool,
    },
    /// Durable: message `id` was sent with `packet_id`, or moved on to
    /// `state`; if `then` is set, send that packet only once this is stored.
    Sent {
        id: MessageId,
        packet_id: PacketId,
        state: OutboundState,
        then: Option<Packet>,
    },
    /// Durable: message `id` leaves the queue (acknowledged, or dropped).
    Dequeue { id: MessageId, size: u32 },
    /// Durable: an inbound QoS 2 id routed (`awaiting`) or released; if
    /// `then` is set, send that packet once this is stored.
    Inbound {
        packet_id: PacketId,
        awaiting: bool,
        then: Option<Packet>,
    },
    /// Durable: ask the store for up to `max` more messages of the queue
    /// (answered with [`SessionState::paged`]).
    PageIn { max: u32 },
    /// Durable: the session no longer holds message `id` in memory; the
    /// store hands it out again with the next page.
    Unhold { id: MessageId },
    /// A queued message was not delivered: its Message Expiry Interval
    /// passed [MQTT-3.3.2-5] (for the count; a durable one is dequeued too).
    Expired,
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

/// An outbound QoS 1/2 message in the in-flight window.
#[derive(Debug, Clone)]
pub struct Inflight {
    /// Its id in the store's log, for a durable session.
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

impl Inflight {
    /// What resends it: PUBREL once PUBREC was seen, else the PUBLISH with
    /// DUP set [MQTT-4.4.0-1].
    pub fn resend(&self) -> Packet {
        match self.state {
            OutboundState::AwaitingPubComp => Packet::PubRel(Ack::new(self.packet_id)),
            _ => Packet::Publish(
                self.message
                    .clone()
                    .into_publish(Some(self.packet_id), true),
            ),
        }
    }
}
