//! `cutover resume`: continue an interrupted run from its journal.

use std::path::PathBuf;

use clap::Args;

use super::{Cli, confirm, drill, plan_of_run, run::print_report};
use crate::engine;
use crate::error::Result;
use crate::outcome::{ExitCode, Outcome, help_section};
use crate::store::{RunStatus, Store};

#[derive(Debug, Args)]
pub struct ResumeArgs {
    pub run_id: String,
    /// The plan file, when it moved since the run (it must be unchanged).
    #[arg(long)]
    pub plan: Option<PathBuf>,
}

/// `--help` text after the options: examples, then the exit codes from the one table.
pub fn help() -> String {
    format!(
        "{}{}",
        "Example:
  cutover resume 20261121-101500-a1b2c3 --yes

",
        help_section(&[
            (ExitCode::Success, "the run finished"),
            (ExitCode::StepFailed, "a step failed again"),
            (ExitCode::InvalidInput, "unknown run or changed plan file"),
            (
                ExitCode::Refused,
                "it was rolled back (it had not passed the point of no return)"
            ),
            (
                ExitCode::DataMismatch,
                "a checksum step found a data mismatch"
            ),
        ])
    )
}

pub async fn resume(cli: &Cli, args: &ResumeArgs) -> Result<Outcome> {
    let run_id = args.run_id.as_str();
    let path = args.plan.as_deref();
    let store = Store::open_at(&cli.global.state_location()).await?;
    // A drill's run is finished by the drill's own resume.
    let record = store.run(run_id).await?;
    if matches!(record.status, RunStatus::Interrupted | RunStatus::Running)
        && store.last_drill_stage(run_id).await?.is_some()
    {
        store.close().await;
        return drill::resume(cli, run_id, path, None).await;
    }
    let plan = plan_of_run(&store, run_id, path).await?;
    confirm(
        cli,
        &format!("Resume run {run_id} of plan `{}`?", plan.name),
    )?;
    let report = engine::resume(plan, store.clone(), run_id, cli.global.yes).await;
    store.close().await;
    let report = report?;
    print_report(cli, &report);
    Ok(report.outcome())
}
