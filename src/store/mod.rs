//! Durable state in SQLite, and the only place that speaks SQL.
//!
//! The broker describes every change as a typed [`Op`]; a [`Batch`] merges
//! the ops of one group commit and [`commit`] writes them in one `BEGIN
//! IMMEDIATE` transaction, mostly as multi-row statements. At start, [`open`]
//! creates or checks the file, applies `migrations/`, tidies what a crash
//! left behind and loads a [`Snapshot`] to rebuild sessions and retained
//! messages from. One file per table: `sessions`, `subscriptions`,
//! `messages`, `retained`.
//!
//! Journal mode is WAL, so `sqlite3 -readonly` may read the file while roost
//! runs. `synchronous` is configurable: NORMAL (the default) survives a
//! crash or kill -9 of roost, which is the promise; FULL also survives a
//! power loss, at the cost of an fsync per commit.

mod batch;
mod bodies;
pub mod completion;
pub mod inspect;
mod messages;
mod retained;
mod sessions;
mod subscriptions;

pub use batch::Batch;
pub use bodies::Bodies;
pub use completion::Completion;

use crate::protocol::{LastWill, PacketId, QoS, TopicFilter, TopicName};
use crate::session::{Message, MessageId, OutboundState, Record};
use bytes::Bytes;
use bytestring::ByteString;
use serde::Deserialize;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One change to durable state.
#[derive(Debug)]
pub enum Op {
    /// A client connected (clean session or not): its row says so.
    SessionConnected {
        client_id: ByteString,
        /// The user name of CONNECT, if any.
        username: Option<ByteString>,
        persistent: bool,
        keep_alive: u16,
        will: Option<LastWill>,
    },
    /// A persistent session's client went away.
    SessionDisconnected {
        client_id: ByteString,
    },
    /// A session ended: clean session disconnected, discarded, or expired.
    DeleteSession {
        client_id: ByteString,
        persistent: bool,
    },
    Subscribe {
        client_id: ByteString,
        filter: TopicFilter,
        qos: QoS,
    },
    Unsubscribe {
        client_id: ByteString,
        filter: TopicFilter,
    },
    /// Write a message row (`new`: it does not exist yet).
    PutMessage {
        client_id: ByteString,
        record: Record,
        new: bool,
    },
    DeleteMessage {
        client_id: ByteString,
        id: MessageId,
    },
    SetRetained {
        topic: TopicName,
        payload: Bytes,
        qos: QoS,
    },
    ClearRetained {
        topic: TopicName,
    },
    /// Writes nothing: its completion runs after the completions of every
    /// write that arrived before it (keeps a session's packets in order).
    Barrier,
}

/// `store.synchronous` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Survives a crash of roost (kill -9); a power loss may lose the last commits.
    Normal,
    /// Survives a power loss too: one fsync per commit.
    Full,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "database {path} is damaged or is not a roost database: {reason}\n\
         roost will not start on it, and will not silently start empty.\n\
         To keep it for inspection and start with an empty database, run roost with --reset-damaged-db:\n\
         the file is then renamed to {path}.damaged-<unix time> and a new one is created."
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("database {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database write failed: {0}")]
    Sql(#[from] sqlx::Error),
}

/// A persistent session as the database holds it.
#[derive(Debug)]
pub struct StoredSession {
    pub client_id: ByteString,
    /// The user name it last connected with (for the ACL).
    pub username: Option<ByteString>,
    /// Seconds since the client was last seen (for session expiry).
    pub idle_secs: u64,
    pub subscriptions: Vec<(TopicFilter, QoS)>,
    /// Outbound messages in arrival order.
    pub messages: Vec<(MessageId, OutboundState, Option<PacketId>, Message)>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub inbound: Vec<(PacketId, MessageId)>,
}

/// Everything the broker rebuilds from at start.
#[derive(Default)]
pub struct Snapshot {
    pub sessions: Vec<StoredSession>,
    pub retained: Vec<Message>,
    /// The first free message row id.
    pub next_message_id: MessageId,
    /// Which rows refer to which message bodies.
    pub bodies: Bodies,
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
        .pragma("wal_autocheckpoint", "8192")
        // Every shape of `statement_chunks` for every kind of row stays prepared.
        .statement_cache_capacity(256)
}

async fn try_open(
    path: &Path,
    synchronous: Synchronous,
) -> Result<(SqliteConnection, Snapshot), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
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
    let damaged = |e: &dyn std::fmt::Display| StoreError::Damaged {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let options = connect_options(path, synchronous);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| damaged(&e))?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| damaged(&e))?;
    if check != "ok" {
        return Err(damaged(&format!("integrity check: {check}")));
    }
    sqlx::migrate!("./migrations")
        .run(&mut conn)
        .await
        .map_err(|e| damaged(&e))?;
    tidy_after_restart(&mut conn)
        .await
        .map_err(|e| damaged(&e))?;
    let snapshot = load(&mut conn).await.map_err(|e| damaged(&e))?;
    Ok((conn, snapshot))
}

/// Nobody is connected at start: clean sessions are gone, persistent ones
/// are offline (seen last now, if roost stopped while they were connected),
/// and rows of sessions that no longer exist are removed.
async fn tidy_after_restart(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    sessions::tidy(&mut tx).await?;
    subscriptions::delete_orphans(&mut tx).await?;
    messages::delete_orphans(&mut tx).await?;
    bodies::delete_orphans(&mut tx).await?;
    tx.commit().await
}

async fn load(conn: &mut SqliteConnection) -> Result<Snapshot, sqlx::Error> {
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
    let mut bodies = Bodies::default();
    let next_message_id = messages::load(conn, &mut bodies, &mut |client_id, row| {
        if let Some(&i) = index.get(&client_id) {
            match row {
                messages::Loaded::Outbound(id, state, packet_id, message) => {
                    sessions[i].messages.push((id, state, packet_id, message))
                }
                messages::Loaded::Inbound(packet_id, id) => {
                    sessions[i].inbound.push((packet_id, id))
                }
            }
        }
    })
    .await?;
    index.clear();
    let retained = retained::load(conn).await?;
    Ok(Snapshot {
        sessions,
        retained,
        next_message_id,
        bodies,
    })
}

/// Writes one batch in one transaction. If it fails, `bodies` is reloaded
/// from the database before the next commit.
pub async fn commit(
    conn: &mut SqliteConnection,
    batch: &Batch,
    bodies: &mut Bodies,
) -> Result<(), sqlx::Error> {
    let result = if batch.only_messages() && !bodies.is_stale() {
        write_messages(conn, batch, bodies).await
    } else {
        write_all(conn, batch, bodies).await
    };
    if result.is_err() {
        // Nothing to roll back if no transaction was begun: that error is moot.
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        bodies.mark_stale();
    }
    result
}

/// The usual batch, message rows only: its plan needs no SQL, and BEGIN
/// and COMMIT ride along with its first and last statements.
async fn write_messages(
    conn: &mut SqliteConnection,
    batch: &Batch,
    bodies: &mut Bodies,
) -> Result<(), sqlx::Error> {
    let plan = bodies.plan(conn, batch).await?;
    let mut tx = Tx::new(conn, false);
    messages::write(&mut tx, &batch.messages, &plan).await?;
    tx.commit().await
}

async fn write_all(
    conn: &mut SqliteConnection,
    batch: &Batch,
    bodies: &mut Bodies,
) -> Result<(), sqlx::Error> {
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let plan = bodies.plan(conn, batch).await?;
    sessions::write(conn, &batch.sessions).await?;
    subscriptions::write(conn, &batch.subscriptions).await?;
    let mut tx = Tx::new(conn, true);
    messages::write(&mut tx, &batch.messages, &plan).await?;
    tx.flush().await?;
    retained::write(conn, &batch.retained).await?;
    sqlx::query("COMMIT").execute(&mut *conn).await.map(|_| ())
}

type Query = sqlx::query::Query<'static, sqlx::Sqlite, SqliteArguments>;

/// Statements of one transaction, each sent one step late, so that BEGIN
/// rides along with the first and COMMIT with the last: every statement is
/// a round trip to sqlx's SQLite thread, and a small commit is mostly
/// those (two fewer per commit).
pub(super) struct Tx<'c> {
    conn: &'c mut SqliteConnection,
    /// BEGIN has been sent (or was sent before this `Tx`).
    begun: bool,
    /// The last statement, not sent yet.
    held: Option<(&'static str, SqliteArguments)>,
}

impl<'c> Tx<'c> {
    fn new(conn: &'c mut SqliteConnection, begun: bool) -> Tx<'c> {
        Tx {
            conn,
            begun,
            held: None,
        }
    }

    /// Runs `sql` with the values `bind` gives it, after the statements
    /// before it.
    async fn run(
        &mut self,
        sql: &'static str,
        bind: impl FnOnce(Query) -> Query,
    ) -> Result<(), sqlx::Error> {
        use sqlx::Execute;
        let arguments = bind(sqlx::query(sql))
            .take_arguments()
            .map_err(sqlx::Error::Encode)?
            .unwrap_or_default();
        match self.held.replace((sql, arguments)) {
            Some((sql, arguments)) => self.send(sql, arguments, false).await,
            None => Ok(()),
        }
    }

    async fn send(
        &mut self,
        sql: &'static str,
        arguments: SqliteArguments,
        commit: bool,
    ) -> Result<(), sqlx::Error> {
        let text = in_transaction(sql, !self.begun, commit);
        self.begun = true;
        sqlx::query_with(text, arguments)
            .execute(&mut *self.conn)
            .await
            .map(|_| ())
    }

    /// Sends the held statement (the transaction stays open).
    async fn flush(&mut self) -> Result<(), sqlx::Error> {
        match self.held.take() {
            Some((sql, arguments)) => self.send(sql, arguments, false).await,
            None => Ok(()),
        }
    }

    /// Sends the held statement with COMMIT. Nothing written: no
    /// transaction at all.
    async fn commit(mut self) -> Result<(), sqlx::Error> {
        match self.held.take() {
            Some((sql, arguments)) => self.send(sql, arguments, true).await,
            None if self.begun => sqlx::query("COMMIT")
                .execute(&mut *self.conn)
                .await
                .map(|_| ()),
            None => Ok(()),
        }
    }

    /// `head` (`DELETE FROM t WHERE id IN (`) over `ids`, in statements of
    /// the padded shapes of `statement_chunks`.
    async fn delete_ids(&mut self, head: &'static str, ids: &[i64]) -> Result<(), sqlx::Error> {
        for (chunk, shape) in statement_chunks(ids, 1) {
            self.run(rows_statement(head, "?", shape, ")"), |mut query| {
                for id in chunk {
                    query = query.bind(*id);
                }
                query
            })
            .await?;
        }
        Ok(())
    }
}

/// `sql` with `BEGIN IMMEDIATE;` before it and/or `; COMMIT` after it,
/// built once per statement text. BEGIN and COMMIT bind no values, so the
/// statement's values bind as they would alone.
fn in_transaction(sql: &'static str, begin: bool, commit: bool) -> &'static str {
    if !begin && !commit {
        return sql;
    }
    static WRAPPED: Texts<(usize, bool, bool)> = Texts::new();
    // Statement texts are static and never freed: the address names one.
    WRAPPED.get((sql.as_ptr() as usize, begin, commit), || {
        let mut text = String::with_capacity(sql.len() + 32);
        if begin {
            text.push_str("BEGIN IMMEDIATE; ");
        }
        text.push_str(sql);
        if commit {
            text.push_str("; COMMIT");
        }
        text
    })
}

/// Statement texts built once per key and kept for the life of the process
/// (there are a few dozen), so a commit binds values without formatting SQL.
struct Texts<K>(std::sync::OnceLock<std::sync::Mutex<ahash::AHashMap<K, &'static str>>>);

impl<K: std::hash::Hash + Eq> Texts<K> {
    const fn new() -> Texts<K> {
        Texts(std::sync::OnceLock::new())
    }

    fn get(&self, key: K, build: impl FnOnce() -> String) -> &'static str {
        let mut texts = self
            .0
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        texts
            .entry(key)
            .or_insert_with(|| Box::leak(build().into_boxed_str()))
    }
}

/// Moves committed pages from the WAL into the database file. `truncate`
/// also shrinks the WAL to nothing (at shutdown); otherwise this never
/// waits for readers.
pub async fn checkpoint(conn: &mut SqliteConnection, truncate: bool) -> Result<(), sqlx::Error> {
    let sql = if truncate {
        "PRAGMA wal_checkpoint(TRUNCATE)"
    } else {
        "PRAGMA wal_checkpoint(PASSIVE)"
    };
    sqlx::query(sql).execute(conn).await.map(|_| ())
}

/// SQL text for a time: `strftime` in UTC, ISO 8601.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

fn qos_from(v: i64) -> Option<QoS> {
    u8::try_from(v).ok().and_then(QoS::from_u8)
}

/// Bound variables per statement at most (SQLite's default limit).
const MAX_VARIABLES: usize = 32766;

/// Rows per multi-row statement at most, whatever the row's width.
const MAX_ROWS_PER_STATEMENT: usize = 8192;

/// Rows below which the rest of a kind goes in one padded statement.
const PADDED_BELOW: usize = 512;

/// Splits `rows` into multi-row statements, each with a power-of-two shape
/// (the second value): a statement then has one of a dozen shapes, each
/// prepared once and kept in the connection's statement cache. Large runs
/// are cut into exact power-of-two chunks. Each statement is also a round
/// trip to the SQLite thread, which dominates small commits (measured:
/// durable QoS 2 fan-in 1.7× with padding), so what is left below
/// `PADDED_BELOW` rows goes in one statement padded up to its shape: the
/// rows past the chunk are left unbound, which SQLite reads as NULL, and
/// every statement skips NULL rows (`WHERE column1 IS NOT NULL`, or `IN
/// (…)`, which no NULL matches).
fn statement_chunks<T>(
    mut rows: &[T],
    variables_per_row: usize,
) -> impl Iterator<Item = (&[T], usize)> {
    let max = (MAX_VARIABLES / variables_per_row.max(1)).min(MAX_ROWS_PER_STATEMENT);
    let max = 1 << (usize::BITS - 1 - max.leading_zeros());
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let size = rows.len().min(max);
        let (size, shape) = if size < PADDED_BELOW {
            (size, size.next_power_of_two())
        } else {
            let exact = 1 << (usize::BITS - 1 - size.leading_zeros());
            (exact, exact)
        };
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some((chunk, shape))
    })
}

/// A multi-row INSERT in its two forms: `exact` (`head`, `row`, `tail`)
/// for a chunk that fills its shape, and `padded` for one that does not,
/// which reads its rows from a `VALUES` list and skips the NULL rows
/// (`… FROM (VALUES …) WHERE column1 IS NOT NULL`). Both bind the same
/// values in the same order; the exact form is the faster per row.
struct InsertSql {
    exact: (&'static str, &'static str, &'static str),
    padded: (&'static str, &'static str, &'static str),
}

impl InsertSql {
    /// The statement for `rows` rows in a statement of `shape` rows.
    fn text(&self, rows: usize, shape: usize) -> &'static str {
        let (head, row, tail) = if rows == shape {
            self.exact
        } else {
            self.padded
        };
        rows_statement(head, row, shape, tail)
    }
}

/// The text of a multi-row statement: `head`, then `row` repeated `rows`
/// times with commas between, then `tail`. Each shape is built once and
/// kept (there are a few dozen: see `statement_chunks`), so a commit binds
/// values without formatting SQL.
fn rows_statement(
    head: &'static str,
    row: &'static str,
    rows: usize,
    tail: &'static str,
) -> &'static str {
    static SHAPES: Texts<(&str, &str, usize, &str)> = Texts::new();
    SHAPES.get((head, row, rows, tail), || {
        let mut sql = String::with_capacity(head.len() + rows * (row.len() + 2) + tail.len());
        sql.push_str(head);
        for i in 0..rows {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(row);
        }
        sql.push_str(tail);
        sql
    })
}

#[cfg(test)]
mod tests {
    use super::{rows_statement, statement_chunks};

    /// A commit that cannot take the write lock fails whole: nothing of it
    /// is written and nothing is acknowledged (the client resends), also
    /// when BEGIN travels with its first statement; once the lock is free,
    /// the next commit writes the row and its body.
    #[test]
    fn a_commit_that_fails_writes_nothing_and_acknowledges_nothing() {
        use super::*;
        use crate::session::OutboundState;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("roost.db");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (mut conn, snapshot) = open(&db, Synchronous::Normal, false).await.unwrap();
            let mut bodies = snapshot.bodies;
            let acked = Arc::new(AtomicUsize::new(0));
            let batch = |acked: &Arc<AtomicUsize>| {
                let acked = acked.clone();
                let mut batch = Batch::default();
                let message = Message {
                    topic: TopicName::new("t/1".to_string()).unwrap(),
                    payload: Bytes::from_static(b"payload"),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                };
                batch.push(
                    Op::PutMessage {
                        client_id: "c".into(),
                        record: Record::Outbound {
                            id: 1,
                            state: OutboundState::Queued,
                            packet_id: None,
                            message,
                        },
                        new: true,
                    },
                    Some(Completion::new(move || {
                        acked.fetch_add(1, Ordering::SeqCst);
                    })),
                );
                batch
            };

            // Another writer holds the lock past the busy timeout.
            let mut other =
                SqliteConnection::connect_with(&connect_options(&db, Synchronous::Normal))
                    .await
                    .unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut other)
                .await
                .unwrap();
            let first = batch(&acked);
            assert!(commit(&mut conn, &first, &mut bodies).await.is_err());
            first.abandon();
            assert_eq!(acked.load(Ordering::SeqCst), 0, "nothing acknowledged");
            assert!(bodies.is_stale());
            sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
            for sql in [
                "SELECT COUNT(*) FROM messages",
                "SELECT COUNT(*) FROM message_bodies",
            ] {
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut other).await.unwrap();
                assert_eq!(n, 0, "{sql}: nothing written");
            }

            let mut second = batch(&acked);
            commit(&mut conn, &second, &mut bodies).await.unwrap();
            second.release();
            assert_eq!(acked.load(Ordering::SeqCst), 1);
            for sql in [
                "SELECT COUNT(*) FROM messages",
                "SELECT COUNT(*) FROM message_bodies",
            ] {
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut other).await.unwrap();
                assert_eq!(n, 1, "{sql}");
            }
        });
    }

    /// `0004_messages_checks.sql` rewrote the CHECK constraints of
    /// `messages` without `IN` lists: every documented direction and state
    /// is still accepted, and nothing else.
    #[test]
    fn messages_accept_only_the_documented_directions_and_states() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("roost.db");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (mut conn, _) = super::open(&db, super::Synchronous::Normal, false)
                .await
                .unwrap();
            let insert = |direction: &'static str, state: &'static str| {
                sqlx::query(
                    "INSERT INTO messages (client_id, direction, state, qos, retain) \
                     VALUES ('c', ?1, ?2, 1, 0)",
                )
                .bind(direction)
                .bind(state)
            };
            for (direction, state) in [
                ("outbound", "queued"),
                ("outbound", "awaiting_puback"),
                ("outbound", "awaiting_pubrec"),
                ("outbound", "awaiting_pubcomp"),
                ("inbound", "awaiting_pubrel"),
            ] {
                insert(direction, state).execute(&mut conn).await.unwrap();
            }
            for (direction, state) in [
                ("sideways", "queued"),
                ("outbound", "sent"),
                ("Outbound", "queued"),
                ("inbound", ""),
            ] {
                let error = insert(direction, state).execute(&mut conn).await;
                assert!(
                    error.is_err_and(|e| e.to_string().contains("CHECK constraint failed")),
                    "{direction}/{state} must be refused"
                );
            }
        });
    }

    #[test]
    fn rows_statement_repeats_the_row_and_is_built_once() {
        let a = rows_statement("DELETE FROM t WHERE id IN (", "?", 3, ")");
        assert_eq!(a, "DELETE FROM t WHERE id IN (?, ?, ?)");
        let b = rows_statement("DELETE FROM t WHERE id IN (", "?", 3, ")");
        assert!(std::ptr::eq(a, b));
        assert_eq!(
            rows_statement("INSERT INTO t VALUES ", "(?, ?)", 2, ""),
            "INSERT INTO t VALUES (?, ?), (?, ?)"
        );
    }

    #[test]
    fn statement_chunks_cover_every_row_in_padded_power_of_two_shapes() {
        for width in [1usize, 3, 4, 8] {
            for n in [0usize, 1, 2, 3, 511, 512, 513, 1000, 2049, 5000, 20000] {
                let rows: Vec<usize> = (0..n).collect();
                let chunks: Vec<(&[usize], usize)> = statement_chunks(&rows, width).collect();
                for (chunk, shape) in &chunks {
                    assert!(shape.is_power_of_two() && *shape >= chunk.len());
                    assert!(shape * width <= super::MAX_VARIABLES, "{shape} x {width}");
                }
                // At most one padded statement, for the rest below PADDED_BELOW.
                let padded: Vec<_> = chunks.iter().filter(|(c, s)| c.len() != *s).collect();
                assert!(padded.len() <= 1, "n = {n}");
                assert!(padded.iter().all(|(c, _)| c.len() < super::PADDED_BELOW));
                let joined: Vec<usize> =
                    chunks.iter().flat_map(|(c, _)| c.iter().copied()).collect();
                assert_eq!(joined, rows, "n = {n}, width = {width}");
            }
        }
    }
}
