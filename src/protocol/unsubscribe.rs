//! UNSUBSCRIBE (section 3.10): one or more topic filters to remove; in 5.0
//! with a block of properties (User Properties).

use super::properties::{Properties, PropertiesOf};
use super::reader::Reader;
use super::{put_remaining_length, put_str, PacketId, ProtocolError, TopicFilter};
use bytes::{BufMut, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    pub filters: Vec<TopicFilter>,
    /// 5.0 only: `None` when there are none.
    pub properties: Option<Box<Properties>>,
}

impl Unsubscribe {
    pub(crate) fn decode(mut r: Reader, v5: bool) -> Result<Unsubscribe, ProtocolError> {
        let packet_id = r.packet_id()?;
        let properties = if v5 {
            Properties::decode_boxed(&mut r, PropertiesOf::Unsubscribe)?
        } else {
            None
        };
        let mut filters = Vec::new();
        while r.has_remaining() {
            filters.push(TopicFilter::new(r.string()?)?);
        }
        if filters.is_empty() {
            return Err(ProtocolError::EmptyUnsubscribe);
        }
        Ok(Unsubscribe {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut, v5: bool) {
        let props = if v5 {
            Properties::boxed_len(&self.properties)
        } else {
            0
        };
        let len = 2
            + props
            + self
                .filters
                .iter()
                .map(|f| 2 + f.as_str().len())
                .sum::<usize>();
        buf.put_u8(0xA2);
        put_remaining_length(buf, len);
        buf.put_u16(self.packet_id.get());
        if v5 {
            Properties::encode_boxed(&self.properties, buf);
        }
        for f in &self.filters {
            put_str(buf, f.as_str());
        }
    }
}
