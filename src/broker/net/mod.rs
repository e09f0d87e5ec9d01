//! Sockets, and nothing else touches them: the listeners and their accept
//! loops ([`listener`]), TLS ([`tls`]) and WebSocket ([`websocket`]) in
//! front of MQTT, the bounded queue and writer task between the broker and
//! a socket ([`outbound`]), and the read gate that stops reading a client
//! whose publishes are not routed yet ([`backlog`]).
//!
//! Every listener is bound here, before any actor starts, so that a wrong
//! address or an unreadable certificate fails the start at once; each gets
//! one [`label`] that logs and metrics share.

pub mod backlog;
pub mod listener;
pub mod outbound;
pub mod tls;
pub mod websocket;

use crate::config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use tls::TlsListener;

/// Connections the kernel may hold for a listener before roost accepts
/// them. The standard library asks for 128, and beyond that a connection
/// storm (every device reconnecting after a restart) has SYNs dropped and
/// retried a second later; Linux caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket, bound before the actors start.
pub struct BoundListener {
    pub socket: std::net::TcpListener,
    /// TLS first, if set.
    pub tls: Option<Arc<TlsListener>>,
    /// MQTT inside WebSocket frames (the `[websocket]` listener).
    pub websocket: bool,
    /// For a WebSocket listener: the origins whose pages may connect
    /// (`websocket.allowed_origins`; empty: any).
    pub origins: Arc<[String]>,
    /// How logs and metrics name it (see [`label`]).
    pub label: String,
}

/// How logs and metrics name a listener: its address, then how it speaks,
/// e.g. `127.0.0.1:1883`, `0.0.0.0:8883 (TLS, client certificates)`,
/// `127.0.0.1:9001 (WebSocket, TLS)`.
pub fn label(addr: SocketAddr, websocket: bool, tls: bool, client_certificates: bool) -> String {
    let mut kinds = Vec::new();
    if websocket {
        kinds.push("WebSocket");
    }
    if tls {
        kinds.push("TLS");
    }
    if client_certificates {
        kinds.push("client certificates");
    }
    match kinds.is_empty() {
        true => addr.to_string(),
        false => format!("{addr} ({})", kinds.join(", ")),
    }
}

/// Binds every MQTT listener of `config`, in config order (`[listener]`,
/// each of `[[listeners]]`, then `[websocket]`), and reads their TLS files.
pub fn bind_all(config: &Config) -> std::io::Result<Vec<BoundListener>> {
    let websocket = config.websocket.listener();
    let all = config
        .all_listeners()
        .map(|l| (l, false))
        .chain(websocket.as_ref().map(|l| (l, true)));
    let mut bound = Vec::new();
    for (l, is_websocket) in all {
        let socket = bind(l.bind)
            .map_err(|e| std::io::Error::new(e.kind(), format!("listener {}: {e}", l.bind)))?;
        socket.set_nonblocking(true)?;
        let tls = match l.is_tls() {
            true => Some(Arc::new(tls::listener(l).map_err(std::io::Error::other)?)),
            false => None,
        };
        let label = label(
            socket.local_addr()?,
            is_websocket,
            tls.is_some(),
            tls.is_some() && l.client_ca().is_some(),
        );
        bound.push(BoundListener {
            socket,
            tls,
            websocket: is_websocket,
            origins: match is_websocket {
                true => config.websocket.allowed_origins.clone().into(),
                false => Arc::new([]),
            },
            label,
        });
    }
    Ok(bound)
}

/// Binds `metrics.listen`, if set.
pub fn bind_metrics(config: &Config) -> std::io::Result<Option<std::net::TcpListener>> {
    let Some(addr) = config.metrics.listen_addr() else {
        return Ok(None);
    };
    let socket = std::net::TcpListener::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("metrics.listen {addr}: {e}")))?;
    socket.set_nonblocking(true)?;
    Ok(Some(socket))
}

/// A listening socket on `addr`, as `std::net::TcpListener::bind` makes it
/// (address reuse on), with room for `LISTEN_BACKLOG` pending connections.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn a_listener_is_named_by_its_address_and_how_it_speaks() {
        let addr = "127.0.0.1:1883".parse().unwrap();
        assert_eq!(label(addr, false, false, false), "127.0.0.1:1883");
        assert_eq!(label(addr, false, true, false), "127.0.0.1:1883 (TLS)");
        assert_eq!(
            label(addr, false, true, true),
            "127.0.0.1:1883 (TLS, client certificates)"
        );
        assert_eq!(
            label(addr, true, false, false),
            "127.0.0.1:1883 (WebSocket)"
        );
        assert_eq!(
            label(addr, true, true, false),
            "127.0.0.1:1883 (WebSocket, TLS)"
        );
    }
}
