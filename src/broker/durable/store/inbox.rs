//! How writes reach the store: a queue ([`WriteInbox`]) that every actor
//! pushes into through a [`StoreHandle`] and that the store takes whole,
//! rather than one actor message per write (see the store's doc).

use super::Store;
use crate::broker::durable::completion::Completion;
use crate::store::Op;
use actix::Addr;
use std::sync::Arc;

/// A change to make durable, and what to run once it has committed.
pub type PendingWrite = (Op, Option<Completion>);

/// Writes sent to the store and not yet in its batch, in the order sent.
#[derive(Default)]
pub struct WriteInbox {
    writes: std::sync::Mutex<Vec<PendingWrite>>,
    /// The store's task, woken when the inbox stops being empty.
    store: futures::task::AtomicWaker,
}

impl WriteInbox {
    pub(super) fn writes(&self) -> std::sync::MutexGuard<'_, Vec<PendingWrite>> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything waiting; `spare` (emptied, with its room) takes its place.
    pub(super) fn take(&self, spare: Vec<PendingWrite>) -> Vec<PendingWrite> {
        std::mem::replace(&mut *self.writes(), spare)
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
        self.add(|writes| writes.push((op, completion)));
    }

    /// Writes that must commit in one transaction (see `WriteGroup`).
    pub(in crate::broker::durable) fn write_all(&self, mut ops: Vec<PendingWrite>) {
        if !ops.is_empty() {
            self.add(|writes| writes.append(&mut ops));
        }
    }

    /// Adds to the inbox; wakes the store if the inbox was empty (if not,
    /// the store is awake already or about to take it).
    fn add(&self, add: impl FnOnce(&mut Vec<PendingWrite>)) {
        let was_empty = {
            let mut writes = self.inbox.writes();
            let was_empty = writes.is_empty();
            add(&mut writes);
            was_empty
        };
        if was_empty {
            self.inbox.store.wake();
        }
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
