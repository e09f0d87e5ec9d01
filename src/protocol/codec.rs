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

#[derive(Debug, Clone)]
pub struct MqttCodec {
    /// Largest whole packet (fixed header included) the decoder accepts; at
    /// most 256 MiB and 5 bytes. A `u32`: every connection holds a codec.
    max_packet_size: u32,
    /// The last packet was a CONNECT or PINGREQ with nothing read after it:
    /// the client is likely to stay quiet, and its read buffer was given
    /// back (see `READ_AHEAD`).
    quiet: bool,
}

impl MqttCodec {
    pub fn new(max_packet_size: usize) -> MqttCodec {
        MqttCodec {
            max_packet_size: u32::try_from(max_packet_size.min(MAX_REMAINING_LENGTH + 5))
                .unwrap_or(u32::MAX),
            quiet: false,
        }
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
        let packet =
            PacketType::from_u8(type_bits).ok_or(ProtocolError::ReservedPacketType(type_bits))?;
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
        let decoded = match packet {
            PacketType::Connect => {
                let connect = Connect::decode(r)?;
                Packet::Connect(Box::new(connect))
            }
            PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(r)?),
            PacketType::Publish => Packet::Publish(Publish::decode(flags, r)?),
            PacketType::PubAck => Packet::PubAck(ack::decode(r)?),
            PacketType::PubRec => Packet::PubRec(ack::decode(r)?),
            PacketType::PubRel => Packet::PubRel(ack::decode(r)?),
            PacketType::PubComp => Packet::PubComp(ack::decode(r)?),
            PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(r)?),
            PacketType::SubAck => Packet::SubAck(SubAck::decode(r)?),
            PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(r)?),
            PacketType::UnsubAck => Packet::UnsubAck(ack::decode(r)?),
            PacketType::PingReq => {
                r.finish()?;
                Packet::PingReq
            }
            PacketType::PingResp => {
                r.finish()?;
                Packet::PingResp
            }
            PacketType::Disconnect => {
                r.finish()?;
                Packet::Disconnect
            }
        };
        Ok(Some(decoded))
    }
}

impl Encoder<Packet> for MqttCodec {
    type Error = CodecError;

    fn encode(&mut self, packet: Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        packet.encode(dst);
        Ok(())
    }
}

impl Encoder<&Packet> for MqttCodec {
    type Error = CodecError;

    fn encode(&mut self, packet: &Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        packet.encode(dst);
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
            matches!(codec.decode(&mut buf).unwrap(), Some(Packet::PubAck(id)) if id.get() == 1)
        );
        assert!(
            matches!(codec.decode(&mut buf).unwrap(), Some(Packet::PubAck(id)) if id.get() == 2)
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

    fn arb_packet() -> impl Strategy<Value = Packet> {
        let publish = (
            arb_qos(),
            any::<bool>(),
            any::<bool>(),
            arb_topic(),
            arb_pid(),
            arb_bytes(),
        )
            .prop_map(|(qos, dup, retain, topic, pid, payload)| {
                Packet::Publish(Publish {
                    dup: dup && qos != QoS::AtMostOnce,
                    qos,
                    retain,
                    topic,
                    packet_id: (qos != QoS::AtMostOnce).then_some(pid),
                    payload,
                })
            });
        let will = prop::option::of(
            (arb_topic(), arb_bytes(), arb_qos(), any::<bool>()).prop_map(
                |(topic, payload, qos, retain)| LastWill {
                    topic,
                    payload,
                    qos,
                    retain,
                },
            ),
        );
        let connect = (
            any::<bool>(),
            any::<bool>(),
            any::<u16>(),
            arb_string(),
            will,
            prop::option::of(arb_string()),
            prop::option::of(arb_bytes()),
        )
            .prop_map(
                |(v311, clean_session, keep_alive, client_id, will, username, password)| {
                    let password = if username.is_some() { password } else { None };
                    Packet::Connect(Box::new(Connect {
                        version: if v311 {
                            ProtocolVersion::V311
                        } else {
                            ProtocolVersion::V31
                        },
                        clean_session,
                        keep_alive,
                        client_id,
                        will,
                        username,
                        password,
                    }))
                },
            );
        let subscribe = (
            arb_pid(),
            prop::collection::vec((arb_filter(), arb_qos()), 1..5),
        )
            .prop_map(|(packet_id, t)| {
                Packet::Subscribe(Subscribe {
                    packet_id,
                    topics: t
                        .into_iter()
                        .map(|(filter, qos)| SubscribeTopic { filter, qos })
                        .collect(),
                })
            });
        let suback = (
            arb_pid(),
            prop::collection::vec(prop::option::of(arb_qos()), 0..5),
        )
            .prop_map(|(packet_id, c)| {
                Packet::SubAck(SubAck {
                    packet_id,
                    codes: c
                        .into_iter()
                        .map(|q| {
                            q.map_or(SubscribeReturnCode::Failure, SubscribeReturnCode::Granted)
                        })
                        .collect(),
                })
            });
        let unsubscribe = (arb_pid(), prop::collection::vec(arb_filter(), 1..5)).prop_map(
            |(packet_id, filters)| Packet::Unsubscribe(Unsubscribe { packet_id, filters }),
        );
        let connack = (any::<bool>(), 0u8..6).prop_map(|(session_present, code)| {
            use ConnectReturnCode::*;
            let code = [
                Accepted,
                UnacceptableProtocolVersion,
                IdentifierRejected,
                ServerUnavailable,
                BadUsernameOrPassword,
                NotAuthorized,
            ][code as usize];
            Packet::ConnAck(ConnAck {
                session_present,
                code,
            })
        });
        prop_oneof![
            publish,
            connect,
            subscribe,
            suback,
            unsubscribe,
            connack,
            arb_pid().prop_map(Packet::PubAck),
            arb_pid().prop_map(Packet::PubRec),
            arb_pid().prop_map(Packet::PubRel),
            arb_pid().prop_map(Packet::PubComp),
            arb_pid().prop_map(Packet::UnsubAck),
            Just(Packet::PingReq),
            Just(Packet::PingResp),
            Just(Packet::Disconnect),
        ]
    }

    proptest! {
        #[test]
        fn codec_round_trip(packets in prop::collection::vec(arb_packet(), 1..8)) {
            let mut buf = BytesMut::new();
            for p in &packets {
                p.encode(&mut buf);
            }
            let mut codec = MqttCodec::default();
            for p in &packets {
                let before = buf.len();
                let decoded = codec.decode(&mut buf).unwrap().unwrap();
                prop_assert_eq!(before - buf.len(), p.wire_len());
                prop_assert_eq!(&decoded, p);
            }
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn decoder_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut codec = MqttCodec::new(4096);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }

        #[test]
        fn decoder_handles_any_split_point(p in arb_packet(), split in 0usize..400) {
            let mut whole = BytesMut::new();
            p.encode(&mut whole);
            let split = split.min(whole.len());
            let mut codec = MqttCodec::default();
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
