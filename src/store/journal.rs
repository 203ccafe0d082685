//! Runs, phases, steps and the event journal.

use rand::Rng;
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, fenced, on_pool};
use crate::plan::ValidatedPlan;
use crate::whoami;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    RolledBack,
    Failed,
    Refused,
    Interrupted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Completed,
    Failed,
    RolledBack,
    Skipped,
    /// A phase whose prechecks at its start said no: nothing of it ran.
    Refused,
}

/// What a journal event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Written before a step acts.
    Intent,
    /// Written after a step acted.
    Result,
    Observation,
    Rollback,
    Note,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($ty::$variant),)* _ => None }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(RunStatus {
    Running => "running",
    Completed => "completed",
    RolledBack => "rolled_back",
    Failed => "failed",
    Refused => "refused",
    Interrupted => "interrupted",
});

text_enum!(StepStatus {
    Pending => "pending",
    Running => "running",
    Completed => "completed",
    Failed => "failed",
    RolledBack => "rolled_back",
    Skipped => "skipped",
    Refused => "refused",
});

text_enum!(EventKind {
    Intent => "intent",
    Result => "result",
    Observation => "observation",
    Rollback => "rollback",
    Note => "note",
});

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub plan: String,
    pub plan_path: String,
    pub plan_sha256: String,
    pub status: RunStatus,
    pub dry_run: bool,
    pub actor: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub point_of_no_return: bool,
    pub detail: Option<String>,
    pub phases: Vec<PhaseRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseRecord {
    pub name: String,
    pub status: StepStatus,
    /// Carried from an earlier run of the plan that completed it (`--from-phase`).
    pub completed_in: Option<String>,
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub name: String,
    pub kind: String,
    pub status: StepStatus,
    pub elapsed_ms: Option<i64>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub positions: Option<serde_json::Value>,
    pub detail: Option<String>,
}

/// One journal entry: what happened, where, and what it saw.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub kind: EventKind,
    pub phase: Option<&'a str>,
    pub step: Option<&'a str>,
    pub cluster: Option<&'a str>,
    pub positions: Option<&'a serde_json::Value>,
    pub message: Option<&'a str>,
}

impl<'a> Event<'a> {
    pub fn new(kind: EventKind) -> Event<'a> {
        Event {
            kind,
            phase: None,
            step: None,
            cluster: None,
            positions: None,
            message: None,
        }
    }

    pub fn phase(mut self, phase: &'a str) -> Self {
        self.phase = Some(phase);
        self
    }

    pub fn step(mut self, step: &'a str) -> Self {
        self.step = Some(step);
        self
    }

    pub fn cluster(mut self, cluster: Option<&'a str>) -> Self {
        self.cluster = cluster;
        self
    }

    pub fn positions(mut self, positions: &'a serde_json::Value) -> Self {
        self.positions = Some(positions);
        self
    }

    pub fn message(mut self, message: &'a str) -> Self {
        self.message = Some(message);
        self
    }
}

/// A journal write whose failure must not stop what is under way: logged
/// with `what` it was recording, never silently dropped.
pub fn best_effort<T>(result: Result<T, StoreError>, what: &str) {
    if let Err(error) = result {
        tracing::warn!("could not journal {what}: {error}");
    }
}

/// A step's new state and what it observed.
#[derive(Debug, Clone)]
pub struct StepUpdate {
    pub status: StepStatus,
    pub elapsed_ms: Option<u64>,
    pub positions: Option<serde_json::Value>,
    pub detail: Option<String>,
}

impl StepUpdate {
    pub fn status(status: StepStatus) -> Self {
        StepUpdate {
            status,
            elapsed_ms: None,
            positions: None,
            detail: None,
        }
    }
}

/// `YYYYMMDD-HHMMSS-xxxxxx`: sortable by start time, unique across hosts.
pub fn new_run_id() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = now
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    let (date, time) = compact.split_once('T').unwrap_or((&compact, ""));
    let suffix: u32 = rand::rng().random_range(0..0x0100_0000);
    format!("{date}-{time}-{suffix:06x}")
}

impl Store {
    /// Record a new run with every phase and step pending.
    pub async fn create_run(
        &self,
        plan: &ValidatedPlan,
        dry_run: bool,
    ) -> Result<RunRecord, StoreError> {
        let run_id = new_run_id();
        let now = whoami::now();
        let actor = whoami::actor();
        // Absolute, so `resume` and `rollback` find it from any directory.
        let plan_path = std::fs::canonicalize(&plan.path)
            .unwrap_or_else(|_| plan.path.clone())
            .display()
            .to_string();
        let host = whoami::hostname();
        let pid = i64::from(std::process::id());
        on_pool!(self, |pool| async {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO runs (run_id, plan_name, plan_path, plan_sha256, status, dry_run, actor, host, pid, started_at)
                 VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8, $9)",
            )
            .bind(&run_id)
            .bind(&plan.name)
            .bind(&plan_path)
            .bind(&plan.sha256)
            .bind(dry_run)
            .bind(&actor)
            .bind(&host)
            .bind(pid)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            for (phase_index, phase) in plan.phases.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO phases (run_id, phase_index, name, status) VALUES ($1, $2, $3, 'pending')",
                )
                .bind(&run_id)
                .bind(phase_index as i64)
                .bind(&phase.name)
                .execute(&mut *tx)
                .await?;
                for (step_index, step) in phase.steps.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO steps (run_id, phase_index, step_index, name, kind, status)
                         VALUES ($1, $2, $3, $4, $5, 'pending')",
                    )
                    .bind(&run_id)
                    .bind(phase_index as i64)
                    .bind(step_index as i64)
                    .bind(&step.name)
                    .bind(step.kind.kind_name())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await
        }
        .await)
        .map_err(|e| self.database_error(e))?;
        self.run(&run_id).await
    }

    pub async fn set_phase_status(
        &self,
        run_id: &str,
        phase_index: usize,
        status: StepStatus,
    ) -> Result<(), StoreError> {
        let now = whoami::now();
        fenced!(self, |tx| sqlx::query(
            "UPDATE phases SET status = $1,
                 started_at = COALESCE(started_at, $2),
                 ended_at = CASE WHEN $1 IN ('running', 'pending') THEN NULL ELSE $2 END
             WHERE run_id = $3 AND phase_index = $4",
        )
        .bind(status.as_str())
        .bind(&now)
        .bind(run_id)
        .bind(phase_index as i64)
        .execute(&mut *tx)
        .await
        .map(|_| ()))
    }

    /// Update one step's state together with the positions it observed.
    pub async fn set_step_status(
        &self,
        run_id: &str,
        phase_index: usize,
        step_index: usize,
        update: &StepUpdate,
    ) -> Result<(), StoreError> {
        let StepUpdate {
            status,
            elapsed_ms,
            positions,
            detail,
        } = update;
        let now = whoami::now();
        let positions = positions.as_ref().map(serde_json::Value::to_string);
        fenced!(self, |tx| sqlx::query(
            "UPDATE steps SET status = $1,
                 started_at = COALESCE(started_at, $2),
                 ended_at = CASE WHEN $1 IN ('running', 'pending') THEN NULL ELSE $2 END,
                 elapsed_ms = COALESCE($3, elapsed_ms),
                 positions = COALESCE($4, positions),
                 detail = COALESCE($5, detail)
             WHERE run_id = $6 AND phase_index = $7 AND step_index = $8",
        )
        .bind(status.as_str())
        .bind(&now)
        .bind(elapsed_ms.map(|ms| ms as i64))
        .bind(positions.as_deref())
        .bind(detail.as_deref())
        .bind(run_id)
        .bind(phase_index as i64)
        .bind(step_index as i64)
        .execute(&mut *tx)
        .await
        .map(|_| ()))
    }

    /// Append to the run's journal.
    pub async fn record(&self, run_id: &str, event: Event<'_>) -> Result<i64, StoreError> {
        let positions = event.positions.map(serde_json::Value::to_string);
        fenced!(self, |tx| sqlx::query_scalar::<_, i64>(
            "INSERT INTO events (run_id, at, phase, step, kind, cluster, positions, message)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(run_id)
        .bind(whoami::now())
        .bind(event.phase)
        .bind(event.step)
        .bind(event.kind.as_str())
        .bind(event.cluster)
        .bind(positions.as_deref())
        .bind(event.message)
        .fetch_one(&mut *tx)
        .await)
    }

    /// An event whose loss must not stop what is under way (a rollback, a
    /// resume): a failure to write it is logged as a warning, not returned.
    pub async fn record_best_effort(&self, run_id: &str, event: Event<'_>) {
        let what = event.message.unwrap_or(event.kind.as_str()).to_string();
        best_effort(self.record(run_id, event).await, &what);
    }

    /// Mark an earlier phase of the plan as carried from the run that completed it.
    pub async fn set_phase_completed_in(
        &self,
        run_id: &str,
        phase_index: usize,
        completed_in: &str,
    ) -> Result<(), StoreError> {
        fenced!(self, |tx| {
            sqlx::query(
            "UPDATE phases SET status = $1, completed_in = $2 WHERE run_id = $3 AND phase_index = $4",
        )
        .bind(StepStatus::Skipped.as_str())
        .bind(completed_in)
        .bind(run_id)
        .bind(i64::try_from(phase_index).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map(|_| ())
        })
    }

    /// For each phase of this plan version (by index): the run that completed
    /// it last, unless a rollback undid it since. Dry runs do not count.
    pub async fn completed_phases(
        &self,
        plan_name: &str,
        plan_sha256: &str,
    ) -> Result<std::collections::BTreeMap<usize, String>, StoreError> {
        let rows: Vec<(i64, String, String)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT p.phase_index, p.status, r.run_id FROM phases p JOIN runs r ON r.run_id = p.run_id
             WHERE r.plan_name = $1 AND r.plan_sha256 = $2 AND NOT r.dry_run
               AND p.status IN ('completed', 'rolled_back')
             ORDER BY r.started_at DESC, r.run_id DESC",
        )
        .bind(plan_name)
        .bind(plan_sha256)
        .fetch_all(pool)
        .await)
        .map_err(|e| self.database_error(e))?;
        let mut newest: std::collections::BTreeMap<usize, (String, String)> = Default::default();
        for (index, status, run_id) in rows {
            let index = usize::try_from(index).unwrap_or(usize::MAX);
            newest.entry(index).or_insert((status, run_id));
        }
        Ok(newest
            .into_iter()
            .filter(|(_, (status, _))| status == "completed")
            .map(|(index, (_, run_id))| (index, run_id))
            .collect())
    }

    pub async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let updated = fenced!(self, |tx| {
            sqlx::query(
            "UPDATE runs SET status = $1, ended_at = $2, detail = COALESCE($3, detail) WHERE run_id = $4",
        )
        .bind(status.as_str())
        .bind(whoami::now())
        .bind(detail)
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map(|done| done.rows_affected())
        })?;
        if updated == 0 {
            return Err(StoreError::UnknownRun(run_id.to_string()));
        }
        Ok(())
    }

    /// This process takes over a run (for `resume` and `rollback`).
    pub async fn adopt_run(&self, run_id: &str) -> Result<(), StoreError> {
        fenced!(self, |tx| {
            sqlx::query(
            "UPDATE runs SET status = 'running', ended_at = NULL, host = $1, pid = $2 WHERE run_id = $3",
        )
        .bind(whoami::hostname())
        .bind(i64::from(std::process::id()))
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map(|_| ())
        })
    }

    pub async fn mark_point_of_no_return(&self, run_id: &str) -> Result<(), StoreError> {
        fenced!(self, |tx| sqlx::query(
            "UPDATE runs SET point_of_no_return = TRUE WHERE run_id = $1"
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map(|_| ()))
    }

    /// One run with its phases and steps.
    pub async fn run(&self, run_id: &str) -> Result<RunRecord, StoreError> {
        let clock = self.clock_sql();
        let stored = on_pool!(self, |pool| async {
            let Some(row) = sqlx::query(
                "SELECT run_id, plan_name, plan_path, plan_sha256, status, dry_run, actor, started_at,
                        ended_at, point_of_no_return, detail, host, pid
                 FROM runs WHERE run_id = $1",
            )
            .bind(run_id)
            .fetch_optional(pool)
            .await?
            else {
                return Ok(None);
            };
            let host: String = row.try_get("host")?;
            let pid: i64 = row.try_get("pid")?;
            let status: String = row.try_get("status")?;
            // A run of another host is running only while it holds its lease.
            let lease_left: Option<Option<i64>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT expires_at_ms - {clock} FROM plan_locks WHERE run_id = $1"
            )))
            .bind(run_id)
            .fetch_optional(pool)
            .await?;
            let lease_lapsed = match lease_left {
                None => true,
                Some(left) => left.is_some_and(|left| left <= 0),
            };
            let run = RunRecord {
                run_id: row.try_get("run_id")?,
                plan: row.try_get("plan_name")?,
                plan_path: row.try_get("plan_path")?,
                plan_sha256: row.try_get("plan_sha256")?,
                status: match RunStatus::parse(&status) {
                    // A run whose process is gone was interrupted, whatever it last wrote.
                    Some(RunStatus::Running)
                        if (host == whoami::hostname()
                            && !whoami::process_alive(u32::try_from(pid).unwrap_or(0), None))
                            || (host != whoami::hostname() && lease_lapsed) =>
                    {
                        RunStatus::Interrupted
                    }
                    Some(status) => status,
                    None => RunStatus::Failed,
                },
                dry_run: row.try_get("dry_run")?,
                actor: row.try_get("actor")?,
                started_at: row.try_get("started_at")?,
                ended_at: row.try_get("ended_at")?,
                point_of_no_return: row.try_get("point_of_no_return")?,
                detail: row.try_get("detail")?,
                phases: Vec::new(),
            };
            let phases: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(
                "SELECT phase_index, name, status, completed_in FROM phases WHERE run_id = $1 ORDER BY phase_index",
            )
            .bind(run_id)
            .fetch_all(pool)
            .await?;
            let mut steps = Vec::new();
            for row in sqlx::query(
                "SELECT phase_index, name, kind, status, elapsed_ms, started_at, ended_at, positions, detail
                 FROM steps WHERE run_id = $1 ORDER BY phase_index, step_index",
            )
            .bind(run_id)
            .fetch_all(pool)
            .await?
            {
                let status: String = row.try_get("status")?;
                let positions: Option<String> = row.try_get("positions")?;
                steps.push((
                    row.try_get::<i64, _>("phase_index")?,
                    StepRecord {
                        name: row.try_get("name")?,
                        kind: row.try_get("kind")?,
                        status: StepStatus::parse(&status).unwrap_or(StepStatus::Failed),
                        elapsed_ms: row.try_get("elapsed_ms")?,
                        started_at: row.try_get("started_at")?,
                        ended_at: row.try_get("ended_at")?,
                        positions: positions.and_then(|text| serde_json::from_str(&text).ok()),
                        detail: row.try_get("detail")?,
                    },
                ));
            }
            Ok::<_, sqlx::Error>(Some((run, phases, steps)))
        }
        .await)
        .map_err(|e| self.database_error(e))?;
        let Some((mut run, phases, steps)) = stored else {
            return Err(StoreError::UnknownRun(run_id.to_string()));
        };
        for (phase_index, name, status, completed_in) in phases {
            run.phases.push(PhaseRecord {
                name,
                status: StepStatus::parse(&status).unwrap_or(StepStatus::Failed),
                completed_in,
                steps: steps
                    .iter()
                    .filter(|(index, _)| *index == phase_index)
                    .map(|(_, step)| step.clone())
                    .collect(),
            });
        }
        Ok(run)
    }

    /// The most recent runs first.
    pub async fn runs(&self, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let ids: Vec<String> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT run_id FROM runs ORDER BY started_at DESC, run_id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)
        .map_err(|e| self.database_error(e))?;
        let mut runs = Vec::with_capacity(ids.len());
        for id in ids {
            runs.push(self.run(&id).await?);
        }
        Ok(runs)
    }

    /// The last drill stage a run journaled (`drill.promotion` → `promotion`).
    pub async fn last_drill_stage(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let step: Option<Option<String>> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT step FROM events WHERE run_id = $1 AND step LIKE 'drill.%' ORDER BY id DESC LIMIT 1",
        )
        .bind(run_id)
        .fetch_optional(pool)
        .await)
        .map_err(|e| self.database_error(e))?;
        Ok(step
            .flatten()
            .map(|s| s.trim_start_matches("drill.").to_string()))
    }

    /// The journal of one run, oldest first, as JSON objects.
    pub async fn events(&self, run_id: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        self.events_after(run_id, 0).await
    }

    /// The journal of one run past event `after` (its `id`), oldest first.
    pub async fn events_after(
        &self,
        run_id: &str,
        after: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        type Row = (
            i64,
            String,
            Option<String>,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, at, phase, step, kind, cluster, positions, message
             FROM events WHERE run_id = $1 AND id > $2 ORDER BY id",
        )
        .bind(run_id)
        .bind(after)
        .fetch_all(pool)
        .await)
        .map_err(|e| self.database_error(e))?;
        Ok(rows
            .into_iter()
            .map(|(id, at, phase, step, kind, cluster, positions, message)| {
                serde_json::json!({
                    "id": id,
                    "at": at,
                    "phase": phase,
                    "step": step,
                    "kind": kind,
                    "cluster": cluster,
                    "positions": positions
                        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok()),
                    "message": message,
                })
            })
            .collect())
    }
}
