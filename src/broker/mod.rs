//! The actors, in five rooms, and [`start`], which runs a broker on its own
//! thread and returns its [`BrokerHandle`].
//!
//! - [`net`]: listeners, TLS, WebSocket, the socket writer and read gate;
//! - [`client`]: the connection and session actors, and the registry;
//! - [`route`]: the router, the topic shards, the session inboxes, the
//!   retained store;
//! - [`durable`]: the store actor and ack-after-commit (the promise is
//!   stated at the top of `durable/mod.rs`);
//! - [`ops`]: the supervision tree and restart policy, metrics,
//!   Prometheus, `$SYS`.
//!
//! Beside them: [`live`] (what SIGHUP reloads), [`shared`] (what every
//! connection needs) and [`held_back`] (hand-offs to other tasks held to
//! the end of a handler, so each task is woken once).
//!
//! Flow of a publish: `Connection` decodes it and, for QoS 0/1, hands it to
//! the `Router`, which sends it to the one `TopicShard` that owns its topic
//! (and to the `RetainedStore` if retained). The shard finds the matching
//! sessions and puts a `Delivery` in each one's inbox; each `Session` takes
//! its inbox whole, applies its window and queue, and pushes the packets to
//! its connection's `Outbound`, whose writer task writes them to the
//! socket. QoS 2 publishes pass through the publisher's `Session` first,
//! for duplicate detection.

pub mod client;
pub mod durable;
pub mod held_back;
pub mod live;
pub mod net;
pub mod ops;
pub mod route;
pub mod shared;

use crate::config::Config;
use live::{Live, Reloadable};
use ops::metrics::Metrics;
use ops::restart;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// What a start found in the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Persistent sessions, connected or not when roost last stopped.
    pub sessions: usize,
    /// Messages queued or in flight for them (a message queued for two
    /// sessions counts twice).
    pub queued: u64,
    pub retained: usize,
}

/// A running broker. Dropping the handle stops it.
pub struct BrokerHandle {
    local_addr: SocketAddr,
    local_addrs: Vec<SocketAddr>,
    /// Every listener as the start-up line names it (`ADDR (TLS)`, ...),
    /// metrics included.
    described: Vec<String>,
    restored: Restored,
    metrics_addr: Option<SocketAddr>,
    live: Live,
    metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The exit code, sent when the broker stops on its own (restart storm).
    exited: Option<tokio::sync::oneshot::Receiver<i32>>,
    id: u64,
}

impl BrokerHandle {
    /// The address the first listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The addresses of all listeners, in config order (`[listener]`, then
    /// each of `[[listeners]]`).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Every listener as the start-up line names it: `ADDR`, `ADDR (TLS)`,
    /// `ADDR (WebSocket)`, `ADDR (Prometheus /metrics)`, ...
    pub fn listeners(&self) -> &[String] {
        &self.described
    }

    /// What the start found in the database.
    pub fn restored(&self) -> Restored {
        self.restored
    }

    /// Applies the reloadable part of `config` (SIGHUP): `[limits]`,
    /// `auth.allow_anonymous`, the password file and the ACL file. Existing
    /// connections stay; they see the new settings from their next packet.
    /// If a file cannot be read, nothing changes and the error is returned.
    pub fn reload(&self, config: &Config) -> Result<(), String> {
        let next = Reloadable::load(config, &self.local_addrs)?;
        let auth = next.describe_auth(config);
        let redirect = match &next.redirect {
            None => "no redirection".to_string(),
            Some(r) => format!(
                "new MQTT 5.0 clients are sent to {:?} (CONNACK {})",
                &*r.server_reference,
                if r.permanent {
                    "0x9D, server moved"
                } else {
                    "0x9C, use another server"
                }
            ),
        };
        self.live.store(Arc::new(next));
        log::info!("configuration reloaded: [limits]; [redirect]: {redirect}; auth: {auth}");
        Ok(())
    }

    /// Who may connect and do what, in words (see `Reloadable::describe_auth`).
    pub fn describe_auth(&self, config: &Config) -> String {
        self.live.load().describe_auth(config)
    }

    /// Where `GET /metrics` is served, if `metrics.listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Distinguishes brokers of one process (for fault injection in tests).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Stops every actor and waits for the broker's threads to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Resolves when the broker stopped by itself (a restart storm), with
    /// the exit code the process should end with.
    pub async fn exited(&mut self) -> i32 {
        match self.exited.as_mut() {
            Some(rx) => rx.await.unwrap_or(1),
            None => std::future::pending().await,
        }
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds the listeners, starts the actor system on a new thread and
/// returns once the broker accepts connections.
pub fn start(config: Config) -> std::io::Result<BrokerHandle> {
    // Every listener is bound (and every TLS file read) before anything
    // starts, so a wrong address or certificate fails at once.
    let listeners = net::bind_all(&config)?;
    let metrics_listener = net::bind_metrics(&config)?;
    let local_addrs = listeners
        .iter()
        .map(|l| l.socket.local_addr())
        .collect::<std::io::Result<Vec<_>>>()?;
    let live: Live = Arc::new(arc_swap::ArcSwap::from_pointee(
        Reloadable::load(&config, &local_addrs).map_err(std::io::Error::other)?,
    ));
    let handle_live = live.clone();
    let local_addr = local_addrs[0];
    let metrics_addr = match &metrics_listener {
        Some(s) => Some(s.local_addr()?),
        None => None,
    };
    let mut described: Vec<String> = listeners.iter().map(|l| l.label.clone()).collect();
    if let Some(addr) = metrics_addr {
        described.push(format!("{addr} (Prometheus /metrics)"));
    }
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<Restored>>();
    let (exited_tx, exited_rx) = tokio::sync::oneshot::channel::<i32>();
    let m = metrics.clone();
    let shutdown_timeout = std::time::Duration::from_secs(config.supervision.shutdown_timeout_secs);
    restart::install_panic_hook();
    static NEXT_BROKER_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_BROKER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let thread = std::thread::Builder::new()
        .name("roost-main".into())
        .spawn(move || {
            restart::set_thread_broker(id);
            let system = actix::System::new();
            let started = system.block_on(async move {
                let store = &config.store;
                // Held until the broker's thread ends: one roost per database.
                let lock = crate::store::lock(&store.db).map_err(std::io::Error::other)?;
                let (conn, snapshot) =
                    crate::store::open(&store.db, store.synchronous, store.reset_damaged)
                        .await
                        .map_err(std::io::Error::other)?;
                let restored = Restored {
                    sessions: snapshot.sessions.len(),
                    queued: snapshot.queues.total(),
                    retained: snapshot.retained.len(),
                };
                let listeners = listeners
                    .into_iter()
                    .map(net::listener::Bound::from_bound)
                    .collect::<std::io::Result<Vec<_>>>()?;
                let tree = ops::tree::start(config, listeners, m, conn, snapshot, id, live).await;
                if let Some(socket) = metrics_listener {
                    let socket = tokio::net::TcpListener::from_std(socket)?;
                    actix_rt::spawn(ops::prometheus::serve(socket, tree.shared.clone()));
                }
                let store = tree.store.clone();
                let registry = tree.shared.registry.clone();
                actix_rt::spawn(async move {
                    let _ = stop_rx.await;
                    // Sessions write what they keep only in memory, then
                    // everything is committed, then roost stops.
                    let saved = registry.send(client::messages::SaveInflight);
                    if tokio::time::timeout(shutdown_timeout, saved).await.is_err() {
                        log::warn!(
                            "sessions did not save their state within {} s (supervision.shutdown_timeout_secs)",
                            shutdown_timeout.as_secs()
                        );
                    }
                    match tokio::time::timeout(shutdown_timeout, store.send(durable::Flush)).await {
                        Ok(_) => log::info!("database flushed"),
                        Err(_) => {
                            log::warn!(
                                "database flush did not finish within {} s (supervision.shutdown_timeout_secs)",
                                shutdown_timeout.as_secs()
                            )
                        }
                    }
                    actix::System::current().stop();
                });
                Ok::<_, std::io::Error>((tree, lock, restored))
            });
            let (tree, _lock) = match started {
                Ok((tree, lock, restored)) => {
                    let _ = ready_tx.send(Ok(restored));
                    (tree, lock)
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let code = match system.run_with_code() {
                Ok(code) => code,
                Err(e) => {
                    log::error!("actor system failed: {e}");
                    1
                }
            };
            let own = [tree.store_arbiter, tree.retained_arbiter];
            for worker in tree.workers.into_iter().chain(own) {
                worker.stop();
                let _ = worker.join();
            }
            let _ = exited_tx.send(code);
        })?;
    let restored = match ready_rx.recv() {
        Ok(Ok(restored)) => restored,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(std::io::Error::other("broker thread ended during start")),
    };
    Ok(BrokerHandle {
        local_addr,
        local_addrs,
        described,
        restored,
        metrics_addr,
        live: handle_live,
        metrics,
        stop: Some(stop_tx),
        thread: Some(thread),
        exited: Some(exited_rx),
        id,
    })
}
