//! SUBACK (section 3.9): one return code per requested filter, in order.

use super::reader::Reader;
use super::{put_remaining_length, PacketId, ProtocolError, QoS};
use bytes::{BufMut, BytesMut};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeReturnCode {
    Granted(QoS),
    Failure,
}

impl SubscribeReturnCode {
    fn to_u8(self) -> u8 {
        match self {
            SubscribeReturnCode::Granted(q) => q as u8,
            SubscribeReturnCode::Failure => 0x80,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: PacketId,
    pub codes: Vec<SubscribeReturnCode>,
}

impl SubAck {
    pub(crate) fn decode(mut r: Reader) -> Result<SubAck, ProtocolError> {
        let packet_id = r.packet_id()?;
        let mut codes = Vec::new();
        while r.has_remaining() {
            let c = r.u8()?;
            codes.push(match c {
                0x80 => SubscribeReturnCode::Failure,
                _ => SubscribeReturnCode::Granted(
                    QoS::from_u8(c).ok_or(ProtocolError::InvalidSubAckCode(c))?,
                ),
            });
        }
        Ok(SubAck { packet_id, codes })
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(0x90);
        put_remaining_length(buf, 2 + self.codes.len());
        buf.put_u16(self.packet_id.get());
        for c in &self.codes {
            buf.put_u8(c.to_u8());
        }
    }
}
