//! Copy a store's whole history into an empty shared store, as it is: runs,
//! phases, steps, the journal, the audit chain (with its highest issued
//! number, so it verifies the same), snapshot progress, drills, schedules,
//! misses, claims and lease epochs. Plan locks are not copied: a store whose
//! runs hold one is refused.

use serde::Serialize;

use super::{Backend, Store, StoreError, on_pool};

/// How many rows of each kind were copied.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Copied {
    pub runs: usize,
    pub events: usize,
    pub audit_entries: usize,
    pub drills: usize,
    pub other_rows: usize,
}

/// Copy table `$table`'s `$column`s (of Rust types `$ty`) from `$from` into
/// the transaction `$tx` of `$to`; `$overriding` is `OVERRIDING SYSTEM VALUE` for an
/// identity column. Evaluates to the number of rows.
macro_rules! copy_table {
    ($from:expr, $to:expr, $tx:ident, $table:literal, $order:literal, $overriding:literal, [$($column:ident: $ty:ty),+ $(,)?]) => {{
        let columns = [$(stringify!($column)),+];
        let select = format!("SELECT {} FROM {} ORDER BY {}", columns.join(", "), $table, $order);
        let rows: Vec<($($ty,)+)> = on_pool!($from, |pool| sqlx::query_as(sqlx::AssertSqlSafe(select.clone()))
            .fetch_all(pool)
            .await)
        .map_err(|e| $from.database_error(e))?;
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let insert = format!(
            "INSERT INTO {} ({}) {} VALUES ({})",
            $table,
            columns.join(", "),
            $overriding,
            placeholders.join(", ")
        );
        for ($($column,)+) in &rows {
            sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                $(.bind($column))+
                .execute(&mut *$tx)
                .await
                .map_err(|e| $to.database_error(e))?;
        }
        rows.len()
    }};
}

impl Store {
    /// Copy everything this store holds into `shared`, a shared store that
    /// holds no run and no audit entry yet; in one transaction there.
    pub async fn copy_into(&self, shared: &Store) -> Result<Copied, StoreError> {
        let Backend::Postgres(pool) = &shared.backend else {
            return Err(StoreError::Settings(
                "the store to migrate to must be a postgres:// URL".into(),
            ));
        };
        let held: Vec<(String, String)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT plan_name, run_id FROM plan_locks ORDER BY plan_name"
        )
        .fetch_all(pool)
        .await)
        .map_err(|e| self.database_error(e))?;
        if let Some((plan, run)) = held.first() {
            return Err(StoreError::Settings(format!(
                "run {run} still holds plan `{plan}`: let it finish (or resume and finish it) before migrating"
            )));
        }
        let (runs, audit): (i64, i64) =
            sqlx::query_as("SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM audit_log)")
                .fetch_one(pool)
                .await
                .map_err(|e| shared.database_error(e))?;
        if runs > 0 || audit > 0 {
            return Err(StoreError::Settings(format!(
                "{} already holds {runs} run(s) and {audit} audit entr(ies): migrate into a new, empty database",
                shared.path.display()
            )));
        }
        let issued: Option<i64> = on_pool!(self, |pool| sqlx::query_scalar(sqlx::AssertSqlSafe(
            self.issued_sql()
        ))
        .fetch_optional(pool)
        .await)
        .map_err(|e| self.database_error(e))?;
        let db = |e| shared.database_error(e);
        let copied = async {
            let mut tx = pool.begin().await.map_err(db)?;
            let mut copied = Copied {
                runs: copy_table!(self, shared, tx, "runs", "run_id", "", [
                    run_id: String, plan_name: String, plan_path: String, plan_sha256: String,
                    status: String, dry_run: bool, actor: String, host: String, pid: i64,
                    started_at: String, ended_at: Option<String>, point_of_no_return: bool,
                    detail: Option<String>,
                ]),
                ..Copied::default()
            };
            copied.other_rows += copy_table!(self, shared, tx, "phases", "run_id, phase_index", "", [
                run_id: String, phase_index: i64, name: String, status: String,
                started_at: Option<String>, ended_at: Option<String>, completed_in: Option<String>,
            ]);
            copied.other_rows += copy_table!(self, shared, tx, "steps", "run_id, phase_index, step_index", "", [
                run_id: String, phase_index: i64, step_index: i64, name: String, kind: String,
                status: String, started_at: Option<String>, ended_at: Option<String>,
                elapsed_ms: Option<i64>, positions: Option<String>, detail: Option<String>,
            ]);
            copied.events = copy_table!(self, shared, tx, "events", "id", "OVERRIDING SYSTEM VALUE", [
                id: i64, run_id: String, at: String, phase: Option<String>, step: Option<String>,
                kind: String, cluster: Option<String>, positions: Option<String>,
                message: Option<String>,
            ]);
            copied.audit_entries = copy_table!(self, shared, tx, "audit_log", "seq", "", [
                seq: i64, at: String, actor: String, run_id: Option<String>, step: Option<String>,
                target: String, action: String, result: String, prev_hash: String, hash: String,
            ]);
            copied.other_rows += copy_table!(self, shared, tx, "snapshot_progress", "run_id, step, target, table_name", "", [
                run_id: String, step: String, target: String, table_name: String, loaded: String,
                updated_at: String,
            ]);
            copied.drills = copy_table!(self, shared, tx, "drills", "drill_id", "", [
                drill_id: String, plan_name: String, failure: String, started_at: String,
                status: String, primary_name: String, promoted: Option<String>,
                rto_ms: Option<i64>, rto_target_ms: Option<i64>, rpo_ms: i64,
                rpo_target_ms: Option<i64>, lost_writes: i64, report_dir: Option<String>,
                report: String,
            ]);
            copied.other_rows += copy_table!(self, shared, tx, "drill_schedules", "plan_path", "", [
                plan_path: String, plan_name: String, cron: String, timezone: String,
                created_at: String, last_due_at: Option<String>,
            ]);
            copied.other_rows += copy_table!(self, shared, tx, "drill_misses", "id", "OVERRIDING SYSTEM VALUE", [
                id: i64, plan_path: String, due_at: String, reason: String,
            ]);
            copied.other_rows += copy_table!(self, shared, tx, "drill_claims", "plan_path, due_at", "", [
                plan_path: String, due_at: String, holder: String, claimed_at: String,
            ]);
            copied.other_rows += copy_table!(self, shared, tx, "lease_epochs", "plan_name", "", [
                plan_name: String, epoch: i64,
            ]);
            if let Some(issued) = issued {
                sqlx::query("INSERT INTO audit_issued (name, seq) VALUES ('audit_log', $1)")
                    .bind(issued)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            // New identities continue after the copied ones.
            for table in ["events", "drill_misses"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table}"
                )))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            tx.commit().await.map_err(db)?;
            Ok::<_, StoreError>(copied)
        }
        .await?;
        Ok(copied)
    }
}
