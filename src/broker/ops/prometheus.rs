//! Prometheus metrics over HTTP: `GET /metrics` on `metrics.listen` (off
//! unless set), in the OpenMetrics text format written by the
//! `prometheus-client` crate. Each scrape reads the broker's atomic
//! counters and gauges (`Metrics`). The HTTP side is one request per connection, parsed with
//! `httparse`: enough for a scraper, and nothing else is served.

use super::restart::ActorKind;
use crate::broker::shared::Shared;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Labels = Vec<(&'static str, String)>;

/// Scrapes served at once; a connection beyond them gets 503 at once. A
/// scraper makes one request at a time: more means something else.
pub const MAX_CONNECTIONS: usize = 8;

/// The whole of one request, from accept to the last byte of the answer:
/// a client that sends a byte now and then cannot hold a connection open.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// A gauge with one label: (label value, value) pairs.
fn labelled_gauge(
    r: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: Vec<(String, u64)>,
) {
    let family = Family::<Labels, Gauge>::default();
    for (value, n) in values {
        family
            .get_or_create(&vec![(label, value)])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    r.register(name, help, family);
}

/// The text of one scrape.
fn render(shared: &Shared) -> String {
    let m = &shared.metrics;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut r = Registry::with_prefix("roost");
    #[rustfmt::skip]
    let counters: [(&str, &str, &std::sync::atomic::AtomicU64); 24] = [
        ("connections_accepted", "Connections accepted (TCP, TLS, WebSocket), each counted closed once when it ends", &m.connections_accepted),
        ("connections_refused", "Connections closed at once at limits.max_connections", &m.connections_refused),
        ("connections_closed", "Connections closed", &m.connections_closed),
        ("tls_handshake_failures", "TLS handshakes that failed or timed out", &m.tls_handshake_failures),
        ("auth_failures", "CONNECTs refused by authentication", &m.auth_failures),
        ("limits_refused", "Requests refused by a limit of [limits]", &m.limits_refused),
        ("protocol_errors", "Connections closed for a protocol violation", &m.protocol_errors),
        ("publishes_received", "PUBLISH packets received from clients", &m.publishes_received),
        ("publishes_sent", "PUBLISH packets sent to clients", &m.publishes_sent),
        ("wills_published", "Wills published", &m.wills_published),
        ("takeovers", "Connections taken over by a new one with the same client id", &m.takeovers),
        ("sessions_expired", "Persistent sessions removed by session.expiry_secs", &m.sessions_expired),
        ("topic_alias_bytes_saved", "Bytes of PUBLISH packets to MQTT 5.0 clients not sent thanks to the topic aliases roost assigned", &m.topic_alias_bytes_saved),
        ("messages_oversized_dropped", "MQTT 5.0 messages not sent to a client: larger than the Maximum Packet Size it set", &m.oversized_dropped),
        ("messages_expired", "MQTT 5.0 messages not delivered: their Message Expiry Interval passed while queued or retained", &m.messages_expired),
        ("store_commits", "Store transactions committed", &m.store_commits),
        ("store_commit_attempts", "Store transactions begun, retries of failed ones included", &m.store_commit_attempts),
        ("connects_refused_unavailable", "CONNECTs of persistent sessions refused (0x03): store commits failing, or max_persistent_sessions", &m.unavailable_refused),
        ("retained_refused", "Retained PUBLISHes delivered but not retained, at max_retained_messages or max_retained_bytes", &m.retained_refused),
        ("store_changes_committed", "Changes committed (batch size = this / store_commits)", &m.store_ops_committed),
        ("store_commit_failures", "Store transactions that failed (nothing of them acknowledged)", &m.store_commit_failures),
        ("store_checkpoints", "WAL checkpoints run by the checkpoint thread", &m.store_checkpoints),
        ("subtree_restarts", "Restart storms answered by rebuilding the subtree", &m.subtree_restarts),
        ("connection_panics", "Connections closed because their handler panicked", &m.connection_panics),
    ];
    for (name, help, c) in counters {
        r.register(name, help, ConstCounter::new(get(c)));
    }

    // Counters with one label: (label value, count) pairs.
    let mut labelled = |name: &str, help: &str, label: &'static str, values: Vec<(String, u64)>| {
        let family = Family::<Labels, Counter>::default();
        for (value, n) in values {
            family.get_or_create(&vec![(label, value)]).inc_by(n);
        }
        r.register(name, help, family);
    };
    labelled(
        "messages_dropped",
        "Messages not delivered, by reason (acl: also refused subscriptions and wills)",
        "reason",
        [
            ("slow_client", &m.dropped_slow_client),
            ("queue_full", &m.dropped_queue_full),
            ("offline_qos0", &m.dropped_offline_qos0),
            ("acl", &m.acl_denied),
        ]
        .into_iter()
        .map(|(reason, c)| (reason.to_string(), get(c)))
        .collect(),
    );
    labelled(
        "actor_restarts",
        "Actor restarts after a caught panic, by kind",
        "kind",
        ActorKind::ALL
            .into_iter()
            .map(|kind| (kind.to_string(), get(&m.restarts_by_kind[kind as usize])))
            .collect(),
    );
    labelled(
        "listener_connections",
        "Connections accepted, by listener",
        "listener",
        shared
            .listener_accepted
            .iter()
            .map(|(addr, c)| (addr.clone(), get(c)))
            .collect(),
    );

    r.register(
        "connections_open",
        "Connections open now: accepted minus closed (clients_connected counts those past CONNECT)",
        ConstGauge::new(shared.open_connections.load(Ordering::Relaxed) as i64),
    );
    labelled_gauge(
        &mut r,
        "clients_connected_by_protocol",
        "Clients connected now, by protocol version",
        "version",
        crate::protocol::ProtocolVersion::ALL
            .iter()
            .map(|v| {
                let n = get(&m.clients_connected_by_protocol[v.index()]);
                (v.number().to_string(), n)
            })
            .collect(),
    );
    r.register(
        "clients_connected",
        "Clients connected now",
        ConstGauge::new(get(&m.clients_connected) as i64),
    );
    r.register(
        "subscriptions",
        "Subscriptions held now",
        ConstGauge::new(get(&m.subscriptions) as i64),
    );
    r.register(
        "queued_messages",
        "Copies queued for persistent sessions in the store",
        ConstGauge::new(get(&m.queued_messages) as i64),
    );
    r.register(
        "log_cache_bytes",
        "Bytes of queued messages the store keeps in memory",
        ConstGauge::new(get(&m.log_cache_bytes) as i64),
    );
    r.register(
        "store_failing",
        "1 while a store commit fails and is being tried again",
        ConstGauge::new(i64::from(m.store_failing.load(Ordering::Relaxed))),
    );
    r.register(
        "sessions",
        "Sessions held now (connected, and persistent ones away)",
        ConstGauge::new(get(&m.sessions) as i64),
    );
    r.register(
        "sessions_asleep",
        "Persistent sessions whose client is away, kept without an actor",
        ConstGauge::new(get(&m.sessions_asleep) as i64),
    );
    let g = Gauge::<i64>::default();
    g.set(get(&m.retained_messages) as i64);
    r.register("retained_messages", "Retained messages held now", g);
    r.register(
        "store_commit_seconds",
        "Time each store commit took",
        m.store_commit_seconds.0.clone(),
    );
    r.register(
        "store_batch_changes",
        "Changes in each store commit",
        m.store_batch_changes.0.clone(),
    );
    let mut text = String::new();
    if encode(&mut text, &r).is_err() {
        text.clear();
    }
    text
}

/// Serves `GET /metrics` on `listener` until the broker stops: at most
/// `MAX_CONNECTIONS` at once, each within `REQUEST_DEADLINE`.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((mut socket, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log::debug!("metrics: {MAX_CONNECTIONS} connections open, refusing {peer}");
            // Best effort, never waiting on the client.
            let _ = socket.try_write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            continue;
        };
        let shared = shared.clone();
        actix_rt::spawn(async move {
            let answered =
                tokio::time::timeout(REQUEST_DEADLINE, answer(&mut socket, &shared)).await;
            if answered.is_err() {
                log::debug!("metrics: {peer} took longer than {REQUEST_DEADLINE:?}, closed");
            }
            drop(slot);
        });
    }
}

/// Reads one request from `socket` and answers it.
async fn answer(socket: &mut tokio::net::TcpStream, shared: &Shared) {
    let peer = socket
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    let path = loop {
        match socket.read(&mut buf[len..]).await {
            Ok(n) if n > 0 => len += n,
            _ => return,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                break (request.method == Some("GET"))
                    .then(|| request.path.unwrap_or_default().to_string());
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => break None,
        }
    };
    let response = match path.as_deref() {
        Some("/metrics") => {
            let body = render(shared);
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
        Some(_) => {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        }
        None => {
            log::debug!("metrics: bad request from {peer}");
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        }
    };
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}
