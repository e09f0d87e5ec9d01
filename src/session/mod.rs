//! A client's session as a pure state machine: subscriptions, the outbound
//! in-flight window with its packet ids, the offline queue, and the inbound
//! QoS 2 ids awaiting PUBREL. No actors, sockets or clocks here: the
//! `broker::session` actor feeds events in and sends the packets that come
//! out. A session is not a connection: it outlives its connection when the
//! client asked for a persistent session (clean session 0).

mod state;

pub use state::{
    Action, DeliverOutcome, Inflight, MessageId, OutboundState, Queued, Record, SessionLimits,
    SessionMap, SessionState,
};

use crate::protocol::{Publish, QoS, TopicName};
use bytes::Bytes;

/// An application message as it travels through the broker. Cloning is
/// cheap: topic and payload are reference-counted and shared by every
/// subscriber of a fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

impl Message {
    pub fn from_publish(p: &Publish) -> Message {
        Message {
            topic: p.topic.clone(),
            payload: p.payload.clone(),
            qos: p.qos,
            retain: p.retain,
        }
    }

    /// Bytes this message holds in a queue, for the byte bounds.
    pub fn size(&self) -> usize {
        self.topic.as_str().len() + self.payload.len()
    }
}
