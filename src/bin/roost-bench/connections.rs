//! Connection rate and memory per idle connection: opens N MQTT
//! connections (spread over several 127.0.0.x source addresses), measures
//! how fast they are accepted (CONNECT → CONNACK) and, given the broker's
//! pid, its resident memory per connection while they sit idle.

use bytes::BytesMut;
use futures::StreamExt;
use roost::protocol::Packet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio_util::codec::FramedRead;

#[derive(clap::Args, Clone)]
pub struct ConnectionsArgs {
    /// Connections to open (the per-process file limit here is 20,000).
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    parallel: usize,
    /// Source addresses 127.0.0.1 to 127.0.0.N are used in turn.
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// The broker's pid, to read its resident memory from /proc.
    #[arg(long)]
    pid: Option<u32>,
}

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn open(
    host: SocketAddr,
    source: Ipv4Addr,
    client_id: String,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.into(), 0))?;
    let mut stream = socket.connect(host).await?;
    let mut buf = BytesMut::new();
    crate::connect_packet(&client_id, true, crate::KEEP_ALIVE)
        .encode(&mut buf, crate::client::version());
    stream.write_all(&buf).await?;
    let mut framed = FramedRead::new(stream, crate::client::codec());
    match framed.next().await {
        Some(Ok(Packet::ConnAck(a))) if a.reason.0 == 0 => Ok(framed.into_inner()),
        other => Err(std::io::Error::other(format!("no CONNACK: {other:?}"))),
    }
}

pub async fn run(
    host: SocketAddr,
    label: &str,
    args: &ConnectionsArgs,
    header: bool,
) -> std::io::Result<()> {
    let before = args.pid.and_then(rss_kib);
    let id = std::process::id();
    let start = Instant::now();
    let results: Vec<std::io::Result<tokio::net::TcpStream>> = futures::stream::iter(0..args.count)
        .map(|i| {
            let source = Ipv4Addr::new(127, 0, 0, 1 + (i % args.sources.max(1) as usize) as u8);
            open(host, source, format!("bench-{id}-conn-{i}"))
        })
        .buffer_unordered(args.parallel.max(1))
        .collect()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let (streams, failures): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
    let connected = streams.len();
    if let Some(Err(e)) = failures.first() {
        eprintln!(
            "roost-bench: {} connections failed, first: {e}",
            failures.len()
        );
    }
    // Let the broker settle (buffers released after the handshake), then measure.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let after = args.pid.and_then(rss_kib);
    let per_conn = match (before, after) {
        (Some(b), Some(a)) if connected > 0 => {
            format!("{:.2}", (a.saturating_sub(b)) as f64 / connected as f64)
        }
        _ => "-".to_string(),
    };
    if header {
        println!("| broker | scenario | connected | failed | connects/s | RSS before KiB | RSS after KiB | KiB per connection |");
        println!("|---|---|---|---|---|---|---|---|");
    }
    println!(
        "| {label} | connections | {connected} | {} | {:.0} | {} | {} | {per_conn} |",
        failures.len(),
        connected as f64 / elapsed.max(1e-9),
        before.map_or("-".into(), |v| v.to_string()),
        after.map_or("-".into(), |v| v.to_string()),
    );
    drop(streams);
    Ok(())
}
