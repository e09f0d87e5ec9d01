//! Malformed packets of every type (sections 1.5, 2, 3, 4.7, 4.8): each is
//! answered with a plain close of the offending connection, and another
//! client already connected to the same broker keeps working (ping and a
//! pub/sub round trip). One test per case, so a failure names its case.

use crate::common::raw::{self, field, packet};
use crate::common::{RawClient, TestBroker};
use roost::broker::ops::metrics::Metrics;

/// A client on the same broker that must not notice anything.
struct Bystander(RawClient);

impl Bystander {
    async fn join(broker: &TestBroker) -> Bystander {
        let mut c = RawClient::connected(broker.addr(), "bystander", true).await;
        c.subscribe_ok(1, &[("bystander/echo", 1)]).await;
        Bystander(c)
    }

    async fn still_works(&mut self) {
        self.0.ping().await;
        self.0
            .send(&raw::publish(
                "bystander/echo",
                b"still here",
                0,
                0,
                false,
                false,
            ))
            .await;
        self.0.expect_publish("bystander/echo", b"still here").await;
    }
}

/// The offender connects (CONNACK accepted), sends `bytes`, and must be
/// closed without a reply.
async fn closes_after_connect(bytes: &[u8]) {
    closes_with(|_| {}, true, bytes).await
}

/// `bytes` is the first thing sent on the socket (a malformed CONNECT, or a
/// packet before CONNECT); the socket must be closed without a reply.
async fn closes_as_first_packet(bytes: &[u8]) {
    closes_with(|_| {}, false, bytes).await
}

async fn closes_with(tweak: impl FnOnce(&mut roost::Config), connect_first: bool, bytes: &[u8]) {
    let broker = TestBroker::start_with(tweak);
    let mut bystander = Bystander::join(&broker).await;
    let mut offender = if connect_first {
        RawClient::connected(broker.addr(), "offender", true).await
    } else {
        RawClient::connect(broker.addr()).await
    };
    offender.send_lossy(bytes).await;
    offender.expect_closed_silently().await;
    bystander.still_works().await;
    let errors = Metrics::get(&broker.handle.metrics().protocol_errors);
    assert_eq!(
        errors, 1,
        "the broker should count exactly one protocol error, counted {errors}"
    );
}

/// A CONNECT whose client id is the raw bytes `id` (possibly not UTF-8).
fn connect_with_raw_id(id: &[u8]) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.extend([4, 0x02, 0, 60]);
    body.extend(field(id));
    packet(0x10, &body)
}

/// A QoS 0 PUBLISH whose topic is the raw bytes `topic`.
fn publish_raw_topic(topic: &[u8]) -> Vec<u8> {
    let mut body = field(topic);
    body.extend_from_slice(b"payload");
    packet(0x30, &body)
}

/// A SUBSCRIBE (packet id 1) of one filter given as raw bytes, QoS 0.
fn subscribe_raw_filter(filter: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1];
    body.extend(field(filter));
    body.push(0);
    packet(0x82, &body)
}

/// A PUBLISH body: topic "t", packet id 1, payload "x".
fn publish_body_with_id() -> Vec<u8> {
    let mut body = field(b"t");
    body.extend([0, 1, b'x']);
    body
}

macro_rules! malformed {
    ($($(#[$doc:meta])* $name:ident: $how:ident($bytes:expr);)*) => {
        $(
            $(#[$doc])*
            #[tokio::test]
            async fn $name() {
                $how(&$bytes).await
            }
        )*
    };
}

malformed! {
    // --- Reserved packet types (section 2.2.1) ---

    /// [MQTT-2.2.1] Packet type 0 is Reserved (forbidden): closes.
    reserved_packet_type_0_closes_mqtt_2_2_1: closes_after_connect([0x00, 0x00]);
    /// [MQTT-2.2.1] Packet type 15 is Reserved (forbidden): closes.
    reserved_packet_type_15_closes_mqtt_2_2_1: closes_after_connect([0xF0, 0x00]);
    /// [MQTT-2.2.1] Packet type 0 as the very first packet: closes.
    reserved_packet_type_0_before_connect_closes_mqtt_2_2_1: closes_as_first_packet([0x00, 0x00]);

    // --- Fixed-header flags (section 2.2.2) ---

    /// [MQTT-2.2.2-2] If invalid flags are received, the receiver MUST close
    /// the Network Connection: CONNECT with flags 0001 (must be 0000).
    connect_flags_0001_closes_mqtt_2_2_2_2: closes_as_first_packet({
        let mut b = raw::connect("flags", true);
        b[0] = 0x11;
        b
    });
    /// [MQTT-2.2.2-2] PUBACK with flags 0001 (must be 0000).
    puback_flags_0001_closes_mqtt_2_2_2_2: closes_after_connect(packet(0x41, &[0, 1]));
    /// [MQTT-2.2.2-2] PUBREC with flags 0010 (must be 0000).
    pubrec_flags_0010_closes_mqtt_2_2_2_2: closes_after_connect(packet(0x52, &[0, 1]));
    /// [MQTT-2.2.2-2] PUBREL with flags 0000 (must be 0010).
    pubrel_flags_0000_closes_mqtt_2_2_2_2: closes_after_connect(packet(0x60, &[0, 1]));
    /// [MQTT-2.2.2-2] PUBREL with flags 1010 (must be 0010).
    pubrel_flags_1010_closes_mqtt_2_2_2_2: closes_after_connect(packet(0x6A, &[0, 1]));
    /// [MQTT-2.2.2-2] PUBCOMP with flags 1000 (must be 0000).
    pubcomp_flags_1000_closes_mqtt_2_2_2_2: closes_after_connect(packet(0x78, &[0, 1]));
    /// [MQTT-2.2.2-2] SUBSCRIBE with flags 0000 (must be 0010).
    subscribe_flags_0000_closes_mqtt_2_2_2_2: closes_after_connect({
        let mut b = raw::subscribe(1, &[("a", 0)]);
        b[0] = 0x80;
        b
    });
    /// [MQTT-2.2.2-2] SUBSCRIBE with flags 0011 (must be 0010).
    subscribe_flags_0011_closes_mqtt_2_2_2_2: closes_after_connect({
        let mut b = raw::subscribe(1, &[("a", 0)]);
        b[0] = 0x83;
        b
    });
    /// [MQTT-2.2.2-2] UNSUBSCRIBE with flags 0000 (must be 0010).
    unsubscribe_flags_0000_closes_mqtt_2_2_2_2: closes_after_connect({
        let mut b = raw::unsubscribe(1, &["a"]);
        b[0] = 0xA0;
        b
    });
    /// [MQTT-2.2.2-2] PINGREQ with flags 0001 (must be 0000).
    pingreq_flags_0001_closes_mqtt_2_2_2_2: closes_after_connect([0xC1, 0x00]);
    /// [MQTT-2.2.2-2] DISCONNECT with flags 0010 (must be 0000).
    disconnect_flags_0010_closes_mqtt_2_2_2_2: closes_after_connect([0xE2, 0x00]);

    // --- PUBLISH header and topic ---

    /// [MQTT-3.3.1-4] A PUBLISH Packet MUST NOT have both QoS bits set to 1.
    publish_qos_3_closes_mqtt_3_3_1_4: closes_after_connect(packet(0x36, &publish_body_with_id()));
    /// [MQTT-3.3.1-4] QoS 3 with RETAIN set as well.
    publish_qos_3_retained_closes_mqtt_3_3_1_4: closes_after_connect(packet(0x37, &publish_body_with_id()));
    /// [MQTT-3.3.1-2] The DUP flag MUST be set to 0 for all QoS 0 messages.
    publish_dup_on_qos_0_closes_mqtt_3_3_1_2: closes_after_connect(packet(0x38, &[0, 1, b't', b'x']));
    /// [MQTT-3.3.2-2] The Topic Name in the PUBLISH Packet MUST NOT contain
    /// wildcard characters: `a/+`.
    publish_topic_with_plus_closes_mqtt_3_3_2_2: closes_after_connect(raw::publish("a/+", b"x", 0, 0, false, false));
    /// [MQTT-3.3.2-2] No wildcards in a topic name: `a/#`.
    publish_topic_with_hash_closes_mqtt_3_3_2_2: closes_after_connect(raw::publish("a/#", b"x", 0, 0, false, false));
    /// [MQTT-3.3.2-2] No wildcards in a topic name: `#` alone, at QoS 1.
    publish_topic_hash_alone_qos1_closes_mqtt_3_3_2_2: closes_after_connect(raw::publish("#", b"x", 1, 1, false, false));
    /// [MQTT-4.7.3-1] All Topic Names and Topic Filters MUST be at least one
    /// character long: empty topic at QoS 0.
    publish_empty_topic_closes_mqtt_4_7_3_1: closes_after_connect(raw::publish("", b"x", 0, 0, false, false));
    /// [MQTT-4.7.3-1] Empty topic at QoS 1.
    publish_empty_topic_qos1_closes_mqtt_4_7_3_1: closes_after_connect(raw::publish("", b"x", 1, 1, false, false));

    // --- Packet identifier 0 ---

    /// [MQTT-2.3.1-1] SUBSCRIBE, UNSUBSCRIBE, and PUBLISH (in cases where QoS >
    /// 0) Control Packets MUST contain a non-zero 16-bit Packet Identifier:
    /// PUBLISH QoS 1 with id 0.
    publish_qos1_packet_id_0_closes_mqtt_2_3_1_1: closes_after_connect(raw::publish("t", b"x", 1, 0, false, false));
    /// [MQTT-2.3.1-1] PUBLISH QoS 2 with id 0.
    publish_qos2_packet_id_0_closes_mqtt_2_3_1_1: closes_after_connect(raw::publish("t", b"x", 2, 0, false, false));
    /// [MQTT-2.3.1-1] SUBSCRIBE with id 0.
    subscribe_packet_id_0_closes_mqtt_2_3_1_1: closes_after_connect(raw::subscribe(0, &[("a", 0)]));
    /// [MQTT-2.3.1-1] UNSUBSCRIBE with id 0.
    unsubscribe_packet_id_0_closes_mqtt_2_3_1_1: closes_after_connect(raw::unsubscribe(0, &["a"]));
    /// [MQTT-2.3.1-1] PUBACK with id 0 (it must echo a non-zero id).
    puback_packet_id_0_closes_mqtt_2_3_1_1: closes_after_connect(raw::puback(0));
    /// [MQTT-2.3.1-1] PUBREC with id 0.
    pubrec_packet_id_0_closes_mqtt_2_3_1_1: closes_after_connect(raw::pubrec(0));
    /// [MQTT-2.3.1-1] PUBREL with id 0.
    pubrel_packet_id_0_closes_mqtt_2_3_1_1: closes_after_connect(raw::pubrel(0));
    /// [MQTT-2.3.1-1] PUBCOMP with id 0.
    pubcomp_packet_id_0_closes_mqtt_2_3_1_1: closes_after_connect(raw::pubcomp(0));

    // --- Remaining length and field lengths ---

    /// [MQTT-2.2.3] The Remaining Length is at most four bytes: a fifth
    /// continuation byte is malformed.
    remaining_length_of_5_bytes_closes_mqtt_2_2_3: closes_after_connect([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
    /// [MQTT-2.2.3] A five-byte remaining length on a PINGREQ.
    pingreq_remaining_length_of_5_bytes_closes_mqtt_2_2_3: closes_after_connect([0xC0, 0x80, 0x80, 0x80, 0x80, 0x00]);
    /// [MQTT-4.8.0-1] A string whose length runs past the packet: PUBLISH
    /// topic length 10 with 3 bytes left.
    publish_topic_length_past_packet_closes_mqtt_4_8_0_1: closes_after_connect(packet(0x30, &[0, 10, b'a', b'b', b'c']));
    /// [MQTT-4.8.0-1] SUBSCRIBE filter length 9 with 2 bytes left.
    subscribe_filter_length_past_packet_closes_mqtt_4_8_0_1: closes_after_connect(packet(0x82, &[0, 1, 0, 9, b'a', 0]));
    /// [MQTT-4.8.0-1] SUBSCRIBE whose filter is not followed by its QoS byte.
    subscribe_missing_qos_byte_closes_mqtt_4_8_0_1: closes_after_connect(packet(0x82, &[0, 1, 0, 1, b'a']));
    /// [MQTT-4.8.0-1] UNSUBSCRIBE filter length 9 with 1 byte left.
    unsubscribe_filter_length_past_packet_closes_mqtt_4_8_0_1: closes_after_connect(packet(0xA2, &[0, 1, 0, 9, b'a']));
    /// [MQTT-4.8.0-1] CONNECT whose client id length runs past the packet.
    connect_client_id_length_past_packet_closes_mqtt_4_8_0_1: closes_as_first_packet({
        let mut body = field(b"MQTT");
        body.extend([4, 0x02, 0, 60, 0, 20, b'a', b'b']);
        packet(0x10, &body)
    });
    /// [MQTT-4.8.0-1] CONNECT cut short inside its variable header (remaining
    /// length 7: no keep-alive, no payload).
    connect_truncated_variable_header_closes_mqtt_4_8_0_1: closes_as_first_packet({
        let mut body = field(b"MQTT");
        body.push(4);
        packet(0x10, &body)
    });
    /// [MQTT-4.8.0-1] CONNECT with bytes after its last field.
    connect_with_trailing_bytes_closes_mqtt_4_8_0_1: closes_as_first_packet({
        let mut b = raw::connect("trailing", true);
        b.push(0);
        b[1] += 1;
        b
    });
    /// [MQTT-3.1.3-10] The Will Topic MUST be a UTF-8 encoded string: a
    /// surrogate in it closes.
    connect_will_topic_surrogate_closes_mqtt_3_1_3_10: closes_as_first_packet({
        let mut body = field(b"MQTT");
        body.extend([4, 0x06, 0, 60]);
        body.extend(field(b"w"));
        body.extend(field(&[b'w', 0xED, 0xA0, 0x80]));
        body.extend(field(b"bye"));
        packet(0x10, &body)
    });
    /// [MQTT-3.3.2-2] The will topic is a topic name: no wildcards.
    connect_will_topic_with_wildcard_closes_mqtt_3_3_2_2: closes_as_first_packet(raw::ConnectOptions {
        will: Some(raw::Will { topic: "w/#", payload: b"bye", qos: 0, retain: false }),
        ..raw::ConnectOptions::new("w")
    }.bytes());
    /// [MQTT-3.1.2-9] If the Will Flag is set to 1 the Will Topic and Will
    /// Message fields MUST be present in the payload: missing, it closes.
    connect_will_flag_without_will_fields_closes_mqtt_3_1_2_9: closes_as_first_packet({
        let mut b = raw::connect("w", true);
        b[9] |= 0x04;
        b
    });
    /// [MQTT-3.1.2-19] If the User Name Flag is set to 1, a user name MUST be
    /// present in the payload: missing, it closes.
    connect_username_flag_without_username_closes_mqtt_3_1_2_19: closes_as_first_packet({
        let mut b = raw::connect("u", true);
        b[9] |= 0x80;
        b
    });
    /// [MQTT-3.1.2-21] If the Password Flag is set to 1, a password MUST be
    /// present in the payload: missing, it closes.
    connect_password_flag_without_password_closes_mqtt_3_1_2_21: closes_as_first_packet({
        let mut b = raw::ConnectOptions { username: Some("u"), ..raw::ConnectOptions::new("p") }.bytes();
        b[9] |= 0x40;
        b
    });
    /// [MQTT-4.8.0-1] PINGREQ has no variable header: remaining length 1.
    pingreq_with_nonzero_remaining_length_closes_mqtt_4_8_0_1: closes_after_connect([0xC0, 0x01, 0x00]);
    /// [MQTT-4.8.0-1] DISCONNECT has no variable header: remaining length 1.
    disconnect_with_nonzero_remaining_length_closes_mqtt_4_8_0_1: closes_after_connect([0xE0, 0x01, 0x00]);
    /// [MQTT-4.8.0-1] PUBACK's remaining length is 2: 3 is malformed.
    puback_remaining_length_3_closes_mqtt_4_8_0_1: closes_after_connect(packet(0x40, &[0, 1, 0]));
    /// [MQTT-4.8.0-1] PUBACK's remaining length is 2: 1 is malformed.
    puback_remaining_length_1_closes_mqtt_4_8_0_1: closes_after_connect(packet(0x40, &[1]));
    /// [MQTT-4.8.0-1] PUBREL's remaining length is 2: 3 is malformed.
    pubrel_remaining_length_3_closes_mqtt_4_8_0_1: closes_after_connect(packet(0x62, &[0, 1, 0]));

    // --- UTF-8 strings (section 1.5.3) ---

    /// [MQTT-1.5.3-1] The character data in a UTF-8 encoded string MUST be
    /// well-formed UTF-8: overlong NUL 0xC0 0x80 in a topic.
    publish_topic_overlong_utf8_closes_mqtt_1_5_3_1: closes_after_connect(publish_raw_topic(&[b'a', 0xC0, 0x80]));
    /// [MQTT-1.5.3-1] A UTF-16 surrogate (0xED 0xA0 0x80, U+D800) in a topic.
    publish_topic_surrogate_closes_mqtt_1_5_3_1: closes_after_connect(publish_raw_topic(&[b'a', 0xED, 0xA0, 0x80]));
    /// [MQTT-1.5.3-1] A byte that never occurs in UTF-8 (0xFF) in a topic.
    publish_topic_0xff_closes_mqtt_1_5_3_1: closes_after_connect(publish_raw_topic(&[b'a', 0xFF]));
    /// [MQTT-1.5.3-1] Overlong 0xC0 0x80 in the client id.
    connect_client_id_overlong_utf8_closes_mqtt_1_5_3_1: closes_as_first_packet(connect_with_raw_id(&[b'c', 0xC0, 0x80]));
    /// [MQTT-1.5.3-1] A surrogate (0xED 0xA0 0x80) in the client id.
    connect_client_id_surrogate_closes_mqtt_1_5_3_1: closes_as_first_packet(connect_with_raw_id(&[b'c', 0xED, 0xA0, 0x80]));
    /// [MQTT-1.5.3-1] A surrogate in a SUBSCRIBE topic filter.
    subscribe_filter_surrogate_closes_mqtt_1_5_3_1: closes_after_connect(subscribe_raw_filter(&[b'a', 0xED, 0xA0, 0x80]));
    /// [MQTT-1.5.3-2] A UTF-8 encoded string MUST NOT include an encoding of
    /// the null character U+0000: in a topic.
    publish_topic_with_nul_closes_mqtt_1_5_3_2: closes_after_connect(publish_raw_topic(b"a\0b"));
    /// [MQTT-1.5.3-2] U+0000 in the client id.
    connect_client_id_with_nul_closes_mqtt_1_5_3_2: closes_as_first_packet(connect_with_raw_id(b"c\0d"));
    /// [MQTT-1.5.3-2] U+0000 in a topic filter.
    subscribe_filter_with_nul_closes_mqtt_1_5_3_2: closes_after_connect(subscribe_raw_filter(b"a\0"));

    // --- SUBSCRIBE payload ---

    /// [MQTT-3.8.3-3] The payload of a SUBSCRIBE packet MUST contain at least
    /// one Topic Filter / QoS pair.
    subscribe_without_filters_closes_mqtt_3_8_3_3: closes_after_connect(packet(0x82, &[0, 1]));
    /// [MQTT-3.8.3-4] The Server MUST treat a SUBSCRIBE packet as malformed if
    /// any of the Reserved bits in the payload are non-zero, or QoS is not 0,
    /// 1 or 2: requested QoS 3.
    subscribe_requested_qos_3_closes_mqtt_3_8_3_4: closes_after_connect(raw::subscribe(1, &[("a", 3)]));
    /// [MQTT-3.8.3-4] Reserved bit 2 set in the requested QoS byte.
    subscribe_reserved_bit_2_closes_mqtt_3_8_3_4: closes_after_connect(raw::subscribe(1, &[("a", 0x04)]));
    /// [MQTT-3.8.3-4] Reserved bit 7 set in the requested QoS byte.
    subscribe_reserved_bit_7_closes_mqtt_3_8_3_4: closes_after_connect(raw::subscribe(1, &[("a", 0x81)]));
    /// [MQTT-3.8.3-4] A bad second filter QoS condemns the whole SUBSCRIBE.
    subscribe_second_filter_qos_3_closes_mqtt_3_8_3_4: closes_after_connect(raw::subscribe(1, &[("a", 1), ("b", 3)]));
    /// [MQTT-4.7.1-2] The multi-level wildcard MUST be the last character
    /// specified in the Topic Filter: `a/#/b`.
    subscribe_filter_hash_not_last_closes_mqtt_4_7_1_2: closes_after_connect(raw::subscribe(1, &[("a/#/b", 0)]));
    /// [MQTT-4.7.1-2] The multi-level wildcard must follow a separator: `a#`.
    subscribe_filter_hash_inside_level_closes_mqtt_4_7_1_2: closes_after_connect(raw::subscribe(1, &[("a#", 0)]));
    /// [MQTT-4.7.1-3] The single-level wildcard MUST occupy an entire level of
    /// the filter: `a+`.
    subscribe_filter_a_plus_closes_mqtt_4_7_1_3: closes_after_connect(raw::subscribe(1, &[("a+", 0)]));
    /// [MQTT-4.7.1-3] `sport+` (the spec's own invalid example).
    subscribe_filter_sport_plus_closes_mqtt_4_7_1_3: closes_after_connect(raw::subscribe(1, &[("sport+", 0)]));
    /// [MQTT-4.7.1-3] `+` inside the last level: `sport/+tennis`.
    subscribe_filter_plus_inside_last_level_closes_mqtt_4_7_1_3: closes_after_connect(raw::subscribe(1, &[("sport/+tennis", 0)]));
    /// [MQTT-4.7.3-1] Topic Filters MUST be at least one character long.
    subscribe_empty_filter_closes_mqtt_4_7_3_1: closes_after_connect(raw::subscribe(1, &[("", 0)]));
    /// [MQTT-4.7.1-2] An invalid filter after a valid one condemns the whole SUBSCRIBE.
    subscribe_invalid_second_filter_closes_mqtt_4_7_1_2: closes_after_connect(raw::subscribe(1, &[("ok", 0), ("a/#/b", 0)]));

    // --- UNSUBSCRIBE payload ---

    /// [MQTT-3.10.3-2] The Payload of an UNSUBSCRIBE packet MUST contain at
    /// least one Topic Filter.
    unsubscribe_without_filters_closes_mqtt_3_10_3_2: closes_after_connect(packet(0xA2, &[0, 1]));
    /// [MQTT-4.7.1-2] UNSUBSCRIBE with the invalid filter `a/#/b`.
    unsubscribe_invalid_filter_closes_mqtt_4_7_1_2: closes_after_connect(raw::unsubscribe(1, &["a/#/b"]));
    /// [MQTT-4.7.3-1] UNSUBSCRIBE with an empty filter.
    unsubscribe_empty_filter_closes_mqtt_4_7_3_1: closes_after_connect(raw::unsubscribe(1, &[""]));

    // --- Packets only a server sends ---

    /// [MQTT-4.8.0-1] CONNACK sent by a client is a protocol violation.
    client_sends_connack_closes_mqtt_4_8_0_1: closes_after_connect(raw::CONNACK_OK);
    /// [MQTT-4.8.0-1] SUBACK sent by a client.
    client_sends_suback_closes_mqtt_4_8_0_1: closes_after_connect(raw::suback(1, &[0]));
    /// [MQTT-4.8.0-1] UNSUBACK sent by a client.
    client_sends_unsuback_closes_mqtt_4_8_0_1: closes_after_connect(raw::unsuback(1));
    /// [MQTT-4.8.0-1] PINGRESP sent by a client.
    client_sends_pingresp_closes_mqtt_4_8_0_1: closes_after_connect([0xD0, 0x00]);
}

/// limits.max_packet_size: a PUBLISH whose fixed header declares 2 MB, with
/// a 1024-byte limit, is refused as soon as the header arrives: only the
/// five header bytes are sent.
#[tokio::test]
async fn oversized_publish_refused_from_its_header_mqtt_2_2_3() {
    closes_with(
        |c| c.limits.max_packet_size = 1024,
        true,
        &[0x30, 0x80, 0x80, 0x80, 0x01],
    )
    .await;
}

/// limits.max_packet_size: a CONNECT declaring 2 MB is refused from its
/// header too, before any CONNACK.
#[tokio::test]
async fn oversized_connect_refused_from_its_header_mqtt_2_2_3() {
    closes_with(
        |c| c.limits.max_packet_size = 1024,
        false,
        &[0x10, 0x80, 0x80, 0x80, 0x01],
    )
    .await;
}

/// limits.max_packet_size counts the whole packet, fixed header included: a
/// complete 1025-byte PUBLISH is refused, a 1024-byte one is delivered.
#[tokio::test]
async fn packet_one_byte_over_max_packet_size_refused_mqtt_2_2_3() {
    let broker = TestBroker::start_with(|c| c.limits.max_packet_size = 1024);
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("big", 0)]).await;
    let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
    // 1 + 2 (remaining length 1021 needs two bytes) + 2 + 3 + 1016 = 1024.
    let fits = raw::publish("big", &[7u8; 1016], 0, 0, false, false);
    assert_eq!(fits.len(), 1024);
    publisher.send(&fits).await;
    let p = sub.recv_publish().await;
    assert_eq!(p.payload.len(), 1016);
    let too_big = raw::publish("big", &[8u8; 1017], 0, 0, false, false);
    assert_eq!(too_big.len(), 1025);
    publisher.send_lossy(&too_big).await;
    publisher.expect_closed_silently().await;
    sub.ping().await;
}

/// [MQTT-4.8.0-1] The connection is closed at the packet that violates the
/// protocol: packets after it in the same write are not processed (a PUBLISH
/// behind a client-sent CONNACK, a second CONNECT, or a reserved type is not
/// routed).
#[tokio::test]
async fn packets_after_a_violation_not_processed_mqtt_4_8_0_1() {
    let broker = TestBroker::start();
    let mut bystander = Bystander::join(&broker).await;
    let mut sub = RawClient::connected(broker.addr(), "sub", true).await;
    sub.subscribe_ok(1, &[("t", 0)]).await;
    for (case, violation) in [
        ("CONNACK", raw::CONNACK_OK.to_vec()),
        ("second CONNECT", raw::connect("offender", true)),
        ("PINGRESP", vec![0xD0, 0x00]),
        ("reserved type 15", vec![0xF0, 0x00]),
        ("PUBLISH QoS 3", packet(0x36, &publish_body_with_id())),
    ] {
        let mut offender = RawClient::connected(broker.addr(), "offender", true).await;
        let mut bytes = violation;
        bytes.extend(raw::publish("t", b"must not be routed", 0, 0, false, false));
        bytes.extend(raw::PINGREQ);
        offender.send_lossy(&bytes).await;
        let got = offender.expect_closed().await;
        assert!(
            got.is_empty(),
            "{case}: expected a plain close, got {got:?}"
        );
        let mut publisher = RawClient::connected(broker.addr(), "pub", true).await;
        publisher
            .publish_ok("t", case.as_bytes(), 0, 0, false)
            .await;
        sub.expect_publish("t", case.as_bytes()).await;
    }
    bystander.still_works().await;
}
