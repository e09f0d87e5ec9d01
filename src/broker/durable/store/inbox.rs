//! How writes reach the store: a queue ([`WriteInbox`]) that every actor
//! pushes into through a [`StoreHandle`] and that the store takes whole,
//! rather than one actor message per write (see the store's doc).

use super::Store;
use crate::broker::durable::completion::Completion;
use crate::store::Op;
use actix::Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A change to make durable, and what to run once it has committed.
pub type PendingWrite = (Op, Option<Completion>);

/// Writes sent to the store and not yet in its batch, in the order sent.
#[derive(Default)]
pub struct WriteInbox {
    writes: std::sync::Mutex<Vec<PendingWrite>>,
    /// The store's task, woken when the inbox gets a write that cannot
    /// wait (see `Op::can_wait`), or a write that can while no commit timer
    /// is set.
    store: futures::task::AtomicWaker,
    /// The inbox holds a write that cannot wait (changed under the lock).
    urgent: AtomicBool,
    /// The store has a timer set that will take the inbox (see
    /// `Store::commit`): writes that can wait need not wake it.
    pub(super) timer_set: AtomicBool,
}

impl WriteInbox {
    pub(super) fn writes(&self) -> std::sync::MutexGuard<'_, Vec<PendingWrite>> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything waiting; `spare` (emptied, with its room) takes its place.
    pub(super) fn take(&self, spare: Vec<PendingWrite>) -> Vec<PendingWrite> {
        let mut writes = self.writes();
        self.urgent.store(false, Ordering::Relaxed);
        std::mem::replace(&mut *writes, spare)
    }
}

/// How actors reach the store: writes go into its inbox; requests with a
/// reply go to the actor's address.
#[derive(Clone)]
pub struct StoreHandle {
    addr: Addr<Store>,
    inbox: Arc<WriteInbox>,
}

impl StoreHandle {
    pub fn new(addr: Addr<Store>, inbox: Arc<WriteInbox>) -> StoreHandle {
        StoreHandle { addr, inbox }
    }

    pub fn addr(&self) -> &Addr<Store> {
        &self.addr
    }

    /// Makes `op` durable; runs `completion` after it commits.
    pub fn write(&self, op: Op, completion: Option<Completion>) {
        let can_wait = completion.is_none() && op.can_wait();
        self.add(can_wait, |writes| writes.push((op, completion)));
    }

    /// Writes that must commit in one transaction (see `WriteGroup`).
    pub(in crate::broker::durable) fn write_all(&self, mut ops: Vec<PendingWrite>) {
        if !ops.is_empty() {
            let can_wait = ops.iter().all(|(op, c)| c.is_none() && op.can_wait());
            self.add(can_wait, |writes| writes.append(&mut ops));
        }
    }

    fn add(&self, can_wait: bool, add: impl FnOnce(&mut Vec<PendingWrite>)) {
        if self.inbox.add(can_wait, add) {
            self.inbox.store.wake();
        }
    }
}

impl WriteInbox {
    /// Adds to the inbox; true if the store must be woken, false if it is
    /// awake already or about to take the inbox. A write that cannot wait
    /// wakes it if it is the first such since the store last took the
    /// inbox; one that can wait, if the inbox was empty and no commit timer
    /// is set.
    fn add(&self, can_wait: bool, add: impl FnOnce(&mut Vec<PendingWrite>)) -> bool {
        let mut writes = self.writes();
        let wake = match can_wait {
            // SeqCst: a timer that has gone off (set to false before the
            // store takes the inbox) either sees this write or is seen here
            // as gone.
            true => writes.is_empty() && !self.timer_set.load(Ordering::SeqCst),
            false => !self.urgent.swap(true, Ordering::Relaxed),
        };
        add(&mut writes);
        wake
    }
}

/// The store's side of its inbox: yields everything waiting, whenever the
/// inbox is not empty.
pub(super) struct InboxStream(pub(super) Arc<WriteInbox>);

impl futures::Stream for InboxStream {
    type Item = ();

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<()>> {
        self.0.store.register(cx.waker());
        match self.0.writes().is_empty() {
            true => std::task::Poll::Pending,
            false => std::task::Poll::Ready(Some(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dequeue() -> PendingWrite {
        let op = Op::Dequeue {
            client_id: "c".into(),
            id: 1,
            size: 1,
        };
        (op, None)
    }

    fn barrier() -> PendingWrite {
        (Op::Barrier, Some(Completion::new(|| {})))
    }

    /// When a write wakes the store: writes that can wait only when nothing
    /// else will take them; a write that cannot wait whenever the store has
    /// not been woken for one since it last took the inbox.
    #[test]
    fn writes_that_can_wait_wake_the_store_only_when_nothing_else_will() {
        let inbox = WriteInbox::default();
        let add = |can_wait: bool, w: PendingWrite| inbox.add(can_wait, |ws| ws.push(w));
        assert!(
            add(true, dequeue()),
            "the first write into an empty inbox wakes"
        );
        assert!(
            !add(true, dequeue()),
            "the store is about to take the inbox"
        );
        assert!(add(false, barrier()), "one that cannot wait wakes even so");
        assert!(!add(false, barrier()), "the store is woken for one already");
        inbox.take(Vec::new());
        inbox.timer_set.store(true, Ordering::SeqCst);
        assert!(!add(true, dequeue()), "the commit timer will take it");
        assert!(
            add(false, barrier()),
            "one that cannot wait does not wait for the timer"
        );
        inbox.take(Vec::new());
        inbox.timer_set.store(false, Ordering::SeqCst);
        assert!(
            add(true, dequeue()),
            "no timer: the empty inbox wakes again"
        );
    }
}
