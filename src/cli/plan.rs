//! `cutover plan`: validate a plan offline, or print the plan format's JSON Schema.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{Cli, print_json};
use crate::error::Result;
use crate::outcome::{ErrorKind, Outcome};
use crate::plan::{self, ValidatedPlan};

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Validate a plan without touching the network; exit 2 if it is invalid.
    #[command(after_help = "Example:\n  cutover plan check plans/lab-switchover.yaml")]
    Check {
        /// The plan file.
        plan: PathBuf,
    },
    /// Print the JSON Schema of the plan format.
    Schema,
}

pub fn plan(cli: &Cli, command: &PlanCommand) -> Result<Outcome> {
    match command {
        PlanCommand::Check { plan } => plan_check(cli, plan),
        PlanCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&plan::json_schema()).expect("schema serialises")
            );
            Ok(Outcome::Success)
        }
    }
}

fn plan_check(cli: &Cli, path: &Path) -> Result<Outcome> {
    match plan::load(path) {
        Ok(plan) => {
            if cli.global.json() {
                print_json(&serde_json::json!({
                    "valid": true,
                    "errors": [],
                    "plan": plan.name,
                    "phases": plan.phases.iter().map(|phase| serde_json::json!({
                        "name": phase.name,
                        "rollback": phase.rollback,
                        "steps": phase.steps.iter().map(|step| serde_json::json!({
                            "name": step.name,
                            "kind": step.kind.kind_name(),
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                }));
            } else {
                print!("{}", plan_summary(&plan));
            }
            Ok(Outcome::Success)
        }
        Err(errors) => {
            if cli.global.json() {
                print_json(&serde_json::json!({
                    "valid": false,
                    "errors": errors.errors,
                }));
            } else {
                eprint!("{}", errors.render());
            }
            Ok(Outcome::Failure(ErrorKind::InvalidInput))
        }
    }
}

pub(super) fn plan_summary(plan: &ValidatedPlan) -> String {
    let targets: Vec<&str> = plan.enabled_targets().map(|c| c.name.as_str()).collect();
    let disabled: Vec<&str> = plan
        .clusters
        .iter()
        .filter(|c| !c.enabled)
        .map(|c| c.name.as_str())
        .collect();
    let mut out = format!(
        "{}: valid plan `{}`\n  source: {}\n  targets: {}\n",
        plan.path.display(),
        plan.name,
        plan.source().name,
        targets.join(", ")
    );
    if !disabled.is_empty() {
        out.push_str(&format!("  disabled: {}\n", disabled.join(", ")));
    }
    for phase in &plan.phases {
        out.push_str(&format!(
            "  phase {} (rollback: {}):\n",
            phase.name,
            match phase.rollback {
                plan::RollbackMode::Auto => "auto",
                plan::RollbackMode::Manual => "manual",
            }
        ));
        for step in &phase.steps {
            out.push_str(&format!(
                "    - {} ({})\n",
                step.name,
                step.kind.kind_name()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_summary_lists_each_phase_and_its_expanded_steps() {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/plans/lab-migration.yaml"
        ));
        let plan = crate::plan::load(path).expect("the lab migration plan is valid");
        let summary = super::plan_summary(&plan).replace(env!("CARGO_MANIFEST_DIR"), "");
        insta::assert_snapshot!(summary);
    }
}
