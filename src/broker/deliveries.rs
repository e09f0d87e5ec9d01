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

/// Session ← itself: deliveries wait in the inbox; take them all.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TakeDeliveries;

/// Deliveries waiting for one session. The session creates it when it
/// first subscribes, so a client that never subscribes has none.
#[derive(Default)]
pub struct Inbox {
    state: Mutex<InboxState>,
}

#[derive(Default)]
struct InboxState {
    queue: Vec<Deliver>,
    /// The session is gone: nothing will take what is pushed.
    closed: bool,
}

impl Inbox {
    fn state(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a delivery; true if it is the only one waiting (the session
    /// must be woken). A closed inbox drops it at once.
    fn push(&self, delivery: Deliver) -> bool {
        let mut state = self.state();
        if state.closed {
            drop(state);
            drop(delivery);
            return false;
        }
        state.queue.push(delivery);
        state.queue.len() == 1
    }

    /// Everything waiting, in the order it was pushed.
    pub fn take(&self) -> Vec<Deliver> {
        std::mem::take(&mut self.state().queue)
    }

    /// The session is being dropped (it ended, or its actor died): what
    /// waits is dropped now, and so is whatever is pushed later, until the
    /// shards let go of the inbox. As with a message to a stopped actor,
    /// the publisher's acknowledgement is then no longer held by the copy.
    pub fn close(&self) {
        let left = {
            let mut state = self.state();
            state.closed = true;
            std::mem::take(&mut state.queue)
        };
        // Dropped outside the lock: dropping a delivery may run callbacks.
        drop(left);
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
    /// While the queue is not empty and the session runs, a
    /// `TakeDeliveries` is in its mailbox or being handled (the handler
    /// empties the queue in one take), so no delivery waits without one.
    /// A session that stops drops its mailbox, then closes the inbox when
    /// it is dropped; what waited is dropped then.
    pub fn send(&self, delivery: Deliver) {
        if self.inbox.push(delivery) {
            self.session.do_send(TakeDeliveries);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::store::Acknowledgement;
    use crate::protocol::{QoS, TopicName};
    use crate::session::Message;
    use crate::store::Completion;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn delivery(acked: &Arc<AtomicUsize>) -> Deliver {
        let acked = acked.clone();
        Deliver {
            message: Message {
                topic: TopicName::new("t".to_string()).unwrap(),
                payload: bytes::Bytes::from_static(b"p"),
                qos: QoS::AtLeastOnce,
                retain: false,
            },
            qos: QoS::AtLeastOnce,
            ack: Some(Acknowledgement {
                completion: Completion::new(move || {
                    acked.fetch_add(1, Ordering::SeqCst);
                }),
                group: None,
            }),
        }
    }

    /// Only the push into an empty inbox asks for a wake-up; a take empties
    /// it, so the next push asks again.
    #[test]
    fn the_push_into_an_empty_inbox_wakes() {
        let acked = Arc::new(AtomicUsize::new(0));
        let inbox = Inbox::default();
        assert!(inbox.push(delivery(&acked)));
        assert!(!inbox.push(delivery(&acked)));
        assert_eq!(inbox.take().len(), 2);
        assert!(inbox.push(delivery(&acked)));
    }

    /// A closed inbox (its session is gone) lets go of what waited and of
    /// what comes later at once: nothing stays queued for no one, holding
    /// the publishers' acknowledgements.
    #[test]
    fn a_closed_inbox_keeps_nothing() {
        let acked = Arc::new(AtomicUsize::new(0));
        let inbox = Inbox::default();
        inbox.push(delivery(&acked));
        inbox.push(delivery(&acked));
        assert_eq!(acked.load(Ordering::SeqCst), 0);
        inbox.close();
        assert_eq!(acked.load(Ordering::SeqCst), 2);
        assert!(!inbox.push(delivery(&acked)));
        assert_eq!(acked.load(Ordering::SeqCst), 3);
        assert!(inbox.take().is_empty());
    }
}
