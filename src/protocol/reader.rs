//! A bounds-checked cursor over one packet's body. Every read that would run
//! past the remaining length is a [`ProtocolError::Truncated`], never a panic.

use super::{PacketId, PacketType, ProtocolError};
use bytes::{Buf, Bytes};
use bytestring::ByteString;

pub(crate) struct Reader {
    packet: PacketType,
    remaining: usize,
    body: Bytes,
}

impl Reader {
    pub fn new(packet: PacketType, body: Bytes) -> Reader {
        Reader {
            packet,
            remaining: body.len(),
            body,
        }
    }

    fn truncated(&self) -> ProtocolError {
        ProtocolError::Truncated {
            packet: self.packet,
            remaining: self.remaining,
        }
    }

    pub fn has_remaining(&self) -> bool {
        !self.body.is_empty()
    }

    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        if self.body.is_empty() {
            return Err(self.truncated());
        }
        Ok(self.body.get_u8())
    }

    pub fn u16(&mut self) -> Result<u16, ProtocolError> {
        if self.body.len() < 2 {
            return Err(self.truncated());
        }
        Ok(self.body.get_u16())
    }

    pub fn u32(&mut self) -> Result<u32, ProtocolError> {
        if self.body.len() < 4 {
            return Err(self.truncated());
        }
        Ok(self.body.get_u32())
    }

    /// A Variable Byte Integer (section 1.5.5): at most four bytes.
    pub fn variable_byte_integer(&mut self) -> Result<u32, ProtocolError> {
        match super::remaining_length(&self.body) {
            Ok(Some((value, len))) => {
                self.body.advance(len);
                Ok(value as u32)
            }
            Ok(None) => Err(self.truncated()),
            Err(_) => Err(ProtocolError::MalformedVariableByteInteger),
        }
    }

    /// The next `len` bytes as a reader of their own (a property block):
    /// a length beyond what is left is truncation, and what the inner
    /// reader leaves unread is the caller's to check.
    pub fn sub(&mut self, len: usize) -> Result<Reader, ProtocolError> {
        if self.body.len() < len {
            return Err(self.truncated());
        }
        Ok(Reader {
            packet: self.packet,
            remaining: len,
            body: self.body.split_to(len),
        })
    }

    /// Takes a zero byte if it comes next (an empty property block, the
    /// common case, read without building one).
    pub fn take_zero(&mut self) -> bool {
        let zero = self.body.first() == Some(&0);
        if zero {
            self.body.advance(1);
        }
        zero
    }

    pub fn packet_id(&mut self) -> Result<PacketId, ProtocolError> {
        PacketId::new(self.u16()?).ok_or(ProtocolError::ZeroPacketId)
    }

    /// A length-prefixed byte field (section 1.5.3 without the UTF-8 rule).
    pub fn binary(&mut self) -> Result<Bytes, ProtocolError> {
        let len = self.u16()? as usize;
        if self.body.len() < len {
            return Err(self.truncated());
        }
        Ok(self.body.split_to(len))
    }

    /// A UTF-8 encoded string: well-formed and free of U+0000 [MQTT-1.5.3-1] [MQTT-1.5.3-2].
    pub fn string(&mut self) -> Result<ByteString, ProtocolError> {
        let raw = self.binary()?;
        utf8(raw)
    }

    /// Everything left: a PUBLISH payload.
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.body)
    }

    /// Fails if bytes remain after the last field.
    pub fn finish(self) -> Result<(), ProtocolError> {
        if self.body.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::TrailingBytes {
                packet: self.packet,
                extra: self.body.len(),
            })
        }
    }
}

/// Validates MQTT's UTF-8 rules on raw bytes without copying them.
pub(crate) fn utf8(raw: Bytes) -> Result<ByteString, ProtocolError> {
    if raw.contains(&0) {
        return Err(ProtocolError::NullCharacter);
    }
    ByteString::try_from(raw).map_err(|_| ProtocolError::InvalidUtf8)
}
