//! `cutover drill`: disaster-recovery drills, their schedules and history.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{Cli, confirm, plan_of_run, print_json};
use crate::error::{Error, Result};
use crate::outcome::{ExitCode, Outcome, help_section};
use crate::plan;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Fail the plan's drill primary on purpose (planned switchover, crash or
    /// isolation), fail over, measure RTO and RPO with the write probe, verify
    /// with checksums, fail back, and write markdown, JSON and HTML reports.
    #[command(after_help = run_help())]
    Run {
        plan: PathBuf,
        /// Override the plan's `drill.failure`.
        #[arg(long, value_enum)]
        failure: Option<FailureArg>,
        /// Directory for the reports (default: `drills/` in the state directory).
        #[arg(long, value_name = "DIR")]
        report_dir: Option<PathBuf>,
    },
    /// Finish a drill whose orchestrator died: from its journal and the live
    /// servers, complete the failover (or make it, if the primary is down and
    /// nobody took over), bring DNS and every replica onto the one writable
    /// cluster, then verify and fail back as the plan asks; the report says
    /// where it was interrupted.
    #[command(after_help = resume_help())]
    Resume {
        drill_id: String,
        /// The plan file, when it moved since the drill (it must be unchanged).
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Directory for the reports (default: `drills/` in the state directory).
        #[arg(long, value_name = "DIR")]
        report_dir: Option<PathBuf>,
    },
    /// Store a schedule for a plan's drill (replacing its earlier one), list
    /// the schedules, or remove one. `drill daemon` runs them.
    #[command(
        after_help = "Examples:\n  cutover drill schedule plans/lab-dr-drill.yaml --cron '0 2 * * Sat' --tz Asia/Kolkata\n  cutover drill schedule plans/lab-dr-drill.yaml --cron '*/10 * * * * *'\n  cutover drill schedule --list\n  cutover drill schedule plans/lab-dr-drill.yaml --remove\n\n\
Five fields are minute hour day month weekday; six put seconds first."
    )]
    Schedule {
        #[arg(required_unless_present = "list")]
        plan: Option<PathBuf>,
        #[arg(long, required_unless_present_any = ["list", "remove"])]
        cron: Option<String>,
        /// IANA time zone the expression is read in.
        #[arg(long, default_value = "UTC")]
        tz: String,
        #[arg(long, conflicts_with_all = ["cron", "remove"])]
        list: bool,
        #[arg(long, conflicts_with = "cron")]
        remove: bool,
    },
    /// Run the stored schedules until SIGTERM: one drill at a time, missed runs
    /// recorded (another drill still running, the daemon down, a broken plan).
    #[command(after_help = daemon_help())]
    Daemon {
        /// Directory for the reports (default: `drills/` in the state directory).
        #[arg(long, value_name = "DIR")]
        report_dir: Option<PathBuf>,
    },
    /// Past drills with RTO and RPO against their targets, and the RTO trend.
    #[command(
        after_help = "Examples:\n  cutover drill history\n  cutover drill history --plan lab-dr-drill --output json"
    )]
    History {
        /// Only drills of this plan (its `name`).
        #[arg(long)]
        plan: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

const DRILL_CODES: [(ExitCode, &str); 5] = [
    (
        ExitCode::Success,
        "every target met and every checksum matched",
    ),
    (
        ExitCode::StepFailed,
        "a target was missed or a stage failed (the report says which)",
    ),
    (ExitCode::InvalidInput, "invalid plan or arguments"),
    (
        ExitCode::Refused,
        "a precheck refused (nothing was injected)",
    ),
    (ExitCode::DataMismatch, "a checksum found data that differs"),
];

fn run_help() -> String {
    format!(
        "Examples:\n  cutover drill run plans/lab-dr-drill.yaml --yes\n  \
         cutover drill run plans/lab-dr-drill.yaml --failure planned --yes --output json\n\n{}",
        help_section(&DRILL_CODES)
    )
}

fn resume_help() -> String {
    let mut codes = DRILL_CODES;
    codes[2].1 = "an unknown drill, a changed plan file, or a drill that is not interrupted";
    format!(
        "Example:\n  cutover drill resume 20261130-221500-a1b2c3 --yes\n\n{}",
        help_section(&codes)
    )
}

fn daemon_help() -> String {
    format!(
        "Example:\n  cutover drill daemon --yes &\n\n{}",
        help_section(&[
            (ExitCode::Success, "stopped by SIGTERM or SIGINT"),
            (
                ExitCode::InvalidInput,
                "nothing scheduled or a schedule is invalid",
            ),
        ])
    )
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FailureArg {
    Planned,
    Crash,
    Isolate,
}

impl From<FailureArg> for crate::plan::DrillFailure {
    fn from(value: FailureArg) -> Self {
        match value {
            FailureArg::Planned => crate::plan::DrillFailure::Planned,
            FailureArg::Crash => crate::plan::DrillFailure::Crash,
            FailureArg::Isolate => crate::plan::DrillFailure::Isolate,
        }
    }
}

pub async fn drill(cli: &Cli, command: &DrillCommand) -> Result<Outcome> {
    match command {
        DrillCommand::Run {
            plan,
            failure,
            report_dir,
        } => {
            let plan = plan::load(plan)?;
            let Some(drill) = &plan.drill else {
                return Err(crate::drill::DrillError::NoDrill(plan.name.clone()).into());
            };
            let failure = failure.map(crate::plan::DrillFailure::from);
            confirm(
                cli,
                &format!(
                    "Run a {} drill that fails `{}` for real?",
                    serde_json::to_value(failure.unwrap_or(drill.failure))
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    drill.primary
                ),
            )?;
            let store = Store::open_at(&cli.global.state_location()).await?;
            let options = crate::drill::DrillOptions {
                failure,
                report_dir: report_dir
                    .clone()
                    .unwrap_or_else(|| cli.global.state_dir().join("drills")),
            };
            let report = crate::drill::run(plan, store, &options).await?;
            Ok(print_drill_report(cli, &report))
        }
        DrillCommand::Resume {
            drill_id,
            plan,
            report_dir,
        } => resume(cli, drill_id, plan.as_deref(), report_dir.clone()).await,
        DrillCommand::Schedule {
            plan,
            cron,
            tz,
            list,
            remove,
        } => {
            let store = Store::open_at(&cli.global.state_location()).await?;
            if *list {
                let schedules = store.drill_schedules().await?;
                let misses = store.drill_misses(20).await?;
                if cli.global.json() {
                    print_json(&serde_json::json!({ "schedules": schedules, "missed": misses }));
                } else {
                    let rows: Vec<Vec<String>> = schedules
                        .iter()
                        .map(|s| {
                            vec![
                                s.plan.clone(),
                                s.cron.clone(),
                                s.timezone.clone(),
                                s.last_due_at.clone().unwrap_or_else(|| "-".into()),
                                s.plan_path.clone(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        crate::text::table(&["PLAN", "CRON", "ZONE", "LAST DUE", "FILE"], &rows)
                    );
                    for miss in misses {
                        println!(
                            "missed: {} at {}: {}",
                            miss.plan_path, miss.due_at, miss.reason
                        );
                    }
                }
                return Ok(Outcome::Success);
            }
            let path = plan.as_ref().expect("clap requires it");
            if *remove {
                let full = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                let removed = store
                    .remove_drill_schedule(&full.display().to_string())
                    .await?;
                if !removed {
                    return Err(Error::Usage(format!("{} has no schedule", path.display())));
                }
                println!("schedule of {} removed", full.display());
                return Ok(Outcome::Success);
            }
            let loaded = plan::load(path)?;
            if loaded.drill.is_none() {
                return Err(crate::drill::DrillError::NoDrill(loaded.name.clone()).into());
            }
            let cron = cron.as_deref().expect("clap requires it");
            let saved = crate::drill::schedule::save(&store, path, &loaded.name, cron, tz).await?;
            if cli.global.json() {
                print_json(&serde_json::to_value(&saved).expect("serialises"));
            } else {
                println!(
                    "`{}` drills on `{}` ({}); `cutover drill daemon` runs them",
                    saved.plan, saved.cron, saved.timezone
                );
            }
            Ok(Outcome::Success)
        }
        DrillCommand::Daemon { report_dir } => {
            confirm(cli, "Run scheduled drills that fail servers for real?")?;
            let store = Store::open_at(&cli.global.state_location()).await?;
            let report_dir = report_dir
                .clone()
                .unwrap_or_else(|| cli.global.state_dir().join("drills"));
            let summary = crate::drill::schedule::daemon(store, report_dir).await?;
            if cli.global.json() {
                print_json(&serde_json::to_value(&summary).expect("serialises"));
            } else {
                println!(
                    "daemon stopped: {} drill(s) run ({} passed), {} missed",
                    summary.drills_run, summary.drills_passed, summary.missed
                );
            }
            Ok(Outcome::Success)
        }
        DrillCommand::History { plan, limit } => {
            let store = Store::open_at(&cli.global.state_location()).await?;
            let records = store.drills(plan.as_deref(), *limit).await?;
            let trend = crate::drill::history::trend(&records);
            if cli.global.json() {
                print_json(&serde_json::json!({ "drills": records, "trend": trend }));
            } else if records.is_empty() {
                println!("no drills recorded in {}", store.path().display());
            } else {
                let against = |measured: Option<i64>, target: Option<i64>| match (measured, target)
                {
                    (Some(m), Some(t)) => {
                        format!("{m} / {t} ms {}", if m <= t { "met" } else { "MISSED" })
                    }
                    (Some(m), None) => format!("{m} ms"),
                    (None, _) => "-".into(),
                };
                let rows: Vec<Vec<String>> = records
                    .iter()
                    .map(|r| {
                        vec![
                            r.started_at.clone(),
                            r.drill_id.clone(),
                            r.plan.clone(),
                            r.failure.clone(),
                            format!("{} → {}", r.primary, r.promoted.as_deref().unwrap_or("-")),
                            against(r.rto_ms, r.rto_target_ms),
                            format!(
                                "{} lost; {}",
                                r.lost_writes,
                                against(Some(r.rpo_ms), r.rpo_target_ms)
                            ),
                            r.status.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    crate::text::table(
                        &[
                            "STARTED", "DRILL", "PLAN", "FAILURE", "FAILOVER", "RTO", "RPO",
                            "STATUS"
                        ],
                        &rows
                    )
                );
                println!(
                    "RTO trend: {} (latest {}, mean before {})",
                    trend.direction,
                    trend
                        .latest_rto_ms
                        .map_or("-".into(), |v| format!("{v} ms")),
                    trend
                        .earlier_mean_rto_ms
                        .map_or("-".into(), |v| format!("{v} ms"))
                );
            }
            Ok(Outcome::Success)
        }
    }
}

pub(super) async fn resume(
    cli: &Cli,
    drill_id: &str,
    path: Option<&Path>,
    report_dir: Option<std::path::PathBuf>,
) -> Result<Outcome> {
    let store = Store::open_at(&cli.global.state_location()).await?;
    let plan = plan_of_run(&store, drill_id, path).await?;
    confirm(
        cli,
        &format!("Resume drill {drill_id} of plan `{}`?", plan.name),
    )?;
    let options = crate::drill::DrillOptions {
        failure: None,
        report_dir: report_dir.unwrap_or_else(|| cli.global.state_dir().join("drills")),
    };
    let report = crate::drill::resume::resume(plan, store, drill_id, &options).await?;
    Ok(print_drill_report(cli, &report))
}

/// A drill's report on stdout (JSON, or the markdown and where the files are).
fn print_drill_report(cli: &Cli, report: &crate::drill::DrillReport) -> Outcome {
    if cli.global.json() {
        print_json(&serde_json::to_value(report).expect("a report serialises"));
    } else {
        print!("{}", crate::drill::report::markdown(report));
        println!("\nreports: {}", report.reports.join(", "));
    }
    report.outcome()
}
