//! `cutover probe`: write through the application's DNS name and read every
//! acknowledged write back.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{Cli, parse_seconds, print_json};
use crate::error::Result;
use crate::outcome::{ExitCode, Outcome, help_section};
use crate::plan;
use crate::probe::ProbeOptions;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    pub plan: PathBuf,
    /// Seconds, or a duration like 90s or 10m.
    #[arg(long, value_parser = parse_seconds, default_value = "60")]
    pub duration: Duration,
    /// Writes per second.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub rate: u32,
    /// Also poll read_only on every cluster every 20 ms and report overlaps.
    #[arg(long)]
    pub watch_primaries: bool,
}

/// `--help` text after the options: examples, then the exit codes from the one table.
pub fn help() -> String {
    format!(
        "{}{}",
        "Examples:
  cutover probe plans/lab-switchover.yaml --duration 60
  cutover probe plans/lab-switchover.yaml --duration 10m --rate 100 --watch-primaries --output json

Stops at --duration or on Ctrl-C/SIGTERM, then reports. Writes to the
`cutover_probe.writes` table as the plan's application user.

",
        help_section(&[
            (ExitCode::Success, "nothing lost or duplicated"),
            (ExitCode::StepFailed, "no primary for the read-back"),
            (ExitCode::InvalidInput, "invalid plan or arguments"),
            (
                ExitCode::DataMismatch,
                "an acknowledged write is missing or duplicated, or two clusters
     were writable at once"
            ),
        ])
    )
}

pub async fn probe(cli: &Cli, args: &ProbeArgs) -> Result<Outcome> {
    let (path, duration, rate, watch_primaries) =
        (&args.plan, args.duration, args.rate, args.watch_primaries);
    let plan = plan::load(path)?;
    let options = ProbeOptions {
        duration,
        rate,
        watch_primaries,
        write_timeout: ProbeOptions::DEFAULT_WRITE_TIMEOUT,
        acks: None,
    };
    let stop = crate::shutdown::install();
    tracing::info!(
        "probe: writing {rate}/s for up to {} s through {}",
        duration.as_secs(),
        plan.application
            .as_ref()
            .map_or("-".to_string(), |app| format!("{}:{}", app.host, app.port))
    );
    let report = crate::probe::run(&plan, &options, stop).await?;
    if cli.global.json() {
        print_json(&serde_json::to_value(&report).expect("probe report serialises"));
    } else {
        println!(
            "probe {}: attempted {}, acknowledged {}, lost {}, duplicates {}, longest without a write {} ms, failed attempts {} (read back from {})",
            report.probe_id,
            report.attempted,
            report.acknowledged,
            report.lost,
            report.duplicates,
            report.max_unavailable_ms,
            report.failed_attempts,
            report.read_back_from
        );
        if !report.lost_sequences.is_empty() {
            println!("lost sequence numbers: {:?}", report.lost_sequences);
        }
        if let Some(writable) = &report.writable_primaries {
            println!(
                "read_only polled {} times on every cluster: at most {} writable at once{}",
                writable.rounds,
                writable.max_writable,
                if writable.overlaps.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", writable.overlaps.join("; "))
                }
            );
        }
    }
    Ok(report.outcome())
}
