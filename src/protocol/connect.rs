//! CONNECT (section 3.1): the first packet of every connection.

use super::properties::{Properties, PropertiesOf};
use super::reader::Reader;
use super::{put_bytes, put_remaining_length, put_str, PacketType, ProtocolError, QoS, TopicName};
use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

/// Which protocol the client speaks, from the protocol name and level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V31,
    /// MQTT 3.1.1: protocol name "MQTT", level 4.
    V311,
    /// MQTT 5.0: protocol name "MQTT", level 5.
    V5,
}

impl ProtocolVersion {
    /// Every version roost speaks, in the order of [`ProtocolVersion::index`].
    pub const ALL: [ProtocolVersion; 3] = [
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ];

    /// Its place in [`ProtocolVersion::ALL`] (for counters kept per version).
    pub fn index(self) -> usize {
        match self {
            ProtocolVersion::V31 => 0,
            ProtocolVersion::V311 => 1,
            ProtocolVersion::V5 => 2,
        }
    }

    /// As users write it: `3.1`, `3.1.1`.
    pub fn number(self) -> &'static str {
        match self {
            ProtocolVersion::V31 => "3.1",
            ProtocolVersion::V311 => "3.1.1",
            ProtocolVersion::V5 => "5.0",
        }
    }

    /// The protocol name and level of its CONNECT (section 3.1.2.1-2).
    pub fn name_and_level(self) -> (&'static str, u8) {
        match self {
            ProtocolVersion::V31 => ("MQIsdp", 3),
            ProtocolVersion::V311 => ("MQTT", 4),
            ProtocolVersion::V5 => ("MQTT", 5),
        }
    }

    /// Whether packets carry reason codes and properties (MQTT 5.0).
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// The message published on the client's behalf when its connection ends
/// without a DISCONNECT (section 3.1.2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// 5.0: the will's properties (section 3.1.3.2), `None` when it has none.
    pub properties: Option<Box<Properties>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: ProtocolVersion,
    pub clean_session: bool,
    /// Seconds; 0 turns keep-alive off (section 3.1.2.10).
    pub keep_alive: u16,
    pub client_id: ByteString,
    pub will: Option<LastWill>,
    pub username: Option<ByteString>,
    pub password: Option<Bytes>,
    /// 5.0: the CONNECT's properties (section 3.1.2.11), `None` when it has
    /// none; see [`Connect::properties`].
    pub properties: Option<Box<Properties>>,
}

const FLAG_CLEAN_SESSION: u8 = 0b0000_0010;
const FLAG_WILL: u8 = 0b0000_0100;
const FLAG_WILL_RETAIN: u8 = 0b0010_0000;
const FLAG_PASSWORD: u8 = 0b0100_0000;
const FLAG_USERNAME: u8 = 0b1000_0000;

/// A copy of `s` in an allocation of its own (not a view of the packet).
fn own(s: ByteString) -> ByteString {
    ByteString::from(String::from(&*s))
}

/// Properties kept for the connection's lifetime, copied like `own`.
fn detached(p: Option<Box<Properties>>) -> Option<Box<Properties>> {
    p.map(|p| Box::new(p.detached()))
}

impl Connect {
    pub(crate) fn decode(mut r: Reader) -> Result<Connect, ProtocolError> {
        let name = r.binary()?;
        let level = r.u8()?;
        let version = match (&name[..], level) {
            (b"MQTT", 4) => ProtocolVersion::V311,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V31,
            (b"MQTT", _) | (b"MQIsdp", _) => {
                return Err(ProtocolError::UnsupportedProtocolLevel(level))
            }
            _ => {
                return Err(ProtocolError::InvalidProtocolName(
                    String::from_utf8_lossy(&name).into_owned(),
                ))
            }
        };
        let flags = r.u8()?;
        if flags & 0b0000_0001 != 0 {
            return Err(ProtocolError::ConnectReservedFlag);
        }
        let will_flag = flags & FLAG_WILL != 0;
        let will_qos_bits = (flags >> 3) & 0b11;
        let will_retain = flags & FLAG_WILL_RETAIN != 0;
        if !will_flag && (will_qos_bits != 0 || will_retain) {
            return Err(ProtocolError::WillFlagsWithoutWill);
        }
        let will_qos = QoS::from_u8(will_qos_bits).ok_or(ProtocolError::InvalidWillQoS)?;
        let has_username = flags & FLAG_USERNAME != 0;
        let has_password = flags & FLAG_PASSWORD != 0;
        // 5.0 allows a password without a user name (section 3.1.2.9).
        if has_password && !has_username && version == ProtocolVersion::V311 {
            return Err(ProtocolError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16()?;
        let v5 = version.is_v5();
        let properties = if v5 {
            detached(Properties::decode_boxed(&mut r, PropertiesOf::Connect)?)
        } else {
            None
        };

        // What a connection keeps for its lifetime is copied out of the read
        // buffer, so that the buffer itself can go once CONNECT is decoded
        // (see `MqttCodec::decode`): most clients then sit idle.
        let client_id = own(r.string()?);
        let will = if will_flag {
            let properties = if v5 {
                detached(Properties::decode_boxed(&mut r, PropertiesOf::Will)?)
            } else {
                None
            };
            let topic = TopicName::new(own(r.string()?))?;
            let payload = Bytes::copy_from_slice(&r.binary()?);
            Some(LastWill {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if has_username {
            Some(own(r.string()?))
        } else {
            None
        };
        let password = if has_password {
            Some(r.binary()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Connect {
            version,
            clean_session: flags & FLAG_CLEAN_SESSION != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    /// The CONNECT's properties; none for 3.1.1 and 3.1.
    pub fn properties(&self) -> &Properties {
        Properties::or_none(&self.properties)
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        let (name, level) = self.version.name_and_level();
        let v5 = self.version.is_v5();
        let mut len = 2 + name.len() + 1 + 1 + 2 + 2 + self.client_id.len();
        if v5 {
            len += Properties::boxed_len(&self.properties);
        }
        let mut flags = 0u8;
        if self.clean_session {
            flags |= FLAG_CLEAN_SESSION;
        }
        if let Some(w) = &self.will {
            flags |= FLAG_WILL | ((w.qos as u8) << 3);
            if w.retain {
                flags |= FLAG_WILL_RETAIN;
            }
            len += 2 + w.topic.as_str().len() + 2 + w.payload.len();
            if v5 {
                len += Properties::boxed_len(&w.properties);
            }
        }
        if let Some(u) = &self.username {
            flags |= FLAG_USERNAME;
            len += 2 + u.len();
        }
        if let Some(p) = &self.password {
            flags |= FLAG_PASSWORD;
            len += 2 + p.len();
        }
        buf.put_u8((PacketType::Connect as u8) << 4);
        put_remaining_length(buf, len);
        put_str(buf, name);
        buf.put_u8(level);
        buf.put_u8(flags);
        buf.put_u16(self.keep_alive);
        if v5 {
            Properties::encode_boxed(&self.properties, buf);
        }
        put_str(buf, &self.client_id);
        if let Some(w) = &self.will {
            if v5 {
                Properties::encode_boxed(&w.properties, buf);
            }
            put_str(buf, w.topic.as_str());
            put_bytes(buf, &w.payload);
        }
        if let Some(u) = &self.username {
            put_str(buf, u);
        }
        if let Some(p) = &self.password {
            put_bytes(buf, p);
        }
    }
}
