//! Packets held back until a commit: an acknowledgement (PUBACK, PUBREC,
//! PUBCOMP, SUBACK, UNSUBACK) or a PUBLISH/PUBREL that must not reach the
//! client before its row is durable.
//!
//! Each is a [`Reply`] inside a completion, sent when the commit has
//! succeeded (a failed commit is tried again until it does). A reply
//! abandoned because a handler panicked is never sent, and its connection
//! stays open: a message that makes roost panic would otherwise come back
//! with every reconnect, until the restarts add up to a storm.

use super::completion::Completion;
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

    /// A completion that sends this reply when it runs.
    pub fn on_completion(self) -> Completion {
        Completion::new(move || self.send())
    }

    /// The same, holding `held` until the reply is sent (a publisher's
    /// backlog token: its acknowledgement still counts as work to do).
    pub fn on_completion_holding(self, held: impl Send + 'static) -> Completion {
        Completion::new(move || {
            self.send();
            drop(held);
        })
    }

    /// A completion that sends `reply` (if the client is attached), then
    /// runs `then`: SUBACK and then the retained messages of the new
    /// filters, or UNSUBACK and then the release of the connection that
    /// waits for it.
    pub fn then(reply: Option<Reply>, then: impl FnOnce() + Send + 'static) -> Completion {
        Completion::new(move || {
            if let Some(reply) = reply {
                reply.send();
            }
            then();
        })
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
    /// Inbound QoS 2 ids whose PUBREC was never sent: the work of the id
    /// and its copies was cut short. The client's resend of such an id is
    /// a new PUBLISH, not one already stored.
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
        let reply = Reply::new(outbound, packet);
        let held = HeldBack::new(self.clone());
        Completion::new(move || {
            reply.send();
            drop(held);
        })
    }

    /// The PUBREC of a new inbound QoS 2 PUBLISH, sent once the id and
    /// every copy are committed; `token` (the publisher's backlog token) is
    /// held until then. Abandoned unsent, the id is recorded (see
    /// [`HeldForCommit::take_abandoned_pubrec`]).
    pub fn pubrec_later(
        self: &Arc<Self>,
        outbound: Outbound,
        packet_id: PacketId,
        token: impl Send + 'static,
    ) -> Completion {
        let pubrec = PendingPubRec {
            reply: Some(Reply::new(
                outbound,
                Packet::PubRec(crate::protocol::Ack::new(packet_id)),
            )),
            packet_id,
            held: HeldBack::new(self.clone()),
        };
        Completion::new(move || {
            pubrec.send();
            drop(token);
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

/// See [`HeldForCommit::pubrec_later`]. Dropped unsent (a panic cut the
/// work short), it records the id as abandoned.
struct PendingPubRec {
    reply: Option<Reply>,
    packet_id: PacketId,
    held: HeldBack,
}

impl PendingPubRec {
    fn send(mut self) {
        if let Some(reply) = self.reply.take() {
            reply.send();
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
