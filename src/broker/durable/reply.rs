//! Packets held back until a commit: an acknowledgement (PUBACK, PUBREC,
//! PUBCOMP, SUBACK, UNSUBACK) or a PUBLISH/PUBREL that must not reach the
//! client before its row is durable.
//!
//! Each is a [`Reply`] inside a completion. When the commit succeeds the
//! packet is sent. When it fails, the packet is never sent and the
//! connection is closed: an MQTT 3.1.1 client resends what was not
//! acknowledged only when it reconnects, and would otherwise wait for the
//! acknowledgement forever; a persistent subscriber's session resends what
//! it holds in flight when the client comes back. A reply abandoned because
//! a handler panicked leaves the connection open: a message that makes
//! roost panic would otherwise come back with every reconnect, until the
//! restarts add up to a storm.

use super::completion::{Callback, Completion};
use crate::broker::net::outbound::Outbound;
use crate::protocol::{Packet, PacketId};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A packet that a completion sends once what it waits for is committed.
pub struct Reply {
    outbound: Outbound,
    packet: Packet,
}

impl Reply {
    pub fn new(outbound: Outbound, packet: Packet) -> Reply {
        Reply { outbound, packet }
    }

    pub fn send(self) {
        self.outbound.send(self.packet);
    }

    /// The commit this reply waited for failed: close the connection.
    fn close_connection(self) {
        if self.outbound.close() {
            log::debug!(
                "closing a connection: the commit its {:?} waited for failed",
                self.packet.packet_type()
            );
        }
    }

    /// A completion that sends this reply when it runs.
    pub fn on_completion(self) -> Completion {
        Completion::new(self)
    }
}

impl Callback for Reply {
    fn committed(self: Box<Self>) {
        self.send();
    }

    fn commit_failed(self: Box<Self>) {
        self.close_connection();
    }
}

/// A reply (if the client is attached) and then more work, once a commit
/// is done: SUBACK and then the retained messages of the new filters, or
/// UNSUBACK and then the release of the connection that waits for it. If
/// the commit fails, neither happens and the connection is closed.
pub struct ReplyThen<F> {
    reply: Option<Reply>,
    then: F,
}

impl<F: FnOnce() + Send + 'static> ReplyThen<F> {
    /// The completion that sends `reply`, then runs `then`.
    pub fn completion(reply: Option<Reply>, then: F) -> Completion {
        Completion::new(ReplyThen { reply, then })
    }
}

impl<F: FnOnce() + Send + 'static> Callback for ReplyThen<F> {
    fn committed(self: Box<Self>) {
        if let Some(reply) = self.reply {
            reply.send();
        }
        (self.then)();
    }

    fn commit_failed(self: Box<Self>) {
        if let Some(reply) = self.reply {
            reply.close_connection();
        }
    }
}

/// What a session shares with the completions that send its packets after
/// a commit.
#[derive(Default)]
pub struct HeldForCommit {
    /// Packets held back until a commit and not sent yet. While there are
    /// any, later PUBLISH/PUBREL packets queue behind them (through the
    /// store, which runs completions in order), so the client sees them in
    /// the order they were produced.
    held_back: AtomicUsize,
    /// Inbound QoS 2 ids whose PUBREC was never sent: the commit of the id
    /// and its copies failed. The client's resend of such an id is a new
    /// PUBLISH, not one already stored.
    abandoned_pubrecs: Mutex<Vec<PacketId>>,
}

impl HeldForCommit {
    /// Whether some packet waits for a commit: a packet sent now would
    /// overtake it.
    pub fn any_held_back(&self) -> bool {
        self.held_back.load(Ordering::Relaxed) > 0
    }

    fn abandoned_pubrecs(&self) -> MutexGuard<'_, Vec<PacketId>> {
        self.abandoned_pubrecs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `packet_id`'s PUBREC was abandoned; forgets that it was.
    pub fn take_abandoned_pubrec(&self, packet_id: PacketId) -> bool {
        let mut abandoned = self.abandoned_pubrecs();
        match abandoned.iter().position(|p| *p == packet_id) {
            Some(i) => {
                abandoned.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// A completion that sends `packet` to `outbound` once committed,
    /// counted as held back until it is sent or abandoned.
    pub fn send_later(self: &Arc<Self>, outbound: Outbound, packet: Packet) -> Completion {
        Completion::new(HeldPacket {
            reply: Reply::new(outbound, packet),
            _held: HeldBack::new(self.clone()),
        })
    }

    /// The PUBREC of a new inbound QoS 2 PUBLISH, sent once the id and
    /// every copy are committed. Abandoned unsent, the id is recorded (see
    /// [`HeldForCommit::take_abandoned_pubrec`]).
    pub fn pubrec_later(self: &Arc<Self>, outbound: Outbound, packet_id: PacketId) -> Completion {
        Completion::new(PendingPubRec {
            reply: Some(Reply::new(outbound, Packet::PubRec(packet_id))),
            packet_id,
            held: HeldBack::new(self.clone()),
        })
    }
}

/// Counts one packet held back until a commit, for as long as its
/// completion's callback exists: until the packet is sent, or until the
/// completion is abandoned and the callback dropped unrun. An abandoned one
/// left counted would send every later PUBLISH through the store.
struct HeldBack(Arc<HeldForCommit>);

impl HeldBack {
    fn new(held: Arc<HeldForCommit>) -> HeldBack {
        held.held_back.fetch_add(1, Ordering::Relaxed);
        HeldBack(held)
    }
}

impl Drop for HeldBack {
    fn drop(&mut self) {
        self.0.held_back.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A PUBLISH or PUBREL held back until its row is committed.
struct HeldPacket {
    reply: Reply,
    _held: HeldBack,
}

impl Callback for HeldPacket {
    fn committed(self: Box<Self>) {
        let HeldPacket { reply, _held } = *self;
        reply.send();
    }

    fn commit_failed(self: Box<Self>) {
        let HeldPacket { reply, _held } = *self;
        reply.close_connection();
    }
}

/// See [`HeldForCommit::pubrec_later`]. Dropped unsent (the commit failed,
/// or a panic cut the work short), it records the id as abandoned.
struct PendingPubRec {
    reply: Option<Reply>,
    packet_id: PacketId,
    held: HeldBack,
}

impl Callback for PendingPubRec {
    fn committed(mut self: Box<Self>) {
        if let Some(reply) = self.reply.take() {
            reply.send();
        }
    }

    fn commit_failed(mut self: Box<Self>) {
        if let Some(reply) = self.reply.take() {
            self.held.0.abandoned_pubrecs().push(self.packet_id);
            reply.close_connection();
        }
    }
}

impl Drop for PendingPubRec {
    fn drop(&mut self) {
        if self.reply.is_some() {
            self.held.0.abandoned_pubrecs().push(self.packet_id);
        }
    }
}
