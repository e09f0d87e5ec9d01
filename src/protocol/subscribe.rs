//! SUBSCRIBE (section 3.8): one or more topic filters with a requested QoS.

use super::reader::Reader;
use super::{put_remaining_length, put_str, PacketId, ProtocolError, QoS, TopicFilter};
use bytes::{BufMut, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeTopic {
    pub filter: TopicFilter,
    pub qos: QoS,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    pub topics: Vec<SubscribeTopic>,
}

impl Subscribe {
    pub(crate) fn decode(mut r: Reader) -> Result<Subscribe, ProtocolError> {
        let packet_id = r.packet_id()?;
        let mut topics = Vec::new();
        while r.has_remaining() {
            let filter = TopicFilter::new(r.string()?)?;
            let requested = r.u8()?;
            let qos = if requested & 0b1111_1100 == 0 {
                QoS::from_u8(requested)
            } else {
                None
            };
            let qos = qos.ok_or(ProtocolError::InvalidRequestedQoS(requested))?;
            topics.push(SubscribeTopic { filter, qos });
        }
        if topics.is_empty() {
            return Err(ProtocolError::EmptySubscribe);
        }
        Ok(Subscribe { packet_id, topics })
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        let len = 2 + self
            .topics
            .iter()
            .map(|t| 2 + t.filter.as_str().len() + 1)
            .sum::<usize>();
        buf.put_u8(0x82);
        put_remaining_length(buf, len);
        buf.put_u16(self.packet_id.get());
        for t in &self.topics {
            put_str(buf, t.filter.as_str());
            buf.put_u8(t.qos as u8);
        }
    }
}
