//! The store's connection ([`Db`]): sqlx's, and the statements that the
//! commits and page reads prepare on its SQLite handle, kept from one
//! commit to the next.
//!
//! A commit of a few rows used to prepare its six statements again each
//! time (`BEGIN`, the log's insert, the runs' upsert and delete, the log's
//! range delete, `COMMIT`): SQLite parses and plans each one, which costs
//! as much as writing a few dozen rows. A publisher that keeps 64 messages
//! in flight into persistent sessions waits for one such commit per round.
//!
//! The statements live on sqlx's handle, and sqlx closes that handle with
//! `sqlite3_close`, which fails (and sqlx panics) while a statement is
//! left. So a `Db` finalizes its statements before its sqlx connection
//! closes, holding sqlx's lock on the handle while it does: [`Db::close`],
//! or its `Drop` when it is dropped instead.

use super::CommitError;
use sqlx::SqliteConnection;

pub struct Db {
    /// The handle seen through rusqlite, with its statement cache; made
    /// on first use. Declared first: if `Drop` could not take it, it still
    /// goes before `conn`.
    statements: Option<rusqlite::Connection>,
    /// `None` only inside `close`.
    conn: Option<SqliteConnection>,
}

impl Db {
    pub fn new(conn: SqliteConnection) -> Db {
        Db {
            statements: None,
            conn: Some(conn),
        }
    }

    /// For what goes through sqlx.
    pub fn sqlx(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("open until closed")
    }

    /// Runs `write` on the connection's own SQLite handle, on this thread,
    /// with sqlx's worker kept away from the handle meanwhile. Statements
    /// that `write` prepares with `prepare_cached` stay prepared for the
    /// next call.
    pub async fn direct<R>(
        &mut self,
        write: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<R>,
    ) -> Result<R, CommitError> {
        let conn = self.conn.as_mut().expect("open until closed");
        let mut locked = conn.lock_handle().await?;
        if self.statements.is_none() {
            // SAFETY: the rusqlite connection does not own the handle (it
            // never closes it) and is only used while sqlx's lock is held,
            // here and in `release`, which runs before sqlx closes the
            // handle.
            self.statements = Some(unsafe {
                rusqlite::Connection::from_handle(locked.as_raw_handle().as_ptr())
            }?);
        }
        let db = self.statements.as_ref().expect("made above");
        let result = write(db);
        drop(locked);
        Ok(result?)
    }

    /// Finalizes the kept statements, under sqlx's lock. If sqlx's worker
    /// is gone (it crashed, and its handle with it), they are let go of
    /// without touching the handle.
    async fn release(&mut self) {
        let (Some(statements), Some(conn)) = (self.statements.take(), self.conn.as_mut()) else {
            return;
        };
        match conn.lock_handle().await {
            Ok(locked) => {
                drop(statements);
                drop(locked);
            }
            Err(e) => {
                log::warn!("database worker gone ({e}); its prepared statements are abandoned");
                std::mem::forget(statements);
            }
        }
    }

    /// `release`, from a caller that cannot wait (`Drop`: a store dropped
    /// without `close`, by a restart or with a commit cut short). The
    /// lock waits only for a command sqlx's worker may be running: a
    /// `direct` cut short has given its lock back by then, since a future
    /// drops what it holds at its await before what it captured.
    fn release_blocking(&mut self) {
        if self.statements.is_some() {
            futures::executor::block_on(self.release());
        }
    }

    /// Closes the connection, statements first.
    pub async fn close(mut self) -> Result<(), sqlx::Error> {
        self.release().await;
        let conn = self.conn.take().expect("open until closed");
        sqlx::Connection::close(conn).await
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.release_blocking();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn open(dir: &tempfile::TempDir) -> Db {
        let (conn, _) = crate::store::open(
            &dir.path().join("roost.db"),
            crate::config::Synchronous::Normal,
            false,
        )
        .await
        .expect("open");
        Db::new(conn)
    }

    async fn count(db: &mut Db) -> i64 {
        db.direct(|c| {
            c.prepare_cached("SELECT count(*) FROM message_log")?
                .query_row([], |r| r.get(0))
        })
        .await
        .expect("count")
    }

    /// What `Db` guards against: sqlx cannot close a handle that still has
    /// a statement on it (it panics, and `close` fails).
    #[tokio::test]
    async fn a_statement_left_on_the_handle_makes_sqlx_close_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = open(&dir).await;
        assert_eq!(count(&mut db).await, 0);
        std::mem::forget(db.statements.take());
        let conn = db.conn.take().expect("open");
        // The failing `sqlite3_close` panics on whichever thread lets go of
        // the handle last: sqlx's worker (then `close` fails) or this one.
        let closed = tokio::spawn(sqlx::Connection::close(conn)).await;
        assert!(!matches!(closed, Ok(Ok(()))), "closed cleanly: {closed:?}");
    }

    /// Statements kept from one call to the next work across sqlx's own
    /// use of the connection, and are finalized before it closes: by
    /// `close`, and by the blocking release that `Drop` runs.
    #[tokio::test]
    async fn kept_statements_are_finalized_before_sqlx_closes_the_handle() {
        let dir = tempfile::tempdir().expect("tempdir");
        for blocking in [false, true] {
            let mut db = open(&dir).await;
            assert_eq!(count(&mut db).await, 0);
            sqlx::query("SELECT 1")
                .execute(db.sqlx())
                .await
                .expect("sqlx between direct calls");
            assert_eq!(count(&mut db).await, 0);
            assert!(db.statements.is_some());
            if blocking {
                db.release_blocking();
                assert!(db.statements.is_none());
            }
            db.close().await.expect("closed cleanly");
        }
    }
}
