//! The closed-loop throughput scenarios, fan-in and fan-out: publishers
//! that stay at most `--window` messages ahead of the slowest subscriber,
//! and subscribers that count every message exactly (loss, duplicates,
//! order).

use crate::client::{connect, connect_with, subscribe, Conn};
use crate::{Cli, Scenario};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use roost::protocol::Ack;
use roost::protocol::{Packet, PacketId, Publish, QoS, TopicName};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Progress shared between publishers and subscribers for the closed loop.
pub struct Progress {
    /// reached[s * publishers + p]: one past the highest sequence number of
    /// publisher p that subscriber s has seen. Messages of one publisher
    /// arrive in order, so everything below it was delivered or lost; a lost
    /// QoS 0 message therefore never stalls the loop.
    pub reached: Vec<AtomicU64>,
    /// Unique messages delivered, over all subscribers.
    pub delivered: AtomicU64,
    pub publishers: usize,
    pub subscribers: usize,
    /// Subscribers made progress (wakes publishers and the main task).
    pub changed: Notify,
    /// The run is over.
    pub stop: CancellationToken,
}

impl Progress {
    pub fn slowest(&self, publisher: usize) -> u64 {
        (0..self.subscribers)
            .map(|s| self.reached[s * self.publishers + publisher].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.cancel();
        self.changed.notify_waiters();
    }
}

#[derive(Default, Debug)]
pub struct SubscriberResult {
    pub unique: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub last_at: Option<Instant>,
}

pub async fn run(
    cli: &Cli,
    publishers: usize,
    subscribers: usize,
    qos: QoS,
    messages: u64,
    filter: &str,
) -> std::io::Result<()> {
    let per_publisher = messages / publishers as u64;
    let progress = Arc::new(Progress {
        reached: (0..publishers * subscribers)
            .map(|_| AtomicU64::new(0))
            .collect(),
        delivered: AtomicU64::new(0),
        publishers,
        subscribers,
        changed: Notify::new(),
        stop: CancellationToken::new(),
    });
    let run_id = std::process::id();
    let mut subs = Vec::new();
    for s in 0..subscribers {
        let stream = connect_with(
            cli.host,
            &format!("bench-{run_id}-sub-{s}"),
            !cli.persistent,
        )
        .await?;
        let stream = subscribe(stream, filter, qos).await?;
        let progress = progress.clone();
        subs.push(tokio::spawn(subscriber(
            stream,
            s,
            publishers,
            per_publisher,
            progress,
        )));
    }
    let mut pubs = Vec::new();
    let mut streams = Vec::new();
    for p in 0..publishers {
        streams.push(connect(cli.host, &format!("bench-{run_id}-pub-{p}")).await?);
    }
    let start = Instant::now();
    for (p, stream) in streams.into_iter().enumerate() {
        let topic = match cli.scenario {
            Scenario::FanOut { .. } => "bench/fanout".to_string(),
            _ => format!("bench/{p}/data"),
        };
        let cfg = PublisherConfig {
            id: p,
            topic,
            qos,
            count: per_publisher,
            payload: cli.payload,
            window: cli.window,
        };
        pubs.push(tokio::spawn(publisher(stream, cfg, progress.clone())));
    }
    // Wait for every delivery, or for progress to stall.
    let expected = per_publisher * publishers as u64 * subscribers as u64;
    let idle = Duration::from_secs(cli.idle_timeout);
    let mut last = (progress.total(), Instant::now());
    loop {
        let notified = progress.changed.notified();
        let now_total = progress.total();
        if now_total >= expected {
            break;
        }
        if now_total != last.0 {
            last = (now_total, Instant::now());
        } else if last.1.elapsed() > idle {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
    if progress.total() < expected {
        eprintln!(
            "stalled: {} of {} delivered; reached {:?}",
            progress.total(),
            expected,
            progress.reached
        );
    }
    progress.stop();
    let mut acked = 0;
    let mut acks_done_at = start;
    for p in pubs {
        let r = p.await.map_err(std::io::Error::other)??;
        acked += r.acked;
        acks_done_at = acks_done_at.max(r.done_at);
    }
    let mut result = SubscriberResult::default();
    let mut last_at = start;
    for s in subs {
        let r = s.await.map_err(std::io::Error::other)??;
        result.unique += r.unique;
        result.duplicates += r.duplicates;
        result.out_of_order += r.out_of_order;
        if let Some(t) = r.last_at {
            last_at = last_at.max(t);
        }
    }
    let elapsed = last_at.duration_since(start).as_secs_f64().max(1e-9);
    if cli.persistent {
        // Leave no persistent session behind: a clean connect discards it.
        for s in 0..subscribers {
            let mut conn = connect(cli.host, &format!("bench-{run_id}-sub-{s}")).await?;
            let mut buf = BytesMut::new();
            Packet::disconnect().encode(&mut buf, crate::client::version());
            conn.write.write_all(&buf).await?;
        }
    }
    let missing = expected - result.unique.min(expected);
    let scenario = match cli.scenario {
        Scenario::FanOut { .. } => format!("fan-out 1->{subscribers}"),
        _ => format!("fan-in {publishers}->1"),
    };
    let ack_rate = if qos == QoS::AtMostOnce {
        "-".to_string()
    } else {
        format!(
            "{:.0}",
            acked as f64 / acks_done_at.duration_since(start).as_secs_f64().max(1e-9)
        )
    };
    if cli.header {
        println!(
            "| broker | scenario | QoS | expected | delivered | missing | duplicates | out of order | seconds | delivered msg/s | publish acks/s |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
    }
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.0} | {} |",
        cli.label,
        scenario,
        qos as u8,
        expected,
        result.unique,
        missing,
        result.duplicates,
        result.out_of_order,
        elapsed,
        result.unique as f64 / elapsed,
        ack_rate
    );
    Ok(())
}

struct PublisherConfig {
    id: usize,
    topic: String,
    qos: QoS,
    count: u64,
    payload: usize,
    window: u64,
}

struct PublisherResult {
    acked: u64,
    done_at: Instant,
}

/// Publishes `count` messages, never more than `window` ahead of the
/// slowest subscriber nor `window` unacknowledged.
async fn publisher(
    conn: Conn,
    cfg: PublisherConfig,
    progress: Arc<Progress>,
) -> std::io::Result<PublisherResult> {
    let Conn {
        read: mut framed,
        mut write,
    } = conn;
    let acked = Arc::new(AtomicU64::new(0));
    let (rel_tx, mut rel_rx) = tokio::sync::mpsc::unbounded_channel::<PacketId>();
    let ack_notify = Arc::new(Notify::new());
    let reader = {
        let (acked, ack_notify, progress) = (acked.clone(), ack_notify.clone(), progress.clone());
        let done_at = Arc::new(std::sync::Mutex::new(Instant::now()));
        let d = done_at.clone();
        let handle = tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    p = framed.next() => p,
                    _ = progress.stop.cancelled() => None,
                };
                match next {
                    Some(Ok(Packet::PubAck(_))) | Some(Ok(Packet::PubComp(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        *d.lock().expect("not poisoned") = Instant::now();
                        ack_notify.notify_one();
                    }
                    Some(Ok(Packet::PubRec(Ack { packet_id: id, .. }))) => {
                        let _ = rel_tx.send(id);
                        ack_notify.notify_one();
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
                if progress.stop.is_cancelled() {
                    break;
                }
            }
        });
        (handle, done_at)
    };
    let topic = TopicName::new(cfg.topic.clone()).map_err(std::io::Error::other)?;
    let mut payload = BytesMut::with_capacity(cfg.payload);
    payload.put_u32(cfg.id as u32);
    payload.put_u64(0);
    payload.resize(cfg.payload, b'x');
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut seq = 0u64;
    while !progress.stop.is_cancelled() {
        let notified = progress.changed.notified();
        let ack_notified = ack_notify.notified();
        while let Ok(id) = rel_rx.try_recv() {
            Packet::PubRel(Ack::new(id)).encode(&mut buf, crate::client::version());
        }
        let ahead = seq - progress.slowest(cfg.id);
        let unacked = if cfg.qos == QoS::AtMostOnce {
            0
        } else {
            seq - acked.load(Ordering::Relaxed)
        };
        let room = cfg
            .window
            .saturating_sub(ahead.max(unacked))
            .min(cfg.count - seq)
            .min(512);
        for _ in 0..room {
            payload[4..12].copy_from_slice(&seq.to_be_bytes());
            let packet_id = (cfg.qos != QoS::AtMostOnce)
                .then(|| PacketId::new((seq % 65535) as u16 + 1).expect("non-zero"));
            Packet::Publish(Publish {
                dup: false,
                qos: cfg.qos,
                retain: false,
                topic: topic.clone(),
                packet_id,
                payload: Bytes::copy_from_slice(&payload),
                properties: None,
            })
            .encode(&mut buf, crate::client::version());
            seq += 1;
        }
        if !buf.is_empty() {
            write.write_all(&buf).await?;
            buf.clear();
            continue;
        }
        if seq == cfg.count
            && (cfg.qos == QoS::AtMostOnce || acked.load(Ordering::Relaxed) >= cfg.count)
        {
            break;
        }
        tokio::select! {
            _ = notified => {}
            _ = ack_notified => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let (handle, done_at) = reader;
    let _ = tokio::time::timeout(Duration::from_secs(1), handle).await;
    let done_at = *done_at.lock().expect("not poisoned");
    Ok(PublisherResult {
        acked: acked.load(Ordering::Relaxed),
        done_at,
    })
}

/// Receives, acknowledges and checks every message until told to stop.
pub async fn subscriber(
    conn: Conn,
    index: usize,
    publishers: usize,
    per_publisher: u64,
    progress: Arc<Progress>,
) -> std::io::Result<SubscriberResult> {
    let Conn {
        read: mut framed,
        mut write,
    } = conn;
    let mut seen: Vec<Vec<u64>> = (0..publishers)
        .map(|_| vec![0u64; per_publisher.div_ceil(64) as usize])
        .collect();
    let mut next_expected = vec![0u64; publishers];
    let mut result = SubscriberResult::default();
    let mut acks = BytesMut::new();
    loop {
        let packet = tokio::select! {
            p = framed.next() => p,
            _ = progress.stop.cancelled() => break,
        };
        let mut handle = |packet: Packet, acks: &mut BytesMut| match packet {
            Packet::Publish(p) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => {
                        Packet::PubAck(Ack::new(id)).encode(acks, crate::client::version())
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        Packet::PubRec(Ack::new(id)).encode(acks, crate::client::version())
                    }
                    _ => {}
                }
                if p.payload.len() < 12 {
                    return;
                }
                let publisher =
                    u32::from_be_bytes(p.payload[0..4].try_into().expect("4 bytes")) as usize;
                let seq = u64::from_be_bytes(p.payload[4..12].try_into().expect("8 bytes"));
                if publisher >= publishers || seq >= per_publisher {
                    return;
                }
                let (word, bit) = ((seq / 64) as usize, seq % 64);
                if seen[publisher][word] & (1 << bit) != 0 {
                    result.duplicates += 1;
                    return;
                }
                seen[publisher][word] |= 1 << bit;
                if seq < next_expected[publisher] {
                    result.out_of_order += 1;
                }
                next_expected[publisher] = next_expected[publisher].max(seq + 1);
                result.unique += 1;
                progress.delivered.fetch_add(1, Ordering::Relaxed);
                progress.reached[index * publishers + publisher]
                    .fetch_max(seq + 1, Ordering::Relaxed);
            }
            Packet::PubRel(Ack { packet_id: id, .. }) => {
                Packet::PubComp(Ack::new(id)).encode(acks, crate::client::version())
            }
            _ => {}
        };
        match packet {
            Some(Ok(p)) => handle(p, &mut acks),
            Some(Err(e)) => return Err(std::io::Error::other(e.to_string())),
            None => break,
        }
        // Drain whatever else is already decoded before writing acks.
        while let Some(Some(Ok(p))) = futures::FutureExt::now_or_never(framed.next()) {
            handle(p, &mut acks);
        }
        result.last_at = Some(Instant::now());
        progress.changed.notify_waiters();
        if !acks.is_empty() {
            write.write_all(&acks).await?;
            acks.clear();
        }
    }
    Ok(result)
}
