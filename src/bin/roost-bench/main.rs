//! `roost-bench`: a load generator for any MQTT 3.1.1 broker on host:port.
//!
//! Scenarios: fan-in (P publishers → 1 subscriber on a wildcard filter) and
//! fan-out (1 publisher → N subscribers), at QoS 0, 1 or 2. Every payload
//! carries its publisher and sequence number, so loss and duplicates are
//! counted exactly. Runs are closed-loop: a publisher stays at most
//! `--window` messages ahead of the slowest subscriber, so the figure is the
//! rate the broker sustains, not how much it can buffer.
//!
//! Example: `roost-bench --host 127.0.0.1:1883 fan-in --publishers 4 --qos 1`

mod churn;
mod compare;
mod connections;
mod crash;
mod latency;
mod sink;

use bytes::{BufMut, Bytes, BytesMut};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use roost::protocol::codec::MqttCodec;
use roost::protocol::{
    Connect, Packet, PacketId, ProtocolVersion, Publish, QoS, Subscribe, SubscribeTopic,
    TopicFilter, TopicName,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "MQTT load generator: fan-in and fan-out, exact loss counting")]
struct Cli {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    host: SocketAddr,
    /// Label printed in the result row (e.g. the broker's name).
    #[arg(long, default_value = "broker")]
    label: String,
    /// Payload bytes per message (at least 12: publisher id and sequence).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// How far (messages) a publisher may run ahead of the slowest subscriber.
    #[arg(long, default_value_t = 1000)]
    window: u64,
    /// Give up waiting for missing messages after this many seconds without progress.
    #[arg(long, default_value_t = 5)]
    idle_timeout: u64,
    /// Print the header line before the result.
    #[arg(long)]
    header: bool,
    /// Subscribers use persistent sessions (clean session 0), so a durable
    /// broker stores what it acknowledges for them.
    #[arg(long)]
    persistent: bool,
    /// Also connect a subscriber to `#` at QoS 1 that never reads (4 KiB
    /// receive buffer), for the whole run: the scenario's figures then show
    /// whether one stalled client slows the others.
    #[arg(long)]
    stalled_subscriber: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone)]
enum Scenario {
    /// Durability under kill -9: runs a broker command, sends QoS 1/2 traffic
    /// into persistent sessions, SIGKILLs the broker at random moments,
    /// restarts it on the same state, and counts acknowledged messages never
    /// delivered and QoS 2 messages delivered twice.
    Crash(crash::CrashArgs),
    /// The same scenarios against several brokers (each started fresh and
    /// pinned per measurement), alternating, with medians, ranges and ratios.
    Compare(compare::CompareArgs),
    /// Connection, subscription and QoS 2 packet-id churn, with the
    /// broker's memory and file descriptors after each round.
    Churn(churn::ChurnArgs),
    /// A trivial broker (copies every PUBLISH to every subscriber, QoS 0)
    /// to measure this generator's own ceiling against.
    Sink(sink::SinkArgs),
    /// Send-to-receive latency (p50/p99) of one publisher at a fixed rate
    /// into one subscriber.
    Latency(latency::LatencyArgs),
    /// Connection rate and resident memory per idle connection.
    Connections(connections::ConnectionsArgs),
    /// P publishers, each on its own topic, into one subscriber on `bench/+/data`.
    FanIn {
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        #[arg(long, default_value_t = 0)]
        qos: u8,
        /// Messages in total, split over the publishers.
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
    },
    /// M messages queued for S offline persistent subscribers (publisher
    /// waits for every acknowledgement), then the subscribers return and
    /// drain their queues.
    Drain {
        #[arg(long, default_value_t = 10)]
        subscribers: usize,
        #[arg(long, default_value_t = 1)]
        qos: u8,
        /// Messages published, each queued for every subscriber.
        #[arg(long, default_value_t = 10_000)]
        messages: u64,
    },
    /// One publisher on `bench/fanout` into N subscribers.
    FanOut {
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        #[arg(long, default_value_t = 0)]
        qos: u8,
        /// Messages published; deliveries are messages × subscribers.
        #[arg(long, default_value_t = 20_000)]
        messages: u64,
    },
}

/// Progress shared between publishers and subscribers for the closed loop.
struct Progress {
    /// reached[s * publishers + p]: one past the highest sequence number of
    /// publisher p that subscriber s has seen. Messages of one publisher
    /// arrive in order, so everything below it was delivered or lost; a lost
    /// QoS 0 message therefore never stalls the loop.
    reached: Vec<AtomicU64>,
    /// Unique messages delivered, over all subscribers.
    delivered: AtomicU64,
    publishers: usize,
    subscribers: usize,
    /// Subscribers made progress (wakes publishers and the main task).
    changed: Notify,
    /// The run is over.
    stop: CancellationToken,
}

impl Progress {
    fn slowest(&self, publisher: usize) -> u64 {
        (0..self.subscribers)
            .map(|s| self.reached[s * self.publishers + publisher].load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    fn stop(&self) {
        self.stop.cancel();
        self.changed.notify_waiters();
    }
}

#[derive(Default, Debug)]
struct SubscriberResult {
    unique: u64,
    duplicates: u64,
    out_of_order: u64,
    last_at: Option<Instant>,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if cli.payload < 12 {
        eprintln!("--payload must be at least 12 bytes");
        std::process::exit(2);
    }
    // Held until the scenario ends: never read from.
    let _stalled = if cli.stalled_subscriber {
        match stalled_subscriber(cli.host).await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("roost-bench: stalled subscriber: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let (publishers, subscribers, qos, messages, filter) = match &cli.scenario {
        Scenario::FanIn {
            publishers,
            qos,
            messages,
        } => (*publishers, 1, *qos, *messages, "bench/+/data"),
        Scenario::FanOut {
            subscribers,
            qos,
            messages,
        } => (1, *subscribers, *qos, *messages, "bench/fanout"),
        Scenario::Crash(args) => std::process::exit(crash::run(args).await),
        Scenario::Compare(args) => std::process::exit(compare::run(args).await),
        Scenario::Sink(args) => {
            if let Err(e) = sink::run(args).await {
                eprintln!("roost-bench sink: {e}");
                std::process::exit(1);
            }
            return;
        }
        Scenario::Churn(args) => {
            if let Err(e) = churn::run(cli.host, &cli.label, args, cli.header).await {
                eprintln!("roost-bench: {e}");
                std::process::exit(1);
            }
            return;
        }
        Scenario::Connections(args) => {
            if let Err(e) = connections::run(cli.host, &cli.label, args, cli.header).await {
                eprintln!("roost-bench: {e}");
                std::process::exit(1);
            }
            return;
        }
        Scenario::Latency(args) => {
            let (host, label, payload, header) =
                (cli.host, cli.label.clone(), cli.payload, cli.header);
            let args = args.clone();
            let result = tokio::task::spawn_blocking(move || {
                latency::run(host, &label, payload, &args, header)
            })
            .await;
            if let Ok(Err(e)) | Err(e) = result.map_err(std::io::Error::other) {
                eprintln!("roost-bench: {e}");
                std::process::exit(1);
            }
            return;
        }
        Scenario::Drain {
            subscribers,
            qos,
            messages,
        } => {
            let Some(qos) = QoS::from_u8(*qos).filter(|q| *q != QoS::AtMostOnce) else {
                eprintln!("--qos must be 1 or 2 for drain");
                std::process::exit(2);
            };
            if let Err(e) = drain(&cli, *subscribers, qos, *messages).await {
                eprintln!("roost-bench: {e}");
                std::process::exit(1);
            }
            return;
        }
    };
    let Some(qos) = QoS::from_u8(qos) else {
        eprintln!("--qos must be 0, 1 or 2");
        std::process::exit(2);
    };
    if let Err(e) = run(&cli, publishers, subscribers, qos, messages, filter).await {
        eprintln!("roost-bench: {e}");
        std::process::exit(1);
    }
}

async fn run(
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
            Packet::Disconnect.encode(&mut buf);
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

/// One client connection: the framed read half (which may already hold
/// packets that followed CONNACK) and the write half.
struct Conn {
    read: FramedRead<OwnedReadHalf, MqttCodec>,
    write: OwnedWriteHalf,
}

/// Keep-alive of benchmark clients, in seconds: long enough that no run
/// needs a PINGREQ, and not 0, which rumqttd refuses.
const KEEP_ALIVE: u16 = 600;

/// The CONNECT every benchmark client sends (MQTT 3.1.1, no will, no credentials).
fn connect_packet(client_id: &str, clean_session: bool, keep_alive: u16) -> Packet {
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
async fn stalled_subscriber(addr: SocketAddr) -> std::io::Result<Conn> {
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

async fn connect(addr: SocketAddr, client_id: &str) -> std::io::Result<Conn> {
    connect_with(addr, client_id, true).await
}

async fn connect_with(
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

async fn subscribe(mut conn: Conn, filter: &str, qos: QoS) -> std::io::Result<Conn> {
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
                    Some(Ok(Packet::PubRec(id))) => {
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
            Packet::PubRel(id).encode(&mut buf);
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
            })
            .encode(&mut buf);
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
async fn subscriber(
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
                    (QoS::AtLeastOnce, Some(id)) => Packet::PubAck(id).encode(acks),
                    (QoS::ExactlyOnce, Some(id)) => Packet::PubRec(id).encode(acks),
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
            Packet::PubRel(id) => Packet::PubComp(id).encode(acks),
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

/// Queue then drain: S persistent subscribers subscribe and leave; one
/// publisher sends M messages, each acknowledged; the subscribers return
/// together and receive everything. Prints the queueing rate (acknowledged
/// publishes/s) and the drain rate (deliveries/s), with loss counted.
async fn drain(cli: &Cli, subscribers: usize, qos: QoS, messages: u64) -> std::io::Result<()> {
    let run_id = std::process::id();
    let ids: Vec<String> = (0..subscribers)
        .map(|s| format!("bench-{run_id}-drain-{s}"))
        .collect();
    let topic_name = format!("bench/drain/{run_id}");
    for id in &ids {
        let stream = connect_with(cli.host, id, false).await?;
        let mut conn = subscribe(stream, &topic_name, qos).await?;
        let mut buf = BytesMut::new();
        Packet::Disconnect.encode(&mut buf);
        conn.write.write_all(&buf).await?;
    }
    // Publish with at most `window` unacknowledged.
    let start = Instant::now();
    let Conn {
        read: mut acks,
        mut write,
    } = connect(cli.host, &format!("bench-{run_id}-drain-pub")).await?;
    let topic = TopicName::new(topic_name.clone()).map_err(std::io::Error::other)?;
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut buf = BytesMut::new();
    while acked < messages {
        while sent < messages && sent - acked < cli.window {
            let mut payload = BytesMut::with_capacity(cli.payload);
            payload.put_u32(0);
            payload.put_u64(sent);
            payload.resize(cli.payload, b'x');
            let packet_id = PacketId::new((sent % 65535) as u16 + 1);
            Packet::Publish(Publish {
                dup: false,
                qos,
                retain: false,
                topic: topic.clone(),
                packet_id,
                payload: payload.freeze(),
            })
            .encode(&mut buf);
            sent += 1;
        }
        if !buf.is_empty() {
            write.write_all(&buf).await?;
            buf.clear();
        }
        match tokio::time::timeout(Duration::from_secs(cli.idle_timeout), acks.next()).await {
            Ok(Some(Ok(Packet::PubAck(_)))) | Ok(Some(Ok(Packet::PubComp(_)))) => acked += 1,
            Ok(Some(Ok(Packet::PubRec(id)))) => {
                Packet::PubRel(id).encode(&mut buf);
            }
            Ok(Some(Ok(_))) => {}
            other => {
                return Err(std::io::Error::other(format!(
                    "publisher: no acknowledgement: {other:?}"
                )))
            }
        }
    }
    let queued_in = start.elapsed().as_secs_f64();
    // All subscribers return at once.
    let progress = Arc::new(Progress {
        reached: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
        delivered: AtomicU64::new(0),
        publishers: 1,
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
            1,
            messages,
            progress.clone(),
        )));
    }
    let expected = messages * subscribers as u64;
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
        Packet::Disconnect.encode(&mut buf);
        conn.write.write_all(&buf).await?;
    }
    if cli.header {
        println!("| broker | scenario | QoS | queued msg/s (acknowledged) | drained msg/s | expected | delivered | missing | duplicates |");
        println!("|---|---|---|---|---|---|---|---|---|");
    }
    println!(
        "| {} | drain {}x{} | {} | {:.0} | {:.0} | {} | {} | {} | {} |",
        cli.label,
        subscribers,
        messages,
        qos as u8,
        messages as f64 / queued_in,
        result.unique as f64 / drained_in,
        expected,
        result.unique,
        expected - result.unique.min(expected),
        result.duplicates
    );
    Ok(())
}
