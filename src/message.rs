//! The application message as the broker carries it: from the publisher's
//! connection through the router and the topic shards to every matching
//! session, into the store and the retained index. One type for the whole
//! routing core, whatever the protocol version of the clients at either end.

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
