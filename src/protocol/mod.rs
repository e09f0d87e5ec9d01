//! The MQTT wire format of 3.1, 3.1.1 and 5.0: pure, synchronous, no I/O.
//!
//! Every packet type lives in its own file with its decode and encode side by
//! side; one [`Packet`] type serves every version, its 5.0 parts (reason
//! codes, properties) left empty for 3.1.1. [`codec::MqttCodec`] frames a
//! byte stream into [`Packet`]s for tokio-util, in the version the CONNECT
//! chose, and rejects anything the spec calls malformed with a
//! [`ProtocolError`] that names the normative statement it violates. What the
//! connection does with an error (a CONNACK code, or a plain close) is decided
//! in one place: `broker::client::close::close_action`.

mod ack;
mod alias;
pub mod codec;
mod connack;
mod connect;
mod disconnect;
mod error;
pub mod properties;
mod publish;
mod reader;
pub mod reason;
mod suback;
mod subscribe;
mod topic;
mod unsubscribe;

pub use ack::Ack;
pub use alias::{OutboundAliases, TopicAliases};
pub use codec::MqttCodec;
pub use connack::{ConnAck, ConnectReturnCode};
pub use connect::{Connect, LastWill, ProtocolVersion};
pub use disconnect::{Auth, Disconnect, Reasoned};
pub use error::ProtocolError;
pub use properties::{Properties, PropertiesOf};
pub use publish::Publish;
pub use reason::ReasonCode;
pub use suback::{SubAck, UnsubAck};
pub use subscribe::{RetainHandling, Subscribe, SubscribeTopic, SubscriptionOptions};
pub use topic::{detached, filter_covers, TopicFilter, TopicName};
pub use unsubscribe::Unsubscribe;

use bytes::{BufMut, BytesMut};
use std::fmt;
use std::num::NonZeroU16;

/// Quality of service of a message or subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// Parses the two QoS bits; 3 is reserved and never a valid QoS.
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A packet identifier: never zero for packets that carry one [MQTT-2.3.1-1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    pub fn new(v: u16) -> Option<PacketId> {
        NonZeroU16::new(v).map(PacketId)
    }
    pub fn get(self) -> u16 {
        self.0.get()
    }
    /// The next identifier after this one, wrapping from 65535 to 1.
    pub fn next(self) -> PacketId {
        match self.0.get() {
            u16::MAX => PacketId(NonZeroU16::MIN),
            v => PacketId(NonZeroU16::MIN.saturating_add(v)),
        }
    }
}

impl fmt::Display for PacketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Control packet types, numbered as in the fixed header (section 2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    /// 5.0 only.
    Auth = 15,
}

/// The packet's name as the spec writes it: `PUBLISH`, `PUBACK`, ...
impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PacketType::*;
        f.write_str(match self {
            Connect => "CONNECT",
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
            PingReq => "PINGREQ",
            PingResp => "PINGRESP",
            Disconnect => "DISCONNECT",
            Auth => "AUTH",
        })
    }
}

impl PacketType {
    fn from_u8(v: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match v {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }
}

/// One MQTT control packet, of any version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// 5.0 only.
    Auth(Auth),
}

impl Packet {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// A 3.1.1 DISCONNECT (and a 5.0 normal disconnection).
    pub fn disconnect() -> Packet {
        Packet::Disconnect(Disconnect::normal())
    }

    /// Appends the packet's wire form in `version` to `buf`. What 3.1.1
    /// has no place for (properties, most reason codes) is left out; an
    /// AUTH is never sent to a 3.1.1 client.
    pub fn encode(&self, buf: &mut BytesMut, version: ProtocolVersion) {
        let v5 = version.is_v5();
        match self {
            Packet::Connect(c) => c.encode(buf),
            Packet::ConnAck(c) => c.encode(buf, v5),
            Packet::Publish(p) => p.encode(buf, v5),
            Packet::PubAck(a) => a.encode(buf, 0x40, v5),
            Packet::PubRec(a) => a.encode(buf, 0x50, v5),
            Packet::PubRel(a) => a.encode(buf, 0x62, v5),
            Packet::PubComp(a) => a.encode(buf, 0x70, v5),
            Packet::Subscribe(s) => s.encode(buf, v5),
            Packet::SubAck(s) => s.encode(buf, v5, false),
            Packet::Unsubscribe(u) => u.encode(buf, v5),
            Packet::UnsubAck(u) => u.encode(buf, v5, true),
            Packet::PingReq => buf.put_slice(&[0xC0, 0]),
            Packet::PingResp => buf.put_slice(&[0xD0, 0]),
            Packet::Disconnect(d) => d.encode(buf, 0xE0, v5),
            Packet::Auth(a) => {
                debug_assert!(v5, "AUTH to a 3.1.1 client");
                a.encode(buf, 0xF0, v5)
            }
        }
    }

    /// An acknowledgement of something the client sent (PUBACK, PUBREC,
    /// PUBCOMP, SUBACK, UNSUBACK, PINGRESP).
    pub fn is_acknowledgement(&self) -> bool {
        matches!(
            self,
            Packet::PubAck(_)
                | Packet::PubRec(_)
                | Packet::PubComp(_)
                | Packet::SubAck(_)
                | Packet::UnsubAck(_)
                | Packet::PingResp
        )
    }

    /// Size of the packet on the wire in `version`, for queue accounting.
    pub fn wire_len(&self, version: ProtocolVersion) -> usize {
        let v5 = version.is_v5();
        match self {
            Packet::Publish(p) => p.wire_len(v5),
            Packet::ConnAck(c) => c.encoded_len(v5),
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
                a.encoded_len(v5)
            }
            Packet::SubAck(s) => s.encoded_len(v5, false),
            Packet::UnsubAck(s) => s.encoded_len(v5, true),
            Packet::Disconnect(d) | Packet::Auth(d) => d.encoded_len(v5),
            Packet::PingReq | Packet::PingResp => 2,
            Packet::Connect(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => {
                let mut b = BytesMut::new();
                self.encode(&mut b, version);
                b.len()
            }
        }
    }
}

/// Reads the remaining-length varint at the start of `buf` (the Variable
/// Byte Integer of section 1.5.5): `Ok(None)` when more bytes are needed,
/// else the value and how many bytes it took.
pub(crate) fn remaining_length(buf: &[u8]) -> Result<Option<(usize, usize)>, ProtocolError> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        value |= ((byte & 0x7F) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(ProtocolError::MalformedRemainingLength)
}

/// Writes a remaining length as the variable-length integer of section 2.2.3.
pub(crate) fn put_remaining_length(buf: &mut BytesMut, mut len: usize) {
    debug_assert!(len <= MAX_REMAINING_LENGTH);
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

/// Number of bytes the variable-length encoding of `len` takes.
pub(crate) fn remaining_length_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Largest remaining length four varint bytes can express (section 2.2.3).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

pub(crate) fn put_str(buf: &mut BytesMut, s: &str) {
    put_bytes(buf, s.as_bytes());
}

/// A length-prefixed field: at most 65,535 bytes, which every caller
/// holds to (what roost encodes was decoded from such a field, or is a
/// topic within `max_topic_length`); a longer one would be a wrong length.
pub(crate) fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    debug_assert!(
        b.len() <= usize::from(u16::MAX),
        "a field of {} bytes",
        b.len()
    );
    buf.put_u16(b.len() as u16);
    buf.put_slice(b);
}
