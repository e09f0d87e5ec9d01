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
//!
//! A persistent session whose client is away has no actor (it is dormant,
//! see `client::registry`): its inbox then writes each durable delivery
//! into its queue in the store, and the session reads them from there when
//! its client returns.

use crate::broker::durable::{Acknowledgement, StoreHandle};
use crate::broker::held_back::{self, HeldBack};
use crate::broker::ops::metrics::Metrics;
use crate::message::Message;
use crate::protocol::QoS;
use crate::session::MessageId;
use crate::store::Op;
use actix::prelude::*;
use bytestring::ByteString;
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

/// Where an inbox's deliveries go.
enum Target {
    /// To a running session actor, woken when the first one waits.
    Live(Recipient<DrainInbox>),
    /// The session is persistent and its client away: it has no actor, and
    /// each delivery goes straight into its queue in the store.
    Dormant(ByteString, Arc<DormantSink>),
    /// Not yet attached to a session (a new inbox).
    Nowhere,
}

/// What every dormant session's inbox writes through: one for the broker,
/// so that a dormant session costs no store handle of its own (each clone
/// of an actix address is an allocation).
pub struct DormantSink {
    pub store: StoreHandle,
    pub metrics: Arc<Metrics>,
}

/// Deliveries waiting for one session. The session creates it when it
/// first subscribes, so a client that never subscribes has none; it stays
/// the same while the session sleeps (dormant) and wakes.
///
/// Bounded like the session it feeds: a session that falls behind (its
/// thread busy, a flood from many publishers at once) holds at most as
/// many deliveries, and bytes, here as its in-flight window and queue
/// could take. Beyond, a delivery is dropped and counted, as the session's
/// own full queue would drop it.
pub struct DeliveryInbox {
    state: Mutex<InboxState>,
    max_count: u32,
    max_bytes: u32,
}

/// Small on purpose: every subscribed session, asleep ones included, has one.
struct InboxState {
    queue: Vec<Delivery>,
    target: Target,
    /// Bytes (topic and payload) of the deliveries in `queue`.
    bytes: u32,
    /// Dropped at the bound since the session last took the inbox.
    dropped: u32,
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
            state: Mutex::new(InboxState {
                queue: Vec::new(),
                bytes: 0,
                dropped: 0,
                closed: false,
                target: Target::Nowhere,
            }),
            max_count: u32::try_from(max_count).unwrap_or(u32::MAX),
            max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
        }
    }

    /// The inbox of a session with these bounds (see the type's doc).
    pub fn for_limits(limits: &crate::session::SessionLimits) -> DeliveryInbox {
        DeliveryInbox::new(
            limits.max_inflight as usize + limits.max_queued_messages as usize,
            limits.max_queued_bytes as usize,
        )
    }

    fn state(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a delivery for a live session (waking it if it is the only
    /// one waiting), or writes it to a dormant session's queue in the
    /// store. A closed inbox hands it back; a full one counts it and hands
    /// it back (to be dropped by the caller, outside the lock: dropping a
    /// delivery may run callbacks).
    pub fn push(&self, delivery: Delivery) -> Result<(), Delivery> {
        self.push_holding(delivery, false).0
    }

    /// As `push`; with `hold`, a wake-up the push owes the session is not
    /// sent but reported (`true`), for the caller to send later with
    /// `wake_owed`.
    fn push_holding(&self, delivery: Delivery, hold: bool) -> (Result<(), Delivery>, bool) {
        let mut state = self.state();
        if state.closed {
            return (Err(delivery), false);
        }
        if let Target::Dormant(client_id, sink) = &state.target {
            to_store(client_id, sink, delivery);
            return (Ok(()), false);
        }
        let size = delivery.message.stored_size();
        let wake = state.queue.is_empty() && matches!(state.target, Target::Live(_));
        let owed = wake && hold;
        if wake && !hold {
            state.wake();
        }
        if state.queue.len() >= self.max_count as usize
            || state.bytes.saturating_add(size) > self.max_bytes
        {
            state.dropped = state.dropped.saturating_add(1);
            return (Err(delivery), owed);
        }
        state.bytes += size;
        state.queue.push(delivery);
        (Ok(()), owed)
    }

    /// Sends a wake-up held back by `push_holding`, unless the session has
    /// taken everything since.
    fn wake_owed(&self) {
        let state = self.state();
        if !state.queue.is_empty() || state.dropped > 0 {
            state.wake();
        }
    }

    /// Everything waiting, in the order it was pushed, and how many were
    /// dropped since the last take.
    pub fn take(&self) -> Taken {
        let mut state = self.state();
        state.bytes = 0;
        Taken {
            deliveries: std::mem::take(&mut state.queue),
            dropped: u64::from(std::mem::take(&mut state.dropped)),
        }
    }

    /// A session (new, or woken) takes deliveries from now on.
    pub fn go_live(&self, session: Recipient<DrainInbox>) {
        let mut state = self.state();
        state.target = Target::Live(session);
        if !state.queue.is_empty() {
            state.wake();
        }
    }

    /// The session sleeps: what waits, and whatever comes later, goes to
    /// its queue in the store.
    pub fn go_dormant(&self, client_id: ByteString, sink: Arc<DormantSink>) {
        let mut state = self.state();
        for d in std::mem::take(&mut state.queue) {
            to_store(&client_id, &sink, d);
        }
        state.bytes = 0;
        state.queue.shrink_to_fit();
        state.target = Target::Dormant(client_id, sink);
    }

    /// The session is being dropped (it ended, or its actor died): what
    /// waits is handed back now, and whatever is pushed later is refused,
    /// until the shards let go of the inbox. As with a message to a stopped
    /// actor, the publisher's acknowledgement is then no longer held by the
    /// copy.
    pub fn close(&self) -> Vec<Delivery> {
        let mut state = self.state();
        state.closed = true;
        state.target = Target::Nowhere;
        // Handed back, to be dropped outside the lock: dropping a delivery
        // may run callbacks.
        std::mem::take(&mut state.queue)
    }
}

impl InboxState {
    fn wake(&self) {
        if let Target::Live(session) = &self.target {
            session.do_send(DrainInbox);
        }
    }
}

/// A delivery for a dormant session: a durable copy joins its queue in the
/// store, held by no one (paged in when the client returns); anything else
/// (QoS 0) is dropped, as for any session whose client is away.
fn to_store(client_id: &ByteString, sink: &DormantSink, delivery: Delivery) {
    let Delivery {
        message,
        qos,
        ack,
        log_id,
    } = delivery;
    let Some(id) = log_id else {
        Metrics::inc(&sink.metrics.dropped_offline_qos0);
        return;
    };
    let op = Op::Enqueue {
        client_id: client_id.clone(),
        id,
        qos: qos.min(message.qos),
        // Cleared by the shard unless Retain As Published keeps it.
        retain: message.retain,
        size: message.stored_size(),
        held: false,
    };
    match &ack {
        Some(ack) => {
            ack.write(&sink.store, op, None);
        }
        None => sink.store.write(op, None),
    }
}

/// What a shard holds to deliver to one session: its inbox, which knows
/// where its deliveries go (so routing needs no knowledge of the session
/// actor, or of whether it is running).
#[derive(Clone)]
pub struct InboxHandle {
    inbox: Arc<DeliveryInbox>,
}

impl InboxHandle {
    pub fn new(inbox: Arc<DeliveryInbox>) -> InboxHandle {
        InboxHandle { inbox }
    }

    /// A delivery refused (the session is gone, or its inbox full) is
    /// handed back.
    ///
    /// While the queue is not empty and the session runs, a `DrainInbox`
    /// is in its mailbox or being handled (the handler empties the queue in
    /// one take), or held back by a [`DrainsHeldBack`] of the pushing
    /// thread until it ends; so no delivery waits without one.
    pub fn push(&self, delivery: Delivery) -> Result<(), Delivery> {
        let hold = held_back::holding(&HELD_DRAINS);
        let (pushed, owed) = self.inbox.push_holding(delivery, hold);
        if owed {
            held_back::hold(&HELD_DRAINS, |list| list.push(self.inbox.clone()));
        }
        pushed
    }
}

thread_local! {
    /// The inboxes whose session is owed a `DrainInbox` when this thread's
    /// [`DrainsHeldBack`] ends; `None` while there is none.
    static HELD_DRAINS: std::cell::RefCell<Option<Vec<Arc<DeliveryInbox>>>> =
        const { std::cell::RefCell::new(None) };
}

/// While one lives, a push on this thread that finds a live session's
/// inbox empty does not wake the session at once: it is woken when this
/// ends, with everything pushed meanwhile waiting (see `held_back`).
///
/// For a shard's `RouteMany`: woken at its first delivery, a session on
/// another worker would take that one delivery, and be woken again for the
/// next; each wake-up of an idle worker is a write to its eventfd and a
/// switch to its thread.
pub struct DrainsHeldBack {
    _scope: HeldBack<Arc<DeliveryInbox>>,
}

impl DrainsHeldBack {
    #[allow(clippy::new_without_default)] // made for a scope, not a value
    pub fn new() -> DrainsHeldBack {
        DrainsHeldBack {
            _scope: HeldBack::new(&HELD_DRAINS, |inbox| inbox.wake_owed()),
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
                properties: None,
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

    /// Counts the wake-ups it gets.
    struct Woken(Arc<AtomicUsize>);

    impl Actor for Woken {
        type Context = Context<Self>;
    }

    impl Handler<DrainInbox> for Woken {
        type Result = ();
        fn handle(&mut self, _: DrainInbox, _: &mut Context<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Only the push into an empty inbox wakes the session; a take empties
    /// it, so the next push wakes it again. An inbox that went live with
    /// deliveries waiting wakes its session at once.
    #[test]
    fn the_push_into_an_empty_inbox_wakes() {
        let system = actix::System::new();
        let (woken, acked) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let w = woken.clone();
        system.block_on(async move {
            let inbox = DeliveryInbox::new(100, 1 << 20);
            assert!(
                inbox.push(delivery(&acked)).is_ok(),
                "kept until a session comes"
            );
            let session = Woken(w.clone()).start();
            inbox.go_live(session.clone().recipient());
            assert!(inbox.push(delivery(&acked)).is_ok());
            assert_eq!(inbox.take().deliveries.len(), 2);
            assert!(inbox.push(delivery(&acked)).is_ok());
            // Both wake-ups are in the mailbox before this round trip.
            session.send(DrainInbox).await.unwrap();
        });
        assert_eq!(
            woken.load(Ordering::SeqCst),
            3,
            "go_live, the push after the take, the probe"
        );
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
        assert!(inbox.push(delivery(&acked)).is_err());
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
        assert!(inbox.push(delivery(&acked)).is_ok());
        assert!(inbox.push(delivery(&acked)).is_ok());
        assert!(inbox.push(delivery(&acked)).is_err());
        assert_eq!(acked.load(Ordering::SeqCst), 1, "the third let go at once");
        let taken = inbox.take();
        assert_eq!((taken.deliveries.len(), taken.dropped), (2, 1));
        let by_bytes = DeliveryInbox::new(100, 3);
        assert!(by_bytes.push(delivery(&acked)).is_ok());
        assert!(by_bytes.push(delivery(&acked)).is_err());
        assert_eq!(by_bytes.take().dropped, 1, "\"t\" and \"p\": 2 bytes each");
    }

    /// Under a `DrainsHeldBack`, pushes into empty inboxes wake no session
    /// until it ends; then each session is woken once, with everything
    /// pushed meanwhile waiting. An inbox its session emptied meanwhile is
    /// not woken for nothing.
    #[test]
    fn held_back_drains_wake_each_session_once_at_the_end() {
        let system = actix::System::new();
        let woken: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let acked = Arc::new(AtomicUsize::new(0));
        let counts = woken.clone();
        system.block_on(async move {
            let sessions: Vec<_> = counts.iter().map(|w| Woken(w.clone()).start()).collect();
            let inboxes: Vec<InboxHandle> = sessions
                .iter()
                .map(|s| {
                    let inbox = Arc::new(DeliveryInbox::new(100, 1 << 20));
                    inbox.go_live(s.clone().recipient());
                    InboxHandle::new(inbox)
                })
                .collect();
            {
                let _held = DrainsHeldBack::new();
                for _ in 0..5 {
                    for inbox in &inboxes[..2] {
                        assert!(inbox.push(delivery(&acked)).is_ok());
                    }
                }
                assert!(inboxes[2].push(delivery(&acked)).is_ok());
                assert_eq!(inboxes[2].inbox.take().deliveries.len(), 1);
                for (i, s) in sessions.iter().enumerate() {
                    s.send(DrainInbox).await.unwrap();
                    assert_eq!(
                        counts[i].load(Ordering::SeqCst),
                        1,
                        "only the probe, while held"
                    );
                }
            }
            for s in &sessions {
                s.send(DrainInbox).await.unwrap();
            }
            assert_eq!(inboxes[0].inbox.take().deliveries.len(), 5);
        });
        let woken: Vec<usize> = woken.iter().map(|w| w.load(Ordering::SeqCst)).collect();
        assert_eq!(
            woken,
            [3, 3, 2],
            "two probes each, and one wake-up where something waits"
        );
    }
}
