//! Messages between actors. Each says who sends it to whom; the reply type
//! is on the type.

use super::backlog::BacklogToken;
use super::connection::Connection;
use super::deliveries::Deliveries;
use super::outbound::Outbound;
use super::session::Session;
use super::store::Acknowledgement;
use crate::protocol::{LastWill, Packet, Publish, QoS, TopicFilter};
use crate::session::Message;
use actix::prelude::*;
use bytestring::ByteString;

/// Identifies one session instance for its lifetime; a client id that is
/// discarded and reused gets a new one, so stale messages are recognisable.
pub type SessionId = u64;
/// Identifies one accepted socket.
pub type ConnectionId = u64;

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
}

pub struct Registered {
    pub session: Addr<Session>,
    pub session_present: bool,
    /// Increases with every registration of this client id: a session accepts
    /// an attach only from its newest registration, so of two racing
    /// connections the later one wins [MQTT-3.1.4-2].
    pub generation: u64,
}

/// SessionRegistry → Session: a new CONNECT replaced this session (clean
/// session 1, or a persistent client returning to a clean one). Disconnect
/// its client and discard it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Discard;

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
    pub will: Option<LastWill>,
    pub connection: Addr<Connection>,
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
}

/// Session → Connection: another connection took the session over; close
/// (the will is published, as for any close without DISCONNECT).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TakenOver;

/// Connection → Session: a packet the session's state machine handles
/// (acks, SUBSCRIBE, UNSUBSCRIBE).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FromClient {
    /// Packets from a connection that was since taken over are ignored.
    pub connection_id: ConnectionId,
    pub packet: Packet,
}

/// Connection → Session: a QoS 2 PUBLISH, routed once per packet id until
/// PUBREL (the session keeps the ids).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PublishQoS2 {
    pub connection_id: ConnectionId,
    pub publish: Publish,
    pub backlog: BacklogToken,
    /// The ACL refused it: not routed, only acknowledged (PUBREC), in turn
    /// with the PUBRECs of earlier QoS 2 PUBLISHes.
    pub refused: bool,
}

/// TopicShard → Session (through its inbox, see `deliveries`): a message
/// matched one of the session's subscriptions; `qos` is the highest granted
/// QoS among them.
pub struct Deliver {
    pub message: Message,
    pub qos: QoS,
    /// The publisher's acknowledgement, for a durable subscriber at QoS ≥ 1:
    /// it is sent once the subscriber's copy is committed.
    pub ack: Option<Acknowledgement>,
}

/// RetainedStore → Session: the retained messages matching a new
/// subscription, to send with RETAIN=1 [MQTT-3.3.1-8].
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliverRetained {
    pub messages: Vec<Message>,
    pub qos: QoS,
}

/// Router → TopicShard: add or replace a subscription.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddSubscription {
    pub session_id: SessionId,
    pub session: Deliveries,
    pub filter: TopicFilter,
    pub qos: QoS,
    /// The session is persistent: publishers' acknowledgements wait for its copies.
    pub durable: bool,
}

/// Router → TopicShard: remove a subscription.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveSubscription {
    pub session_id: SessionId,
    pub filter: TopicFilter,
}

/// Router → TopicShard: deliver a published message to every match. The
/// token (absent for wills) counts against the publisher's routing backlog
/// until the shard has handled the message.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Route {
    pub message: Message,
    pub backlog: Option<BacklogToken>,
    /// The publisher's PUBACK/PUBREC, sent when every durable copy is committed.
    pub ack: Option<Acknowledgement>,
}

/// Router → RetainedStore: set (or, with an empty payload, clear) the
/// retained message of a topic.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retain {
    pub message: Message,
    /// The publisher's acknowledgement, sent once the change is committed.
    pub ack: Option<Acknowledgement>,
}

/// Session → RetainedStore: send the retained messages matching `filter`
/// back to `session` as a [`DeliverRetained`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct LookupRetained {
    pub filter: TopicFilter,
    pub qos: QoS,
    pub session: Addr<Session>,
}

/// Anyone → RetainedStore: how many topics hold a retained message.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct RetainedCount;

/// → SessionRegistry: sessions held now (connected, and persistent ones away).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct SessionCount;
