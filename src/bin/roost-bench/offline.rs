//! The cost of an offline persistent session: N clients each CONNECT with
//! clean session 0, SUBSCRIBE to their own topic `off/RUN/N` at QoS 1 and
//! DISCONNECT, so the broker keeps N sessions whose clients are away. Given
//! the broker's pid, prints its resident memory growth per session once
//! they are all offline (subscription entries included).

use crate::client::{connect_with, subscribe};
use crate::connections::rss_kib;
use bytes::BytesMut;
use futures::StreamExt;
use roost::protocol::{Packet, QoS};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[derive(clap::Args, Clone)]
pub struct OfflineArgs {
    /// Persistent sessions to leave behind.
    #[arg(long, default_value_t = 100_000)]
    sessions: usize,
    /// Sessions being made at once.
    #[arg(long, default_value_t = 128)]
    parallel: usize,
    /// The broker's pid, to read its resident memory from /proc.
    #[arg(long)]
    pid: Option<u32>,
    /// Control: clean sessions (nothing should be kept).
    #[arg(long)]
    clean: bool,
    /// Control: persistent sessions without a subscription.
    #[arg(long)]
    no_subscribe: bool,
}

async fn leave_one(
    host: SocketAddr,
    client_id: String,
    topic: String,
    args: &OfflineArgs,
) -> std::io::Result<()> {
    let conn = connect_with(host, &client_id, args.clean).await?;
    let mut conn = match args.no_subscribe {
        true => conn,
        false => subscribe(conn, &topic, QoS::AtLeastOnce).await?,
    };
    let mut buf = BytesMut::new();
    Packet::disconnect().encode(&mut buf, crate::client::version());
    conn.write.write_all(&buf).await?;
    // The broker closes after DISCONNECT: wait for it, so the session is
    // offline before the next measurement.
    while let Some(Ok(_)) = conn.read.next().await {}
    Ok(())
}

pub async fn run(
    host: SocketAddr,
    label: &str,
    args: &OfflineArgs,
    header: bool,
) -> std::io::Result<()> {
    let before = args.pid.and_then(rss_kib);
    let run = std::process::id();
    let start = Instant::now();
    let failures: Vec<std::io::Error> = futures::stream::iter(0..args.sessions)
        .map(|i| {
            leave_one(
                host,
                format!("bench-{run}-off-{i}"),
                format!("off/{run}/{i}"),
                args,
            )
        })
        .buffer_unordered(args.parallel.max(1))
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(e) = failures.first() {
        eprintln!(
            "roost-bench: {} sessions failed, first: {e}",
            failures.len()
        );
    }
    let made = args.sessions - failures.len();
    // Let the broker finish what the disconnects started, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = args.pid.and_then(rss_kib);
    let per_session = match (before, after) {
        (Some(b), Some(a)) if made > 0 => {
            format!("{:.2}", a.saturating_sub(b) as f64 / made as f64)
        }
        _ => "-".to_string(),
    };
    if header {
        println!("| broker | scenario | offline sessions | failed | sessions/s | RSS before KiB | RSS after KiB | KiB per offline session |");
        println!("|---|---|---|---|---|---|---|---|");
    }
    println!(
        "| {label} | offline | {made} | {} | {:.0} | {} | {} | {per_session} |",
        failures.len(),
        made as f64 / elapsed.max(1e-9),
        before.map_or("-".into(), |v| v.to_string()),
        after.map_or("-".into(), |v| v.to_string()),
    );
    Ok(())
}
