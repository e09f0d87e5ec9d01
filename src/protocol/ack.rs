//! The packets that carry nothing but a packet identifier: PUBACK (3.4),
//! PUBREC (3.5), PUBREL (3.6), PUBCOMP (3.7) and UNSUBACK (3.11).

use super::reader::Reader;
use super::{PacketId, ProtocolError};
use bytes::{BufMut, BytesMut};

pub(crate) fn decode(mut r: Reader) -> Result<PacketId, ProtocolError> {
    let id = r.packet_id()?;
    r.finish()?;
    Ok(id)
}

/// `first_byte` is the packet type shifted left with its fixed flags.
pub(crate) fn encode(buf: &mut BytesMut, first_byte: u8, id: PacketId) {
    buf.put_u8(first_byte);
    buf.put_u8(2);
    buf.put_u16(id.get());
}
