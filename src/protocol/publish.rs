//! PUBLISH (section 3.3): a message, in either direction.

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
    pub topic: TopicName,
    /// Present exactly when `qos` is 1 or 2.
    pub packet_id: Option<PacketId>,
    pub payload: Bytes,
}

impl Publish {
    pub(crate) fn decode(flags: u8, mut r: Reader) -> Result<Publish, ProtocolError> {
        let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(ProtocolError::InvalidQoS)?;
        let dup = flags & 0b1000 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(ProtocolError::DupOnQoS0);
        }
        let topic = TopicName::new(r.string()?)?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(r.packet_id()?)
        };
        let payload = r.rest();
        Ok(Publish {
            dup,
            qos,
            retain: flags & 1 != 0,
            topic,
            packet_id,
            payload,
        })
    }

    fn remaining_length(&self) -> usize {
        2 + self.topic.as_str().len()
            + if self.packet_id.is_some() { 2 } else { 0 }
            + self.payload.len()
    }

    pub fn wire_len(&self) -> usize {
        let rl = self.remaining_length();
        1 + remaining_length_len(rl) + rl
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        let rl = self.remaining_length();
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
        put_str(buf, self.topic.as_str());
        if let Some(id) = self.packet_id {
            buf.put_u16(id.get());
        }
        buf.put_slice(&self.payload);
    }
}
