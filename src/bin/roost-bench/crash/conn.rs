//! One client connection of the crash check, and the packet trace.

use super::CONNECT_TIMEOUT;
use bytes::BytesMut;
use futures::StreamExt;
use roost::protocol::codec::MqttCodec;
use roost::protocol::{Packet, PacketId};
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

/// One MQTT connection: decoded packets in, encoded packets out.
pub(super) struct Conn {
    pub(super) read: FramedRead<OwnedReadHalf, MqttCodec>,
    pub(super) write: OwnedWriteHalf,
    pub(super) buf: BytesMut,
    pub(super) client_id: String,
}

/// `--trace`: every packet of every client, in order, written to
/// `{dir}/trace.log` at the end.
pub(super) static TRACE: std::sync::Mutex<Option<Vec<String>>> = std::sync::Mutex::new(None);
pub(super) static TRACE_START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

pub(super) fn trace(client_id: &str, what: impl FnOnce() -> String) {
    if let Some(t) = TRACE.lock().expect("not poisoned").as_mut() {
        let at = TRACE_START
            .get_or_init(Instant::now)
            .elapsed()
            .as_secs_f64();
        t.push(format!("{at:10.4} {client_id} {}", what()));
    }
}

impl Conn {
    /// Connects with CleanSession 0; returns the connection and Session Present.
    pub(super) async fn open(addr: SocketAddr, client_id: &str) -> Result<(Conn, bool), String> {
        let attempt = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let (read, write) = stream.into_split();
            let mut conn = Conn {
                read: FramedRead::new(read, crate::client::codec()),
                write,
                buf: BytesMut::new(),
                client_id: client_id.to_string(),
            };
            conn.send(crate::connect_packet(client_id, false, 60))
                .await
                .map_err(|e| format!("send CONNECT: {e}"))?;
            let ack = conn.read.next().await;
            trace(client_id, || format!("<- {ack:?}"));
            match ack {
                Some(Ok(Packet::ConnAck(ack))) if ack.reason.0 == 0 => {
                    Ok((conn, ack.session_present))
                }
                other => Err(format!("no accepting CONNACK: {other:?}")),
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(r) => r.map_err(|e| format!("{client_id}: {e}")),
            Err(_) => Err(format!(
                "{client_id}: no CONNACK within {CONNECT_TIMEOUT:?}"
            )),
        }
    }

    pub(super) async fn send(&mut self, packet: Packet) -> std::io::Result<()> {
        trace(&self.client_id, || format!("-> {}", brief(&packet)));
        self.buf.clear();
        packet.encode(&mut self.buf, crate::client::version());
        self.write.write_all(&self.buf).await
    }

    /// The next packet; `None` when the connection ended or broke.
    pub(super) async fn next(&mut self) -> Option<Packet> {
        let next = self.read.next().await;
        match next {
            Some(Ok(p)) => {
                trace(&self.client_id, || format!("<- {}", brief(&p)));
                Some(p)
            }
            other => {
                trace(&self.client_id, || format!("<- end: {other:?}"));
                None
            }
        }
    }
}

/// A packet in one short line for the trace.
pub(super) fn brief(packet: &Packet) -> String {
    match packet {
        Packet::Publish(p) => format!(
            "PUBLISH {} q{} id={} dup={} payload={}",
            p.topic.as_str(),
            p.qos as u8,
            p.packet_id.map_or(0, |i| i.get()),
            p.dup as u8,
            String::from_utf8_lossy(&p.payload)
        ),
        Packet::Connect(_) => "CONNECT".to_string(),
        other => format!("{other:?}"),
    }
}

pub(super) fn pid(v: u16) -> PacketId {
    PacketId::new(v).expect("packet ids here are never 0")
}
