//! One run of a plan at a time: the plan's lease. Its holder (host, pid and
//! process start) renews it well inside its TTL, by the store's clock; each
//! acquisition takes a higher epoch, the fencing token the holder's journal
//! writes carry, so a holder that lost its lease (paused, cut off) can write
//! nothing more.
//!
//! A lease is taken over when it expired, or at once when its holder is a
//! process of this host that is gone. A holder on another host keeps it
//! until it expires.

use std::time::Duration;

use serde::Serialize;

use super::{Backend, Store, StoreError, exclusively, on_pool};
#[cfg(test)]
use crate::outcome::ErrorKind;
use crate::whoami;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub run_id: String,
    pub actor: String,
    pub host: String,
    pub pid: u32,
    pub acquired_at: String,
    /// How long its lease has left, by the store's clock, when it was read.
    pub expires_in_ms: Option<i64>,
}

/// A held plan lease. Release it with [`Store::release_plan_lock`]; if the
/// process dies instead, it expires (or, on the same host, the next acquirer
/// finds the holder gone and takes over).
#[derive(Debug, Clone)]
pub struct PlanLock {
    pub plan: String,
    pub run_id: String,
    /// The fencing token: higher than any earlier holder's.
    pub epoch: i64,
}

/// How long a lease lasts without renewal, and how often its holder renews it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    pub ttl: Duration,
    pub renew_every: Duration,
}

/// `CUTOVER_LEASE_TTL` and `CUTOVER_LEASE_RENEW`.
pub const LEASE_TTL_ENV: &str = "CUTOVER_LEASE_TTL";
pub const LEASE_RENEW_ENV: &str = "CUTOVER_LEASE_RENEW";

impl LeaseSettings {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

    /// From the environment: a TTL (default 30 s) and a renewal interval
    /// (default a third of it) that must leave room for two renewals.
    pub fn from_env() -> Result<LeaseSettings, StoreError> {
        let read = |name: &str| -> Result<Option<Duration>, StoreError> {
            match std::env::var(name) {
                Ok(text) if !text.trim().is_empty() => humantime::parse_duration(text.trim())
                    .map(Some)
                    .map_err(|error| {
                        StoreError::Settings(format!("{name}=`{text}` is not a duration: {error}"))
                    }),
                _ => Ok(None),
            }
        };
        let ttl = read(LEASE_TTL_ENV)?.unwrap_or(Self::DEFAULT_TTL);
        let renew_every = read(LEASE_RENEW_ENV)?.unwrap_or(ttl / 3);
        LeaseSettings::new(ttl, renew_every)
    }

    pub fn new(ttl: Duration, renew_every: Duration) -> Result<LeaseSettings, StoreError> {
        if ttl < Duration::from_secs(1) {
            return Err(StoreError::Settings(format!(
                "{LEASE_TTL_ENV} is {}: a lease needs at least 1 s",
                humantime::format_duration(ttl)
            )));
        }
        if renew_every.is_zero() || renew_every * 2 > ttl {
            return Err(StoreError::Settings(format!(
                "{LEASE_RENEW_ENV} is {} but {LEASE_TTL_ENV} is {}: renew at most every half TTL, so one \
                 missed renewal does not lose the lease",
                humantime::format_duration(renew_every),
                humantime::format_duration(ttl)
            )));
        }
        Ok(LeaseSettings { ttl, renew_every })
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }
}

type HolderRow = (
    String,
    String,
    String,
    i64,
    Option<i64>,
    String,
    Option<i64>,
);

impl Store {
    /// The store's clock in milliseconds since 1970, as SQL: every lease
    /// time is read and written by it, never by a host's clock.
    pub(super) fn clock_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
            Backend::Postgres(_) => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// Take the lease of `plan` on behalf of `run_id`, or say who holds it
    /// and for how long.
    pub async fn acquire_plan_lock(
        &self,
        plan: &str,
        run_id: &str,
    ) -> Result<PlanLock, StoreError> {
        let pid = std::process::id();
        let here = whoami::hostname();
        let clock = self.clock_sql();
        let ttl_ms = self.lease.ttl_ms();
        let holder_sql = format!(
            "SELECT run_id, actor, host, pid, pid_start_time, acquired_at, expires_at_ms - {clock}
             FROM plan_locks WHERE plan_name = $1"
        );
        let insert_sql = format!(
            "INSERT INTO plan_locks (plan_name, run_id, actor, host, pid, pid_start_time, acquired_at, epoch, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {clock} + $9)"
        );
        let epoch = exclusively!(self, "plan_locks", |tx| async {
            let db = |e| self.database_error(e);
            let existing: Option<HolderRow> =
                sqlx::query_as(sqlx::AssertSqlSafe(holder_sql.clone()))
                    .bind(plan)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            if let Some((holder_run, actor, host, holder_pid, start_time, acquired_at, left)) =
                existing
            {
                let holder = LockHolder {
                    run_id: holder_run,
                    actor,
                    host,
                    pid: u32::try_from(holder_pid).unwrap_or(0),
                    acquired_at,
                    expires_in_ms: left,
                };
                let start_time = start_time.and_then(|t| u64::try_from(t).ok());
                let expired = left.is_some_and(|left| left <= 0);
                // A holder on another host cannot be seen from here: only
                // its lease's expiry frees the plan.
                let gone = holder.host == here && !whoami::process_alive(holder.pid, start_time);
                if !expired && !gone {
                    return Err(StoreError::LockHeld {
                        plan: plan.to_string(),
                        holder: Box::new(holder),
                    });
                }
                tracing::warn!(
                    plan,
                    stale_run = %holder.run_id,
                    host = %holder.host,
                    pid = holder.pid,
                    "taking over the lease of a run whose {}",
                    if expired { "lease expired" } else { "process is gone" }
                );
                sqlx::query("DELETE FROM plan_locks WHERE plan_name = $1")
                    .bind(plan)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            let epoch: i64 = sqlx::query_scalar(
                "INSERT INTO lease_epochs (plan_name, epoch) VALUES ($1, 1)
                 ON CONFLICT (plan_name) DO UPDATE SET epoch = lease_epochs.epoch + 1
                 RETURNING epoch",
            )
            .bind(plan)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            sqlx::query(sqlx::AssertSqlSafe(insert_sql.clone()))
                .bind(plan)
                .bind(run_id)
                .bind(whoami::actor())
                .bind(&here)
                .bind(i64::from(pid))
                .bind(whoami::process_start_time(pid).map(|t| t as i64))
                .bind(whoami::now())
                .bind(epoch)
                .bind(ttl_ms)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            Ok::<_, StoreError>(epoch)
        }
        .await);
        Ok(PlanLock {
            plan: plan.to_string(),
            run_id: run_id.to_string(),
            epoch,
        })
    }

    /// Extend the lease by a TTL from now. Returns what it has left after;
    /// [`StoreError::LeaseLost`] when it expired or another holder has it.
    pub async fn renew_plan_lock(&self, lock: &PlanLock) -> Result<Duration, StoreError> {
        let clock = self.clock_sql();
        let sql = format!(
            "UPDATE plan_locks SET expires_at_ms = {clock} + $1
             WHERE plan_name = $2 AND epoch = $3 AND expires_at_ms > {clock}"
        );
        let renewed = on_pool!(self, |pool| sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(self.lease.ttl_ms())
            .bind(&lock.plan)
            .bind(lock.epoch)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))
        .map_err(|e| self.database_error(e))?;
        if renewed == 0 {
            return Err(self.lease_lost_error(lock).await);
        }
        Ok(self.lease.ttl)
    }

    /// What the lease has left, by the store's clock.
    pub async fn plan_lock_remaining(&self, lock: &PlanLock) -> Result<Duration, StoreError> {
        let clock = self.clock_sql();
        let sql = format!(
            "SELECT expires_at_ms - {clock} FROM plan_locks WHERE plan_name = $1 AND epoch = $2"
        );
        let left: Option<Option<i64>> = on_pool!(self, |pool| sqlx::query_scalar(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(&lock.plan)
        .bind(lock.epoch)
        .fetch_optional(pool)
        .await)
        .map_err(|e| self.database_error(e))?;
        match left.flatten() {
            Some(left) if left > 0 => Ok(Duration::from_millis(left as u64)),
            _ => Err(self.lease_lost_error(lock).await),
        }
    }

    /// Who holds `lock.plan` now, for the error that says this holder lost it.
    pub(super) async fn lease_lost_error(&self, lock: &PlanLock) -> StoreError {
        let clock = self.clock_sql();
        let sql = format!(
            "SELECT run_id, actor, host, pid, pid_start_time, acquired_at, expires_at_ms - {clock}
             FROM plan_locks WHERE plan_name = $1"
        );
        let holder: Option<HolderRow> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.clone()
        ))
        .bind(&lock.plan)
        .fetch_optional(pool)
        .await)
        .ok()
        .flatten();
        StoreError::LeaseLost {
            plan: lock.plan.clone(),
            epoch: lock.epoch,
            now_held_by: holder
                .filter(|row| row.0 != lock.run_id || row.6.is_some_and(|left| left > 0))
                .map(|(run_id, _, host, pid, ..)| format!("run {run_id} (pid {pid} on {host})"))
                .unwrap_or_else(|| "nobody (it expired)".to_string()),
        }
    }

    pub async fn release_plan_lock(&self, lock: PlanLock) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "DELETE FROM plan_locks WHERE plan_name = $1 AND run_id = $2 AND epoch = $3"
        )
        .bind(&lock.plan)
        .bind(&lock.run_id)
        .bind(lock.epoch)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(|e| self.database_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_must_leave_room_for_a_missed_renewal() {
        let secs = Duration::from_secs;
        assert!(LeaseSettings::new(secs(30), secs(10)).is_ok());
        assert!(LeaseSettings::new(secs(30), secs(15)).is_ok());
        let too_slow = LeaseSettings::new(secs(30), secs(20)).unwrap_err();
        assert!(
            too_slow
                .to_string()
                .contains("renew at most every half TTL"),
            "{too_slow}"
        );
        assert_eq!(too_slow.kind(), ErrorKind::InvalidInput);
        assert!(
            LeaseSettings::new(Duration::from_millis(500), Duration::from_millis(100)).is_err()
        );
        assert!(LeaseSettings::new(secs(30), Duration::ZERO).is_err());
    }
}
