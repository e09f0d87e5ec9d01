//! Store actor: owns the SQLite connection and commits writes in groups.
//!
//! Every actor that changes durable state sends a [`Write`] (an `Op` and,
//! optionally, a `Completion` to run once it is durable). Writes that arrive
//! while a commit is under way wait in the next batch; when the commit ends,
//! the whole batch commits as one transaction. Under load many messages
//! share one commit (group commit), so "acknowledge after commit" costs a
//! transaction per batch, not per message; when idle, a write commits at once.

use super::metrics::Metrics;
use crate::store::{self, Batch, Completion, Op};
use actix::prelude::*;
use sqlx::SqliteConnection;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often committed pages are moved from the WAL into the database file
/// (SQLite also does it on its own every 1000 pages; this keeps the WAL
/// small when a long-running reader held it back).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);

/// Any actor → Store: make this change durable; run `completion` after it commits.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Write {
    pub op: Op,
    pub completion: Option<Completion>,
}

/// Shutdown → Store: reply once everything written so far has committed,
/// then checkpoint and stop writing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

pub struct Store {
    /// `None` while a commit holds it.
    conn: Option<SqliteConnection>,
    batch: Batch,
    flush_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    last_checkpoint: Instant,
    metrics: Arc<Metrics>,
}

impl Store {
    pub fn new(conn: SqliteConnection, metrics: Arc<Metrics>) -> Store {
        Store { conn: Some(conn), batch: Batch::default(), flush_waiters: Vec::new(), last_checkpoint: Instant::now(), metrics }
    }

    /// Starts a commit of everything pending, unless one is running.
    fn commit(&mut self, ctx: &mut Context<Self>) {
        if self.conn.is_none() {
            return;
        }
        if self.batch.is_empty() {
            for w in self.flush_waiters.drain(..) {
                let _ = w.send(());
            }
            return;
        }
        let Some(mut conn) = self.conn.take() else { return };
        let batch = std::mem::take(&mut self.batch);
        let checkpoint = self.last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL;
        let started = Instant::now();
        let work = async move {
            let result = store::commit(&mut conn, &batch).await;
            if checkpoint && result.is_ok() {
                if let Err(e) = store::checkpoint(&mut conn, false).await {
                    log::warn!("database checkpoint failed: {e}");
                }
            }
            (conn, batch, result)
        };
        ctx.spawn(work.into_actor(self).map(move |(conn, batch, result), act, ctx| {
            act.conn = Some(conn);
            if checkpoint {
                act.last_checkpoint = Instant::now();
            }
            let size = batch.len() as u64;
            match result {
                Ok(()) => {
                    act.metrics.store_commits.fetch_add(1, Ordering::Relaxed);
                    act.metrics.store_ops_committed.fetch_add(size, Ordering::Relaxed);
                    act.metrics.store_commit_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    batch.release();
                }
                Err(e) => {
                    // Nothing in the batch is acknowledged: clients resend.
                    log::error!("database commit of {size} changes failed, nothing of it is acknowledged: {e}");
                    act.metrics.store_commit_failures.fetch_add(1, Ordering::Relaxed);
                    batch.abandon();
                }
            }
            act.commit(ctx);
        }));
    }
}

impl Actor for Store {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Write> for Store {
    type Result = ();

    fn handle(&mut self, msg: Write, ctx: &mut Context<Self>) {
        self.batch.push(msg.op, msg.completion);
        self.commit(ctx);
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
                if commits > 0 {
                    let ops = m.store_ops_committed.load(Ordering::Relaxed);
                    let micros = m.store_commit_micros.load(Ordering::Relaxed);
                    log::info!(
                        "store: {ops} changes committed in {commits} transactions (on average {} per transaction, {} µs each)",
                        ops / commits,
                        micros / commits
                    );
                }
                let conn = act.conn.take();
                async move {
                    if let Some(mut conn) = conn {
                        if let Err(e) = store::checkpoint(&mut conn, true).await {
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
