//! Drill history, schedules and missed runs.

use super::{Store, StoreError, on_pool};
use crate::whoami;
use serde::Serialize;

/// One finished drill, as `drill history` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DrillRecord {
    pub drill_id: String,
    pub plan: String,
    pub failure: String,
    pub started_at: String,
    pub status: String,
    pub primary: String,
    pub promoted: Option<String>,
    pub rto_ms: Option<i64>,
    pub rto_target_ms: Option<i64>,
    pub rpo_ms: i64,
    pub rpo_target_ms: Option<i64>,
    pub lost_writes: i64,
    pub report_dir: Option<String>,
}

/// A stored drill schedule.
#[derive(Debug, Clone, Serialize)]
pub struct DrillSchedule {
    pub plan_path: String,
    pub plan: String,
    pub cron: String,
    pub timezone: String,
    pub created_at: String,
    pub last_due_at: Option<String>,
}

/// A due drill that did not run.
#[derive(Debug, Clone, Serialize)]
pub struct DrillMiss {
    pub plan_path: String,
    pub due_at: String,
    pub reason: String,
}

impl Store {
    pub async fn record_drill(
        &self,
        record: &DrillRecord,
        report: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let report = report.to_string();
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO drills (drill_id, plan_name, failure, started_at, status, primary_name, promoted,
                                 rto_ms, rto_target_ms, rpo_ms, rpo_target_ms, lost_writes, report_dir, report)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&record.drill_id)
        .bind(&record.plan)
        .bind(&record.failure)
        .bind(&record.started_at)
        .bind(&record.status)
        .bind(&record.primary)
        .bind(&record.promoted)
        .bind(record.rto_ms)
        .bind(record.rto_target_ms)
        .bind(record.rpo_ms)
        .bind(record.rpo_target_ms)
        .bind(record.lost_writes)
        .bind(&record.report_dir)
        .bind(&report)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(|e| self.database_error(e))
    }

    /// Past drills, oldest first (the last `limit`), optionally of one plan.
    pub async fn drills(
        &self,
        plan: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DrillRecord>, StoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<i64>,
            Option<i64>,
            i64,
            Option<i64>,
            i64,
            Option<String>,
        );
        let rows: Vec<Row> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM (
                SELECT drill_id, plan_name, failure, started_at, status, primary_name, promoted,
                       rto_ms, rto_target_ms, rpo_ms, rpo_target_ms, lost_writes, report_dir
                FROM drills WHERE ($1 IS NULL OR plan_name = $1)
                ORDER BY started_at DESC, drill_id DESC LIMIT $2
             ) AS newest ORDER BY started_at, drill_id",
        )
        .bind(plan)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)
        .map_err(|e| self.database_error(e))?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    drill_id,
                    plan,
                    failure,
                    started_at,
                    status,
                    primary,
                    promoted,
                    rto_ms,
                    rto_target_ms,
                    rpo_ms,
                    rpo_target_ms,
                    lost_writes,
                    report_dir,
                )| DrillRecord {
                    drill_id,
                    plan,
                    failure,
                    started_at,
                    status,
                    primary,
                    promoted,
                    rto_ms,
                    rto_target_ms,
                    rpo_ms,
                    rpo_target_ms,
                    lost_writes,
                    report_dir,
                },
            )
            .collect())
    }

    /// Store (or replace) the schedule of one plan file.
    pub async fn save_drill_schedule(
        &self,
        plan_path: &str,
        plan: &str,
        cron: &str,
        timezone: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO drill_schedules (plan_path, plan_name, cron, timezone, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (plan_path) DO UPDATE SET plan_name = excluded.plan_name,
                cron = excluded.cron, timezone = excluded.timezone, created_at = excluded.created_at,
                last_due_at = NULL",
        )
        .bind(plan_path)
        .bind(plan)
        .bind(cron)
        .bind(timezone)
        .bind(whoami::now())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(|e| self.database_error(e))
    }

    pub async fn drill_schedules(&self) -> Result<Vec<DrillSchedule>, StoreError> {
        type Row = (String, String, String, String, String, Option<String>);
        let rows: Vec<Row> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT plan_path, plan_name, cron, timezone, created_at, last_due_at FROM drill_schedules ORDER BY plan_path",
        )
        .fetch_all(pool)
        .await)
        .map_err(|e| self.database_error(e))?;
        Ok(rows
            .into_iter()
            .map(
                |(plan_path, plan, cron, timezone, created_at, last_due_at)| DrillSchedule {
                    plan_path,
                    plan,
                    cron,
                    timezone,
                    created_at,
                    last_due_at,
                },
            )
            .collect())
    }

    /// The daemon handled the due time `due_at` of a schedule.
    pub async fn set_drill_due(&self, plan_path: &str, due_at: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "UPDATE drill_schedules SET last_due_at = $1 WHERE plan_path = $2"
        )
        .bind(due_at)
        .bind(plan_path)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(|e| self.database_error(e))
    }

    pub async fn remove_drill_schedule(&self, plan_path: &str) -> Result<bool, StoreError> {
        let removed = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM drill_schedules WHERE plan_path = $1"
        )
        .bind(plan_path)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .map_err(|e| self.database_error(e))?;
        Ok(removed > 0)
    }

    pub async fn record_drill_miss(
        &self,
        plan_path: &str,
        due_at: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO drill_misses (plan_path, due_at, reason) VALUES ($1, $2, $3)"
        )
        .bind(plan_path)
        .bind(due_at)
        .bind(reason)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(|e| self.database_error(e))
    }

    pub async fn drill_misses(&self, limit: u32) -> Result<Vec<DrillMiss>, StoreError> {
        let rows: Vec<(String, String, String)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT plan_path, due_at, reason FROM drill_misses ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)
        .map_err(|e| self.database_error(e))?;
        Ok(rows
            .into_iter()
            .map(|(plan_path, due_at, reason)| DrillMiss {
                plan_path,
                due_at,
                reason,
            })
            .collect())
    }

    /// Take the due time `due_at` of a schedule for `holder`: true for the
    /// one daemon that got it, false for every other.
    pub async fn claim_drill_due(
        &self,
        plan_path: &str,
        due_at: &str,
        holder: &str,
    ) -> Result<bool, StoreError> {
        let taken = on_pool!(self, |pool| sqlx::query(
            "INSERT INTO drill_claims (plan_path, due_at, holder, claimed_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (plan_path, due_at) DO NOTHING"
        )
        .bind(plan_path)
        .bind(due_at)
        .bind(holder)
        .bind(whoami::now())
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .map_err(|e| self.database_error(e))?;
        Ok(taken == 1)
    }

    /// Each claimed due time of a schedule, oldest first, with its holder.
    pub async fn drill_claims(&self, plan_path: &str) -> Result<Vec<(String, String)>, StoreError> {
        on_pool!(self, |pool| sqlx::query_as(
            "SELECT due_at, holder FROM drill_claims WHERE plan_path = $1 ORDER BY due_at"
        )
        .bind(plan_path)
        .fetch_all(pool)
        .await)
        .map_err(|e| self.database_error(e))
    }
}
