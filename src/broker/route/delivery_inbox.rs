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

use crate::broker::durable::{Acknowledgement, StoreHandle};
use crate::message::Message;
use crate::protocol::QoS;
use crate::session::MessageId;
use crate::store::Op;
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
    /// For a durable copy: the message's id in the store's log, which holds
    /// one reference for this copy until it is queued or released.
    pub log_id: Option<MessageId>,
}

/// Gives back the log reference of a durable copy that will not be queued
/// (dropped on its way), after the message's append: through the
/// publisher's group if it has one.
pub fn release(store: &StoreHandle, id: MessageId, ack: Option<&Acknowledgement>) {
    let op = Op::Release { id };
    match ack {
        Some(ack) => {
            ack.write(store, op, None);
        }
        None => store.write(op, None),
    }
}

/// Releases the log reference of a delivery dropped on its way.
pub fn drop_delivery(store: &StoreHandle, delivery: Delivery) {
    if let Some(id) = delivery.log_id {
        release(store, id, delivery.ack.as_ref());
    }
}

/// Session ← itself: deliveries wait in the inbox; take them all.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DrainInbox;

/// Deliveries waiting for one session. The session creates it when it
/// first subscribes, so a client that never subscribes has none.
///
/// Bounded like the session it feeds: a session that falls behind (its
/// thread busy, a flood from many publishers at once) holds at most as
/// many deliveries, and bytes, here as its in-flight window and queue
/// could take. Beyond, a delivery is dropped and counted, as the session's
/// own full queue would drop it.
pub struct DeliveryInbox {
    state: Mutex<InboxState>,
    max_count: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct InboxState {
    queue: Vec<Delivery>,
    /// Bytes (topic and payload) of the deliveries in `queue`.
    bytes: usize,
    /// Dropped at the bound since the session last took the inbox.
    dropped: u64,
    /// The session is gone: nothing will take what is pushed.
    closed: bool,
}

/// What the session takes from its inbox.
pub struct Taken {
    pub deliveries: Vec<Delivery>,
    /// Dropped at the inbox's bound since the last take.
    pub dropped: u64,
}

impl DeliveryInbox {
    /// An inbox that holds at most `max_count` deliveries and `max_bytes`.
    pub fn new(max_count: usize, max_bytes: usize) -> DeliveryInbox {
        DeliveryInbox {
            state: Mutex::new(InboxState::default()),
            max_count,
            max_bytes,
        }
    }

    fn state(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a delivery: `Ok(true)` if it is the only one waiting (the
    /// session must be woken). A closed inbox hands it back; a full one
    /// counts it and hands it back (to be dropped by the caller, outside
    /// the lock: dropping a delivery may run callbacks).
    fn push(&self, delivery: Delivery) -> Result<bool, (Delivery, bool)> {
        let mut state = self.state();
        let size = delivery.message.size();
        if state.closed {
            return Err((delivery, false));
        }
        if state.queue.len() >= self.max_count || state.bytes + size > self.max_bytes {
            state.dropped += 1;
            let wake = state.queue.is_empty();
            return Err((delivery, wake));
        }
        state.bytes += size;
        state.queue.push(delivery);
        Ok(state.queue.len() == 1)
    }

    /// Everything waiting, in the order it was pushed, and how many were
    /// dropped since the last take.
    pub fn take(&self) -> Taken {
        let mut state = self.state();
        state.bytes = 0;
        Taken {
            deliveries: std::mem::take(&mut state.queue),
            dropped: std::mem::take(&mut state.dropped),
        }
    }

    /// The session is being dropped (it ended, or its actor died): what
    /// waits is dropped now, and so is whatever is pushed later, until the
    /// shards let go of the inbox. As with a message to a stopped actor,
    /// the publisher's acknowledgement is then no longer held by the copy.
    pub fn close(&self) -> Vec<Delivery> {
        let mut state = self.state();
        state.closed = true;
        // Handed back, to be dropped outside the lock: dropping a delivery
        // may run callbacks.
        std::mem::take(&mut state.queue)
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
    /// A delivery refused (the session is gone, or its inbox full) is
    /// handed back.
    pub fn push(&self, delivery: Delivery) -> Result<(), Delivery> {
        match self.inbox.push(delivery) {
            Ok(wake) => {
                if wake {
                    self.session.do_send(DrainInbox);
                }
                Ok(())
            }
            Err((delivery, wake)) => {
                if wake {
                    self.session.do_send(DrainInbox);
                }
                Err(delivery)
            }
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
            log_id: None,
        }
    }

    /// Only the push into an empty inbox asks for a wake-up; a take empties
    /// it, so the next push asks again.
    #[test]
    fn the_push_into_an_empty_inbox_wakes() {
        let acked = Arc::new(AtomicUsize::new(0));
        let inbox = DeliveryInbox::new(100, 1 << 20);
        assert!(matches!(inbox.push(delivery(&acked)), Ok(true)));
        assert!(matches!(inbox.push(delivery(&acked)), Ok(false)));
        assert_eq!(inbox.take().deliveries.len(), 2);
        assert!(matches!(inbox.push(delivery(&acked)), Ok(true)));
    }

    /// A closed inbox (its session is gone) lets go of what waited and of
    /// what comes later at once: nothing stays queued for no one, holding
    /// the publishers' acknowledgements.
    #[test]
    fn a_closed_inbox_keeps_nothing() {
        let acked = Arc::new(AtomicUsize::new(0));
        let inbox = DeliveryInbox::new(100, 1 << 20);
        assert!(inbox.push(delivery(&acked)).is_ok());
        assert!(inbox.push(delivery(&acked)).is_ok());
        assert_eq!(acked.load(Ordering::SeqCst), 0);
        drop(inbox.close());
        assert_eq!(acked.load(Ordering::SeqCst), 2);
        assert!(matches!(inbox.push(delivery(&acked)), Err((_, false))));
        assert_eq!(acked.load(Ordering::SeqCst), 3);
        assert!(inbox.take().deliveries.is_empty());
    }

    /// The inbox holds what its session's bounds could take, no more: a
    /// delivery beyond is dropped at once (its acknowledgement released,
    /// as a full queue's) and counted for the session's next take.
    #[test]
    fn a_full_inbox_drops_and_counts() {
        let acked = Arc::new(AtomicUsize::new(0));
        let inbox = DeliveryInbox::new(2, 1 << 20);
        assert!(matches!(inbox.push(delivery(&acked)), Ok(true)));
        assert!(matches!(inbox.push(delivery(&acked)), Ok(false)));
        assert!(matches!(inbox.push(delivery(&acked)), Err((_, false))));
        assert_eq!(acked.load(Ordering::SeqCst), 1, "the third let go at once");
        let taken = inbox.take();
        assert_eq!((taken.deliveries.len(), taken.dropped), (2, 1));
        let by_bytes = DeliveryInbox::new(100, 3);
        assert!(by_bytes.push(delivery(&acked)).is_ok());
        assert!(by_bytes.push(delivery(&acked)).is_err());
        assert_eq!(by_bytes.take().dropped, 1, "\"t\" and \"p\": 2 bytes each");
    }
}
