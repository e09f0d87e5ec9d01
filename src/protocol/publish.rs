//! PUBLISH (section 3.3): a message, in either direction. In 5.0 a block
//! of properties sits between the packet identifier and the payload.

use super::alias::TopicAliases;
use super::properties::{Properties, PropertiesOf};
use super::reader::Reader;
use super::{
    put_remaining_length, put_str, remaining_length_len, PacketId, ProtocolError, QoS, TopicName,
};
use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Always the full name: a topic alias the client used is resolved by
    /// the codec.
    pub topic: TopicName,
    /// Present exactly when `qos` is 1 or 2.
    pub packet_id: Option<PacketId>,
    pub payload: Bytes,
    /// 5.0 only: `None` when there are none.
    pub properties: Option<Box<Properties>>,
}

impl Publish {
    /// `aliases` is given for 5.0, where the block of properties is read
    /// and a topic alias in it resolved.
    pub(crate) fn decode(
        flags: u8,
        mut r: Reader,
        aliases: Option<&mut TopicAliases>,
    ) -> Result<Publish, ProtocolError> {
        let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(ProtocolError::InvalidQoS)?;
        let dup = flags & 0b1000 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(ProtocolError::DupOnQoS0);
        }
        let name = r.string()?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(r.packet_id()?)
        };
        let (topic, properties) = match aliases {
            None => (TopicName::new(name)?, None),
            Some(aliases) => {
                let properties = Properties::decode_boxed(&mut r, PropertiesOf::Publish)?;
                let alias = properties.as_ref().and_then(|p| p.topic_alias);
                let named = if name.is_empty() {
                    None
                } else {
                    Some(TopicName::new(name)?)
                };
                let topic = match (alias, named) {
                    (Some(alias), named) => aliases.resolve(alias, named)?,
                    (None, Some(topic)) => topic,
                    (None, None) => return Err(ProtocolError::EmptyTopicWithoutAlias),
                };
                (topic, properties)
            }
        };
        let payload = r.rest();
        Ok(Publish {
            dup,
            qos,
            retain: flags & 1 != 0,
            topic,
            packet_id,
            payload,
            properties,
        })
    }

    /// The properties; none for 3.1.1.
    pub fn properties(&self) -> &Properties {
        Properties::or_none(&self.properties)
    }

    fn remaining_length(&self, v5: bool) -> usize {
        2 + self.topic.as_str().len()
            + if self.packet_id.is_some() { 2 } else { 0 }
            + if v5 {
                Properties::boxed_len(&self.properties)
            } else {
                0
            }
            + self.payload.len()
    }

    pub fn wire_len(&self, v5: bool) -> usize {
        let rl = self.remaining_length(v5);
        1 + remaining_length_len(rl) + rl
    }

    /// A 5.0 server's PUBLISH using topic alias `alias` (section
    /// 3.3.2.3.4): with the topic name when the alias is set by it, with
    /// an empty one after. Returns the bytes written.
    pub fn encode_with_alias(&self, buf: &mut BytesMut, alias: u16, with_topic: bool) -> usize {
        let topic = if with_topic { self.topic.as_str() } else { "" };
        let rl = 2
            + topic.len()
            + if self.packet_id.is_some() { 2 } else { 0 }
            + Properties::boxed_len_with_alias(&self.properties)
            + self.payload.len();
        let before = buf.len();
        self.put_header(buf, rl, topic);
        Properties::encode_boxed_with_alias(&self.properties, alias, buf);
        buf.put_slice(&self.payload);
        buf.len() - before
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut, v5: bool) {
        self.put_header(buf, self.remaining_length(v5), self.topic.as_str());
        if v5 {
            Properties::encode_boxed(&self.properties, buf);
        }
        buf.put_slice(&self.payload);
    }

    /// The fixed header (remaining length `rl`), the topic as given and
    /// the packet id; room is reserved for the whole packet.
    fn put_header(&self, buf: &mut BytesMut, rl: usize, topic: &str) {
        buf.reserve(1 + remaining_length_len(rl) + rl);
        let mut first = 0x30 | ((self.qos as u8) << 1);
        if self.dup {
            first |= 0b1000;
        }
        if self.retain {
            first |= 1;
        }
        buf.put_u8(first);
        put_remaining_length(buf, rl);
        put_str(buf, topic);
        if let Some(id) = self.packet_id {
            buf.put_u16(id.get());
        }
    }
}
