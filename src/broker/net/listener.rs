//! Listener: accepts TCP connections and hands each socket to a worker
//! arbiter, round robin, where its Connection actor runs. Started last, so
//! every actor a connection needs already exists.

use super::tls::TlsListener;
use super::websocket;
use crate::broker::client::connection;
use crate::broker::ops::restart::EXIT_SOFTWARE;
use crate::broker::shared::Shared;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// One listening socket, on the broker's runtime, and how its connections
/// speak.
pub struct Bound {
    pub socket: tokio::net::TcpListener,
    /// TLS first, if set.
    pub tls: Option<Arc<TlsListener>>,
    /// MQTT inside WebSocket frames (the `[websocket]` listener).
    pub websocket: bool,
    /// The origins a WebSocket listener lets in (empty: any).
    pub origins: Arc<[String]>,
    /// How logs and metrics name it (see `net::label`).
    pub label: String,
}

impl Bound {
    /// Moves a socket bound at start onto the current runtime.
    pub fn from_bound(bound: super::BoundListener) -> std::io::Result<Bound> {
        Ok(Bound {
            socket: tokio::net::TcpListener::from_std(bound.socket)?,
            tls: bound.tls,
            websocket: bound.websocket,
            origins: bound.origins,
            label: bound.label,
        })
    }
}

pub struct Listener {
    /// Each socket, and its TLS side if it is a TLS listener.
    listeners: Vec<Bound>,
    workers: Vec<actix::dev::ArbiterHandle>,
    shared: Arc<Shared>,
}

impl Listener {
    pub fn new(
        listeners: Vec<Bound>,
        workers: Vec<actix::dev::ArbiterHandle>,
        shared: Arc<Shared>,
    ) -> Self {
        Listener {
            listeners,
            workers,
            shared,
        }
    }
}

/// Runs a connection for an accepted socket on a worker: at once for plain
/// TCP, after the handshake (bounded by the connect timeout) for TLS.
/// `websocket`: MQTT in WebSocket frames, from pages of these origins
/// (empty: any).
async fn run_connection(
    std_stream: std::net::TcpStream,
    peer: std::net::SocketAddr,
    shared: Arc<Shared>,
    tls: Option<Arc<TlsListener>>,
    websocket: Option<Arc<[String]>>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let failed = |shared: &Shared, what: String| {
        log::info!("connection from {peer}: {what}");
        shared.open_connections.fetch_sub(1, Relaxed);
        shared.metrics.connections_closed.fetch_add(1, Relaxed);
    };
    let stream = match tokio::net::TcpStream::from_std(std_stream) {
        Ok(s) => s,
        Err(e) => return failed(&shared, format!("accept: {e}")),
    };
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return match websocket {
            Some(origins) => {
                if let Err(e) = websocket::accept(stream, peer, shared.clone(), origins).await {
                    failed(&shared, e);
                }
            }
            None => connection::spawn(stream, peer, shared),
        };
    };
    let timeout = Duration::from_secs(shared.live.load().limits.connect_timeout_secs);
    let stream = match tokio::time::timeout(timeout, tls.acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        failure => {
            shared.metrics.tls_handshake_failures.fetch_add(1, Relaxed);
            let what = match failure {
                Ok(Err(e)) => format!("TLS handshake failed: {}", super::tls::explain(&e)),
                _ => format!(
                    "no TLS handshake within {} s (limits.connect_timeout_secs)",
                    timeout.as_secs()
                ),
            };
            return failed(&shared, what);
        }
    };
    if let Some(origins) = websocket {
        if let Err(e) = websocket::accept(stream, peer, shared.clone(), origins).await {
            failed(&shared, e);
        }
        return;
    }
    let identity = tls.identity_as_username.then(|| {
        super::tls::peer_common_name(stream.get_ref().1).map(bytestring::ByteString::from)
    });
    connection::spawn_tls(stream, peer, shared, identity);
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for (index, bound) in std::mem::take(&mut self.listeners).into_iter().enumerate() {
            self.accept(index, bound, ctx);
        }
    }
}

impl Listener {
    fn accept(
        &mut self,
        index: usize,
        Bound {
            socket: listener,
            tls,
            websocket,
            origins,
            ..
        }: Bound,
        ctx: &mut Context<Self>,
    ) {
        let workers = self.workers.clone();
        let shared = self.shared.clone();
        let websocket = websocket.then_some(origins);
        let accept_loop = async move {
            let mut next = 0usize;
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let limit = shared.live.load().limits.max_connections;
                        if limit > 0
                            && shared
                                .open_connections
                                .load(std::sync::atomic::Ordering::Relaxed)
                                >= limit
                        {
                            // Over the limit: close at once, before any work.
                            let refused = shared
                                .metrics
                                .connections_refused
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if refused.is_multiple_of(1000) {
                                log::warn!("limits.max_connections ({limit}) reached: closing new connection from {peer} ({} refused so far)", refused + 1);
                            }
                            drop(stream);
                            continue;
                        }
                        // Accepted from here on: every path below ends by
                        // counting it closed once (`run_connection`'s
                        // failures, or the connection actor's `stopped`),
                        // so that open = accepted - closed.
                        shared
                            .open_connections
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        shared
                            .metrics
                            .connections_accepted
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if let Some((_, accepted)) = shared.listener_accepted.get(index) {
                            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        // Move the socket to a worker's runtime: deregister
                        // here, register there.
                        let std_stream = match stream.into_std() {
                            Ok(s) => s,
                            Err(e) => {
                                log::warn!("accept from {peer}: {e}");
                                shared
                                    .open_connections
                                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                                shared
                                    .metrics
                                    .connections_closed
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                continue;
                            }
                        };
                        let (shared, tls, websocket) =
                            (shared.clone(), tls.clone(), websocket.clone());
                        let worker = &workers[next % workers.len()];
                        next = next.wrapping_add(1);
                        worker.spawn(run_connection(std_stream, peer, shared, tls, websocket));
                    }
                    Err(e) => {
                        // Typically out of file descriptors: back off
                        // instead of spinning on the error.
                        log::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        };
        // Policy (see `restart::TREE`): a failed listener stops roost
        // with a clear line and a non-zero exit, rather than leaving a broker
        // that accepts nobody.
        ctx.spawn(
            async move {
                use futures::FutureExt;
                if std::panic::AssertUnwindSafe(accept_loop)
                    .catch_unwind()
                    .await
                    .is_err()
                {
                    log::error!("the listener failed; stopping roost (exit code {EXIT_SOFTWARE})");
                    actix::System::current().stop_with_code(EXIT_SOFTWARE);
                }
            }
            .into_actor(self),
        );
    }
}
