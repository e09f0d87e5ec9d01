//! Backpressure from routing to a publishing client.
//!
//! Each connection counts its PUBLISH packets that were handed to the router
//! and not yet routed by their TopicShard (or, for QoS 2, not yet handled by
//! its Session). Every packet carries a [`BacklogToken`]; the count drops
//! when the token is dropped, after routing. While the count is at
//! `limits.max_routing_backlog`, the connection's `ReadGate` stops reading
//! the socket, so a client publishing faster than roost routes is slowed by
//! TCP instead of filling actor mailboxes.

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

    /// Counts one publish until the returned token is dropped.
    pub fn token(self: &Arc<Self>) -> BacklogToken {
        self.pending.fetch_add(1, Ordering::Relaxed);
        BacklogToken(self.clone())
    }
}

/// One publish on its way through the router.
pub struct BacklogToken(Arc<RoutingBacklog>);

impl Drop for BacklogToken {
    fn drop(&mut self) {
        let before = self.0.pending.fetch_sub(1, Ordering::Relaxed);
        // Wake the reader once the backlog has halved, not on every message.
        if before == self.0.limit / 2 + 1 || before == 1 {
            self.0.reader.wake();
        }
    }
}
