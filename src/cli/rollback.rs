//! `cutover rollback`: undo a run's completed phases, latest first.

use std::path::PathBuf;

use clap::Args;

use super::{Cli, confirm, plan_of_run, run::print_report};
use crate::engine;
use crate::error::Result;
use crate::outcome::{ExitCode, Outcome, help_section};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct RollbackArgs {
    pub run_id: String,
    /// Undo this phase and every later one (default: the whole run).
    #[arg(long, value_name = "NAME")]
    pub to_phase: Option<String>,
    #[arg(long)]
    pub plan: Option<PathBuf>,
}

/// `--help` text after the options: examples, then the exit codes from the one table.
pub fn help() -> String {
    format!(
        "{}{}",
        "Examples:
  cutover rollback 20261121-101500-a1b2c3 --yes
  cutover rollback 20261121-101500-a1b2c3 --to-phase cutover --yes

",
        help_section(&[
            (ExitCode::Success, "rolled back"),
            (
                ExitCode::StepFailed,
                "a rollback step failed (the report says what state it left)"
            ),
            (
                ExitCode::InvalidInput,
                "unknown run, phase or changed plan file"
            ),
            (ExitCode::Refused, "the plan is locked by another run"),
        ])
    )
}

pub async fn rollback(cli: &Cli, args: &RollbackArgs) -> Result<Outcome> {
    let run_id = args.run_id.as_str();
    let to_phase = args.to_phase.as_deref();
    let path = args.plan.as_deref();
    let store = Store::open_at(&cli.global.state_location()).await?;
    let plan = plan_of_run(&store, run_id, path).await?;
    confirm(
        cli,
        &format!("Roll back run {run_id} of plan `{}`?", plan.name),
    )?;
    let report = engine::rollback(plan, store.clone(), run_id, to_phase, cli.global.yes).await;
    store.close().await;
    let report = report?;
    print_report(cli, &report);
    Ok(report.rollback_outcome())
}
