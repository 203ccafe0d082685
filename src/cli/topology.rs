//! `cutover topology`: every enabled cluster as it is now.

use std::path::PathBuf;

use clap::Args;

use super::{Cli, print_json, render};
use crate::error::Result;
use crate::outcome::{ExitCode, Outcome, help_section};
use crate::plan;

#[derive(Debug, Args)]
pub struct TopologyArgs {
    pub plan: PathBuf,
}

/// `--help` text after the options: examples, then the exit codes from the one table.
pub fn help() -> String {
    format!(
        "{}{}",
        "Examples:
  cutover topology plans/lab-switchover.yaml
  cutover topology plans/lab-switchover.yaml --output json

",
        help_section(&[
            (
                ExitCode::Success,
                "every cluster reached and none has errant transactions"
            ),
            (
                ExitCode::StepFailed,
                "a cluster is unreachable (the others are still reported)"
            ),
            (ExitCode::InvalidInput, "invalid plan or missing secret"),
            (
                ExitCode::DataMismatch,
                "a replica has errant transactions (it wins over 1)"
            ),
        ])
    )
}

pub async fn topology(cli: &Cli, args: &TopologyArgs) -> Result<Outcome> {
    let path = &args.plan;
    let plan = plan::load(path)?;
    let topology = crate::topology::discover(&plan).await?;
    if cli.global.json() {
        print_json(&serde_json::to_value(&topology).expect("topology serialises"));
    } else {
        print!("{}", render::topology(&topology));
    }
    Ok(topology.outcome())
}
