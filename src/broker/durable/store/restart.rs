//! A restart of the store actor (after a panic): a commit cut short took
//! the connection with it, so the database is opened again; a reopen that
//! keeps failing counts against the restart policy, and ends roost.

use super::Store;
use crate::broker::ops::restart::{fault, ActorKind};
use crate::store;
use actix::prelude::*;
use std::time::Duration;

impl Supervised for Store {
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        self.restarts.record(ActorKind::Store);
        // A commit cut short by the restart took the connection (and its
        // batch, whose completions were abandoned) with it: reopen.
        if self.committing && self.conn.is_none() {
            self.committing = false;
            self.reopen(ctx);
        }
    }
}

/// The pause between tries to reopen the database after a restart.
const REOPEN_PAUSE: Duration = Duration::from_millis(500);

impl Store {
    /// Reopens the database after a restart that lost the connection. A
    /// reopen that fails counts as one more restart: one that keeps failing
    /// ends in the restart policy's shutdown (exit code 70), rather than a
    /// store that silently acknowledges nothing while roost runs on.
    fn reopen(&mut self, ctx: &mut Context<Self>) {
        let (path, sync) = self.db.clone();
        let injected_failure = fault::reopen_fails();
        let reopened = async move {
            match injected_failure {
                true => Err(store::StoreError::Open {
                    path,
                    reason: "injected failure".into(),
                }),
                false => store::reopen(&path, sync).await,
            }
        };
        ctx.wait(reopened.into_actor(self).map(|conn, act, ctx| match conn {
            Ok(conn) => {
                log::warn!("store restarted: database reopened");
                act.conn = Some(store::Db::new(conn));
                act.commit(ctx);
            }
            Err(e) => {
                log::error!(
                    "store restarted but cannot reopen the database ({e}); trying again in {REOPEN_PAUSE:?}"
                );
                if act.restarts.record(ActorKind::Store) {
                    ctx.run_later(REOPEN_PAUSE, |act, ctx| act.reopen(ctx));
                }
            }
        }));
    }
}
