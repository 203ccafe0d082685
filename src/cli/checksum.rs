//! `cutover checksum`: the source's rows against every target's at one
//! consistent point, down to the row and column.

use std::path::PathBuf;

use clap::Args;

use super::{Cli, print_json};
use crate::error::{Error, Result};
use crate::outcome::{ExitCode, Outcome, help_section};
use crate::plan;

#[derive(Debug, Args)]
pub struct ChecksumArgs {
    pub plan: PathBuf,
    /// `schema.table` patterns (`*`, `?`); default: every table of the plan's databases.
    #[arg(long, num_args = 1.., value_name = "PATTERN")]
    pub tables: Vec<String>,
    /// Targets to compare; default: every enabled target.
    #[arg(long, num_args = 1.., value_name = "CLUSTER")]
    pub targets: Vec<String>,
    /// Chunks compared at once (each holds one session per cluster); bounded by the plan's pools.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Time each chunk should take; sizes adapt toward it.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "250ms")]
    pub chunk_time: std::time::Duration,
    /// Significant digits compared for FLOAT and DOUBLE columns (1-17; 17: the exact value).
    #[arg(long, value_name = "DIGITS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=17))]
    pub float_precision: u32,
    /// Columns reconciled by exact SUM and COUNT (`table.column`); default: every DECIMAL column.
    #[arg(long, num_args = 1.., value_name = "TABLE.COLUMN")]
    pub money_columns: Vec<String>,
    /// Say where the time went: setup, key walk, each cluster's first pass
    /// and its wait for the slowest, idle workers, nanoseconds per row.
    #[arg(long)]
    pub stats: bool,
    /// Print each table's whole-table checksum query (what every chunk runs, without
    /// the key range) and compare nothing.
    #[arg(long)]
    pub show_sql: bool,
}

/// `--help` text after the options: examples, then the exit codes from the one table.
pub fn help() -> String {
    format!(
        "{}{}",
        "Examples:
  cutover checksum plans/lab-switchover.yaml
  cutover checksum plans/lab-switchover.yaml --tables 'refunds.*' --output json
  cutover checksum plans/lab-switchover.yaml --tables refunds.transactions --targets c1 c3

Targets that replicate from the source are compared at one GTID position: their
replication pauses for a moment while they reach it, and the source's writes wait
a few milliseconds for a read lock. Other targets are compared live, and a
difference is looked at twice (`settled`: stable or changing).
Skips the `cutover` and `cutover_probe` schemas.

",
        help_section(&[
            (ExitCode::Success, "every row and total matches"),
            (
                ExitCode::StepFailed,
                "a cluster could not be compared (the others still are, and
     nothing differed)"
            ),
            (ExitCode::InvalidInput, "invalid plan or arguments"),
            (
                ExitCode::DataMismatch,
                "a row, a table's shape or a money total differs"
            ),
        ])
    )
}

pub async fn checksum(cli: &Cli, args: &ChecksumArgs) -> Result<Outcome> {
    let plan = plan::load(&args.plan)?;
    if let Some(pattern) = args
        .money_columns
        .iter()
        .find(|column| column.split('.').count() < 2)
    {
        return Err(Error::Usage(format!(
            "--money-columns `{pattern}` must be written `table.column` or `schema.table.column`"
        )));
    }
    let options = crate::checksum::ChecksumOptions {
        targets: args.targets.clone(),
        tables: args.tables.clone(),
        float_precision: args.float_precision,
        money_columns: args.money_columns.clone(),
        workers: args.workers,
        chunk_time: args.chunk_time,
        frozen_at: None,
        progress: !cli.global.quiet,
        stats: args.stats,
    };
    if args.show_sql {
        let queries = crate::checksum::whole_table_queries(&plan, &options).await?;
        if cli.global.json() {
            print_json(&serde_json::json!({ "tables": queries }));
        } else {
            for query in queries {
                println!("-- {}\n{};\n", query.table, query.sql);
            }
        }
        return Ok(Outcome::Success);
    }
    let report = crate::checksum::run(&plan, &options).await?;
    if cli.global.json() {
        print_json(&serde_json::to_value(&report).expect("checksum report serialises"));
    } else {
        print!("{}", crate::checksum::render(&report));
    }
    Ok(report.outcome())
}
