//! `roost-bench sink`: the trivial broker the load generator is measured
//! against, to show its own ceiling. It answers CONNECT and SUBSCRIBE, and
//! copies every PUBLISH it reads, as QoS 0, to every connection that has
//! subscribed: no topic matching, no sessions, no acknowledgements. Run a
//! QoS 0 scenario against it; whatever rate comes out is a floor for what
//! the generator can drive, so a broker measured well below it is not
//! limited by the generator.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use roost::protocol::{ConnAck, ConnectReturnCode, Packet, Publish, QoS, ReasonCode, SubAck};
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_util::codec::FramedRead;

#[derive(clap::Args, Clone)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:1884")]
    listen: SocketAddr,
}

/// Messages a slow subscriber may fall behind before it misses some.
const BACKLOG: usize = 1 << 16;

pub async fn run(args: &SinkArgs) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!("sink listening on {}", listener.local_addr()?);
    let (published, _) = broadcast::channel::<Bytes>(BACKLOG);
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        tokio::spawn(connection(socket, published.clone()));
    }
}

async fn connection(socket: TcpStream, published: broadcast::Sender<Bytes>) {
    let (read, mut write) = socket.into_split();
    let mut framed = FramedRead::new(read, crate::client::codec());
    // Replies and forwarded messages share the write half through one task.
    let (out, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        let mut batch = BytesMut::new();
        while let Some(first) = out_rx.recv().await {
            batch.extend_from_slice(&first);
            while let Ok(more) = out_rx.try_recv() {
                batch.extend_from_slice(&more);
                if batch.len() > 64 * 1024 {
                    break;
                }
            }
            if write.write_all(&batch).await.is_err() {
                return;
            }
            batch.clear();
        }
    });
    let reply = |packet: Packet| {
        let mut buf = BytesMut::new();
        packet.encode(&mut buf, crate::client::version());
        let _ = out.send(buf.freeze());
    };
    while let Some(Ok(packet)) = framed.next().await {
        match packet {
            Packet::Connect(_) => reply(Packet::ConnAck(ConnAck::new(
                false,
                ConnectReturnCode::Accepted,
            ))),
            Packet::Subscribe(s) => {
                reply(Packet::SubAck(SubAck::new(
                    s.packet_id,
                    s.topics
                        .iter()
                        .map(|_| ReasonCode::granted(QoS::AtMostOnce))
                        .collect(),
                )));
                let mut messages = published.subscribe();
                let out = out.clone();
                tokio::spawn(async move {
                    loop {
                        match messages.recv().await {
                            Ok(m) => {
                                if out.send(m).is_err() {
                                    return;
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return,
                        }
                    }
                });
            }
            Packet::Publish(p) => {
                let mut buf = BytesMut::new();
                Packet::Publish(Publish {
                    dup: false,
                    qos: QoS::AtMostOnce,
                    retain: false,
                    packet_id: None,
                    ..p
                })
                .encode(&mut buf, crate::client::version());
                let _ = published.send(buf.freeze());
            }
            Packet::PingReq => reply(Packet::PingResp),
            Packet::Disconnect(_) => return,
            _ => {}
        }
    }
}
