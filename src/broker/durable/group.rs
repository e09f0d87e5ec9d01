//! Writes from several actors that must commit in one transaction (a
//! [`WriteGroup`]), the links that keep later writes of the same rows
//! behind them ([`GroupLink`], [`GroupLinks`]), and a publisher's
//! [`Acknowledgement`] on its way through routing.

use super::completion::Completion;
use super::store::{PendingWrite, StoreHandle};
use crate::session::SharedSeedMap;
use crate::store::Op;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Writes that must commit together, gathered from several actors: an
/// inbound QoS 2 packet id and every stored copy of that message (and a
/// retained change). If the id were committed without a copy, the client's
/// resent PUBLISH would be taken for a duplicate and the copy lost; if a
/// copy were committed without the id, the resend would be routed twice.
/// The writes go to the store, all at once, when the last holder
/// drops the group; a holder that panicked poisons it (nothing is written,
/// nothing acknowledged, the client resends).
///
/// A row whose first write is in a group may be written again before the
/// group goes out (a copy delivered, acknowledged and deleted while other
/// subscribers still hold the group). Such later writes must not reach the
/// store before the first one, or the late first write would re-create a
/// finished row: they follow the group through a [`GroupLink`].
#[derive(Clone)]
pub struct WriteGroup(Arc<GroupHolder>);

/// Shared by every clone of one `WriteGroup`; its drop sends the group.
struct GroupHolder {
    shared: Arc<GroupShared>,
    poisoned: std::sync::atomic::AtomicBool,
}

/// A write waiting in a group: the op and what runs after it commits.
type GroupedWrite = PendingWrite;

enum GroupState {
    /// Holders are still adding writes.
    Gathering(Vec<GroupedWrite>),
    /// Complete, but its writes joined an earlier group still gathering
    /// (see `WriteGroup::after`): later writes go there too.
    Merged(GroupLink),
    /// Gone to the store (or abandoned).
    Sent,
}

struct GroupShared {
    state: std::sync::Mutex<GroupState>,
    /// An earlier group this one must not overtake (see `WriteGroup::after`).
    after: std::sync::Mutex<Option<GroupLink>>,
    store: StoreHandle,
}

impl GroupShared {
    fn state(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl WriteGroup {
    pub fn new(store: StoreHandle) -> WriteGroup {
        WriteGroup(Arc::new(GroupHolder {
            shared: Arc::new(GroupShared {
                state: std::sync::Mutex::new(GroupState::Gathering(Vec::new())),
                after: std::sync::Mutex::new(None),
                store,
            }),
            poisoned: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// This group must not reach the store before `earlier` (a group that
    /// changes the same retained topic): if `earlier` is still gathering
    /// when this one is complete, this one's writes join it, and both
    /// commit in one transaction, in order. Links only ever point to groups
    /// whose change was made before, so they never form a cycle.
    pub fn after(&self, earlier: GroupLink) {
        if !earlier.same(&GroupLink(self.0.shared.clone())) {
            *self
                .0
                .shared
                .after
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(earlier);
        }
    }

    /// Adds a write and returns the link that later writes of the same row
    /// go through.
    pub fn add(&self, op: Op, completion: Option<Completion>) -> GroupLink {
        let link = GroupLink(self.0.shared.clone());
        if let Some((op, completion)) = link.try_add(op, completion) {
            // Unreachable while `self` holds the group open; kept total.
            self.0.shared.store.write(op, completion);
        }
        link
    }
}

impl Drop for WriteGroup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for GroupHolder {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        let GroupState::Gathering(ops) = std::mem::replace(&mut *state, GroupState::Sent) else {
            return;
        };
        if self.poisoned.load(Ordering::Relaxed) {
            for (_, c) in ops.iter() {
                if let Some(c) = c {
                    c.abandon();
                }
            }
            return;
        }
        let earlier = self
            .shared
            .after
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(earlier) = earlier {
            match earlier.try_add_all(ops) {
                Ok(()) => *state = GroupState::Merged(earlier),
                Err(ops) => self.shared.store.write_all(ops),
            }
            return;
        }
        // Sent while the lock is held: a link that then finds the group
        // gone sends its own write after this one, so the store sees them
        // in that order (one inbox, first in first out).
        self.shared.store.write_all(ops);
    }
}

/// A handle on a `WriteGroup` that does not keep it open: a write through
/// it joins the group while the group is gathering, and goes to the store
/// directly (after the group) once the group has gone.
#[derive(Clone)]
pub struct GroupLink(Arc<GroupShared>);

impl GroupLink {
    /// Joins the group (or the one it merged into), or hands the write
    /// back if the group has gone.
    fn try_add(&self, op: Op, completion: Option<Completion>) -> Option<GroupedWrite> {
        let mut state = self.0.state();
        match &mut *state {
            GroupState::Gathering(ops) => {
                ops.push((op, completion));
                None
            }
            GroupState::Merged(into) => {
                let into = into.clone();
                drop(state);
                into.try_add(op, completion)
            }
            GroupState::Sent => Some((op, completion)),
        }
    }

    /// Joins all of `ops`, or hands them back if the group has gone.
    fn try_add_all(&self, mut ops: Vec<GroupedWrite>) -> Result<(), Vec<GroupedWrite>> {
        let mut state = self.0.state();
        match &mut *state {
            GroupState::Gathering(gathering) => {
                gathering.append(&mut ops);
                Ok(())
            }
            GroupState::Merged(into) => {
                let into = into.clone();
                drop(state);
                into.try_add_all(ops)
            }
            GroupState::Sent => Err(ops),
        }
    }

    fn is_open(&self) -> bool {
        let state = self.0.state();
        match &*state {
            GroupState::Gathering(_) => true,
            GroupState::Merged(into) => {
                let into = into.clone();
                drop(state);
                into.is_open()
            }
            GroupState::Sent => false,
        }
    }

    /// Replaces `client_id`'s queue writes in the group by barriers that
    /// keep their completions (the session is being deleted); a copy that
    /// was to join its queue releases its message instead.
    fn withdraw(&self, client_id: &str) {
        let mut state = self.0.state();
        match &mut *state {
            GroupState::Gathering(ops) => {
                for (op, _) in ops.iter_mut() {
                    match op {
                        Op::Enqueue {
                            client_id: c, id, ..
                        } if &**c == client_id => {
                            *op = Op::Release { id: *id };
                        }
                        Op::Dequeue { client_id: c, .. }
                        | Op::Sent { client_id: c, .. }
                        | Op::Unhold { client_id: c, .. }
                        | Op::Inbound { client_id: c, .. }
                            if &**c == client_id =>
                        {
                            *op = Op::Barrier;
                        }
                        _ => {}
                    }
                }
            }
            GroupState::Merged(into) => {
                let into = into.clone();
                drop(state);
                into.withdraw(client_id);
            }
            GroupState::Sent => {}
        }
    }

    fn same(&self, other: &GroupLink) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The rows (or retained topics) of one actor whose first write is in a
/// group that has not gone to the store yet. Every later write of such a
/// key follows its group; other writes go straight to the store (the
/// caller's handle: not one kept per actor, since every clone of an actix
/// address is an allocation and a session per client holds this).
pub struct GroupLinks<K> {
    links: SharedSeedMap<K, GroupLink>,
    /// Size after the last sweep of gone groups (sweeps are amortised).
    swept_at: usize,
}

impl<K> Default for GroupLinks<K> {
    fn default() -> GroupLinks<K> {
        GroupLinks {
            links: Default::default(),
            swept_at: 0,
        }
    }
}

impl<K: std::hash::Hash + Eq> GroupLinks<K> {
    /// The group `key`'s last write is in, while that group is gathering.
    pub fn open(&self, key: &K) -> Option<GroupLink> {
        self.links.get(key).filter(|l| l.is_open()).cloned()
    }

    pub fn remember(&mut self, key: K, link: GroupLink) {
        if self.links.len() >= 2 * self.swept_at.max(32) {
            self.links.retain(|_, l| l.is_open());
            self.swept_at = self.links.len();
        }
        self.links.insert(key, link);
    }

    /// Writes `op` for `key`: behind the key's group if it has one.
    pub fn write(&mut self, store: &StoreHandle, key: &K, op: Op, completion: Option<Completion>) {
        let (op, completion) = match self.links.get(key) {
            Some(link) => match link.try_add(op, completion) {
                None => return,
                Some(back) => {
                    self.links.remove(key);
                    back
                }
            },
            None => (op, completion),
        };
        store.write(op, completion);
    }

    /// The session `client_id` is being deleted: its rows leave the groups.
    pub fn withdraw(&mut self, client_id: &str) {
        for link in self.links.values() {
            link.withdraw(client_id);
        }
        self.links.clear();
    }

    /// A barrier whose completion waits for every open group as well (each
    /// gets a clone; it runs when the last clone is released).
    pub fn barrier(&mut self, store: &StoreHandle, completion: Option<Completion>) {
        self.links.retain(|_, l| l.is_open());
        self.swept_at = self.links.len();
        if let Some(c) = &completion {
            let mut seen: Vec<&GroupLink> = Vec::new();
            for link in self.links.values() {
                if !seen.iter().any(|s| s.same(link)) {
                    seen.push(link);
                    let _ = link.try_add(Op::Barrier, Some(c.clone()));
                }
            }
        }
        store.write(Op::Barrier, completion);
    }
}

/// A publisher's acknowledgement on its way through routing: the
/// completion that sends PUBACK/PUBREC, and for QoS 2 the group its durable
/// copies are written in.
#[derive(Clone)]
pub struct Acknowledgement {
    pub completion: Completion,
    pub group: Option<WriteGroup>,
}

impl Acknowledgement {
    /// Writes `op` (a durable copy) so that the acknowledgement waits for
    /// it. Returns the group's link when it joined a group: later writes of
    /// the same row must follow it (see [`GroupLinks`]).
    pub fn write(
        &self,
        store: &StoreHandle,
        op: Op,
        completion: Option<Completion>,
    ) -> Option<GroupLink> {
        let completion = Completion::both(completion, Some(self.completion.clone()));
        match &self.group {
            Some(group) => Some(group.add(op, completion)),
            None => {
                store.write(op, completion);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::durable::store::LoadRetained;
    use crate::protocol::{QoS, TopicName};
    use bytes::Bytes;

    fn set(topic: &str, value: &'static [u8]) -> Op {
        Op::SetRetained {
            topic: TopicName::new(topic.to_string()).unwrap(),
            payload: Bytes::from_static(value),
            qos: QoS::AtLeastOnce,
            properties: None,
        }
    }

    fn gathered(link: &GroupLink) -> usize {
        match &*link.0.state() {
            GroupState::Gathering(ops) => ops.len(),
            _ => usize::MAX,
        }
    }

    /// Two QoS 2 changes of one retained topic whose groups complete in the
    /// opposite order: the later group joins the earlier one, later writes
    /// through its link follow, and the store keeps the later value.
    #[test]
    fn a_group_completed_before_the_earlier_one_joins_it_and_commits_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("roost.db");
        let system = actix::System::new();
        let loaded = system.block_on(async move {
            let (_, store, _) = crate::broker::durable::store::start_for_test(db).await;
            let first = WriteGroup::new(store.clone());
            let second = WriteGroup::new(store.clone());
            let first_link = first.add(set("r/t", b"v1"), None);
            second.after(first_link.clone());
            let second_link = second.add(set("r/t", b"v2"), None);
            drop(second);
            assert!(matches!(&*second_link.0.state(), GroupState::Merged(_)));
            assert_eq!(
                gathered(&first_link),
                2,
                "the second group's write joined the first"
            );
            assert!(second_link.try_add(Op::Barrier, None).is_none());
            assert_eq!(
                gathered(&first_link),
                3,
                "and so do later writes through its link"
            );
            assert!(second_link.is_open());
            drop(first);
            assert!(!second_link.is_open());
            store.addr().send(LoadRetained).await.unwrap()
        });
        let values: Vec<_> = loaded.iter().map(|m| m.payload.clone()).collect();
        assert_eq!(values, [Bytes::from_static(b"v2")]);
    }
}
