//! The path from the topic shards to one session.
//!
//! A fan-out gives every subscriber's session one delivery per publish. As
//! an actix message each delivery cost two allocations (the envelope and
//! the mailbox's queue node) and about ten atomic operations. Here the
//! shards push deliveries into a plain queue that the session takes whole;
//! only the push that finds the queue empty sends the session an actix
//! message, [`TakeDeliveries`], to come and take it.
//!
//! Order: one queue per session, first in first out, so the deliveries of
//! one shard reach the session in the order the shard routed them
//! [MQTT-4.6.0-6].

use super::messages::Deliver;
use super::session::Session;
use actix::prelude::*;
use std::sync::{Arc, Mutex, MutexGuard};

/// Deliveries waiting after which a shard checks that the session still runs.
const STOPPED_CHECK: usize = 1024;

/// Session ← itself: deliveries wait in the inbox; take them all.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TakeDeliveries;

/// Deliveries waiting for one session. The session creates it when it
/// first subscribes, so a client that never subscribes has none.
#[derive(Default)]
pub struct Inbox {
    queue: Mutex<Vec<Deliver>>,
}

impl Inbox {
    fn queue(&self) -> MutexGuard<'_, Vec<Deliver>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything waiting, in the order it was pushed.
    pub fn take(&self) -> Vec<Deliver> {
        std::mem::take(&mut *self.queue())
    }
}

/// What a shard holds to deliver to one session: its address (to wake it)
/// and its inbox.
#[derive(Clone)]
pub struct Deliveries {
    session: Addr<Session>,
    inbox: Arc<Inbox>,
}

impl Deliveries {
    pub fn new(session: Addr<Session>, inbox: Arc<Inbox>) -> Deliveries {
        Deliveries { session, inbox }
    }

    /// Queues a delivery; wakes the session if nothing was waiting.
    ///
    /// Invariant: while the queue is not empty, a `TakeDeliveries` is in
    /// the session's mailbox or being handled (the handler empties the
    /// queue in one take), so no delivery waits without one.
    pub fn send(&self, delivery: Deliver) {
        let waiting = {
            let mut queue = self.inbox.queue();
            queue.push(delivery);
            queue.len()
        };
        // A stopped session (its subscriptions are on their way out of the
        // shards) takes nothing: what waits is dropped rather than kept,
        // checked on the wake-up and every `STOPPED_CHECK` deliveries.
        if waiting == 1 || waiting % STOPPED_CHECK == 0 {
            if self.session.connected() {
                if waiting == 1 {
                    self.session.do_send(TakeDeliveries);
                }
            } else {
                self.inbox.queue().clear();
            }
        }
    }
}
