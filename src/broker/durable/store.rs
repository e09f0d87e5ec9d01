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
//!
//! The store also owns the queues of persistent sessions (`store::Queues`):
//! queue changes are applied to that index as they are taken from the
//! inbox, and a session reads its queue with [`PageIn`], answered from the
//! index and the cache of recent messages, or the database.
//!
//! A commit that fails (a full disk, an I/O error, a lock held by another
//! connection for longer than the busy timeout) is kept and committed
//! again, with a growing pause between tries, until it succeeds: nothing
//! of it is acknowledged before, and every later batch waits behind it, so
//! what the sessions hold in memory never runs ahead of what is stored for
//! good. Meanwhile the broker refuses new persistent sessions
//! (`Metrics::store_failing`).

mod inbox;
mod pages;
mod restart;
mod retry;

pub use inbox::{PendingWrite, StoreHandle, WriteInbox};

use super::completion::Completion;
use crate::broker::net::outbound::WakesHeldBack;
use crate::broker::ops::metrics::Metrics;
use crate::broker::ops::restart::fault;
use crate::broker::ops::restart::{guard, ActorKind, RestartTracker};
use crate::config::Synchronous;
use crate::message::Message;
use crate::session::Paged;
use crate::store::{self, Checkpointer, LogCache, Logged, Op, QueueBounds, Queues};
use actix::prelude::*;
use bytestring::ByteString;
use inbox::InboxStream;
use retry::FailedBatch;
use sqlx::SqliteConnection;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Room the store's spare inbox vector keeps between commits; beyond it,
/// memory is given back.
const KEPT_INBOX_CAPACITY: usize = 1 << 16;

/// How many times a small batch under load lets writers run first (see
/// `Store::linger`), and the size at which it stops.
const LINGER_YIELDS: usize = 16;
const LINGER_UNTIL_OPS: usize = 4096;
/// Writes that arrived while a commit ran from which the store counts as
/// under load.
const LOAD_OPS: usize = 256;
/// How long a batch that can wait (see `Batch::can_wait`: subscribers'
/// acknowledgements only) waits after the last commit began before it
/// commits: a session draining its queue acknowledges thousands of
/// messages a second, each batch a commit of its own without this.
const WAITING_COMMIT_AFTER: std::time::Duration = std::time::Duration::from_millis(10);

/// One group commit's writes, each with the completion that waits for it.
type Batch = store::Batch<Completion>;

/// Shutdown → Store: reply once everything written so far has committed,
/// then checkpoint and stop writing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Session → Store: up to `max` messages of the session's queue that it
/// does not hold yet, after the writes sent before this request. When the
/// answer says there are no more, the store tells `more` once there are.
#[derive(Message)]
#[rtype(result = "Page")]
pub struct PageIn {
    pub client_id: ByteString,
    pub max: u32,
    pub more: Recipient<MoreQueued>,
}

/// Store → Session, the answer to [`PageIn`].
#[derive(MessageResponse, Default)]
pub struct Page {
    pub messages: Vec<Paged>,
    /// The store holds more of the queue.
    pub more: bool,
    /// The page could not be read (the database failed): ask again later.
    pub failed: bool,
}

/// Store → Session: messages were queued for the session in the store
/// after it was last told there were none.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MoreQueued;

/// A page whose messages are partly in the database.
struct PendingPage {
    client_id: ByteString,
    paged: Vec<store::Paged>,
    reply: tokio::sync::oneshot::Sender<Page>,
    more: Recipient<MoreQueued>,
}

/// What the store needs to know of sessions' queues.
pub struct QueueSettings {
    pub bounds: QueueBounds,
    /// Bytes of recent messages kept in memory.
    pub cache_bytes: usize,
}

pub struct Store {
    /// `None` while a commit holds it.
    conn: Option<store::Db>,
    inbox: Arc<WriteInbox>,
    /// The inbox's last contents, emptied, for it to fill again.
    spare_writes: Vec<PendingWrite>,
    /// Every persistent session's queue.
    queues: Queues,
    bounds: QueueBounds,
    /// Recent messages of the log.
    cache: LogCache,
    /// Sessions told their queue has nothing more in the store, to tell
    /// when it has.
    starved: ahash::AHashMap<ByteString, Recipient<MoreQueued>>,
    /// Pages waiting to read the database.
    pending_pages: Vec<PendingPage>,
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
    /// At least `LOAD_OPS` writes arrived while the last commit ran.
    under_load: bool,
    /// When the last commit began (a batch that can wait commits
    /// `WAITING_COMMIT_AFTER` later; `inbox.timer_set` while it waits).
    last_commit: Instant,
    /// A batch whose commit failed: it commits before anything else.
    failed: Option<FailedBatch>,
    /// Copies the WAL into the database file on a thread of its own;
    /// `None` once the store has flushed for shutdown.
    checkpointer: Option<Checkpointer>,
    metrics: Arc<Metrics>,
}

impl Store {
    pub fn new(
        conn: SqliteConnection,
        queues: Queues,
        settings: QueueSettings,
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
            conn: Some(store::Db::new(conn)),
            inbox,
            spare_writes: Vec::new(),
            queues,
            bounds: settings.bounds,
            cache: LogCache::new(settings.cache_bytes),
            starved: ahash::AHashMap::new(),
            pending_pages: Vec::new(),
            db,
            committing: false,
            retained_loads: Vec::new(),
            restarts,
            batch: Batch::default(),
            spare: None,
            flush_waiters: Vec::new(),
            under_load: false,
            last_commit: Instant::now(),
            failed: None,
            checkpointer,
            metrics,
        }
    }

    /// Serves retained loads whose earlier writes have all committed (a
    /// failed batch holds them up too).
    fn serve_loads(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.conn.is_none()
            || self.failed.is_some()
            || !self.retained_loads.iter().any(|(n, _)| *n == 0)
        {
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
            let loaded = store::load_retained(conn.sqlx()).await;
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
        let (batch, queues, cache, starved) = (
            &mut self.batch,
            &mut self.queues,
            &mut self.cache,
            &mut self.starved,
        );
        let (bounds, metrics) = (self.bounds, &self.metrics);
        let mut failed = false;
        let mut rest = writes.drain(..);
        // Each call pushes until a push panics. The write being pushed is
        // dropped while unwinding, which abandons its completion; the next
        // call goes on with the rest.
        while guard::<PendingWrite, _>(ActorKind::Store, &"", || {
            for (op, completion) in rest.by_ref() {
                match &op {
                    Op::Append { id, message, .. } => {
                        // Cached apart from the publisher's read buffer.
                        let logged = Logged {
                            topic: cache.shared_topic(&message.topic),
                            payload: message.detached_payload(),
                            qos: message.qos,
                            properties: message.properties.clone(),
                        };
                        cache.appended(*id, logged)
                    }
                    Op::Enqueue {
                        client_id,
                        held: false,
                        ..
                    } => {
                        if let Some(session) = starved.remove(client_id) {
                            session.do_send(MoreQueued);
                        }
                    }
                    Op::SessionDisconnected { client_id } | Op::DeleteSession { client_id, .. } => {
                        starved.remove(client_id);
                    }
                    _ => {}
                }
                if batch.push(op, completion, queues, bounds).dropped_full {
                    Metrics::inc(&metrics.dropped_queue_full);
                }
            }
        })
        .is_err()
        {
            failed = true;
        }
        drop(rest);
        // Nothing held back past this call: pages and metrics read `queues`.
        batch.settle(queues);
        if writes.capacity() <= KEPT_INBOX_CAPACITY {
            self.spare_writes = writes;
        }
        if failed {
            ctx.stop();
        }
        !failed
    }

    /// Starts a commit, unless one is running: of the failed batch when its
    /// pause is over, else of everything pending.
    fn commit(&mut self, ctx: &mut Context<Self>) {
        // A store stopping for a restart (a push panicked) starts nothing:
        // a commit spawned now would be dropped with the context, and the
        // batch with it; the restart commits what waits.
        if !ctx.state().alive() || !self.take_inbox(ctx) || self.conn.is_none() {
            return;
        }
        let retry = match self.failed.take() {
            Some(failed) if failed.due => Some(failed),
            Some(waiting) => {
                self.failed = Some(waiting);
                return;
            }
            None => None,
        };
        if retry.is_none() && (self.serve_loads(ctx) || self.serve_pages(ctx)) {
            return;
        }
        if retry.is_none() && self.batch.is_empty() {
            // Nothing before a waiting load is left uncommitted.
            for (n, _) in &mut self.retained_loads {
                *n = 0;
            }
            if self.serve_loads(ctx) || self.serve_pages(ctx) {
                return;
            }
            for w in self.flush_waiters.drain(..) {
                let _ = w.send(());
            }
            return;
        }
        if retry.is_none() && self.batch.can_wait() && self.flush_waiters.is_empty() {
            let since = self.last_commit.elapsed();
            if since < WAITING_COMMIT_AFTER {
                if !self.inbox.timer_set.swap(true, Ordering::SeqCst) {
                    ctx.run_later(WAITING_COMMIT_AFTER - since, |act, ctx| {
                        act.inbox.timer_set.store(false, Ordering::SeqCst);
                        act.commit(ctx);
                    });
                }
                return;
            }
        }
        if retry.is_none() {
            self.linger(ctx);
        }
        let Some(mut conn) = self.conn.take() else {
            self.failed = retry;
            return;
        };
        let (mut batch, mut retry) = match retry {
            Some(mut failed) => (std::mem::take(&mut failed.batch), Some(failed)),
            None => {
                for (n, _) in &mut self.retained_loads {
                    *n = n.saturating_sub(1);
                }
                let next = self.spare.take().unwrap_or_default();
                (std::mem::replace(&mut self.batch, next), None)
            }
        };
        // The queue rows of this batch: taken once, kept for a retry. What
        // no queue refers to any more leaves the cache now.
        batch.plan(&mut self.queues);
        if let Some(w) = &batch.queue_writes {
            for &(first, last) in &w.forgotten {
                self.cache.forget(first, last);
            }
        }
        let started = Instant::now();
        self.last_commit = started;
        self.committing = true;
        self.metrics
            .store_commit_attempts
            .fetch_add(1, Ordering::Relaxed);
        let injected_failure = fault::commit_fails();
        let work = async move {
            let result = match injected_failure {
                true => Err(store::CommitError::Injected),
                false => store::commit(&mut conn, &batch).await,
            };
            (conn, batch, result)
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |(conn, batch, result), act, ctx| {
                    act.conn = Some(conn);
                    act.committing = false;
                    let committed = match result {
                        Ok(()) => {
                            act.cache.committed(batch.appended());
                            act.gauge_queues();
                            act.committed(&batch, retry.take(), started);
                            Some(batch)
                        }
                        Err(e) => {
                            act.commit_failed(batch, retry.take(), &e, ctx);
                            None
                        }
                    };
                    // Load: writes kept coming while this commit ran.
                    act.take_inbox(ctx);
                    act.under_load = act.batch.len() >= LOAD_OPS;
                    // The next commit starts before this one's completions run, so
                    // the database works while they do. Their order is kept: the
                    // next batch's completions run only after its own commit.
                    act.commit(ctx);
                    if let Some(mut batch) = committed {
                        // One wake-up per client for all of the batch's
                        // replies, after the last of them is queued.
                        let _held = WakesHeldBack::new();
                        batch.release();
                        act.spare = Some(batch);
                    }
                }),
        );
    }

    /// Under load (writes kept arriving while the last commit ran), a small
    /// batch lets the threads that are making writes run first, as long
    /// as the batch keeps growing: a commit costs about the same whether it
    /// holds ten messages or a thousand (every page it touches is written
    /// whole), and a message acknowledged before its commit is never
    /// written at all. When nothing else has work (a client waiting for its
    /// acknowledgements), the yield returns at once and the commit starts.
    fn linger(&mut self, ctx: &mut Context<Self>) {
        if !self.under_load {
            return;
        }
        for _ in 0..LINGER_YIELDS {
            let before = self.batch.len();
            if before >= LINGER_UNTIL_OPS {
                return;
            }
            std::thread::yield_now();
            if !self.take_inbox(ctx) || self.batch.len() == before {
                return;
            }
        }
    }

    /// The queue gauges, after a commit.
    fn gauge_queues(&self) {
        let m = &self.metrics;
        m.queued_messages
            .store(self.queues.total(), Ordering::Relaxed);
        m.log_cache_bytes
            .store(self.cache.bytes() as u64, Ordering::Relaxed);
    }

    /// A commit succeeded: counted, and the end of a failure told.
    fn committed(&mut self, batch: &Batch, retried: Option<FailedBatch>, started: Instant) {
        if let Some(c) = &self.checkpointer {
            c.committed();
        }
        if let Some(failed) = retried {
            log::warn!(
                "database commit succeeded after {} failed tries over {:.1} s: durable acknowledgements go on, and persistent sessions are accepted again",
                failed.failures,
                failed.since.elapsed().as_secs_f64()
            );
            self.metrics.store_failing.store(false, Ordering::Relaxed);
        }
        let (m, size, took) = (&self.metrics, batch.len() as u64, started.elapsed());
        m.store_commits.fetch_add(1, Ordering::Relaxed);
        m.store_ops_committed.fetch_add(size, Ordering::Relaxed);
        m.store_commit_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        m.store_commit_seconds.observe(took.as_secs_f64());
        m.store_batch_changes.observe(size as f64);
    }
}

impl Actor for Store {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.gauge_queues();
        // Again after a restart: a restart drops the context's streams.
        ctx.add_stream(InboxStream(self.inbox.clone()));
        // After a restart, what waited before it (a failed batch, whose
        // retry timer the restart dropped, the batch, retained loads, a
        // flush) goes on without waiting for another write.
        if let Some(failed) = &mut self.failed {
            failed.due = true;
        }
        // A commit timer went with the context.
        self.inbox.timer_set.store(false, Ordering::SeqCst);
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
                        if let Err(e) = store::truncate_wal(conn.sqlx()).await {
                            log::warn!("database checkpoint at shutdown failed: {e}");
                        }
                        let _ = conn.close().await;
                    }
                }
                .into_actor(act)
            }),
        )
    }
}

/// A store on the database at `db` (created if need be), started on the
/// current system, for tests of the store and what talks to it.
#[cfg(test)]
pub(crate) async fn start_for_test(
    db: std::path::PathBuf,
) -> (Addr<Store>, StoreHandle, Arc<Metrics>) {
    let (conn, snapshot) = store::open(&db, Synchronous::Normal, false)
        .await
        .expect("a test database opens");
    let metrics = Arc::new(Metrics::default());
    let restarts = RestartTracker::new(
        10,
        std::time::Duration::from_secs(60),
        metrics.clone(),
        Box::new(|_| {}),
    );
    let inbox = Arc::new(WriteInbox::default());
    let settings = QueueSettings {
        bounds: QueueBounds {
            max_messages: 100,
            max_bytes: 1 << 20,
        },
        cache_bytes: 1 << 20,
    };
    let addr = Store::new(
        conn,
        snapshot.queues,
        settings,
        (db, Synchronous::Normal),
        metrics.clone(),
        restarts,
        inbox.clone(),
    )
    .start();
    (addr.clone(), StoreHandle::new(addr, inbox), metrics)
}
