//! How far a snapshot got on each target and table. The snapshot owns the
//! meaning of `loaded` (a JSON document); the store only keeps it durable.

use sqlx::Row;

use super::{Store, StoreError};
use crate::whoami;

/// One target's progress on one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotProgress {
    pub target: String,
    pub table: String,
    pub loaded: String,
}

impl Store {
    /// Record progress for many `(target, table)` pairs in one transaction.
    pub async fn save_snapshot_progress(
        &self,
        run_id: &str,
        step: &str,
        entries: &[SnapshotProgress],
    ) -> Result<(), StoreError> {
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(|e| self.database_error(e))?;
        let now = whoami::now();
        for entry in entries {
            sqlx::query(
                "INSERT INTO snapshot_progress (run_id, step, target, table_name, loaded, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (run_id, step, target, table_name)
                 DO UPDATE SET loaded = excluded.loaded, updated_at = excluded.updated_at",
            )
            .bind(run_id)
            .bind(step)
            .bind(&entry.target)
            .bind(&entry.table)
            .bind(&entry.loaded)
            .bind(&now)
            .execute(&mut *transaction)
            .await
            .map_err(|e| self.database_error(e))?;
        }
        transaction
            .commit()
            .await
            .map_err(|e| self.database_error(e))
    }

    /// Everything recorded for one step of one run.
    pub async fn snapshot_progress(
        &self,
        run_id: &str,
        step: &str,
    ) -> Result<Vec<SnapshotProgress>, StoreError> {
        let rows = sqlx::query(
            "SELECT target, table_name, loaded FROM snapshot_progress
             WHERE run_id = ? AND step = ? ORDER BY target, table_name",
        )
        .bind(run_id)
        .bind(step)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.database_error(e))?;
        Ok(rows
            .into_iter()
            .map(|row| SnapshotProgress {
                target: row.get(0),
                table: row.get(1),
                loaded: row.get(2),
            })
            .collect())
    }

    /// Forget a step's progress (its snapshot was dropped or replaced).
    pub async fn clear_snapshot_progress(
        &self,
        run_id: &str,
        step: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM snapshot_progress WHERE run_id = ? AND step = ?")
            .bind(run_id)
            .bind(step)
            .execute(&self.pool)
            .await
            .map_err(|e| self.database_error(e))?;
        Ok(())
    }
}
