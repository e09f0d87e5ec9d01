//! CONNACK (section 3.2): the server's answer to CONNECT.

use super::reader::Reader;
use super::ProtocolError;
use bytes::{BufMut, BytesMut};

/// CONNACK return codes (section 3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectReturnCode {
    Accepted = 0,
    UnacceptableProtocolVersion = 1,
    IdentifierRejected = 2,
    ServerUnavailable = 3,
    BadUsernameOrPassword = 4,
    NotAuthorized = 5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub code: ConnectReturnCode,
}

impl ConnAck {
    pub(crate) fn decode(mut r: Reader) -> Result<ConnAck, ProtocolError> {
        let flags = r.u8()?;
        let code = r.u8()?;
        r.finish()?;
        if flags & !1 != 0 {
            return Err(ProtocolError::InvalidConnAck);
        }
        use ConnectReturnCode::*;
        let code = match code {
            0 => Accepted,
            1 => UnacceptableProtocolVersion,
            2 => IdentifierRejected,
            3 => ServerUnavailable,
            4 => BadUsernameOrPassword,
            5 => NotAuthorized,
            _ => return Err(ProtocolError::InvalidConnAck),
        };
        Ok(ConnAck {
            session_present: flags & 1 != 0,
            code,
        })
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(&[0x20, 2, self.session_present as u8, self.code as u8]);
    }
}
