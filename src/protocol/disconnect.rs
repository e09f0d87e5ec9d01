//! DISCONNECT (section 3.14) and AUTH (section 3.15). In 3.1.1 DISCONNECT
//! is two bytes and AUTH does not exist; in 5.0 each may carry a reason
//! code and properties, both left out when the reason is 0x00 and there
//! are no properties.

use super::properties::{Properties, PropertiesOf};
use super::reader::Reader;
use super::reason::ReasonCode;
use super::{put_remaining_length, remaining_length_len, ProtocolError};
use bytes::{BufMut, BytesMut};

/// The body of a DISCONNECT or an AUTH: a reason code and properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reasoned {
    pub reason: ReasonCode,
    /// 5.0 only: `None` when there are none.
    pub properties: Option<Box<Properties>>,
}

/// DISCONNECT's body.
pub type Disconnect = Reasoned;
/// AUTH's body.
pub type Auth = Reasoned;

impl Reasoned {
    pub fn new(reason: ReasonCode) -> Reasoned {
        Reasoned {
            reason,
            properties: None,
        }
    }

    /// A normal disconnection (or a successful AUTH).
    pub fn normal() -> Reasoned {
        Reasoned::new(ReasonCode::SUCCESS)
    }

    /// The properties; none for 3.1.1.
    pub fn properties(&self) -> &Properties {
        Properties::or_none(&self.properties)
    }

    /// `v5` false: the empty 3.1.1 DISCONNECT.
    pub(crate) fn decode(
        mut r: Reader,
        v5: bool,
        of: PropertiesOf,
    ) -> Result<Reasoned, ProtocolError> {
        let body = match v5 {
            true => read_tail(&mut r, of)?,
            false => Reasoned::normal(),
        };
        r.finish()?;
        Ok(body)
    }

    pub(crate) fn encoded_len(&self, v5: bool) -> usize {
        let rl = tail_len(self.reason, &self.properties, v5);
        1 + remaining_length_len(rl) + rl
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut, first_byte: u8, v5: bool) {
        buf.put_u8(first_byte);
        put_remaining_length(buf, tail_len(self.reason, &self.properties, v5));
        write_tail(buf, self.reason, &self.properties, v5);
    }
}

/// Reads a reason code and properties that end a 5.0 packet: each absent
/// when the packet ends before it (sections 3.4.2.1 and 3.14.2.1).
pub(crate) fn read_tail(r: &mut Reader, of: PropertiesOf) -> Result<Reasoned, ProtocolError> {
    let mut tail = Reasoned::normal();
    if r.has_remaining() {
        tail.reason = ReasonCode::check(r.u8()?, of)?;
    }
    if r.has_remaining() {
        tail.properties = Properties::decode_boxed(r, of)?;
    }
    Ok(tail)
}

/// The bytes of a reason code and properties that end a packet: none for
/// Success without properties, and none in 3.1.1.
pub(crate) fn tail_len(
    reason: ReasonCode,
    properties: &Option<Box<Properties>>,
    v5: bool,
) -> usize {
    match (v5, properties) {
        (false, _) => 0,
        (true, Some(p)) => 1 + p.encoded_len(),
        (true, None) if reason == ReasonCode::SUCCESS => 0,
        (true, None) => 1,
    }
}

/// Writes the [`tail_len`] bytes.
pub(crate) fn write_tail(
    buf: &mut BytesMut,
    reason: ReasonCode,
    properties: &Option<Box<Properties>>,
    v5: bool,
) {
    if tail_len(reason, properties, v5) > 0 {
        buf.put_u8(reason.0);
    }
    if let (true, Some(p)) = (v5, properties) {
        p.encode(buf);
    }
}
