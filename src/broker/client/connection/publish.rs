//! A client's PUBLISH: checked against `[limits]`, the ACL and (5.0) its
//! payload format, then routed; a refused one is still acknowledged, in
//! turn with the acknowledgements of earlier PUBLISHes.

use super::{connect, Connection};
use crate::broker::client::messages::PublishQoS2;
use crate::broker::client::session::Session;
use crate::broker::durable::{Acknowledgement, Completion, Reply};
use crate::broker::live::Reloadable;
use crate::broker::net::backlog::BacklogToken;
use crate::broker::ops::log_limit::PUBLISH_REFUSALS;
use crate::broker::ops::metrics::Metrics;
use crate::message::Message;
use crate::protocol::{Ack, Packet, ProtocolError, Publish, QoS, ReasonCode};
use actix::prelude::*;

impl Connection {
    /// A PUBLISH of a connected client, its session `session`.
    pub(super) fn on_publish(
        &mut self,
        p: Publish,
        session: &Addr<Session>,
        ctx: &mut Context<Self>,
    ) {
        Metrics::inc(&self.shared.metrics.publishes_received);
        // One snapshot of the reloadable settings per PUBLISH.
        let live = self.shared.live.load();
        if !live.limits.topic_allowed(p.topic.as_str()) {
            let topic = p.topic.as_str();
            let error = ProtocolError::TopicBeyondLimits {
                length: topic.len(),
                levels: topic.split('/').count(),
            };
            return self.protocol_error(error, ctx);
        }
        if !self.may_publish(&live, p.topic.as_str()) {
            drop(live);
            return self.refuse_publish_by_acl(p, session);
        }
        drop(live);
        // 5.0: a payload said to be UTF-8 is checked (section 3.3.2.3.2):
        // one that is not gets 0x99, and for QoS 0, which has no
        // acknowledgement, DISCONNECT 0x99.
        if p.properties().payload_format_indicator == Some(1)
            && std::str::from_utf8(&p.payload).is_err()
        {
            if p.qos == QoS::AtMostOnce {
                return self.protocol_error(ProtocolError::PayloadNotUtf8, ctx);
            }
            return self.refuse_publish(p, session, ReasonCode::PAYLOAD_FORMAT_INVALID);
        }
        let backlog = self.backlog.token();
        match (p.qos, p.packet_id) {
            (QoS::AtMostOnce, _) => {
                let origin = self.identity.as_ref().and_then(|i| i.session_id);
                self.shared.router.publish_from(
                    origin,
                    Message::from_publish(&p),
                    Some(backlog),
                    None,
                )
            }
            (QoS::AtLeastOnce, Some(id)) => {
                // PUBACK once every durable copy (and a retained
                // change) is committed: right after routing if none.
                // The backlog token goes with it, so that PUBACKs
                // waiting for a commit count against the backlog.
                let puback = self.puback_in_turn(Ack::new(id), backlog);
                let ack = Acknowledgement {
                    completion: puback,
                    group: None,
                };
                let origin = self.identity.as_ref().and_then(|i| i.session_id);
                self.shared
                    .router
                    .publish_from(origin, Message::from_publish(&p), None, Some(ack));
            }
            // QoS 2 needs the session's record of ids awaiting PUBREL.
            _ => session.do_send(PublishQoS2 {
                connection_id: self.id,
                publish: p,
                backlog,
                refused: None,
            }),
        }
    }

    /// Whether the ACL of `live` (if any) lets this client publish to `topic`.
    pub(super) fn may_publish(&self, live: &Reloadable, topic: &str) -> bool {
        may_publish(
            live,
            self.identity.as_ref().and_then(|i| i.username.as_deref()),
            self.identity.as_ref().map_or("", |i| &i.client_id),
            topic,
        )
    }

    /// A PUBLISH the ACL refuses: dropped and counted; acknowledged, so
    /// the client does not resend it forever (MQTT 3.1.1 cannot say no; a
    /// 5.0 client is told 0x87, not authorized).
    fn refuse_publish_by_acl(&mut self, p: Publish, session: &Addr<Session>) {
        Metrics::inc(&self.shared.metrics.acl_denied);
        if !std::mem::replace(&mut self.acl_denial_logged, true) && PUBLISH_REFUSALS.allow() {
            let user = self.identity.as_ref().and_then(|i| i.username.as_deref());
            log::warn!(
                "{}, {}: PUBLISH to {:?} dropped: the ACL does not let this user write it (further ones are only counted)",
                self.name(),
                connect::describe_user(user),
                p.topic.as_str()
            );
        }
        self.refuse_publish(p, session, ReasonCode::NOT_AUTHORIZED)
    }

    /// Acknowledges a PUBLISH that is not routed, with `reason` for a 5.0
    /// client. The acknowledgement waits its turn behind those of earlier
    /// PUBLISHes: the PUBACK here, the PUBREC in the session, which keeps
    /// the order of PUBRECs.
    fn refuse_publish(&mut self, p: Publish, session: &Addr<Session>, reason: ReasonCode) {
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                let token = self.backlog.token();
                drop(self.puback_in_turn(Ack::with_reason(id, reason), token))
            }
            (QoS::ExactlyOnce, Some(_)) => session.do_send(PublishQoS2 {
                connection_id: self.id,
                publish: p,
                backlog: self.backlog.token(),
                refused: Some(reason),
            }),
            _ => {}
        }
    }

    /// The completion that sends `puback` after the PUBACKs of earlier
    /// PUBLISHes still waiting (see `pubacks`), holding `token` until then.
    fn puback_in_turn(&mut self, puback: Ack, token: BacklogToken) -> Completion {
        let puback = Reply::new(self.outbound.clone(), Packet::PubAck(puback));
        let puback = puback.on_completion_holding(token);
        self.pubacks.push(&puback);
        puback
    }
}

/// Whether the ACL of `live` (if any) lets a client publish to `topic`;
/// `$SYS` is the broker's own tree, as in Mosquitto.
pub(in crate::broker) fn may_publish(
    live: &Reloadable,
    username: Option<&str>,
    client_id: &str,
    topic: &str,
) -> bool {
    if topic.starts_with("$SYS") {
        return false;
    }
    live.auth
        .acl
        .as_ref()
        .is_none_or(|acl| acl.allows(username, client_id, topic, crate::acl::Want::Write))
}
