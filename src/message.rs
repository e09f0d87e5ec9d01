//! The application message as the broker carries it: from the publisher's
//! connection through the router and the topic shards to every matching
//! session, into the store and the retained index. One type for the whole
//! routing core, whatever the protocol version of the clients at either end.

use crate::protocol::{PacketId, Properties, Publish, QoS, TopicName};
use bytes::Bytes;
use bytestring::ByteString;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// MQTT 5.0: what travels with the message to every subscriber, shared
    /// by the copies of a fan-out; `None` for most messages (and every
    /// 3.1.1 one).
    pub properties: Option<Arc<MessageProperties>>,
}

/// The properties of an MQTT 5.0 message that roost forwards unchanged
/// (section 3.3.2.3: [MQTT-3.3.2-4] the payload format, [MQTT-3.3.2-15]
/// the response topic, [MQTT-3.3.2-16] the correlation data,
/// [MQTT-3.3.2-17] [MQTT-3.3.2-18] the user properties in their order,
/// [MQTT-3.3.2-20] the content type), and when it expires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    /// 1: the payload is UTF-8 text.
    pub payload_format_indicator: Option<u8>,
    /// Seconds since the Unix epoch after which the message is not
    /// delivered [MQTT-3.3.2-5]: an absolute time, so that it holds across
    /// a restart.
    pub expires_at: Option<u64>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(ByteString, ByteString)>,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

impl MessageProperties {
    /// The forwarded part of a PUBLISH's (or a will's) properties, in
    /// allocations of their own; `None` when there is none. A Message
    /// Expiry Interval starts `now` (seconds since the epoch).
    pub fn from_properties(p: &Properties, now: u64) -> Option<Arc<MessageProperties>> {
        let detached = |s: &ByteString| crate::protocol::detached(s);
        let m = MessageProperties {
            payload_format_indicator: p.payload_format_indicator,
            expires_at: p
                .message_expiry_interval
                .map(|secs| now.saturating_add(u64::from(secs))),
            content_type: p.content_type.as_ref().map(detached),
            response_topic: p.response_topic.as_ref().map(detached),
            correlation_data: p
                .correlation_data
                .as_ref()
                .map(|d| Bytes::copy_from_slice(d)),
            user_properties: p
                .user_properties
                .iter()
                .map(|(k, v)| (detached(k), detached(v)))
                .collect(),
        };
        (m != MessageProperties::default()).then(|| Arc::new(m))
    }

    /// Whether the message has expired at `now` (seconds since the epoch).
    pub fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The properties of a PUBLISH carrying the message at `now`: the
    /// Message Expiry Interval is what is left of it [MQTT-3.3.2-6].
    pub fn to_properties(&self, now: u64) -> Properties {
        Properties {
            payload_format_indicator: self.payload_format_indicator,
            message_expiry_interval: self.expires_at.map(|at| {
                u32::try_from(at.saturating_sub(now))
                    .unwrap_or(u32::MAX)
                    .max(1)
            }),
            content_type: self.content_type.clone(),
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone(),
            user_properties: self.user_properties.clone(),
            ..Properties::default()
        }
    }
}

impl Message {
    pub fn from_publish(p: &Publish) -> Message {
        Message {
            topic: p.topic.clone(),
            payload: p.payload.clone(),
            qos: p.qos,
            retain: p.retain,
            properties: p
                .properties
                .as_deref()
                .and_then(|props| MessageProperties::from_properties(props, unix_now())),
        }
    }

    /// Whether it has expired (MQTT 5.0's Message Expiry Interval): an
    /// expired message is not delivered [MQTT-3.3.2-5].
    pub fn expired(&self, now: u64) -> bool {
        self.properties.as_ref().is_some_and(|p| p.expired(now))
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
            properties: self
                .properties
                .map(|p| Box::new(p.to_properties(unix_now()))),
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
            // Detached when made (`MessageProperties::from_properties`).
            properties: self.properties.clone(),
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
