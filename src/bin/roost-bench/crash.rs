//! The kill -9 durability check: `roost-bench crash --broker-cmd CMD`.
//!
//! Works against any MQTT 3.1.1 broker that keeps persistent sessions on
//! disk. Every round starts the broker command (through `sh -c 'exec CMD'`,
//! `{port}` replaced by a free port and `{dir}` by the state directory, the
//! same in every round), reconnects a fixed set of clean-session-0 clients,
//! runs traffic for a random 50–500 ms and SIGKILLs the broker:
//!
//! - `crash-sub-q2`, `crash-sub-q1`: online subscribers of `crash/#` at QoS 2
//!   and QoS 1, connected in every round;
//! - `crash-sub-offline`: subscribes (QoS 2) in round 1 and then connects only
//!   every `--offline-every` rounds, so messages queue for it across kills;
//! - `crash-pub-q1`, `crash-pub-q2`: publish numbered messages (the payload is
//!   the sequence number in decimal) on `crash/q1` at QoS 1 and `crash/q2` at
//!   QoS 2.
//!
//! The clients implement their side of the protocol as a persistent-session
//! client must, keeping their state across broker restarts: a publisher
//! resends an unacknowledged PUBLISH with DUP=1 and the same packet id, or the
//! PUBREL of a QoS 2 message whose PUBREC it had; a subscriber delivers a QoS
//! 2 message on the first PUBLISH of a packet id and keeps the id until the
//! PUBREL, so a resent PUBLISH is not delivered again.
//!
//! A message is *acknowledged* when its PUBACK (QoS 1) or PUBREC (QoS 2)
//! arrives: from then on the broker owns it. After the last round the broker
//! is started once more, the publishers finish their handshakes and stop, and
//! every subscriber drains until 2 s pass without a packet. The summary
//! counts, per subscriber, acknowledged messages never delivered (lost) and
//! QoS 2 messages delivered twice (duplicates); the last line is
//! `lost=N duplicates=M`. Exit code 0 only when both are 0 and no persistent
//! session was lost; 1 when they are not; 2 when the run is not valid (the
//! broker did not start, a client could not connect or saw an unexpected
//! packet, nothing was acknowledged).
//!
//! `--trace` writes every packet of every client to `{dir}/trace.log`; the
//! broker's output goes to `{dir}/broker.log`. Both are kept after a run
//! with findings.
//!
//! Examples:
//!
//! ```text
//! roost-bench crash --broker-cmd 'target/release/roost --listen 127.0.0.1:{port} --db {dir}/roost.db'
//! roost-bench crash --broker-cmd "sh -c 'printf \"listener {port} 127.0.0.1\nallow_anonymous true\n\
//!     persistence true\npersistence_location {dir}/\n\" > {dir}/m.conf && exec mosquitto -c {dir}/m.conf'"
//! ```

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use roost::protocol::codec::MqttCodec;
use roost::protocol::{
    Packet, PacketId, Publish, QoS, Subscribe, SubscribeReturnCode, SubscribeTopic, TopicFilter,
    TopicName,
};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Clone)]
pub struct CrashArgs {
    /// Command that starts the broker, run as `sh -c 'exec CMD'` (so SIGKILL
    /// reaches the broker itself). `{port}` is replaced by a free port (a new
    /// one every start), `{dir}` by the state directory (the same every start).
    #[arg(long, value_name = "CMD")]
    broker_cmd: String,
    /// Kill -9 / restart cycles.
    #[arg(long, default_value_t = 20)]
    rounds: u32,
    /// Seed of the random kill moments (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// State directory for `{dir}` (default: a new temporary directory,
    /// removed after a run without findings). Should start empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Messages per second of each publisher. More means more messages in
    /// flight at each kill, and longer offline queues (Mosquitto's
    /// max_queued_messages is 1000 by default).
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// The offline subscriber connects (and drains) every this many rounds.
    #[arg(long, default_value_t = 3)]
    offline_every: u32,
    /// Shortest and longest traffic before the kill, in milliseconds.
    #[arg(long, default_value_t = 50)]
    min_kill_ms: u64,
    #[arg(long, default_value_t = 500)]
    max_kill_ms: u64,
    /// Write every packet of every client to `{dir}/trace.log`.
    #[arg(long)]
    trace: bool,
}

const TOPICS: [&str; 2] = ["crash/q1", "crash/q2"];
const FILTER: &str = "crash/#";
/// Unfinished QoS 1/2 messages a publisher keeps at most.
const WINDOW: usize = 32;
/// Publishers cycle their packet ids through 1..=ID_SPACE, so ids are reused
/// (after their handshake completed) many times in a run.
const ID_SPACE: u16 = 256;
/// A subscriber is drained when this long passes without a packet.
const IDLE: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// splitmix64: the kill moments, reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi.saturating_sub(lo) + 1)
    }
}

/// One MQTT connection: decoded packets in, encoded packets out.
struct Conn {
    read: FramedRead<OwnedReadHalf, MqttCodec>,
    write: OwnedWriteHalf,
    buf: BytesMut,
    client_id: String,
}

/// `--trace`: every packet of every client, in order, written to
/// `{dir}/trace.log` at the end.
static TRACE: std::sync::Mutex<Option<Vec<String>>> = std::sync::Mutex::new(None);
static TRACE_START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn trace(client_id: &str, what: impl FnOnce() -> String) {
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
    async fn open(addr: SocketAddr, client_id: &str) -> Result<(Conn, bool), String> {
        let attempt = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let (read, write) = stream.into_split();
            let mut conn = Conn {
                read: FramedRead::new(read, MqttCodec::default()),
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
                Some(Ok(Packet::ConnAck(ack))) if ack.code as u8 == 0 => {
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

    async fn send(&mut self, packet: Packet) -> std::io::Result<()> {
        trace(&self.client_id, || format!("-> {}", brief(&packet)));
        self.buf.clear();
        packet.encode(&mut self.buf);
        self.write.write_all(&self.buf).await
    }

    /// The next packet; `None` when the connection ended or broke.
    async fn next(&mut self) -> Option<Packet> {
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
fn brief(packet: &Packet) -> String {
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

fn pid(v: u16) -> PacketId {
    PacketId::new(v).expect("packet ids here are never 0")
}

/// A message a publisher sent and has not finished.
struct Outgoing {
    id: PacketId,
    seq: u64,
    /// QoS 2: PUBREC received (the message is acknowledged), PUBREL sent.
    released: bool,
}

/// A persistent-session publisher's state, kept across broker restarts.
struct Publisher {
    client_id: String,
    topic: TopicName,
    qos: QoS,
    next_seq: u64,
    last_id: u16,
    /// Sent and unfinished, in the order first sent.
    inflight: VecDeque<Outgoing>,
    /// Sequence numbers whose PUBACK / PUBREC arrived.
    acked: BTreeSet<u64>,
    connected_before: bool,
    sessions_lost: u32,
    errors: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum PubMode {
    /// Resend what is unfinished, then publish a new message every tick.
    Traffic(Duration),
    /// Resend what is unfinished, publish nothing new; DISCONNECT when done.
    Finish,
}

impl Publisher {
    fn new(client_id: &str, topic: &str, qos: QoS) -> Publisher {
        Publisher {
            client_id: client_id.to_string(),
            topic: TopicName::new(topic.to_string()).expect("valid topic"),
            qos,
            next_seq: 0,
            last_id: 0,
            inflight: VecDeque::new(),
            acked: BTreeSet::new(),
            connected_before: false,
            sessions_lost: 0,
            errors: Vec::new(),
        }
    }

    fn next_id(&mut self) -> PacketId {
        loop {
            self.last_id = self.last_id % ID_SPACE + 1;
            let id = pid(self.last_id);
            if !self.inflight.iter().any(|o| o.id == id) {
                return id;
            }
        }
    }

    fn publish_packet(&self, o: &Outgoing, dup: bool) -> Packet {
        Packet::Publish(Publish {
            dup,
            qos: self.qos,
            retain: false,
            topic: self.topic.clone(),
            packet_id: Some(o.id),
            payload: Bytes::from(o.seq.to_string()),
        })
    }

    /// One connection, until the broker goes away, `stop`, or (Finish) all
    /// handshakes are complete. `ready` fires after the CONNACK.
    async fn run(
        mut self,
        addr: SocketAddr,
        mode: PubMode,
        ready: oneshot::Sender<()>,
        stop: CancellationToken,
    ) -> Self {
        let (mut conn, present) = match Conn::open(addr, &self.client_id).await {
            Ok(c) => c,
            Err(e) => {
                self.errors.push(e);
                return self;
            }
        };
        if self.connected_before && !present {
            self.sessions_lost += 1;
        }
        self.connected_before = true;
        let _ = ready.send(());
        // [MQTT-4.4.0-1]: unacknowledged PUBLISH and PUBREL packets again,
        // with their original packet ids, in the original order.
        for i in 0..self.inflight.len() {
            let o = &self.inflight[i];
            let packet = if o.released {
                Packet::PubRel(o.id)
            } else {
                self.publish_packet(o, true)
            };
            if conn.send(packet).await.is_err() {
                return self;
            }
        }
        let mut tick = match mode {
            PubMode::Traffic(every) => {
                let mut t = tokio::time::interval(every);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Some(t)
            }
            PubMode::Finish => None,
        };
        loop {
            if mode == PubMode::Finish && self.inflight.is_empty() {
                let _ = conn.send(Packet::Disconnect).await;
                return self;
            }
            let room = self.inflight.len() < WINDOW;
            tokio::select! {
                _ = stop.cancelled() => return self,
                _ = async { tick.as_mut().expect("ticking").tick().await }, if tick.is_some() && room => {
                    let o = Outgoing { id: self.next_id(), seq: self.next_seq, released: false };
                    self.next_seq += 1;
                    let packet = self.publish_packet(&o, false);
                    // Sent as far as the client knows, whatever happens to the write.
                    self.inflight.push_back(o);
                    if conn.send(packet).await.is_err() {
                        return self;
                    }
                }
                packet = conn.next() => {
                    let Some(packet) = packet else { return self };
                    if let Some(reply) = self.on_packet(packet) {
                        if conn.send(reply).await.is_err() {
                            return self;
                        }
                    }
                }
            }
        }
    }

    fn on_packet(&mut self, packet: Packet) -> Option<Packet> {
        let position =
            |inflight: &VecDeque<Outgoing>, id: PacketId| inflight.iter().position(|o| o.id == id);
        match packet {
            Packet::PubAck(id) if self.qos == QoS::AtLeastOnce => {
                if let Some(i) = position(&self.inflight, id) {
                    let o = self.inflight.remove(i).expect("present");
                    self.acked.insert(o.seq);
                }
                None
            }
            Packet::PubRec(id) if self.qos == QoS::ExactlyOnce => {
                if let Some(i) = position(&self.inflight, id) {
                    let o = &mut self.inflight[i];
                    if !o.released {
                        o.released = true;
                        self.acked.insert(o.seq);
                    }
                }
                // Also for an id we do not know: releasing it is harmless.
                Some(Packet::PubRel(id))
            }
            Packet::PubComp(id) if self.qos == QoS::ExactlyOnce => {
                if let Some(i) = position(&self.inflight, id) {
                    if self.inflight[i].released {
                        self.inflight.remove(i);
                    }
                }
                None
            }
            other => {
                self.errors
                    .push(format!("{}: unexpected {other:?}", self.client_id));
                None
            }
        }
    }
}

/// A persistent-session subscriber's state, kept across broker restarts.
struct Subscriber {
    client_id: String,
    qos: QoS,
    subscribed: bool,
    /// QoS 2 packet ids whose PUBLISH was delivered and whose PUBREL has not come.
    awaiting_rel: HashSet<u16>,
    /// Deliveries per topic (index in TOPICS) and sequence number.
    delivered: [HashMap<u64, u32>; 2],
    qos2_duplicates: u64,
    qos1_duplicates: u64,
    duplicate_examples: Vec<String>,
    connected_before: bool,
    sessions_lost: u32,
    errors: Vec<String>,
}

#[derive(Clone)]
enum SubMode {
    /// Subscribe if not yet subscribed, then DISCONNECT.
    SubscribeOnly,
    /// Receive until the broker goes away or `stop`.
    Online,
    /// Receive until `publishers_done` and nothing came for IDLE; then DISCONNECT.
    Drain(CancellationToken),
}

impl Subscriber {
    fn new(client_id: &str, qos: QoS) -> Subscriber {
        Subscriber {
            client_id: client_id.to_string(),
            qos,
            subscribed: false,
            awaiting_rel: HashSet::new(),
            delivered: [HashMap::new(), HashMap::new()],
            qos2_duplicates: 0,
            qos1_duplicates: 0,
            duplicate_examples: Vec::new(),
            connected_before: false,
            sessions_lost: 0,
            errors: Vec::new(),
        }
    }

    /// `ready` fires once subscribed (immediately after the CONNACK when the
    /// session already holds the subscription).
    async fn run(
        mut self,
        addr: SocketAddr,
        mode: SubMode,
        ready: oneshot::Sender<()>,
        stop: CancellationToken,
    ) -> Self {
        let (mut conn, present) = match Conn::open(addr, &self.client_id).await {
            Ok(c) => c,
            Err(e) => {
                self.errors.push(e);
                return self;
            }
        };
        if self.connected_before && !present {
            self.sessions_lost += 1;
            // The session (and its subscription) is gone: subscribe again to go on measuring.
            self.subscribed = false;
            self.awaiting_rel.clear();
        }
        self.connected_before = true;
        if !self.subscribed {
            let subscribe = Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                topics: vec![SubscribeTopic {
                    filter: TopicFilter::new(FILTER.to_string()).expect("valid"),
                    qos: self.qos,
                }],
            });
            if conn.send(subscribe).await.is_err() {
                return self;
            }
            loop {
                let packet = tokio::select! {
                    _ = stop.cancelled() => return self,
                    p = conn.next() => p,
                };
                match packet {
                    None => return self,
                    Some(Packet::SubAck(ack)) => {
                        if ack.codes != [SubscribeReturnCode::Granted(self.qos)] {
                            self.errors
                                .push(format!("{}: SUBACK {:?}", self.client_id, ack.codes));
                        }
                        self.subscribed = true;
                        break;
                    }
                    Some(other) => {
                        if let Some(reply) = self.on_packet(other) {
                            if conn.send(reply).await.is_err() {
                                return self;
                            }
                        }
                    }
                }
            }
        }
        let _ = ready.send(());
        let mut idle_check = tokio::time::interval(Duration::from_millis(100));
        let mut last_packet = Instant::now();
        loop {
            match &mode {
                SubMode::SubscribeOnly => {
                    let _ = conn.send(Packet::Disconnect).await;
                    // Until the broker closes: what it sends meanwhile stays unacknowledged.
                    let _ = tokio::time::timeout(CONNECT_TIMEOUT, async {
                        while conn.next().await.is_some() {}
                    })
                    .await;
                    return self;
                }
                SubMode::Drain(publishers_done)
                    if publishers_done.is_cancelled() && last_packet.elapsed() >= IDLE =>
                {
                    let _ = conn.send(Packet::Disconnect).await;
                    return self;
                }
                _ => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return self,
                _ = idle_check.tick() => {}
                packet = conn.next() => {
                    let Some(packet) = packet else { return self };
                    last_packet = Instant::now();
                    if let Some(reply) = self.on_packet(packet) {
                        if conn.send(reply).await.is_err() {
                            return self;
                        }
                    }
                }
            }
        }
    }

    fn on_packet(&mut self, packet: Packet) -> Option<Packet> {
        match packet {
            Packet::Publish(p) => {
                let key = TOPICS.iter().position(|t| *t == p.topic.as_str()).zip(
                    std::str::from_utf8(&p.payload)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok()),
                );
                let (reply, deliver) = match (p.qos, p.packet_id) {
                    (QoS::AtMostOnce, _) => (None, true),
                    (QoS::AtLeastOnce, Some(id)) => (Some(Packet::PubAck(id)), true),
                    // Delivered on the first PUBLISH of a packet id; the id is
                    // kept until PUBREL, so a resent PUBLISH is not delivered again.
                    (QoS::ExactlyOnce, Some(id)) => {
                        (Some(Packet::PubRec(id)), self.awaiting_rel.insert(id.get()))
                    }
                    _ => (None, false),
                };
                if deliver {
                    match key {
                        Some((topic, seq)) => {
                            let n = self.delivered[topic].entry(seq).or_insert(0);
                            *n += 1;
                            if *n > 1 {
                                if p.qos == QoS::ExactlyOnce && self.duplicate_examples.len() < 10 {
                                    self.duplicate_examples.push(format!(
                                        "{} {seq} (delivery {n}: id {} dup {})",
                                        TOPICS[topic],
                                        p.packet_id.map_or(0, |i| i.get()),
                                        p.dup as u8
                                    ));
                                }
                                match p.qos {
                                    QoS::ExactlyOnce => self.qos2_duplicates += 1,
                                    _ => self.qos1_duplicates += 1,
                                }
                            }
                        }
                        None => self
                            .errors
                            .push(format!("{}: unexpected message {p:?}", self.client_id)),
                    }
                }
                reply
            }
            Packet::PubRel(id) => {
                self.awaiting_rel.remove(&id.get());
                Some(Packet::PubComp(id))
            }
            other => {
                self.errors
                    .push(format!("{}: unexpected {other:?}", self.client_id));
                None
            }
        }
    }
}

/// The broker process of one round.
pub(crate) struct Broker {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts the broker command and waits until its port accepts connections.
pub(crate) async fn start_broker(template: &str, dir: &Path, log: &Path) -> Result<Broker, String> {
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let command = template
        .replace("{port}", &port.to_string())
        .replace("{dir}", &dir.display().to_string());
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let stdout = log_file.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot run `{command}`: {e}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "`{command}` exited with {status} before accepting connections"
            ));
        }
        if let Ok(Ok(_probe)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            return Ok(Broker { child, addr });
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "`{command}` did not accept connections on {addr} within {START_TIMEOUT:?}"
            ));
        }
        // Polling an external process's port: there is no event to await.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Broker {
    /// SIGKILL, and reap it.
    pub(crate) fn kill(self) {
        drop(self)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a client task, giving it `grace` to end on its own before `stop`.
async fn join<T>(
    handle: &mut JoinHandle<T>,
    grace: Duration,
    stop: &CancellationToken,
) -> Result<T, String> {
    if let Ok(r) = tokio::time::timeout(grace, &mut *handle).await {
        return r.map_err(|e| format!("client task failed: {e}"));
    }
    stop.cancel();
    handle.await.map_err(|e| format!("client task failed: {e}"))
}

/// All clients, moved into their tasks for a round and back out after it.
struct Clients {
    subs: Vec<Subscriber>,
    pubs: Vec<Publisher>,
}

async fn wait_ready(ready: Vec<oneshot::Receiver<()>>) {
    // A client that failed to connect drops its sender: that counts as ready
    // (the failure is in its errors).
    let _ = tokio::time::timeout(CONNECT_TIMEOUT * 2, futures::future::join_all(ready)).await;
}

pub async fn run(args: &CrashArgs) -> i32 {
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut rng = Rng(seed);
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            (
                std::env::temp_dir().join(format!("roost-crash-{}-{nanos}", std::process::id())),
                true,
            )
        }
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("crash: cannot create {}: {e}", dir.display());
        return 2;
    }
    let dir = dir.canonicalize().unwrap_or(dir);
    let log = dir.join("broker.log");
    if args.trace {
        *TRACE.lock().expect("not poisoned") = Some(Vec::new());
        TRACE_START.get_or_init(Instant::now);
    }
    let rate = args.rate.max(1);
    let tick = Duration::from_secs_f64(1.0 / f64::from(rate));
    eprintln!(
        "crash: seed={seed} rounds={} rate={rate}/s per publisher; state in {} (broker output in {})",
        args.rounds,
        dir.display(),
        log.display()
    );
    let mut clients = Clients {
        subs: vec![
            Subscriber::new("crash-sub-q2", QoS::ExactlyOnce),
            Subscriber::new("crash-sub-q1", QoS::AtLeastOnce),
            Subscriber::new("crash-sub-offline", QoS::ExactlyOnce),
        ],
        pubs: vec![
            Publisher::new("crash-pub-q1", TOPICS[0], QoS::AtLeastOnce),
            Publisher::new("crash-pub-q2", TOPICS[1], QoS::ExactlyOnce),
        ],
    };
    const OFFLINE: usize = 2;
    let started = Instant::now();

    for round in 1..=args.rounds {
        trace("harness", || format!("round {round}: start"));
        let broker = match start_broker(&args.broker_cmd, &dir, &log).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("crash: round {round}: {e}; see {}", log.display());
                return 2;
            }
        };
        let stop = CancellationToken::new();
        let mut slots: Vec<Option<Subscriber>> = std::mem::take(&mut clients.subs)
            .into_iter()
            .map(Some)
            .collect();
        // The offline subscriber subscribes in round 1, and is gone before
        // any traffic; later it connects only every few rounds.
        if round == 1 {
            let (tx, _rx) = oneshot::channel();
            let s = slots[OFFLINE].take().expect("present");
            let own_stop = CancellationToken::new();
            let mut handle =
                tokio::spawn(s.run(broker.addr, SubMode::SubscribeOnly, tx, own_stop.clone()));
            match join(&mut handle, CONNECT_TIMEOUT * 2, &own_stop).await {
                Ok(s) => slots[OFFLINE] = Some(s),
                Err(e) => {
                    eprintln!("crash: {e}");
                    return 2;
                }
            }
        }
        let offline_connects = round != 1 && round % args.offline_every.max(1) == 0;
        let mut ready = Vec::new();
        let mut sub_tasks = Vec::new();
        for (i, slot) in slots.iter_mut().enumerate() {
            if i == OFFLINE && !offline_connects {
                continue;
            }
            let s = slot.take().expect("present");
            let (tx, rx) = oneshot::channel();
            ready.push(rx);
            sub_tasks.push((
                i,
                tokio::spawn(s.run(broker.addr, SubMode::Online, tx, stop.clone())),
            ));
        }
        // Subscribers first (in round 1: subscribed), so that every message
        // published has its subscribers.
        wait_ready(std::mem::take(&mut ready)).await;
        let mut pub_tasks = Vec::new();
        for p in std::mem::take(&mut clients.pubs) {
            let (tx, rx) = oneshot::channel();
            ready.push(rx);
            pub_tasks.push(tokio::spawn(p.run(
                broker.addr,
                PubMode::Traffic(tick),
                tx,
                stop.clone(),
            )));
        }
        wait_ready(ready).await;
        let kill_after = rng.between(args.min_kill_ms, args.max_kill_ms);
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        trace("harness", || format!("round {round}: kill -9"));
        broker.kill();
        // The clients see their connections end; the stop token is for one that does not.
        for (i, mut h) in sub_tasks {
            match join(&mut h, Duration::from_secs(3), &stop).await {
                Ok(s) => slots[i] = Some(s),
                Err(e) => {
                    eprintln!("crash: {e}");
                    return 2;
                }
            }
        }
        for mut h in pub_tasks {
            match join(&mut h, Duration::from_secs(3), &stop).await {
                Ok(p) => clients.pubs.push(p),
                Err(e) => {
                    eprintln!("crash: {e}");
                    return 2;
                }
            }
        }
        clients.subs = slots
            .into_iter()
            .map(|s| s.expect("every subscriber is back"))
            .collect();
        eprintln!(
            "round {round:>3}: killed after {kill_after:>3} ms; acknowledged so far: {} on {}, {} on {}",
            clients.pubs[0].acked.len(),
            TOPICS[0],
            clients.pubs[1].acked.len(),
            TOPICS[1]
        );
    }

    // The last start: finish every handshake, publish nothing new, drain.
    trace("harness", || "final start".to_string());
    let broker = match start_broker(&args.broker_cmd, &dir, &log).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("crash: final start: {e}; see {}", log.display());
            return 2;
        }
    };
    let stop = CancellationToken::new();
    let publishers_done = CancellationToken::new();
    let mut sub_tasks = Vec::new();
    for s in std::mem::take(&mut clients.subs) {
        let (tx, _rx) = oneshot::channel();
        sub_tasks.push(tokio::spawn(s.run(
            broker.addr,
            SubMode::Drain(publishers_done.clone()),
            tx,
            stop.clone(),
        )));
    }
    let mut pub_tasks = Vec::new();
    for p in std::mem::take(&mut clients.pubs) {
        let (tx, _rx) = oneshot::channel();
        pub_tasks.push(tokio::spawn(p.run(
            broker.addr,
            PubMode::Finish,
            tx,
            stop.clone(),
        )));
    }
    for h in &mut pub_tasks {
        match join(h, Duration::from_secs(20), &stop).await {
            Ok(p) => clients.pubs.push(p),
            Err(e) => {
                eprintln!("crash: {e}");
                return 2;
            }
        }
    }
    publishers_done.cancel();
    for h in &mut sub_tasks {
        match join(h, Duration::from_secs(30), &stop).await {
            Ok(s) => clients.subs.push(s),
            Err(e) => {
                eprintln!("crash: {e}");
                return 2;
            }
        }
    }
    broker.kill();

    // The summary.
    let mut lost_total = 0u64;
    let mut duplicates_total = 0u64;
    let mut sessions_lost = 0u32;
    let mut errors = Vec::new();
    for p in &clients.pubs {
        let unfinished = p.inflight.len();
        println!(
            "publisher {} ({}, QoS {}): published={} acknowledged={} unfinished={} sessions_lost={}",
            p.client_id,
            p.topic.as_str(),
            p.qos as u8,
            p.next_seq,
            p.acked.len(),
            unfinished,
            p.sessions_lost
        );
        sessions_lost += p.sessions_lost;
        errors.extend(p.errors.iter().cloned());
    }
    for s in &clients.subs {
        let mut lost = 0u64;
        let mut delivered = 0u64;
        let mut never_acknowledged = 0u64;
        let mut lost_examples = Vec::new();
        for (t, p) in clients.pubs.iter().enumerate() {
            for seq in p
                .acked
                .iter()
                .filter(|seq| !s.delivered[t].contains_key(seq))
            {
                lost += 1;
                if lost_examples.len() < 10 {
                    lost_examples.push(format!("{} {seq}", TOPICS[t]));
                }
            }
            delivered += s.delivered[t].len() as u64;
            never_acknowledged += s.delivered[t]
                .keys()
                .filter(|seq| !p.acked.contains(seq))
                .count() as u64;
        }
        println!(
            "subscriber {} (QoS {}): delivered={delivered} lost={lost} qos2_delivered_twice={} qos1_duplicates={} \
             delivered_but_never_acknowledged={never_acknowledged} pubrel_pending={} sessions_lost={}",
            s.client_id,
            s.qos as u8,
            s.qos2_duplicates,
            s.qos1_duplicates,
            s.awaiting_rel.len(),
            s.sessions_lost
        );
        if !lost_examples.is_empty() {
            println!("  lost by {}: {}", s.client_id, lost_examples.join(", "));
        }
        if s.qos2_duplicates > 0 {
            println!(
                "  QoS 2 delivered again to {}: {}",
                s.client_id,
                s.duplicate_examples.join(", ")
            );
        }
        lost_total += lost;
        duplicates_total += s.qos2_duplicates;
        sessions_lost += s.sessions_lost;
        errors.extend(s.errors.iter().cloned());
    }
    for e in errors.iter().take(20) {
        println!("client error: {e}");
    }
    if errors.len() > 20 {
        println!("client errors: {} more", errors.len() - 20);
    }
    println!(
        "rounds={} seconds={:.1} sessions_lost={sessions_lost} seed={seed}",
        args.rounds,
        started.elapsed().as_secs_f64()
    );
    println!("lost={lost_total} duplicates={duplicates_total}");
    if let Some(lines) = TRACE.lock().expect("not poisoned").take() {
        let path = dir.join("trace.log");
        match std::fs::write(&path, lines.join("\n") + "\n") {
            Ok(()) => eprintln!("crash: trace in {}", path.display()),
            Err(e) => eprintln!("crash: {}: {e}", path.display()),
        }
    }
    let acknowledged: usize = clients.pubs.iter().map(|p| p.acked.len()).sum();
    let valid = errors.is_empty() && acknowledged > 0;
    if !valid {
        eprintln!(
            "crash: not a valid run ({} client errors, {acknowledged} messages acknowledged); see {}",
            errors.len(),
            log.display()
        );
    }
    let clean = valid && lost_total == 0 && duplicates_total == 0 && sessions_lost == 0;
    if clean && temporary {
        let _ = std::fs::remove_dir_all(&dir);
    } else if !clean {
        eprintln!("crash: state and broker output kept in {}", dir.display());
    }
    match (valid, clean) {
        (false, _) => 2,
        (true, true) => 0,
        (true, false) => 1,
    }
}
