//! The acknowledgements of a publish flow: PUBACK (3.4), PUBREC (3.5),
//! PUBREL (3.6) and PUBCOMP (3.7). In 3.1.1 each carries a packet
//! identifier only; in 5.0 a reason code and properties may follow, both
//! left out when the reason is Success and there are no properties
//! (section 3.4.2.1).

use super::disconnect::{read_tail, tail_len, write_tail, Reasoned};
use super::properties::{Properties, PropertiesOf};
use super::reader::Reader;
use super::reason::ReasonCode;
use super::{put_remaining_length, remaining_length_len, PacketId, ProtocolError};
use bytes::{BufMut, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: PacketId,
    /// Always Success in 3.1.1.
    pub reason: ReasonCode,
    /// 5.0 only: `None` when there are none.
    pub properties: Option<Box<Properties>>,
}

impl Ack {
    /// A successful acknowledgement of `packet_id`, the same bytes in
    /// either version.
    pub fn new(packet_id: PacketId) -> Ack {
        Ack {
            packet_id,
            reason: ReasonCode::SUCCESS,
            properties: None,
        }
    }

    /// An acknowledgement with a reason code (sent to 5.0 clients only).
    pub fn with_reason(packet_id: PacketId, reason: ReasonCode) -> Ack {
        Ack {
            packet_id,
            reason,
            properties: None,
        }
    }

    pub(crate) fn decode(mut r: Reader, of: Option<PropertiesOf>) -> Result<Ack, ProtocolError> {
        let packet_id = r.packet_id()?;
        let tail = match of {
            Some(of) => read_tail(&mut r, of)?,
            None => Reasoned::normal(),
        };
        r.finish()?;
        Ok(Ack {
            packet_id,
            reason: tail.reason,
            properties: tail.properties,
        })
    }

    fn remaining_length(&self, v5: bool) -> usize {
        2 + tail_len(self.reason, &self.properties, v5)
    }

    pub(crate) fn encoded_len(&self, v5: bool) -> usize {
        let rl = self.remaining_length(v5);
        1 + remaining_length_len(rl) + rl
    }

    /// `first_byte` is the packet type shifted left with its fixed flags.
    pub(crate) fn encode(&self, buf: &mut BytesMut, first_byte: u8, v5: bool) {
        buf.put_u8(first_byte);
        put_remaining_length(buf, self.remaining_length(v5));
        buf.put_u16(self.packet_id.get());
        write_tail(buf, self.reason, &self.properties, v5);
    }
}
