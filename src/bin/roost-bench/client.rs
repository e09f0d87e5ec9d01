//! A benchmark client's connection: CONNECT, SUBSCRIBE, and the framed
//! halves of its socket.

use bytes::BytesMut;
use futures::StreamExt;
use roost::protocol::codec::MqttCodec;
use roost::protocol::{
    Connect, Packet, PacketId, ProtocolVersion, QoS, Subscribe, SubscribeTopic, TopicFilter,
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

/// The CONNECT every benchmark client sends (MQTT 3.1.1, no will, no credentials).
pub fn connect_packet(client_id: &str, clean_session: bool, keep_alive: u16) -> Packet {
    Packet::Connect(Box::new(Connect {
        version: ProtocolVersion::V311,
        clean_session,
        keep_alive,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
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
    .encode(&mut buf);
    write.write_all(&buf).await?;
    let mut read = FramedRead::new(read, MqttCodec::default());
    match read.next().await {
        Some(Ok(Packet::ConnAck(ack))) if ack.code as u8 == 0 => {}
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
    connect.encode(&mut buf);
    write.write_all(&buf).await?;
    let mut read = FramedRead::new(read, MqttCodec::default());
    match read.next().await {
        Some(Ok(Packet::ConnAck(ack))) if ack.code as u8 == 0 => {}
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
        topics: vec![SubscribeTopic {
            filter: TopicFilter::new(filter.to_string()).map_err(std::io::Error::other)?,
            qos,
        }],
    });
    let mut buf = BytesMut::new();
    sub.encode(&mut buf);
    conn.write.write_all(&buf).await?;
    match conn.read.next().await {
        Some(Ok(Packet::SubAck(_))) => {}
        other => return Err(std::io::Error::other(format!("no SUBACK: {other:?}"))),
    }
    Ok(conn)
}
