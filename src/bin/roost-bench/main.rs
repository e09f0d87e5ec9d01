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

mod backlog;
mod churn;
mod client;
mod compare;
mod connections;
mod crash;
mod drain;
mod latency;
mod offline;
mod sink;
mod throughput;

use clap::{Parser, Subcommand};
use client::{connect, connect_packet, stalled_subscriber, KEEP_ALIVE};
use roost::protocol::QoS;
use std::net::SocketAddr;

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
    /// MQTT version the clients speak: 3.1.1 or 5 (5.0).
    #[arg(long, default_value = "3.1.1", value_parser = ["3.1.1", "5", "5.0"])]
    protocol: String,
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
    /// Resident memory per offline persistent session (each subscribed to
    /// a topic of its own).
    Offline(offline::OfflineArgs),
    /// A restart with a large backlog queued for persistent sessions: time
    /// to the first CONNACK, memory after start, and every message
    /// delivered afterwards.
    Backlog(backlog::BacklogArgs),
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
        /// Publishers, all on the subscribers' topic, each with at most
        /// `--window` messages unacknowledged.
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        #[arg(long, default_value_t = 1)]
        qos: u8,
        /// Messages published (in all), each queued for every subscriber.
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

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let version = match cli.protocol.as_str() {
        "5" | "5.0" => roost::protocol::ProtocolVersion::V5,
        _ => roost::protocol::ProtocolVersion::V311,
    };
    let _ = client::PROTOCOL.set(version);
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
        Scenario::Backlog(args) => std::process::exit(backlog::run(args).await),
        Scenario::Offline(args) => {
            if let Err(e) = offline::run(cli.host, &cli.label, args, cli.header).await {
                eprintln!("roost-bench: {e}");
                std::process::exit(1);
            }
            return;
        }
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
            publishers,
            qos,
            messages,
        } => {
            let Some(qos) = QoS::from_u8(*qos).filter(|q| *q != QoS::AtMostOnce) else {
                eprintln!("--qos must be 1 or 2 for drain");
                std::process::exit(2);
            };
            if let Err(e) = drain::drain(&cli, *subscribers, *publishers, qos, *messages).await {
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
    if let Err(e) = throughput::run(&cli, publishers, subscribers, qos, messages, filter).await {
        eprintln!("roost-bench: {e}");
        std::process::exit(1);
    }
}
