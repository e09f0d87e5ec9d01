//! Where each MQTT 5.0 property may appear: the packets of section
//! 2.2.2.2's table, and the identifiers.

/// Where a property block is: each property may appear only in some of
/// these (the table of section 2.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertiesOf {
    Connect,
    /// The will's own block, inside CONNECT's payload (section 3.1.3.2).
    Will,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropertiesOf {
    pub const ALL: [PropertiesOf; 14] = [
        PropertiesOf::Connect,
        PropertiesOf::Will,
        PropertiesOf::ConnAck,
        PropertiesOf::Publish,
        PropertiesOf::PubAck,
        PropertiesOf::PubRec,
        PropertiesOf::PubRel,
        PropertiesOf::PubComp,
        PropertiesOf::Subscribe,
        PropertiesOf::SubAck,
        PropertiesOf::Unsubscribe,
        PropertiesOf::UnsubAck,
        PropertiesOf::Disconnect,
        PropertiesOf::Auth,
    ];

    /// As the spec writes it, for error messages.
    pub fn name(self) -> &'static str {
        use PropertiesOf::*;
        match self {
            Connect => "CONNECT",
            Will => "the will properties",
            ConnAck => "CONNACK",
            Publish => "PUBLISH",
            PubAck => "PUBACK",
            PubRec => "PUBREC",
            PubRel => "PUBREL",
            PubComp => "PUBCOMP",
            Subscribe => "SUBSCRIBE",
            SubAck => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            UnsubAck => "UNSUBACK",
            Disconnect => "DISCONNECT",
            Auth => "AUTH",
        }
    }
}

/// Property identifiers (section 2.2.2.2).
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Whether property `id` may appear in a block of `of` (section 2.2.2.2's
/// table); `None` for an identifier the spec does not define.
pub fn allowed(id: u8, of: PropertiesOf) -> Option<bool> {
    use PropertiesOf::*;
    let places: &[PropertiesOf] = match id {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::MESSAGE_EXPIRY_INTERVAL
        | id::CONTENT_TYPE
        | id::RESPONSE_TOPIC
        | id::CORRELATION_DATA => &[Publish, Will],
        id::SUBSCRIPTION_IDENTIFIER => &[Publish, Subscribe],
        id::SESSION_EXPIRY_INTERVAL => &[Connect, ConnAck, Disconnect],
        id::ASSIGNED_CLIENT_IDENTIFIER
        | id::SERVER_KEEP_ALIVE
        | id::RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => &[ConnAck],
        id::AUTHENTICATION_METHOD | id::AUTHENTICATION_DATA => &[Connect, ConnAck, Auth],
        id::REQUEST_PROBLEM_INFORMATION | id::REQUEST_RESPONSE_INFORMATION => &[Connect],
        id::WILL_DELAY_INTERVAL => &[Will],
        id::SERVER_REFERENCE => &[ConnAck, Disconnect],
        id::REASON_STRING => &[
            ConnAck, PubAck, PubRec, PubRel, PubComp, SubAck, UnsubAck, Disconnect, Auth,
        ],
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM | id::MAXIMUM_PACKET_SIZE => {
            &[Connect, ConnAck]
        }
        id::TOPIC_ALIAS => &[Publish],
        id::USER_PROPERTY => &PropertiesOf::ALL,
        _ => return None,
    };
    Some(places.contains(&of))
}
