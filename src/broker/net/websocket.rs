//! MQTT over WebSocket (MQTT 3.1.1 section 6): the `[websocket]` listener
//! takes the HTTP upgrade on path `/mqtt`, answers with the sub-protocol
//! `mqtt` (or `mqttv3.1`, for 3.1 clients that ask for it), and then
//! carries MQTT bytes in binary frames. The frames are turned into a byte
//! stream and back (tokio-util's `StreamReader` / `SinkWriter`), so the
//! connection actor is the same as for TCP: a packet may span frames, and
//! a frame may hold several packets.

use crate::broker::client::connection;
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

/// Picks the sub-protocol from the client's offer [MQTT-6.0.0-4]; refuses
/// any other path.
#[allow(clippy::result_large_err)] // the type tungstenite's callback returns
fn handshake(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() != PATH {
        let mut refused = ErrorResponse::new(Some(format!("MQTT is served on {PATH}")));
        *refused.status_mut() = StatusCode::NOT_FOUND;
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
/// upgrade must finish within the connect timeout.
pub async fn accept<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>) -> Result<(), String>
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
    let ws = match tokio::time::timeout(
        timeout,
        tokio_tungstenite::accept_hdr_async_with_config(stream, handshake, Some(config)),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return Err(format!("WebSocket upgrade failed: {e}")),
        Err(_) => return Err(format!("no WebSocket upgrade within {timeout:?}")),
    };
    let (sink, frames) = ws.split();
    // Binary frames in; a text frame is a protocol error [MQTT-6.0.0-1];
    // a close frame ends the stream (pings are answered by tungstenite).
    let bytes = frames
        .take_while(|m| std::future::ready(!matches!(m, Ok(Message::Close(_)))))
        .filter_map(|m| {
            std::future::ready(match m {
                Ok(Message::Binary(b)) => Some(Ok::<Bytes, std::io::Error>(b)),
                Ok(Message::Text(_)) => Some(Err(std::io::Error::other(
                    "text frame: MQTT over WebSocket uses binary frames [MQTT-6.0.0-1]",
                ))),
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
