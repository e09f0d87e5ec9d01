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
//! Writes reach the store through its [`WriteInbox`], a queue that the store
//! takes whole, rather than as one actor message each: at thousands of
//! writes per commit, the envelope of each (allocated on a worker, freed
//! on the store's thread) and the mailbox hand-off cost the store's thread
//! more than a tenth of its time. Requests with a reply (`LoadRetained`,
//! `Flush`) are actor messages; their handlers take the inbox first, so a
//! request still comes after the writes sent before it.

use super::completion::Completion;
use crate::broker::ops::metrics::Metrics;
use crate::broker::ops::restart::fault;
use crate::broker::ops::restart::{guard, ActorKind, RestartTracker};
use crate::config::Synchronous;
use crate::message::Message;
use crate::store::{self, Bodies, Checkpointer, Op};
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

/// One group commit's writes, each with the completion that waits for it.
type Batch = store::Batch<Completion>;

/// Writes sent to the store and not yet in its batch, in the order sent.
#[derive(Default)]
pub struct WriteInbox {
    writes: std::sync::Mutex<Vec<PendingWrite>>,
    /// The store's task, woken when the inbox stops being empty.
    store: futures::task::AtomicWaker,
}

impl WriteInbox {
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
    pub(super) fn write_all(&self, mut ops: Vec<PendingWrite>) {
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
struct InboxStream(Arc<WriteInbox>);

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
    inbox: Arc<WriteInbox>,
    /// The inbox's last contents, emptied, for it to fill again.
    spare_writes: Vec<PendingWrite>,
    /// Which rows refer to which message bodies; travels with `conn`.
    bodies: Option<Bodies>,
    /// Where to reopen the database after a restart that lost the connection.
    db: (std::path::PathBuf, Synchronous),
    /// Set while a commit runs: a restart then lost the connection with it.
    committing: bool,
    /// Retained-message loads waiting for the writes before them to commit.
    retained_loads: Vec<(u32, tokio::sync::oneshot::Sender<Vec<Message>>)>,
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
        db: (std::path::PathBuf, Synchronous),
        metrics: Arc<Metrics>,
        restarts: Arc<RestartTracker>,
        inbox: Arc<WriteInbox>,
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
        let injected_failure = fault::commit_fails();
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
                    // Nothing in the batch is acknowledged: every completion
                    // hears of the failure, and the replies waiting for it
                    // close their connections, so their clients resend.
                    log::error!("database commit of {size} changes failed, nothing of it is acknowledged; the clients waiting for it are disconnected and resend: {e}");
                    act.metrics.store_commit_failures.fetch_add(1, Ordering::Relaxed);
                    batch.abandon();
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
#[rtype(result = "Vec<Message>")]
pub struct LoadRetained;

impl Handler<LoadRetained> for Store {
    type Result = ResponseFuture<Vec<Message>>;

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
