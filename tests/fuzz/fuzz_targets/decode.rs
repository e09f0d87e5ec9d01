//! The decoder against arbitrary bytes, the way a socket delivers them:
//! the input is split into chunks (sizes taken from its first byte) that
//! are appended to one buffer, decoding after each, until the stream ends
//! or the decoder refuses it. It must never panic, never return a packet
//! longer than the bytes it consumed, and every packet it returns must
//! encode and decode back to itself.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use roost::protocol::codec::MqttCodec;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    // A small maximum packet size too, so the size check is exercised.
    for max in [256, 1 << 20] {
        let mut codec = MqttCodec::new(max);
        let mut buf = BytesMut::new();
        'stream: for piece in rest.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                let before = buf.len();
                match codec.decode(&mut buf) {
                    Ok(Some(packet)) => {
                        assert!(buf.len() < before, "a packet consumed no bytes");
                        let mut again = BytesMut::new();
                        packet.encode(&mut again);
                        let back = MqttCodec::new(1 << 28)
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
