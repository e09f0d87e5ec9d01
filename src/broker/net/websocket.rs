//! MQTT over WebSocket (MQTT 3.1.1 section 6): the `[websocket]` listener
//! takes the HTTP upgrade on path `/mqtt`, answers with the sub-protocol
//! `mqtt` (or `mqttv3.1`, for 3.1 clients that ask for it), and then
//! carries MQTT bytes in binary frames. The frames are turned into a byte
//! stream and back (tokio-util's `StreamReader` / `SinkWriter`), so the
//! connection actor is the same as for TCP: a packet may span frames, and
//! a frame may hold several packets.

use crate::broker::client::connection;
use crate::broker::ops::log_limit::PROTOCOL_ERRORS;
use crate::broker::ops::metrics::Metrics;
use crate::broker::shared::Shared;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::io::{CopyToBytes, SinkWriter, StreamReader};

/// The path MQTT clients connect to (`ws://HOST:PORT/mqtt`).
pub const PATH: &str = "/mqtt";

/// Whether a page of `origin` (the request's Origin header; `None` for a
/// client that is not a browser) may connect, given `allowed` (empty: any).
/// Origins compare without regard to case, as their scheme and host do.
fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    match origin {
        None => true,
        Some(origin) => {
            allowed.is_empty()
                || allowed
                    .iter()
                    .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
        }
    }
}

/// Picks the sub-protocol from the client's offer [MQTT-6.0.0-4]; refuses
/// any other path (404), and a page of an origin `allowed` does not name
/// (403, as EMQX's `check_origin`).
#[allow(clippy::result_large_err)] // the type tungstenite's callback returns
fn handshake(
    request: &Request,
    mut response: Response,
    allowed: &[String],
) -> Result<Response, ErrorResponse> {
    if request.uri().path() != PATH {
        let mut refused = ErrorResponse::new(Some(format!("MQTT is served on {PATH}")));
        *refused.status_mut() = StatusCode::NOT_FOUND;
        return Err(refused);
    }
    let origin = request
        .headers()
        .get("Origin")
        .map(|v| v.to_str().unwrap_or("(not text)"));
    if !origin_allowed(origin, allowed) {
        let mut refused = ErrorResponse::new(Some(
            "this page's origin is not in websocket.allowed_origins".to_string(),
        ));
        *refused.status_mut() = StatusCode::FORBIDDEN;
        return Err(refused);
    }
    let offered: Vec<&str> = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(str::trim))
        .collect();
    if let Some(chosen) = ["mqtt", "mqttv3.1"]
        .into_iter()
        .find(|p| offered.contains(p))
    {
        response
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(chosen));
    }
    Ok(response)
}

/// Upgrades `stream` (TCP or TLS) and runs an MQTT connection over it. The
/// upgrade must finish within the connect timeout; a page of an origin not
/// in `origins` (if any are given) is refused.
pub async fn accept<S>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    origins: Arc<[String]>,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let live = shared.live.load();
    let timeout = Duration::from_secs(live.limits.connect_timeout_secs);
    // A frame or message is bounded like a packet (plus room for a few
    // small packets beside it): tungstenite's defaults (16/64 MiB) would
    // let an unauthenticated client make the broker buffer that much.
    let bound = live.limits.max_packet_size + 64 * 1024;
    let config = WebSocketConfig::default()
        .max_frame_size(Some(bound))
        .max_message_size(Some(bound))
        .read_buffer_size(4096);
    drop(live);
    let deadline = tokio::time::Instant::now() + timeout;
    // The request head is read here first: a request that is no WebSocket
    // upgrade (a browser or curl opening the port) gets an HTTP answer,
    // where tungstenite would close without one.
    let stream = match tokio::time::timeout_at(deadline, read_head(stream)).await {
        Ok(Ok(Head::Upgrade(stream))) => stream,
        Ok(Ok(Head::Answered(what))) => return Err(what),
        Ok(Err(e)) => return Err(format!("WebSocket request: {e}")),
        Err(_) => {
            return Err(format!(
                "no WebSocket upgrade within {} s",
                timeout.as_secs()
            ))
        }
    };
    let ws = match tokio::time::timeout_at(
        deadline,
        tokio_tungstenite::accept_hdr_async_with_config(
            stream,
            // The error type is tungstenite's, large or not.
            #[allow(clippy::result_large_err)]
            |request: &Request, response| handshake(request, response, &origins),
            Some(config),
        ),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return Err(format!("WebSocket upgrade failed: {e}")),
        Err(_) => {
            return Err(format!(
                "no WebSocket upgrade within {} s",
                timeout.as_secs()
            ))
        }
    };
    let (sink, frames) = ws.split();
    // Binary frames in; a text frame is a protocol error [MQTT-6.0.0-1],
    // logged and counted as one; a close frame ends the stream (pings are
    // answered by tungstenite).
    let counted = shared.clone();
    let bytes = frames
        .take_while(|m| std::future::ready(!matches!(m, Ok(Message::Close(_)))))
        .filter_map(move |m| {
            std::future::ready(match m {
                Ok(Message::Binary(b)) => Some(Ok::<Bytes, std::io::Error>(b)),
                Ok(Message::Text(_)) => {
                    Metrics::inc(&counted.metrics.protocol_errors);
                    if PROTOCOL_ERRORS.allow() {
                        log::warn!("WebSocket connection from {peer}: protocol error, closing: a text frame; MQTT over WebSocket uses binary frames [MQTT-6.0.0-1]");
                    }
                    Some(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "text frame [MQTT-6.0.0-1]",
                    )))
                }
                Ok(_) => None,
                Err(e) => Some(Err(std::io::Error::other(e))),
            })
        });
    let read = StreamReader::new(Box::pin(bytes));
    let sink = sink
        .with(|b: Bytes| {
            std::future::ready(Ok::<_, tokio_tungstenite::tungstenite::Error>(
                Message::Binary(b),
            ))
        })
        .sink_map_err(std::io::Error::other);
    let write = SinkWriter::new(CopyToBytes::new(Box::pin(sink)));
    connection::start_with(read, write, peer, shared, None);
    Ok(())
}

/// The longest request head read before the upgrade (tungstenite's own
/// bound is larger; a real upgrade request is well under 1 KiB).
const MAX_HEAD: usize = 8 * 1024;

/// What the request head asked for.
enum Head<S> {
    /// A WebSocket upgrade: the stream, its head still to be read by
    /// tungstenite.
    Upgrade(Prefixed<S>),
    /// Not one: answered with an HTTP status and closed (the words say
    /// what, for the log).
    Answered(String),
}

/// Reads the request head; a request that is no upgrade is answered with
/// 426 Upgrade Required on `/mqtt` and 404 elsewhere, as a web server
/// would, and one that is not HTTP with 400.
async fn read_head<S>(mut stream: S) -> std::io::Result<Head<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = bytes::BytesMut::with_capacity(1024);
    let status = loop {
        if stream.read_buf(&mut head).await? == 0 {
            return Ok(Head::Answered("closed before a whole HTTP request".into()));
        }
        let parsed = {
            // As many headers as tungstenite itself takes.
            let mut headers = [httparse::EMPTY_HEADER; 124];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&head) {
                Ok(httparse::Status::Complete(_)) => {
                    let upgrade = request.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("upgrade")
                            && std::str::from_utf8(h.value)
                                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
                    });
                    Some((request.path == Some(PATH), upgrade))
                }
                Ok(httparse::Status::Partial) => None,
                Err(_) => break "400 Bad Request",
            }
        };
        match parsed {
            // tungstenite answers the rest (404, 403, a bad upgrade).
            Some((_, true)) => {
                return Ok(Head::Upgrade(Prefixed {
                    head: head.freeze(),
                    inner: stream,
                }))
            }
            Some((true, false)) => break "426 Upgrade Required",
            Some((false, false)) => break "404 Not Found",
            None if head.len() < MAX_HEAD => continue,
            None => break "431 Request Header Fields Too Large",
        }
    };
    let body = match status {
        "426 Upgrade Required" => {
            format!("MQTT over WebSocket: connect with a WebSocket client to {PATH} (sub-protocol mqtt)\n")
        }
        "404 Not Found" => format!("MQTT over WebSocket is served on {PATH}\n"),
        _ => String::new(),
    };
    let upgrade = if status.starts_with("426") {
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    } else {
        "Connection: close\r\n"
    };
    let response = format!(
        "HTTP/1.1 {status}\r\n{upgrade}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(Head::Answered(format!(
        "not a WebSocket upgrade request: answered HTTP {status}"
    )))
}

/// A stream whose first bytes, already read, are given back before the
/// rest: the request head `read_head` looked at, for tungstenite.
struct Prefixed<S> {
    head: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.remaining());
            let first = self.head.split_to(n);
            buf.put_slice(&first);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn origins_allowed_table() {
        let some = [
            "https://app.example.com".to_string(),
            "http://localhost:3000/".to_string(),
        ];
        assert!(origin_allowed(None, &some), "not a browser");
        assert!(
            origin_allowed(Some("https://evil.example"), &[]),
            "empty list: any"
        );
        assert!(origin_allowed(Some("https://app.example.com"), &some));
        assert!(origin_allowed(Some("HTTPS://APP.example.com"), &some));
        assert!(origin_allowed(Some("http://localhost:3000"), &some));
        assert!(!origin_allowed(Some("https://app.example.com.evil"), &some));
        assert!(!origin_allowed(Some("null"), &some));
    }
}
