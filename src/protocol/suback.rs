//! SUBACK (section 3.9) and UNSUBACK (section 3.11): one code per filter
//! of the request, in order. SUBACK's codes of 3.1.1 (0x00-0x02 granted,
//! 0x80 failure) are 5.0 reason codes too; UNSUBACK carries codes in 5.0
//! only. In 5.0 both carry a block of properties.

use super::properties::{Properties, PropertiesOf};
use super::reader::Reader;
use super::reason::ReasonCode;
use super::{put_remaining_length, remaining_length_len, PacketId, ProtocolError, QoS};
use bytes::{BufMut, BytesMut};

/// SUBACK or UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: PacketId,
    /// One per filter. A 3.1.1 SUBACK sends 0x80 for every failure; a
    /// 3.1.1 UNSUBACK sends none.
    pub codes: Vec<ReasonCode>,
    /// 5.0 only: `None` when there are none.
    pub properties: Option<Box<Properties>>,
}

/// UNSUBACK has SUBACK's shape.
pub type UnsubAck = SubAck;

impl ReasonCode {
    /// The SUBACK code granting `qos`.
    pub fn granted(qos: QoS) -> ReasonCode {
        ReasonCode(qos as u8)
    }

    /// A SUBACK code as 3.1.1 says it: the granted QoS, or 0x80.
    fn as_v311_suback(self) -> u8 {
        if self.is_error() {
            0x80
        } else {
            self.0
        }
    }
}

impl SubAck {
    pub fn new(packet_id: PacketId, codes: Vec<ReasonCode>) -> SubAck {
        SubAck {
            packet_id,
            codes,
            properties: None,
        }
    }

    pub(crate) fn decode(
        mut r: Reader,
        v5: bool,
        of: PropertiesOf,
    ) -> Result<SubAck, ProtocolError> {
        let packet_id = r.packet_id()?;
        let properties = if v5 {
            Properties::decode_boxed(&mut r, of)?
        } else {
            None
        };
        let mut codes = Vec::new();
        // A 3.1.1 UNSUBACK is its packet id alone.
        let carries_codes = v5 || of == PropertiesOf::SubAck;
        while carries_codes && r.has_remaining() {
            let c = r.u8()?;
            codes.push(match v5 {
                true => ReasonCode::check(c, of)?,
                false if matches!(c, 0 | 1 | 2 | 0x80) => ReasonCode(c),
                false => return Err(ProtocolError::InvalidSubAckCode(c)),
            });
        }
        r.finish()?;
        Ok(SubAck {
            packet_id,
            codes,
            properties,
        })
    }

    /// `unsubscribe` for an UNSUBACK, which has no codes in 3.1.1.
    fn remaining_length(&self, v5: bool, unsubscribe: bool) -> usize {
        match (v5, unsubscribe) {
            (true, _) => 2 + Properties::boxed_len(&self.properties) + self.codes.len(),
            (false, false) => 2 + self.codes.len(),
            (false, true) => 2,
        }
    }

    pub(crate) fn encoded_len(&self, v5: bool, unsubscribe: bool) -> usize {
        let rl = self.remaining_length(v5, unsubscribe);
        1 + remaining_length_len(rl) + rl
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut, v5: bool, unsubscribe: bool) {
        buf.put_u8(if unsubscribe { 0xB0 } else { 0x90 });
        put_remaining_length(buf, self.remaining_length(v5, unsubscribe));
        buf.put_u16(self.packet_id.get());
        if v5 {
            Properties::encode_boxed(&self.properties, buf);
            for c in &self.codes {
                buf.put_u8(c.0);
            }
        } else if !unsubscribe {
            for c in &self.codes {
                buf.put_u8(c.as_v311_suback());
            }
        }
    }
}
