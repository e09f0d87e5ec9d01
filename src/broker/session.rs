//! Session actor: actix glue around `session::SessionState`. One per client
//! id; it outlives its connection when the session is persistent. It owns
//! the client's subscriptions in the topic shards and writes the packets the
//! state machine produces to the attached connection's outbound queue.

use super::connection::Connection;
use super::messages::*;
use super::metrics::Metrics;
use super::outbound::Outbound;
use super::registry::SessionRegistry;
use super::router::Router;
use crate::protocol::{ConnAck, ConnectReturnCode, Packet, SubAck, SubscribeReturnCode};
use crate::session::{DeliverOutcome, Message, SessionLimits, SessionState};
use actix::prelude::*;
use bytestring::ByteString;
use std::sync::Arc;

/// How often one session may log that it drops messages.
const DROP_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

struct Attached {
    connection_id: ConnectionId,
    connection: Addr<Connection>,
    outbound: Outbound,
}

pub struct Session {
    id: SessionId,
    client_id: ByteString,
    /// Clean session 1: the session ends with its connection.
    clean: bool,
    state: SessionState,
    attached: Option<Attached>,
    /// The newest registration generation seen (see `Register`).
    generation: u64,
    router: Router,
    registry: Addr<SessionRegistry>,
    metrics: Arc<Metrics>,
    /// Drops not yet logged: a flood is logged at most every
    /// `DROP_LOG_INTERVAL`, with counts, never once per message.
    unlogged_drops: u64,
    last_drop_log: Option<std::time::Instant>,
    /// Reused for the packets of each event.
    out: Vec<Packet>,
}

impl Session {
    pub(super) fn new(
        id: SessionId,
        client_id: ByteString,
        clean: bool,
        limits: SessionLimits,
        router: Router,
        registry: Addr<SessionRegistry>,
        metrics: Arc<Metrics>,
    ) -> Session {
        Session {
            id,
            client_id,
            clean,
            state: SessionState::new(limits),
            attached: None,
            generation: 0,
            router,
            registry,
            metrics,
            unlogged_drops: 0,
            last_drop_log: None,
            out: Vec::new(),
        }
    }

    /// Whether `connection_id` is the attached connection (not one taken over).
    fn is_current(&self, connection_id: ConnectionId) -> bool {
        self.attached.as_ref().is_some_and(|a| a.connection_id == connection_id)
    }

    /// Writes the packets the last event produced.
    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        match &self.attached {
            Some(a) => {
                for p in self.out.drain(..) {
                    if matches!(p, Packet::Publish(_)) {
                        Metrics::inc(&self.metrics.publishes_sent);
                    }
                    a.outbound.send(p);
                }
            }
            None => self.out.clear(),
        }
    }

    fn deliver(&mut self, message: Message) {
        let writable = self.attached.as_ref().is_some_and(|a| a.outbound.is_writable());
        let outcome = self.state.deliver(message, writable, &mut self.out);
        let counter = match outcome {
            DeliverOutcome::Sent | DeliverOutcome::Queued => return,
            DeliverOutcome::DroppedSlowClient => &self.metrics.dropped_slow_client,
            DeliverOutcome::DroppedQueueFull => &self.metrics.dropped_queue_full,
            DeliverOutcome::DroppedOffline => {
                // QoS 0 for an offline client: expected, counted, not logged.
                Metrics::inc(&self.metrics.dropped_offline_qos0);
                return;
            }
        };
        Metrics::inc(counter);
        self.unlogged_drops += 1;
        if self.last_drop_log.is_none_or(|t| t.elapsed() >= DROP_LOG_INTERVAL) {
            log::warn!(
                "client {}: dropped {} message(s) at a bound ({:?}; queued {}, see [session] and [limits] in the config)",
                self.client_id,
                self.unlogged_drops,
                outcome,
                self.state.queued_len()
            );
            self.unlogged_drops = 0;
            self.last_drop_log = Some(std::time::Instant::now());
        }
    }

    fn log_unlogged_drops(&mut self) {
        if self.unlogged_drops > 0 {
            log::warn!("client {}: dropped {} more message(s) at a bound", self.client_id, self.unlogged_drops);
            self.unlogged_drops = 0;
        }
    }

    fn remove_all_subscriptions(&mut self) {
        let filters: Vec<_> = self.state.subscriptions().map(|(f, _)| f.clone()).collect();
        for f in &filters {
            self.router.unsubscribe(self.id, f);
            self.state.unsubscribe(f);
        }
    }

    fn on_client_packet(&mut self, packet: Packet, ctx: &mut Context<Self>) {
        match packet {
            Packet::PubAck(id) => {
                if !self.state.on_puback(id, &mut self.out) {
                    log::debug!("client {}: PUBACK for unknown packet id {id}", self.client_id);
                }
            }
            Packet::PubRec(id) => {
                if !self.state.on_pubrec(id, &mut self.out) {
                    log::debug!("client {}: PUBREC for unknown packet id {id}", self.client_id);
                }
            }
            Packet::PubComp(id) => {
                if !self.state.on_pubcomp(id, &mut self.out) {
                    log::debug!("client {}: PUBCOMP for unknown packet id {id}", self.client_id);
                }
            }
            Packet::PubRel(id) => self.state.on_pubrel(id, &mut self.out),
            Packet::Subscribe(s) => {
                let me = ctx.address();
                let mut codes = Vec::with_capacity(s.topics.len());
                for t in &s.topics {
                    // roost supports every QoS, so the granted QoS is the
                    // requested one [MQTT-3.9.3-1].
                    self.state.subscribe(t.filter.clone(), t.qos);
                    self.router.subscribe(self.id, &me, &t.filter, t.qos);
                    codes.push(SubscribeReturnCode::Granted(t.qos));
                }
                self.out.push(Packet::SubAck(SubAck { packet_id: s.packet_id, codes }));
                self.flush();
                // Retained messages follow the SUBACK, for every filter, even
                // a repeated one [MQTT-3.3.1-6] [MQTT-3.8.4-3].
                for t in s.topics {
                    self.router.retained().do_send(LookupRetained { filter: t.filter, qos: t.qos, session: me.clone() });
                }
            }
            Packet::Unsubscribe(u) => {
                for f in &u.filters {
                    if self.state.unsubscribe(f) {
                        self.router.unsubscribe(self.id, f);
                    }
                }
                self.out.push(Packet::UnsubAck(u.packet_id));
            }
            other => log::debug!("client {}: session ignores {:?}", self.client_id, other.packet_type()),
        }
        self.flush();
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        log::debug!("session {} for {:?} started (clean: {})", self.id, self.client_id, self.clean);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        log::debug!("session {} for {:?} ended", self.id, self.client_id);
    }
}

impl Handler<Attach> for Session {
    type Result = Result<(), Superseded>;

    fn handle(&mut self, msg: Attach, _: &mut Context<Self>) -> Self::Result {
        if msg.generation < self.generation {
            return Err(Superseded);
        }
        self.generation = msg.generation;
        if let Some(old) = self.attached.take() {
            // A new connection for the same client id closes the old one [MQTT-3.1.4-2].
            log::info!("client {}: taken over by a new connection, closing the old one", self.client_id);
            Metrics::inc(&self.metrics.takeovers);
            old.connection.do_send(TakenOver);
        }
        self.attached =
            Some(Attached { connection_id: msg.connection_id, connection: msg.connection, outbound: msg.outbound });
        self.out.push(Packet::ConnAck(ConnAck { session_present: msg.session_present, code: ConnectReturnCode::Accepted }));
        self.state.attach(&mut self.out);
        self.flush();
        Ok(())
    }
}

impl Handler<Detach> for Session {
    type Result = ();

    fn handle(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        if !self.is_current(msg.connection_id) {
            return; // a connection that was already taken over
        }
        self.attached = None;
        self.state.detach();
        self.log_unlogged_drops();
        if self.clean {
            self.remove_all_subscriptions();
            self.registry.do_send(SessionEnded { client_id: self.client_id.clone(), session_id: self.id });
            ctx.stop();
        }
    }
}

impl Handler<Discard> for Session {
    type Result = ();

    fn handle(&mut self, _: Discard, ctx: &mut Context<Self>) {
        if let Some(old) = self.attached.take() {
            log::info!("client {}: taken over by a new clean session, closing the old connection", self.client_id);
            Metrics::inc(&self.metrics.takeovers);
            old.connection.do_send(TakenOver);
        }
        self.remove_all_subscriptions();
        ctx.stop();
    }
}

impl Handler<FromClient> for Session {
    type Result = ();

    fn handle(&mut self, msg: FromClient, ctx: &mut Context<Self>) {
        if self.is_current(msg.connection_id) {
            self.on_client_packet(msg.packet, ctx);
        }
    }
}

impl Handler<PublishQoS2> for Session {
    type Result = ();

    fn handle(&mut self, msg: PublishQoS2, _: &mut Context<Self>) {
        if !self.is_current(msg.connection_id) {
            return;
        }
        let Some(id) = msg.publish.packet_id else { return };
        if self.state.on_inbound_qos2(id) {
            self.router.publish(Message::from_publish(&msg.publish), Some(msg.backlog));
        }
        // PUBREC whether or not it was a duplicate [MQTT-4.3.3-2].
        self.out.push(Packet::PubRec(id));
        self.flush();
    }
}

impl Handler<Deliver> for Session {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        let mut message = msg.message;
        // Delivered QoS is the lower of published and granted; normal
        // forwarding clears RETAIN [MQTT-3.3.1-9].
        message.qos = message.qos.min(msg.qos);
        message.retain = false;
        self.deliver(message);
        self.flush();
    }
}

impl Handler<DeliverRetained> for Session {
    type Result = ();

    fn handle(&mut self, msg: DeliverRetained, _: &mut Context<Self>) {
        for mut message in msg.messages {
            message.qos = message.qos.min(msg.qos);
            message.retain = true;
            self.deliver(message);
        }
        self.flush();
    }
}
