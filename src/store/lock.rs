//! One run of a plan at a time, across processes on this host (and, on a
//! shared store, across hosts: a holder on another host keeps the lock).

use super::{Store, StoreError, exclusively, on_pool};
use crate::whoami;
use serde::Serialize;

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
        let pid = std::process::id();
        let here = whoami::hostname();
        exclusively!(self, "plan_locks", |tx| {
            async {
            let existing: Option<(String, String, String, i64, Option<i64>, String)> =
                sqlx::query_as(
                    "SELECT run_id, actor, host, pid, pid_start_time, acquired_at FROM plan_locks WHERE plan_name = $1",
                )
                .bind(plan)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.database_error(e))?;
            if let Some((holder_run, actor, host, holder_pid, start_time, acquired_at)) = existing {
                let holder = LockHolder {
                    run_id: holder_run,
                    actor,
                    host,
                    pid: u32::try_from(holder_pid).unwrap_or(0),
                    acquired_at,
                };
                let start_time = start_time.and_then(|t| u64::try_from(t).ok());
                // A holder on another host cannot be seen from here: it keeps the lock.
                let same_host = holder.host == here;
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
                sqlx::query("DELETE FROM plan_locks WHERE plan_name = $1")
                    .bind(plan)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.database_error(e))?;
            }
            sqlx::query(
                "INSERT INTO plan_locks (plan_name, run_id, actor, host, pid, pid_start_time, acquired_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(plan)
            .bind(run_id)
            .bind(whoami::actor())
            .bind(&here)
            .bind(i64::from(pid))
            .bind(whoami::process_start_time(pid).map(|t| t as i64))
            .bind(whoami::now())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.database_error(e))?;
            Ok::<_, StoreError>(())
        }
        .await
        });
        Ok(PlanLock {
            plan: plan.to_string(),
            run_id: run_id.to_string(),
        })
    }

    pub async fn release_plan_lock(&self, lock: PlanLock) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "DELETE FROM plan_locks WHERE plan_name = $1 AND run_id = $2"
        )
        .bind(&lock.plan)
        .bind(&lock.run_id)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(|e| self.database_error(e))
    }
}
