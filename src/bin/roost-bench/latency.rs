//! Latency at a fixed rate: one publisher paced by a yielding thread
//! (tokio's timers tick in milliseconds, too coarse for 10k msg/s), one
//! subscriber on its own thread on a blocking socket. Each payload carries
//! its send time; the subscriber records send-to-receive latency.
//!
//! The publisher reads its own acknowledgements (non-blocking, while it
//! waits for the next send time) instead of leaving them to a third
//! thread: pinned to one core, such a thread woke for each PUBACK and
//! preempted the subscriber thread between its read and its timestamp, so
//! the figure depended on how many microseconds after the PUBLISH a broker
//! wrote the PUBACK (measured: roost's QoS 1 p50 49–51 µs with that
//! thread, 34–42 µs with the acknowledgements left unread; Mosquitto's
//! 36–61 and 36–38).

use bytes::BytesMut;
use roost::protocol::codec::MqttCodec;
use roost::protocol::Ack;
use roost::protocol::{
    Packet, PacketId, Publish, QoS, Subscribe, SubscribeTopic, TopicFilter, TopicName,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tokio_util::codec::Decoder;

#[derive(clap::Args, Clone)]
pub struct LatencyArgs {
    /// Messages per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds of measurement (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 1)]
    qos: u8,
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    codec: MqttCodec,
}

impl Conn {
    fn connect(addr: SocketAddr, client_id: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            codec: crate::client::codec(),
        };
        c.send(&crate::connect_packet(client_id, true, crate::KEEP_ALIVE))?;
        match c.recv()? {
            Packet::ConnAck(a) if a.reason.0 == 0 => Ok(c),
            other => Err(std::io::Error::other(format!("no CONNACK: {other:?}"))),
        }
    }

    fn send(&mut self, p: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        p.encode(&mut out, crate::client::version());
        self.stream.write_all(&out)
    }

    fn recv(&mut self) -> std::io::Result<Packet> {
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::other("connection closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

pub fn run(
    host: SocketAddr,
    label: &str,
    payload_len: usize,
    args: &LatencyArgs,
    header: bool,
) -> std::io::Result<()> {
    let qos =
        QoS::from_u8(args.qos).ok_or_else(|| std::io::Error::other("--qos must be 0, 1 or 2"))?;
    let id = std::process::id();
    let topic = format!("bench/latency/{id}");
    let mut sub = Conn::connect(host, &format!("bench-{id}-lat-sub"))?;
    sub.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).expect("non-zero"),
        topics: vec![SubscribeTopic {
            filter: TopicFilter::new(topic.clone()).map_err(std::io::Error::other)?,
            qos,
            options: Default::default(),
        }],
        properties: None,
    }))?;
    match sub.recv()? {
        Packet::SubAck(_) => {}
        other => return Err(std::io::Error::other(format!("no SUBACK: {other:?}"))),
    }
    let mut publisher = Conn::connect(host, &format!("bench-{id}-lat-pub"))?;
    let epoch = Instant::now();
    let warmup = args.rate;
    let total = args.rate * (args.seconds + 1);
    let subscriber = std::thread::spawn(move || -> std::io::Result<Vec<u32>> {
        let mut latencies = Vec::with_capacity(total as usize);
        let mut seen = 0u64;
        sub.stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        while seen < total {
            match sub.recv()? {
                Packet::Publish(p) => {
                    let now = epoch.elapsed().as_nanos() as u64;
                    let seq = u64::from_be_bytes(p.payload[0..8].try_into().expect("8 bytes"));
                    let sent = u64::from_be_bytes(p.payload[8..16].try_into().expect("8 bytes"));
                    if seq >= warmup {
                        latencies.push(((now - sent) / 1000) as u32);
                    }
                    seen += 1;
                    match (p.qos, p.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => sub.send(&Packet::PubAck(Ack::new(id)))?,
                        (QoS::ExactlyOnce, Some(id)) => sub.send(&Packet::PubRec(Ack::new(id)))?,
                        _ => {}
                    }
                }
                Packet::PubRel(Ack { packet_id: id, .. }) => {
                    sub.send(&Packet::PubComp(Ack::new(id)))?
                }
                _ => {}
            }
        }
        Ok(latencies)
    });
    let topic = TopicName::new(topic).map_err(std::io::Error::other)?;
    let period = Duration::from_nanos(1_000_000_000 / args.rate.max(1));
    let start = Instant::now();
    let mut payload = vec![b'x'; payload_len.max(16)];
    let mut out = BytesMut::new();
    publisher.stream.set_nonblocking(true)?;
    let mut acks = [0u8; 16 * 1024];
    for seq in 0..total {
        let due = start + period * seq as u32;
        // Yield rather than spin: pinned to one core with the subscriber
        // thread, a spinning publisher would delay the receive side.
        while Instant::now() < due {
            drain(&mut publisher.stream, &mut acks)?;
            std::thread::yield_now();
        }
        payload[0..8].copy_from_slice(&seq.to_be_bytes());
        payload[8..16].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
        out.clear();
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.clone(),
            packet_id: (qos != QoS::AtMostOnce)
                .then(|| PacketId::new((seq % 65535) as u16 + 1).expect("non-zero")),
            payload: bytes::Bytes::copy_from_slice(&payload),
            properties: None,
        })
        .encode(&mut out, crate::client::version());
        let mut rest = &out[..];
        while !rest.is_empty() {
            match publisher.stream.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    drain(&mut publisher.stream, &mut acks)?;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
    }
    let mut latencies = subscriber
        .join()
        .map_err(|_| std::io::Error::other("subscriber thread failed"))??;
    let _ = publisher.stream.shutdown(std::net::Shutdown::Both);
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    if header {
        println!("| broker | scenario | QoS | rate msg/s | messages | p50 µs | p99 µs | max µs |");
        println!("|---|---|---|---|---|---|---|---|");
    }
    println!(
        "| {label} | latency | {} | {} | {} | {} | {} | {} |",
        args.qos,
        args.rate,
        latencies.len(),
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(0)
    );
    Ok(())
}

/// Reads whatever the broker has sent on a non-blocking socket (the
/// publisher's acknowledgements, which it does not need to look at).
fn drain(stream: &mut TcpStream, chunk: &mut [u8]) -> std::io::Result<()> {
    loop {
        match stream.read(chunk) {
            Ok(0) => return Err(std::io::Error::other("publisher: connection closed")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
