//! A commit that failed: kept, and tried again after a pause that grows
//! with each failure, until it commits (see the store's doc).

use super::{Batch, Store};
use crate::store;
use actix::prelude::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The first pause before a failed commit is tried again; it doubles with
/// each failure up to `LONGEST_RETRY_PAUSE`.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// While a commit keeps failing, one log line this often, not one per try.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The pause before the next try of a commit that failed `failures` times.
fn retry_pause(failures: u32) -> Duration {
    FIRST_RETRY_PAUSE
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(LONGEST_RETRY_PAUSE)
}

/// A batch whose commit failed, kept to be committed again.
pub(super) struct FailedBatch {
    pub(super) batch: Batch,
    /// Failed tries so far.
    pub(super) failures: u32,
    /// When the first try failed.
    pub(super) since: Instant,
    /// When a failure was last logged.
    pub(super) logged: Instant,
    /// The pause is over (or the actor restarted): try again.
    pub(super) due: bool,
}

impl Store {
    /// Keeps a batch whose commit failed, to try again after a pause: it is
    /// not acknowledged, and nothing after it commits first.
    pub(super) fn commit_failed(
        &mut self,
        batch: Batch,
        before: Option<FailedBatch>,
        error: &store::CommitError,
        ctx: &mut Context<Self>,
    ) {
        self.metrics
            .store_commit_failures
            .fetch_add(1, Ordering::Relaxed);
        self.metrics.store_failing.store(true, Ordering::Relaxed);
        let now = Instant::now();
        let mut failed = before.unwrap_or(FailedBatch {
            batch: Batch::default(),
            failures: 0,
            since: now,
            logged: now,
            due: false,
        });
        failed.batch = batch;
        failed.failures += 1;
        failed.due = false;
        let pause = retry_pause(failed.failures);
        if failed.failures == 1 {
            log::error!(
                "database commit of {} changes failed: {error}. Nothing of it is acknowledged yet; roost tries again (after {} ms, then up to every {} s) until it commits, and refuses new persistent sessions (CONNACK 0x03) meanwhile",
                failed.batch.len(),
                pause.as_millis(),
                LONGEST_RETRY_PAUSE.as_secs()
            );
        } else if failed.logged.elapsed() >= FAILURE_LOG_INTERVAL {
            log::error!(
                "database commit still failing after {} tries over {:.0} s: {error}",
                failed.failures,
                failed.since.elapsed().as_secs_f64()
            );
            failed.logged = now;
        }
        self.failed = Some(failed);
        ctx.run_later(pause, |act, ctx| {
            if let Some(failed) = &mut act.failed {
                failed.due = true;
            }
            act.commit(ctx);
        });
    }
}
