//! Connection actor: the only actor that reads a socket. It frames bytes
//! into packets, enforces the connection-level rules (CONNECT first and
//! within the connect timeout, one CONNECT only, keep-alive), publishes QoS
//! 0/1 messages straight to the router, hands everything stateful to its
//! Session, and publishes the will when it ends without DISCONNECT. Its
//! CONNECT handling is in [`connect`]; every close for a protocol
//! violation goes through `client::close`.
//!
//! A connection is never restarted: any failure is a disconnect.

mod connect;
mod ending;
mod publish;
mod runs;
mod stamped;

use super::messages::*;
use super::session::Session;
use crate::broker::durable::InOrder;
use crate::broker::net::backlog::RoutingBacklog;
use crate::broker::net::outbound::{self, Outbound};
use crate::broker::ops::metrics::Metrics;
use crate::broker::ops::restart::{guard, ActorKind};
use crate::broker::route::router::RoutesHeldBack;
use crate::broker::shared::Shared;
use crate::protocol::codec::CodecError;
use crate::protocol::{LastWill, MqttCodec, Packet, ProtocolError, ReasonCode, Reasoned};
use crate::session::connect::Credentials;
use actix::prelude::*;
use bytestring::ByteString;
use ending::Ending;
pub(in crate::broker) use publish::may_publish;
use runs::{Read, Runs};
use stamped::Stamped;
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
    /// Known once CONNECT is accepted.
    protocol: Option<crate::protocol::ProtocolVersion>,
    /// The user name of CONNECT (or of the client certificate), for the ACL.
    username: Option<ByteString>,
    /// Its session outlives the connection (known once CONNECT is accepted).
    durable: bool,
    /// Its session's id in the shards' index, once attached: what it
    /// publishes comes from it (No Local).
    session_id: Option<crate::broker::route::messages::SessionId>,
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
    /// Whether a PUBLISH the ACL refused was logged: the first is, the
    /// rest are only counted.
    acl_denial_logged: bool,
    /// PUBACKs go out in the order of the PUBLISHes [MQTT-4.6.0-2], though
    /// some wait for a commit and others only for routing.
    pubacks: InOrder,
    /// Closes the connection if CONNECT has not been handled in time;
    /// cancelled once it has.
    connect_timer: Option<SpawnHandle>,
    /// Why it ends, once it does.
    ending: Ending,
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
pub(in crate::broker) fn start_with<R, W>(
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
    let backlog = RoutingBacklog::new(limits.max_routing_backlog);
    let (outbound, gate, writer) = outbound::spawn_writer(
        write,
        limits.max_outbound_bytes,
        Some(backlog.clone()),
        Some(shared.metrics.clone()),
    );
    let codec =
        MqttCodec::new(limits.max_packet_size).with_topic_alias_maximum(limits.topic_alias_maximum);
    let id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
    Connection::create(move |ctx| {
        let last_read = Rc::new(Cell::new(Instant::now()));
        let read = Stamped {
            inner: read,
            last_read: last_read.clone(),
        };
        // A small first buffer: most connections sit idle after CONNECT, and
        // the buffer grows as needed for larger packets.
        let packets = FramedRead::with_capacity(read, codec, READ_BUFFER_INITIAL);
        ctx.add_stream(Runs::new(gate.wrap(packets)));
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
            acl_denial_logged: false,
            pubacks: InOrder::default(),
            connect_timer: None,
            ending: Ending::Stopped,
        }
    });
}

impl Connection {
    /// The protocol version of an accepted CONNECT.
    fn protocol(&self) -> Option<crate::protocol::ProtocolVersion> {
        self.identity.as_ref().and_then(|i| i.protocol)
    }

    pub(super) fn name(&self) -> String {
        match &self.identity {
            Some(i) => format!("client {:?} ({})", i.client_id, self.peer),
            None => format!("connection from {}", self.peer),
        }
    }

    /// Per-connection keep-alive timer: fires when the client could first be
    /// late and re-arms for the rest of the interval if it was not.
    pub(super) fn schedule_keep_alive(&mut self, after: Duration, ctx: &mut Context<Self>) {
        ctx.run_later(after, |act, ctx| {
            let Some(limit) = act.keep_alive_limit else {
                return;
            };
            let idle = act.last_packet.elapsed();
            if idle >= limit {
                log::info!(
                    "{}: keep-alive expired after {:.1} s of silence, closing [MQTT-3.1.2-24]",
                    act.name(),
                    idle.as_secs_f64()
                );
                act.close(Ending::KeepAlive, ctx);
            } else {
                act.schedule_keep_alive(limit - idle, ctx);
            }
        });
    }

    fn on_packet(&mut self, packet: Packet, ctx: &mut Context<Self>) {
        let session = match &self.phase {
            Phase::AwaitingConnect => {
                return match packet {
                    Packet::Connect(c) => {
                        // Everything sent from now on is in its version
                        // (the codec reads in it already).
                        self.outbound.set_version(c.version);
                        if let Some(max) = c.properties().maximum_packet_size {
                            self.outbound.set_max_packet_size(max);
                        }
                        // Aliases for the topics sent to it, within roost's
                        // bound on what a connection keeps.
                        if let Some(max) = c.properties().topic_alias_maximum {
                            let bound = self.shared.live.load().limits.topic_alias_maximum;
                            self.outbound.set_topic_alias_maximum(max.min(bound));
                        }
                        // On a listener with `use_identity_as_username`, the
                        // client certificate is the credential.
                        let credentials = match self.certificate_identity.take() {
                            Some(identity) => Credentials::Certificate(*identity),
                            None => Credentials::Unchecked,
                        };
                        let live = self.shared.live.load_full();
                        self.on_connect(*c, credentials, live, ctx)
                    }
                    other => self.protocol_error(
                        ProtocolError::FirstPacketNotConnect(other.packet_type()),
                        ctx,
                    ),
                };
            }
            Phase::Connected { session } => session,
            // `wait` holds packets back while connecting; nothing is read once closed.
            Phase::Connecting | Phase::Closed => return,
        };
        match packet {
            Packet::Publish(p) => {
                let session = session.clone();
                self.on_publish(p, &session, ctx)
            }
            Packet::PingReq => self.outbound.send(Packet::PingResp),
            Packet::Disconnect(d) => {
                // 5.0: the Session Expiry Interval may change here, but not
                // from 0 (section 3.14.2.2.2); to 0, the session ends now.
                let expiry = d.properties().session_expiry_interval;
                let durable = self.identity.as_ref().is_some_and(|i| i.durable);
                if expiry.is_some_and(|e| e > 0) && !durable {
                    return self.protocol_error(ProtocolError::SessionExpiryFromZero, ctx);
                }
                // A DISCONNECT discards the will [MQTT-3.14.4-3], unless a
                // 5.0 client asks for it with 0x04.
                if d.reason != ReasonCode::DISCONNECT_WITH_WILL {
                    self.will = None;
                }
                let end_session = durable && expiry == Some(0);
                // A new interval for the session that goes on, within
                // `session.expiry_secs`.
                if let (Some(secs @ 1..), true) = (expiry, durable) {
                    if let Some(identity) = &self.identity {
                        self.shared.registry.do_send(SetExpiry {
                            client_id: identity.client_id.clone(),
                            expiry: crate::session::connect::session_expiry(
                                secs,
                                self.shared.max_session_expiry,
                            ),
                        });
                    }
                }
                self.close(Ending::Disconnect { end_session }, ctx);
            }
            // Read in runs (see `acks`); one alone is a run of one.
            p
            @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_)) => {
                self.on_acks(vec![p], ctx)
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
                            act.close(Ending::SessionEnded, ctx);
                        }
                    });
                ctx.wait(done);
            }
            Packet::Connect(_) => self.protocol_error(ProtocolError::SecondConnect, ctx),
            // Enhanced authentication is not offered yet: no client may
            // send AUTH unasked (section 4.12).
            Packet::Auth(_) => self.protocol_error(ProtocolError::AuthWithoutMethod, ctx),
            other @ (Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => {
                self.protocol_error(ProtocolError::ServerPacket(other.packet_type()), ctx)
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
        // Counted accepted by the listener, which counted it open.
        let timeout = Duration::from_secs(self.shared.live.load().limits.connect_timeout_secs);
        self.connect_timer = Some(ctx.run_later(timeout, move |act, ctx| {
            act.connect_timer = None;
            if matches!(act.phase, Phase::AwaitingConnect | Phase::Connecting) {
                log::info!(
                    "{}: no CONNECT within {} s (limits.connect_timeout_secs), closing",
                    act.name(),
                    timeout.as_secs()
                );
                act.close(Ending::Refused, ctx);
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
            if let Some(protocol) = self.protocol() {
                self.shared.metrics.clients_connected_by_protocol[protocol.index()]
                    .fetch_sub(1, Ordering::Relaxed);
            }
            // Closed without DISCONNECT: the will is due [MQTT-3.1.2-8].
            let published = self.publish_will();
            log::info!(
                "{} disconnected: {}{}",
                self.name(),
                self.ending.describe(),
                if published { "; will published" } else { "" }
            );
            session.do_send(Detach {
                connection_id: self.id,
                end_session: matches!(self.ending, Ending::Disconnect { end_session: true }),
            });
            if let (true, Some(reason)) = (
                self.outbound.version().is_v5(),
                self.ending.disconnect_reason(),
            ) {
                self.outbound
                    .send(Packet::Disconnect(Reasoned::new(reason)));
            }
        }
        self.outbound.close();
        if let Some(mut writer) = self.writer.take() {
            // Ends with the writer: nothing of a closed connection is kept
            // longer than its flush takes.
            actix_rt::spawn(async move {
                if tokio::time::timeout(CLOSE_LINGER, &mut writer)
                    .await
                    .is_err()
                {
                    writer.abort();
                }
            });
        }
    }
}

impl StreamHandler<Read> for Connection {
    fn handle(&mut self, item: Read, ctx: &mut Context<Self>) {
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
            self.close(Ending::Failed, ctx);
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.close(Ending::PeerClosed, ctx);
    }
}

impl Connection {
    fn on_item(&mut self, item: Read, ctx: &mut Context<Self>) {
        let item = match item {
            Read::One(item) => item,
            Read::Acks(acks) => return self.on_acks(acks, ctx),
            Read::Publishes(publishes) => return self.on_publishes(publishes, ctx),
        };
        match item {
            Ok(packet) => {
                self.last_packet = self.last_read.get();
                self.on_packet(packet, ctx);
            }
            Err(CodecError::Protocol(e)) => self.protocol_error(e, ctx),
            Err(CodecError::Io(e)) => {
                log::debug!("{}: read error: {e}", self.name());
                self.close(Ending::ReadError(e.kind()), ctx);
            }
        }
    }
}

impl Connection {
    /// A run of QoS 0/1 PUBLISHes: each handled as if alone, their routes
    /// sent to each shard together (see `route::router::RoutesHeldBack`).
    fn on_publishes(&mut self, publishes: Vec<Packet>, ctx: &mut Context<Self>) {
        self.last_packet = self.last_read.get();
        let _held = RoutesHeldBack::new();
        for packet in publishes {
            // One of them closed the connection: the rest are not handled,
            // as they would not have been read.
            if ctx.state() != ActorState::Running {
                break;
            }
            self.on_packet(packet, ctx);
        }
    }

    /// Acknowledgements read one after another go to the session in one
    /// message (see `runs`); before CONNECT, each is the protocol error
    /// it is alone.
    fn on_acks(&mut self, acks: Vec<Packet>, ctx: &mut Context<Self>) {
        self.last_packet = self.last_read.get();
        match &self.phase {
            Phase::Connected { session } => session.do_send(ClientAcks {
                connection_id: self.id,
                acks,
                backlog: self.backlog.token(),
            }),
            _ => {
                for ack in acks {
                    self.on_packet(ack, ctx);
                }
            }
        }
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

    /// actix boxes the read stream with a flag of its own: at 88 bytes or
    /// less the box is 96 bytes (jemalloc's class), not 112.
    #[test]
    fn the_read_stream_fits_its_size_class() {
        type Packets = tokio_util::codec::FramedRead<
            super::Stamped<tokio::net::tcp::OwnedReadHalf>,
            crate::protocol::MqttCodec,
        >;
        type Stream = super::Runs<crate::broker::net::outbound::Gated<Packets>>;
        assert!(std::mem::size_of::<Stream>() <= 88);
    }
}
