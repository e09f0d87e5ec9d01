//! Every way a client can violate MQTT 3.1.1, named after the normative
//! statement it breaks: in the bytes (found by the codec) or in the order
//! of packets (found by the connection). The connection maps each to its
//! consequence in one place, `broker::client::close::close_action`.

use super::{PacketType, ReasonCode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("reserved packet type {0} [MQTT-2.2.1]")]
    ReservedPacketType(u8),
    #[error("invalid fixed header flags {flags:#06b} for {packet} [MQTT-2.2.2-2]")]
    InvalidHeaderFlags { packet: PacketType, flags: u8 },
    #[error("remaining length longer than four bytes [MQTT-2.2.3]")]
    MalformedRemainingLength,
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: usize },
    #[error("{packet} ends before its fields do (remaining length {remaining})")]
    Truncated {
        packet: PacketType,
        remaining: usize,
    },
    #[error("{packet} has {extra} bytes after its last field")]
    TrailingBytes { packet: PacketType, extra: usize },
    #[error("string is not well-formed UTF-8 [MQTT-1.5.3-1]")]
    InvalidUtf8,
    #[error("string contains U+0000 [MQTT-1.5.3-2]")]
    NullCharacter,
    #[error("protocol name {0:?} is neither MQTT nor MQIsdp [MQTT-3.1.2-1]")]
    InvalidProtocolName(String),
    #[error("unsupported protocol level {0} [MQTT-3.1.2-2]")]
    UnsupportedProtocolLevel(u8),
    #[error("CONNECT reserved flag is set [MQTT-3.1.2-3]")]
    ConnectReservedFlag,
    #[error("will QoS or will retain set without the will flag [MQTT-3.1.2-11]")]
    WillFlagsWithoutWill,
    #[error("will QoS is 3 [MQTT-3.1.2-14]")]
    InvalidWillQoS,
    #[error("password flag set without the user name flag [MQTT-3.1.2-22]")]
    PasswordWithoutUsername,
    #[error("PUBLISH QoS bits are 3 [MQTT-3.3.1-4]")]
    InvalidQoS,
    #[error("DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")]
    DupOnQoS0,
    #[error("packet identifier is 0 [MQTT-2.3.1-1]")]
    ZeroPacketId,
    #[error("topic name {0:?} contains a wildcard [MQTT-3.3.2-2]")]
    WildcardInTopicName(String),
    #[error("topic name or filter is empty [MQTT-4.7.3-1]")]
    EmptyTopic,
    #[error("invalid topic filter {0:?}: '#' must be last and alone in its level, '+' alone in its level [MQTT-4.7.1-2] [MQTT-4.7.1-3]")]
    InvalidTopicFilter(String),
    #[error("SUBSCRIBE has no topic filter [MQTT-3.8.3-3]")]
    EmptySubscribe,
    #[error("SUBSCRIBE requested QoS byte {0:#04x} has reserved bits or QoS 3 [MQTT-3.8.3-4]")]
    InvalidRequestedQoS(u8),
    #[error("UNSUBSCRIBE has no topic filter [MQTT-3.10.3-2]")]
    EmptyUnsubscribe,
    #[error("CONNACK reserved bits set or invalid return code")]
    InvalidConnAck,
    #[error("SUBACK return code {0:#04x} is not 0x00, 0x01, 0x02 or 0x80 [MQTT-3.9.3-2]")]
    InvalidSubAckCode(u8),
    #[error("first packet is {0}, not CONNECT [MQTT-3.1.0-1]")]
    FirstPacketNotConnect(PacketType),
    #[error("second CONNECT [MQTT-3.1.0-2]")]
    SecondConnect,
    #[error("a Variable Byte Integer longer than four bytes (section 1.5.5)")]
    MalformedVariableByteInteger,
    #[error("unknown property identifier {0:#04x} (section 2.2.2.2)")]
    UnknownProperty(u8),
    #[error("property {id:#04x} is not allowed in {packet} (section 2.2.2.2)")]
    PropertyNotAllowed { id: u8, packet: &'static str },
    #[error("property {id:#04x} appears more than once in {packet} (section 2.2.2.2)")]
    DuplicateProperty { id: u8, packet: &'static str },
    #[error("property {id:#04x} has the value {value}, outside its range (section 2.2.2.2)")]
    InvalidPropertyValue { id: u8, value: u32 },
    #[error("reason code {code:#04x} is not one {packet} may carry (section 2.4)")]
    InvalidReasonCode { code: u8, packet: &'static str },
    /// PUBREC or PUBCOMP answering a QoS 1 PUBLISH, or PUBACK a QoS 2 one.
    #[error("{got} for packet id {packet_id}, whose PUBLISH awaits {expected} [MQTT-4.8.0-1]")]
    AckOfWrongType {
        got: PacketType,
        expected: PacketType,
        packet_id: u16,
    },
    #[error(
        "topic alias {alias} is 0 or above the maximum of {max} [MQTT-3.3.2-8] [MQTT-3.3.2-9]"
    )]
    TopicAliasInvalid { alias: u16, max: u16 },
    #[error(
        "PUBLISH with an empty topic uses topic alias {0}, which was never set (section 3.3.2.3.4)"
    )]
    UnknownTopicAlias(u16),
    #[error("PUBLISH has an empty topic name and no topic alias (section 3.3.2.1)")]
    EmptyTopicWithoutAlias,
    #[error("SUBSCRIBE options byte {0:#04x} has reserved bits set [MQTT-3.8.3-5] or Retain Handling 3 (section 3.8.3.1)")]
    InvalidSubscriptionOptions(u8),
    #[error("DISCONNECT changes the Session Expiry Interval from 0 (section 3.14.2.2.2)")]
    SessionExpiryFromZero,
    #[error("Response Topic {0:?} contains a wildcard [MQTT-3.3.2-14]")]
    WildcardInResponseTopic(String),
    #[error("Authentication Data without an Authentication Method (section 3.1.2.11.10)")]
    AuthenticationDataWithoutMethod,
    #[error("a QoS 0 PUBLISH says its payload is UTF-8 and it is not (section 3.3.2.3.2)")]
    PayloadNotUtf8,
    #[error("AUTH on a connection whose CONNECT named no Authentication Method (section 4.12)")]
    AuthWithoutMethod,
    #[error("sent {0}, which only a server sends (section 2.2.1)")]
    ServerPacket(PacketType),
    /// roost's rule, not the spec's: a topic beyond `[limits]`.
    #[error("PUBLISH topic of {length} bytes in {levels} levels is beyond limits.max_topic_length or max_topic_levels")]
    TopicBeyondLimits { length: usize, levels: usize },
}

impl ProtocolError {
    /// The reason code a 5.0 client is sent (in CONNACK or DISCONNECT)
    /// before the close: 0x81 for bytes that do not parse as the packet
    /// (section 2.2.2.2: a property not valid for its packet too), 0x82
    /// for a well-formed packet that breaks a rule, and the specific code
    /// where the spec has one.
    pub fn reason(&self) -> ReasonCode {
        use ProtocolError::*;
        match self {
            ReservedPacketType(_)
            | InvalidHeaderFlags { .. }
            | MalformedRemainingLength
            | Truncated { .. }
            | TrailingBytes { .. }
            | InvalidUtf8
            | NullCharacter
            | ConnectReservedFlag
            | WillFlagsWithoutWill
            | InvalidWillQoS
            | InvalidQoS
            | DupOnQoS0
            | ZeroPacketId
            | EmptySubscribe
            | InvalidRequestedQoS(_)
            | InvalidSubscriptionOptions(_)
            | EmptyUnsubscribe
            | InvalidConnAck
            | InvalidSubAckCode(_)
            | MalformedVariableByteInteger
            | UnknownProperty(_)
            | PropertyNotAllowed { .. }
            | InvalidPropertyValue { .. }
            | InvalidReasonCode { .. } => ReasonCode::MALFORMED_PACKET,
            InvalidTopicFilter(_) | EmptyTopic => ReasonCode::MALFORMED_PACKET,
            WildcardInTopicName(_) | TopicBeyondLimits { .. } => ReasonCode::TOPIC_NAME_INVALID,
            PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            PayloadNotUtf8 => ReasonCode::PAYLOAD_FORMAT_INVALID,
            TopicAliasInvalid { .. } => ReasonCode::TOPIC_ALIAS_INVALID,
            InvalidProtocolName(_) | UnsupportedProtocolLevel(_) => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            PasswordWithoutUsername
            | FirstPacketNotConnect(_)
            | SecondConnect
            | DuplicateProperty { .. }
            | AckOfWrongType { .. }
            | ServerPacket(_)
            | UnknownTopicAlias(_)
            | EmptyTopicWithoutAlias
            | SessionExpiryFromZero
            | AuthWithoutMethod
            | WildcardInResponseTopic(_)
            | AuthenticationDataWithoutMethod => ReasonCode::PROTOCOL_ERROR,
        }
    }
}
