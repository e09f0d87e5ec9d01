//! `roost-bench churn --pid PID`: does the broker give back what churn
//! takes? Several rounds, each of:
//!
//! - connection churn: C clients connect, subscribe to F filters, publish
//!   one QoS 1 message, unsubscribe, and leave, half with DISCONNECT and
//!   half by dropping the socket (so their wills and cleanup paths run);
//! - QoS 2 packet-id reuse: one client sends QoS 2 PUBLISHes with every
//!   packet id twice over and never a PUBREL, then drops the socket;
//! - subscription churn: one client subscribes and unsubscribes S
//!   distinct filters.
//!
//! After each round (and a pause for the broker to settle) it reads the
//! broker's resident memory and open file descriptors from /proc. A leak
//! shows as growth from round to round; allocator caches show as a rise
//! after round 1 that does not grow further.

use crate::connect;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use roost::protocol::Ack;
use roost::protocol::{
    Packet, PacketId, Publish, QoS, Subscribe, SubscribeTopic, TopicFilter, TopicName, Unsubscribe,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[derive(clap::Args, Clone)]
pub struct ChurnArgs {
    /// The broker's pid, to read its memory and file descriptors from /proc.
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Clients connecting and leaving per round.
    #[arg(long, default_value_t = 2000)]
    clients: usize,
    /// Filters each churning client subscribes to.
    #[arg(long, default_value_t = 5)]
    filters: usize,
    /// Distinct filters subscribed and unsubscribed per round by one client
    /// (roost's default `limits.max_subscriptions_per_client`).
    #[arg(long, default_value_t = 10_000)]
    subscriptions: usize,
    /// Clients churning at once.
    #[arg(long, default_value_t = 64)]
    parallel: usize,
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

fn encode(packets: &[Packet]) -> BytesMut {
    let mut buf = BytesMut::new();
    for p in packets {
        p.encode(&mut buf, crate::client::version());
    }
    buf
}

fn filter(s: String) -> std::io::Result<TopicFilter> {
    TopicFilter::new(s).map_err(std::io::Error::other)
}

fn packet_id(n: usize) -> PacketId {
    PacketId::new((n % 65535) as u16 + 1).expect("non-zero")
}

/// One churning client: connect, subscribe, publish, unsubscribe, leave.
async fn churn_client(
    host: SocketAddr,
    id: String,
    filters: usize,
    polite: bool,
) -> std::io::Result<()> {
    let mut conn = connect(host, &id).await?;
    let topics: Vec<SubscribeTopic> = (0..filters)
        .map(|f| {
            Ok(SubscribeTopic {
                filter: filter(format!("churn/{id}/{f}/#"))?,
                qos: QoS::AtLeastOnce,
                options: Default::default(),
            })
        })
        .collect::<std::io::Result<_>>()?;
    let unsubscribe: Vec<TopicFilter> = topics.iter().map(|t| t.filter.clone()).collect();
    let topic = TopicName::new(format!("churn/{id}/0/x")).map_err(std::io::Error::other)?;
    let buf = encode(&[
        Packet::Subscribe(Subscribe {
            packet_id: packet_id(1),
            topics,
            properties: None,
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic,
            packet_id: Some(packet_id(2)),
            payload: Bytes::from_static(b"churn"),
            properties: None,
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: packet_id(3),
            filters: unsubscribe,
            properties: None,
        }),
    ]);
    conn.write.write_all(&buf).await?;
    // SUBACK, the message itself, PUBACK, UNSUBACK: wait for the UNSUBACK.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), conn.read.next()).await {
            Ok(Some(Ok(Packet::UnsubAck(_)))) => break,
            Ok(Some(Ok(Packet::Publish(p)))) => {
                if let Some(id) = p.packet_id {
                    conn.write
                        .write_all(&encode(&[Packet::PubAck(Ack::new(id))]))
                        .await?;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => return Err(std::io::Error::other(format!("{id}: {other:?}"))),
        }
    }
    if polite {
        conn.write
            .write_all(&encode(&[Packet::disconnect()]))
            .await?;
    }
    Ok(())
}

/// QoS 2 PUBLISHes with every packet id, twice, never a PUBREL.
async fn qos2_id_reuse(host: SocketAddr, id: String) -> std::io::Result<()> {
    let mut conn = connect(host, &id).await?;
    let topic = TopicName::new(format!("churn/{id}/qos2")).map_err(std::io::Error::other)?;
    let total = 2 * 65535;
    let mut sent = 0usize;
    let mut recs = 0usize;
    while recs < total {
        if sent < total && sent - recs < 1000 {
            let batch: Vec<Packet> = (sent..(sent + 500).min(total))
                .map(|n| {
                    Packet::Publish(Publish {
                        dup: false,
                        qos: QoS::ExactlyOnce,
                        retain: false,
                        topic: topic.clone(),
                        packet_id: Some(packet_id(n)),
                        payload: Bytes::from_static(b"never released"),
                        properties: None,
                    })
                })
                .collect();
            sent += batch.len();
            conn.write.write_all(&encode(&batch)).await?;
        }
        match tokio::time::timeout(Duration::from_secs(10), conn.read.next()).await {
            Ok(Some(Ok(Packet::PubRec(_)))) => recs += 1,
            Ok(Some(Ok(_))) => {}
            other => return Err(std::io::Error::other(format!("{id}: {other:?}"))),
        }
    }
    Ok(())
}

/// Subscribes to `n` distinct filters, then unsubscribes from all.
async fn subscription_churn(host: SocketAddr, id: String, n: usize) -> std::io::Result<()> {
    let mut conn = connect(host, &id).await?;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let filters: Vec<TopicFilter> = chunk
            .iter()
            .map(|i| filter(format!("churn/subs/{i}/+/x")))
            .collect::<std::io::Result<_>>()?;
        let buf = encode(&[
            Packet::Subscribe(Subscribe {
                packet_id: packet_id(chunk[0]),
                topics: filters
                    .iter()
                    .map(|f| SubscribeTopic {
                        filter: f.clone(),
                        qos: QoS::AtMostOnce,
                        options: Default::default(),
                    })
                    .collect(),
                properties: None,
            }),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: packet_id(chunk[0] + 1),
                filters,
                properties: None,
            }),
        ]);
        conn.write.write_all(&buf).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), conn.read.next()).await {
                Ok(Some(Ok(Packet::UnsubAck(_)))) => break,
                Ok(Some(Ok(_))) => {}
                other => return Err(std::io::Error::other(format!("{id}: {other:?}"))),
            }
        }
    }
    conn.write
        .write_all(&encode(&[Packet::disconnect()]))
        .await?;
    Ok(())
}

pub async fn run(
    host: SocketAddr,
    label: &str,
    args: &ChurnArgs,
    header: bool,
) -> std::io::Result<()> {
    let settle = || tokio::time::sleep(Duration::from_secs(2));
    let measure = |round: String, elapsed: f64| {
        (
            round,
            proc_status_kib(args.pid, "VmRSS:"),
            open_fds(args.pid),
            elapsed,
        )
    };
    let mut rows = vec![measure("before".into(), 0.0)];
    let run_id = std::process::id();
    for round in 1..=args.rounds {
        let start = Instant::now();
        let results: Vec<std::io::Result<()>> = futures::stream::iter(0..args.clients)
            .map(|i| {
                churn_client(
                    host,
                    format!("churn-{run_id}-{round}-{i}"),
                    args.filters,
                    i % 2 == 0,
                )
            })
            .buffer_unordered(args.parallel.max(1))
            .collect()
            .await;
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            return Err(std::io::Error::other(format!("round {round}: {e}")));
        }
        qos2_id_reuse(host, format!("churn-{run_id}-{round}-qos2")).await?;
        subscription_churn(
            host,
            format!("churn-{run_id}-{round}-subs"),
            args.subscriptions,
        )
        .await?;
        let elapsed = start.elapsed().as_secs_f64();
        settle().await;
        rows.push(measure(format!("after round {round}"), elapsed));
    }
    if header {
        println!("| broker | scenario | round | seconds | RSS KiB | open fds |");
        println!("|---|---|---|---|---|---|");
    }
    let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for (round, rss, fds, secs) in &rows {
        println!(
            "| {label} | churn {}x{} filters, qos2 ids x2, {} subs | {round} | {secs:.1} | {} | {} |",
            args.clients,
            args.filters,
            args.subscriptions,
            show(*rss),
            show(fds.map(|f| f as u64)),
        );
    }
    Ok(())
}
