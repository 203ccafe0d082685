//! `cutover snapshot` and `cutover restore`: one consistent copy of the
//! source loaded into every target at once.

use std::path::{Path, PathBuf};

use clap::Args;

use super::render::table;
use super::{Cli, print_json};
use crate::error::Result;
use crate::outcome::{ErrorKind, ExitCode, Outcome, help_section};
use crate::plan;

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    pub plan: PathBuf,
    /// Targets to load; default: every enabled target.
    #[arg(long, num_args = 1.., value_name = "CLUSTER")]
    pub targets: Vec<String>,
    /// Reader connections on the source (each with one loader per target).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Drop and reload databases that already hold tables on a target.
    #[arg(long)]
    pub replace: bool,
    /// Load with binary logging off (not for targets with replicas of their own).
    #[arg(long)]
    pub skip_binlog: bool,
    /// Then start each target replicating from the snapshot's position and wait until caught up.
    #[arg(long)]
    pub replicate: bool,
    /// Also write the snapshot to this new directory (gzip chunk files and a
    /// manifest with their sha256), for `cutover restore`.
    #[arg(long, value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// How long --replicate waits for the targets to catch up.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10m")]
    pub replicate_timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot directory (written by `cutover snapshot --directory`).
    #[arg(value_name = "DIRECTORY")]
    pub from: PathBuf,
    #[command(flatten)]
    pub load: SnapshotArgs,
}

const SNAPSHOT_CODES: [(ExitCode, &str); 4] = [
    (
        ExitCode::Success,
        "loaded into every target (and caught up, with --replicate)",
    ),
    (
        ExitCode::StepFailed,
        "a target or the source failed (the others carry on; the report names it)",
    ),
    (ExitCode::InvalidInput, "invalid plan or arguments"),
    (
        ExitCode::Refused,
        "refused before anything changed (a target not empty, the source\n     without binlog or GTIDs, or a damaged snapshot directory)",
    ),
];

/// `--help` text of `snapshot` after the options.
pub fn help() -> String {
    format!(
        "Examples:\n  cutover snapshot plans/lab-migration.yaml --skip-binlog --replicate\n  \
         cutover snapshot plans/lab-migration.yaml --targets c2 --replace --output json\n\n\
         Targets must be empty (no table in the plan's databases) unless --replace is given,\n\
         which drops and reloads those databases. --skip-binlog loads with sql_log_bin = 0:\n\
         faster, and no local GTIDs; do not use it for a target that has replicas of its own\n\
         (they would not receive the rows).\n\n{}",
        help_section(&SNAPSHOT_CODES)
    )
}

/// `--help` text of `restore` after the options.
pub fn restore_help() -> String {
    format!(
        "Examples:\n  cutover restore /var/backups/refunds-snapshot plans/lab-migration.yaml --targets c2 --skip-binlog\n\n\
         Every file's sha256 is checked before anything is loaded; a damaged or missing\n\
         file is named and nothing changes (exit 3).\n\n{}",
        help_section(&SNAPSHOT_CODES)
    )
}

/// `snapshot`, or `restore` when `restore_from` names a snapshot directory.
pub async fn snapshot(
    cli: &Cli,
    args: &SnapshotArgs,
    restore_from: Option<&Path>,
) -> Result<Outcome> {
    let plan = plan::load(&args.plan)?;
    let options = crate::snapshot::SnapshotOptions {
        targets: args.targets.clone(),
        workers: args.workers as usize,
        replace: args.replace,
        skip_binlog: args.skip_binlog,
        directory: args.directory.clone(),
        progress: !cli.global.quiet,
        resume: false,
    };
    let report = match restore_from {
        Some(directory) => crate::snapshot::restore(directory, &plan, &options).await?,
        None => crate::snapshot::run(&plan, &options, None).await?,
    };
    let replication = if args.replicate && !report.targets.is_empty() {
        Some(
            crate::snapshot::replicate(
                &plan,
                &report.targets,
                &report.gtid_position,
                args.replicate_timeout,
                false,
            )
            .await?,
        )
    } else {
        None
    };
    let failed = report.status != "completed"
        || replication
            .as_ref()
            .is_some_and(|starts| starts.iter().any(|s| !s.caught_up));
    if cli.global.json() {
        let mut document = serde_json::to_value(&report).expect("snapshot report serialises");
        document["replication"] = serde_json::to_value(&replication).expect("serialises");
        print_json(&document);
    } else {
        let rows: Vec<Vec<String>> = report
            .tables
            .iter()
            .map(|t| {
                vec![
                    t.table.clone(),
                    t.rows.to_string(),
                    t.bytes.to_string(),
                    t.chunks.to_string(),
                    if t.key.is_empty() {
                        "(none: one stream)".to_string()
                    } else {
                        t.key.join(", ")
                    },
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["TABLE", "ROWS", "BYTES", "CHUNKS", "KEY"], &rows)
        );
        for cluster in &report.clusters {
            println!(
                "{}: {}{}",
                cluster.cluster,
                cluster.status,
                cluster
                    .error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
        }
        for warning in &report.warnings {
            println!("warning: {warning}");
        }
        for start in replication.iter().flatten() {
            println!(
                "{}: {}",
                start.cluster,
                match &start.error {
                    None => "replicating, caught up".to_string(),
                    Some(error) => error.clone(),
                }
            );
        }
        println!(
            "snapshot {} at GTID {}: {} rows, {} bytes into {} in {} ms (source writes paused {} ms)",
            report.status,
            report.gtid_position,
            report.rows,
            report.bytes,
            report.targets.join(", "),
            report.elapsed_ms,
            report.source_lock_ms
        );
    }
    Ok(if failed {
        Outcome::Failure(ErrorKind::Failed)
    } else {
        Outcome::Success
    })
}
