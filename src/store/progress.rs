//! How far a snapshot got on each target and table. The snapshot owns the
//! meaning of `loaded` (a JSON document); the store only keeps it durable.

use super::{Store, StoreError, fenced, on_pool};
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
        let now = whoami::now();
        fenced!(self, |transaction| {
            async {
            for entry in entries {
                sqlx::query(
                    "INSERT INTO snapshot_progress (run_id, step, target, table_name, loaded, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
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
                .await?;
            }
            Ok::<_, sqlx::Error>(())
        }
        .await
        })
    }

    /// Everything recorded for one step of one run.
    pub async fn snapshot_progress(
        &self,
        run_id: &str,
        step: &str,
    ) -> Result<Vec<SnapshotProgress>, StoreError> {
        let rows: Vec<(String, String, String)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT target, table_name, loaded FROM snapshot_progress
             WHERE run_id = $1 AND step = $2 ORDER BY target, table_name",
        )
        .bind(run_id)
        .bind(step)
        .fetch_all(pool)
        .await)
        .map_err(|e| self.database_error(e))?;
        Ok(rows
            .into_iter()
            .map(|(target, table, loaded)| SnapshotProgress {
                target,
                table,
                loaded,
            })
            .collect())
    }

    /// Forget a step's progress (its snapshot was dropped or replaced).
    pub async fn clear_snapshot_progress(
        &self,
        run_id: &str,
        step: &str,
    ) -> Result<(), StoreError> {
        fenced!(self, |tx| sqlx::query(
            "DELETE FROM snapshot_progress WHERE run_id = $1 AND step = $2"
        )
        .bind(run_id)
        .bind(step)
        .execute(&mut *tx)
        .await
        .map(|_| ()))
    }
}
