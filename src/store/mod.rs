//! The state store: runs, the step journal, plan locks and the audit chain,
//! in one SQLite file managed with migrations.

mod audit;
mod journal;
mod lock;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

pub use audit::{AuditEntry, AuditProblem, AuditVerification, StoredAuditEntry};
pub use journal::{
    EventKind, PhaseRecord, RunRecord, RunStatus, StepRecord, StepStatus, new_run_id,
};
pub use lock::{LockHolder, PlanLock};

/// File name of the database inside the state directory.
pub const DATABASE_FILE: &str = "cutover.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create state directory {path}: {reason} (set --state or CUTOVER_STATE to a writable directory)")]
    Directory { path: PathBuf, reason: String },
    #[error("state store {path}: {source}")]
    Database {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("state store {path}: migration failed: {source}")]
    Migration {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error(
        "plan `{plan}` is locked by run {} ({} pid {} on {}, since {}); wait for it to finish, or check it with `cutover status {}`",
        holder.run_id, holder.actor, holder.pid, holder.host, holder.acquired_at, holder.run_id
    )]
    LockHeld { plan: String, holder: LockHolder },
    #[error("no run with id `{0}` in the state store")]
    UnknownRun(String),
}

/// Handle on the state database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

impl Store {
    /// `$XDG_STATE_HOME/cutover`, else `~/.local/state/cutover`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|dir| !dir.is_empty()) {
            return PathBuf::from(dir).join("cutover");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|home| !home.is_empty()) {
            return PathBuf::from(home).join(".local/state/cutover");
        }
        PathBuf::from(".cutover-state")
    }

    /// Open (creating if needed) the store in `dir` and apply migrations.
    pub async fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|error| StoreError::Directory {
            path: dir.to_path_buf(),
            reason: error.to_string(),
        })?;
        let path = dir.join(DATABASE_FILE);
        let database = |source| StoreError::Database {
            path: path.clone(),
            source,
        };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(database)?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options)
            .await
            .map_err(database)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migration {
                path: path.clone(),
                source,
            })?;
        Ok(Store { pool, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn database_error(&self, source: sqlx::Error) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source,
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
