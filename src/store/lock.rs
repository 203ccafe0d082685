//! One run of a plan at a time, across processes on this host.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};
use crate::whoami;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub run_id: String,
    pub actor: String,
    pub host: String,
    pub pid: u32,
    pub acquired_at: String,
}

/// A held plan lock. Release it with [`Store::release_plan_lock`]; if the
/// process dies instead, the next acquirer finds the holder gone and takes over.
#[derive(Debug)]
pub struct PlanLock {
    pub plan: String,
    pub run_id: String,
}

impl Store {
    /// Take the lock for `plan` on behalf of `run_id`, or say who holds it.
    pub async fn acquire_plan_lock(
        &self,
        plan: &str,
        run_id: &str,
    ) -> Result<PlanLock, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.database_error(e))?;
        let existing = sqlx::query(
            "SELECT run_id, actor, host, pid, pid_start_time, acquired_at FROM plan_locks WHERE plan_name = ?",
        )
        .bind(plan)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.database_error(e))?;
        if let Some(row) = existing {
            let holder = LockHolder {
                run_id: row.get("run_id"),
                actor: row.get("actor"),
                host: row.get("host"),
                pid: u32::try_from(row.get::<i64, _>("pid")).unwrap_or(0),
                acquired_at: row.get("acquired_at"),
            };
            let start_time = row
                .get::<Option<i64>, _>("pid_start_time")
                .and_then(|t| u64::try_from(t).ok());
            let same_host = holder.host == whoami::hostname();
            if !same_host || whoami::process_alive(holder.pid, start_time) {
                return Err(StoreError::LockHeld {
                    plan: plan.to_string(),
                    holder: Box::new(holder),
                });
            }
            tracing::warn!(
                plan,
                stale_run = %holder.run_id,
                pid = holder.pid,
                "taking over the lock of a run whose process is gone"
            );
            sqlx::query("DELETE FROM plan_locks WHERE plan_name = ?")
                .bind(plan)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.database_error(e))?;
        }
        let pid = std::process::id();
        sqlx::query(
            "INSERT INTO plan_locks (plan_name, run_id, actor, host, pid, pid_start_time, acquired_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(plan)
        .bind(run_id)
        .bind(whoami::actor())
        .bind(whoami::hostname())
        .bind(i64::from(pid))
        .bind(whoami::process_start_time(pid).map(|t| t as i64))
        .bind(whoami::now())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.database_error(e))?;
        tx.commit().await.map_err(|e| self.database_error(e))?;
        Ok(PlanLock {
            plan: plan.to_string(),
            run_id: run_id.to_string(),
        })
    }

    pub async fn release_plan_lock(&self, lock: PlanLock) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM plan_locks WHERE plan_name = ? AND run_id = ?")
            .bind(&lock.plan)
            .bind(&lock.run_id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.database_error(e))?;
        Ok(())
    }
}
