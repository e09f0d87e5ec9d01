//! Messages to the routing actors (`TopicShard`, `RetainedStore`), and the
//! retained messages they send back. Each says who sends it to whom; the
//! reply type is on the type.

use super::delivery_inbox::InboxHandle;
use crate::broker::durable::{Acknowledgement, Completion};
use crate::broker::net::backlog::BacklogToken;
use crate::message::Message;
use crate::protocol::TopicFilter;
use crate::routing::Grant;
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
    /// Its QoS and the options routing applies.
    pub grant: Grant,
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
    /// The session of the client that published it (`None` for wills and
    /// `$SYS`), for No Local.
    pub origin: Option<SessionId>,
    pub backlog: Option<BacklogToken>,
    /// The publisher's PUBACK/PUBREC, sent when every durable copy is committed.
    pub ack: Option<Acknowledgement>,
}

/// Router → TopicShard: routes held back together (see
/// `router::RoutesHeldBack`), handled in order as one event.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RouteMany {
    pub routes: Vec<Route>,
}

/// Router → RetainedStore: set (or, with an empty payload, clear) the
/// retained message of a topic.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retain {
    pub message: Message,
    /// The publisher's acknowledgement, sent once the change is committed.
    pub ack: Option<Acknowledgement>,
    /// Counts against the publisher's backlog until handled.
    pub backlog: Option<BacklogToken>,
}

/// Session → RetainedStore: the retained messages matching `filter`, for
/// a new subscription [MQTT-3.3.1-6], at most `room` of them: the ones a
/// session's bounds would drop anyway are counted, not copied. A session
/// asks for one filter at a time, so what it is sent is bounded by its own
/// bounds, however many filters it subscribes to.
#[derive(Message)]
#[rtype(result = "RetainedMatches")]
pub struct LookupRetained {
    pub filter: TopicFilter,
    pub room: usize,
}

/// RetainedStore → Session, the answer to [`LookupRetained`].
#[derive(MessageResponse, Default)]
pub struct RetainedMatches {
    pub messages: Vec<Message>,
    /// Matches beyond `room`, left out.
    pub skipped: usize,
    /// Matches whose Message Expiry Interval passed, left out.
    pub expired: usize,
}
