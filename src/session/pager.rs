//! What a durable session knows of the part of its queue that is in the
//! store and not in memory, and when it asks for a page of it: the
//! bookkeeping of `SessionState`'s paging, as named transitions.

/// Messages of its queue a durable session reads ahead into memory, beyond
/// those in flight; it asks for more when fewer than half are left.
pub const READ_AHEAD: usize = 1024;

/// Messages arriving for an online durable session that it holds in memory
/// beyond those in flight, while none of its queue waits in the store; past
/// that they go to the store, and so do all that follow until the session
/// has read them back a page at a time. Larger than a page: a subscriber
/// that falls a few thousand messages behind its publishers (four
/// publishers each 1,000 ahead) stays out of the store's pages, which cost
/// 13% of a persistent fan-in (measured at 4,096 against 1,024). Pages
/// stay at `READ_AHEAD`: at 4,096 draining a queue was a third slower.
pub const HOLD_AHEAD: usize = 4 * READ_AHEAD;

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Pager {
    durable: bool,
    /// The store may hold messages of the queue that are not in memory.
    in_store: bool,
    /// A page was asked for and has not come.
    asking: bool,
    /// A message went to the store while a page was being asked for: the
    /// answer cannot say whether that one is left.
    grew_while_asking: bool,
}

impl Pager {
    pub(super) fn new(durable: bool) -> Pager {
        Pager {
            durable,
            ..Pager::default()
        }
    }

    pub(super) fn is_durable(&self) -> bool {
        self.durable
    }

    /// Whether a new message may be held in memory: not while older ones
    /// wait in the store (they come first).
    pub(super) fn may_hold(&self) -> bool {
        !self.in_store
    }

    /// A message of the queue went to the store only (or was let go of).
    pub(super) fn stored(&mut self) {
        if self.durable {
            self.in_store = true;
            if self.asking {
                self.grew_while_asking = true;
            }
        }
    }

    /// Whether to ask for a page now, with `held` messages read ahead out
    /// of `read_ahead`; if so, the page counts as asked for.
    pub(super) fn ask(&mut self, online: bool, held: usize, read_ahead: usize) -> bool {
        if self.durable && online && self.in_store && !self.asking && held < read_ahead / 2 {
            self.asking = true;
            self.grew_while_asking = false;
            return true;
        }
        false
    }

    /// A page came; `more`: the store said it holds more.
    pub(super) fn answered(&mut self, more: bool) {
        self.asking = false;
        self.in_store = more || self.grew_while_asking;
        self.grew_while_asking = false;
    }

    /// No page is on its way any more (it failed, or the client left), and
    /// the store may hold any part of the queue.
    pub(super) fn reset(&mut self) {
        self.asking = false;
        self.in_store = self.durable;
    }
}
