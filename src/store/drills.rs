//! Drill history, schedules and missed runs.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError};
use crate::whoami;

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
        sqlx::query(
            "INSERT INTO drills (drill_id, plan_name, failure, started_at, status, primary_name, promoted,
                                 rto_ms, rto_target_ms, rpo_ms, rpo_target_ms, lost_writes, report_dir, report)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(report.to_string())
        .execute(&self.pool)
        .await
        .map_err(|e| self.database_error(e))?;
        Ok(())
    }

    /// Past drills, oldest first (the last `limit`), optionally of one plan.
    pub async fn drills(
        &self,
        plan: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DrillRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM (
                SELECT drill_id, plan_name, failure, started_at, status, primary_name, promoted,
                       rto_ms, rto_target_ms, rpo_ms, rpo_target_ms, lost_writes, report_dir
                FROM drills WHERE (?1 IS NULL OR plan_name = ?1)
                ORDER BY started_at DESC, drill_id DESC LIMIT ?2
             ) ORDER BY started_at, drill_id",
        )
        .bind(plan)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.database_error(e))?;
        Ok(rows
            .iter()
            .map(|row| DrillRecord {
                drill_id: row.get("drill_id"),
                plan: row.get("plan_name"),
                failure: row.get("failure"),
                started_at: row.get("started_at"),
                status: row.get("status"),
                primary: row.get("primary_name"),
                promoted: row.get("promoted"),
                rto_ms: row.get("rto_ms"),
                rto_target_ms: row.get("rto_target_ms"),
                rpo_ms: row.get("rpo_ms"),
                rpo_target_ms: row.get("rpo_target_ms"),
                lost_writes: row.get("lost_writes"),
                report_dir: row.get("report_dir"),
            })
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
        sqlx::query(
            "INSERT INTO drill_schedules (plan_path, plan_name, cron, timezone, created_at)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (plan_path) DO UPDATE SET plan_name = excluded.plan_name,
                cron = excluded.cron, timezone = excluded.timezone, created_at = excluded.created_at,
                last_due_at = NULL",
        )
        .bind(plan_path)
        .bind(plan)
        .bind(cron)
        .bind(timezone)
        .bind(whoami::now())
        .execute(&self.pool)
        .await
        .map_err(|e| self.database_error(e))?;
        Ok(())
    }

    pub async fn drill_schedules(&self) -> Result<Vec<DrillSchedule>, StoreError> {
        let rows = sqlx::query(
            "SELECT plan_path, plan_name, cron, timezone, created_at, last_due_at FROM drill_schedules ORDER BY plan_path",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.database_error(e))?;
        Ok(rows
            .iter()
            .map(|row| DrillSchedule {
                plan_path: row.get(0),
                plan: row.get(1),
                cron: row.get(2),
                timezone: row.get(3),
                created_at: row.get(4),
                last_due_at: row.get(5),
            })
            .collect())
    }

    /// The daemon handled the due time `due_at` of a schedule.
    pub async fn set_drill_due(&self, plan_path: &str, due_at: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE drill_schedules SET last_due_at = ? WHERE plan_path = ?")
            .bind(due_at)
            .bind(plan_path)
            .execute(&self.pool)
            .await
            .map_err(|e| self.database_error(e))?;
        Ok(())
    }

    pub async fn remove_drill_schedule(&self, plan_path: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM drill_schedules WHERE plan_path = ?")
            .bind(plan_path)
            .execute(&self.pool)
            .await
            .map_err(|e| self.database_error(e))?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn record_drill_miss(
        &self,
        plan_path: &str,
        due_at: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO drill_misses (plan_path, due_at, reason) VALUES (?, ?, ?)")
            .bind(plan_path)
            .bind(due_at)
            .bind(reason)
            .execute(&self.pool)
            .await
            .map_err(|e| self.database_error(e))?;
        Ok(())
    }

    pub async fn drill_misses(&self, limit: u32) -> Result<Vec<DrillMiss>, StoreError> {
        let rows = sqlx::query(
            "SELECT plan_path, due_at, reason FROM drill_misses ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.database_error(e))?;
        Ok(rows
            .iter()
            .map(|row| DrillMiss {
                plan_path: row.get(0),
                due_at: row.get(1),
                reason: row.get(2),
            })
            .collect())
    }
}
