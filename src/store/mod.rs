//! Durable state in SQLite, and the only place that speaks SQL.
//!
//! The broker describes every change as a typed [`Op`]; a [`Batch`] merges
//! the ops of one group commit and [`commit`] writes them in one `BEGIN
//! IMMEDIATE` transaction. Sessions, subscriptions and retained messages go
//! through sqlx; the queues of persistent sessions, thousands of changes
//! per commit, go straight to the connection's SQLite handle on the store's
//! own thread (see `direct`), through statements prepared once for the
//! connection's life (see `db.rs`). At start, [`open`] creates or checks the
//! file, applies `migrations/`, tidies what a crash left behind and loads a
//! [`Snapshot`] to rebuild sessions and retained messages from: the queues
//! as runs of message ids, never a message's content, so that a start
//! costs the same however much is queued.
//!
//! One file per table: `sessions.rs`, `subscriptions.rs`, `message_log.rs`
//! (`message_log`: each queued message, once, with the cache of recent
//! ones), `queue_rows.rs` (`queue_runs`, `inflight`, `inbound_qos2`: what each
//! session still has to receive; its in-memory index in `queues.rs`, with
//! `coverage.rs` counting the references to each message), `retained.rs`;
//! the batch of one group commit in `batch.rs`, the checkpoint thread in
//! `checkpointer.rs`, the read-only views of `roost inspect` in
//! `inspect.rs`.
//!
//! Journal mode is WAL, so `sqlite3 -readonly` may read the file while roost
//! runs. `synchronous` is configurable: NORMAL (the default) survives a
//! crash or kill -9 of roost, which is the promise; FULL also survives a
//! power loss, at the cost of an fsync per commit.

mod batch;
pub mod checkpointer;
mod coverage;
mod db;
mod error;
pub mod inspect;
mod message_log;
mod properties;
mod queue_rows;
mod queues;
mod retained;
mod sessions;
mod subscriptions;

pub use batch::{Applied, Batch, QueueBounds, Waiter};
pub use checkpointer::Checkpointer;
pub use db::Db;
pub use error::StoreError;
pub use message_log::{read_ranges, LogCache, Logged};
pub use queue_rows::{QueueWrites, Run};
pub use queues::{MessageId, OutboundState, Paged, Queues};

use crate::config::Synchronous;
use crate::message::Message;
use crate::protocol::{LastWill, PacketId, QoS, TopicFilter, TopicName};
use bytes::Bytes;
use bytestring::ByteString;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One change to durable state.
#[derive(Debug)]
pub enum Op {
    /// A client connected (clean session or not): its row says so.
    /// Boxed: one per CONNECT, and the largest change; every change of the
    /// store's inbox is as large as the largest one.
    SessionConnected(Box<Connected>),
    /// A persistent session's client went away.
    SessionDisconnected {
        client_id: ByteString,
    },
    /// A 5.0 DISCONNECT changed the session's expiry interval (seconds).
    SessionExpiry {
        client_id: ByteString,
        secs: u32,
    },
    /// A session ended: clean session disconnected, discarded, or expired.
    /// A persistent one's subscriptions and queue go with it.
    DeleteSession {
        client_id: ByteString,
        persistent: bool,
    },
    Subscribe {
        client_id: ByteString,
        filter: TopicFilter,
        subscription: crate::session::Subscription,
    },
    Unsubscribe {
        client_id: ByteString,
        filter: TopicFilter,
    },
    /// A message enters the log, with one reference for each durable copy
    /// on its way to a queue; each copy is then queued or released.
    Append {
        id: MessageId,
        message: Message,
        copies: u32,
    },
    /// A copy of message `id` did not reach its queue (dropped on the way).
    Release {
        id: MessageId,
    },
    /// A copy of message `id` joins `client_id`'s queue, delivered at `qos`
    /// with `retain`; `size` is its topic and payload bytes. `held`: the
    /// session holds it in memory too (it is not dropped at the queue's
    /// bound); otherwise it waits in the database to be paged in.
    Enqueue {
        client_id: ByteString,
        id: MessageId,
        qos: QoS,
        retain: bool,
        size: u32,
        held: bool,
    },
    /// Message `id` leaves `client_id`'s queue: acknowledged, or dropped.
    Dequeue {
        client_id: ByteString,
        id: MessageId,
        size: u32,
    },
    /// Queued message `id` was sent with `packet_id`, or moved on to `state`.
    Sent {
        client_id: ByteString,
        id: MessageId,
        packet_id: PacketId,
        state: OutboundState,
    },
    /// The session no longer holds message `id` in memory (its client
    /// left): the next page hands it out again.
    Unhold {
        client_id: ByteString,
        id: MessageId,
    },
    /// An inbound QoS 2 packet id routed and awaiting PUBREL (`awaiting`),
    /// or released.
    Inbound {
        client_id: ByteString,
        packet_id: PacketId,
        awaiting: bool,
    },
    SetRetained {
        topic: TopicName,
        payload: Bytes,
        qos: QoS,
        properties: Option<std::sync::Arc<crate::message::MessageProperties>>,
    },
    ClearRetained {
        topic: TopicName,
    },
    /// Writes nothing: its completion runs after the completions of every
    /// write that arrived before it (keeps a session's packets in order).
    Barrier,
}

impl Op {
    /// A message leaving a subscriber's queue, or a page given back: with
    /// nobody waiting for it, its commit may wait (see `Batch::can_wait`).
    pub fn can_wait(&self) -> bool {
        matches!(self, Op::Dequeue { .. } | Op::Unhold { .. })
    }
}

/// A client connected (see [`Op::SessionConnected`]).
#[derive(Debug)]
pub struct Connected {
    pub client_id: ByteString,
    /// The user name of CONNECT, if any.
    pub username: Option<ByteString>,
    pub persistent: bool,
    pub keep_alive: u16,
    pub protocol: crate::protocol::ProtocolVersion,
    pub will: Option<LastWill>,
    /// 5.0: the Session Expiry Interval granted, in seconds (`u32::MAX`:
    /// for ever); `None` for 3.1.1, which `session.expiry_secs` governs.
    pub session_expiry: Option<u32>,
}

/// The exclusive lock one roost process holds on its database while it
/// runs (a file beside it, `PATH.lock`): a second roost on the same file
/// would write rows with the same ids. The kernel releases it when the
/// process ends, kill -9 included.
pub struct DatabaseLock {
    _file: std::fs::File,
}

/// Takes the lock of the database at `path`, or says who holds it.
pub fn lock(path: &Path) -> Result<DatabaseLock, StoreError> {
    if path.is_dir() {
        return Err(StoreError::Directory {
            path: path.to_path_buf(),
        });
    }
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(DatabaseLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: path.to_path_buf(),
            lock: lock_path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// A persistent session as the database holds it.
#[derive(Debug)]
pub struct StoredSession {
    pub client_id: ByteString,
    /// The user name it last connected with (for the ACL).
    pub username: Option<ByteString>,
    /// Seconds since the client was last seen (for session expiry).
    pub idle_secs: u64,
    /// 5.0: its Session Expiry Interval in seconds (see [`Connected`]).
    pub session_expiry: Option<u32>,
    pub subscriptions: Vec<(TopicFilter, crate::session::Subscription)>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub inbound: Vec<PacketId>,
}

/// The will of a client that was connected when roost stopped.
#[derive(Debug)]
pub struct StoredWill {
    pub client_id: ByteString,
    /// The user name it connected with (for the ACL).
    pub username: Option<ByteString>,
    pub will: Message,
}

/// Everything the broker rebuilds from at start.
#[derive(Default)]
pub struct Snapshot {
    pub sessions: Vec<StoredSession>,
    /// Wills of clients that were connected when roost stopped, to publish.
    pub wills: Vec<StoredWill>,
    pub retained: Vec<Message>,
    /// The first free message id of the log.
    pub next_message_id: MessageId,
    /// Every session's queue, as runs of message ids.
    pub queues: Queues,
}

/// Opens (creating if needed) the database at `path`, applies migrations,
/// tidies up after a crash and loads the state. A damaged file is an
/// error, unless `reset_damaged`, which moves it aside and starts empty.
pub async fn open(
    path: &Path,
    synchronous: Synchronous,
    reset_damaged: bool,
) -> Result<(SqliteConnection, Snapshot), StoreError> {
    match try_open(path, synchronous).await {
        Err(StoreError::Damaged { reason, .. }) if reset_damaged => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let aside = PathBuf::from(format!("{}.damaged-{secs}", path.display()));
            log::warn!(
                "database {} is damaged ({reason}); moving it to {} and starting empty",
                path.display(),
                aside.display()
            );
            std::fs::rename(path, &aside).map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            for suffix in ["-wal", "-shm"] {
                let side = PathBuf::from(format!("{}{suffix}", path.display()));
                if side.exists() {
                    let _ = std::fs::rename(&side, format!("{}{suffix}", aside.display()));
                }
            }
            try_open(path, synchronous).await
        }
        other => other,
    }
}

/// Opens an already checked database again (after a restart of the store actor).
pub async fn reopen(path: &Path, synchronous: Synchronous) -> Result<SqliteConnection, StoreError> {
    SqliteConnection::connect_with(&connect_options(path, synchronous))
        .await
        .map_err(StoreError::Sql)
}

/// Every retained message as committed.
pub async fn load_retained(conn: &mut SqliteConnection) -> Result<Vec<Message>, sqlx::Error> {
    retained::load(conn).await
}

/// Process-wide SQLite settings, applied once before the first connection.
/// SQLite keeps allocation statistics by default, taking a global mutex on
/// every allocation and free (about a tenth of the writer thread's time in
/// a commit); SQLite recommends turning them off, and roost never reads them.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int argument; it is
        // called before this process opens any connection (a later call
        // would only return SQLITE_MISUSE, which is harmless).
        let rc = unsafe {
            libsqlite3_sys::sqlite3_config(
                libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            )
        };
        if rc != libsqlite3_sys::SQLITE_OK {
            log::debug!(
                "sqlite3_config(MEMSTATUS, 0) returned {rc}; allocation statistics stay on"
            );
        }
    });
}

fn connect_options(path: &Path, synchronous: Synchronous) -> SqliteConnectOptions {
    configure_sqlite();
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(match synchronous {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
        })
        .busy_timeout(Duration::from_secs(5))
        // 64 MiB of page cache (SQLite's default is 2 MiB): queued messages
        // are written and deleted soon after, so their pages stay hot.
        .pragma("cache_size", "-65536")
        // Statement journals of multi-row upserts stay in memory instead of
        // a temporary file written and thrown away per statement.
        .pragma("temp_store", "memory")
        // The checkpoint thread (see `checkpointer`) copies the WAL as it
        // grows; the writer checkpoints only when the WAL reaches 64 MiB,
        // which lets it start over from the beginning.
        .pragma("wal_autocheckpoint", "16384")
}

async fn try_open(
    path: &Path,
    synchronous: Synchronous,
) -> Result<(SqliteConnection, Snapshot), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Err(StoreError::Directory {
            path: path.to_path_buf(),
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    if !path.exists() {
        // Sessions and messages are private: owner-only from the first byte.
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
    }
    let opening = |e| StoreError::opening(path, e);
    let options = connect_options(path, synchronous);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(opening)?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut conn)
        .await
        .map_err(opening)?;
    if check != "ok" {
        return Err(StoreError::Damaged {
            path: path.to_path_buf(),
            reason: format!("integrity check: {check}"),
        });
    }
    sqlx::migrate!("./migrations")
        .run(&mut conn)
        .await
        .map_err(|e| StoreError::migrating(path, e))?;
    // Before the tidy, which forgets who was connected.
    let wills = sessions::wills_of_connected(&mut conn)
        .await
        .map_err(opening)?;
    let opening_any = |e| StoreError::opening_any(path, e);
    tidy_after_restart(&mut conn).await.map_err(opening_any)?;
    let mut snapshot = load(&mut conn).await.map_err(opening_any)?;
    snapshot.wills = wills;
    Ok((conn, snapshot))
}

/// Nobody is connected at start: clean sessions are gone, persistent ones
/// are offline (seen last now, if roost stopped while they were connected),
/// and rows of sessions that no longer exist are removed.
async fn tidy_after_restart(conn: &mut SqliteConnection) -> Result<(), CommitError> {
    let mut tx = conn.begin().await?;
    sessions::tidy(&mut tx).await?;
    subscriptions::delete_orphans(&mut tx).await?;
    direct(&mut tx, queue_rows::delete_orphans).await?;
    tx.commit().await?;
    Ok(())
}

async fn load(conn: &mut SqliteConnection) -> Result<Snapshot, CommitError> {
    let mut sessions = sessions::load_persistent(conn).await?;
    let mut index: ahash::AHashMap<ByteString, usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.client_id.clone(), i))
        .collect();
    for (client_id, filter, qos) in subscriptions::load(conn).await? {
        if let Some(&i) = index.get(&client_id) {
            sessions[i].subscriptions.push((filter, qos));
        }
    }
    let (loaded, highest) = direct(conn, |db| {
        let loaded = queue_rows::load(db)?;
        let highest = db.query_row(message_log::HIGHEST_ID, [], |r| r.get::<_, Option<i64>>(0))?;
        Ok((loaded, highest.unwrap_or(0).max(0) as MessageId))
    })
    .await?;
    let mut queues = Queues::default();
    for (client_id, run) in loaded.runs {
        queues.load_run(client_id, run);
    }
    for (client_id, id, packet_id, state) in loaded.sent {
        queues.load_sent(&client_id, id, packet_id, state);
    }
    for (client_id, packet_id) in loaded.inbound {
        queues.load_inbound(client_id, packet_id);
    }
    for s in &mut sessions {
        s.inbound = queues.inbound(&s.client_id);
    }
    index.clear();
    // Messages no queue refers to (their last reference went in a commit
    // that a crash cut short from deleting them) leave the log now.
    let unreferenced = queues.unreferenced(1, highest);
    if !unreferenced.is_empty() {
        direct(conn, |db| message_log::delete_ranges(db, &unreferenced)).await?;
    }
    let retained = retained::load(conn).await?;
    Ok(Snapshot {
        sessions,
        wills: Vec::new(),
        retained,
        next_message_id: highest + 1,
        queues,
    })
}

/// Writes one batch in one transaction; its queue rows must have been
/// taken (see [`Batch::plan`]).
pub async fn commit<W: Waiter>(db: &mut Db, batch: &Batch<W>) -> Result<(), CommitError> {
    let result = if batch.only_queues() {
        write_queues(db, batch).await
    } else {
        write_all(db, batch).await
    };
    if result.is_err() {
        // Nothing to roll back if no transaction was begun: that error is moot.
        let _ = sqlx::query("ROLLBACK").execute(db.sqlx()).await;
    }
    result
}

/// The usual batch, queue rows only: all of it runs on the store's thread.
async fn write_queues<W: Waiter>(db: &mut Db, batch: &Batch<W>) -> Result<(), CommitError> {
    let Some(writes) = batch.queue_writes.as_ref().filter(|w| !w.is_empty()) else {
        return Ok(());
    };
    db.direct(|db| {
        db.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        queue_rows::write(db, writes)?;
        db.prepare_cached("COMMIT")?.execute([]).map(|_| ())
    })
    .await
}

async fn write_all<W: Waiter>(db: &mut Db, batch: &Batch<W>) -> Result<(), CommitError> {
    sqlx::query("BEGIN IMMEDIATE").execute(db.sqlx()).await?;
    sessions::write(db.sqlx(), &batch.sessions).await?;
    let deleted: Vec<&str> = batch
        .sessions
        .iter()
        .filter_map(|op| match op {
            batch::SessionOp::Delete {
                client_id,
                persistent: true,
            } => Some(&**client_id),
            _ => None,
        })
        .collect();
    db.direct(|db| {
        for client_id in &deleted {
            queue_rows::delete_client(db, client_id)?;
        }
        Ok(())
    })
    .await?;
    subscriptions::write(db.sqlx(), &batch.subscriptions).await?;
    if let Some(writes) = &batch.queue_writes {
        db.direct(|db| queue_rows::write(db, writes)).await?;
    }
    retained::write(db.sqlx(), &batch.retained).await?;
    sqlx::query("COMMIT").execute(db.sqlx()).await?;
    Ok(())
}

/// Reads the messages of the log with ids in `ranges` (for queues paged
/// in), on the store's thread.
pub async fn read_log(
    db: &mut Db,
    ranges: &[(MessageId, MessageId)],
) -> Result<Vec<(MessageId, Logged)>, CommitError> {
    db.direct(|db| message_log::read_ranges(db, ranges)).await
}

/// A commit that failed, in sqlx or in SQLite directly.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// Made to fail by a test (cargo feature `fault-injection`).
    #[error("commit failure injected by a test")]
    Injected,
}

/// Runs `write` on the connection's own SQLite handle, on this thread.
///
/// Every statement sent through sqlx is a hand-off to its worker thread and
/// back, with its values copied into sqlx's argument list on the way: for
/// the thousands of message rows of a commit that cost more than SQLite's
/// own work (measured: 1.0 µs per row waiting on sqlx, against 0.3 µs for
/// SQLite). Here the handle is borrowed once per commit instead. This one
/// prepares its statements for the call only (at start); the store's
/// commits keep theirs (`Db::direct`).
async fn direct<R>(
    conn: &mut SqliteConnection,
    write: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<R>,
) -> Result<R, CommitError> {
    let mut locked = conn.lock_handle().await?;
    // SAFETY: `locked` keeps sqlx's worker away from the handle until it is
    // dropped, after `db`. `db` does not own the handle (it never closes
    // it), and every statement prepared on it is finalized before `write`
    // returns, so none outlives the lock or holds up sqlx's close.
    let db = unsafe { rusqlite::Connection::from_handle(locked.as_raw_handle().as_ptr()) }?;
    let result = write(&db);
    drop(db);
    drop(locked);
    Ok(result?)
}

/// Moves every committed page from the WAL into the database file and
/// shrinks the WAL to nothing (at shutdown). While roost runs, the
/// checkpoint thread does this part by part (see `checkpointer`).
pub async fn truncate_wal(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(conn)
        .await
        .map(|_| ())
}

/// SQL text for a time: `strftime` in UTC, ISO 8601.
macro_rules! now_sql {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')"
    };
}
use now_sql;
const NOW: &str = now_sql!();

fn qos_from(v: i64) -> Option<QoS> {
    u8::try_from(v).ok().and_then(QoS::from_u8)
}

/// Bound variables per statement at most (SQLite's default limit).
const MAX_VARIABLES: usize = 32766;

/// How many rows of `variables_per_row` bound values fit in one statement.
fn rows_per_statement(variables_per_row: usize) -> usize {
    MAX_VARIABLES / variables_per_row.max(1)
}

#[cfg(test)]
mod tests {
    /// A path for a new database in a directory of its own (removed when
    /// the first value drops), and a runtime to drive the store on.
    fn fresh_database() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        tokio::runtime::Runtime,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("roost.db");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (dir, db, runtime)
    }

    /// A commit that cannot take the write lock fails whole: nothing of it
    /// is written and nothing is acknowledged (the client resends); once the
    /// lock is free, the same batch commits the message and its run.
    #[test]
    fn a_commit_that_fails_writes_nothing_and_acknowledges_nothing() {
        use super::*;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let (_dir, db, runtime) = fresh_database();
        runtime.block_on(async {
            let (conn, snapshot) = open(&db, Synchronous::Normal, false).await.unwrap();
            // Through `Db`, as the store commits: a failed commit leaves
            // its kept statements fit for the next one.
            let mut conn = Db::new(conn);
            let mut queues = snapshot.queues;
            let bounds = QueueBounds {
                max_messages: 10,
                max_bytes: 1000,
            };
            let acked = Arc::new(AtomicUsize::new(0));
            let mut batch = Batch::<batch::OnDrop>::default();
            let message = Message {
                topic: TopicName::new("t/1".to_string()).unwrap(),
                payload: Bytes::from_static(b"payload"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: None,
            };
            batch.push(
                Op::Append {
                    id: 1,
                    message,
                    copies: 1,
                },
                None,
                &mut queues,
                bounds,
            );
            let a = acked.clone();
            batch.push(
                Op::Enqueue {
                    client_id: "c".into(),
                    id: 1,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    size: 10,
                    held: false,
                },
                Some(batch::OnDrop::new(move || {
                    a.fetch_add(1, Ordering::SeqCst);
                })),
                &mut queues,
                bounds,
            );
            batch.plan(&mut queues);

            // Another writer holds the lock past the busy timeout.
            let mut other =
                SqliteConnection::connect_with(&connect_options(&db, Synchronous::Normal))
                    .await
                    .unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut other)
                .await
                .unwrap();
            assert!(commit(&mut conn, &batch).await.is_err());
            assert_eq!(acked.load(Ordering::SeqCst), 0, "nothing acknowledged");
            sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
            for sql in [
                "SELECT COUNT(*) FROM message_log",
                "SELECT COUNT(*) FROM queue_runs",
            ] {
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut other).await.unwrap();
                assert_eq!(n, 0, "{sql}: nothing written");
            }

            commit(&mut conn, &batch).await.unwrap();
            batch.release();
            assert_eq!(acked.load(Ordering::SeqCst), 1);
            for sql in [
                "SELECT COUNT(*) FROM message_log",
                "SELECT COUNT(*) FROM queue_runs",
                "SELECT COUNT(*) FROM queued_messages",
            ] {
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut other).await.unwrap();
                assert_eq!(n, 1, "{sql}");
            }
        });
    }

    /// `inflight` accepts the three states of a handshake under way, and
    /// nothing else.
    #[test]
    fn inflight_accepts_only_the_documented_states() {
        let (_dir, db, runtime) = fresh_database();
        runtime.block_on(async {
            let (mut conn, _) = super::open(&db, super::Synchronous::Normal, false)
                .await
                .unwrap();
            let insert = |id: i64, state: &'static str| {
                sqlx::query(
                    "INSERT INTO inflight (client_id, message_id, packet_id, state) VALUES ('c', ?1, 1, ?2)",
                )
                .bind(id)
                .bind(state)
            };
            for (id, state) in [(1, "awaiting_puback"), (2, "awaiting_pubrec"), (3, "awaiting_pubcomp")] {
                insert(id, state).execute(&mut conn).await.unwrap();
            }
            for (id, state) in [(4, "queued"), (5, "sent"), (6, "")] {
                let error = insert(id, state).execute(&mut conn).await;
                assert!(
                    error.is_err_and(|e| e.to_string().contains("CHECK constraint failed")),
                    "{state} must be refused"
                );
            }
        });
    }

    /// Every statement the store runs, with SQLite's plan for it. Those on
    /// the acknowledgement path find their rows through a key or an index:
    /// no table is scanned (a scan there blocks every durable
    /// acknowledgement behind it). Those at start read whole tables on
    /// purpose, and only the tables named.
    #[test]
    fn every_store_statement_uses_an_index_or_scans_only_at_start() {
        use super::*;
        let values = |prefix: &str, n: usize| {
            let marks: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
            format!("{prefix}VALUES ({})", marks.join(", "))
        };
        let running: Vec<(&str, String)> = vec![
            (
                "sessions::UPSERT_CONNECTED",
                sessions::UPSERT_CONNECTED.into(),
            ),
            ("sessions::DISCONNECTED", sessions::DISCONNECTED.into()),
            (
                "sessions::DELETE_SUBSCRIPTIONS",
                sessions::DELETE_SUBSCRIPTIONS.into(),
            ),
            ("sessions::DELETE_SESSION", sessions::DELETE_SESSION.into()),
            (
                "subscriptions::UPSERT_PREFIX",
                values(subscriptions::UPSERT_PREFIX, 6),
            ),
            (
                "subscriptions::DELETE_ONE",
                subscriptions::DELETE_ONE.into(),
            ),
            ("message_log::INSERT", message_log::INSERT.into()),
            (
                "message_log::DELETE_RANGE",
                message_log::DELETE_RANGE.into(),
            ),
            ("message_log::READ_RANGE", message_log::READ_RANGE.into()),
            ("queue_rows::RUN_UPSERT", queue_rows::RUN_UPSERT.into()),
            ("queue_rows::RUN_DELETE", queue_rows::RUN_DELETE.into()),
            ("queue_rows::SENT_UPSERT", queue_rows::SENT_UPSERT.into()),
            ("queue_rows::SENT_DELETE", queue_rows::SENT_DELETE.into()),
            (
                "queue_rows::INBOUND_INSERT",
                queue_rows::INBOUND_INSERT.into(),
            ),
            (
                "queue_rows::INBOUND_DELETE",
                queue_rows::INBOUND_DELETE.into(),
            ),
            (
                "queue_rows::DELETE_CLIENT_RUNS",
                queue_rows::DELETE_CLIENT_RUNS.into(),
            ),
            (
                "queue_rows::DELETE_CLIENT_SENT",
                queue_rows::DELETE_CLIENT_SENT.into(),
            ),
            (
                "queue_rows::DELETE_CLIENT_INBOUND",
                queue_rows::DELETE_CLIENT_INBOUND.into(),
            ),
            (
                "retained::CLEAR_PREFIX",
                format!("{}?1, ?2)", retained::CLEAR_PREFIX),
            ),
            ("retained::SET_PREFIX", values(retained::SET_PREFIX, 10)),
        ];
        let at_start: Vec<(&str, &str, &[&str])> = vec![
            (
                "sessions::WILLS_OF_CONNECTED",
                sessions::WILLS_OF_CONNECTED,
                &["sessions"],
            ),
            ("sessions::TIDY_CLEAN", sessions::TIDY_CLEAN, &["sessions"]),
            (
                "sessions::TIDY_CONNECTED",
                sessions::TIDY_CONNECTED,
                &["sessions"],
            ),
            ("sessions::LOAD", sessions::LOAD, &["sessions"]),
            (
                "subscriptions::DELETE_ORPHANS",
                subscriptions::DELETE_ORPHANS,
                &["subscriptions"],
            ),
            (
                "subscriptions::LOAD",
                subscriptions::LOAD,
                &["subscriptions"],
            ),
            (
                "queue_rows::DELETE_ORPHAN_RUNS",
                queue_rows::DELETE_ORPHAN_RUNS,
                &["queue_runs"],
            ),
            (
                "queue_rows::DELETE_ORPHAN_SENT",
                queue_rows::DELETE_ORPHAN_SENT,
                &["inflight"],
            ),
            (
                "queue_rows::DELETE_ORPHAN_INBOUND",
                queue_rows::DELETE_ORPHAN_INBOUND,
                &["inbound_qos2"],
            ),
            (
                "queue_rows::LOAD_RUNS",
                queue_rows::LOAD_RUNS,
                &["queue_runs"],
            ),
            (
                "queue_rows::LOAD_SENT",
                queue_rows::LOAD_SENT,
                &["inflight"],
            ),
            (
                "queue_rows::LOAD_INBOUND",
                queue_rows::LOAD_INBOUND,
                &["inbound_qos2"],
            ),
            ("message_log::HIGHEST_ID", message_log::HIGHEST_ID, &[]),
            ("retained::LOAD", retained::LOAD, &["retained"]),
        ];
        async fn plan(conn: &mut SqliteConnection, sql: &str) -> Vec<String> {
            let sql = format!("EXPLAIN QUERY PLAN {sql}");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_all(conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter()
                .map(|r| sqlx::Row::get::<String, _>(r, "detail"))
                .collect()
        }
        let (_dir, db, runtime) = fresh_database();
        runtime.block_on(async {
            let (mut conn, _) = open(&db, Synchronous::Normal, false).await.unwrap();
            let scanned = |details: &[String]| -> Vec<String> {
                details
                    .iter()
                    .filter_map(|d| d.strip_prefix("SCAN "))
                    .filter(|t| !t.starts_with("CONSTANT ROW"))
                    .map(|t| t.split(' ').next().unwrap_or_default().to_string())
                    .collect()
            };
            for (name, sql) in &running {
                let details = plan(&mut conn, sql).await;
                assert!(
                    scanned(&details).is_empty(),
                    "{name} scans a table on the acknowledgement path: {details:?}"
                );
            }
            for (name, sql, allowed) in &at_start {
                let details = plan(&mut conn, sql).await;
                for table in scanned(&details) {
                    assert!(
                        allowed.contains(&table.as_str()),
                        "{name} scans {table}, which it should not: {details:?}"
                    );
                }
            }
            // A range of the log goes by its primary key.
            let details = plan(&mut conn, message_log::DELETE_RANGE).await;
            assert!(
                details.iter().any(|d| d.contains("INTEGER PRIMARY KEY")),
                "{details:?}"
            );
        });
    }
}
