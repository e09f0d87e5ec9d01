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

/// The code and its meaning, as the spec's table words it:
/// `0x04 (bad user name or password)`.
impl std::fmt::Display for ConnectReturnCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use ConnectReturnCode::*;
        let meaning = match self {
            Accepted => "accepted",
            UnacceptableProtocolVersion => "unacceptable protocol version",
            IdentifierRejected => "identifier rejected",
            ServerUnavailable => "server unavailable",
            BadUsernameOrPassword => "bad user name or password",
            NotAuthorized => "not authorized",
        };
        write!(f, "0x{:02x} ({meaning})", *self as u8)
    }
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
