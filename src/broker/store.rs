//! Store actor: owns the SQLite connection and commits writes in groups.
//!
//! Every actor that changes durable state writes through a [`StoreHandle`]
//! (an `Op` and, optionally, a `Completion` to run once it is durable).
//! Writes that arrive while a commit is under way wait in the next batch;
//! when the commit ends, the whole batch commits as one transaction. Under
//! load many messages share one commit (group commit), so "acknowledge
//! after commit" costs a transaction per batch, not per message; when idle,
//! a write commits at once.
//!
//! Writes reach the store through its [`Inbox`], a queue that the store
//! takes whole, rather than as one actor message each: at thousands of
//! writes per commit, the envelope of each (allocated on a worker, freed
//! on the store's thread) and the mailbox hand-off cost the store's thread
//! more than a tenth of its time. Requests with a reply (`LoadRetained`,
//! `Flush`) are actor messages; their handlers take the inbox first, so a
//! request still comes after the writes sent before it.

use super::metrics::Metrics;
use super::supervision::{guard, ActorKind, RestartTracker};
use crate::store::{self, Batch, Bodies, Checkpointer, Completion, Op};
use actix::prelude::*;
use sqlx::SqliteConnection;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Room the store's spare inbox vector keeps between commits; beyond it,
/// memory is given back.
const KEPT_INBOX_CAPACITY: usize = 1 << 16;

/// A change to make durable, and what to run once it has committed.
pub type PendingWrite = (Op, Option<Completion>);

/// Writes sent to the store and not yet in its batch, in the order sent.
#[derive(Default)]
pub struct Inbox {
    writes: std::sync::Mutex<Vec<PendingWrite>>,
    /// The store's task, woken when the inbox stops being empty.
    store: futures::task::AtomicWaker,
}

impl Inbox {
    fn writes(&self) -> std::sync::MutexGuard<'_, Vec<PendingWrite>> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything waiting; `spare` (emptied, with its room) takes its place.
    fn take(&self, spare: Vec<PendingWrite>) -> Vec<PendingWrite> {
        std::mem::replace(&mut *self.writes(), spare)
    }
}

/// How actors reach the store: writes go into its inbox; requests with a
/// reply go to the actor's address.
#[derive(Clone)]
pub struct StoreHandle {
    addr: Addr<Store>,
    inbox: Arc<Inbox>,
}

impl StoreHandle {
    pub fn new(addr: Addr<Store>, inbox: Arc<Inbox>) -> StoreHandle {
        StoreHandle { addr, inbox }
    }

    pub fn addr(&self) -> &Addr<Store> {
        &self.addr
    }

    /// Makes `op` durable; runs `completion` after it commits.
    pub fn write(&self, op: Op, completion: Option<Completion>) {
        self.add(|writes| writes.push((op, completion)));
    }

    /// Writes that must commit in one transaction (see [`WriteGroup`]).
    fn write_all(&self, mut ops: Vec<PendingWrite>) {
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
struct InboxStream(Arc<Inbox>);

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

/// Shutdown → Store: reply once everything written so far has committed,
/// then checkpoint and stop writing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

pub struct Store {
    /// `None` while a commit holds it.
    conn: Option<SqliteConnection>,
    inbox: Arc<Inbox>,
    /// The inbox's last contents, emptied, for it to fill again.
    spare_writes: Vec<PendingWrite>,
    /// Which rows refer to which message bodies; travels with `conn`.
    bodies: Option<Bodies>,
    /// Where to reopen the database after a restart that lost the connection.
    db: (std::path::PathBuf, crate::store::Synchronous),
    /// Set while a commit runs: a restart then lost the connection with it.
    committing: bool,
    /// Retained-message loads waiting for the writes before them to commit.
    retained_loads: Vec<(
        u32,
        tokio::sync::oneshot::Sender<Vec<crate::session::Message>>,
    )>,
    restarts: Arc<RestartTracker>,
    batch: Batch,
    /// The last committed batch, emptied: the next batch reuses its room.
    spare: Option<Batch>,
    flush_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Copies the WAL into the database file on a thread of its own;
    /// `None` once the store has flushed for shutdown.
    checkpointer: Option<Checkpointer>,
    metrics: Arc<Metrics>,
}

impl Store {
    pub fn new(
        conn: SqliteConnection,
        bodies: Bodies,
        db: (std::path::PathBuf, crate::store::Synchronous),
        metrics: Arc<Metrics>,
        restarts: Arc<RestartTracker>,
        inbox: Arc<Inbox>,
    ) -> Store {
        let m = metrics.clone();
        let checkpointer = Checkpointer::start(&db.0, db.1, move || {
            m.store_checkpoints.fetch_add(1, Ordering::Relaxed);
        })
        .map_err(|e| log::error!("cannot start the checkpoint thread ({e}); the WAL is checkpointed by the writer only"))
        .ok();
        Store {
            conn: Some(conn),
            inbox,
            spare_writes: Vec::new(),
            bodies: Some(bodies),
            db,
            committing: false,
            retained_loads: Vec::new(),
            restarts,
            batch: Batch::default(),
            spare: None,
            flush_waiters: Vec::new(),
            checkpointer,
            metrics,
        }
    }

    /// Serves retained loads whose earlier writes have all committed.
    fn serve_loads(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.conn.is_none() || !self.retained_loads.iter().any(|(n, _)| *n == 0) {
            return false;
        }
        let Some(mut conn) = self.conn.take() else {
            return false;
        };
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retained_loads)
            .into_iter()
            .partition(|(n, _)| *n == 0);
        self.retained_loads = waiting;
        self.committing = true;
        let work = async move {
            let loaded = store::load_retained(&mut conn).await;
            (conn, loaded)
        };
        ctx.spawn(work.into_actor(self).map(move |(conn, loaded), act, ctx| {
            act.conn = Some(conn);
            act.committing = false;
            match loaded {
                Ok(messages) => {
                    for (_, tx) in ready {
                        let _ = tx.send(messages.clone());
                    }
                }
                Err(e) => log::error!("loading retained messages failed: {e}"),
            }
            act.commit(ctx);
        }));
        true
    }

    /// Moves the writes waiting in the inbox into the batch, in order. A
    /// write whose push panics is lost, with its completion abandoned
    /// (nothing is acknowledged for it); the writes after it still go in.
    /// False after such a panic: the actor then stops, to be restarted.
    fn take_inbox(&mut self, ctx: &mut Context<Self>) -> bool {
        let mut writes = self.inbox.take(std::mem::take(&mut self.spare_writes));
        if writes.is_empty() {
            self.spare_writes = writes;
            return true;
        }
        let batch = &mut self.batch;
        let mut failed = false;
        let mut rest = writes.drain(..);
        // Each call pushes until a push panics. The write being pushed is
        // dropped while unwinding, which abandons its completion; the next
        // call goes on with the rest.
        while guard::<PendingWrite, _>(ActorKind::Store, &"", || {
            for (op, completion) in rest.by_ref() {
                batch.push(op, completion);
            }
        })
        .is_err()
        {
            failed = true;
        }
        drop(rest);
        if writes.capacity() <= KEPT_INBOX_CAPACITY {
            self.spare_writes = writes;
        }
        if failed {
            ctx.stop();
        }
        !failed
    }

    /// Starts a commit of everything pending, unless one is running.
    fn commit(&mut self, ctx: &mut Context<Self>) {
        if !self.take_inbox(ctx) || self.conn.is_none() || self.serve_loads(ctx) {
            return;
        }
        if self.batch.is_empty() {
            // Nothing before a waiting load is left uncommitted.
            for (n, _) in &mut self.retained_loads {
                *n = 0;
            }
            if self.serve_loads(ctx) {
                return;
            }
            for w in self.flush_waiters.drain(..) {
                let _ = w.send(());
            }
            return;
        }
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let mut bodies = self.bodies.take().unwrap_or_else(Bodies::stale);
        let batch = std::mem::replace(&mut self.batch, self.spare.take().unwrap_or_default());
        let started = Instant::now();
        self.committing = true;
        for (n, _) in &mut self.retained_loads {
            *n = n.saturating_sub(1);
        }
        let injected_failure = super::supervision::fault::commit_fails();
        let work = async move {
            let result = match injected_failure {
                true => Err(store::CommitError::Injected),
                false => store::commit(&mut conn, &batch, &mut bodies).await,
            };
            (conn, bodies, batch, result)
        };
        ctx.spawn(work.into_actor(self).map(move |(conn, bodies, mut batch, result), act, ctx| {
            act.conn = Some(conn);
            act.bodies = Some(bodies);
            act.committing = false;
            if let (Ok(()), Some(c)) = (&result, &act.checkpointer) {
                c.committed();
            }
            // The next commit starts before this one's completions run, so
            // the database works while they do. Their order is kept: the
            // next batch's completions run only after its own commit.
            act.commit(ctx);
            let size = batch.len() as u64;
            match result {
                Ok(()) => {
                    act.metrics.store_commits.fetch_add(1, Ordering::Relaxed);
                    act.metrics.store_ops_committed.fetch_add(size, Ordering::Relaxed);
                    act.metrics.store_commit_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    act.metrics.store_commit_seconds.observe(started.elapsed().as_secs_f64());
                    act.metrics.store_batch_changes.observe(size as f64);
                    batch.release();
                    act.spare = Some(batch);
                }
                Err(e) => {
                    // Nothing in the batch is acknowledged: the connections
                    // that wait for it are closed, and their clients resend.
                    log::error!("database commit of {size} changes failed, nothing of it is acknowledged; the clients waiting for it are disconnected and resend: {e}");
                    act.metrics.store_commit_failures.fetch_add(1, Ordering::Relaxed);
                    super::outbound::abandon_failed_commit(|| batch.abandon());
                }
            }
        }));
    }
}

impl Actor for Store {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        // Again after a restart: a restart drops the context's streams.
        ctx.add_stream(InboxStream(self.inbox.clone()));
        // After a restart, what waited before it (the batch, retained
        // loads, a flush) goes on without waiting for another write.
        self.commit(ctx);
    }
}

/// The inbox has writes: take them and commit.
impl StreamHandler<()> for Store {
    fn handle(&mut self, _: (), ctx: &mut Context<Self>) {
        self.commit(ctx);
    }

    /// The inbox never ends; the store stops only by `Flush` or a failure.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Supervised for Store {
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        self.restarts.record(ActorKind::Store);
        // A commit cut short by the restart took the connection (and its
        // batch, whose completions were abandoned) with it: reopen.
        if self.committing && self.conn.is_none() {
            self.committing = false;
            let (path, sync) = self.db.clone();
            ctx.wait(
                async move { store::reopen(&path, sync).await }
                    .into_actor(self)
                    .map(|conn, act, ctx| match conn {
                        Ok(conn) => {
                            log::warn!("store restarted: database reopened");
                            act.conn = Some(conn);
                            act.commit(ctx);
                        }
                        Err(e) => {
                            log::error!("store restarted but cannot reopen the database: {e}")
                        }
                    }),
            );
        }
    }
}

/// RetainedStore → Store: every retained message as committed, after the
/// writes sent before this request have committed.
#[derive(Message)]
#[rtype(result = "Vec<crate::session::Message>")]
pub struct LoadRetained;

impl Handler<LoadRetained> for Store {
    type Result = ResponseFuture<Vec<crate::session::Message>>;

    fn handle(&mut self, _: LoadRetained, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Writes already here commit first: the one being committed (a load
        // waits for the connection) and the pending batch, with what waits
        // in the inbox (one more commit). If taking the inbox failed, the
        // store restarts, and the load waits for the commit after that.
        let taken = self.take_inbox(ctx);
        let commits_before = if taken {
            u32::from(!self.batch.is_empty())
        } else {
            1
        };
        self.retained_loads.push((commits_before, tx));
        if taken && !self.committing {
            self.commit(ctx);
        }
        Box::pin(async move { rx.await.unwrap_or_default() })
    }
}

impl Handler<Flush> for Store {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.flush_waiters.push(tx);
        self.commit(ctx);
        Box::pin(
            async move {
                let _ = rx.await;
            }
            .into_actor(self)
            .then(|_, act, _| {
                let m = &act.metrics;
                let commits = m.store_commits.load(Ordering::Relaxed);
                let ops = m.store_ops_committed.load(Ordering::Relaxed);
                let micros = m.store_commit_micros.load(Ordering::Relaxed);
                if let (Some(per_tx), Some(us)) = (ops.checked_div(commits), micros.checked_div(commits)) {
                    log::info!(
                        "store: {ops} changes committed in {commits} transactions (on average {per_tx} per transaction, {us} µs each)"
                    );
                }
                let conn = act.conn.take();
                act.checkpointer = None; // its thread ends
                async move {
                    if let Some(mut conn) = conn {
                        if let Err(e) = store::truncate_wal(&mut conn).await {
                            log::warn!("database checkpoint at shutdown failed: {e}");
                        }
                        let _ = sqlx::Connection::close(conn).await;
                    }
                }
                .into_actor(act)
            }),
        )
    }
}

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

    /// Replaces `client_id`'s row writes in the group by barriers that keep
    /// their completions (the session is being deleted).
    fn withdraw(&self, client_id: &str) {
        let mut state = self.0.state();
        match &mut *state {
            GroupState::Gathering(ops) => {
                for (op, _) in ops.iter_mut() {
                    let theirs = match op {
                        Op::PutMessage { client_id: c, .. }
                        | Op::DeleteMessage { client_id: c, .. } => &**c == client_id,
                        _ => false,
                    };
                    if theirs {
                        *op = Op::Barrier;
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
    links: crate::session::SessionMap<K, GroupLink>,
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
    use crate::protocol::{QoS, TopicName};
    use bytes::Bytes;
    use std::time::Duration;

    fn set(topic: &str, value: &'static [u8]) -> Op {
        Op::SetRetained {
            topic: TopicName::new(topic.to_string()).unwrap(),
            payload: Bytes::from_static(value),
            qos: QoS::AtLeastOnce,
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
            let (conn, snapshot) =
                crate::store::open(&db, crate::store::Synchronous::Normal, false)
                    .await
                    .unwrap();
            let metrics = Arc::new(Metrics::default());
            let restarts = RestartTracker::new(
                10,
                Duration::from_secs(60),
                metrics.clone(),
                Box::new(|_| {}),
            );
            let inbox = Arc::new(Inbox::default());
            let addr = Store::new(
                conn,
                snapshot.bodies,
                (db, crate::store::Synchronous::Normal),
                metrics,
                restarts,
                inbox.clone(),
            )
            .start();
            let store = StoreHandle::new(addr, inbox);
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
