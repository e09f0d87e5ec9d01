//! The drain scenario: messages queued for offline persistent subscribers,
//! then drained when they return.

use crate::client::{connect, connect_with, subscribe, Conn};
use crate::throughput::{subscriber, Progress, SubscriberResult};
use crate::Cli;
use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use roost::protocol::Ack;
use roost::protocol::{Packet, PacketId, Publish, QoS, TopicName};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Queue then drain: S persistent subscribers subscribe and leave; P
/// publishers send M messages in all, each acknowledged; the subscribers return
/// together and receive everything. Prints the queueing rate (acknowledged
/// publishes/s) and the drain rate (deliveries/s), with loss counted.
pub async fn drain(
    cli: &Cli,
    subscribers: usize,
    publishers: usize,
    qos: QoS,
    messages: u64,
) -> std::io::Result<()> {
    let publishers = publishers.max(1);
    let run_id = std::process::id();
    let ids: Vec<String> = (0..subscribers)
        .map(|s| format!("bench-{run_id}-drain-{s}"))
        .collect();
    let topic_name = format!("bench/drain/{run_id}");
    for id in &ids {
        let stream = connect_with(cli.host, id, false).await?;
        let mut conn = subscribe(stream, &topic_name, qos).await?;
        let mut buf = BytesMut::new();
        Packet::disconnect().encode(&mut buf, crate::client::version());
        conn.write.write_all(&buf).await?;
    }
    // Each publisher has at most `window` unacknowledged.
    let start = Instant::now();
    let per_publisher = messages / publishers as u64;
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let conn = connect(cli.host, &format!("bench-{run_id}-drain-pub-{p}")).await?;
        let topic = TopicName::new(topic_name.clone()).map_err(std::io::Error::other)?;
        tasks.push(tokio::spawn(publish(
            conn,
            topic,
            qos,
            p as u32,
            per_publisher,
            cli.window,
            cli.payload,
            cli.idle_timeout,
        )));
    }
    for t in tasks {
        t.await.map_err(std::io::Error::other)??;
    }
    let queued_in = start.elapsed().as_secs_f64();
    // All subscribers return at once.
    let progress = Arc::new(Progress {
        reached: (0..subscribers * publishers)
            .map(|_| AtomicU64::new(0))
            .collect(),
        delivered: AtomicU64::new(0),
        publishers,
        subscribers,
        changed: Notify::new(),
        stop: CancellationToken::new(),
    });
    let drain_start = Instant::now();
    let mut subs = Vec::new();
    for (s, id) in ids.iter().enumerate() {
        let stream = connect_with(cli.host, id, false).await?;
        subs.push(tokio::spawn(subscriber(
            stream,
            s,
            publishers,
            per_publisher,
            progress.clone(),
        )));
    }
    let expected = per_publisher * publishers as u64 * subscribers as u64;
    let mut last = (0, Instant::now());
    loop {
        let notified = progress.changed.notified();
        let total = progress.total();
        if total >= expected {
            break;
        }
        if total != last.0 {
            last = (total, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(cli.idle_timeout) {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
    progress.stop();
    let mut result = SubscriberResult::default();
    let mut last_at = drain_start;
    for s in subs {
        let r = s.await.map_err(std::io::Error::other)??;
        result.unique += r.unique;
        result.duplicates += r.duplicates;
        if let Some(t) = r.last_at {
            last_at = last_at.max(t);
        }
    }
    let drained_in = last_at.duration_since(drain_start).as_secs_f64().max(1e-9);
    // Leave no persistent session behind: a clean connect discards it.
    for id in &ids {
        let mut conn = connect_with(cli.host, id, true).await?;
        let mut buf = BytesMut::new();
        Packet::disconnect().encode(&mut buf, crate::client::version());
        conn.write.write_all(&buf).await?;
    }
    if cli.header {
        println!("| broker | scenario | QoS | queued msg/s (acknowledged) | drained msg/s | expected | delivered | missing | duplicates |");
        println!("|---|---|---|---|---|---|---|---|---|");
    }
    println!(
        "| {} | drain {}->{}x{} | {} | {:.0} | {:.0} | {} | {} | {} | {} |",
        cli.label,
        publishers,
        subscribers,
        per_publisher * publishers as u64,
        qos as u8,
        (per_publisher * publishers as u64) as f64 / queued_in,
        result.unique as f64 / drained_in,
        expected,
        result.unique,
        expected - result.unique.min(expected),
        result.duplicates
    );
    Ok(())
}

/// One publisher: `count` messages numbered from 0 under publisher number
/// `p`, with at most `window` unacknowledged; returns once all are.
#[allow(clippy::too_many_arguments)]
async fn publish(
    conn: Conn,
    topic: TopicName,
    qos: QoS,
    p: u32,
    count: u64,
    window: u64,
    payload_len: usize,
    idle_timeout: u64,
) -> std::io::Result<()> {
    let Conn {
        read: mut acks,
        mut write,
    } = conn;
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut buf = BytesMut::new();
    while acked < count {
        while sent < count && sent - acked < window {
            let mut payload = BytesMut::with_capacity(payload_len);
            payload.put_u32(p);
            payload.put_u64(sent);
            payload.resize(payload_len, b'x');
            let packet_id = PacketId::new((sent % 65535) as u16 + 1);
            Packet::Publish(Publish {
                dup: false,
                qos,
                retain: false,
                topic: topic.clone(),
                packet_id,
                payload: payload.freeze(),
                properties: None,
            })
            .encode(&mut buf, crate::client::version());
            sent += 1;
        }
        if !buf.is_empty() {
            write.write_all(&buf).await?;
            buf.clear();
        }
        match tokio::time::timeout(Duration::from_secs(idle_timeout), acks.next()).await {
            Ok(Some(Ok(Packet::PubAck(_)))) | Ok(Some(Ok(Packet::PubComp(_)))) => acked += 1,
            Ok(Some(Ok(Packet::PubRec(Ack { packet_id: id, .. })))) => {
                Packet::PubRel(Ack::new(id)).encode(&mut buf, crate::client::version());
            }
            Ok(Some(Ok(_))) => {}
            other => {
                return Err(std::io::Error::other(format!(
                    "publisher {p}: no acknowledgement: {other:?}"
                )))
            }
        }
    }
    Ok(())
}
