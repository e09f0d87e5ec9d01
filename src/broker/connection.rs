//! Connection actor: the only actor that reads a socket. It frames bytes
//! into packets, enforces the connection-level rules (CONNECT first and
//! within the connect timeout, one CONNECT only, keep-alive), publishes QoS
//! 0/1 messages straight to the router, hands everything stateful to its
//! Session, and publishes the will when it ends without DISCONNECT.
//!
//! A connection is never restarted: any failure is a disconnect.

use super::backlog::RoutingBacklog;
use super::messages::*;
use super::metrics::Metrics;
use super::outbound::{self, Outbound, Reply};
use super::session::Session;
use super::store::Acknowledgement;
use super::supervision::{guard, ActorKind};
use super::Shared;
use crate::protocol::codec::CodecError;
use crate::protocol::{
    ConnAck, Connect, ConnectReturnCode, LastWill, MqttCodec, Packet, ProtocolError,
    ProtocolVersion, QoS,
};
use crate::session::Message;
use crate::store::{Completion, InOrder};
use actix::prelude::*;
use bytestring::ByteString;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

/// First size of a connection's read buffer (tokio-util's default is 8 KiB,
/// which dominated the memory of an idle connection).
const READ_BUFFER_INITIAL: usize = 256;

/// How long a closing connection may spend flushing to a peer that does not
/// read before its writer is aborted.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

enum Phase {
    AwaitingConnect,
    Connecting,
    Connected { session: Addr<Session> },
    Closed,
}

struct Identity {
    client_id: ByteString,
    /// The user name of CONNECT (or of the client certificate), for the ACL.
    username: Option<ByteString>,
}

pub struct Connection {
    id: ConnectionId,
    peer: SocketAddr,
    shared: Arc<Shared>,
    outbound: Outbound,
    writer: Option<tokio::task::JoinHandle<()>>,
    /// This client's publishes not yet routed; reading pauses when full.
    backlog: Arc<RoutingBacklog>,
    phase: Phase,
    /// The client id and user name, from CONNECT on. Boxed: every idle
    /// connection pays for its room, and 56 bytes less put its task in
    /// tokio's next smaller size class (640 bytes rather than 768).
    identity: Option<Box<Identity>>,
    /// 1.5 × the client's keep-alive [MQTT-3.1.2-24]; `None` when it is 0.
    keep_alive_limit: Option<Duration>,
    /// When bytes last arrived, as the socket reader stamps it.
    last_read: Rc<Cell<Instant>>,
    /// When the last whole packet arrived: the stamp of the read that
    /// completed it (the framed reader decodes what it holds before it
    /// reads again).
    last_packet: Instant,
    /// Boxed: most clients have none, and every connection pays for the room.
    will: Option<Box<LastWill>>,
    /// On a listener with `use_identity_as_username`: the common name of
    /// the client certificate, which replaces CONNECT's user name.
    certificate_identity: Option<Box<Option<ByteString>>>,
    /// PUBLISHes the ACL refused; the first is logged, the rest counted.
    acl_denials: u64,
    /// PUBACKs go out in the order of the PUBLISHes [MQTT-4.6.0-2], though
    /// some wait for a commit and others only for routing.
    pubacks: InOrder,
    /// Closes the connection if CONNECT has not been handled in time;
    /// cancelled once it has.
    connect_timer: Option<SpawnHandle>,
}

/// What to do on a protocol error, decided in this one place: a CONNACK with
/// a refusal code where the spec asks for one, else a plain close (section
/// 4.8: "close the Network Connection").
pub fn close_action(error: &ProtocolError, first_packet: bool) -> Option<ConnectReturnCode> {
    match error {
        ProtocolError::UnsupportedProtocolLevel(_) if first_packet => {
            Some(ConnectReturnCode::UnacceptableProtocolVersion) // [MQTT-3.1.2-2]
        }
        _ => None,
    }
}

/// A socket's read half that notes when bytes last arrived, for the
/// keep-alive check [MQTT-3.1.2-24]: one clock read per read from the
/// socket, where one per packet cost about 4% of a pinned core in fan-in.
struct Stamped<R> {
    inner: R,
    last_read: Rc<Cell<Instant>>,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Stamped<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last_read.set(Instant::now());
        }
        polled
    }
}

/// Starts a connection actor for an accepted socket on the current arbiter
/// (the listener has set TCP_NODELAY).
pub fn spawn(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let (read, write) = stream.into_split();
    start_with(read, write, peer, shared, None);
}

/// Starts a connection actor for a socket whose TLS handshake is done.
/// `identity`: `Some` when the listener takes the client certificate's
/// common name as the user name (`None` inside: the certificate has none).
pub fn spawn_tls(
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    identity: Option<Option<ByteString>>,
) {
    let (read, write) = tokio::io::split(stream);
    start_with(read, write, peer, shared, identity);
}

/// Starts a connection actor over any byte stream (TCP, TLS, WebSocket).
pub(super) fn start_with<R, W>(
    read: R,
    write: W,
    peer: SocketAddr,
    shared: Arc<Shared>,
    identity: Option<Option<ByteString>>,
) where
    R: tokio::io::AsyncRead + Unpin + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let live = shared.live.load();
    let limits = &live.limits;
    let (outbound, gate, writer) = outbound::spawn_writer(write, limits.max_outbound_bytes);
    let codec = MqttCodec::new(limits.max_packet_size);
    let backlog = RoutingBacklog::new(limits.max_routing_backlog);
    let gate = gate.with_backlog(backlog.clone());
    let id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
    Connection::create(move |ctx| {
        let last_read = Rc::new(Cell::new(Instant::now()));
        let read = Stamped {
            inner: read,
            last_read: last_read.clone(),
        };
        // A small first buffer: most connections sit idle after CONNECT, and
        // the buffer grows as needed for larger packets.
        ctx.add_stream(gate.wrap(FramedRead::with_capacity(read, codec, READ_BUFFER_INITIAL)));
        Connection {
            id,
            peer,
            shared,
            outbound,
            writer: Some(writer),
            backlog,
            phase: Phase::AwaitingConnect,
            identity: None,
            keep_alive_limit: None,
            last_read,
            last_packet: Instant::now(),
            will: None,
            certificate_identity: identity.map(Box::new),
            acl_denials: 0,
            pubacks: InOrder::default(),
            connect_timer: None,
        }
    });
}

impl Connection {
    /// Whether the ACL of `live` (if any) lets this client publish to `topic`.
    fn may_publish(&self, live: &super::Reloadable, topic: &str) -> bool {
        // `$SYS` is the broker's own tree, as in Mosquitto.
        if topic.starts_with("$SYS") {
            return false;
        }
        live.auth.acl.as_ref().is_none_or(|acl| {
            acl.allows(
                self.identity.as_ref().and_then(|i| i.username.as_deref()),
                self.identity.as_ref().map_or("", |i| &i.client_id),
                topic,
                crate::acl::Want::Write,
            )
        })
    }

    /// A PUBLISH the ACL refuses: dropped and counted (MQTT 3.1.1 cannot
    /// say no), but acknowledged, so the client does not resend it forever.
    /// The acknowledgement waits its turn behind those of earlier
    /// PUBLISHes: the PUBACK here, the PUBREC in the session, which keeps
    /// the order of PUBRECs.
    fn refuse_publish(&mut self, p: crate::protocol::Publish, session: &Addr<Session>) {
        Metrics::inc(&self.shared.metrics.acl_denied);
        self.acl_denials += 1;
        if self.acl_denials == 1 {
            log::warn!(
                "{}: PUBLISH to {:?} dropped: not allowed by the ACL (further ones are only counted)",
                self.name(),
                p.topic.as_str()
            );
        }
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => drop(self.puback_in_turn(id)),
            (QoS::ExactlyOnce, Some(_)) => session.do_send(PublishQoS2 {
                connection_id: self.id,
                publish: p,
                backlog: self.backlog.token(),
                refused: true,
            }),
            _ => {}
        }
    }

    /// The completion that sends PUBACK `id` after the PUBACKs of earlier
    /// PUBLISHes still waiting (see `pubacks`).
    fn puback_in_turn(&mut self, id: crate::protocol::PacketId) -> Completion {
        let puback = Reply::new(self.outbound.clone(), Packet::PubAck(id)).on_completion();
        self.pubacks.push(&puback);
        puback
    }

    fn name(&self) -> String {
        match &self.identity {
            Some(i) => format!("client {:?} ({})", i.client_id, self.peer),
            None => format!("connection from {}", self.peer),
        }
    }

    /// Ends the connection without DISCONNECT: the will is published in `stopped`.
    fn close(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }

    fn refuse(&mut self, code: ConnectReturnCode, ctx: &mut Context<Self>) {
        log::info!("{}: CONNECT refused: {:?}", self.name(), code);
        self.outbound.send(Packet::ConnAck(ConnAck {
            session_present: false,
            code,
        }));
        self.phase = Phase::Closed;
        ctx.stop();
    }

    fn protocol_error(&mut self, error: ProtocolError, ctx: &mut Context<Self>) {
        Metrics::inc(&self.shared.metrics.protocol_errors);
        let first = matches!(self.phase, Phase::AwaitingConnect);
        match close_action(&error, first) {
            Some(code) => {
                log::info!("{}: {error}", self.name());
                self.refuse(code, ctx)
            }
            None => {
                log::warn!("{}: protocol error, closing: {error}", self.name());
                self.close(ctx)
            }
        }
    }

    fn on_connect(&mut self, connect: Connect, ctx: &mut Context<Self>) {
        let mut client_id = connect.client_id.clone();
        if client_id.is_empty() {
            if !connect.clean_session || connect.version == ProtocolVersion::V31 {
                // An empty id needs clean session 1 [MQTT-3.1.3-8]; MQTT 3.1 needs 1-23 characters.
                return self.refuse(ConnectReturnCode::IdentifierRejected, ctx);
            }
            // [MQTT-3.1.3-6]: the server assigns a unique id.
            client_id = format!("roost-{:016x}", rand_id(self.id)).into();
        } else if connect.version == ProtocolVersion::V31 && client_id.chars().count() > 23 {
            return self.refuse(ConnectReturnCode::IdentifierRejected, ctx);
        }
        let live = self.shared.live.load();
        let limits = &live.limits;
        let refusal = if client_id.len() > limits.max_client_id_length {
            Some("client id longer than limits.max_client_id_length")
        } else if connect.keep_alive > limits.max_keepalive {
            Some("keep-alive above limits.max_keepalive")
        } else if connect
            .will
            .as_ref()
            .is_some_and(|w| !limits.topic_allowed(w.topic.as_str()))
        {
            Some("will topic beyond limits.max_topic_length or max_topic_levels")
        } else {
            None
        };
        if let Some(why) = refusal {
            // MQTT 3.1.1 has no better code; Mosquitto 2 answers 0x02 too.
            log::warn!("{}: CONNECT refused: {why}", self.name());
            Metrics::inc(&self.shared.metrics.limits_refused);
            return self.refuse(ConnectReturnCode::IdentifierRejected, ctx);
        }
        self.identity = Some(Box::new(Identity {
            client_id: client_id.clone(),
            username: None,
        }));
        self.phase = Phase::Connecting;
        if let Some(identity) = self.certificate_identity.take().map(|b| *b) {
            // The certificate, checked in the TLS handshake, is the credential.
            let Some(cn) = identity else {
                Metrics::inc(&self.shared.metrics.auth_failures);
                log::warn!(
                    "{}: CONNECT refused: the client certificate has no common name to use as user name",
                    self.name()
                );
                return self.refuse(ConnectReturnCode::NotAuthorized, ctx);
            };
            let mut connect = connect;
            connect.username = Some(cn);
            connect.password = None;
            return self.register(client_id, connect, ctx);
        }
        let live = self.shared.live.load();
        match (&connect.username, &live.auth.passwords) {
            (None, _) if !live.allow_anonymous => {
                Metrics::inc(&self.shared.metrics.auth_failures);
                log::warn!(
                    "{}: CONNECT without user name refused (auth.allow_anonymous is false)",
                    self.name()
                );
                self.refuse(ConnectReturnCode::NotAuthorized, ctx)
            }
            (Some(_), None) if !live.allow_anonymous => {
                Metrics::inc(&self.shared.metrics.auth_failures);
                log::warn!(
                    "{}: CONNECT refused: no password file and auth.allow_anonymous is false",
                    self.name()
                );
                self.refuse(ConnectReturnCode::NotAuthorized, ctx)
            }
            (Some(user), Some(passwords)) => {
                // PBKDF2 and argon2 are slow on purpose: check off the actor thread.
                let (user, password, passwords) = (
                    user.to_string(),
                    connect.password.clone().unwrap_or_default(),
                    passwords.clone(),
                );
                let check = tokio::task::spawn_blocking(move || passwords.verify(&user, &password));
                ctx.wait(check.into_actor(self).map(move |ok, act, ctx| {
                    if ok.unwrap_or(false) {
                        act.register(client_id, connect, ctx);
                    } else {
                        Metrics::inc(&act.shared.metrics.auth_failures);
                        log::warn!("{}: CONNECT refused: bad user name or password", act.name());
                        act.refuse(ConnectReturnCode::BadUsernameOrPassword, ctx);
                    }
                }));
            }
            _ => self.register(client_id, connect, ctx),
        }
    }

    /// After a valid and authenticated CONNECT: find or create the session
    /// and attach to it (it writes CONNACK).
    fn register(&mut self, client_id: ByteString, connect: Connect, ctx: &mut Context<Self>) {
        if let Some(identity) = &mut self.identity {
            identity.username = connect.username.clone();
        }
        if let Some(will) = &connect.will {
            if !self.may_publish(&self.shared.live.load(), will.topic.as_str()) {
                // As Mosquitto 2: a will the client may not publish refuses the connection.
                log::warn!(
                    "{}: CONNECT refused: the ACL does not allow the will topic {:?}",
                    self.name(),
                    will.topic.as_str()
                );
                Metrics::inc(&self.shared.metrics.acl_denied);
                return self.refuse(ConnectReturnCode::NotAuthorized, ctx);
            }
        }
        self.will = connect.will.map(Box::new);
        let (keep_alive, will) = (connect.keep_alive, self.will.as_deref().cloned());
        if connect.keep_alive > 0 {
            self.keep_alive_limit =
                Some(Duration::from_millis(u64::from(connect.keep_alive) * 1500));
        }
        let username = connect.username.clone();
        let register = Register {
            client_id,
            clean_session: connect.clean_session,
            arbiter: actix::Arbiter::current(),
        };
        let registry = self.shared.registry.clone();
        let me = ctx.address();
        let (connection_id, outbound) = (self.id, self.outbound.clone());
        // `wait` holds back every other packet of this client until the
        // session has written CONNACK, so nothing overtakes it.
        let attach = async move {
            let registered = registry.send(register).await.ok()?.ok()?;
            let attach = Attach {
                connection_id,
                keep_alive,
                will,
                connection: me,
                outbound,
                session_present: registered.session_present,
                generation: registered.generation,
                username,
            };
            registered.session.send(attach).await.ok()?.ok()?;
            Some(registered.session)
        };
        ctx.wait(
            attach
                .into_actor(self)
                .map(|session, act, ctx| match session {
                    Some(session) => {
                        log::debug!("{}: connected", act.name());
                        Metrics::inc(&act.shared.metrics.clients_connected);
                        act.phase = Phase::Connected { session };
                        // The connect timeout has nothing left to check.
                        if let Some(timer) = act.connect_timer.take() {
                            ctx.cancel_future(timer);
                        }
                        if let Some(limit) = act.keep_alive_limit {
                            act.schedule_keep_alive(limit, ctx);
                        }
                    }
                    None => {
                        log::info!("{}: session was taken over while connecting", act.name());
                        act.phase = Phase::Closed;
                        ctx.stop();
                    }
                }),
        );
    }

    /// Per-connection keep-alive timer: fires when the client could first be
    /// late and re-arms for the rest of the interval if it was not.
    fn schedule_keep_alive(&mut self, after: Duration, ctx: &mut Context<Self>) {
        ctx.run_later(after, |act, ctx| {
            let Some(limit) = act.keep_alive_limit else {
                return;
            };
            let idle = act.last_packet.elapsed();
            if idle >= limit {
                log::info!(
                    "{}: keep-alive expired after {:?} of silence, closing [MQTT-3.1.2-24]",
                    act.name(),
                    idle
                );
                act.close(ctx);
            } else {
                act.schedule_keep_alive(limit - idle, ctx);
            }
        });
    }

    fn on_packet(&mut self, packet: Packet, ctx: &mut Context<Self>) {
        let session = match &self.phase {
            Phase::AwaitingConnect => {
                return match packet {
                    Packet::Connect(c) => self.on_connect(*c, ctx),
                    other => {
                        log::warn!(
                            "{}: first packet is {:?}, not CONNECT [MQTT-3.1.0-1]",
                            self.name(),
                            other.packet_type()
                        );
                        Metrics::inc(&self.shared.metrics.protocol_errors);
                        self.close(ctx)
                    }
                };
            }
            Phase::Connected { session } => session,
            // `wait` holds packets back while connecting; nothing is read once closed.
            Phase::Connecting | Phase::Closed => return,
        };
        match packet {
            Packet::Publish(p) => {
                Metrics::inc(&self.shared.metrics.publishes_received);
                // One snapshot of the reloadable settings per PUBLISH.
                let live = self.shared.live.load();
                if !live.limits.topic_allowed(p.topic.as_str()) {
                    log::warn!(
                        "{}: PUBLISH topic beyond limits.max_topic_length or max_topic_levels, closing",
                        self.name()
                    );
                    Metrics::inc(&self.shared.metrics.limits_refused);
                    return self.close(ctx);
                }
                if !self.may_publish(&live, p.topic.as_str()) {
                    drop(live);
                    let session = session.clone();
                    return self.refuse_publish(p, &session);
                }
                drop(live);
                let backlog = self.backlog.token();
                match (p.qos, p.packet_id) {
                    (QoS::AtMostOnce, _) => {
                        self.shared
                            .router
                            .publish(Message::from_publish(&p), Some(backlog), None)
                    }
                    (QoS::AtLeastOnce, Some(id)) => {
                        // PUBACK once every durable copy (and a retained
                        // change) is committed: right after routing if none.
                        let puback = self.puback_in_turn(id);
                        let ack = Acknowledgement {
                            completion: puback,
                            group: None,
                        };
                        self.shared.router.publish(
                            Message::from_publish(&p),
                            Some(backlog),
                            Some(ack),
                        );
                    }
                    // QoS 2 needs the session's record of ids awaiting PUBREL.
                    _ => session.do_send(PublishQoS2 {
                        connection_id: self.id,
                        publish: p,
                        backlog,
                        refused: false,
                    }),
                }
            }
            Packet::PingReq => self.outbound.send(Packet::PingResp),
            Packet::Disconnect => {
                // A clean DISCONNECT discards the will [MQTT-3.14.4-3].
                self.will = None;
                log::debug!("{}: DISCONNECT", self.name());
                ctx.stop();
            }
            p
            @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_)) => {
                session.do_send(FromClient {
                    connection_id: self.id,
                    packet: p,
                })
            }
            p @ (Packet::Subscribe(_) | Packet::Unsubscribe(_)) => {
                // Later packets of this client wait until the session has
                // updated the shards and queued SUBACK/UNSUBACK: a PUBLISH
                // pipelined behind a SUBSCRIBE then reaches the new
                // subscription, and replies keep the order of the requests.
                let done = session
                    .send(FromClient {
                        connection_id: self.id,
                        packet: p,
                    })
                    .into_actor(self)
                    .map(|res, act, ctx| {
                        if res.is_err() {
                            log::warn!("{}: session ended while subscribing, closing", act.name());
                            act.close(ctx);
                        }
                    });
                ctx.wait(done);
            }
            Packet::Connect(_) => {
                log::warn!("{}: second CONNECT, closing [MQTT-3.1.0-2]", self.name());
                Metrics::inc(&self.shared.metrics.protocol_errors);
                self.close(ctx);
            }
            other @ (Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => {
                log::warn!(
                    "{}: sent {:?}, which only a server sends; closing",
                    self.name(),
                    other.packet_type()
                );
                Metrics::inc(&self.shared.metrics.protocol_errors);
                self.close(ctx);
            }
        }
    }
}

/// A client id suffix unique within this process and hard to guess across runs.
fn rand_id(connection_id: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(connection_id);
    h.finish()
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        Metrics::inc(&self.shared.metrics.connections_accepted);
        let timeout = Duration::from_secs(self.shared.live.load().limits.connect_timeout_secs);
        self.connect_timer = Some(ctx.run_later(timeout, move |act, ctx| {
            act.connect_timer = None;
            if matches!(act.phase, Phase::AwaitingConnect | Phase::Connecting) {
                log::info!("{}: no CONNECT within {:?}, closing", act.name(), timeout);
                act.close(ctx);
            }
        }));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        Metrics::inc(&self.shared.metrics.connections_closed);
        self.shared.open_connections.fetch_sub(1, Ordering::Relaxed);
        let phase = std::mem::replace(&mut self.phase, Phase::Closed);
        if let Phase::Connected { session } = phase {
            self.shared
                .metrics
                .clients_connected
                .fetch_sub(1, Ordering::Relaxed);
            let live = self.shared.live.load();
            let will = self
                .will
                .take()
                .map(|w| *w)
                .filter(|w| self.may_publish(&live, w.topic.as_str()));
            if let Some(will) = will {
                // Closed without DISCONNECT: publish the will [MQTT-3.1.2-8].
                log::debug!("{}: publishing will to {}", self.name(), will.topic);
                Metrics::inc(&self.shared.metrics.wills_published);
                let will = Message {
                    topic: will.topic,
                    payload: will.payload,
                    qos: will.qos,
                    retain: will.retain,
                };
                self.shared.router.publish(will, None, None);
            }
            session.do_send(Detach {
                connection_id: self.id,
            });
        }
        self.outbound.close();
        if let Some(writer) = self.writer.take() {
            actix_rt::spawn(async move {
                tokio::time::sleep(CLOSE_LINGER).await;
                writer.abort();
            });
        }
    }
}

impl StreamHandler<Result<Packet, CodecError>> for Connection {
    fn handle(&mut self, item: Result<Packet, CodecError>, ctx: &mut Context<Self>) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        // The connection id, not `name()`: formatting a name for every
        // packet would cost an allocation on the hot path.
        let id = self.id;
        if guard::<Packet, _>(ActorKind::Connection, &id, || self.on_item(item, ctx)).is_err() {
            // Never restarted: this connection closes (publishing its will),
            // every other client is untouched.
            log::info!("connection {id} was {}", self.name());
            Metrics::inc(&self.shared.metrics.connection_panics);
            self.close(ctx);
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        log::debug!("{}: socket closed by peer", self.name());
        ctx.stop();
    }
}

impl Connection {
    fn on_item(&mut self, item: Result<Packet, CodecError>, ctx: &mut Context<Self>) {
        match item {
            Ok(packet) => {
                self.last_packet = self.last_read.get();
                self.on_packet(packet, ctx);
            }
            Err(CodecError::Protocol(e)) => self.protocol_error(e, ctx),
            Err(CodecError::Io(e)) => {
                log::debug!("{}: read error: {e}", self.name());
                self.close(ctx);
            }
        }
    }
}

impl Handler<TakenOver> for Connection {
    type Result = ();

    fn handle(&mut self, _: TakenOver, ctx: &mut Context<Self>) {
        log::info!(
            "{}: closed: another connection took over this client id [MQTT-3.1.4-2]",
            self.name()
        );
        self.close(ctx);
    }
}

#[cfg(test)]
mod tests {
    /// Every client has a connection task: at 200 bytes or less the
    /// connection's task is 640 bytes, not 768 (tokio rounds a task up to
    /// 128 bytes). Box what an idle connection does not use before adding
    /// fields.
    #[test]
    fn an_idle_connection_fits_its_task_size_class() {
        assert!(std::mem::size_of::<super::Connection>() <= 200);
    }
}
