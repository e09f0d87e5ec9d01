//! Framing: bytes to [`Packet`]s and back, for tokio-util's `Framed*`.
//!
//! The decoder checks the fixed header (packet type, flags, remaining length)
//! before it waits for the body, so an oversized or invalid packet is refused
//! as soon as its first bytes arrive and its declared length is never
//! buffered.

use super::reader::Reader;
use super::*;
use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Why a stream of packets ended.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// One connection's framing. The version starts as 3.1.1 and becomes the
/// one of the CONNECT decoded (on a server) or encoded (on a client):
/// every later packet is read and written in it.
#[derive(Debug, Clone)]
pub struct MqttCodec {
    /// Largest whole packet (fixed header included) the decoder accepts; at
    /// most 256 MiB and 5 bytes. A `u32`: every connection holds a codec.
    max_packet_size: u32,
    /// The last packet was a CONNECT or PINGREQ with nothing read after it:
    /// the client is likely to stay quiet, and its read buffer was given
    /// back (see `READ_AHEAD`).
    quiet: bool,
    version: ProtocolVersion,
    /// 5.0: the Topic Alias Maximum this side announced.
    topic_alias_maximum: u16,
    /// 5.0: the aliases the peer set, from its first one on.
    aliases: Option<Box<TopicAliases>>,
}

impl MqttCodec {
    pub fn new(max_packet_size: usize) -> MqttCodec {
        MqttCodec {
            max_packet_size: u32::try_from(max_packet_size.min(MAX_REMAINING_LENGTH + 5))
                .unwrap_or(u32::MAX),
            quiet: false,
            version: ProtocolVersion::V311,
            topic_alias_maximum: 0,
            aliases: None,
        }
    }

    /// Accepts topic aliases 1 to `max` from a 5.0 peer (the value this
    /// side announces: a server in CONNACK, a client in CONNECT).
    pub fn with_topic_alias_maximum(mut self, max: u16) -> MqttCodec {
        self.topic_alias_maximum = max;
        self
    }

    /// Reads and writes `version` from the start: for a client that
    /// writes its CONNECT without this codec.
    pub fn with_version(mut self, version: ProtocolVersion) -> MqttCodec {
        self.version = version;
        self
    }

    /// The version packets are read and written in.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The aliases of a 5.0 connection, made on first use.
    fn aliases(&mut self) -> Option<&mut TopicAliases> {
        if !self.version.is_v5() {
            return None;
        }
        let max = self.topic_alias_maximum;
        Some(
            self.aliases
                .get_or_insert_with(|| Box::new(TopicAliases::new(max))),
        )
    }
}

impl Default for MqttCodec {
    fn default() -> Self {
        MqttCodec::new(MAX_REMAINING_LENGTH + 5)
    }
}

/// The fixed-header flags each packet type requires [MQTT-2.2.2-1] [MQTT-2.2.2-2];
/// PUBLISH carries its own flags and is checked when decoded.
fn flags_valid(packet: PacketType, flags: u8) -> bool {
    match packet {
        PacketType::Publish => true,
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => flags == 0b0010,
        _ => flags == 0,
    }
}

/// Room made for the next read whenever the decoder needs more bytes,
/// unless the client is quiet. A connection starts (and goes back, after a
/// CONNECT or PINGREQ that empties the buffer) with almost no read buffer;
/// its first bytes of traffic make it this large, which is tokio-util's own
/// default, so that a busy client is read in large chunks.
///
/// Also when every byte read is decoded: tokio-util then reserves one byte,
/// and `BytesMut` grants exactly that (or what is left of its block after
/// the packets split off it). A subscriber's stream of 4-byte PUBACKs was
/// read 8 bytes per system call, 500,000 calls in a drain of 1,000,000.
const READ_AHEAD: usize = 8 * 1024;

impl Decoder for MqttCodec {
    type Item = Packet;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        let Some(&first) = src.first() else {
            if !self.quiet {
                src.reserve(READ_AHEAD);
            }
            return Ok(None);
        };
        let type_bits = first >> 4;
        let flags = first & 0x0F;
        let packet = PacketType::from_u8(type_bits)
            .filter(|p| *p != PacketType::Auth || self.version.is_v5())
            .ok_or(ProtocolError::ReservedPacketType(type_bits))?;
        if !flags_valid(packet, flags) {
            return Err(ProtocolError::InvalidHeaderFlags { packet, flags }.into());
        }
        let Some((remaining, len_bytes)) = remaining_length(&src[1..])? else {
            src.reserve(READ_AHEAD);
            return Ok(None);
        };
        let total = 1 + len_bytes + remaining;
        if total > self.max_packet_size as usize {
            return Err(ProtocolError::PacketTooLarge {
                size: total,
                max: self.max_packet_size as usize,
            }
            .into());
        }
        if src.len() < total {
            // Bytes are arriving: read in chunks of `READ_AHEAD` from now on
            // (also when the packet is larger, so that a header announcing a
            // large packet costs no more until its bytes arrive).
            src.reserve(READ_AHEAD);
            return Ok(None);
        }
        let mut frame = src.split_to(total);
        frame.advance(1 + len_bytes);
        let r = Reader::new(packet, frame.freeze());
        // Most clients go quiet after CONNECT, and a client that only pings
        // is idle: such a connection keeps no read buffer (the next read
        // allocates a small one).
        self.quiet = matches!(packet, PacketType::Connect | PacketType::PingReq) && src.is_empty();
        if self.quiet {
            *src = BytesMut::new();
        }
        let v5 = self.version.is_v5();
        let in_v5 = |of: PropertiesOf| v5.then_some(of);
        let decoded = match packet {
            PacketType::Connect => {
                let connect = Connect::decode(r)?;
                self.version = connect.version;
                Packet::Connect(Box::new(connect))
            }
            PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(r, v5)?),
            PacketType::Publish => Packet::Publish(Publish::decode(flags, r, self.aliases())?),
            PacketType::PubAck => Packet::PubAck(Ack::decode(r, in_v5(PropertiesOf::PubAck))?),
            PacketType::PubRec => Packet::PubRec(Ack::decode(r, in_v5(PropertiesOf::PubRec))?),
            PacketType::PubRel => Packet::PubRel(Ack::decode(r, in_v5(PropertiesOf::PubRel))?),
            PacketType::PubComp => Packet::PubComp(Ack::decode(r, in_v5(PropertiesOf::PubComp))?),
            PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(r, v5)?),
            PacketType::SubAck => Packet::SubAck(SubAck::decode(r, v5, PropertiesOf::SubAck)?),
            PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(r, v5)?),
            PacketType::UnsubAck => {
                Packet::UnsubAck(SubAck::decode(r, v5, PropertiesOf::UnsubAck)?)
            }
            PacketType::PingReq => {
                r.finish()?;
                Packet::PingReq
            }
            PacketType::PingResp => {
                r.finish()?;
                Packet::PingResp
            }
            PacketType::Disconnect => {
                Packet::Disconnect(Reasoned::decode(r, v5, PropertiesOf::Disconnect)?)
            }
            PacketType::Auth => Packet::Auth(Reasoned::decode(r, v5, PropertiesOf::Auth)?),
        };
        Ok(Some(decoded))
    }
}

impl Encoder<Packet> for MqttCodec {
    type Error = CodecError;

    fn encode(&mut self, packet: Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode(&packet, dst)
    }
}

impl Encoder<&Packet> for MqttCodec {
    type Error = CodecError;

    fn encode(&mut self, packet: &Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        // A client's CONNECT chooses the version of what follows.
        if let Packet::Connect(c) = packet {
            self.version = c.version;
        }
        packet.encode(dst, self.version);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn decode_all(bytes: &[u8]) -> Result<Option<Packet>, CodecError> {
        MqttCodec::default().decode(&mut BytesMut::from(bytes))
    }

    /// CONNECT for client id "idle", keep-alive 60, clean session, built by hand.
    const CONNECT_IDLE: [u8; 18] = [
        0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 4, b'i', b'd', b'l', b'e',
    ];

    /// The same in 5.0: level 5 and an empty block of properties.
    const CONNECT_V5: [u8; 19] = [
        0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 4, b'i', b'd', b'l', b'e',
    ];

    /// A client in traffic is read in large chunks, also when every byte
    /// read was a whole packet (a subscriber's PUBACKs were read 8 bytes per
    /// system call); a client that only pings keeps no buffer.
    #[test]
    fn a_buffer_emptied_by_whole_packets_makes_room_for_a_large_read() {
        let mut codec = MqttCodec::default();
        let mut buf = BytesMut::from(&CONNECT_IDLE[..]);
        assert!(matches!(
            codec.decode(&mut buf).unwrap(),
            Some(Packet::Connect(_))
        ));
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.capacity(), 0, "quiet after CONNECT: no buffer");
        // As tokio-util does before a read: room for one byte.
        buf.reserve(1);
        buf.extend_from_slice(&[0x40, 2, 0, 1, 0x40, 2, 0, 2]);
        assert!(
            matches!(codec.decode(&mut buf).unwrap(), Some(Packet::PubAck(a)) if a.packet_id.get() == 1)
        );
        assert!(
            matches!(codec.decode(&mut buf).unwrap(), Some(Packet::PubAck(a)) if a.packet_id.get() == 2)
        );
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() - buf.len() >= READ_AHEAD,
            "{}",
            buf.capacity()
        );

        buf.extend_from_slice(&[0xC0, 0]);
        assert!(matches!(
            codec.decode(&mut buf).unwrap(),
            Some(Packet::PingReq)
        ));
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.capacity(), 0, "a client that only pings is idle");
    }

    #[test]
    fn read_buffer_is_released_after_a_connect_that_empties_it() {
        let mut codec = MqttCodec::default();
        let mut buf = BytesMut::with_capacity(256);
        buf.extend_from_slice(&CONNECT_IDLE);
        let Some(Packet::Connect(c)) = codec.decode(&mut buf).unwrap() else {
            panic!("not a CONNECT");
        };
        assert_eq!(c.client_id, "idle");
        assert_eq!(buf.capacity(), 0, "an idle connection keeps no read buffer");

        // Bytes after the CONNECT keep the buffer (they are the next packet).
        let mut buf = BytesMut::from(&CONNECT_IDLE[..]);
        buf.extend_from_slice(&[0xC0, 0x00]);
        assert!(matches!(
            codec.decode(&mut buf).unwrap(),
            Some(Packet::Connect(_))
        ));
        assert!(matches!(
            codec.decode(&mut buf).unwrap(),
            Some(Packet::PingReq)
        ));
    }

    #[test]
    fn a_header_announcing_a_large_packet_reserves_only_a_little() {
        let mut codec = MqttCodec::new(1 << 20);
        // PUBLISH of 1,000,000 bytes: only the fixed header has arrived.
        let mut buf = BytesMut::from(&[0x30, 0xC0, 0x84, 0x3D][..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() <= 2 * READ_AHEAD, "{}", buf.capacity());
    }

    #[test]
    fn oversized_packet_is_refused_from_its_fixed_header() {
        let mut codec = MqttCodec::new(1024);
        // A PUBLISH declaring 2 MB, with only its header present.
        let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x01][..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::Protocol(ProtocolError::PacketTooLarge { .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn five_byte_remaining_length_is_malformed() {
        let err = decode_all(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).unwrap_err();
        assert!(matches!(
            err,
            CodecError::Protocol(ProtocolError::MalformedRemainingLength)
        ));
    }

    #[test]
    fn partial_packets_wait_for_more_bytes() {
        assert!(decode_all(&[0x30]).unwrap().is_none());
        assert!(decode_all(&[0x30, 0x85]).unwrap().is_none());
        assert!(decode_all(&[0x30, 0x05, 0x00]).unwrap().is_none());
    }

    /// The fuzz target's 5.0 seed is a whole valid session: every packet
    /// decodes (a CONNECT with will properties, PUBLISHes setting and using
    /// a topic alias, SUBSCRIBE with options, acknowledgements with reason
    /// codes, PINGREQ, AUTH, DISCONNECT with a reason).
    #[test]
    fn the_v5_fuzz_seed_is_a_valid_session() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fuzz/corpus/decode/connect-5-chunk255"
        );
        let seed = std::fs::read(path).unwrap();
        let mut codec = MqttCodec::default().with_topic_alias_maximum(8);
        let mut buf = BytesMut::from(&seed[1..]);
        let mut kinds = Vec::new();
        while let Some(p) = codec.decode(&mut buf).unwrap() {
            kinds.push(p.packet_type() as u8);
        }
        assert!(buf.is_empty());
        assert_eq!(kinds, [1, 3, 3, 8, 10, 4, 5, 6, 7, 12, 15, 14]);
        assert_eq!(codec.version(), ProtocolVersion::V5);
    }

    /// A 3.1.1 UNSUBACK is its packet id alone [MQTT-3.11.2-1]; AUTH is
    /// not a 3.1.1 packet type (section 2.2.1).
    #[test]
    fn a_v311_unsuback_has_no_codes_and_auth_is_v5_only() {
        assert!(matches!(
            decode_all(&[0xB0, 3, 0, 3, 1]),
            Err(CodecError::Protocol(ProtocolError::TrailingBytes { .. }))
        ));
        assert!(matches!(
            decode_all(&[0xF0, 0]),
            Err(CodecError::Protocol(ProtocolError::ReservedPacketType(15)))
        ));
        let mut v5 = MqttCodec::default().with_version(ProtocolVersion::V5);
        assert_eq!(
            v5.decode(&mut BytesMut::from(&[0xF0, 0][..])).unwrap(),
            Some(Packet::Auth(Reasoned::normal()))
        );
    }

    #[test]
    fn reserved_types_and_flags_are_rejected() {
        assert!(decode_all(&[0x00, 0x00]).is_err());
        assert!(decode_all(&[0xF0, 0x00]).is_err());
        assert!(
            decode_all(&[0x60, 0x02, 0x00, 0x01]).is_err(),
            "PUBREL needs flags 0010"
        );
        assert!(
            decode_all(&[0x80, 0x02, 0x00, 0x01]).is_err(),
            "SUBSCRIBE needs flags 0010"
        );
        assert!(decode_all(&[0xC1, 0x00]).is_err());
        assert!(
            decode_all(&[0x36, 0x05, 0, 1, b'a', 0, 1]).is_err(),
            "QoS 3"
        );
    }

    fn arb_topic() -> impl Strategy<Value = TopicName> {
        "[a-z0-9/$ ]{1,20}".prop_filter_map("valid topic", |s| TopicName::new(s).ok())
    }

    fn arb_filter() -> impl Strategy<Value = TopicFilter> {
        prop::collection::vec(prop_oneof!["[a-z]{0,4}", Just("+".to_string())], 1..5)
            .prop_flat_map(|levels| (Just(levels), any::<bool>()))
            .prop_filter_map("valid filter", |(mut levels, hash)| {
                if hash {
                    levels.push("#".into());
                }
                TopicFilter::new(levels.join("/")).ok()
            })
    }

    fn arb_qos() -> impl Strategy<Value = QoS> {
        prop_oneof![
            Just(QoS::AtMostOnce),
            Just(QoS::AtLeastOnce),
            Just(QoS::ExactlyOnce)
        ]
    }

    fn arb_pid() -> impl Strategy<Value = PacketId> {
        (1u16..).prop_map(|v| PacketId::new(v).unwrap())
    }

    fn arb_string() -> impl Strategy<Value = bytestring::ByteString> {
        "[^\u{0}]{0,30}".prop_map(bytestring::ByteString::from)
    }

    fn arb_bytes() -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
    }

    /// Properties a block of `of` may hold, `None` when empty; none in
    /// 3.1.1.
    fn arb_props(v5: bool, of: PropertiesOf) -> BoxedStrategy<Option<Box<Properties>>> {
        if !v5 {
            return Just(None).boxed();
        }
        crate::protocol::properties::tests::properties(of)
            .prop_map(|mut p| {
                // An alias needs the codec's table: tested on its own.
                p.topic_alias = None;
                // What a block may hold together (see `check_pairs`).
                p.response_topic = p.response_topic.map(|t| t.replace(['+', '#'], "").into());
                if p.authentication_method.is_none() {
                    p.authentication_data = None;
                }
                (!p.is_empty()).then(|| Box::new(p))
            })
            .boxed()
    }

    /// A reason code a packet of kind `of` may carry.
    fn arb_reason(of: PropertiesOf) -> impl Strategy<Value = ReasonCode> {
        let codes: Vec<ReasonCode> = (0..=255u8)
            .map(ReasonCode)
            .filter(|c| c.name(of).is_some())
            .collect();
        proptest::sample::select(codes)
    }

    /// A reason code of `of` in 5.0; Success, the only one, in 3.1.1.
    fn arb_reason_in(v5: bool, of: PropertiesOf) -> BoxedStrategy<ReasonCode> {
        match v5 {
            true => arb_reason(of).boxed(),
            false => Just(ReasonCode::SUCCESS).boxed(),
        }
    }

    fn arb_version() -> impl Strategy<Value = ProtocolVersion> {
        proptest::sample::select(ProtocolVersion::ALL.to_vec())
    }

    fn arb_connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
        let v5 = version.is_v5();
        let will = prop::option::of(
            (
                arb_topic(),
                arb_bytes(),
                arb_qos(),
                any::<bool>(),
                arb_props(v5, PropertiesOf::Will),
            )
                .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
                    topic,
                    payload,
                    qos,
                    retain,
                    properties,
                }),
        );
        (
            any::<bool>(),
            any::<u16>(),
            arb_string(),
            will,
            prop::option::of(arb_string()),
            prop::option::of(arb_bytes()),
            arb_props(v5, PropertiesOf::Connect),
        )
            .prop_map(
                move |(
                    clean_session,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                )| {
                    // Only 5.0 allows a password without a user name.
                    let password = if username.is_some() || v5 {
                        password
                    } else {
                        None
                    };
                    Packet::Connect(Box::new(Connect {
                        version,
                        clean_session,
                        keep_alive,
                        client_id,
                        will,
                        username,
                        password,
                        properties,
                    }))
                },
            )
    }

    /// Any packet but CONNECT, as a connection of `version` carries it.
    fn arb_packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
        let v5 = version.is_v5();
        let publish = (
            arb_qos(),
            any::<bool>(),
            any::<bool>(),
            arb_topic(),
            arb_pid(),
            arb_bytes(),
            arb_props(v5, PropertiesOf::Publish),
        )
            .prop_map(|(qos, dup, retain, topic, pid, payload, properties)| {
                Packet::Publish(Publish {
                    dup: dup && qos != QoS::AtMostOnce,
                    qos,
                    retain,
                    topic,
                    packet_id: (qos != QoS::AtMostOnce).then_some(pid),
                    payload,
                    properties,
                })
            });
        let options = (any::<bool>(), any::<bool>(), 0u8..3).prop_map(move |(nl, rap, rh)| {
            if !v5 {
                return SubscriptionOptions::default();
            }
            SubscriptionOptions {
                no_local: nl,
                retain_as_published: rap,
                retain_handling: [
                    RetainHandling::Always,
                    RetainHandling::IfNew,
                    RetainHandling::Never,
                ][rh as usize],
            }
        });
        let subscribe = (
            arb_pid(),
            prop::collection::vec((arb_filter(), arb_qos(), options), 1..5),
            arb_props(v5, PropertiesOf::Subscribe),
        )
            .prop_map(|(packet_id, t, properties)| {
                Packet::Subscribe(Subscribe {
                    packet_id,
                    topics: t
                        .into_iter()
                        .map(|(filter, qos, options)| SubscribeTopic {
                            filter,
                            qos,
                            options,
                        })
                        .collect(),
                    properties,
                })
            });
        let suback_code = if v5 {
            arb_reason(PropertiesOf::SubAck).boxed()
        } else {
            proptest::sample::select(vec![0u8, 1, 2, 0x80])
                .prop_map(ReasonCode)
                .boxed()
        };
        let suback = (
            arb_pid(),
            prop::collection::vec(suback_code, 0..5),
            arb_props(v5, PropertiesOf::SubAck),
        )
            .prop_map(|(packet_id, codes, properties)| {
                Packet::SubAck(SubAck {
                    packet_id,
                    codes,
                    properties,
                })
            });
        let unsuback = (
            arb_pid(),
            prop::collection::vec(arb_reason(PropertiesOf::UnsubAck), 0..5),
            arb_props(v5, PropertiesOf::UnsubAck),
        )
            .prop_map(move |(packet_id, codes, properties)| {
                Packet::UnsubAck(SubAck {
                    packet_id,
                    codes: if v5 { codes } else { Vec::new() },
                    properties,
                })
            });
        let unsubscribe = (
            arb_pid(),
            prop::collection::vec(arb_filter(), 1..5),
            arb_props(v5, PropertiesOf::Unsubscribe),
        )
            .prop_map(|(packet_id, filters, properties)| {
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    filters,
                    properties,
                })
            });
        let connack_code = if v5 {
            arb_reason(PropertiesOf::ConnAck).boxed()
        } else {
            (0u8..6)
                .prop_map(|code| {
                    use ConnectReturnCode::*;
                    ReasonCode::from(
                        [
                            Accepted,
                            UnacceptableProtocolVersion,
                            IdentifierRejected,
                            ServerUnavailable,
                            BadUsernameOrPassword,
                            NotAuthorized,
                        ][code as usize],
                    )
                })
                .boxed()
        };
        let connack = (
            any::<bool>(),
            connack_code,
            arb_props(v5, PropertiesOf::ConnAck),
        )
            .prop_map(|(session_present, reason, properties)| {
                Packet::ConnAck(ConnAck {
                    session_present,
                    reason,
                    properties,
                })
            });
        let ack = move |of: PropertiesOf| {
            (arb_pid(), arb_reason_in(v5, of), arb_props(v5, of)).prop_map(
                |(packet_id, reason, properties)| Ack {
                    packet_id,
                    reason,
                    properties,
                },
            )
        };
        let reasoned = move |of: PropertiesOf| {
            (arb_reason_in(v5, of), arb_props(v5, of))
                .prop_map(|(reason, properties)| Reasoned { reason, properties })
        };
        let common = prop_oneof![
            publish,
            subscribe,
            suback,
            unsubscribe,
            unsuback,
            connack,
            ack(PropertiesOf::PubAck).prop_map(Packet::PubAck),
            ack(PropertiesOf::PubRec).prop_map(Packet::PubRec),
            ack(PropertiesOf::PubRel).prop_map(Packet::PubRel),
            ack(PropertiesOf::PubComp).prop_map(Packet::PubComp),
            Just(Packet::PingReq),
            Just(Packet::PingResp),
            reasoned(PropertiesOf::Disconnect).prop_map(Packet::Disconnect),
        ];
        if v5 {
            prop_oneof![
                12 => common,
                1 => reasoned(PropertiesOf::Auth).prop_map(Packet::Auth),
            ]
            .boxed()
        } else {
            common.boxed()
        }
    }

    /// A connection's packets: its CONNECT, then packets in its version.
    fn arb_session() -> impl Strategy<Value = (ProtocolVersion, Vec<Packet>)> {
        arb_version().prop_flat_map(|version| {
            (
                Just(version),
                arb_connect(version),
                prop::collection::vec(arb_packet(version), 0..8),
            )
                .prop_map(|(version, connect, rest)| {
                    let mut packets = vec![connect];
                    packets.extend(rest);
                    (version, packets)
                })
        })
    }

    proptest! {
        /// Whatever a connection of any version may carry encodes to
        /// `wire_len` bytes and decodes back to itself, in the version its
        /// CONNECT chose.
        #[test]
        fn codec_round_trip((version, packets) in arb_session()) {
            let mut buf = BytesMut::new();
            let mut writer = MqttCodec::default();
            for p in &packets {
                writer.encode(p, &mut buf).unwrap();
            }
            prop_assert_eq!(writer.version(), version);
            let mut codec = MqttCodec::default();
            for p in &packets {
                let before = buf.len();
                let decoded = codec.decode(&mut buf).unwrap().unwrap();
                prop_assert_eq!(before - buf.len(), p.wire_len(version));
                prop_assert_eq!(&decoded, p);
            }
            prop_assert_eq!(codec.version(), version);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn decoder_never_panics_on_arbitrary_bytes(
            v5 in any::<bool>(),
            bytes in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut codec = MqttCodec::new(4096).with_topic_alias_maximum(4);
            if v5 {
                let mut connect = BytesMut::from(&CONNECT_V5[..]);
                codec.decode(&mut connect).unwrap().unwrap();
            }
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }

        /// What decodes from arbitrary bytes, in either version, encodes
        /// and decodes back to itself (as the fuzz target checks): a
        /// 3.1.1 UNSUBACK with bytes after its packet id once decoded them
        /// as reason codes it then did not write.
        #[test]
        fn what_decodes_from_arbitrary_bytes_round_trips(
            v5 in any::<bool>(),
            bytes in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 };
            let mut codec = MqttCodec::new(4096).with_version(version).with_topic_alias_maximum(4);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(p)) = codec.decode(&mut buf) {
                let version = codec.version();
                let mut again = BytesMut::new();
                p.encode(&mut again, version);
                let back = MqttCodec::default()
                    .with_version(version)
                    .with_topic_alias_maximum(4)
                    .decode(&mut again);
                prop_assert_eq!(back.unwrap(), Some(p));
            }
        }

        #[test]
        fn decoder_handles_any_split_point(
            (version, p) in arb_version().prop_flat_map(|v| (Just(v), arb_packet(v))),
            split in 0usize..400,
        ) {
            let mut codec = MqttCodec::default();
            let mut whole = BytesMut::new();
            let mut writer = MqttCodec::default();
            if version.is_v5() {
                // A 5.0 connection, on both sides: its CONNECT first.
                let mut connect = BytesMut::from(&CONNECT_V5[..]);
                let c = codec.decode(&mut connect).unwrap().unwrap();
                writer.encode(c, &mut BytesMut::new()).unwrap();
            }
            writer.encode(&p, &mut whole).unwrap();
            let split = split.min(whole.len());
            let mut buf = BytesMut::from(&whole[..split]);
            let first = codec.decode(&mut buf).unwrap();
            if split < whole.len() {
                prop_assert!(first.is_none());
                buf.extend_from_slice(&whole[split..]);
                prop_assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), p);
            } else {
                prop_assert_eq!(first.unwrap(), p);
            }
        }
    }
}
