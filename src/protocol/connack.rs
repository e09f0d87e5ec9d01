//! CONNACK (section 3.2): the server's answer to CONNECT. 3.1.1 carries a
//! return code; 5.0 a reason code and properties.

use super::properties::{Properties, PropertiesOf};
use super::reader::Reader;
use super::reason::ReasonCode;
use super::{put_remaining_length, ProtocolError};
use bytes::{BufMut, BytesMut};

/// CONNACK return codes of 3.1.1 (section 3.2.2.3).
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

/// Each 3.1.1 return code is the 5.0 reason code of the same meaning.
impl From<ConnectReturnCode> for ReasonCode {
    fn from(code: ConnectReturnCode) -> ReasonCode {
        use ConnectReturnCode::*;
        match code {
            Accepted => ReasonCode::SUCCESS,
            UnacceptableProtocolVersion => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            IdentifierRejected => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            ServerUnavailable => ReasonCode::SERVER_UNAVAILABLE,
            BadUsernameOrPassword => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            NotAuthorized => ReasonCode::NOT_AUTHORIZED,
        }
    }
}

impl ConnectReturnCode {
    /// The 3.1.1 code closest to a 5.0 reason code: what a 3.1.1 client is
    /// sent where a 5.0 client would get `reason`. Codes 3.1.1 has no word
    /// for are "server unavailable".
    pub fn from_reason(reason: ReasonCode) -> ConnectReturnCode {
        use ConnectReturnCode::*;
        match reason {
            ReasonCode::SUCCESS => Accepted,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => UnacceptableProtocolVersion,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => IdentifierRejected,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD | ReasonCode::BAD_AUTHENTICATION_METHOD => {
                BadUsernameOrPassword
            }
            ReasonCode::NOT_AUTHORIZED | ReasonCode::BANNED => NotAuthorized,
            _ => ServerUnavailable,
        }
    }

    fn from_u8(code: u8) -> Option<ConnectReturnCode> {
        use ConnectReturnCode::*;
        Some(match code {
            0 => Accepted,
            1 => UnacceptableProtocolVersion,
            2 => IdentifierRejected,
            3 => ServerUnavailable,
            4 => BadUsernameOrPassword,
            5 => NotAuthorized,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// The outcome as a 5.0 reason code; a 3.1.1 client is sent
    /// [`ConnectReturnCode::from_reason`] of it.
    pub reason: ReasonCode,
    /// 5.0 only: `None` when there are none.
    pub properties: Option<Box<Properties>>,
}

impl ConnAck {
    /// A CONNACK without properties.
    pub fn new(session_present: bool, code: impl Into<ReasonCode>) -> ConnAck {
        ConnAck {
            session_present,
            reason: code.into(),
            properties: None,
        }
    }

    /// The outcome as a 3.1.1 client is told it.
    pub fn return_code(&self) -> ConnectReturnCode {
        ConnectReturnCode::from_reason(self.reason)
    }

    pub(crate) fn decode(mut r: Reader, v5: bool) -> Result<ConnAck, ProtocolError> {
        let flags = r.u8()?;
        let code = r.u8()?;
        if flags & !1 != 0 {
            return Err(ProtocolError::InvalidConnAck);
        }
        let (reason, properties) = if v5 {
            let reason = ReasonCode::check(code, PropertiesOf::ConnAck)?;
            (
                reason,
                Properties::decode_boxed(&mut r, PropertiesOf::ConnAck)?,
            )
        } else {
            let code = ConnectReturnCode::from_u8(code).ok_or(ProtocolError::InvalidConnAck)?;
            (code.into(), None)
        };
        r.finish()?;
        Ok(ConnAck {
            session_present: flags & 1 != 0,
            reason,
            properties,
        })
    }

    pub(crate) fn encoded_len(&self, v5: bool) -> usize {
        let rl = self.remaining_length(v5);
        1 + super::remaining_length_len(rl) + rl
    }

    fn remaining_length(&self, v5: bool) -> usize {
        2 + if v5 {
            Properties::boxed_len(&self.properties)
        } else {
            0
        }
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut, v5: bool) {
        buf.put_u8(0x20);
        put_remaining_length(buf, self.remaining_length(v5));
        buf.put_u8(self.session_present as u8);
        if v5 {
            buf.put_u8(self.reason.0);
            Properties::encode_boxed(&self.properties, buf);
        } else {
            buf.put_u8(self.return_code() as u8);
        }
    }
}
