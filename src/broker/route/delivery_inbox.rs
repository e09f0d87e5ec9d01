//! The path from the topic shards to one session.
//!
//! A fan-out gives every subscriber's session one [`Delivery`] per
//! publish. As an actix message each delivery cost two allocations (the
//! envelope and the mailbox's queue node) and about ten atomic operations.
//! Here the shards push deliveries into a plain queue, the session's
//! [`DeliveryInbox`], which the session takes whole; only the push that
//! finds the queue empty sends the session an actix message,
//! [`DrainInbox`], to come and take it.
//!
//! Order: one queue per session, first in first out, so the deliveries of
//! one shard reach the session in the order the shard routed them
//! [MQTT-4.6.0-6].

use crate::broker::durable::Acknowledgement;
use crate::message::Message;
use crate::protocol::QoS;
use actix::prelude::*;
use std::sync::{Arc, Mutex, MutexGuard};

/// TopicShard → Session, through the session's inbox: a message matched
/// one of the session's subscriptions; `qos` is the highest granted QoS
/// among them.
pub struct Delivery {
    pub message: Message,
    pub qos: QoS,
    /// The publisher's acknowledgement, for a durable subscriber at QoS ≥ 1:
    /// it is sent once the subscriber's copy is committed.
    pub ack: Option<Acknowledgement>,
}

/// Session ← itself: deliveries wait in the inbox; take them all.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DrainInbox;

/// Deliveries waiting for one session. The session creates it when it
/// first subscribes, so a client that never subscribes has none.
#[derive(Default)]
pub struct DeliveryInbox {
    state: Mutex<InboxState>,
}

#[derive(Default)]
struct InboxState {
    queue: Vec<Delivery>,
    /// The session is gone: nothing will take what is pushed.
    closed: bool,
}

impl DeliveryInbox {
    fn state(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a delivery; true if it is the only one waiting (the session
    /// must be woken). A closed inbox drops it at once.
    fn push(&self, delivery: Delivery) -> bool {
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
    pub fn take(&self) -> Vec<Delivery> {
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

/// What a shard holds to deliver to one session: its inbox, and the
/// session's address to wake it (as a `Recipient`, so routing needs no
/// knowledge of the session actor).
#[derive(Clone)]
pub struct InboxHandle {
    session: Recipient<DrainInbox>,
    inbox: Arc<DeliveryInbox>,
}

impl InboxHandle {
    pub fn new(session: Recipient<DrainInbox>, inbox: Arc<DeliveryInbox>) -> InboxHandle {
        InboxHandle { session, inbox }
    }

    /// Queues a delivery; wakes the session if nothing was waiting.
    ///
    /// While the queue is not empty and the session runs, a `DrainInbox`
    /// is in its mailbox or being handled (the handler empties the queue in
    /// one take), so no delivery waits without one. A session that stops
    /// drops its mailbox, then closes the inbox when it is dropped; what
    /// waited is dropped then.
    pub fn push(&self, delivery: Delivery) {
        if self.inbox.push(delivery) {
            self.session.do_send(DrainInbox);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::durable::Completion;
    use crate::protocol::TopicName;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn delivery(acked: &Arc<AtomicUsize>) -> Delivery {
        let acked = acked.clone();
        Delivery {
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
        let inbox = DeliveryInbox::default();
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
        let inbox = DeliveryInbox::default();
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
