//! The state store: runs, the step journal, plan locks and the audit chain,
//! in one SQLite file managed with migrations.

mod audit;
mod drills;
mod journal;
mod lock;
mod progress;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::outcome::ErrorKind;

pub use audit::{AuditEntry, AuditProblem, AuditVerification, StoredAuditEntry};
pub use drills::{DrillMiss, DrillRecord, DrillSchedule};
pub use journal::{
    Event, EventKind, PhaseRecord, RunRecord, RunStatus, StepRecord, StepStatus, StepUpdate,
    best_effort, new_run_id,
};
pub use lock::{LockHolder, PlanLock};
pub use progress::SnapshotProgress;

/// File name of the database inside the state directory.
pub const DATABASE_FILE: &str = "cutover.db";

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
    #[error(
        "plan `{plan}` is locked by run {} ({} pid {} on {}, since {})",
        holder.run_id, holder.actor, holder.pid, holder.host, holder.acquired_at
    )]
    LockHeld {
        plan: String,
        holder: Box<LockHolder>,
    },
    #[error("no run with id `{0}` in the state store")]
    UnknownRun(String),
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::LockHeld { .. } => ErrorKind::Refused,
            StoreError::UnknownRun(_) => ErrorKind::InvalidInput,
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
            StoreError::LockHeld { holder, .. } => Some(format!(
                "wait for it to finish, or check it with `cutover status {}`",
                holder.run_id
            )),
            StoreError::UnknownRun(_) => Some("list runs with `cutover status`".into()),
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
        // Two processes opening a new store at once would both migrate it.
        let guard = migration_lock(dir).await?;
        let migrated = sqlx::migrate!("./migrations").run(&pool).await;
        drop(guard);
        migrated.map_err(|source| StoreError::Migration {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{ExitCode, exit_code};

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_second_holder_of_the_plan_lock_is_refused_with_exit_3() {
        let (_dir, store) = store().await;
        let lock = store
            .acquire_plan_lock("lab-switchover", "run-a")
            .await
            .unwrap();
        let refused = store
            .acquire_plan_lock("lab-switchover", "run-b")
            .await
            .unwrap_err();
        let message = refused.to_string();
        assert!(message.contains("locked by run run-a"), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert_eq!(exit_code(refused.kind()), ExitCode::Refused);
        assert!(refused.hint().unwrap().contains("cutover status run-a"));
        // Another plan is independent.
        let other = store
            .acquire_plan_lock("lab-migration", "run-c")
            .await
            .unwrap();
        store.release_plan_lock(lock).await.unwrap();
        store.release_plan_lock(other).await.unwrap();
        let again = store
            .acquire_plan_lock("lab-switchover", "run-d")
            .await
            .unwrap();
        assert_eq!(again.run_id, "run-d");
    }

    #[tokio::test]
    async fn a_lock_whose_process_is_gone_is_taken_over() {
        let (_dir, store) = store().await;
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        sqlx::query(
            "INSERT INTO plan_locks (plan_name, run_id, actor, host, pid, pid_start_time, acquired_at)
             VALUES ('p', 'crashed-run', 'someone', ?, ?, 1, 'then')",
        )
        .bind(crate::whoami::hostname())
        .bind(i64::from(dead_pid))
        .execute(&store.pool)
        .await
        .unwrap();
        let lock = store.acquire_plan_lock("p", "new-run").await.unwrap();
        assert_eq!(lock.run_id, "new-run");
    }

    #[tokio::test]
    async fn a_lock_held_on_another_host_is_not_taken_over() {
        let (_dir, store) = store().await;
        sqlx::query(
            "INSERT INTO plan_locks (plan_name, run_id, actor, host, pid, pid_start_time, acquired_at)
             VALUES ('p', 'remote-run', 'ops@db-bastion', 'db-bastion', 1, NULL, 'then')",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let error = store.acquire_plan_lock("p", "mine").await.unwrap_err();
        assert!(error.to_string().contains("on db-bastion"), "{error}");
    }

    async fn audited_store() -> (tempfile::TempDir, Store) {
        let (dir, store) = store().await;
        for (index, action) in ["SET GLOBAL read_only = 1", "STOP SLAVE", "DNS CAS"]
            .iter()
            .enumerate()
        {
            store
                .audit(&AuditEntry {
                    run_id: Some("run-1".into()),
                    step: Some(format!("step-{index}")),
                    target: "c1".into(),
                    action: action.to_string(),
                    result: "ok".into(),
                })
                .await
                .unwrap();
        }
        (dir, store)
    }

    /// Three chained entries, changed behind the store's back by `tampering`, then verified.
    async fn verify_after(tampering: &'static str) -> AuditVerification {
        let (_dir, store) = audited_store().await;
        sqlx::query(tampering).execute(&store.pool).await.unwrap();
        store.verify_audit().await.unwrap()
    }

    #[tokio::test]
    async fn an_untouched_audit_chain_verifies() {
        let (_dir, store) = audited_store().await;
        let verification = store.verify_audit().await.unwrap();
        assert!(verification.intact, "{verification:?}");
        assert_eq!(verification.entries, 3);
        assert_eq!(store.audit_entries(10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn an_edited_audit_entry_is_detected() {
        let verification =
            verify_after("UPDATE audit_log SET result = 'failed' WHERE seq = 2").await;
        assert!(!verification.intact);
        assert_eq!(verification.problems.len(), 1, "{verification:?}");
        assert_eq!(verification.problems[0].seq, Some(2));
        assert!(verification.problems[0].problem.contains("modified"));
    }

    #[tokio::test]
    async fn a_deleted_audit_entry_is_detected() {
        let verification = verify_after("DELETE FROM audit_log WHERE seq = 2").await;
        assert!(!verification.intact);
        assert!(
            verification
                .problems
                .iter()
                .any(|p| p.problem.contains("missing")),
            "{verification:?}"
        );
    }

    #[tokio::test]
    async fn a_deleted_last_entry_is_detected() {
        let verification = verify_after("DELETE FROM audit_log WHERE seq = 3").await;
        assert!(!verification.intact);
        assert!(
            verification
                .problems
                .iter()
                .any(|p| p.problem.contains("last 1 entry")),
            "{verification:?}"
        );
    }

    #[tokio::test]
    async fn a_rewritten_chain_with_a_forged_hash_is_detected() {
        // Edit the entry and replace only its own hash: the next link breaks.
        let verification =
            verify_after("UPDATE audit_log SET action = 'nothing', hash = 'forged' WHERE seq = 1")
                .await;
        assert!(!verification.intact);
        assert!(verification.problems.len() >= 2, "{verification:?}");
    }

    #[tokio::test]
    async fn journal_records_intent_and_result_events() {
        let (_dir, store) = store().await;
        let plan = crate::plan::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/plans/lab-switchover.yaml"
        )))
        .unwrap();
        let run = store.create_run(&plan, false).await.unwrap();
        let positions = serde_json::json!({"frozen_gtid": "0-10-99"});
        store
            .record(
                &run.run_id,
                Event::new(EventKind::Intent)
                    .phase("cutover")
                    .step("switchover-c1.freeze")
                    .cluster(Some("legacy")),
            )
            .await
            .unwrap();
        store
            .record(
                &run.run_id,
                Event::new(EventKind::Result)
                    .phase("cutover")
                    .step("switchover-c1.freeze")
                    .cluster(Some("legacy"))
                    .positions(&positions)
                    .message("ok"),
            )
            .await
            .unwrap();
        let events = store.events(&run.run_id).await.unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["kind"], "intent");
        assert_eq!(events[1]["positions"]["frozen_gtid"], "0-10-99");
        let recorded = store.run(&run.run_id).await.unwrap();
        assert_eq!(recorded.status, RunStatus::Running);
        assert_eq!(recorded.phases.len(), 2);
        assert_eq!(recorded.phases[1].steps.len(), 8);
    }
}
