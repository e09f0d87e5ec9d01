//! The decoder against arbitrary bytes, the way a socket delivers them:
//! the input is split into chunks (sizes taken from its first byte) that
//! are appended to one buffer, decoding after each, until the stream ends
//! or the decoder refuses it. It must never panic, never return a packet
//! longer than the bytes it consumed, and every packet it returns must
//! encode and decode back to itself, in the version the stream's CONNECT
//! chose (5.0 with properties, topic aliases and reason codes, or 3.1.1).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use roost::protocol::codec::MqttCodec;
use tokio_util::codec::Decoder;

/// Topic aliases the decoder accepts from a 5.0 stream.
const ALIASES: u16 = 8;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    // A small maximum packet size too, so the size check is exercised.
    for max in [256, 1 << 20] {
        let mut codec = MqttCodec::new(max).with_topic_alias_maximum(ALIASES);
        let mut buf = BytesMut::new();
        'stream: for piece in rest.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                let before = buf.len();
                match codec.decode(&mut buf) {
                    Ok(Some(packet)) => {
                        assert!(buf.len() < before, "a packet consumed no bytes");
                        let version = codec.version();
                        let mut again = BytesMut::new();
                        packet.encode(&mut again, version);
                        let back = MqttCodec::new(1 << 28)
                            .with_version(version)
                            .with_topic_alias_maximum(ALIASES)
                            .decode(&mut again)
                            .expect("our own encoding decodes")
                            .expect("our own encoding is complete");
                        assert_eq!(format!("{back:?}"), format!("{packet:?}"));
                    }
                    Ok(None) => break,
                    Err(_) => break 'stream,
                }
            }
        }
    }
});
