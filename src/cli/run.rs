//! `cutover run`: live prechecks, then a plan's phases in order, each step journaled.

use std::path::PathBuf;

use clap::Args;

use super::{Cli, print_json};
use crate::engine::{self, RunOptions, RunReport};
use crate::error::Result;
use crate::outcome::{ExitCode, Outcome, help_section};
use crate::plan;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct RunArgs {
    pub plan: PathBuf,
    /// Connect read-only, run every precheck and print the exact operations; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run only this phase.
    #[arg(long, value_name = "NAME", conflicts_with = "from_phase")]
    pub phase: Option<String>,
    /// Run this phase and every later one; the earlier phases must have
    /// completed in earlier runs of the same plan file (refused, exit 3, naming them).
    #[arg(long, value_name = "NAME")]
    pub from_phase: Option<String>,
}

/// `--help` text after the options: examples, then the exit codes from the one table.
pub fn help() -> String {
    format!(
        "{}{}",
        "Examples:
  cutover run plans/lab-switchover.yaml --dry-run
  cutover run plans/lab-switchover.yaml --yes
  cutover run plans/lab-switchover.yaml --phase cutover --output json
  cutover run plans/lab-migration.yaml --from-phase verify --yes

Prechecks whose state an earlier phase of the run makes true (targets replicating
after `replicate`, another primary after a switchover) run at the start of the
phase that needs them; the dry run lists them as deferred.

",
        help_section(&[
            (
                ExitCode::Success,
                "completed (or the dry run found nothing wrong)"
            ),
            (
                ExitCode::StepFailed,
                "a step failed and the state is not what the plan started from
     (the report says what it left and the next command)"
            ),
            (ExitCode::InvalidInput, "invalid plan or arguments"),
            (
                ExitCode::Refused,
                "a precheck or gate refused (before the run, or at a phase's start:
     earlier phases stay completed), or a `rollback: auto` phase failed and was
     undone cleanly, or the plan is locked by another run, or --from-phase found
     an earlier phase not completed"
            ),
            (
                ExitCode::DataMismatch,
                "a checksum step found a data mismatch"
            ),
        ])
    )
}

pub async fn run(cli: &Cli, args: &RunArgs) -> Result<Outcome> {
    let plan = plan::load(&args.plan)?;
    let store = Store::open_at(&cli.global.state_location()).await?;
    let options = RunOptions {
        dry_run: args.dry_run,
        phase: args.phase.clone(),
        from_phase: args.from_phase.clone(),
        yes: cli.global.yes,
    };
    let report = engine::run(plan, store.clone(), options).await;
    store.close().await;
    let report = report?;
    print_report(cli, &report);
    Ok(report.outcome())
}

pub(super) fn print_report(cli: &Cli, report: &RunReport) {
    if cli.global.json() {
        print_json(&serde_json::to_value(report).expect("report serialises"));
    } else {
        print!("{}", report.render());
    }
}
