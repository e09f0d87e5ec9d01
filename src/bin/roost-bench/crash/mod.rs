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

mod conn;
mod publisher;
mod subscriber;

use conn::{trace, TRACE, TRACE_START};
use publisher::{PubMode, Publisher};
use roost::protocol::QoS;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use subscriber::{SubMode, Subscriber};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
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
