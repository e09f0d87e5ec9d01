//! MQTT 5.0 properties (section 2.2.2): the block of identified values
//! that every 5.0 packet but PINGREQ/PINGRESP carries after its variable
//! header, decoded into one typed [`Properties`] and encoded back.
//!
//! What a block may hold depends on where it is ([`PropertiesOf`]): a
//! property outside its packets, a repeated one (all but User Property and,
//! in a server's PUBLISH, Subscription Identifier), an unknown identifier,
//! a value out of its range, and lengths that disagree with the bytes are
//! each a protocol error, found here before anything uses the packet.

use super::reader::Reader;
// The Variable Byte Integer of section 1.5.5 is the remaining length's
// encoding (section 2.2.3): written and sized by the same functions.
use super::{put_bytes, put_remaining_length, put_str, remaining_length_len, ProtocolError};
use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

mod places;

pub use places::{allowed, id, PropertiesOf};

/// The properties of one block, each as its type says; `None` (or empty)
/// when absent. User Properties keep their order and may repeat a name
/// (section 3.3.2.3.7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    /// One in SUBSCRIBE; in a PUBLISH to a client, one per matching
    /// subscription that has one (section 3.3.2.3.8).
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<ByteString>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<ByteString>,
    pub server_reference: Option<ByteString>,
    pub reason_string: Option<ByteString>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    pub user_properties: Vec<(ByteString, ByteString)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

/// Sets a property that may appear once; a second one is a protocol error.
fn once<T>(slot: &mut Option<T>, value: T, id: u8, of: PropertiesOf) -> Result<(), ProtocolError> {
    if slot.is_some() {
        return Err(ProtocolError::DuplicateProperty {
            id,
            packet: of.name(),
        });
    }
    *slot = Some(value);
    Ok(())
}

/// A Byte property that is 0 or 1 (the booleans of section 3.1.2.11 and
/// 3.2.2.3).
fn boolean(value: u8, id: u8) -> Result<u8, ProtocolError> {
    if value > 1 {
        return Err(ProtocolError::InvalidPropertyValue {
            id,
            value: value.into(),
        });
    }
    Ok(value)
}

/// A value that must not be 0 (Receive Maximum, Maximum Packet Size,
/// Subscription Identifier).
fn nonzero<T: Into<u32> + Copy>(value: T, id: u8) -> Result<T, ProtocolError> {
    if value.into() == 0 {
        return Err(ProtocolError::InvalidPropertyValue { id, value: 0 });
    }
    Ok(value)
}

/// A block with no properties, for packets that carry `None`.
static NONE: Properties = Properties {
    payload_format_indicator: None,
    message_expiry_interval: None,
    content_type: None,
    response_topic: None,
    correlation_data: None,
    subscription_identifiers: Vec::new(),
    session_expiry_interval: None,
    assigned_client_identifier: None,
    server_keep_alive: None,
    authentication_method: None,
    authentication_data: None,
    request_problem_information: None,
    will_delay_interval: None,
    request_response_information: None,
    response_information: None,
    server_reference: None,
    reason_string: None,
    receive_maximum: None,
    topic_alias_maximum: None,
    topic_alias: None,
    maximum_qos: None,
    retain_available: None,
    user_properties: Vec::new(),
    maximum_packet_size: None,
    wildcard_subscription_available: None,
    subscription_identifier_available: None,
    shared_subscription_available: None,
};

/// Packets hold their properties as `Option<Box<Properties>>`: `None` for
/// an empty block (most packets) and for 3.1.1, so that a packet without
/// properties costs one pointer. These functions read and write that form.
impl Properties {
    /// The properties held, or an empty block.
    pub fn or_none(held: &Option<Box<Properties>>) -> &Properties {
        held.as_deref().unwrap_or(&NONE)
    }

    /// Whether the block holds nothing.
    pub fn is_empty(&self) -> bool {
        self.body_len() == 0
    }

    /// [`Properties::decode`], `None` for an empty block.
    pub(crate) fn decode_boxed(
        r: &mut Reader,
        of: PropertiesOf,
    ) -> Result<Option<Box<Properties>>, ProtocolError> {
        if r.take_zero() {
            return Ok(None);
        }
        let p = Properties::decode(r, of)?;
        p.check_pairs()?;
        Ok((!p.is_empty()).then(|| Box::new(p)))
    }

    /// Rules between values of one block: a Response Topic is a topic name,
    /// without wildcards [MQTT-3.3.2-14]; Authentication Data needs an
    /// Authentication Method (section 3.1.2.11.10).
    fn check_pairs(&self) -> Result<(), ProtocolError> {
        if let Some(t) = self
            .response_topic
            .as_deref()
            .filter(|t| t.contains(['+', '#']))
        {
            return Err(ProtocolError::WildcardInResponseTopic(t.to_string()));
        }
        if self.authentication_data.is_some() && self.authentication_method.is_none() {
            return Err(ProtocolError::AuthenticationDataWithoutMethod);
        }
        Ok(())
    }

    /// The wire length of a held block (one byte for `None`).
    pub fn boxed_len(held: &Option<Box<Properties>>) -> usize {
        held.as_ref().map_or(1, |p| p.encoded_len())
    }

    /// Writes a held block with a Topic Alias added (a server's PUBLISH;
    /// `held` has none of its own).
    pub(crate) fn encode_boxed_with_alias(
        held: &Option<Box<Properties>>,
        alias: u16,
        buf: &mut BytesMut,
    ) {
        let own = held.as_ref().map_or(0, |p| p.body_len());
        put_remaining_length(buf, own + 3);
        if let Some(p) = held {
            p.encode_body(buf);
        }
        buf.put_u8(id::TOPIC_ALIAS);
        buf.put_u16(alias);
    }

    /// The length of [`Properties::encode_boxed_with_alias`].
    pub(crate) fn boxed_len_with_alias(held: &Option<Box<Properties>>) -> usize {
        let body = held.as_ref().map_or(0, |p| p.body_len()) + 3;
        remaining_length_len(body) + body
    }

    /// Writes a held block (a zero length for `None`).
    pub fn encode_boxed(held: &Option<Box<Properties>>, buf: &mut BytesMut) {
        match held {
            Some(p) => p.encode(buf),
            None => buf.put_u8(0),
        }
    }

    /// The same properties in allocations of their own, for a block kept
    /// for long (a will, a session's settings): a decoded block is a view
    /// of the packet's read buffer and would keep all of it alive.
    pub fn detached(&self) -> Properties {
        let mut p = self.clone();
        for s in [
            &mut p.content_type,
            &mut p.response_topic,
            &mut p.assigned_client_identifier,
            &mut p.authentication_method,
            &mut p.response_information,
            &mut p.server_reference,
            &mut p.reason_string,
        ] {
            *s = s.as_ref().map(super::detached);
        }
        for b in [&mut p.correlation_data, &mut p.authentication_data] {
            *b = b.as_ref().map(|v| Bytes::copy_from_slice(v));
        }
        for (k, v) in &mut p.user_properties {
            (*k, *v) = (super::detached(k), super::detached(v));
        }
        p
    }
}

impl Properties {
    /// Decodes the block at the reader's position: its length (a Variable
    /// Byte Integer), then exactly that many bytes of properties.
    pub(crate) fn decode(r: &mut Reader, of: PropertiesOf) -> Result<Properties, ProtocolError> {
        let len = r.variable_byte_integer()? as usize;
        let mut block = r.sub(len)?;
        let mut p = Properties::default();
        while block.has_remaining() {
            let id = block.u8()?;
            match allowed(id, of) {
                None => return Err(ProtocolError::UnknownProperty(id)),
                Some(false) => {
                    return Err(ProtocolError::PropertyNotAllowed {
                        id,
                        packet: of.name(),
                    })
                }
                Some(true) => {}
            }
            match id {
                id::PAYLOAD_FORMAT_INDICATOR => {
                    let v = boolean(block.u8()?, id)?;
                    once(&mut p.payload_format_indicator, v, id, of)?
                }
                id::MESSAGE_EXPIRY_INTERVAL => {
                    once(&mut p.message_expiry_interval, block.u32()?, id, of)?
                }
                id::CONTENT_TYPE => once(&mut p.content_type, block.string()?, id, of)?,
                id::RESPONSE_TOPIC => once(&mut p.response_topic, block.string()?, id, of)?,
                id::CORRELATION_DATA => once(&mut p.correlation_data, block.binary()?, id, of)?,
                id::SUBSCRIPTION_IDENTIFIER => {
                    let v = nonzero(block.variable_byte_integer()?, id)?;
                    // Repeated only in a PUBLISH (to a client, one per
                    // matching subscription); once in SUBSCRIBE.
                    if of != PropertiesOf::Publish && !p.subscription_identifiers.is_empty() {
                        return Err(ProtocolError::DuplicateProperty {
                            id,
                            packet: of.name(),
                        });
                    }
                    p.subscription_identifiers.push(v);
                }
                id::SESSION_EXPIRY_INTERVAL => {
                    once(&mut p.session_expiry_interval, block.u32()?, id, of)?
                }
                id::ASSIGNED_CLIENT_IDENTIFIER => {
                    once(&mut p.assigned_client_identifier, block.string()?, id, of)?
                }
                id::SERVER_KEEP_ALIVE => once(&mut p.server_keep_alive, block.u16()?, id, of)?,
                id::AUTHENTICATION_METHOD => {
                    once(&mut p.authentication_method, block.string()?, id, of)?
                }
                id::AUTHENTICATION_DATA => {
                    once(&mut p.authentication_data, block.binary()?, id, of)?
                }
                id::REQUEST_PROBLEM_INFORMATION => {
                    let v = boolean(block.u8()?, id)?;
                    once(&mut p.request_problem_information, v, id, of)?
                }
                id::WILL_DELAY_INTERVAL => once(&mut p.will_delay_interval, block.u32()?, id, of)?,
                id::REQUEST_RESPONSE_INFORMATION => {
                    let v = boolean(block.u8()?, id)?;
                    once(&mut p.request_response_information, v, id, of)?
                }
                id::RESPONSE_INFORMATION => {
                    once(&mut p.response_information, block.string()?, id, of)?
                }
                id::SERVER_REFERENCE => once(&mut p.server_reference, block.string()?, id, of)?,
                id::REASON_STRING => once(&mut p.reason_string, block.string()?, id, of)?,
                id::RECEIVE_MAXIMUM => {
                    let v = nonzero(block.u16()?, id)?;
                    once(&mut p.receive_maximum, v, id, of)?
                }
                id::TOPIC_ALIAS_MAXIMUM => once(&mut p.topic_alias_maximum, block.u16()?, id, of)?,
                // Its range (1 to the receiver's maximum) is the receiver's
                // to check: an alias out of range gets DISCONNECT 0x94.
                id::TOPIC_ALIAS => once(&mut p.topic_alias, block.u16()?, id, of)?,
                id::MAXIMUM_QOS => {
                    let v = boolean(block.u8()?, id)?;
                    once(&mut p.maximum_qos, v, id, of)?
                }
                id::RETAIN_AVAILABLE => {
                    let v = boolean(block.u8()?, id)?;
                    once(&mut p.retain_available, v, id, of)?
                }
                id::USER_PROPERTY => {
                    let pair = (block.string()?, block.string()?);
                    p.user_properties.push(pair);
                }
                id::MAXIMUM_PACKET_SIZE => {
                    let v = nonzero(block.u32()?, id)?;
                    once(&mut p.maximum_packet_size, v, id, of)?
                }
                id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                    let v = boolean(block.u8()?, id)?;
                    once(&mut p.wildcard_subscription_available, v, id, of)?
                }
                id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                    let v = boolean(block.u8()?, id)?;
                    once(&mut p.subscription_identifier_available, v, id, of)?
                }
                id::SHARED_SUBSCRIPTION_AVAILABLE => {
                    let v = boolean(block.u8()?, id)?;
                    once(&mut p.shared_subscription_available, v, id, of)?
                }
                // `allowed` knows no other identifier.
                other => return Err(ProtocolError::UnknownProperty(other)),
            }
        }
        Ok(p)
    }

    /// The bytes of the properties, without the block's length.
    fn body_len(&self) -> usize {
        let string = |s: &Option<ByteString>| s.as_ref().map_or(0, |s| 3 + s.len());
        let binary = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| 3 + b.len());
        let fixed = |present: bool, n: usize| if present { 1 + n } else { 0 };
        fixed(self.payload_format_indicator.is_some(), 1)
            + fixed(self.message_expiry_interval.is_some(), 4)
            + string(&self.content_type)
            + string(&self.response_topic)
            + binary(&self.correlation_data)
            + self
                .subscription_identifiers
                .iter()
                .map(|v| 1 + remaining_length_len(*v as usize))
                .sum::<usize>()
            + fixed(self.session_expiry_interval.is_some(), 4)
            + string(&self.assigned_client_identifier)
            + fixed(self.server_keep_alive.is_some(), 2)
            + string(&self.authentication_method)
            + binary(&self.authentication_data)
            + fixed(self.request_problem_information.is_some(), 1)
            + fixed(self.will_delay_interval.is_some(), 4)
            + fixed(self.request_response_information.is_some(), 1)
            + string(&self.response_information)
            + string(&self.server_reference)
            + string(&self.reason_string)
            + fixed(self.receive_maximum.is_some(), 2)
            + fixed(self.topic_alias_maximum.is_some(), 2)
            + fixed(self.topic_alias.is_some(), 2)
            + fixed(self.maximum_qos.is_some(), 1)
            + fixed(self.retain_available.is_some(), 1)
            + self
                .user_properties
                .iter()
                .map(|(k, v)| 1 + 2 + k.len() + 2 + v.len())
                .sum::<usize>()
            + fixed(self.maximum_packet_size.is_some(), 4)
            + fixed(self.wildcard_subscription_available.is_some(), 1)
            + fixed(self.subscription_identifier_available.is_some(), 1)
            + fixed(self.shared_subscription_available.is_some(), 1)
    }

    /// The whole block on the wire: its length and the properties.
    pub fn encoded_len(&self) -> usize {
        let body = self.body_len();
        remaining_length_len(body) + body
    }

    /// Writes the block: its length, then each property present, in the
    /// order of their identifiers (User Properties in their own order).
    pub fn encode(&self, buf: &mut BytesMut) {
        put_remaining_length(buf, self.body_len());
        self.encode_body(buf);
    }

    /// The properties, without the block's length.
    fn encode_body(&self, buf: &mut BytesMut) {
        let byte = |buf: &mut BytesMut, id: u8, v: Option<u8>| {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u8(v);
            }
        };
        let two = |buf: &mut BytesMut, id: u8, v: Option<u16>| {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u16(v);
            }
        };
        let four = |buf: &mut BytesMut, id: u8, v: Option<u32>| {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u32(v);
            }
        };
        let string = |buf: &mut BytesMut, id: u8, v: &Option<ByteString>| {
            if let Some(v) = v {
                buf.put_u8(id);
                put_str(buf, v);
            }
        };
        let binary = |buf: &mut BytesMut, id: u8, v: &Option<Bytes>| {
            if let Some(v) = v {
                buf.put_u8(id);
                put_bytes(buf, v);
            }
        };
        byte(
            buf,
            id::PAYLOAD_FORMAT_INDICATOR,
            self.payload_format_indicator,
        );
        four(
            buf,
            id::MESSAGE_EXPIRY_INTERVAL,
            self.message_expiry_interval,
        );
        string(buf, id::CONTENT_TYPE, &self.content_type);
        string(buf, id::RESPONSE_TOPIC, &self.response_topic);
        binary(buf, id::CORRELATION_DATA, &self.correlation_data);
        for v in &self.subscription_identifiers {
            buf.put_u8(id::SUBSCRIPTION_IDENTIFIER);
            put_remaining_length(buf, *v as usize);
        }
        four(
            buf,
            id::SESSION_EXPIRY_INTERVAL,
            self.session_expiry_interval,
        );
        string(
            buf,
            id::ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        );
        two(buf, id::SERVER_KEEP_ALIVE, self.server_keep_alive);
        string(buf, id::AUTHENTICATION_METHOD, &self.authentication_method);
        binary(buf, id::AUTHENTICATION_DATA, &self.authentication_data);
        byte(
            buf,
            id::REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        four(buf, id::WILL_DELAY_INTERVAL, self.will_delay_interval);
        byte(
            buf,
            id::REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        string(buf, id::RESPONSE_INFORMATION, &self.response_information);
        string(buf, id::SERVER_REFERENCE, &self.server_reference);
        string(buf, id::REASON_STRING, &self.reason_string);
        two(buf, id::RECEIVE_MAXIMUM, self.receive_maximum);
        two(buf, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        two(buf, id::TOPIC_ALIAS, self.topic_alias);
        byte(buf, id::MAXIMUM_QOS, self.maximum_qos);
        byte(buf, id::RETAIN_AVAILABLE, self.retain_available);
        for (k, v) in &self.user_properties {
            buf.put_u8(id::USER_PROPERTY);
            put_str(buf, k);
            put_str(buf, v);
        }
        four(buf, id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        byte(
            buf,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        byte(
            buf,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifier_available,
        );
        byte(
            buf,
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
    }
}

/// Decodes a block of `of` that fills `bytes` (its length first); for the
/// fuzz target and tests, which have no packet around it. `packet` names
/// the packet in errors about lengths.
pub fn decode_block(
    bytes: Bytes,
    of: PropertiesOf,
    packet: super::PacketType,
) -> Result<Properties, ProtocolError> {
    let mut r = Reader::new(packet, bytes);
    let p = Properties::decode(&mut r, of)?;
    r.finish()?;
    Ok(p)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::PacketType;
    use proptest::prelude::*;

    fn decode(bytes: &[u8], of: PropertiesOf) -> Result<Properties, ProtocolError> {
        decode_block(Bytes::copy_from_slice(bytes), of, PacketType::Connect)
    }

    /// A block: its length (one byte, as these tests keep under 128), then `body`.
    fn block(body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 128);
        let mut b = vec![body.len() as u8];
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn an_empty_block_is_no_properties() {
        assert_eq!(
            decode(&[0], PropertiesOf::Publish),
            Ok(Properties::default())
        );
    }

    /// Properties built by hand, byte by byte, decode to their values; User
    /// Properties keep their order and repeated names (section 3.3.2.3.7).
    #[test]
    fn a_publish_block_decodes_to_its_values() {
        let body = [
            0x01, 1, // payload format: UTF-8
            0x02, 0, 0, 0, 60, // message expiry 60 s
            0x03, 0, 4, b't', b'e', b'x', b't', // content type
            0x08, 0, 1, b'r', // response topic
            0x09, 0, 2, 0xCA, 0xFE, // correlation data
            0x26, 0, 1, b'a', 0, 1, b'1', // user a=1
            0x26, 0, 1, b'a', 0, 1, b'2', // user a=2, same name
            0x0B, 0x80, 0x01, // subscription id 128 (two bytes)
            0x0B, 0x05, // and 5: repeated, in a PUBLISH
            0x23, 0, 3, // topic alias 3
        ];
        let p = decode(&block(&body), PropertiesOf::Publish).unwrap();
        assert_eq!(p.payload_format_indicator, Some(1));
        assert_eq!(p.message_expiry_interval, Some(60));
        assert_eq!(p.content_type.as_deref(), Some("text"));
        assert_eq!(p.response_topic.as_deref(), Some("r"));
        assert_eq!(p.correlation_data.as_deref(), Some(&[0xCA, 0xFE][..]));
        let users: Vec<(&str, &str)> = p
            .user_properties
            .iter()
            .map(|(k, v)| (&**k, &**v))
            .collect();
        assert_eq!(users, [("a", "1"), ("a", "2")]);
        assert_eq!(p.subscription_identifiers, [128, 5]);
        assert_eq!(p.topic_alias, Some(3));
    }

    /// Each way a block can be wrong is a protocol error, never a panic and
    /// never a value taken from bytes that are not its own.
    #[test]
    fn malformed_blocks_are_protocol_errors() {
        use PropertiesOf::*;
        let truncated = |e: &ProtocolError| matches!(e, ProtocolError::Truncated { .. });
        type Expected = fn(&ProtocolError) -> bool;
        let rows: Vec<(&str, Vec<u8>, PropertiesOf, Expected)> = vec![
            (
                "session expiry twice in CONNECT",
                block(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]),
                Connect,
                |e| matches!(e, ProtocolError::DuplicateProperty { id: 0x11, .. }),
            ),
            (
                "a subscription identifier twice in SUBSCRIBE",
                block(&[0x0B, 1, 0x0B, 2]),
                Subscribe,
                |e| matches!(e, ProtocolError::DuplicateProperty { id: 0x0B, .. }),
            ),
            (
                "a topic alias in CONNECT",
                block(&[0x23, 0, 1]),
                Connect,
                |e| matches!(e, ProtocolError::PropertyNotAllowed { id: 0x23, .. }),
            ),
            (
                "a will delay in PUBLISH",
                block(&[0x18, 0, 0, 0, 1]),
                Publish,
                |e| matches!(e, ProtocolError::PropertyNotAllowed { id: 0x18, .. }),
            ),
            ("an unknown identifier", block(&[0x05, 0]), Publish, |e| {
                matches!(e, ProtocolError::UnknownProperty(0x05))
            }),
            (
                "a block longer than the packet",
                vec![10, 0x01, 1],
                Publish,
                truncated,
            ),
            (
                "a string running past its block",
                [vec![4], vec![0x03, 0, 9, b'x'], vec![0; 9]].concat(),
                Publish,
                truncated,
            ),
            (
                "a four-byte value cut by its block",
                block(&[0x02, 0, 0]),
                Publish,
                truncated,
            ),
            (
                "a five-byte Variable Byte Integer",
                block(&[0x0B, 0x80, 0x80, 0x80, 0x80, 0x01]),
                Publish,
                |e| matches!(e, ProtocolError::MalformedVariableByteInteger),
            ),
            (
                "a block length of five bytes",
                vec![0x80, 0x80, 0x80, 0x80, 0x01],
                Publish,
                |e| matches!(e, ProtocolError::MalformedVariableByteInteger),
            ),
            ("a payload format of 2", block(&[0x01, 2]), Publish, |e| {
                matches!(
                    e,
                    ProtocolError::InvalidPropertyValue { id: 0x01, value: 2 }
                )
            }),
            (
                "a receive maximum of 0",
                block(&[0x21, 0, 0]),
                Connect,
                |e| {
                    matches!(
                        e,
                        ProtocolError::InvalidPropertyValue { id: 0x21, value: 0 }
                    )
                },
            ),
            (
                "a subscription identifier of 0",
                block(&[0x0B, 0]),
                Subscribe,
                |e| {
                    matches!(
                        e,
                        ProtocolError::InvalidPropertyValue { id: 0x0B, value: 0 }
                    )
                },
            ),
            (
                "a content type that is not UTF-8",
                block(&[0x03, 0, 1, 0xFF]),
                Publish,
                |e| matches!(e, ProtocolError::InvalidUtf8),
            ),
            (
                "bytes after the block",
                [block(&[0x01, 1]), vec![0]].concat(),
                Publish,
                |e| matches!(e, ProtocolError::TrailingBytes { .. }),
            ),
        ];
        for (what, bytes, of, expected) in rows {
            match decode(&bytes, of) {
                Err(e) if expected(&e) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    /// The table of section 2.2.2.2 in a few rows that matter: User
    /// Property everywhere, the CONNACK-only flags, and an undefined id.
    #[test]
    fn where_each_property_is_allowed() {
        for of in PropertiesOf::ALL {
            assert_eq!(allowed(id::USER_PROPERTY, of), Some(true), "{of:?}");
            assert_eq!(
                allowed(id::MAXIMUM_QOS, of),
                Some(of == PropertiesOf::ConnAck),
                "{of:?}"
            );
        }
        assert_eq!(
            allowed(id::WILL_DELAY_INTERVAL, PropertiesOf::Will),
            Some(true)
        );
        assert_eq!(
            allowed(id::WILL_DELAY_INTERVAL, PropertiesOf::Connect),
            Some(false)
        );
        assert_eq!(allowed(0x00, PropertiesOf::Connect), None);
        assert_eq!(allowed(0x2B, PropertiesOf::Connect), None);
    }

    /// The fuzz target's seeds (`tests/fuzz/corpus/properties/place-*`:
    /// the place's index, then a block) are valid blocks of their place.
    #[test]
    fn the_fuzz_seeds_decode() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/properties");
        let mut seeds = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            // A fuzz run adds the inputs it finds beside the seeds.
            if !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("place-")
            {
                continue;
            }
            let bytes = std::fs::read(path).unwrap();
            let of = PropertiesOf::ALL[usize::from(bytes[0]) % PropertiesOf::ALL.len()];
            let p = decode(&bytes[1..], of).unwrap_or_else(|e| panic!("{of:?}: {e}"));
            assert!(!p.user_properties.is_empty(), "{of:?}");
            seeds += 1;
        }
        assert!(seeds >= 8);
    }

    fn text() -> impl Strategy<Value = ByteString> {
        "[a-z/é]{0,8}".prop_map(ByteString::from)
    }

    fn data() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from)
    }

    fn flag() -> impl Strategy<Value = Option<u8>> {
        proptest::option::of(0u8..=1)
    }

    /// Any properties, then only those `of` allows (one subscription id
    /// outside PUBLISH).
    pub(crate) fn properties(of: PropertiesOf) -> impl Strategy<Value = Properties> {
        let strings = proptest::collection::vec(proptest::option::of(text()), 8);
        let binaries = proptest::collection::vec(proptest::option::of(data()), 2);
        let fours = proptest::collection::vec(proptest::option::of(any::<u32>()), 4);
        let twos = proptest::collection::vec(proptest::option::of(any::<u16>()), 3);
        let flags = proptest::collection::vec(flag(), 8);
        let ids = proptest::collection::vec(1..=crate::protocol::MAX_REMAINING_LENGTH as u32, 0..3);
        let users = proptest::collection::vec((text(), text()), 0..3);
        let nonzero = (proptest::option::of(1u16..), proptest::option::of(1u32..));
        (strings, binaries, fours, twos, flags, ids, users, nonzero).prop_map(
            move |(s, b, f4, f2, fl, ids, users, (receive_maximum, maximum_packet_size))| {
                let p = Properties {
                    payload_format_indicator: fl[0],
                    message_expiry_interval: f4[0],
                    content_type: s[0].clone(),
                    response_topic: s[1].clone(),
                    correlation_data: b[0].clone(),
                    subscription_identifiers: ids,
                    session_expiry_interval: f4[1],
                    assigned_client_identifier: s[2].clone(),
                    server_keep_alive: f2[0],
                    authentication_method: s[3].clone(),
                    authentication_data: b[1].clone(),
                    request_problem_information: fl[1],
                    will_delay_interval: f4[2],
                    request_response_information: fl[2],
                    response_information: s[4].clone(),
                    server_reference: s[5].clone(),
                    reason_string: s[6].clone(),
                    receive_maximum,
                    topic_alias_maximum: f2[1],
                    topic_alias: f2[2],
                    maximum_qos: fl[3],
                    retain_available: fl[4],
                    user_properties: users,
                    maximum_packet_size,
                    wildcard_subscription_available: fl[5],
                    subscription_identifier_available: fl[6],
                    shared_subscription_available: fl[7],
                };
                restrict(p, of)
            },
        )
    }

    /// `p` without what a block of `of` may not hold.
    fn restrict(mut p: Properties, of: PropertiesOf) -> Properties {
        let ok = |id: u8| allowed(id, of) == Some(true);
        macro_rules! keep {
            ($($field:ident: $id:ident),* $(,)?) => {
                $(if !ok(id::$id) { p.$field = Default::default(); })*
            };
        }
        keep!(
            payload_format_indicator: PAYLOAD_FORMAT_INDICATOR,
            message_expiry_interval: MESSAGE_EXPIRY_INTERVAL,
            content_type: CONTENT_TYPE,
            response_topic: RESPONSE_TOPIC,
            correlation_data: CORRELATION_DATA,
            subscription_identifiers: SUBSCRIPTION_IDENTIFIER,
            session_expiry_interval: SESSION_EXPIRY_INTERVAL,
            assigned_client_identifier: ASSIGNED_CLIENT_IDENTIFIER,
            server_keep_alive: SERVER_KEEP_ALIVE,
            authentication_method: AUTHENTICATION_METHOD,
            authentication_data: AUTHENTICATION_DATA,
            request_problem_information: REQUEST_PROBLEM_INFORMATION,
            will_delay_interval: WILL_DELAY_INTERVAL,
            request_response_information: REQUEST_RESPONSE_INFORMATION,
            response_information: RESPONSE_INFORMATION,
            server_reference: SERVER_REFERENCE,
            reason_string: REASON_STRING,
            receive_maximum: RECEIVE_MAXIMUM,
            topic_alias_maximum: TOPIC_ALIAS_MAXIMUM,
            topic_alias: TOPIC_ALIAS,
            maximum_qos: MAXIMUM_QOS,
            retain_available: RETAIN_AVAILABLE,
            user_properties: USER_PROPERTY,
            maximum_packet_size: MAXIMUM_PACKET_SIZE,
            wildcard_subscription_available: WILDCARD_SUBSCRIPTION_AVAILABLE,
            subscription_identifier_available: SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            shared_subscription_available: SHARED_SUBSCRIPTION_AVAILABLE,
        );
        if of != PropertiesOf::Publish {
            p.subscription_identifiers.truncate(1);
        }
        p
    }

    fn any_place() -> impl Strategy<Value = PropertiesOf> {
        proptest::sample::select(PropertiesOf::ALL.to_vec())
    }

    proptest! {
        /// Whatever a block of any place may hold encodes to
        /// `encoded_len` bytes and decodes back to itself.
        #[test]
        fn every_allowed_block_round_trips(
            (of, p) in any_place().prop_flat_map(|of| (Just(of), properties(of)))
        ) {
            let mut buf = BytesMut::new();
            p.encode(&mut buf);
            prop_assert_eq!(buf.len(), p.encoded_len());
            prop_assert_eq!(decode(&buf, of), Ok(p));
        }

        /// Arbitrary bytes are a block or a protocol error, never a panic;
        /// what decodes encodes back to bytes that decode the same.
        #[test]
        fn arbitrary_bytes_never_panic(
            of in any_place(),
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            if let Ok(p) = decode(&bytes, of) {
                let mut buf = BytesMut::new();
                p.encode(&mut buf);
                prop_assert_eq!(decode(&buf, of), Ok(p));
            }
        }
    }
}
