//! How a connection ends: closed by roost (for a protocol violation as
//! `close_action` says, or taken over), why (set where it is closed, said
//! in the line that logs the client's disconnect, and told a 5.0 client in
//! DISCONNECT), and its will, due when it ends without DISCONNECT.

use super::{connect, Connection, Phase};
use crate::broker::client::close::{close_action, Violation};
use crate::broker::client::messages::{Close, DelayWill};
use crate::broker::ops::log_limit::PROTOCOL_ERRORS;
use crate::broker::ops::metrics::Metrics;
use crate::message::{unix_now, Message, MessageProperties};
use crate::protocol::LastWill;
use crate::protocol::ProtocolError;
use crate::protocol::ReasonCode;
use actix::prelude::*;

/// Why a connection ended, for the line that says a client disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Nothing else set it: roost itself stopped the connection (shutdown).
    Stopped,
    /// The client sent DISCONNECT; `end_session`: a 5.0 client set its
    /// Session Expiry Interval to 0 in it.
    Disconnect {
        end_session: bool,
    },
    /// The client closed the socket without DISCONNECT.
    PeerClosed,
    /// Reading the socket failed (reset, TLS error, ...).
    ReadError(std::io::ErrorKind),
    /// A protocol violation, logged where it was found; the reason code a
    /// 5.0 client is told.
    Protocol(ReasonCode),
    KeepAlive,
    TakenOver,
    /// Its session ended under it.
    SessionEnded,
    /// Its handler panicked (logged by the panic hook).
    Failed,
    /// Before CONNACK: refused, or not connected in time.
    Refused,
}

impl Ending {
    pub(super) fn describe(self) -> String {
        match self {
            Ending::Stopped => "closed by roost".into(),
            Ending::Disconnect { end_session: false } => "sent DISCONNECT".into(),
            Ending::Disconnect { end_session: true } => {
                "sent DISCONNECT, ending its persistent session".into()
            }
            Ending::PeerClosed => "closed the connection without DISCONNECT".into(),
            // What the transport refused (a WebSocket text frame), logged
            // where it was found.
            Ending::ReadError(std::io::ErrorKind::InvalidData) => {
                "protocol error in the transport (see the line above)".into()
            }
            Ending::ReadError(kind) => format!("read error ({kind})"),
            Ending::Protocol(_) => "protocol error (see the line above)".into(),
            Ending::KeepAlive => "keep-alive expired".into(),
            Ending::TakenOver => "another connection took over its client id".into(),
            Ending::SessionEnded => "its session ended".into(),
            Ending::Failed => "roost failed handling its packet".into(),
            Ending::Refused => "refused".into(),
        }
    }
}

impl Ending {
    /// The DISCONNECT a connected 5.0 client is sent as roost closes its
    /// connection (section 4.13.2); none where the client ended it.
    pub(super) fn disconnect_reason(self) -> Option<ReasonCode> {
        match self {
            Ending::Stopped => Some(ReasonCode::SERVER_SHUTTING_DOWN),
            Ending::Protocol(reason) => Some(reason),
            Ending::KeepAlive => Some(ReasonCode::KEEP_ALIVE_TIMEOUT),
            Ending::TakenOver => Some(ReasonCode::SESSION_TAKEN_OVER),
            Ending::SessionEnded => Some(ReasonCode::UNSPECIFIED_ERROR),
            Ending::Failed => Some(ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR),
            Ending::Disconnect { .. }
            | Ending::PeerClosed
            | Ending::ReadError(_)
            | Ending::Refused => None,
        }
    }
}

impl Connection {
    /// Ends the connection without DISCONNECT: the will is published in
    /// `stopped`. `why` goes in the disconnect line.
    pub(super) fn close(&mut self, why: Ending, ctx: &mut Context<Self>) {
        if self.ending == Ending::Stopped {
            self.ending = why;
        }
        ctx.stop();
    }

    /// Closes the connection for a protocol violation, as `close_action` says.
    pub(super) fn protocol_error(&mut self, error: ProtocolError, ctx: &mut Context<Self>) {
        let first = matches!(self.phase, Phase::AwaitingConnect);
        let action = close_action(&error, first);
        let counter = match action.counted_as {
            Violation::Protocol => &self.shared.metrics.protocol_errors,
            Violation::Limit => &self.shared.metrics.limits_refused,
        };
        Metrics::inc(counter);
        let log = PROTOCOL_ERRORS.allow();
        match action.connack {
            Some(code) => {
                if log {
                    log::info!("{}: {error}; CONNACK {code}", self.name());
                }
                self.refuse(code, code.into(), ctx)
            }
            None => {
                if log {
                    log::warn!("{}: protocol error, closing: {error}", self.name());
                }
                self.close(Ending::Protocol(action.reason), ctx)
            }
        }
    }

    /// Publishes the will, if the connection has one (DISCONNECT discards
    /// it) and the ACL lets its user write its topic; whether it did.
    pub(super) fn publish_will(&mut self) -> bool {
        let Some(will) = self.will.take() else {
            return false;
        };
        let live = self.shared.live.load();
        if !self.may_publish(&live, will.topic.as_str()) {
            Metrics::inc(&self.shared.metrics.acl_denied);
            let user = self.identity.as_ref().and_then(|i| i.username.as_deref());
            log::warn!(
                "{}, {}: will to {:?} not published: the ACL does not let this user write it",
                self.name(),
                connect::describe_user(user),
                will.topic.as_str()
            );
            return false;
        }
        // 5.0: a will with a delay, of a session that outlives the
        // connection, waits in the registry: published once the delay has
        // passed or the session ends, dropped if it resumes first
        // (section 3.1.3.2.2). A session that ends now ends first.
        let delay = will.properties.as_ref().and_then(|p| p.will_delay_interval);
        let durable = self.identity.as_ref().is_some_and(|i| i.durable)
            && !matches!(self.ending, Ending::Disconnect { end_session: true });
        if let (Some(secs @ 1..), true) = (delay, durable) {
            let client_id = self.identity.as_ref().map(|i| i.client_id.clone());
            if let Some(client_id) = client_id {
                log::info!(
                    "{}: will held for its delay of {secs} s (published unless the session resumes first)",
                    self.name()
                );
                let will = will_message(*will);
                self.shared.registry.do_send(DelayWill {
                    client_id,
                    will,
                    delay: std::time::Duration::from_secs(u64::from(secs)),
                });
                return false;
            }
        }
        Metrics::inc(&self.shared.metrics.wills_published);
        self.shared.router.publish(will_message(*will), None, None);
        true
    }
}

/// The message a will is published as. Its Message Expiry Interval (5.0)
/// starts as it is published.
fn will_message(will: LastWill) -> Message {
    let properties = (will.properties.as_deref())
        .and_then(|p| MessageProperties::from_properties(p, unix_now()));
    Message {
        topic: will.topic,
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
        properties,
    }
}

impl Handler<Close> for Connection {
    type Result = ();

    fn handle(&mut self, close: Close, ctx: &mut Context<Self>) {
        match close {
            Close::TakenOver { publish_will } => {
                log::info!(
                    "{}: closed: another connection took over this client id [MQTT-3.1.4-2]",
                    self.name()
                );
                if !publish_will {
                    self.will = None;
                }
                self.close(Ending::TakenOver, ctx);
            }
            Close::Violation(error) => self.protocol_error(error, ctx),
        }
    }
}
