//! MQTT over WebSocket (MQTT 3.1.1 section 6) on `[websocket] listen`:
//! path `/mqtt`, sub-protocol `mqtt`, binary frames that need not line up
//! with packets. The client side is tokio-tungstenite; the MQTT bytes are
//! built by hand. MQTT.js (Node) and a headless Chromium page check the
//! same listener in `.ci/interop.sh`.

use crate::common::raw::{self, RawClient, CONNACK_OK};
use crate::common::{TestBroker, TIMEOUT};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

fn broker() -> TestBroker {
    TestBroker::start_with(|c| c.websocket.listen = "127.0.0.1:0".into())
}

/// The WebSocket listener comes after the TCP ones.
fn ws_addr(broker: &TestBroker) -> std::net::SocketAddr {
    *broker.handle.local_addrs().last().unwrap()
}

async fn ws_connect(
    addr: std::net::SocketAddr,
    path: &str,
) -> Result<(Ws, Option<String>), tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (ws, response) = tokio_tungstenite::client_async(request, tcp).await?;
    let protocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((ws, protocol))
}

/// Reads binary frames until one whole MQTT packet has arrived (this test
/// client never gets two packets at once: it waits for each).
async fn recv_packet<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut bytes = Vec::new();
    loop {
        let frame = tokio::time::timeout(TIMEOUT, ws.next())
            .await
            .expect("a frame within TIMEOUT")
            .expect("the stream is open")
            .expect("a frame");
        match frame {
            Message::Binary(b) => bytes.extend_from_slice(&b),
            Message::Close(_) => panic!("closed by the broker"),
            _ => continue,
        }
        // Fixed header complete and body all there?
        let mut len = 0usize;
        for (i, b) in bytes.iter().enumerate().skip(1).take(4) {
            len |= usize::from(b & 0x7F) << (7 * (i - 1));
            if b & 0x80 == 0 {
                if bytes.len() >= i + 1 + len {
                    return bytes;
                }
                break;
            }
        }
    }
}

/// [MQTT-6.0.0-4] the server picks `mqtt`; [MQTT-6.0.0-2] a packet may be
/// split over frames: CONNECT goes in two frames. A message published over
/// TCP reaches the WebSocket subscriber.
#[tokio::test]
async fn websocket_client_connects_subscribes_and_receives_mqtt_6_0_0_2() {
    let broker = broker();
    let (mut ws, protocol) = ws_connect(ws_addr(&broker), "/mqtt").await.unwrap();
    assert_eq!(protocol.as_deref(), Some("mqtt"));
    let connect = raw::connect("ws-client", true);
    let (a, b) = connect.split_at(5);
    ws.send(Message::Binary(a.to_vec().into())).await.unwrap();
    ws.send(Message::Binary(b.to_vec().into())).await.unwrap();
    assert_eq!(recv_packet(&mut ws).await, CONNACK_OK);
    ws.send(Message::Binary(raw::subscribe(1, &[("ws/#", 1)]).into()))
        .await
        .unwrap();
    assert_eq!(recv_packet(&mut ws).await, raw::suback(1, &[1]));

    let mut tcp = RawClient::connected(broker.addr(), "tcp-pub", true).await;
    tcp.publish_ok("ws/t", b"over websocket", 1, 1, false).await;
    let bytes = recv_packet(&mut ws).await;
    let publish = raw::RawPacket {
        first: bytes[0],
        body: bytes[2..].to_vec(),
    }
    .publish();
    assert_eq!(
        (publish.topic.as_str(), publish.payload.as_slice()),
        ("ws/t", &b"over websocket"[..])
    );
}

/// Only `/mqtt` is served: another path is refused in the handshake.
#[tokio::test]
async fn websocket_other_path_is_refused() {
    let broker = broker();
    let Err(err) = ws_connect(ws_addr(&broker), "/other").await else {
        panic!("the handshake on /other was accepted");
    };
    assert!(err.to_string().contains("404"), "{err}");
}

/// [MQTT-6.0.0-1] MQTT travels in binary frames: a text frame closes the
/// connection, counted as a protocol error (and logged).
#[tokio::test]
async fn websocket_text_frame_closes_the_connection_mqtt_6_0_0_1() {
    let broker = broker();
    let (mut ws, _) = ws_connect(ws_addr(&broker), "/mqtt").await.unwrap();
    ws.send(Message::Binary(raw::connect("ws-text", true).into()))
        .await
        .unwrap();
    assert_eq!(recv_packet(&mut ws).await, CONNACK_OK);
    ws.send(Message::Text("hello".into())).await.unwrap();
    let closed = tokio::time::timeout(TIMEOUT, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after a text frame");
    let errors = &broker.handle.metrics().protocol_errors;
    assert_eq!(errors.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// `[websocket]` with `tls_cert`/`tls_key` serves wss://: the same MQTT
/// exchange inside TLS.
#[tokio::test]
async fn websocket_over_tls_wss() {
    let pki = crate::tls::Pki::new();
    let (cert, key) = (pki.path("server.pem"), pki.path("server.key"));
    let broker = TestBroker::start_with(move |c| {
        c.websocket.listen = "127.0.0.1:0".into();
        c.websocket.tls_cert = cert;
        c.websocket.tls_key = key;
    });
    let addr = ws_addr(&broker);
    let tls = crate::tls::tls_connect(addr, &pki.path("ca.pem"), None)
        .await
        .expect("TLS handshake");
    let mut request = format!("wss://localhost:{}/mqtt", addr.port())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    ws.send(Message::Binary(raw::connect("wss-client", true).into()))
        .await
        .unwrap();
    assert_eq!(recv_packet(&mut ws).await, CONNACK_OK);
}

/// `websocket.allowed_origins` (as EMQX's `check_origin`): a page of
/// another origin is refused with HTTP 403; a page of a listed origin, and
/// a client that is not a browser (no Origin header), connect.
#[tokio::test]
async fn websocket_pages_of_other_origins_are_refused_with_403() {
    let broker = TestBroker::start_with(|c| {
        c.websocket.listen = "127.0.0.1:0".into();
        c.websocket.allowed_origins = vec!["https://dashboard.example".into()];
    });
    let addr = ws_addr(&broker);
    let with_origin = |origin: &'static str| async move {
        let mut request = format!("ws://{addr}/mqtt").into_client_request().unwrap();
        let headers = request.headers_mut();
        headers.insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        headers.insert("Origin", HeaderValue::from_static(origin));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio_tungstenite::client_async(request, tcp).await
    };
    let err = with_origin("https://evil.example").await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let (mut ws, _) = with_origin("https://dashboard.example").await.unwrap();
    ws.send(Message::binary(raw::connect("page", true)))
        .await
        .unwrap();
    assert_eq!(recv_packet(&mut ws).await, CONNACK_OK);
    let (mut ws, _) = ws_connect(addr, "/mqtt").await.unwrap();
    ws.send(Message::binary(raw::connect("tool", true)))
        .await
        .unwrap();
    assert_eq!(recv_packet(&mut ws).await, CONNACK_OK);
}

/// A request to the WebSocket port that is no upgrade (a browser or curl
/// opening it) gets an HTTP answer, not an empty reply: 426 Upgrade
/// Required on `/mqtt`, 404 elsewhere, 400 for what is not HTTP.
#[tokio::test]
async fn a_plain_http_request_gets_an_http_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = broker();
    let ask = |request: &'static str| {
        let addr = ws_addr(&broker);
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            tokio::time::timeout(TIMEOUT, s.read_to_string(&mut answer))
                .await
                .expect("answered and closed")
                .unwrap();
            answer
        }
    };
    let answer = ask("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nUpgrade: websocket\r\n"), "{answer}");
    let answer = ask("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    assert!(answer.contains("/mqtt"), "{answer}");
    let answer = ask("\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    // The WebSocket upgrade itself still works after them.
    let (_ws, protocol) = ws_connect(ws_addr(&broker), "/mqtt").await.unwrap();
    assert_eq!(protocol.as_deref(), Some("mqtt"));
}
