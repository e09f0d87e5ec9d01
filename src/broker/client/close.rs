//! Every way roost closes a connection for a protocol violation, decided
//! in one function: whether a CONNACK goes first, and which counter the
//! close adds to. The codec finds the violations in the bytes, the
//! connection those in the order of packets; both end here.

use crate::protocol::{ConnectReturnCode, ProtocolError, ReasonCode};

/// What roost does when a client breaks the protocol: decided in this one
/// place for every violation, in the bytes or in the order of packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseAction {
    /// The CONNACK to send first, where the spec asks for one.
    pub connack: Option<ConnectReturnCode>,
    /// The reason a 5.0 client is told in a DISCONNECT before the close
    /// (section 4.13.2), once connected.
    pub reason: ReasonCode,
    /// Which counter the close adds to.
    pub counted_as: Violation,
}

/// The counter a close adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// `protocol_errors`: the spec says to close [MQTT-4.8.0-1].
    Protocol,
    /// `limits_refused`: a limit of `[limits]`.
    Limit,
}

/// Every protocol error closes the connection (section 4.8: "close the
/// Network Connection"); an unsupported protocol level in the first packet
/// gets CONNACK 0x01 first [MQTT-3.1.2-2].
pub fn close_action(error: &ProtocolError, first_packet: bool) -> CloseAction {
    let connack = match error {
        ProtocolError::UnsupportedProtocolLevel(_) if first_packet => {
            Some(ConnectReturnCode::UnacceptableProtocolVersion)
        }
        _ => None,
    };
    let counted_as = match error {
        ProtocolError::TopicBeyondLimits { .. } => Violation::Limit,
        _ => Violation::Protocol,
    };
    CloseAction {
        connack,
        reason: error.reason(),
        counted_as,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PacketType;

    /// Each row: a violation, whether it is the first packet, the CONNACK
    /// sent before the close, and the counter.
    #[test]
    fn every_violation_closes_and_only_a_bad_protocol_level_gets_a_connack_mqtt_3_1_2_2() {
        use ConnectReturnCode::UnacceptableProtocolVersion as Version;
        let rows = [
            (
                ProtocolError::UnsupportedProtocolLevel(5),
                true,
                Some(Version),
                Violation::Protocol,
            ),
            (
                ProtocolError::UnsupportedProtocolLevel(5),
                false,
                None,
                Violation::Protocol,
            ),
            (
                ProtocolError::FirstPacketNotConnect(PacketType::Publish),
                true,
                None,
                Violation::Protocol,
            ),
            (
                ProtocolError::SecondConnect,
                false,
                None,
                Violation::Protocol,
            ),
            (
                ProtocolError::ServerPacket(PacketType::ConnAck),
                false,
                None,
                Violation::Protocol,
            ),
            (
                ProtocolError::ZeroPacketId,
                false,
                None,
                Violation::Protocol,
            ),
            (
                ProtocolError::InvalidProtocolName("MQTX".into()),
                true,
                None,
                Violation::Protocol,
            ),
            (
                ProtocolError::TopicBeyondLimits {
                    length: 9,
                    levels: 200,
                },
                false,
                None,
                Violation::Limit,
            ),
        ];
        for (error, first, connack, counted_as) in rows {
            let action = close_action(&error, first);
            assert_eq!(
                (action.connack, action.counted_as),
                (connack, counted_as),
                "{error}"
            );
        }
    }

    /// [MQTT-4.13.2-1] A 5.0 client is told why in DISCONNECT: each row a
    /// violation and its reason code (section 2.4's table).
    #[test]
    fn a_v5_client_is_told_the_reason_mqtt_4_13_2_1() {
        let rows = [
            (ProtocolError::ZeroPacketId, 0x81),
            (
                ProtocolError::PropertyNotAllowed {
                    id: 0x23,
                    packet: "CONNECT",
                },
                0x81,
            ),
            (
                ProtocolError::DuplicateProperty {
                    id: 0x11,
                    packet: "CONNECT",
                },
                0x82,
            ),
            (ProtocolError::SecondConnect, 0x82),
            (ProtocolError::TopicAliasInvalid { alias: 0, max: 10 }, 0x94),
            (ProtocolError::UnknownTopicAlias(3), 0x82),
            (ProtocolError::PacketTooLarge { size: 9, max: 8 }, 0x95),
            (ProtocolError::WildcardInTopicName("a/+".into()), 0x90),
            (ProtocolError::SessionExpiryFromZero, 0x82),
        ];
        for (error, reason) in rows {
            assert_eq!(
                close_action(&error, false).reason,
                ReasonCode(reason),
                "{error}"
            );
            assert!(
                close_action(&error, false)
                    .reason
                    .name(crate::protocol::PropertiesOf::Disconnect)
                    .is_some(),
                "{error}: a code DISCONNECT may carry"
            );
        }
    }
}
