//! Messages between the client actors (`Connection`, `Session`,
//! `SessionRegistry`). Each says who sends it to whom; the reply type is on
//! the type. None names an actor type: where one actor answers another, it
//! holds a `Recipient` of the message, so no two actor files import each
//! other. (The registry's own request, `Register`, lives with it: its reply
//! names the session actor.)

use crate::broker::net::backlog::BacklogToken;
use crate::broker::net::outbound::Outbound;
use crate::broker::route::delivery_inbox::DeliveryInbox;
pub use crate::broker::route::messages::SessionId;
use crate::protocol::{LastWill, Packet, PacketId, Publish, TopicFilter};
use actix::prelude::*;
use bytestring::ByteString;
use std::sync::Arc;

/// Identifies one accepted socket.
pub type ConnectionId = u64;

/// SessionRegistry → Session: a new CONNECT replaced this session (clean
/// session 1, or a persistent client returning to a clean one). Disconnect
/// its client and discard it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Discard;

/// Shutdown → SessionRegistry → every persistent Session: store the packet
/// ids of the QoS 1 messages in flight (written only when a client leaves
/// otherwise), so that they are resent with them after the restart
/// [MQTT-4.4.0-1]. Answered once the writes are on their way to the store.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveInflight;

/// Session → SessionRegistry: the client of this persistent session is
/// away; keep it asleep, without an actor. Refused (false) if a newer
/// connection registered since the session's last attach: its attach is on
/// its way, and the session stays awake for it.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Retire {
    pub client_id: ByteString,
    pub session_id: SessionId,
    pub generation: u64,
    pub dormant: Dormant,
}

/// A persistent session asleep (its client away): what waking it needs.
/// Its queue is in the store; its subscriptions stay in the shards, which
/// deliver through its inbox into that queue.
pub struct Dormant {
    pub username: Option<ByteString>,
    pub subscriptions: Box<[(TopicFilter, crate::session::Subscription)]>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub inbound: Box<[PacketId]>,
    /// None if it never subscribed.
    pub inbox: Option<Arc<DeliveryInbox>>,
    /// When it is removed unless its client returns (`session.expiry_secs`).
    pub expires_at: Option<std::time::Instant>,
}

/// Connection → SessionRegistry: the will of a 5.0 client whose
/// persistent session goes on, to publish once its Will Delay Interval has
/// passed, unless the session resumes first (section 3.1.3.2.2).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DelayWill {
    pub client_id: ByteString,
    pub will: crate::message::Message,
    pub delay: std::time::Duration,
}

/// Connection → SessionRegistry: a 5.0 DISCONNECT changed how long the
/// client's session is kept (section 3.14.2.2.2).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetExpiry {
    pub client_id: ByteString,
    /// `None`: for ever.
    pub expiry: Option<std::time::Duration>,
}

/// Session → SessionRegistry: a clean session ended with its connection.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionEnded {
    pub client_id: ByteString,
    pub session_id: SessionId,
}

/// Connection → Session: the client is connected here. The session writes
/// CONNACK first, then resends in-flight and queued messages, before it
/// replies, so nothing the connection sends afterwards overtakes CONNACK.
#[derive(Message)]
#[rtype(result = "Result<(), Superseded>")]
pub struct Attach {
    pub connection_id: ConnectionId,
    /// For the sessions table.
    pub keep_alive: u16,
    pub protocol: crate::protocol::ProtocolVersion,
    pub will: Option<LastWill>,
    /// 5.0: the properties of the CONNACK the session writes.
    pub connack: Option<Box<crate::protocol::Properties>>,
    /// 5.0: the client's Receive Maximum, which bounds its in-flight window.
    pub receive_maximum: Option<u16>,
    /// 5.0: the Session Expiry Interval granted, in seconds (for the
    /// sessions table); `None` for 3.1.1.
    pub session_expiry: Option<u32>,
    /// Told when another connection takes the session over.
    pub connection: Recipient<Close>,
    pub outbound: Outbound,
    pub session_present: bool,
    pub generation: u64,
    /// The user name of CONNECT, for the ACL.
    pub username: Option<ByteString>,
}

/// A newer connection for the same client id attached first.
#[derive(Debug)]
pub struct Superseded;

/// Connection → Session: the connection ended (for any reason).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    pub connection_id: ConnectionId,
    /// The session ends with the connection, though it was persistent: a
    /// 5.0 client set its Session Expiry Interval to 0 in DISCONNECT.
    pub end_session: bool,
}

/// Session → Connection: close, for a reason the session found.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Close {
    /// Another connection took the session over [MQTT-3.1.4-2]. The will
    /// is published only if the old session ends: not when a persistent
    /// session is resumed by the new connection (section 3.1.2.5 does not
    /// list that, and Mosquitto then clears the will).
    TakenOver { publish_will: bool },
    /// The client broke the protocol in a way only its session can see: an
    /// acknowledgement of the wrong type for a packet id in flight.
    Violation(crate::protocol::ProtocolError),
}

/// Connection → Session: SUBSCRIBE or UNSUBSCRIBE (the connection waits
/// for the session to handle it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromClient {
    /// Packets from a connection that was since taken over are ignored.
    pub connection_id: ConnectionId,
    pub packet: Packet,
}

/// Connection → Session: the client's acknowledgements (PUBACK, PUBREC,
/// PUBREL, PUBCOMP) read one after another, handled as one event (see
/// `connection::runs`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientAcks {
    /// Acknowledgements from a connection that was since taken over are
    /// ignored.
    pub connection_id: ConnectionId,
    pub acks: Vec<Packet>,
    /// Counts against the client's backlog until the session has handled
    /// them.
    pub backlog: BacklogToken,
}

/// Connection → Session: a QoS 2 PUBLISH, routed once per packet id until
/// PUBREL (the session keeps the ids).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PublishQoS2 {
    pub connection_id: ConnectionId,
    pub publish: Publish,
    pub backlog: BacklogToken,
    /// Refused (by the ACL, or a payload that is not the UTF-8 it says it
    /// is): not routed, only acknowledged (PUBREC, with this reason for a
    /// 5.0 client), in turn with the PUBRECs of earlier QoS 2 PUBLISHes.
    pub refused: Option<crate::protocol::ReasonCode>,
}
