//! Messages to the routing actors (`TopicShard`, `RetainedStore`), and the
//! retained messages they send back. Each says who sends it to whom; the
//! reply type is on the type.

use super::delivery_inbox::InboxHandle;
use crate::broker::durable::{Acknowledgement, Completion};
use crate::broker::net::backlog::BacklogToken;
use crate::message::Message;
use crate::protocol::{QoS, TopicFilter};
use actix::prelude::*;

/// Identifies one session instance for its lifetime (the key of the
/// shards' index); a client id that is discarded and reused gets a new one,
/// so stale messages are recognisable.
pub type SessionId = u64;

/// Router → TopicShard: add or replace a subscription.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddSubscription {
    pub session_id: SessionId,
    pub session: InboxHandle,
    pub filter: TopicFilter,
    pub qos: QoS,
    /// The session is persistent: publishers' acknowledgements wait for its copies.
    pub durable: bool,
    /// For a session restored at start: released once the shard has this
    /// subscription (the listener waits for every one, see `ops::tree`).
    pub indexed: Option<Completion>,
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
/// back to `session` as [`RetainedMatches`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct LookupRetained {
    pub filter: TopicFilter,
    pub qos: QoS,
    pub session: Recipient<RetainedMatches>,
}

/// RetainedStore → Session: the retained messages matching a new
/// subscription, to send with RETAIN=1 [MQTT-3.3.1-8].
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetainedMatches {
    pub messages: Vec<Message>,
    pub qos: QoS,
}
