//! The state store: runs, the step journal, plan locks, the audit chain and
//! drills. An SQLite file in a state directory by default, or a PostgreSQL
//! database several operators and hosts share (`--state postgres://…`), both
//! managed with migrations, with the same SQL (`$N` placeholders) on either.

mod audit;
mod drills;
mod follow;
mod journal;
mod keeper;
mod lock;
mod migrate;
mod progress;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::outcome::ErrorKind;

pub use audit::{AuditEntry, AuditProblem, AuditVerification, StoredAuditEntry};
pub use drills::{DrillMiss, DrillRecord, DrillSchedule};
pub use follow::EventWaiter;
pub use journal::{
    Event, EventKind, PhaseRecord, RunRecord, RunStatus, StepRecord, StepStatus, StepUpdate,
    best_effort, new_run_id,
};
pub use keeper::LeaseKeeper;
pub use lock::{LEASE_RENEW_ENV, LEASE_TTL_ENV, LeaseSettings, LockHolder, PlanLock};
pub use migrate::Copied;
pub use progress::SnapshotProgress;

/// File name of the database inside the state directory.
pub const DATABASE_FILE: &str = "cutover.db";

/// How long connecting to a shared store, or waiting for one of its
/// connections, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the state lives: `--state` (or `CUTOVER_STATE`) as a directory, or
/// the URL of a shared PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    Directory(PathBuf),
    Postgres(String),
}

impl StateLocation {
    /// `postgres://…` or `postgresql://…` is a shared store; anything else a
    /// directory.
    pub fn parse(text: &str) -> StateLocation {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            StateLocation::Postgres(text.to_string())
        } else {
            StateLocation::Directory(PathBuf::from(text))
        }
    }

    /// How it is named in messages: a URL without its password.
    pub fn display(&self) -> String {
        match self {
            StateLocation::Directory(dir) => dir.display().to_string(),
            StateLocation::Postgres(url) => redact_url(url),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or("");
            format!("{user}@{host}")
        }
        None => authority.to_string(),
    };
    let query_free = path.split('?').next().unwrap_or("");
    if path.is_empty() {
        format!("{scheme}://{authority}")
    } else {
        format!("{scheme}://{authority}/{query_free}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create state directory {path}: {reason}")]
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
    #[error("shared state store {url}: {reason}")]
    Shared { url: String, reason: String },
    #[error("state store settings: {0}")]
    Settings(String),
    #[error(
        "plan `{plan}` is locked by run {} ({} pid {} on {}, since {}){}",
        holder.run_id, holder.actor, holder.pid, holder.host, holder.acquired_at,
        holder.expires_in_ms.map(|ms| format!("; its lease expires in {:.1} s unless renewed", ms as f64 / 1000.0)).unwrap_or_default()
    )]
    LockHeld {
        plan: String,
        holder: Box<LockHolder>,
    },
    #[error(
        "this process lost the lease of plan `{plan}` (epoch {epoch}); it is held by {now_held_by}: \
         this process stops here and writes nothing more"
    )]
    LeaseLost {
        plan: String,
        epoch: i64,
        now_held_by: String,
    },
    #[error("no run with id `{0}` in the state store")]
    UnknownRun(String),
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::LockHeld { .. } | StoreError::LeaseLost { .. } => ErrorKind::Refused,
            StoreError::UnknownRun(_) => ErrorKind::InvalidInput,
            StoreError::Shared { .. } | StoreError::Settings(_) => ErrorKind::InvalidInput,
            StoreError::Directory { .. }
            | StoreError::Database { .. }
            | StoreError::Migration { .. } => ErrorKind::Failed,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            StoreError::Directory { .. } => {
                Some("set --state or CUTOVER_STATE to a writable directory".into())
            }
            StoreError::Shared { .. } => Some(
                "check the URL in --state or CUTOVER_STATE (host, port, user, password, database) \
                 and that the server accepts connections from this host"
                    .into(),
            ),
            StoreError::LockHeld { holder, .. } => Some(format!(
                "wait for it to finish, or check it with `cutover status {}`",
                holder.run_id
            )),
            StoreError::UnknownRun(_) => Some("list runs with `cutover status`".into()),
            StoreError::LeaseLost { .. } => Some(
                "another orchestrator took the run over; follow it with `cutover status RUN_ID`"
                    .into(),
            ),
            StoreError::Settings(_) => Some(format!(
                "set {LEASE_TTL_ENV} (e.g. 30s) and {LEASE_RENEW_ENV} (at most half of it), or unset both"
            )),
            _ => None,
        }
    }
}

/// An exclusive lock on `dir/migrate.lock`, waited for at most 15 s.
async fn migration_lock(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, StoreError> {
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.join("migrate.lock");
    let failed = |reason: String| StoreError::Directory {
        path: path.clone(),
        reason,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| failed(e.to_string()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err((_, errno)) => {
                return Err(failed(format!(
                    "cannot lock it to set up the store: {errno}"
                )));
            }
        }
    }
}

/// The database behind a store.
#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the store's pool, whichever backend it
/// is: the same code and SQL for both. `$body` turns rows into the store's
/// own types, so both arms have one type.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Runs `$body` in a transaction that no other writer of `$table` can
/// interleave with (SQLite `BEGIN IMMEDIATE`, PostgreSQL an exclusive table
/// lock), with `$tx` the transaction; commits when `$body` succeeds. `$body`
/// returns `Result<T, StoreError>`.
macro_rules! exclusively {
    ($store:expr, $table:literal, |$tx:ident| $body:expr) => {{
        let store = &$store;
        match &store.backend {
            $crate::store::Backend::Sqlite(pool) => {
                let mut $tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(|e| store.database_error(e))?;
                let value = $body?;
                $tx.commit().await.map_err(|e| store.database_error(e))?;
                value
            }
            $crate::store::Backend::Postgres(pool) => {
                let mut $tx = pool.begin().await.map_err(|e| store.database_error(e))?;
                sqlx::query(concat!("LOCK TABLE ", $table, " IN EXCLUSIVE MODE"))
                    .execute(&mut *$tx)
                    .await
                    .map_err(|e| store.database_error(e))?;
                let value = $body?;
                $tx.commit().await.map_err(|e| store.database_error(e))?;
                value
            }
        }
    }};
}
pub(crate) use exclusively;

/// Runs `$body` (a journal write, `$tx` its transaction, returning
/// `Result<T, sqlx::Error>`) only while the store's fencing token still holds
/// its plan's lease, checked in the same transaction so that a takeover
/// cannot come between; without a token, just the write. Evaluates to
/// `Result<T, StoreError>`.
macro_rules! fenced {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let store = &$store;
        match &store.backend {
            $crate::store::Backend::Sqlite(pool) => {
                let mut $tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(|e| store.database_error(e))?;
                $crate::store::fenced_write!(store, $tx, $body)
            }
            $crate::store::Backend::Postgres(pool) => {
                let mut $tx = pool.begin().await.map_err(|e| store.database_error(e))?;
                $crate::store::fenced_write!(store, $tx, $body)
            }
        }
    }};
}

/// `fenced!`'s work inside its transaction `$tx`: the lease check, the
/// write, the commit.
macro_rules! fenced_write {
    ($store:ident, $tx:ident, $body:expr) => {{
        if let Some((fence, sql)) = $store.fence.as_deref().zip($store.fence_check_sql()) {
            let held: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(&fence.plan)
                .bind(fence.epoch)
                .fetch_optional(&mut *$tx)
                .await
                .map_err(|e| $store.database_error(e))?;
            if held.is_none() {
                drop($tx);
                return Err($store.lease_lost_error(fence).await);
            }
        }
        let value = $body.map_err(|e| $store.database_error(e))?;
        $tx.commit().await.map_err(|e| $store.database_error(e))?;
        Ok::<_, StoreError>(value)
    }};
}
pub(crate) use fenced;
pub(crate) use fenced_write;

/// Handle on the state database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// The file, or the shared store's URL without its password.
    path: PathBuf,
    lease: LeaseSettings,
    /// The lease this handle's journal writes must hold (`fenced_by`).
    fence: Option<std::sync::Arc<PlanLock>>,
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

    /// Open the store wherever it lives, applying migrations.
    pub async fn open_at(location: &StateLocation) -> Result<Store, StoreError> {
        match location {
            StateLocation::Directory(dir) => Store::open(dir).await,
            StateLocation::Postgres(url) => Store::open_shared(url).await,
        }
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
        // Two processes opening a new store at once would both migrate it.
        let guard = migration_lock(dir).await?;
        let migrated = sqlx::migrate!("./migrations").run(&pool).await;
        drop(guard);
        migrated.map_err(|source| StoreError::Migration {
            path: path.clone(),
            source,
        })?;
        Ok(Store {
            backend: Backend::Sqlite(pool),
            path,
            lease: LeaseSettings::from_env()?,
            fence: None,
        })
    }

    /// Connect to a shared store and apply its migrations (PostgreSQL takes
    /// the migrator's own lock, so several hosts may start at once).
    pub async fn open_shared(url: &str) -> Result<Store, StoreError> {
        let shown = redact_url(url);
        let shared = |reason: String| StoreError::Shared {
            url: shown.clone(),
            reason,
        };
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| shared(format!("not a PostgreSQL URL: {}", redact(&error, url))))?;
        // One connection first, so that a refusal is reported at once, not
        // retried until the pool gives up.
        let first = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| shared(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|error| shared(connect_failure(&error, url)))?;
        let _ = first.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|error| shared(connect_failure(&error, url)))?;
        sqlx::migrate!("./migrations-postgres")
            .run(&pool)
            .await
            .map_err(|error| shared(migration_failure(&error, url)))?;
        Ok(Store {
            backend: Backend::Postgres(pool),
            path: PathBuf::from(shown),
            lease: LeaseSettings::from_env()?,
            fence: None,
        })
    }

    /// The SQLite file, or the shared store's URL without its password.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lease_settings(&self) -> LeaseSettings {
        self.lease
    }

    /// A handle whose journal writes go through only while `lock` is the
    /// plan's lease: the holder's fencing token.
    pub fn fenced_by(&self, lock: &PlanLock) -> Store {
        Store {
            fence: Some(std::sync::Arc::new(lock.clone())),
            ..self.clone()
        }
    }

    /// The check a fenced write makes first (PostgreSQL also holds the lease
    /// row until the write commits, so a takeover waits for it).
    fn fence_check_sql(&self) -> Option<String> {
        self.fence.as_ref()?;
        let clock = self.clock_sql();
        let share = match self.backend {
            Backend::Sqlite(_) => "",
            Backend::Postgres(_) => " FOR SHARE",
        };
        Some(format!(
            "SELECT epoch FROM plan_locks WHERE plan_name = $1 AND epoch = $2 AND expires_at_ms > {clock}{share}"
        ))
    }

    fn database_error(&self, source: sqlx::Error) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source,
        }
    }

    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await);
    }
}

/// An error's text with the URL's password taken out, should it appear.
fn redact(error: &dyn std::fmt::Display, url: &str) -> String {
    let text = error.to_string();
    match password_of(url) {
        Some(password) if !password.is_empty() => text.replace(&password, "***"),
        _ => text,
    }
}

fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let credentials = rest.split('/').next()?.rsplit_once('@')?.0;
    Some(credentials.split_once(':')?.1.to_string())
}

/// One line on why a shared store's tables could not be set up.
fn migration_failure(error: &sqlx::migrate::MigrateError, url: &str) -> String {
    use sqlx::migrate::MigrateError;
    match error {
        MigrateError::VersionMissing(version) | MigrateError::VersionTooNew(version, _) => format!(
            "its tables were set up by a newer cutover (migration {version} is unknown to this one): \
             use the same cutover version on every host"
        ),
        MigrateError::VersionMismatch(version) => format!(
            "its migration {version} differs from this cutover's: use the same cutover version on every host"
        ),
        other => format!(
            "cannot set up its tables ({}): the URL's user needs CREATE on the database",
            redact(other, url)
        ),
    }
}

/// One line on why the shared store could not be reached.
fn connect_failure(error: &sqlx::Error, url: &str) -> String {
    let text = redact(error, url);
    let lower = text.to_ascii_lowercase();
    if lower.contains("password authentication failed") || lower.contains("28p01") {
        "the server refused the user and password in the URL".into()
    } else if lower.contains("does not exist") && lower.contains("database") {
        format!("the database in the URL does not exist ({text})")
    } else if lower.contains("timed out") || matches!(error, sqlx::Error::PoolTimedOut) {
        format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())
    } else if lower.contains("connection refused") {
        "nothing listens at the URL's host and port (connection refused)".into()
    } else {
        format!("cannot connect: {text}")
    }
}

#[doc(hidden)]
impl Store {
    /// Run one statement behind the store's back: for tests that tamper with
    /// the audit chain or plant a lock, never for the product.
    pub async fn execute_unchecked(&self, sql: String) -> Result<u64, StoreError> {
        on_pool!(self, |pool| sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))
        .map_err(|e| self.database_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_location_is_a_url_only_when_it_says_postgres() {
        assert_eq!(
            StateLocation::parse("/var/lib/cutover"),
            StateLocation::Directory(PathBuf::from("/var/lib/cutover"))
        );
        assert!(matches!(
            StateLocation::parse("postgresql://u:p@db/cutover"),
            StateLocation::Postgres(_)
        ));
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redact_url("postgres://cutover:s3cret@127.0.0.40:15432/cutover?sslmode=disable"),
            "postgres://cutover@127.0.0.40:15432/cutover"
        );
        assert_eq!(redact_url("postgres://db.bank/x"), "postgres://db.bank/x");
        assert_eq!(
            StateLocation::parse("postgres://a:b@h/d").display(),
            "postgres://a@h/d"
        );
        let error = std::io::Error::other("password s3cret rejected");
        assert_eq!(
            redact(&error, "postgres://u:s3cret@h/d"),
            "password *** rejected"
        );
    }
}
