//! A restart with a large backlog: `roost-bench backlog --broker-cmd CMD`.
//!
//! Starts the broker command (as `crash` does: `{port}` and `{dir}` filled
//! in), leaves persistent sessions behind with a backlog queued for them,
//! stops the broker (SIGTERM; SIGKILL with `--kill`), starts it again on
//! the same state and measures:
//!
//! - the time from starting the command to the first CONNACK;
//! - the broker's resident memory then, a second later, and at its peak
//!   (VmHWM) before the sessions return, against its memory while running
//!   with the same backlog;
//! - that every queued message is delivered when the sessions return, and
//!   how fast.
//!
//! The backlog by default: `--shared-sessions` (100) sessions subscribed to
//! one topic on which `--messages` (10,000) messages of `--payload` (1 KiB)
//! are published, which is 1,000,000 queued copies; and `--big-sessions`
//! (1,000) sessions subscribed to another topic that gets one message of
//! `--big-payload` (1 MiB less 256 bytes). All at QoS 1; the publisher keeps `--window`
//! (64) messages unacknowledged.

use crate::client::{connect, connect_with, subscribe, Conn};
use crate::connections::rss_kib;
use crate::crash::{start_broker, Broker};
use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use roost::protocol::Ack;
use roost::protocol::{Packet, PacketId, Publish, QoS, TopicName};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[derive(clap::Args, Clone)]
pub struct BacklogArgs {
    /// Command that starts the broker, run as `sh -c 'exec CMD'`. `{port}`
    /// is replaced by a free port, `{dir}` by the state directory.
    #[arg(long, value_name = "CMD")]
    broker_cmd: String,
    /// Label printed in the result row.
    #[arg(long, default_value = "broker")]
    label: String,
    /// Sessions that share the topic of `--messages` messages.
    #[arg(long, default_value_t = 100)]
    shared_sessions: usize,
    /// Messages queued for every shared session.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Bytes per shared message (at least 12).
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    /// Sessions that share one big message.
    #[arg(long, default_value_t = 1000)]
    big_sessions: usize,
    /// Bytes of the big message (1 MiB less room for its header, so that
    /// the packet fits a 1 MiB packet limit such as roost's default).
    #[arg(long, default_value_t = (1 << 20) - 256)]
    big_payload: usize,
    /// Unacknowledged messages the publisher may have.
    #[arg(long, default_value_t = 64)]
    window: u64,
    /// Stop the broker with SIGKILL instead of SIGTERM.
    #[arg(long)]
    kill: bool,
    /// State directory for `{dir}` (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print the header line before the result.
    #[arg(long)]
    header: bool,
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

fn payload(seq: u64, len: usize) -> bytes::Bytes {
    let mut p = BytesMut::with_capacity(len);
    p.put_u32(0);
    p.put_u64(seq);
    p.resize(len, b'x');
    p.freeze()
}

/// Publishes `count` messages on `topic` at QoS 1, at most `window`
/// unacknowledged, and waits for every PUBACK.
async fn publish(
    conn: Conn,
    topic: &str,
    count: u64,
    len: usize,
    window: u64,
) -> std::io::Result<()> {
    let Conn {
        mut read,
        mut write,
    } = conn;
    let topic = TopicName::new(topic.to_string()).map_err(std::io::Error::other)?;
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut buf = BytesMut::new();
    while acked < count {
        while sent < count && sent - acked < window {
            Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: topic.clone(),
                packet_id: PacketId::new((sent % 65535) as u16 + 1),
                payload: payload(sent, len),
                properties: None,
            })
            .encode(&mut buf, crate::client::version());
            sent += 1;
        }
        if !buf.is_empty() {
            write.write_all(&buf).await?;
            buf.clear();
        }
        match tokio::time::timeout(Duration::from_secs(30), read.next()).await {
            Ok(Some(Ok(Packet::PubAck(_)))) => acked += 1,
            Ok(Some(Ok(_))) => {}
            other => {
                return Err(std::io::Error::other(format!(
                    "publisher: no PUBACK: {other:?}"
                )))
            }
        }
    }
    let mut buf = BytesMut::new();
    Packet::disconnect().encode(&mut buf, crate::client::version());
    write.write_all(&buf).await
}

/// Leaves a persistent session subscribed to `topic` at QoS 1.
async fn leave(host: std::net::SocketAddr, id: String, topic: &'static str) -> std::io::Result<()> {
    let conn = connect_with(host, &id, false).await?;
    let mut conn = subscribe(conn, topic, QoS::AtLeastOnce).await?;
    let mut buf = BytesMut::new();
    Packet::disconnect().encode(&mut buf, crate::client::version());
    conn.write.write_all(&buf).await?;
    while let Some(Ok(_)) = conn.read.next().await {}
    Ok(())
}

/// Takes up a session again and receives until `expected` distinct
/// sequence numbers arrived, or nothing came for `idle`. Returns how many.
async fn drain_one(
    host: std::net::SocketAddr,
    id: String,
    expected: u64,
    idle: Duration,
) -> std::io::Result<u64> {
    let Conn {
        mut read,
        mut write,
    } = connect_with(host, &id, false).await?;
    let mut seen = vec![0u64; expected.div_ceil(64) as usize];
    let mut unique = 0u64;
    let mut acks = BytesMut::new();
    while unique < expected {
        let packet = match tokio::time::timeout(idle, read.next()).await {
            Ok(Some(Ok(p))) => p,
            _ => break,
        };
        if let Packet::Publish(p) = packet {
            if let Some(pid) = p.packet_id {
                Packet::PubAck(Ack::new(pid)).encode(&mut acks, crate::client::version());
            }
            if p.payload.len() >= 12 {
                let seq = u64::from_be_bytes(p.payload[4..12].try_into().expect("8 bytes"));
                if seq < expected && seen[(seq / 64) as usize] & (1 << (seq % 64)) == 0 {
                    seen[(seq / 64) as usize] |= 1 << (seq % 64);
                    unique += 1;
                }
            }
            // Acknowledge in batches, as a client reading fast does.
            if acks.len() >= 4096 || read.read_buffer().is_empty() {
                write.write_all(&acks).await?;
                acks.clear();
            }
        }
    }
    if !acks.is_empty() {
        write.write_all(&acks).await?;
    }
    Ok(unique)
}

pub async fn run(args: &BacklogArgs) -> i32 {
    match measure(args).await {
        Ok(0) => 0,
        Ok(_) => 1,
        Err(e) => {
            eprintln!("roost-bench backlog: {e}");
            2
        }
    }
}

async fn measure(args: &BacklogArgs) -> Result<u64, String> {
    let temp = match &args.dir {
        Some(_) => None,
        None => Some(tempfile_dir()?),
    };
    let result = measure_in(
        args,
        temp.as_ref().or(args.dir.as_ref()).expect("one of them"),
    )
    .await;
    if let Some(t) = temp {
        let _ = std::fs::remove_dir_all(t);
    }
    result
}

async fn measure_in(args: &BacklogArgs, dir: &std::path::Path) -> Result<u64, String> {
    if args.payload < 12 || args.big_payload < 12 {
        return Err("payloads must be at least 12 bytes".into());
    }
    let log = dir.join("broker.log");
    let io = |e: std::io::Error| e.to_string();
    let run = std::process::id();
    let shared: Vec<String> = (0..args.shared_sessions)
        .map(|i| format!("bench-{run}-shared-{i}"))
        .collect();
    let big: Vec<String> = (0..args.big_sessions)
        .map(|i| format!("bench-{run}-big-{i}"))
        .collect();

    // 1. The backlog, on a running broker.
    let broker = start_broker(&args.broker_cmd, dir, &log).await?;
    let host = broker.addr;
    let leaving = shared
        .iter()
        .map(|id| (id.clone(), "backlog/shared"))
        .chain(big.iter().map(|id| (id.clone(), "backlog/big")));
    let failed: Vec<std::io::Error> = futures::stream::iter(leaving)
        .map(|(id, topic)| leave(host, id, topic))
        .buffer_unordered(64)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    if let Some(e) = failed.first() {
        return Err(format!("{} sessions could not be made: {e}", failed.len()));
    }
    let queue_start = Instant::now();
    let publisher = connect(host, &format!("bench-{run}-backlog-pub"))
        .await
        .map_err(io)?;
    publish(
        publisher,
        "backlog/shared",
        args.messages,
        args.payload,
        args.window,
    )
    .await
    .map_err(io)?;
    let publisher = connect(host, &format!("bench-{run}-backlog-pub"))
        .await
        .map_err(io)?;
    publish(publisher, "backlog/big", 1, args.big_payload, 1)
        .await
        .map_err(io)?;
    let queued_in = queue_start.elapsed().as_secs_f64();
    let pid = broker.child.id();
    let running_rss = rss_kib(pid);
    stop(broker, args.kill);

    // 2. The restart.
    let started = Instant::now();
    let broker = start_broker(&args.broker_cmd, dir, &log).await?;
    let pid = broker.child.id();
    let probe = connect(broker.addr, &format!("bench-{run}-probe"))
        .await
        .map_err(io)?;
    let to_connack = started.elapsed().as_secs_f64();
    drop(probe);
    let at_connack = rss_kib(pid);
    // Whatever the broker does in the background after start, for a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = rss_kib(pid);
    let peak = vm_hwm_kib(pid);

    // 3. Everything delivered when the sessions return.
    let host = broker.addr;
    let idle = Duration::from_secs(10);
    let drain_start = Instant::now();
    let wanted = shared
        .iter()
        .map(|id| (id.clone(), args.messages))
        .chain(big.iter().map(|id| (id.clone(), 1)));
    let results: Vec<(u64, std::io::Result<u64>)> = futures::stream::iter(wanted)
        .map(|(id, expected)| async move { (expected, drain_one(host, id, expected, idle).await) })
        .buffer_unordered(args.shared_sessions + args.big_sessions)
        .collect()
        .await;
    let drained_in = drain_start.elapsed().as_secs_f64();
    let mut expected = 0;
    let mut delivered = 0;
    for (want, got) in results {
        expected += want;
        match got {
            Ok(n) => delivered += n,
            Err(e) => eprintln!("roost-bench backlog: a session could not drain: {e}"),
        }
    }
    let drain_peak = vm_hwm_kib(pid);
    stop(broker, false);
    if args.header {
        println!("| broker | queued copies | queued msg/s | running RSS MiB | start to CONNACK s | RSS at CONNACK MiB | RSS 1 s later MiB | peak RSS before drain MiB | peak RSS while draining MiB | drained msg/s | missing |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
    }
    let queued_copies = args.messages * args.shared_sessions as u64 + args.big_sessions as u64;
    println!(
        "| {} | {queued_copies} | {:.0} | {} | {:.2} | {} | {} | {} | {} | {:.0} | {} |",
        args.label,
        (args.messages + 1) as f64 / queued_in.max(1e-9),
        mib(running_rss),
        to_connack,
        mib(at_connack),
        mib(settled),
        mib(peak),
        mib(drain_peak),
        delivered as f64 / drained_in.max(1e-9),
        expected - delivered.min(expected),
    );
    Ok(expected - delivered.min(expected))
}

/// Stops the broker: SIGTERM and a wait (SIGKILL after 60 s), or SIGKILL.
fn stop(mut broker: Broker, kill: bool) {
    if !kill {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(broker.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = broker.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    broker.kill();
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("roost-bench-backlog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}
