//! Packets as bytes, built by hand from the spec's figures, and a client
//! that sends them and reads replies with its own minimal framing.

use super::TIMEOUT;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The remaining-length varint of section 2.2.3.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// A whole packet: first byte, remaining length, body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string or binary field.
pub fn field(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

#[derive(Clone)]
pub struct Will<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: u8,
    pub retain: bool,
}

#[derive(Clone)]
pub struct ConnectOptions<'a> {
    pub protocol_name: &'a str,
    pub level: u8,
    pub client_id: &'a str,
    pub clean: bool,
    pub keep_alive: u16,
    pub will: Option<Will<'a>>,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// ORed into the connect flags, to set reserved or inconsistent bits.
    pub extra_flags: u8,
}

impl<'a> ConnectOptions<'a> {
    pub fn new(client_id: &'a str) -> Self {
        ConnectOptions {
            protocol_name: "MQTT",
            level: 4,
            client_id,
            clean: true,
            keep_alive: 60,
            will: None,
            username: None,
            password: None,
            extra_flags: 0,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut flags = self.extra_flags;
        if self.clean {
            flags |= 0x02;
        }
        let mut payload = field(self.client_id.as_bytes());
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos << 3) | if w.retain { 0x20 } else { 0 };
            payload.extend(field(w.topic.as_bytes()));
            payload.extend(field(w.payload));
        }
        if let Some(u) = self.username {
            flags |= 0x80;
            payload.extend(field(u.as_bytes()));
        }
        if let Some(p) = self.password {
            flags |= 0x40;
            payload.extend(field(p));
        }
        let mut body = field(self.protocol_name.as_bytes());
        body.push(self.level);
        body.push(flags);
        body.extend(self.keep_alive.to_be_bytes());
        body.extend(payload);
        packet(0x10, &body)
    }
}

pub fn connect(client_id: &str, clean: bool) -> Vec<u8> {
    ConnectOptions {
        clean,
        ..ConnectOptions::new(client_id)
    }
    .bytes()
}

pub fn publish(
    topic: &str,
    payload: &[u8],
    qos: u8,
    packet_id: u16,
    retain: bool,
    dup: bool,
) -> Vec<u8> {
    let first = 0x30 | (qos << 1) | if retain { 1 } else { 0 } | if dup { 0x08 } else { 0 };
    let mut body = field(topic.as_bytes());
    if qos > 0 {
        body.extend(packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(first, &body)
}

pub fn subscribe(packet_id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for (f, q) in filters {
        body.extend(field(f.as_bytes()));
        body.push(*q);
    }
    packet(0x82, &body)
}

pub fn unsubscribe(packet_id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    for f in filters {
        body.extend(field(f.as_bytes()));
    }
    packet(0xA2, &body)
}

pub fn puback(id: u16) -> Vec<u8> {
    packet(0x40, &id.to_be_bytes())
}
pub fn pubrec(id: u16) -> Vec<u8> {
    packet(0x50, &id.to_be_bytes())
}
pub fn pubrel(id: u16) -> Vec<u8> {
    packet(0x62, &id.to_be_bytes())
}
pub fn pubcomp(id: u16) -> Vec<u8> {
    packet(0x70, &id.to_be_bytes())
}
pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];
/// CONNACK accepted, no session present.
pub const CONNACK_OK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];
/// CONNACK accepted, session present.
pub const CONNACK_PRESENT: [u8; 4] = [0x20, 0x02, 0x01, 0x00];

/// One packet as read back: its first byte and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPacket {
    pub first: u8,
    pub body: Vec<u8>,
}

impl RawPacket {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    pub fn bytes(&self) -> Vec<u8> {
        packet(self.first, &self.body)
    }

    /// For a PUBLISH: (topic, packet id, payload, qos, retain, dup).
    pub fn publish(&self) -> ReceivedPublish {
        assert_eq!(self.kind(), 3, "expected PUBLISH, got {self:?}");
        let qos = (self.first >> 1) & 3;
        let tlen = u16::from_be_bytes([self.body[0], self.body[1]]) as usize;
        let topic = String::from_utf8(self.body[2..2 + tlen].to_vec()).unwrap();
        let mut at = 2 + tlen;
        let packet_id = if qos > 0 {
            at += 2;
            Some(u16::from_be_bytes([self.body[at - 2], self.body[at - 1]]))
        } else {
            None
        };
        ReceivedPublish {
            topic,
            packet_id,
            payload: self.body[at..].to_vec(),
            qos,
            retain: self.first & 1 == 1,
            dup: self.first & 0x08 != 0,
        }
    }

    /// The packet id of an ack-style packet (or SUBACK/UNSUBACK).
    pub fn packet_id(&self) -> u16 {
        u16::from_be_bytes([self.body[0], self.body[1]])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPublish {
    pub topic: String,
    pub packet_id: Option<u16>,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
}

/// What [`RawClient::next_within`] saw.
#[derive(Debug)]
pub enum Next {
    Packet(RawPacket),
    Silent,
    Closed,
}

pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Packets read while waiting for a specific acknowledgement (a client
    /// subscribed to its own topic may get the message before the PUBACK);
    /// `recv` returns them first.
    stash: std::collections::VecDeque<RawPacket>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient::from_stream(TcpStream::connect(addr).await.expect("tcp connect"))
    }

    /// A client on a socket the caller connected (with its own options).
    pub fn from_stream(stream: TcpStream) -> RawClient {
        RawClient {
            stream,
            buf: Vec::new(),
            stash: Default::default(),
        }
    }

    /// Opens a socket, sends CONNECT and expects an accepting CONNACK.
    pub async fn connected(addr: SocketAddr, client_id: &str, clean: bool) -> RawClient {
        let mut c = RawClient::connect(addr).await;
        c.send(&connect(client_id, clean)).await;
        let ack = c.recv().await;
        assert_eq!(ack.first, 0x20, "expected CONNACK, got {ack:?}");
        assert_eq!(ack.body[1], 0, "CONNACK refused: {ack:?}");
        c
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends bytes, ignoring a failure (the broker may already have closed).
    pub async fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next packet, failing the test after [`TIMEOUT`].
    pub async fn recv(&mut self) -> RawPacket {
        match self.recv_within(TIMEOUT).await {
            Some(p) => p,
            None => panic!("no packet within {TIMEOUT:?}"),
        }
    }

    /// Fails with `why` if a packet arrives within `d` (absence can only
    /// be waited for).
    pub async fn expect_nothing_within(&mut self, d: Duration, why: &str) {
        assert!(self.recv_within(d).await.is_none(), "{why}");
    }

    /// The next packet within `d`, or that nothing came, or that the broker
    /// closed the connection.
    pub async fn next_within(&mut self, d: Duration) -> Next {
        if let Some(p) = self.stash.pop_front() {
            return Next::Packet(p);
        }
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(p) = self.parse() {
                return Next::Packet(p);
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Next::Silent,
                Ok(Ok(0)) | Ok(Err(_)) => return Next::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next packet, or `None` if nothing arrives within `d`.
    pub async fn recv_within(&mut self, d: Duration) -> Option<RawPacket> {
        if let Some(p) = self.stash.pop_front() {
            return Some(p);
        }
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(p) = self.parse() {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0)) => panic!("connection closed while waiting for a packet"),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => panic!("read error while waiting for a packet: {e}"),
            }
        }
    }

    /// The next PUBLISH, acknowledging it as its QoS requires.
    pub async fn recv_publish(&mut self) -> ReceivedPublish {
        let p = self.recv().await.publish();
        match (p.qos, p.packet_id) {
            (1, Some(id)) => self.send(&puback(id)).await,
            (2, Some(id)) => {
                self.send(&pubrec(id)).await;
                let rel = self.recv().await;
                assert_eq!(rel.first, 0x62, "expected PUBREL, got {rel:?}");
                self.send(&pubcomp(id)).await;
            }
            _ => {}
        }
        p
    }

    fn parse(&mut self) -> Option<RawPacket> {
        if self.buf.len() < 2 {
            return None;
        }
        let mut len = 0usize;
        let mut i = 1;
        loop {
            let b = *self.buf.get(i)?;
            len |= ((b & 0x7F) as usize) << (7 * (i - 1));
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            assert!(i <= 4, "server sent a malformed remaining length");
        }
        if self.buf.len() < i + len {
            return None;
        }
        let first = self.buf[0];
        let body = self.buf[i..i + len].to_vec();
        self.buf.drain(..i + len);
        Some(RawPacket { first, body })
    }

    /// Waits for the server to close the connection, failing after [`TIMEOUT`]
    /// or if a packet arrives first. Returns the packets received before the close.
    pub async fn expect_closed(&mut self) -> Vec<RawPacket> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let mut got = Vec::new();
        loop {
            while let Some(p) = self.parse() {
                got.push(p);
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => panic!("connection still open after {TIMEOUT:?}; received {got:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return got,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// True if the broker closes the connection within `d`, false if it is
    /// still open then; a packet from the broker fails the test.
    pub async fn closed_within(&mut self, d: Duration) -> bool {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(d, self.stream.read(&mut chunk)).await {
            Err(_) => false,
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(n)) => panic!("expected silence or a close, got {:?}", &chunk[..n]),
        }
    }

    /// Waits for the close and asserts that nothing was sent before it.
    pub async fn expect_closed_silently(&mut self) {
        let got = self.expect_closed().await;
        assert!(got.is_empty(), "expected a plain close, got {got:?}");
    }

    /// A PINGREQ/PINGRESP round trip: proves the connection is open and the
    /// broker has handled this client's earlier PUBLISH (QoS 0/1), SUBSCRIBE
    /// and UNSUBSCRIBE packets (acks and QoS 2 go on to the session).
    pub async fn ping(&mut self) {
        self.send(&PINGREQ).await;
        let p = self.recv().await;
        assert_eq!(p.first, 0xD0, "expected PINGRESP, got {p:?}");
    }
}

/// CONNACK refusing the connection with `code` (session present 0).
pub fn connack_refused(code: u8) -> Vec<u8> {
    vec![0x20, 0x02, 0x00, code]
}

/// A SUBACK as the server must send it for `codes`.
pub fn suback(packet_id: u16, codes: &[u8]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend_from_slice(codes);
    packet(0x90, &body)
}

/// An UNSUBACK for `packet_id`.
pub fn unsuback(packet_id: u16) -> Vec<u8> {
    packet(0xB0, &packet_id.to_be_bytes())
}

impl RawClient {
    /// Opens a socket whose receive buffer is `bytes` (set before connecting,
    /// so the advertised window stays small): a client that reads slowly.
    pub async fn connect_with_recv_buffer(addr: SocketAddr, bytes: u32) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("tcp connect");
        RawClient {
            stream,
            buf: Vec::new(),
            stash: Default::default(),
        }
    }

    /// Opens a socket, sends `options`' CONNECT and returns the client with
    /// the broker's first reply (normally the CONNACK).
    pub async fn connect_with(
        addr: SocketAddr,
        options: &ConnectOptions<'_>,
    ) -> (RawClient, RawPacket) {
        let mut c = RawClient::connect(addr).await;
        c.send(&options.bytes()).await;
        let ack = c.recv().await;
        (c, ack)
    }

    /// Like [`RawClient::connected`], with full CONNECT options; asserts the
    /// CONNACK is `expected` (for example [`CONNACK_OK`] or [`CONNACK_PRESENT`]).
    pub async fn connected_expecting(
        addr: SocketAddr,
        options: &ConnectOptions<'_>,
        expected: &[u8],
    ) -> RawClient {
        let (c, ack) = RawClient::connect_with(addr, options).await;
        assert_eq!(
            ack.bytes(),
            expected,
            "unexpected CONNACK for client {:?}",
            options.client_id
        );
        c
    }

    /// Sends SUBSCRIBE and asserts a SUBACK with the same packet id granting
    /// exactly the requested QoS of every filter, in order.
    pub async fn subscribe_ok(&mut self, packet_id: u16, filters: &[(&str, u8)]) {
        self.send(&subscribe(packet_id, filters)).await;
        let ack = self.recv().await;
        let codes: Vec<u8> = filters.iter().map(|(_, q)| *q).collect();
        assert_eq!(
            ack.bytes(),
            suback(packet_id, &codes),
            "SUBACK for {filters:?}"
        );
    }

    /// Sends UNSUBSCRIBE and asserts the UNSUBACK with the same packet id.
    pub async fn unsubscribe_ok(&mut self, packet_id: u16, filters: &[&str]) {
        self.send(&unsubscribe(packet_id, filters)).await;
        let ack = self.recv().await;
        assert_eq!(ack.bytes(), unsuback(packet_id), "UNSUBACK for {filters:?}");
    }

    /// Publishes and completes the sender's side of the QoS handshake
    /// (PUBACK; or PUBREC, PUBREL, PUBCOMP). For a client that receives no
    /// PUBLISH meanwhile. When it returns the broker has routed the message
    /// (for QoS 0, a ping makes sure the broker has read it).
    pub async fn publish_ok(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        packet_id: u16,
        retain: bool,
    ) {
        self.send(&publish(topic, payload, qos, packet_id, retain, false))
            .await;
        match qos {
            0 => self.ping().await,
            1 => {
                let ack = self.recv_ack(4).await;
                assert_eq!(
                    ack.bytes(),
                    puback(packet_id),
                    "expected PUBACK for {topic:?}"
                );
            }
            _ => {
                let rec = self.recv_ack(5).await;
                assert_eq!(
                    rec.bytes(),
                    pubrec(packet_id),
                    "expected PUBREC for {topic:?}"
                );
                self.send(&pubrel(packet_id)).await;
                let comp = self.recv_ack(7).await;
                assert_eq!(
                    comp.bytes(),
                    pubcomp(packet_id),
                    "expected PUBCOMP for {topic:?}"
                );
            }
        }
    }

    /// The next packet of type `kind`; other packets that arrive first are
    /// kept for later `recv` calls.
    async fn recv_ack(&mut self, kind: u8) -> RawPacket {
        let mut others = Vec::new();
        let found = loop {
            let p = self.recv().await;
            if p.kind() == kind {
                break p;
            }
            others.push(p);
        };
        for p in others.into_iter().rev() {
            self.stash.push_front(p);
        }
        found
    }

    /// The next PUBLISH (acknowledged as its QoS requires), asserting its
    /// topic and payload.
    pub async fn expect_publish(&mut self, topic: &str, payload: &[u8]) -> ReceivedPublish {
        let p = self.recv_publish().await;
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice()),
            (topic, payload),
            "unexpected PUBLISH (payload as text: {:?})",
            String::from_utf8_lossy(&p.payload)
        );
        p
    }

    /// Sends DISCONNECT and waits for the broker to close the socket.
    pub async fn disconnect(&mut self) {
        self.send(&DISCONNECT).await;
        self.expect_closed_silently().await;
    }
}

impl RawClient {
    /// Reads until `n` PUBLISHes have arrived and every QoS 2 handshake they
    /// started is complete, acknowledging as each QoS requires (PUBACK;
    /// PUBREC, then PUBCOMP for the PUBREL) even when deliveries and PUBRELs
    /// interleave. Returns the PUBLISHes in arrival order.
    pub async fn recv_publishes(&mut self, n: usize) -> Vec<ReceivedPublish> {
        let mut got = Vec::new();
        let mut awaiting_rel = std::collections::HashSet::new();
        while got.len() < n || !awaiting_rel.is_empty() {
            let p = self.recv().await;
            match p.kind() {
                3 => {
                    let publish = p.publish();
                    match (publish.qos, publish.packet_id) {
                        (1, Some(id)) => self.send(&puback(id)).await,
                        (2, Some(id)) => {
                            self.send(&pubrec(id)).await;
                            awaiting_rel.insert(id);
                        }
                        _ => {}
                    }
                    got.push(publish);
                }
                6 => {
                    assert_eq!(p.first, 0x62, "PUBREL with wrong flags: {p:?}");
                    // A PUBREL for an id we no longer hold is answered too: a
                    // broker resends PUBREL when our PUBCOMP was lost (for
                    // example across a restart) [MQTT-4.3.3-2].
                    awaiting_rel.remove(&p.packet_id());
                    self.send(&pubcomp(p.packet_id())).await;
                }
                _ => panic!("expected PUBLISH or PUBREL, got {p:?}"),
            }
        }
        got
    }
}
