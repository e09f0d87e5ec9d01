//! A benchmark client's connection: CONNECT, SUBSCRIBE, and the framed
//! halves of its socket.

use bytes::BytesMut;
use futures::StreamExt;
use roost::protocol::codec::MqttCodec;
use roost::protocol::{
    Connect, Packet, PacketId, Properties, ProtocolVersion, QoS, Subscribe, SubscribeTopic,
    TopicFilter,
};
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

/// One client connection: the framed read half (which may already hold
/// packets that followed CONNACK) and the write half.
pub struct Conn {
    pub read: FramedRead<OwnedReadHalf, MqttCodec>,
    pub write: OwnedWriteHalf,
}

/// Keep-alive of benchmark clients, in seconds: long enough that no run
/// needs a PINGREQ, and not 0, which rumqttd refuses.
pub const KEEP_ALIVE: u16 = 600;

/// The CONNECT every benchmark client sends (no will, no credentials). A
/// 5.0 client asks for the session a 3.1.1 one gets: with clean session 0,
/// one that never expires.
pub fn connect_packet(client_id: &str, clean_session: bool, keep_alive: u16) -> Packet {
    let version = version();
    let properties = (version.is_v5() && !clean_session).then(|| {
        Box::new(Properties {
            session_expiry_interval: Some(u32::MAX),
            ..Properties::default()
        })
    });
    Packet::Connect(Box::new(Connect {
        version,
        clean_session,
        keep_alive,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties,
    }))
}

/// A client subscribed to `#` at QoS 1 with a 4 KiB receive buffer, which
/// then reads nothing: the broker's side of it fills up and stays full.
pub async fn stalled_subscriber(addr: SocketAddr) -> std::io::Result<Conn> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let stream = socket.connect(addr).await?;
    let (read, mut write) = stream.into_split();
    let mut buf = BytesMut::new();
    connect_packet(
        &format!("bench-{}-stalled", std::process::id()),
        true,
        KEEP_ALIVE,
    )
    .encode(&mut buf, crate::client::version());
    write.write_all(&buf).await?;
    let mut read = FramedRead::new(read, crate::client::codec());
    match read.next().await {
        Some(Ok(Packet::ConnAck(ack))) if ack.reason.0 == 0 => {}
        other => return Err(std::io::Error::other(format!("no CONNACK: {other:?}"))),
    }
    subscribe(Conn { read, write }, "#", QoS::AtLeastOnce).await
}

pub async fn connect(addr: SocketAddr, client_id: &str) -> std::io::Result<Conn> {
    connect_with(addr, client_id, true).await
}

pub async fn connect_with(
    addr: SocketAddr,
    client_id: &str,
    clean_session: bool,
) -> std::io::Result<Conn> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let connect = connect_packet(client_id, clean_session, KEEP_ALIVE);
    let mut buf = BytesMut::new();
    connect.encode(&mut buf, crate::client::version());
    write.write_all(&buf).await?;
    let mut read = FramedRead::new(read, crate::client::codec());
    match read.next().await {
        Some(Ok(Packet::ConnAck(ack))) if ack.reason.0 == 0 => {}
        other => {
            return Err(std::io::Error::other(format!(
                "{client_id}: no CONNACK: {other:?}"
            )))
        }
    }
    Ok(Conn { read, write })
}

pub async fn subscribe(mut conn: Conn, filter: &str, qos: QoS) -> std::io::Result<Conn> {
    let sub = Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).expect("non-zero"),
        topics: vec![SubscribeTopic::new(
            TopicFilter::new(filter.to_string()).map_err(std::io::Error::other)?,
            qos,
        )],
        properties: None,
    });
    let mut buf = BytesMut::new();
    sub.encode(&mut buf, crate::client::version());
    conn.write.write_all(&buf).await?;
    match conn.read.next().await {
        Some(Ok(Packet::SubAck(_))) => {}
        other => return Err(std::io::Error::other(format!("no SUBACK: {other:?}"))),
    }
    Ok(conn)
}

/// The protocol version benchmark clients speak (`--protocol`).
pub static PROTOCOL: std::sync::OnceLock<ProtocolVersion> = std::sync::OnceLock::new();

pub fn version() -> ProtocolVersion {
    *PROTOCOL.get().unwrap_or(&ProtocolVersion::V311)
}

/// The codec of a benchmark client's read half, in its version.
pub fn codec() -> MqttCodec {
    MqttCodec::default().with_version(version())
}
