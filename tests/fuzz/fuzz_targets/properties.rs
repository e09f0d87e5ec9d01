//! MQTT 5.0 property blocks against arbitrary bytes: the first byte picks
//! the packet the block belongs to (which properties it may hold), the rest
//! is the block. Decoding must never panic, and a block that decodes must
//! encode to `encoded_len` bytes that decode to the same properties.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use roost::protocol::properties::{decode_block, PropertiesOf};
use roost::protocol::PacketType;

fuzz_target!(|data: &[u8]| {
    let Some((&place, rest)) = data.split_first() else {
        return;
    };
    let of = PropertiesOf::ALL[usize::from(place) % PropertiesOf::ALL.len()];
    let decoded = decode_block(Bytes::copy_from_slice(rest), of, PacketType::Publish);
    if let Ok(properties) = decoded {
        let mut buf = BytesMut::new();
        properties.encode(&mut buf);
        assert_eq!(buf.len(), properties.encoded_len());
        let again = decode_block(buf.freeze(), of, PacketType::Publish);
        assert_eq!(again.as_ref(), Ok(&properties));
    }
});
