//! MQTT 5.0 packets as bytes, built by hand from the spec's figures
//! (sections 2.2.2 and 3.x), and a reader of the properties roost sends:
//! independent of `roost::protocol`, like `raw`.

use super::raw::{field, packet, varint, RawClient, RawPacket};
use std::net::SocketAddr;

/// One property on the wire: its identifier, then its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prop {
    Byte(u8, u8),
    Two(u8, u16),
    Four(u8, u32),
    /// A Variable Byte Integer (Subscription Identifier).
    Var(u8, u32),
    Str(u8, String),
    Bin(u8, Vec<u8>),
    User(String, String),
}

pub const SESSION_EXPIRY: u8 = 0x11;
pub const ASSIGNED_CLIENT_ID: u8 = 0x12;
pub const SERVER_KEEP_ALIVE: u8 = 0x13;
pub const RECEIVE_MAXIMUM: u8 = 0x21;
pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub const TOPIC_ALIAS: u8 = 0x23;
pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub const WILL_DELAY: u8 = 0x18;
pub const SUBSCRIPTION_ID_AVAILABLE: u8 = 0x29;
pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// A property block: its length, then each property.
pub fn props(list: &[Prop]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in list {
        match p {
            Prop::Byte(id, v) => body.extend([*id, *v]),
            Prop::Two(id, v) => {
                body.push(*id);
                body.extend(v.to_be_bytes());
            }
            Prop::Four(id, v) => {
                body.push(*id);
                body.extend(v.to_be_bytes());
            }
            Prop::Var(id, v) => {
                body.push(*id);
                body.extend(varint(*v as usize));
            }
            Prop::Str(id, s) => {
                body.push(*id);
                body.extend(field(s.as_bytes()));
            }
            Prop::Bin(id, b) => {
                body.push(*id);
                body.extend(field(b));
            }
            Prop::User(k, v) => {
                body.push(0x26);
                body.extend(field(k.as_bytes()));
                body.extend(field(v.as_bytes()));
            }
        }
    }
    let mut out = varint(body.len());
    out.extend(body);
    out
}

/// CONNECT at level 5 (figure 3-... of section 3.1): protocol name,
/// level, flags, keep-alive, properties, then the client id.
pub fn connect(
    client_id: &str,
    clean_start: bool,
    keep_alive: u16,
    properties: &[Prop],
) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.push(5);
    body.push(if clean_start { 0x02 } else { 0 });
    body.extend(keep_alive.to_be_bytes());
    body.extend(props(properties));
    body.extend(field(client_id.as_bytes()));
    packet(0x10, &body)
}

/// CONNECT at level 5 with a will at QoS 0: the will's properties, topic
/// and payload follow the client id (section 3.1.3).
pub fn connect_with_will(
    client_id: &str,
    connect: &[Prop],
    topic: &str,
    payload: &[u8],
    will: &[Prop],
) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.push(5);
    body.push(0x02 | 0x04); // clean start, will
    body.extend(60u16.to_be_bytes());
    body.extend(props(connect));
    body.extend(field(client_id.as_bytes()));
    body.extend(props(will));
    body.extend(field(topic.as_bytes()));
    body.extend(field(payload));
    packet(0x10, &body)
}

/// PUBLISH: topic, packet id (QoS 1/2), properties, payload.
pub fn publish(
    topic: &str,
    payload: &[u8],
    qos: u8,
    packet_id: u16,
    properties: &[Prop],
) -> Vec<u8> {
    let mut body = field(topic.as_bytes());
    if qos > 0 {
        body.extend(packet_id.to_be_bytes());
    }
    body.extend(props(properties));
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

/// SUBSCRIBE: packet id, properties, then each filter and options byte.
pub fn subscribe(packet_id: u16, filters: &[(&str, u8)], properties: &[Prop]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(props(properties));
    for (f, options) in filters {
        body.extend(field(f.as_bytes()));
        body.push(*options);
    }
    packet(0x82, &body)
}

/// UNSUBSCRIBE: packet id, properties, filters.
pub fn unsubscribe(packet_id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(props(&[]));
    for f in filters {
        body.extend(field(f.as_bytes()));
    }
    packet(0xA2, &body)
}

/// A DISCONNECT with a reason code and properties.
pub fn disconnect(reason: u8, properties: &[Prop]) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props(properties));
    packet(0xE0, &body)
}

/// Reads a property block at `at` in `b`; returns the properties and where
/// the block ends.
pub fn read_props(b: &[u8], at: usize) -> (Vec<Prop>, usize) {
    let (len, mut i) = read_varint(b, at);
    let end = i + len as usize;
    let mut out = Vec::new();
    let two = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let string = |i: usize| {
        let n = two(i) as usize;
        (b[i + 2..i + 2 + n].to_vec(), i + 2 + n)
    };
    while i < end {
        let id = b[i];
        i += 1;
        let p = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                i += 1;
                Prop::Byte(id, b[i - 1])
            }
            0x13 | 0x21 | 0x22 | 0x23 => {
                i += 2;
                Prop::Two(id, two(i - 2))
            }
            0x02 | 0x11 | 0x18 | 0x27 => {
                i += 4;
                Prop::Four(
                    id,
                    u32::from_be_bytes([b[i - 4], b[i - 3], b[i - 2], b[i - 1]]),
                )
            }
            0x0B => {
                let (v, next) = read_varint(b, i);
                i = next;
                Prop::Var(id, v)
            }
            0x09 | 0x16 => {
                let (v, next) = string(i);
                i = next;
                Prop::Bin(id, v)
            }
            0x26 => {
                let (k, next) = string(i);
                let (v, next) = string(next);
                i = next;
                Prop::User(String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap())
            }
            _ => {
                let (v, next) = string(i);
                i = next;
                Prop::Str(id, String::from_utf8(v).unwrap())
            }
        };
        out.push(p);
    }
    assert_eq!(i, end, "a property ran past its block");
    (out, end)
}

fn read_varint(b: &[u8], mut at: usize) -> (u32, usize) {
    let mut value = 0u32;
    for shift in (0..28).step_by(7) {
        let byte = b[at];
        at += 1;
        value |= u32::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    (value, at)
}

/// A 5.0 CONNACK, read: session present, reason code, properties.
#[derive(Debug)]
pub struct ConnAck {
    pub session_present: bool,
    pub reason: u8,
    pub props: Vec<Prop>,
}

impl ConnAck {
    pub fn parse(p: &RawPacket) -> ConnAck {
        assert_eq!(p.first, 0x20, "expected CONNACK, got {p:?}");
        let (props, end) = read_props(&p.body, 2);
        assert_eq!(end, p.body.len(), "bytes after CONNACK's properties");
        ConnAck {
            session_present: p.body[0] & 1 == 1,
            reason: p.body[1],
            props,
        }
    }

    /// The value of a numeric property, if present.
    pub fn number(&self, id: u8) -> Option<u32> {
        self.props.iter().find_map(|p| match p {
            Prop::Byte(i, v) if *i == id => Some(u32::from(*v)),
            Prop::Two(i, v) if *i == id => Some(u32::from(*v)),
            Prop::Four(i, v) if *i == id => Some(*v),
            _ => None,
        })
    }

    pub fn string(&self, id: u8) -> Option<&str> {
        self.props.iter().find_map(|p| match p {
            Prop::Str(i, s) if *i == id => Some(s.as_str()),
            _ => None,
        })
    }
}

/// A 5.0 PUBLISH, read.
#[derive(Debug)]
pub struct Publish {
    pub topic: String,
    pub qos: u8,
    pub packet_id: Option<u16>,
    pub props: Vec<Prop>,
    pub payload: Vec<u8>,
}

impl Publish {
    pub fn parse(p: &RawPacket) -> Publish {
        assert_eq!(p.kind(), 3, "expected PUBLISH, got {p:?}");
        let qos = (p.first >> 1) & 3;
        let n = u16::from_be_bytes([p.body[0], p.body[1]]) as usize;
        let topic = String::from_utf8(p.body[2..2 + n].to_vec()).unwrap();
        let mut at = 2 + n;
        let packet_id = (qos > 0).then(|| {
            at += 2;
            u16::from_be_bytes([p.body[at - 2], p.body[at - 1]])
        });
        let (props, end) = read_props(&p.body, at);
        Publish {
            topic,
            qos,
            packet_id,
            props,
            payload: p.body[end..].to_vec(),
        }
    }
}

/// The reason code and properties of a DISCONNECT (or AUTH); 0x00 when
/// the packet is two bytes.
pub fn reason_of(p: &RawPacket) -> (u8, Vec<Prop>) {
    match p.body.len() {
        0 => (0, Vec::new()),
        1 => (p.body[0], Vec::new()),
        _ => {
            let (props, _) = read_props(&p.body, 1);
            (p.body[0], props)
        }
    }
}

impl RawClient {
    /// Opens a socket, sends a 5.0 CONNECT and expects an accepting CONNACK.
    pub async fn connected_v5(
        addr: SocketAddr,
        client_id: &str,
        clean_start: bool,
        properties: &[Prop],
    ) -> (RawClient, ConnAck) {
        let mut c = RawClient::connect(addr).await;
        c.send(&connect(client_id, clean_start, 60, properties))
            .await;
        let ack = ConnAck::parse(&c.recv().await);
        assert_eq!(ack.reason, 0, "CONNACK refused: {ack:?}");
        (c, ack)
    }

    /// Reads packets until the broker closes; the last must be a DISCONNECT
    /// with `reason`.
    pub async fn expect_disconnect(&mut self, reason: u8) {
        let got = self.expect_closed().await;
        let last = got
            .last()
            .unwrap_or_else(|| panic!("closed without DISCONNECT"));
        assert_eq!(last.first, 0xE0, "expected DISCONNECT last, got {got:?}");
        assert_eq!(reason_of(last).0, reason, "DISCONNECT reason: {got:?}");
    }
}
