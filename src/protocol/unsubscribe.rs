//! UNSUBSCRIBE (section 3.10): one or more topic filters to remove.

use super::reader::Reader;
use super::{put_remaining_length, put_str, PacketId, ProtocolError, TopicFilter};
use bytes::{BufMut, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    pub filters: Vec<TopicFilter>,
}

impl Unsubscribe {
    pub(crate) fn decode(mut r: Reader) -> Result<Unsubscribe, ProtocolError> {
        let packet_id = r.packet_id()?;
        let mut filters = Vec::new();
        while r.has_remaining() {
            filters.push(TopicFilter::new(r.string()?)?);
        }
        if filters.is_empty() {
            return Err(ProtocolError::EmptyUnsubscribe);
        }
        Ok(Unsubscribe { packet_id, filters })
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        let len = 2 + self
            .filters
            .iter()
            .map(|f| 2 + f.as_str().len())
            .sum::<usize>();
        buf.put_u8(0xA2);
        put_remaining_length(buf, len);
        buf.put_u16(self.packet_id.get());
        for f in &self.filters {
            put_str(buf, f.as_str());
        }
    }
}
