//! The application message as the broker carries it: from the publisher's
//! connection through the router and the topic shards to every matching
//! session, into the store and the retained index. One type for the whole
//! routing core, whatever the protocol version of the clients at either end.

use crate::protocol::{PacketId, Publish, QoS, TopicName};
use bytes::Bytes;

/// Payloads up to this size are copied by [`Message::detached`].
const DETACH_UP_TO: usize = 16 * 1024;

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

    /// The PUBLISH of this message, taking its buffers. A QoS 0 message is
    /// kept by no one once sent, so it is passed in, not copied: each copy
    /// is an atomic count on the buffer that every copy of a fan-out shares.
    pub fn into_publish(self, packet_id: Option<PacketId>, dup: bool) -> Publish {
        Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic,
            packet_id,
            payload: self.payload,
            properties: None,
        }
    }

    /// The same message in allocations of its own, for one kept long (a
    /// retained message, a queued one): a message decoded from a packet is
    /// a slice of the publisher's read buffer, and would keep the whole
    /// buffer alive, kilobytes for a few bytes of payload. A payload over
    /// `DETACH_UP_TO` is kept as it is: a packet that large filled its
    /// buffer about alone, and copying it would cost more than it saves.
    pub fn detached(&self) -> Message {
        Message {
            topic: self.topic.detached(),
            payload: self.detached_payload(),
            qos: self.qos,
            retain: self.retain,
        }
    }

    /// The payload of [`Message::detached`].
    pub fn detached_payload(&self) -> Bytes {
        match self.payload.len() {
            n if n <= DETACH_UP_TO => Bytes::copy_from_slice(&self.payload),
            _ => self.payload.clone(),
        }
    }

    /// Bytes this message holds in a queue, for the byte bounds.
    pub fn size(&self) -> usize {
        self.topic.as_str().len() + self.payload.len()
    }

    /// The same, as the store counts it (saturating: a message is at most
    /// 256 MiB).
    pub fn stored_size(&self) -> u32 {
        u32::try_from(self.size()).unwrap_or(u32::MAX)
    }
}
