//! One group commit's worth of writes, merged by key before any SQL runs.
//!
//! Writes arrive as typed [`Op`]s from many actors. Queue changes (the log,
//! the runs, sent states) are applied to the store's [`Queues`] as they
//! arrive, and the rows they come to are taken from it when the batch
//! commits (see [`Batch::plan`]). Of the rest, the batch keeps only the last
//! word on each key (a subscription, a retained topic); session-level
//! operations keep their order. What is left becomes a handful of
//! statements in one transaction (see `commit`).

use super::queue_rows::QueueWrites;
use super::queues::Queues;
use super::Op;
use crate::protocol::{LastWill, TopicFilter, TopicName};
use ahash::AHashMap;
use bytestring::ByteString;

/// What waits for a write to commit (the broker's `Completion`). The batch
/// drops it once its commit has succeeded, in the order the writes
/// arrived; it never looks inside. A batch that fails to commit is kept
/// and committed again.
pub trait Waiter {
    /// The commit was cut short (the store restarted during it): nothing
    /// may be acknowledged for it.
    fn cut_short(&self);
}

/// Completions whose room an emptied batch keeps at most.
const KEPT_CAPACITY: usize = 1 << 16;

/// Session rows, applied in the order they were asked for.
pub(super) enum SessionOp {
    Connected {
        client_id: ByteString,
        username: Option<ByteString>,
        persistent: bool,
        keep_alive: u16,
        protocol: crate::protocol::ProtocolVersion,
        will: Option<LastWill>,
        session_expiry: Option<u32>,
    },
    Disconnected {
        client_id: ByteString,
    },
    Expiry {
        client_id: ByteString,
        secs: u32,
    },
    /// Its row, and for a persistent one its subscriptions and queue.
    Delete {
        client_id: ByteString,
        persistent: bool,
    },
}

/// The bounds of every queue, as `[session]` sets them.
#[derive(Debug, Clone, Copy)]
pub struct QueueBounds {
    pub max_messages: u64,
    pub max_bytes: u64,
}

/// What one queue change did to the bounded queue (for metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// A copy was dropped because its queue was full.
    pub dropped_full: bool,
}

pub struct Batch<W: Waiter> {
    pub(super) sessions: Vec<SessionOp>,
    /// `None`: delete the subscription.
    pub(super) subscriptions:
        AHashMap<(ByteString, TopicFilter), Option<crate::session::Subscription>>,
    /// `None`: clear the topic's retained message.
    pub(super) retained: AHashMap<TopicName, Option<super::retained::Retained>>,
    /// The queue rows of this batch, taken from `Queues` when it first
    /// commits (and kept for another try if that fails).
    pub queue_writes: Option<QueueWrites>,
    /// Run after the commit, in the order their writes arrived, so packets
    /// held back for a commit keep their order.
    completions: Vec<W>,
    /// Operations merged into this batch, for metrics.
    pub(super) ops: usize,
    /// Acknowledged messages of one queue with ids in a row, not yet taken
    /// out of `Queues`: a session's PUBACKs come in order, and a row of them
    /// leaves the queue in one step ([`Queues::dequeue_range`]). Applied
    /// before any other write and by [`Batch::settle`]; none while
    /// `sizes` is empty.
    dequeued: Dequeued,
    /// Something other than a subscriber's acknowledgement or a page given
    /// back, or a write someone waits for: see [`Batch::can_wait`].
    urgent: bool,
}

/// See `Batch::dequeued`: the ids from `first` on, one size each.
#[derive(Default)]
struct Dequeued {
    client_id: ByteString,
    first: super::queues::MessageId,
    sizes: Vec<u32>,
}

impl Dequeued {
    fn next(&self) -> super::queues::MessageId {
        self.first + self.sizes.len() as u64
    }
}

impl<W: Waiter> Default for Batch<W> {
    fn default() -> Self {
        Batch {
            sessions: Vec::new(),
            subscriptions: AHashMap::new(),
            retained: AHashMap::new(),
            queue_writes: None,
            completions: Vec::new(),
            ops: 0,
            dequeued: Dequeued::default(),
            urgent: false,
        }
    }
}

impl<W: Waiter> Batch<W> {
    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    pub fn len(&self) -> usize {
        self.ops
    }

    /// Nothing in the batch but messages leaving queues (acknowledged by
    /// their subscribers, or dropped) and pages given back, with nobody
    /// waiting for them: its commit may wait for more. A crash before it
    /// commits sends those messages again (QoS 1 allows it; a QoS 2
    /// message's PUBREC step committed before PUBREL was sent, so only
    /// PUBREL is sent again).
    pub fn can_wait(&self) -> bool {
        self.ops > 0 && !self.urgent
    }

    /// Nothing but queue rows (and barriers) to write.
    pub(super) fn only_queues(&self) -> bool {
        self.sessions.is_empty() && self.subscriptions.is_empty() && self.retained.is_empty()
    }

    /// Adds a write: queue changes go into `queues` at once.
    pub fn push(
        &mut self,
        op: Op,
        completion: Option<W>,
        queues: &mut Queues,
        bounds: QueueBounds,
    ) -> Applied {
        self.ops += 1;
        let mut applied = Applied::default();
        if !matches!(op, Op::Dequeue { .. }) {
            self.settle(queues);
        }
        self.urgent |= completion.is_some() || !op.can_wait();
        match op {
            Op::Barrier => {}
            Op::SessionConnected(connected) => {
                let super::Connected {
                    client_id,
                    username,
                    persistent,
                    keep_alive,
                    protocol,
                    will,
                    session_expiry,
                } = *connected;
                self.sessions.push(SessionOp::Connected {
                    session_expiry,
                    client_id,
                    username,
                    persistent,
                    keep_alive,
                    protocol,
                    will,
                })
            }
            Op::SessionDisconnected { client_id } => {
                self.sessions.push(SessionOp::Disconnected { client_id })
            }
            Op::SessionExpiry { client_id, secs } => {
                self.sessions.push(SessionOp::Expiry { client_id, secs })
            }
            Op::Unhold { client_id, id } => queues.unhold_ids(&client_id, &[id]),
            Op::DeleteSession {
                client_id,
                persistent,
            } => {
                if persistent {
                    // Subscriptions of this batch belong to the discarded
                    // session; the delete removes what was committed.
                    self.subscriptions.retain(|(c, _), _| *c != client_id);
                    queues.delete_client(&client_id);
                }
                self.sessions.push(SessionOp::Delete {
                    client_id,
                    persistent,
                });
            }
            Op::Subscribe {
                client_id,
                filter,
                subscription,
            } => {
                self.subscriptions
                    .insert((client_id, filter), Some(subscription));
            }
            Op::Unsubscribe { client_id, filter } => {
                self.subscriptions.insert((client_id, filter), None);
            }
            Op::Append {
                id,
                message,
                copies,
            } => queues.append(id, &message, copies),
            Op::Release { id } => queues.release(id),
            Op::Enqueue {
                client_id,
                id,
                qos,
                retain,
                size,
                held,
            } => {
                let outcome = queues.enqueue(
                    &client_id,
                    id,
                    qos,
                    retain,
                    u64::from(size),
                    held,
                    bounds.max_messages,
                    bounds.max_bytes,
                );
                applied.dropped_full = outcome == super::queues::Enqueued::Full;
            }
            Op::Dequeue {
                client_id,
                id,
                size,
            } => {
                let d = &self.dequeued;
                if d.sizes.is_empty() || d.client_id != client_id || d.next() != id {
                    self.settle(queues);
                    self.dequeued.client_id = client_id;
                    self.dequeued.first = id;
                }
                self.dequeued.sizes.push(size);
            }
            Op::Sent {
                client_id,
                id,
                packet_id,
                state,
            } => queues.set_sent(&client_id, id, packet_id, state),
            Op::Inbound {
                client_id,
                packet_id,
                awaiting,
            } => queues.set_inbound(&client_id, packet_id, awaiting),
            Op::SetRetained {
                topic,
                payload,
                qos,
                properties,
            } => {
                self.retained
                    .insert(topic, Some((payload, qos, properties)));
            }
            Op::ClearRetained { topic } => {
                self.retained.insert(topic, None);
            }
        }
        self.completions.extend(completion);
        applied
    }

    /// Applies the acknowledgements held back to join a row (see
    /// `Batch::dequeued`): after it, `queues` holds every write pushed.
    pub fn settle(&mut self, queues: &mut Queues) {
        let d = &mut self.dequeued;
        if !d.sizes.is_empty() {
            queues.dequeue_range(&d.client_id, d.first, &d.sizes);
            d.sizes.clear();
        }
    }

    /// Takes the queue rows of this batch from `queues`, once: a batch
    /// tried again writes the same rows.
    pub fn plan(&mut self, queues: &mut Queues) {
        self.settle(queues);
        if self.queue_writes.is_none() {
            self.queue_writes = Some(queues.take_writes());
        }
    }

    /// The log messages this batch appends (to mark them committed).
    pub fn appended(&self) -> impl Iterator<Item = super::queues::MessageId> + '_ {
        self.queue_writes
            .iter()
            .flat_map(|w| w.log_inserts.iter().map(|(id, ..)| *id))
    }

    /// The commit succeeded: run every completion, in arrival order. The
    /// batch is left empty, with its room kept for the next batch, unless
    /// it grew beyond `KEPT_CAPACITY`.
    pub fn release(&mut self) {
        for c in self.completions.drain(..) {
            drop(c);
        }
        self.sessions.clear();
        self.subscriptions.clear();
        self.retained.clear();
        self.queue_writes = None;
        self.ops = 0;
        self.urgent = false;
        if self.completions.capacity() > KEPT_CAPACITY {
            self.completions = Vec::new();
        }
    }
}

/// A batch dropped without [`Batch::release`] (a commit cut short by a
/// restart of the store) acknowledges nothing.
impl<W: Waiter> Drop for Batch<W> {
    fn drop(&mut self) {
        for w in self.completions.drain(..) {
            w.cut_short();
        }
    }
}

/// A waiter for the store's own tests: runs its closure when the last
/// clone is dropped, unless the commit failed or was cut short.
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct OnDrop(std::sync::Arc<OnDropInner>);

#[cfg(test)]
pub(crate) struct OnDropInner(std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>);

#[cfg(test)]
impl OnDrop {
    pub(crate) fn new(f: impl FnOnce() + Send + 'static) -> OnDrop {
        OnDrop(std::sync::Arc::new(OnDropInner(std::sync::Mutex::new(
            Some(Box::new(f)),
        ))))
    }
}

#[cfg(test)]
impl Waiter for OnDrop {
    fn cut_short(&self) {
        self.0 .0.lock().unwrap().take();
    }
}

#[cfg(test)]
impl Drop for OnDropInner {
    fn drop(&mut self) {
        if let Some(f) = self.0.lock().unwrap().take() {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::protocol::QoS;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    type Completion = OnDrop;
    type Batch = super::Batch<OnDrop>;

    const BOUNDS: QueueBounds = QueueBounds {
        max_messages: 100,
        max_bytes: 1 << 20,
    };

    fn counter() -> (Arc<AtomicUsize>, Completion) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        (
            n,
            Completion::new(move || {
                m.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }

    fn message() -> Message {
        Message {
            topic: TopicName::new("t".to_string()).unwrap(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: None,
        }
    }

    fn enqueue(b: &mut Batch, q: &mut Queues, client: &str, id: u64, c: Option<Completion>) {
        b.push(
            Op::Append {
                id,
                message: message(),
                copies: 1,
            },
            None,
            q,
            BOUNDS,
        );
        b.push(
            Op::Enqueue {
                client_id: client.into(),
                id,
                qos: QoS::AtLeastOnce,
                retain: false,
                size: 2,
                held: false,
            },
            c,
            q,
            BOUNDS,
        );
    }

    #[test]
    fn deleting_a_session_purges_its_pending_subscriptions_and_queue() {
        let mut q = Queues::default();
        let mut b = Batch::default();
        enqueue(&mut b, &mut q, "a", 1, None);
        enqueue(&mut b, &mut q, "b", 2, None);
        b.push(
            Op::Subscribe {
                client_id: "a".into(),
                filter: TopicFilter::new("x".to_string()).unwrap(),
                subscription: crate::session::Subscription::of(crate::routing::Grant::of(
                    QoS::AtMostOnce,
                )),
            },
            None,
            &mut q,
            BOUNDS,
        );
        b.push(
            Op::DeleteSession {
                client_id: "a".into(),
                persistent: true,
            },
            None,
            &mut q,
            BOUNDS,
        );
        assert!(b.subscriptions.is_empty());
        b.plan(&mut q);
        let w = b.queue_writes.as_ref().unwrap();
        assert_eq!(w.log_inserts.len(), 1, "only b's message is written");
        assert_eq!(w.runs.len(), 1);
        assert_eq!(&*w.runs[0].0, "b");
    }

    #[test]
    fn a_full_queue_is_reported() {
        let mut q = Queues::default();
        let mut b = Batch::default();
        let bounds = QueueBounds {
            max_messages: 1,
            max_bytes: 100,
        };
        for id in 1..=2 {
            b.push(
                Op::Append {
                    id,
                    message: message(),
                    copies: 1,
                },
                None,
                &mut q,
                bounds,
            );
            let applied = b.push(
                Op::Enqueue {
                    client_id: "a".into(),
                    id,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    size: 2,
                    held: false,
                },
                None,
                &mut q,
                bounds,
            );
            assert_eq!(applied.dropped_full, id == 2);
        }
    }

    #[test]
    fn completions_run_in_arrival_order() {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut q = Queues::default();
        let mut b = Batch::default();
        for i in 0..20u64 {
            let o = order.clone();
            let c = Completion::new(move || o.lock().unwrap().push(i));
            if i % 3 == 0 {
                b.push(Op::Barrier, Some(c), &mut q, BOUNDS);
            } else {
                enqueue(&mut b, &mut q, "a", 100 + i, Some(c));
            }
        }
        b.release();
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn abandoned_batch_acknowledges_nothing() {
        let mut q = Queues::default();
        let mut b = Batch::default();
        let (acked, c) = counter();
        enqueue(&mut b, &mut q, "a", 1, Some(c.clone()));
        b.push(
            Op::SetRetained {
                topic: TopicName::new("r".to_string()).unwrap(),
                payload: Bytes::from_static(b"v"),
                qos: QoS::AtLeastOnce,
                properties: None,
            },
            Some(c),
            &mut q,
            BOUNDS,
        );
        drop(b);
        assert_eq!(acked.load(Ordering::SeqCst), 0);
    }

    /// Only messages leaving queues and pages given back, with nobody
    /// waiting, may wait for their commit; anything else, or a completion,
    /// makes the batch urgent until it is released.
    #[test]
    fn a_batch_of_acknowledgements_only_can_wait() {
        let mut q = Queues::default();
        let mut b = Batch::default();
        assert!(!b.can_wait(), "an empty batch has nothing to commit");
        let dequeue = |id| Op::Dequeue {
            client_id: "c".into(),
            id,
            size: 1,
        };
        b.push(dequeue(1), None, &mut q, BOUNDS);
        b.push(
            Op::Unhold {
                client_id: "c".into(),
                id: 2,
            },
            None,
            &mut q,
            BOUNDS,
        );
        assert!(b.can_wait());
        let (_, waiter) = counter();
        b.push(dequeue(3), Some(waiter), &mut q, BOUNDS);
        assert!(!b.can_wait(), "someone waits for it");
        b.release();
        b.push(dequeue(4), None, &mut q, BOUNDS);
        assert!(b.can_wait(), "released: urgent no more");
        b.push(Op::Barrier, None, &mut q, BOUNDS);
        assert!(!b.can_wait(), "a barrier is not an acknowledgement");
    }
}
