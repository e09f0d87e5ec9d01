//! What the client sends that its session handles: acknowledgements of
//! outbound messages (PUBACK, PUBREC, PUBCOMP) and of inbound ones
//! (PUBREL), SUBSCRIBE and UNSUBSCRIBE, and QoS 2 PUBLISHes, whose packet
//! ids the session keeps until PUBREL.

use super::deliver::SendRetained;
use super::Session;
use crate::broker::client::messages::{ClientAcks, Close, Detach, FromClient, PublishQoS2};
use crate::broker::durable::{Acknowledgement, Reply, WriteGroup};
use crate::broker::ops::log_limit::SUBSCRIBE_REFUSALS;
use crate::broker::ops::metrics::Metrics;
use crate::broker::ops::restart::{guard, ActorKind};
use crate::message::Message;
use crate::protocol::{
    Ack, Packet, PacketId, ProtocolError, QoS, ReasonCode, SubAck, Subscribe, TopicFilter,
    Unsubscribe,
};
use crate::session::SubscribeRefusal;
use crate::store::Op;
use actix::prelude::*;
use std::sync::atomic::Ordering;

impl Handler<FromClient> for Session {
    /// A future for SUBSCRIBE and UNSUBSCRIBE: the connection waits for
    /// them (acknowledgements come as `ClientAcks`).
    type Result = Response<()>;

    fn handle(&mut self, msg: FromClient, ctx: &mut Context<Self>) -> Self::Result {
        let id = self.client_id.clone();
        let reply = match guard::<FromClient, _>(ActorKind::Session, &id, || {
            self.handle_client_packet(msg, ctx)
        }) {
            Ok(reply) => reply,
            Err(_) => {
                self.recover();
                Response::reply(())
            }
        };
        self.request_page(ctx);
        reply
    }
}

impl Handler<ClientAcks> for Session {
    type Result = ();

    /// A run of acknowledgements is one event: the packets it sends (the
    /// messages it frees room for, PUBRELs, PUBCOMPs) go to the client
    /// together, with one wake-up of its writer.
    fn handle(&mut self, msg: ClientAcks, ctx: &mut Context<Self>) {
        if !self.is_current(msg.connection_id) {
            return;
        }
        let id = self.client_id.clone();
        let connection_id = msg.connection_id;
        let mut violation = None;
        let handled = guard::<ClientAcks, _>(ActorKind::Session, &id, || {
            self.begin_gathering();
            for ack in msg.acks {
                // The acknowledgements behind a violation would not have
                // been read.
                violation = self.on_ack(ack);
                if violation.is_some() {
                    break;
                }
            }
            self.run(None);
        });
        if handled.is_err() {
            self.recover();
        }
        self.end_gathering();
        if let Some(violation) = violation {
            // The connection closes; until it does it may still read, so
            // the session lets go of it now, as when it closes: nothing
            // more it hands on counts (a message in flight stays to be
            // resent to a persistent session's next connection).
            if let Some(attached) = &self.attached {
                attached.connection.do_send(Close::Violation(violation));
            }
            self.detach(
                Detach {
                    connection_id,
                    end_session: false,
                },
                ctx,
            );
            return;
        }
        self.request_page(ctx);
    }
}

impl Session {
    fn handle_client_packet(&mut self, msg: FromClient, ctx: &mut Context<Self>) -> Response<()> {
        if !self.is_current(msg.connection_id) {
            return Response::reply(());
        }
        match msg.packet {
            Packet::Subscribe(s) => Response::fut(self.on_subscribe(s, ctx)),
            Packet::Unsubscribe(u) => Response::fut(self.on_unsubscribe(u)),
            other => {
                log::debug!(
                    "client {:?}: session ignores {}",
                    self.client_id,
                    other.packet_type()
                );
                Response::reply(())
            }
        }
    }

    /// One acknowledgement, into the state machine (the caller runs its
    /// actions); an acknowledgement of the wrong type for a packet id in
    /// flight is a protocol violation, returned and not applied.
    fn on_ack(&mut self, ack: Packet) -> Option<ProtocolError> {
        if let Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubComp(a) = &ack {
            let id = a.packet_id;
            if let Some(expected) = self.state.wrong_ack(ack.packet_type(), id) {
                return Some(ProtocolError::AckOfWrongType {
                    got: ack.packet_type(),
                    expected,
                    packet_id: id.get(),
                });
            }
        }
        let (known, packet, id) = match ack {
            Packet::PubAck(Ack { packet_id: id, .. }) => {
                (self.state.on_puback(id, &mut self.out), "PUBACK", id)
            }
            Packet::PubRec(Ack {
                packet_id: id,
                reason,
                ..
            }) if reason.is_error() => (
                self.state.on_pubrec_refused(id, &mut self.out),
                "PUBREC",
                id,
            ),
            Packet::PubRec(Ack { packet_id: id, .. }) => {
                (self.state.on_pubrec(id, &mut self.out), "PUBREC", id)
            }
            Packet::PubComp(Ack { packet_id: id, .. }) => {
                (self.state.on_pubcomp(id, &mut self.out), "PUBCOMP", id)
            }
            Packet::PubRel(Ack { packet_id: id, .. }) => {
                self.state.on_pubrel(id, &mut self.out);
                return None;
            }
            other => {
                log::debug!(
                    "client {:?}: session ignores {}",
                    self.client_id,
                    other.packet_type()
                );
                return None;
            }
        };
        if !known {
            log::debug!(
                "client {:?}: {packet} for unknown packet id {id}",
                self.client_id
            );
        }
        None
    }
}

impl Session {
    /// SUBSCRIBE: the state machine decides on each filter (see
    /// `session::Subscriptions`); the granted ones go to the topic shards
    /// and, for a durable session, to the store. SUBACK, then the retained
    /// messages of every granted filter (even a repeated one)
    /// [MQTT-3.3.1-6] [MQTT-3.8.4-3], go out once the subscriptions are
    /// committed; the connection reads nothing more until then.
    fn on_subscribe(&mut self, s: Subscribe, ctx: &mut Context<Self>) -> ResponseFuture<()> {
        let me = ctx.address();
        let live = self.deps.live.load();
        let (username, client_id) = (&self.username, &self.client_id);
        // One Subscription Identifier for the packet's filters (section
        // 3.8.2.1.2).
        let id = (s.properties().subscription_identifiers.first())
            .and_then(|id| std::num::NonZeroU32::new(*id));
        let outcome = self
            .state
            .on_subscribe(&s.topics, id, &live.limits, |filter| {
                live.auth.acl.as_ref().is_none_or(|acl| {
                    acl.allows_subscribe(username.as_deref(), client_id, filter.as_str())
                })
            });
        // Refused like Mosquitto, SUBACK 0x80 [MQTT-3.9.3-2]: counted one by
        // one, logged as one line per packet (see `log_limit`).
        let by_acl = outcome
            .refused
            .iter()
            .filter(|(_, r)| *r == SubscribeRefusal::Acl)
            .count();
        let by_limit = outcome.refused.len() - by_acl;
        let m = &self.deps.metrics;
        m.acl_denied.fetch_add(by_acl as u64, Ordering::Relaxed);
        m.limits_refused
            .fetch_add(by_limit as u64, Ordering::Relaxed);
        if let Some((first, _)) = outcome.refused.first() {
            if SUBSCRIBE_REFUSALS.allow() {
                let user = match &self.username {
                    Some(user) => format!("user {:?}", &**user),
                    None => "no user name".to_string(),
                };
                log::warn!(
                    "client {:?}, {user}: SUBSCRIBE: {} filter(s) refused with 0x80 ({by_acl} by the ACL, {by_limit} by a limit: topic length or levels, or subscriptions per client), the first {:?}",
                    self.client_id,
                    outcome.refused.len(),
                    first.as_str()
                );
            }
        }
        let mut inbox = None;
        for g in &outcome.granted {
            if g.new {
                Metrics::inc(&self.deps.metrics.subscriptions);
            }
            let to = match &inbox {
                Some(to) => to,
                None => inbox.insert(self.inbox_handle(me.clone())),
            };
            self.deps.router.subscribe(
                self.id,
                to,
                &g.filter,
                g.subscription.grant,
                self.state.is_durable(),
                None,
            );
        }
        let suback = self.attached.as_ref().map(|a| {
            let codes = outcome.codes;
            Reply::new(
                a.outbound.clone(),
                Packet::SubAck(SubAck::new(s.packet_id, codes)),
            )
        });
        // Retained messages as each filter's Retain Handling says.
        let lookups: Vec<(TopicFilter, QoS)> = outcome
            .granted
            .iter()
            .filter(|g| g.send_retained)
            .map(|g| (g.filter.clone(), g.subscription.grant.qos()))
            .collect();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = Reply::then(suback, move || {
            if !lookups.is_empty() {
                me.do_send(SendRetained(lookups));
            }
            let _ = tx.send(());
        });
        if self.state.is_durable() {
            for g in outcome.granted {
                let op = Op::Subscribe {
                    client_id: self.client_id.clone(),
                    filter: g.filter,
                    subscription: g.subscription,
                };
                self.write(op, Some(done.clone()));
            }
        }
        drop(done);
        Box::pin(async move {
            let _ = rx.await;
        })
    }

    /// UNSUBSCRIBE: UNSUBACK once the removal is committed (durable).
    fn on_unsubscribe(&mut self, u: Unsubscribe) -> ResponseFuture<()> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Whether each filter was subscribed: 5.0 says so in the UNSUBACK.
        let existed: Vec<bool> = u
            .filters
            .iter()
            .map(|f| self.state.unsubscribe(f))
            .collect();
        let codes = existed
            .iter()
            .map(|&existed| match existed {
                true => ReasonCode::SUCCESS,
                false => ReasonCode::NO_SUBSCRIPTION_EXISTED,
            })
            .collect();
        let unsuback = self.attached.as_ref().map(|a| {
            Reply::new(
                a.outbound.clone(),
                Packet::UnsubAck(SubAck::new(u.packet_id, codes)),
            )
        });
        let done = Reply::then(unsuback, move || {
            let _ = tx.send(());
        });
        for (f, existed) in u.filters.into_iter().zip(existed) {
            if existed {
                self.deps
                    .metrics
                    .subscriptions
                    .fetch_sub(1, Ordering::Relaxed);
                self.deps.router.unsubscribe(self.id, &f);
                if self.state.is_durable() {
                    self.write(
                        Op::Unsubscribe {
                            client_id: self.client_id.clone(),
                            filter: f,
                        },
                        Some(done.clone()),
                    );
                }
            }
        }
        drop(done);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

impl Handler<PublishQoS2> for Session {
    type Result = ();

    fn handle(&mut self, msg: PublishQoS2, _: &mut Context<Self>) {
        let id = self.client_id.clone();
        if guard::<PublishQoS2, _>(ActorKind::Session, &id, || self.publish_qos2(msg)).is_err() {
            self.recover();
        }
    }
}

impl Session {
    fn publish_qos2(&mut self, msg: PublishQoS2) {
        if !self.is_current(msg.connection_id) {
            return;
        }
        let Some(packet_id) = msg.publish.packet_id else {
            return;
        };
        if let Some(reason) = msg.refused {
            self.pubrec_in_turn(packet_id, reason);
            return;
        }
        if self.held.take_abandoned_pubrec(packet_id) {
            // The first PUBLISH with this id was never acknowledged: the
            // commit of its id and copies failed. This one is stored and
            // routed as new; acknowledging it as a duplicate would tell
            // the client a message nobody stored is safe.
            self.state.forget_inbound_qos2(packet_id, &mut self.out);
            self.run(None);
        }
        if self.state.on_inbound_qos2(packet_id, &mut self.out) {
            // PUBREC once the id and every stored copy are durable, all in
            // one transaction (see `WriteGroup`).
            let token = msg.backlog;
            let ack = self.attached.as_ref().map(|a| {
                let outbound = a.outbound.clone();
                let completion = self.held.pubrec_later(outbound, packet_id, token);
                self.pubrecs.push(&completion);
                Acknowledgement {
                    completion,
                    group: Some(WriteGroup::new(self.deps.store.clone())),
                }
            });
            self.run(ack.as_ref());
            self.deps.router.publish_from(
                Some(self.id),
                Message::from_publish(&msg.publish),
                None,
                ack,
            );
        } else {
            // A resent PUBLISH: PUBREC again, but no second delivery [MQTT-4.3.3-2].
            self.pubrec_in_turn(packet_id, ReasonCode::SUCCESS);
        }
    }

    /// A PUBREC that waits for no commit, sent after the PUBRECs of earlier
    /// QoS 2 PUBLISHes that do.
    fn pubrec_in_turn(&mut self, packet_id: PacketId, reason: ReasonCode) {
        if let Some(a) = &self.attached {
            let pubrec = Reply::new(
                a.outbound.clone(),
                Packet::PubRec(Ack::with_reason(packet_id, reason)),
            );
            self.pubrecs.push(&pubrec.on_completion());
        }
    }
}
