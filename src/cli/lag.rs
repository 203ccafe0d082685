//! `cutover lag`: replication lag of every enabled target, from the
//! orchestrator's own heartbeat.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{Cli, print_json, render};
use crate::error::{Error, Result};
use crate::lag::{GateOutcome, LagGate, LagMonitor};
use crate::outcome::{ErrorKind, ExitCode, Outcome, help_section};
use crate::plan::{self, ValidatedPlan};

#[derive(Debug, Args)]
pub struct LagArgs {
    pub plan: PathBuf,
    /// Keep measuring: a live table on a terminal, JSON lines with --output json.
    #[arg(long, conflicts_with = "wait")]
    pub watch: bool,
    /// How long --watch runs.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "1h")]
    pub duration: std::time::Duration,
    /// How often --watch reports.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "500ms")]
    pub every: std::time::Duration,
    /// Wait until every target stays under the limit for the window (the `wait_lag` gate).
    #[arg(long)]
    pub wait: bool,
    /// Gate limit; default: the plan's `gates.max_lag_ms`.
    #[arg(long, value_name = "MS")]
    pub max_lag_ms: Option<u64>,
    /// Gate window; default: the plan's `gates.sustained_for`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub sustained: Option<std::time::Duration>,
    /// Gate timeout; default: the plan's `gates.lag_timeout`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Heartbeat interval (10 ms or more); default: the plan's `gates.heartbeat_interval_ms`.
    #[arg(long, value_name = "MS")]
    pub interval_ms: Option<u64>,
}

/// `--help` text after the options: examples, then the exit codes from the one table.
pub fn help() -> String {
    format!(
        "{}{}",
        "Examples:
  cutover lag plans/lab-switchover.yaml
  cutover lag plans/lab-switchover.yaml --watch
  cutover lag plans/lab-switchover.yaml --watch --output json --duration 30s
  cutover lag plans/lab-switchover.yaml --wait --max-lag-ms 200 --sustained 3s --timeout 60s

Writes one row per process to `cutover.heartbeat` on the plan's source.

",
        help_section(&[
            (ExitCode::Success, "measured (or --wait passed)"),
            (ExitCode::StepFailed, "a target could not be measured"),
            (ExitCode::InvalidInput, "invalid plan or arguments"),
            (
                ExitCode::Refused,
                "--wait timed out with targets over the limit, or no single
     writable primary to write the heartbeat on"
            ),
        ])
    )
}

pub async fn lag(cli: &Cli, args: &LagArgs) -> Result<Outcome> {
    let plan = plan::load(&args.plan)?;
    let interval = match args.interval_ms {
        Some(ms) if !(10..=60_000).contains(&ms) => {
            return Err(Error::Usage(
                "--interval-ms must be between 10 and 60000".into(),
            ));
        }
        Some(ms) => Duration::from_millis(ms),
        None => plan.gates.heartbeat_interval,
    };
    if args.wait {
        lag_wait(cli, args, &plan, interval).await
    } else if args.watch {
        lag_watch(cli, args, &plan, interval).await
    } else {
        lag_once(cli, &plan, interval).await
    }
}

/// `lag --wait`: the `wait_lag` gate with the plan's limits (or the flags').
async fn lag_wait(
    cli: &Cli,
    args: &LagArgs,
    plan: &ValidatedPlan,
    interval: Duration,
) -> Result<Outcome> {
    let gate = LagGate {
        max_lag: Duration::from_millis(args.max_lag_ms.unwrap_or(plan.gates.max_lag_ms)),
        sustained_for: args.sustained.unwrap_or(plan.gates.sustained_for),
        timeout: args.timeout.unwrap_or(plan.gates.lag_timeout),
    };
    let monitor = LagMonitor::start(plan, interval).await?;
    tracing::info!(
        max_lag_ms = gate.max_lag.as_millis() as u64,
        sustained = %humantime::format_duration(gate.sustained_for),
        timeout = %humantime::format_duration(gate.timeout),
        "waiting for every target to stay under the lag limit"
    );
    let outcome = crate::lag::wait_for(&monitor, gate).await;
    let samples = monitor.snapshot();
    monitor.stop().await;
    let code = outcome.outcome();
    if cli.global.json() {
        print_json(&serde_json::json!({
            "passed": code == Outcome::Success,
            "outcome": outcome,
            "max_lag_ms": gate.max_lag.as_millis() as u64,
            "sustained_for_ms": gate.sustained_for.as_millis() as u64,
            "clusters": samples,
        }));
    } else {
        print!("{}", render::lag(&samples));
        match &outcome {
            GateOutcome::Passed { waited_ms } => println!(
                "\nlag gate passed after {waited_ms} ms: every target under {} ms for {}",
                gate.max_lag.as_millis(),
                humantime::format_duration(gate.sustained_for)
            ),
            GateOutcome::Refused {
                laggards,
                waited_ms,
            } => {
                let names: Vec<String> = laggards
                    .iter()
                    .map(|l| match (l.lag_ms, &l.error) {
                        (Some(ms), _) => format!("{} ({ms:.0} ms)", l.name),
                        (None, Some(error)) => format!("{} ({error})", l.name),
                        (None, None) => format!("{} (not measured)", l.name),
                    })
                    .collect();
                eprintln!(
                    "error: lag gate refused after {waited_ms} ms: not under {} ms for {}: {}",
                    gate.max_lag.as_millis(),
                    humantime::format_duration(gate.sustained_for),
                    names.join(", ")
                );
            }
        }
    }
    Ok(code)
}

/// `lag --watch`: a live table, or JSON lines, for `--duration`.
async fn lag_watch(
    cli: &Cli,
    args: &LagArgs,
    plan: &ValidatedPlan,
    interval: Duration,
) -> Result<Outcome> {
    let monitor = LagMonitor::start(plan, interval).await?;
    let deadline = std::time::Instant::now() + args.duration;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut drawn_lines = 0;
    let mut ticker = tokio::time::interval(args.every.max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let samples = monitor.snapshot();
        if cli.global.json() {
            println!(
                "{}",
                serde_json::json!({
                    "at": crate::whoami::now(),
                    "source": monitor.source,
                    "heartbeat_error": monitor.writer_error(),
                    "clusters": samples,
                })
            );
        } else {
            let text = render::lag(&samples);
            if terminal && drawn_lines > 0 {
                print!("\x1b[{drawn_lines}A\x1b[J");
            }
            print!("{text}");
            drawn_lines = text.lines().count();
        }
        if std::time::Instant::now() >= deadline {
            break;
        }
    }
    monitor.stop().await;
    Ok(Outcome::Success)
}

/// `lag`: one measurement once every target has shown a heartbeat of ours.
async fn lag_once(cli: &Cli, plan: &ValidatedPlan, interval: Duration) -> Result<Outcome> {
    let settle = Duration::from_secs(2).max(interval * 20);
    let (samples, writer_error) = crate::lag::measure_once(plan, interval, settle).await?;
    if cli.global.json() {
        print_json(&serde_json::json!({
            "source": plan.source().name,
            "heartbeat_interval_ms": interval.as_millis() as u64,
            "heartbeat_error": writer_error,
            "clusters": samples,
        }));
    } else {
        print!("{}", render::lag(&samples));
        if let Some(error) = writer_error {
            eprintln!("warning: the last heartbeat write failed: {error}");
        }
    }
    Ok(if samples.iter().all(|sample| sample.lag_ms.is_some()) {
        Outcome::Success
    } else {
        Outcome::Failure(ErrorKind::Failed)
    })
}
