//! Why a connection ended (set where it is closed, said in the line that
//! logs the client's disconnect), and its will, due when it ends without
//! DISCONNECT.

use super::{connect, Connection};
use crate::broker::ops::metrics::Metrics;
use crate::message::Message;

/// Why a connection ended, for the line that says a client disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Nothing else set it: roost itself stopped the connection (shutdown).
    Stopped,
    /// The client sent DISCONNECT.
    Disconnect,
    /// The client closed the socket without DISCONNECT.
    PeerClosed,
    /// Reading the socket failed (reset, TLS error, ...).
    ReadError(std::io::ErrorKind),
    /// A protocol violation, logged where it was found.
    Protocol,
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
            Ending::Disconnect => "sent DISCONNECT".into(),
            Ending::PeerClosed => "closed the connection without DISCONNECT".into(),
            // What the transport refused (a WebSocket text frame), logged
            // where it was found.
            Ending::ReadError(std::io::ErrorKind::InvalidData) => {
                "protocol error in the transport (see the line above)".into()
            }
            Ending::ReadError(kind) => format!("read error ({kind})"),
            Ending::Protocol => "protocol error (see the line above)".into(),
            Ending::KeepAlive => "keep-alive expired".into(),
            Ending::TakenOver => "another connection took over its client id".into(),
            Ending::SessionEnded => "its session ended".into(),
            Ending::Failed => "roost failed handling its packet".into(),
            Ending::Refused => "refused".into(),
        }
    }
}

impl Connection {
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
        Metrics::inc(&self.shared.metrics.wills_published);
        let will = Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
        };
        self.shared.router.publish(will, None, None);
        true
    }
}
