//! MQTT 5.0 reason codes (section 2.4): the byte that says how an
//! acknowledgement, a DISCONNECT or an AUTH went, what each is called, and
//! which packets may carry it. A code a packet may not carry is a protocol
//! error when received, and never sent.

use super::properties::PropertiesOf;
use super::ProtocolError;
use std::fmt;

/// A reason code. Its name depends on the packet for 0x00 (Success, Normal
/// disconnection, Granted QoS 0); see [`ReasonCode::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReasonCode(pub u8);

impl ReasonCode {
    pub const SUCCESS: ReasonCode = ReasonCode(0x00);
    pub const GRANTED_QOS_1: ReasonCode = ReasonCode(0x01);
    pub const GRANTED_QOS_2: ReasonCode = ReasonCode(0x02);
    pub const DISCONNECT_WITH_WILL: ReasonCode = ReasonCode(0x04);
    pub const NO_MATCHING_SUBSCRIBERS: ReasonCode = ReasonCode(0x10);
    pub const NO_SUBSCRIPTION_EXISTED: ReasonCode = ReasonCode(0x11);
    pub const CONTINUE_AUTHENTICATION: ReasonCode = ReasonCode(0x18);
    pub const RE_AUTHENTICATE: ReasonCode = ReasonCode(0x19);
    pub const UNSPECIFIED_ERROR: ReasonCode = ReasonCode(0x80);
    pub const MALFORMED_PACKET: ReasonCode = ReasonCode(0x81);
    pub const PROTOCOL_ERROR: ReasonCode = ReasonCode(0x82);
    pub const IMPLEMENTATION_SPECIFIC_ERROR: ReasonCode = ReasonCode(0x83);
    pub const UNSUPPORTED_PROTOCOL_VERSION: ReasonCode = ReasonCode(0x84);
    pub const CLIENT_IDENTIFIER_NOT_VALID: ReasonCode = ReasonCode(0x85);
    pub const BAD_USER_NAME_OR_PASSWORD: ReasonCode = ReasonCode(0x86);
    pub const NOT_AUTHORIZED: ReasonCode = ReasonCode(0x87);
    pub const SERVER_UNAVAILABLE: ReasonCode = ReasonCode(0x88);
    pub const SERVER_BUSY: ReasonCode = ReasonCode(0x89);
    pub const BANNED: ReasonCode = ReasonCode(0x8A);
    pub const SERVER_SHUTTING_DOWN: ReasonCode = ReasonCode(0x8B);
    pub const BAD_AUTHENTICATION_METHOD: ReasonCode = ReasonCode(0x8C);
    pub const KEEP_ALIVE_TIMEOUT: ReasonCode = ReasonCode(0x8D);
    pub const SESSION_TAKEN_OVER: ReasonCode = ReasonCode(0x8E);
    pub const TOPIC_FILTER_INVALID: ReasonCode = ReasonCode(0x8F);
    pub const TOPIC_NAME_INVALID: ReasonCode = ReasonCode(0x90);
    pub const PACKET_IDENTIFIER_IN_USE: ReasonCode = ReasonCode(0x91);
    pub const PACKET_IDENTIFIER_NOT_FOUND: ReasonCode = ReasonCode(0x92);
    pub const RECEIVE_MAXIMUM_EXCEEDED: ReasonCode = ReasonCode(0x93);
    pub const TOPIC_ALIAS_INVALID: ReasonCode = ReasonCode(0x94);
    pub const PACKET_TOO_LARGE: ReasonCode = ReasonCode(0x95);
    pub const MESSAGE_RATE_TOO_HIGH: ReasonCode = ReasonCode(0x96);
    pub const QUOTA_EXCEEDED: ReasonCode = ReasonCode(0x97);
    pub const ADMINISTRATIVE_ACTION: ReasonCode = ReasonCode(0x98);
    pub const PAYLOAD_FORMAT_INVALID: ReasonCode = ReasonCode(0x99);
    pub const RETAIN_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9A);
    pub const QOS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9B);
    pub const USE_ANOTHER_SERVER: ReasonCode = ReasonCode(0x9C);
    pub const SERVER_MOVED: ReasonCode = ReasonCode(0x9D);
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9E);
    pub const CONNECTION_RATE_EXCEEDED: ReasonCode = ReasonCode(0x9F);
    pub const MAXIMUM_CONNECT_TIME: ReasonCode = ReasonCode(0xA0);
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA1);
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA2);

    /// Whether the code means failure (0x80 and above, section 2.4).
    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The code's name in a packet of kind `of`, as the spec's table words
    /// it; `None` when such a packet may not carry it (or the code is not
    /// defined). Packets without a reason code have none.
    pub fn name(self, of: PropertiesOf) -> Option<&'static str> {
        use PropertiesOf::*;
        let (name, places): (&str, &[PropertiesOf]) = match self.0 {
            0x00 => match of {
                Disconnect => ("normal disconnection", &[Disconnect]),
                SubAck => ("granted QoS 0", &[SubAck]),
                _ => (
                    "success",
                    &[ConnAck, PubAck, PubRec, PubRel, PubComp, UnsubAck, Auth],
                ),
            },
            0x01 => ("granted QoS 1", &[SubAck]),
            0x02 => ("granted QoS 2", &[SubAck]),
            0x04 => ("disconnect with will message", &[Disconnect]),
            0x10 => ("no matching subscribers", &[PubAck, PubRec]),
            0x11 => ("no subscription existed", &[UnsubAck]),
            0x18 => ("continue authentication", &[Auth]),
            0x19 => ("re-authenticate", &[Auth]),
            0x80 => (
                "unspecified error",
                &[ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect],
            ),
            0x81 => ("malformed packet", &[ConnAck, Disconnect]),
            0x82 => ("protocol error", &[ConnAck, Disconnect]),
            0x83 => (
                "implementation specific error",
                &[ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect],
            ),
            0x84 => ("unsupported protocol version", &[ConnAck]),
            0x85 => ("client identifier not valid", &[ConnAck]),
            0x86 => ("bad user name or password", &[ConnAck]),
            0x87 => (
                "not authorized",
                &[ConnAck, PubAck, PubRec, SubAck, UnsubAck, Disconnect],
            ),
            0x88 => ("server unavailable", &[ConnAck]),
            0x89 => ("server busy", &[ConnAck, Disconnect]),
            0x8A => ("banned", &[ConnAck]),
            0x8B => ("server shutting down", &[Disconnect]),
            0x8C => ("bad authentication method", &[ConnAck, Disconnect]),
            0x8D => ("keep alive timeout", &[Disconnect]),
            0x8E => ("session taken over", &[Disconnect]),
            0x8F => ("topic filter invalid", &[SubAck, UnsubAck, Disconnect]),
            0x90 => ("topic name invalid", &[ConnAck, PubAck, PubRec, Disconnect]),
            0x91 => (
                "packet identifier in use",
                &[PubAck, PubRec, SubAck, UnsubAck],
            ),
            0x92 => ("packet identifier not found", &[PubRel, PubComp]),
            0x93 => ("receive maximum exceeded", &[Disconnect]),
            0x94 => ("topic alias invalid", &[Disconnect]),
            0x95 => ("packet too large", &[ConnAck, Disconnect]),
            0x96 => ("message rate too high", &[Disconnect]),
            0x97 => (
                "quota exceeded",
                &[ConnAck, PubAck, PubRec, SubAck, Disconnect],
            ),
            0x98 => ("administrative action", &[Disconnect]),
            0x99 => (
                "payload format invalid",
                &[ConnAck, PubAck, PubRec, Disconnect],
            ),
            0x9A => ("retain not supported", &[ConnAck, Disconnect]),
            0x9B => ("QoS not supported", &[ConnAck, Disconnect]),
            0x9C => ("use another server", &[ConnAck, Disconnect]),
            0x9D => ("server moved", &[ConnAck, Disconnect]),
            0x9E => ("shared subscriptions not supported", &[SubAck, Disconnect]),
            0x9F => ("connection rate exceeded", &[ConnAck, Disconnect]),
            0xA0 => ("maximum connect time", &[Disconnect]),
            0xA1 => (
                "subscription identifiers not supported",
                &[SubAck, Disconnect],
            ),
            0xA2 => (
                "wildcard subscriptions not supported",
                &[SubAck, Disconnect],
            ),
            _ => return None,
        };
        places.contains(&of).then_some(name)
    }

    /// A code read from a packet of kind `of`: a code that packet may not
    /// carry is a protocol error.
    pub fn check(code: u8, of: PropertiesOf) -> Result<ReasonCode, ProtocolError> {
        let reason = ReasonCode(code);
        match reason.name(of) {
            Some(_) => Ok(reason),
            None => Err(ProtocolError::InvalidReasonCode {
                code,
                packet: of.name(),
            }),
        }
    }

    /// `0x87 (not authorized)` in a packet of kind `of`, for log lines.
    pub fn describe(self, of: PropertiesOf) -> String {
        format!("{self} ({})", self.name(of).unwrap_or("not defined there"))
    }
}

/// The code alone, `0x87`; [`ReasonCode::describe`] adds its name.
impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PropertiesOf::*;

    /// Rows of section 2.4's table: a code, a packet, its name there (or
    /// not allowed there).
    #[test]
    fn names_and_places_follow_the_table() {
        let rows = [
            (0x00, ConnAck, Some("success")),
            (0x00, Disconnect, Some("normal disconnection")),
            (0x00, SubAck, Some("granted QoS 0")),
            (0x00, Connect, None),
            (0x02, SubAck, Some("granted QoS 2")),
            (0x02, PubAck, None),
            (0x04, Disconnect, Some("disconnect with will message")),
            (0x10, PubRec, Some("no matching subscribers")),
            (0x10, PubComp, None),
            (0x87, PubAck, Some("not authorized")),
            (0x87, PubRel, None),
            (0x92, PubComp, Some("packet identifier not found")),
            (0x93, Disconnect, Some("receive maximum exceeded")),
            (0x94, Disconnect, Some("topic alias invalid")),
            (0x94, ConnAck, None),
            (0x99, PubAck, Some("payload format invalid")),
            (0x9C, ConnAck, Some("use another server")),
            (0x9D, Disconnect, Some("server moved")),
            (0xA2, SubAck, Some("wildcard subscriptions not supported")),
            (0x03, SubAck, None),
            (0xA3, Disconnect, None),
            (0xFF, Disconnect, None),
        ];
        for (code, of, name) in rows {
            assert_eq!(ReasonCode(code).name(of), name, "{code:#04x} in {of:?}");
        }
    }

    /// Every defined code is allowed somewhere, and what a packet may not
    /// carry is a protocol error when read.
    #[test]
    fn reading_a_code_a_packet_may_not_carry_is_a_protocol_error() {
        let defined: Vec<u8> = (0..=255u8)
            .filter(|c| {
                PropertiesOf::ALL
                    .iter()
                    .any(|of| ReasonCode(*c).name(*of).is_some())
            })
            .collect();
        assert_eq!(defined.len(), 43, "{defined:x?}");
        assert_eq!(
            ReasonCode::check(0x94, Disconnect),
            Ok(ReasonCode::TOPIC_ALIAS_INVALID)
        );
        assert!(matches!(
            ReasonCode::check(0x94, PubAck),
            Err(ProtocolError::InvalidReasonCode { code: 0x94, .. })
        ));
        assert_eq!(
            ReasonCode::NOT_AUTHORIZED.describe(ConnAck),
            "0x87 (not authorized)"
        );
        assert!(
            ReasonCode::NOT_AUTHORIZED.is_error()
                && !ReasonCode::NO_MATCHING_SUBSCRIBERS.is_error()
        );
    }
}
