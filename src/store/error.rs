//! What can go wrong when the store opens or writes, and what each error
//! means for the operator: only real damage (a file that is not a
//! database, or a corrupt one) may be reset with `--reset-damaged-db`.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "database {path} is damaged or is not a roost database: {reason}\n\
         roost will not start on it, and will not silently start empty.\n\
         To keep it for inspection and start with an empty database, run roost with --reset-damaged-db:\n\
         the file is then renamed to {path}.damaged-<unix time> and a new one is created."
    )]
    Damaged { path: PathBuf, reason: String },
    #[error(
        "database {path} is a directory: store.db (--db) names the database file, \
         e.g. {path}/roost.db. Nothing was changed."
    )]
    Directory { path: PathBuf },
    #[error(
        "database {path} was written by a newer roost: its schema has migration {version}, \
         which this roost does not know. Run the newer roost, or start this one with another \
         --db. Nothing was changed."
    )]
    NewerSchema { path: PathBuf, version: i64 },
    #[error(
        "database {path} is in use by another roost process (it holds the lock on {lock}). \
         Stop it first, or give this one another --db. Nothing was changed."
    )]
    InUse { path: PathBuf, lock: PathBuf },
    #[error(
        "database {path} is locked by another connection ({reason}): close the other writer \
         (an sqlite3 shell in a transaction?) and start again. Nothing was changed."
    )]
    Busy { path: PathBuf, reason: String },
    #[error("database {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("database write failed: {0}")]
    Sql(#[from] sqlx::Error),
}

/// The primary SQLite result code of a database error (the low byte of
/// the extended code sqlx reports).
fn sqlite_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(db) => db.code()?.parse::<i32>().ok().map(|c| c & 0xff),
        _ => None,
    }
}

/// SQLITE_CORRUPT and SQLITE_NOTADB: the file itself is damaged.
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_NOTADB: i32 = 26;
/// SQLITE_BUSY and SQLITE_LOCKED: another connection holds a lock.
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

impl StoreError {
    /// What an error met while opening `path` means. Only a file that is
    /// not a database, or is corrupt, counts as damaged (and may be reset);
    /// a lock, a full disk, a permission or a newer schema never does.
    pub(super) fn opening(path: &Path, e: sqlx::Error) -> StoreError {
        let path = path.to_path_buf();
        match sqlite_code(&e) {
            Some(SQLITE_CORRUPT | SQLITE_NOTADB) => StoreError::Damaged {
                path,
                reason: e.to_string(),
            },
            Some(SQLITE_BUSY | SQLITE_LOCKED) => StoreError::Busy {
                path,
                reason: e.to_string(),
            },
            _ => StoreError::Open {
                path,
                reason: e.to_string(),
            },
        }
    }

    /// As [`StoreError::opening`], for an error of the direct SQLite
    /// handle as well as of sqlx.
    pub(super) fn opening_any(path: &Path, e: super::CommitError) -> StoreError {
        use rusqlite::ErrorCode;
        match e {
            super::CommitError::Sqlx(e) => StoreError::opening(path, e),
            super::CommitError::Sqlite(e) => {
                let path = path.to_path_buf();
                let reason = e.to_string();
                match e.sqlite_error_code() {
                    Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                        StoreError::Damaged { path, reason }
                    }
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                        StoreError::Busy { path, reason }
                    }
                    _ => StoreError::Open { path, reason },
                }
            }
            super::CommitError::Injected => StoreError::Open {
                path: path.to_path_buf(),
                reason: "injected failure".into(),
            },
        }
    }

    pub(super) fn migrating(path: &Path, e: sqlx::migrate::MigrateError) -> StoreError {
        use sqlx::migrate::MigrateError;
        match e {
            MigrateError::VersionMissing(version) => StoreError::NewerSchema {
                path: path.to_path_buf(),
                version,
            },
            MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => {
                StoreError::opening(path, e)
            }
            other => StoreError::Open {
                path: path.to_path_buf(),
                reason: format!("migrating the schema: {other}"),
            },
        }
    }
}
