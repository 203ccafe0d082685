//! Drill schedules: kept in the state store (tokio-cron-scheduler's own stores
//! cannot restore job code), run by `cutover drill daemon` one drill at a time.
//! A due time that finds another drill running, an invalid plan, or the daemon
//! not running is recorded as a missed run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use serde::Serialize;
use tokio_cron_scheduler::{Job, JobScheduler};

use super::{DrillError, DrillOptions};
use crate::store::{DrillSchedule, Store};

/// At most this many missed due times are recorded for one downtime.
const MAX_MISSES_RECORDED: usize = 100;
/// How long a shutdown waits for the running drill to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15 * 60);

fn parser() -> croner::parser::CronParser {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
}

/// A cron expression with seconds: five fields (minute first) get `0`
/// seconds; six or seven fields are taken as they are.
pub fn normalise_cron(expression: &str) -> Result<String, DrillError> {
    let fields = expression.split_whitespace().count();
    let normalised = match fields {
        5 => format!("0 {}", expression.trim()),
        6 | 7 => expression.split_whitespace().collect::<Vec<_>>().join(" "),
        _ => {
            return Err(DrillError::Invalid(format!(
                "cron expression `{expression}` has {fields} field(s): give 5 (minute hour day month weekday), \
                 or 6 with seconds first, e.g. `0 0 2 * * Sat`"
            )));
        }
    };
    parser()
        .parse(&normalised)
        .map_err(|error| DrillError::Invalid(format!("cron expression `{expression}`: {error}")))?;
    Ok(normalised)
}

pub fn parse_zone(zone: &str) -> Result<chrono_tz::Tz, DrillError> {
    zone.parse::<chrono_tz::Tz>().map_err(|_| {
        DrillError::Invalid(format!(
            "time zone `{zone}` is not an IANA zone name (e.g. UTC, Asia/Kolkata, Europe/London)"
        ))
    })
}

/// Due times of `cron` in `zone` after `since` and up to `now` (at most `limit`).
pub fn due_between(
    cron: &str,
    zone: chrono_tz::Tz,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<DateTime<Utc>> {
    let Ok(schedule) = parser().parse(cron) else {
        return Vec::new();
    };
    let mut due = Vec::new();
    // Due times fall on whole seconds.
    let since = since.with_nanosecond(0).unwrap_or(since);
    let mut cursor = since.with_timezone(&zone);
    while due.len() < limit {
        match schedule.find_next_occurrence(&cursor, false) {
            Ok(next) if next.with_timezone(&Utc) <= now => {
                due.push(next.with_timezone(&Utc));
                cursor = next;
            }
            _ => break,
        }
    }
    due
}

/// Store the schedule of one plan file (replacing an earlier one).
pub async fn save(
    store: &Store,
    plan_path: &Path,
    plan_name: &str,
    cron: &str,
    zone: &str,
) -> Result<DrillSchedule, DrillError> {
    let cron = normalise_cron(cron)?;
    parse_zone(zone)?;
    let path = std::fs::canonicalize(plan_path)
        .unwrap_or_else(|_| plan_path.to_path_buf())
        .display()
        .to_string();
    store
        .save_drill_schedule(&path, plan_name, &cron, zone)
        .await?;
    Ok(store
        .drill_schedules()
        .await?
        .into_iter()
        .find(|s| s.plan_path == path)
        .expect("just saved"))
}

/// What a daemon did before it stopped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DaemonSummary {
    pub schedules: usize,
    pub drills_run: u64,
    pub drills_passed: u64,
    pub missed: u64,
    /// Drills found interrupted (their orchestrator died) and finished first.
    pub drills_resumed: u64,
}

struct Daemon {
    store: Store,
    /// This daemon in the store's claims: host identity and pid.
    holder: String,
    schedules: Vec<DrillSchedule>,
    report_dir: PathBuf,
    /// Held while a drill runs: never two at once.
    running: tokio::sync::Mutex<()>,
    summary: std::sync::Mutex<DaemonSummary>,
}

impl Daemon {
    async fn missed(&self, plan_path: &str, due: DateTime<Utc>, reason: &str) {
        tracing::warn!("drill of {plan_path} due at {due} missed: {reason}");
        self.summary.lock().expect("not poisoned").missed += 1;
        if let Err(error) = self
            .store
            .record_drill_miss(plan_path, &due.to_rfc3339(), reason)
            .await
        {
            tracing::error!("cannot record the missed drill: {error}");
        }
    }

    /// Before anything else: finish the scheduled drills whose orchestrator
    /// died (an OOM kill, a reboot), so no drill is left as an outage.
    /// Take `due` of `plan_path` for this daemon; false when another daemon
    /// on the same store has it (or the store cannot be asked).
    async fn claim(&self, plan_path: &str, due: &str) -> bool {
        match self
            .store
            .claim_drill_due(plan_path, due, &self.holder)
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                tracing::debug!("{plan_path} at {due}: another daemon has it");
                false
            }
            Err(error) => {
                tracing::error!("cannot claim the drill of {plan_path} due at {due}: {error}");
                false
            }
        }
    }

    async fn resume_interrupted(&self, schedules: &[crate::store::DrillSchedule]) {
        let runs = match self.store.runs(200).await {
            Ok(runs) => runs,
            Err(error) => {
                tracing::error!("cannot look for interrupted drills: {error}");
                return;
            }
        };
        for run in runs {
            if run.status != crate::store::RunStatus::Interrupted
                || !schedules.iter().any(|s| s.plan_path == run.plan_path)
                || !matches!(self.store.last_drill_stage(&run.run_id).await, Ok(Some(_)))
            {
                continue;
            }
            // Another daemon on the store may be resuming it already.
            if !self
                .claim(&run.plan_path, &format!("resume {}", run.run_id))
                .await
            {
                continue;
            }
            let _running = self.running.lock().await;
            tracing::warn!("drill {} was interrupted: resuming it first", run.run_id);
            let options = DrillOptions {
                failure: None,
                report_dir: self.report_dir.clone(),
            };
            let outcome = match crate::plan::load(Path::new(&run.plan_path)) {
                Ok(plan) => super::resume::resume(plan, self.store.clone(), &run.run_id, &options)
                    .await
                    .map(|report| report.status.to_string())
                    .unwrap_or_else(|error| format!("resume failed: {error}")),
                Err(_) => "the plan no longer validates; resume it by hand".to_string(),
            };
            self.summary.lock().expect("not poisoned").drills_resumed += 1;
            let note = format!("drill {} was interrupted; resumed: {outcome}", run.run_id);
            tracing::info!("{note}");
            if let Err(error) = self
                .store
                .record_drill_miss(&run.plan_path, &run.started_at, &note)
                .await
            {
                tracing::error!("cannot record the resumed drill: {error}");
            }
        }
    }

    /// A schedule fired.
    async fn fire(&self, plan_path: &str) {
        // A drill another daemon left interrupted (it died) is finished first.
        self.resume_interrupted(&self.schedules).await;
        let Some(schedule) = self.schedules.iter().find(|s| s.plan_path == plan_path) else {
            return;
        };
        let now = Utc::now();
        let due = parse_zone(&schedule.timezone)
            .ok()
            .and_then(|zone| {
                due_between(
                    &schedule.cron,
                    zone,
                    now - chrono::Duration::hours(1),
                    now,
                    4000,
                )
                .pop()
            })
            .unwrap_or_else(|| now.with_nanosecond(0).unwrap_or(now));
        // Every daemon on the store fires; the one that claims the due time runs it.
        if !self.claim(plan_path, &due.to_rfc3339()).await {
            return;
        }
        crate::store::best_effort(
            self.store.set_drill_due(plan_path, &due.to_rfc3339()).await,
            "the drill's next due time",
        );
        let Ok(_running) = self.running.try_lock() else {
            self.missed(plan_path, due, "another drill was still running")
                .await;
            return;
        };
        let plan = match crate::plan::load(Path::new(plan_path)) {
            Ok(plan) => plan,
            Err(errors) => {
                let reason = match errors.errors.first() {
                    Some(first) => format!(
                        "the plan is invalid ({} error(s)); line {}: {}",
                        errors.errors.len(),
                        first.line,
                        first.message
                    ),
                    None => "the plan is invalid".to_string(),
                };
                self.missed(plan_path, due, &reason).await;
                return;
            }
        };
        tracing::info!("drill of `{}` due at {due}: starting", plan.name);
        let options = DrillOptions {
            failure: None,
            report_dir: self.report_dir.clone(),
        };
        match super::run(plan, self.store.clone(), &options).await {
            Ok(report) => {
                tracing::info!(
                    "drill {} {}: RTO {} ms, {} write(s) lost; reports in {}",
                    report.drill_id,
                    report.status,
                    report.rto.measured_ms.map_or("-".into(), |v| v.to_string()),
                    report.rpo.lost_writes,
                    report.reports.first().map_or("-", String::as_str)
                );
                let mut summary = self.summary.lock().expect("not poisoned");
                summary.drills_run += 1;
                if report.status == "passed" {
                    summary.drills_passed += 1;
                }
            }
            Err(error) => {
                let reason = format!("the drill did not start: {error}");
                self.missed(plan_path, due, &reason).await;
            }
        }
    }
}

/// Run every stored schedule until SIGTERM or SIGINT, then let a running
/// drill finish and return what was done.
pub async fn daemon(store: Store, report_dir: PathBuf) -> Result<DaemonSummary, DrillError> {
    // From the first instant: a stop while interrupted drills are resumed waits for them.
    let stop = crate::shutdown::install();
    let schedules = store.drill_schedules().await?;
    if schedules.is_empty() {
        return Err(DrillError::Invalid(
            "no drill is scheduled: `cutover drill schedule PLAN --cron EXPR` first".into(),
        ));
    }
    let daemon = Arc::new(Daemon {
        store: store.clone(),
        holder: format!("{} pid {}", crate::whoami::hostname(), std::process::id()),
        schedules: schedules.clone(),
        report_dir,
        running: tokio::sync::Mutex::new(()),
        summary: std::sync::Mutex::new(DaemonSummary {
            schedules: schedules.len(),
            ..DaemonSummary::default()
        }),
    });
    daemon.resume_interrupted(&schedules).await;
    let scheduler = JobScheduler::new()
        .await
        .map_err(|e| DrillError::Invalid(format!("the scheduler cannot start: {e}")))?;
    let now = Utc::now();
    for schedule in &schedules {
        let zone = parse_zone(&schedule.timezone)?;
        // Due times that passed while no daemon was running.
        let since = schedule
            .last_due_at
            .as_deref()
            .unwrap_or(&schedule.created_at);
        if let Ok(since) = DateTime::parse_from_rfc3339(since) {
            for due in due_between(
                &schedule.cron,
                zone,
                since.with_timezone(&Utc),
                now,
                MAX_MISSES_RECORDED,
            ) {
                // Recorded once, by whichever daemon claims it.
                if daemon.claim(&schedule.plan_path, &due.to_rfc3339()).await {
                    daemon
                        .missed(&schedule.plan_path, due, "the daemon was not running")
                        .await;
                }
            }
        }
        store
            .set_drill_due(&schedule.plan_path, &now.to_rfc3339())
            .await?;
        let path = schedule.plan_path.clone();
        let shared = daemon.clone();
        let job = Job::new_async_tz(schedule.cron.as_str(), zone, move |_, _| {
            let shared = shared.clone();
            let path = path.clone();
            Box::pin(async move { shared.fire(&path).await })
        })
        .map_err(|e| DrillError::Invalid(format!("schedule `{}`: {e}", schedule.cron)))?;
        scheduler
            .add(job)
            .await
            .map_err(|e| DrillError::Invalid(format!("schedule `{}`: {e}", schedule.cron)))?;
        tracing::info!(
            "scheduled `{}` ({}): `{}` in {}",
            schedule.plan,
            schedule.plan_path,
            schedule.cron,
            schedule.timezone
        );
    }
    scheduler
        .start()
        .await
        .map_err(|e| DrillError::Invalid(format!("the scheduler cannot start: {e}")))?;
    stop.await;
    tracing::info!("stopping: no new drill starts; waiting for a running one to finish");
    let mut scheduler = scheduler;
    let _ = scheduler.shutdown().await;
    if tokio::time::timeout(SHUTDOWN_GRACE, daemon.running.lock())
        .await
        .is_err()
    {
        tracing::error!(
            "a drill still runs after {} s; stopping anyway (see `cutover status`)",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    let summary = daemon.summary.lock().expect("not poisoned").clone();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_field_expressions_get_seconds_and_bad_ones_are_named() {
        assert_eq!(normalise_cron("0 2 * * Sat").unwrap(), "0 0 2 * * Sat");
        assert_eq!(normalise_cron("*/10 * * * * *").unwrap(), "*/10 * * * * *");
        let error = normalise_cron("0 2 * *").unwrap_err().to_string();
        assert!(error.contains("4 field(s)"), "{error}");
        assert!(normalise_cron("0 99 * * *").is_err());
        assert!(parse_zone("Asia/Kolkata").is_ok());
        assert!(
            parse_zone("Mars/Olympus")
                .unwrap_err()
                .to_string()
                .contains("IANA")
        );
    }

    #[test]
    fn saturdays_at_two_in_kolkata_missed_over_a_fortnight() {
        let zone = parse_zone("Asia/Kolkata").unwrap();
        let since = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let now = DateTime::parse_from_rfc3339("2026-11-15T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let due = due_between("0 0 2 * * Sat", zone, since, now, 10);
        let text: Vec<String> = due.iter().map(|d| d.to_rfc3339()).collect();
        // 02:00 IST is 20:30 UTC the evening before.
        assert_eq!(
            text,
            ["2026-11-06T20:30:00+00:00", "2026-11-13T20:30:00+00:00"]
        );
        assert_eq!(due_between("0 0 2 * * Sat", zone, since, now, 1).len(), 1);
    }
}
