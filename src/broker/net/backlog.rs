//! Backpressure from the broker's work to the client that causes it.
//!
//! Each connection counts the work its packets have handed on and that is
//! not done yet, one [`BacklogToken`] per piece:
//! - a PUBLISH on its way through the router to its shard (and a second
//!   token to the retained store, if retained);
//! - a QoS 1/2 PUBLISH whose PUBACK/PUBREC is not sent yet: the token
//!   travels with the acknowledgement, which may wait for a commit;
//! - an acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP) on its way to the
//!   session.
//!
//! While the count is at `limits.max_routing_backlog`, the connection's
//! `ReadGate` stops reading the socket, so a client sending faster than
//! roost routes, commits or acknowledges is slowed by TCP instead of
//! filling actor mailboxes, the store's inbox or the acknowledgement chain.

use futures::task::AtomicWaker;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct RoutingBacklog {
    pending: AtomicUsize,
    limit: usize,
    pub(super) reader: AtomicWaker,
}

impl RoutingBacklog {
    pub fn new(limit: usize) -> Arc<RoutingBacklog> {
        Arc::new(RoutingBacklog {
            pending: AtomicUsize::new(0),
            limit,
            reader: AtomicWaker::new(),
        })
    }

    /// True while the client may publish more.
    pub fn is_open(&self) -> bool {
        self.pending.load(Ordering::Relaxed) < self.limit
    }

    /// How many more pieces of work fit before the backlog is full.
    pub fn room(&self) -> usize {
        self.limit
            .saturating_sub(self.pending.load(Ordering::Relaxed))
    }

    /// Counts one publish until the returned token is dropped.
    pub fn token(self: &Arc<Self>) -> BacklogToken {
        self.pending.fetch_add(1, Ordering::Relaxed);
        BacklogToken(self.clone())
    }
}

/// One piece of a client's work not done yet (see the module's list).
pub struct BacklogToken(Arc<RoutingBacklog>);

impl BacklogToken {
    /// One more piece of the same client's work (the retained store's
    /// share of a retained PUBLISH).
    pub fn another(&self) -> BacklogToken {
        self.0.token()
    }
}

impl Drop for BacklogToken {
    fn drop(&mut self) {
        let before = self.0.pending.fetch_sub(1, Ordering::Relaxed);
        // Wake the reader once the backlog has halved, not on every message.
        if before == self.0.limit / 2 + 1 || before == 1 {
            self.0.reader.wake();
        }
    }
}
