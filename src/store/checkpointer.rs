//! Checkpoints on a thread of their own.
//!
//! A checkpoint copies committed pages from the WAL into the database file
//! and syncs both. Done by the writing connection (SQLite's automatic
//! checkpoint, at the end of a `COMMIT`), it stalls every acknowledgement
//! waiting on the next commit for the copy and two fsyncs: in the queueing
//! benchmark a tenth of the store thread's time went there, plus the waits
//! for the disk.
//!
//! So a [`Checkpointer`] runs `PRAGMA wal_checkpoint(PASSIVE)` on a second
//! connection, on its own thread, after commits (at most once per
//! [`Checkpointer::INTERVAL`]). A passive checkpoint takes no lock the
//! writer needs, and waits for no one. The writer keeps SQLite's automatic
//! checkpoint, at a higher threshold, as a backstop: under unbroken load the
//! checkpointer rarely catches the WAL's very end, and only a checkpoint
//! that did lets the next transaction start the WAL over from its
//! beginning. By then the backstop finds almost everything copied already.

use crate::config::Synchronous;
use std::path::Path;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::Duration;

/// Signals the checkpoint thread; the thread ends when this is dropped.
pub struct Checkpointer {
    wake: SyncSender<()>,
}

impl Checkpointer {
    /// Least time between two checkpoints.
    pub const INTERVAL: Duration = Duration::from_millis(100);

    /// Starts the thread for the database at `path` (already opened and
    /// migrated by the store). `done` runs after each checkpoint.
    pub fn start(
        path: &Path,
        synchronous: Synchronous,
        done: impl Fn() + Send + 'static,
    ) -> std::io::Result<Checkpointer> {
        // One pending signal at most: commits during a checkpoint ask for
        // one more, not one each.
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("roost-checkpoint".into())
            .spawn(move || run(&path, synchronous, &woken, &done))?;
        Ok(Checkpointer { wake })
    }

    /// Some commit added to the WAL: checkpoint soon.
    pub fn committed(&self) {
        match self.wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            // The thread ended: it could not open the database (logged).
            Err(TrySendError::Disconnected(())) => {}
        }
    }
}

fn run(path: &Path, synchronous: Synchronous, woken: &mpsc::Receiver<()>, done: &dyn Fn()) {
    let db = match open(path, synchronous) {
        Ok(db) => db,
        Err(e) => {
            log::error!(
                "cannot open {} for checkpoints ({e}); the WAL is checkpointed by the writer only",
                path.display()
            );
            return;
        }
    };
    while woken.recv().is_ok() {
        match checkpoint(&db) {
            Ok(()) => done(),
            Err(e) => log::warn!("database checkpoint failed: {e}"),
        }
        std::thread::sleep(Checkpointer::INTERVAL);
    }
}

fn open(path: &Path, synchronous: Synchronous) -> rusqlite::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // The checkpoint syncs the WAL and the database file as the writer's
    // setting says; this connection needs no page cache of its own.
    db.execute_batch(match synchronous {
        Synchronous::Normal => "PRAGMA synchronous = NORMAL; PRAGMA cache_size = 16",
        Synchronous::Full => "PRAGMA synchronous = FULL; PRAGMA cache_size = 16",
    })?;
    Ok(db)
}

fn checkpoint(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    // It answers with a row (busy, WAL frames, frames copied); nothing here
    // needs it.
    db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}
