//! The actors, and [`start`], which runs a broker on its own thread.
//!
//! Flow of a publish: `Connection` decodes it and, for QoS 0/1, hands it to
//! the `Router`, which sends it to the one `TopicShard` that owns its topic
//! (and to the `RetainedStore` if retained). The shard finds the matching
//! sessions and puts a `Deliver` in each one's inbox (`deliveries`); each
//! `Session` takes its inbox whole, applies its window and queue, and
//! pushes the packets to its connection's `Outbound`, whose writer
//! task writes it to the socket. QoS 2 publishes pass through the
//! publisher's `Session` first, for duplicate detection.

pub mod backlog;
pub mod connection;
pub mod deliveries;
pub mod listener;
pub mod messages;
pub mod metrics;
pub mod outbound;
pub mod prometheus;
pub mod registry;
pub mod retained;
pub mod router;
pub mod session;
pub mod store;
pub mod supervision;
pub mod supervisor;
pub mod sys;
pub mod tls;
pub mod topic_shard;
pub mod websocket;

use crate::config::Config;
use actix::Addr;
use metrics::Metrics;
use registry::SessionRegistry;
use router::Router;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// What every connection needs, shared read-only.
pub struct Shared {
    pub config: Config,
    pub router: Router,
    pub registry: Addr<SessionRegistry>,
    pub metrics: Arc<Metrics>,
    pub next_connection_id: AtomicU64,
    /// What SIGHUP reloads: read it through `live.load()`.
    pub live: Live,
    /// Connections accepted by each listener, labelled by its address.
    pub listener_accepted: Vec<(String, std::sync::atomic::AtomicU64)>,
    /// Connections open now, for `limits.max_connections`.
    pub open_connections: std::sync::atomic::AtomicUsize,
}

/// The settings SIGHUP reloads without dropping a connection: the
/// `[limits]` section, `auth.allow_anonymous`, and the password and ACL
/// files. Readers take a snapshot with `load()`; a reload swaps in a new
/// one whole.
pub struct Reloadable {
    pub limits: crate::config::LimitsConfig,
    pub allow_anonymous: bool,
    pub auth: AuthFiles,
}

pub type Live = Arc<arc_swap::ArcSwap<Reloadable>>;

impl Reloadable {
    /// Reads the files `config` names; an unreadable file is an error.
    pub fn load(config: &Config) -> Result<Reloadable, String> {
        let passwords = match config.auth.password_file() {
            Some(path) => {
                let file = crate::auth::PasswordFile::load(path).map_err(|e| e.to_string())?;
                log::info!("{} users in password file {}", file.len(), path.display());
                Some(Arc::new(file))
            }
            None => None,
        };
        let acl = match config.auth.acl_file() {
            Some(path) => {
                let file = crate::acl::AclFile::load(path).map_err(|e| e.to_string())?;
                log::info!("ACL file {} loaded", path.display());
                Some(Arc::new(file))
            }
            None => None,
        };
        Ok(Reloadable {
            limits: config.limits.clone(),
            allow_anonymous: config.auth.allow_anonymous,
            auth: AuthFiles { passwords, acl },
        })
    }
}

/// The files of the `[auth]` section.
#[derive(Clone, Default)]
pub struct AuthFiles {
    /// `auth.password_file`, if one is set.
    pub passwords: Option<Arc<crate::auth::PasswordFile>>,
    /// `auth.acl_file`, if one is set: what each client may read and write.
    pub acl: Option<Arc<crate::acl::AclFile>>,
}

/// Connections the kernel may hold for a listener before roost accepts
/// them. The standard library asks for 128, and beyond that a connection
/// storm (every device reconnecting after a restart) has SYNs dropped and
/// retried a second later; Linux caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket on `addr`, as `std::net::TcpListener::bind` makes it
/// (address reuse on), with room for `LISTEN_BACKLOG` pending connections.
fn bind_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// A running broker. Dropping the handle stops it.
pub struct BrokerHandle {
    local_addr: SocketAddr,
    local_addrs: Vec<SocketAddr>,
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

    /// Applies the reloadable part of `config` (SIGHUP): `[limits]`,
    /// `auth.allow_anonymous`, the password file and the ACL file. Existing
    /// connections stay; they see the new settings from their next packet.
    /// If a file cannot be read, nothing changes and the error is returned.
    pub fn reload(&self, config: &Config) -> Result<(), String> {
        let next = Reloadable::load(config)?;
        self.live.store(Arc::new(next));
        log::info!(
            "configuration reloaded: [limits], auth.allow_anonymous, password file, ACL file"
        );
        Ok(())
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

/// Binds the listener, starts the actor system on a new thread and returns
/// once the broker accepts connections.
pub fn start(config: Config) -> std::io::Result<BrokerHandle> {
    let live: Live = Arc::new(arc_swap::ArcSwap::from_pointee(
        Reloadable::load(&config).map_err(std::io::Error::other)?,
    ));
    let handle_live = live.clone();
    // Every listener is bound (and every TLS file read) before anything
    // starts, so a wrong address or certificate fails at once.
    let mut listeners = Vec::new();
    let mut local_addrs = Vec::new();
    let mut described = Vec::new();
    let websocket = config.websocket.listener();
    let all = config
        .all_listeners()
        .map(|l| (l, false))
        .chain(websocket.as_ref().map(|l| (l, true)));
    for (l, is_websocket) in all {
        let socket = bind_listener(l.bind)
            .map_err(|e| std::io::Error::new(e.kind(), format!("listener {}: {e}", l.bind)))?;
        socket.set_nonblocking(true)?;
        local_addrs.push(socket.local_addr()?);
        let tls = match l.is_tls() {
            true => Some(Arc::new(tls::listener(l).map_err(std::io::Error::other)?)),
            false => None,
        };
        described.push(format!(
            "{}{}{}",
            socket.local_addr()?,
            if is_websocket {
                " (WebSocket /mqtt)"
            } else {
                ""
            },
            match (&tls, l.client_ca()) {
                (Some(_), Some(_)) => " (TLS, client certificates required)",
                (Some(_), None) => " (TLS)",
                _ => "",
            }
        ));
        listeners.push((socket, tls, is_websocket));
    }
    let local_addr = local_addrs[0];
    let metrics_listener = match config.metrics.listen_addr() {
        Some(addr) => {
            let socket = std::net::TcpListener::bind(addr).map_err(|e| {
                std::io::Error::new(e.kind(), format!("metrics.listen {addr}: {e}"))
            })?;
            socket.set_nonblocking(true)?;
            described.push(format!("{} (Prometheus /metrics)", socket.local_addr()?));
            Some(socket)
        }
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(s) => Some(s.local_addr()?),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    let (exited_tx, exited_rx) = tokio::sync::oneshot::channel::<i32>();
    let m = metrics.clone();
    let shutdown_timeout = std::time::Duration::from_secs(config.supervision.shutdown_timeout_secs);
    supervision::install_panic_hook();
    static NEXT_BROKER_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_BROKER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let thread = std::thread::Builder::new()
        .name("roost-main".into())
        .spawn(move || {
            supervision::set_thread_broker(id);
            let system = actix::System::new();
            let tree = system.block_on(async move {
                let store = &config.store;
                let (conn, snapshot) =
                    crate::store::open(&store.db, store.synchronous, store.reset_damaged)
                        .await
                        .map_err(std::io::Error::other)?;
                let listeners = listeners
                    .into_iter()
                    .map(|(s, tls, websocket)| {
                        Ok(listener::Bound {
                            socket: tokio::net::TcpListener::from_std(s)?,
                            tls,
                            websocket,
                        })
                    })
                    .collect::<std::io::Result<Vec<_>>>()?;
                let tree = supervisor::start(config, listeners, m, conn, snapshot, id, live);
                if let Some(socket) = metrics_listener {
                    let socket = tokio::net::TcpListener::from_std(socket)?;
                    let counts = Arc::new(prometheus::Counts {
                        registry: tree.shared.registry.clone(),
                        retained: tree.shared.router.retained().clone(),
                    });
                    actix_rt::spawn(prometheus::serve(socket, tree.shared.clone(), counts));
                }
                let store = tree.store.clone();
                actix_rt::spawn(async move {
                    let _ = stop_rx.await;
                    // Commit what was acknowledged, then stop.
                    match tokio::time::timeout(shutdown_timeout, store.send(store::Flush)).await {
                        Ok(_) => log::info!("database flushed"),
                        Err(_) => {
                            log::warn!("database flush did not finish within {shutdown_timeout:?}")
                        }
                    }
                    actix::System::current().stop();
                });
                Ok::<_, std::io::Error>(tree)
            });
            let tree = match tree {
                Ok(tree) => {
                    let _ = ready_tx.send(Ok(()));
                    tree
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
            for worker in tree.workers.into_iter().chain([tree.store_arbiter]) {
                worker.stop();
                let _ = worker.join();
            }
            let _ = exited_tx.send(code);
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(std::io::Error::other("broker thread ended during start")),
    }
    log::info!("roost listening on {}", described.join(", "));
    Ok(BrokerHandle {
        local_addr,
        local_addrs,
        metrics_addr,
        live: handle_live,
        metrics,
        stop: Some(stop_tx),
        thread: Some(thread),
        exited: Some(exited_rx),
        id,
    })
}
