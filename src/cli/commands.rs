//! One function per command. Results go to stdout; everything else to stderr.

use std::path::Path;
use std::time::Duration;

use crate::lag::{GateOutcome, LagGate, LagMonitor};

use super::render::{self, table};
use super::{
    AuditCommand, ChecksumArgs, Cli, Command, DrillCommand, LabCommand, LagArgs, PlanCommand,
    SnapshotArgs,
};
use crate::engine::{self, RunOptions, RunReport};
use crate::error::{Error, ExitCode, Result};
use crate::lab::{Lab, StartOptions, UpOptions};
use crate::plan::{self, ValidatedPlan};
use crate::probe::ProbeOptions;
use crate::store::{RunRecord, RunStatus, Store};

pub async fn dispatch(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Plan(PlanCommand::Check { plan }) => plan_check(cli, plan),
        Command::Plan(PlanCommand::Schema) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&plan::json_schema()).expect("schema serialises")
            );
            Ok(ExitCode::Success)
        }
        Command::Status { run_id, limit } => status(cli, run_id.as_deref(), *limit).await,
        Command::Topology { plan } => topology(cli, plan).await,
        Command::Run {
            plan,
            dry_run,
            phase,
            from_phase,
        } => run(cli, plan, *dry_run, phase.clone(), from_phase.clone()).await,
        Command::Resume { run_id, plan } => resume(cli, run_id, plan.as_deref()).await,
        Command::Rollback {
            run_id,
            to_phase,
            plan,
        } => rollback(cli, run_id, to_phase.as_deref(), plan.as_deref()).await,
        Command::Probe {
            plan,
            duration,
            rate,
            watch_primaries,
        } => probe(cli, plan, *duration, *rate, *watch_primaries).await,
        Command::Drill(command) => drill(cli, command).await,
        Command::Runbook { plan } => {
            let plan = plan::load(plan)?;
            print!("{}", crate::runbook::render(&plan));
            Ok(ExitCode::Success)
        }
        Command::Lag(args) => lag(cli, args).await,
        Command::Checksum(args) => checksum(cli, args).await,
        Command::Snapshot(args) => snapshot(cli, args, None).await,
        Command::Restore { from, load } => snapshot(cli, load, Some(from)).await,
        Command::Audit(AuditCommand::Verify) => audit_verify(cli).await,
        Command::Audit(AuditCommand::Log { limit }) => audit_log(cli, *limit).await,
        Command::Lab(command) => lab(cli, command).await,
        Command::Completions { shell } => {
            super::print_completions(*shell);
            Ok(ExitCode::Success)
        }
    }
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialise")
    );
}

fn plan_check(cli: &Cli, path: &Path) -> Result<ExitCode> {
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
            Ok(ExitCode::Success)
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
            Ok(ExitCode::InvalidInput)
        }
    }
}

fn plan_summary(plan: &ValidatedPlan) -> String {
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

fn print_report(cli: &Cli, report: &RunReport) {
    if cli.global.json() {
        print_json(&serde_json::to_value(report).expect("report serialises"));
    } else {
        print!("{}", report.render());
    }
}

async fn run(
    cli: &Cli,
    path: &Path,
    dry_run: bool,
    phase: Option<String>,
    from_phase: Option<String>,
) -> Result<ExitCode> {
    let plan = plan::load(path)?;
    let store = Store::open(&cli.global.state_dir()).await?;
    let options = RunOptions {
        dry_run,
        phase,
        from_phase,
        yes: cli.global.yes,
    };
    let report = engine::run(plan, store.clone(), options).await;
    store.close().await;
    let report = report?;
    print_report(cli, &report);
    Ok(match report.status {
        RunStatus::Completed => ExitCode::Success,
        _ if report.data_mismatch => ExitCode::DataMismatch,
        RunStatus::Refused | RunStatus::RolledBack => ExitCode::Refused,
        _ => ExitCode::StepFailed,
    })
}

/// The plan a journaled run used: `--plan`, else the path it recorded.
async fn plan_of_run(store: &Store, run_id: &str, path: Option<&Path>) -> Result<ValidatedPlan> {
    let recorded = store.run(run_id).await?.plan_path;
    let path = path.map_or_else(|| std::path::PathBuf::from(&recorded), Path::to_path_buf);
    if !path.exists() {
        return Err(Error::Usage(format!(
            "plan file {} (recorded by run {run_id}) is not there; pass --plan PATH",
            path.display()
        )));
    }
    Ok(plan::load(&path)?)
}

async fn drill_resume(
    cli: &Cli,
    drill_id: &str,
    path: Option<&Path>,
    report_dir: Option<std::path::PathBuf>,
) -> Result<ExitCode> {
    let store = Store::open(&cli.global.state_dir()).await?;
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
fn print_drill_report(cli: &Cli, report: &crate::drill::DrillReport) -> ExitCode {
    if cli.global.json() {
        print_json(&serde_json::to_value(report).expect("a report serialises"));
    } else {
        print!("{}", crate::drill::report::markdown(report));
        println!("\nreports: {}", report.reports.join(", "));
    }
    report.exit_code()
}

async fn drill(cli: &Cli, command: &DrillCommand) -> Result<ExitCode> {
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
            let store = Store::open(&cli.global.state_dir()).await?;
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
        } => drill_resume(cli, drill_id, plan.as_deref(), report_dir.clone()).await,
        DrillCommand::Schedule {
            plan,
            cron,
            tz,
            list,
            remove,
        } => {
            let store = Store::open(&cli.global.state_dir()).await?;
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
                return Ok(ExitCode::Success);
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
                return Ok(ExitCode::Success);
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
            Ok(ExitCode::Success)
        }
        DrillCommand::Daemon { report_dir } => {
            confirm(cli, "Run scheduled drills that fail servers for real?")?;
            let store = Store::open(&cli.global.state_dir()).await?;
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
            Ok(ExitCode::Success)
        }
        DrillCommand::History { plan, limit } => {
            let store = Store::open(&cli.global.state_dir()).await?;
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
            Ok(ExitCode::Success)
        }
    }
}

/// Changes on a terminal are confirmed by a human, or by --yes.
fn confirm(cli: &Cli, question: &str) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if cli.global.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(format!("{question}: confirm with --yes")));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::Usage("not confirmed; nothing changed".into()))
    }
}

async fn resume(cli: &Cli, run_id: &str, path: Option<&Path>) -> Result<ExitCode> {
    let store = Store::open(&cli.global.state_dir()).await?;
    // A drill's run is finished by the drill's own resume.
    let record = store.run(run_id).await?;
    if matches!(record.status, RunStatus::Interrupted | RunStatus::Running)
        && store.last_drill_stage(run_id).await?.is_some()
    {
        store.close().await;
        return drill_resume(cli, run_id, path, None).await;
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
    Ok(match report.status {
        RunStatus::Completed => ExitCode::Success,
        _ if report.data_mismatch => ExitCode::DataMismatch,
        RunStatus::RolledBack | RunStatus::Refused => ExitCode::Refused,
        _ => ExitCode::StepFailed,
    })
}

async fn rollback(
    cli: &Cli,
    run_id: &str,
    to_phase: Option<&str>,
    path: Option<&Path>,
) -> Result<ExitCode> {
    let store = Store::open(&cli.global.state_dir()).await?;
    let plan = plan_of_run(&store, run_id, path).await?;
    confirm(
        cli,
        &format!("Roll back run {run_id} of plan `{}`?", plan.name),
    )?;
    let report = engine::rollback(plan, store.clone(), run_id, to_phase, cli.global.yes).await;
    store.close().await;
    let report = report?;
    print_report(cli, &report);
    Ok(match report.status {
        RunStatus::RolledBack => ExitCode::Success,
        _ => ExitCode::StepFailed,
    })
}

async fn probe(
    cli: &Cli,
    path: &Path,
    duration: Duration,
    rate: u32,
    watch_primaries: bool,
) -> Result<ExitCode> {
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
    let overlapping = report
        .writable_primaries
        .as_ref()
        .is_some_and(|writable| writable.overlap_rounds > 0);
    Ok(if report.lost > 0 || report.duplicates > 0 || overlapping {
        ExitCode::DataMismatch
    } else {
        ExitCode::Success
    })
}

async fn topology(cli: &Cli, path: &Path) -> Result<ExitCode> {
    let plan = plan::load(path)?;
    let topology = crate::topology::discover(&plan).await?;
    if cli.global.json() {
        print_json(&serde_json::to_value(&topology).expect("topology serialises"));
    } else {
        print!("{}", render::topology(&topology));
    }
    Ok(if topology.with_errant().next().is_some() {
        ExitCode::DataMismatch
    } else if topology.unreachable().next().is_some() {
        ExitCode::StepFailed
    } else {
        ExitCode::Success
    })
}

/// `snapshot`, or `restore` when `restore_from` names a snapshot directory.
async fn snapshot(cli: &Cli, args: &SnapshotArgs, restore_from: Option<&Path>) -> Result<ExitCode> {
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
        ExitCode::StepFailed
    } else {
        ExitCode::Success
    })
}

async fn checksum(cli: &Cli, args: &ChecksumArgs) -> Result<ExitCode> {
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
        return Ok(ExitCode::Success);
    }
    let report = crate::checksum::run(&plan, &options).await?;
    if cli.global.json() {
        print_json(&serde_json::to_value(&report).expect("checksum report serialises"));
    } else {
        print!("{}", crate::checksum::render(&report));
    }
    Ok(report.exit_code())
}

async fn lag(cli: &Cli, args: &LagArgs) -> Result<ExitCode> {
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
) -> Result<ExitCode> {
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
    let code = match &outcome {
        GateOutcome::Passed { .. } => ExitCode::Success,
        GateOutcome::Refused { .. } => ExitCode::Refused,
    };
    if cli.global.json() {
        print_json(&serde_json::json!({
            "passed": code == ExitCode::Success,
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
) -> Result<ExitCode> {
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
    Ok(ExitCode::Success)
}

/// `lag`: one measurement once every target has shown a heartbeat of ours.
async fn lag_once(cli: &Cli, plan: &ValidatedPlan, interval: Duration) -> Result<ExitCode> {
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
        ExitCode::Success
    } else {
        ExitCode::StepFailed
    })
}

async fn status(cli: &Cli, run_id: Option<&str>, limit: u32) -> Result<ExitCode> {
    let store = Store::open(&cli.global.state_dir()).await?;
    let runs: Vec<RunRecord> = match run_id {
        Some(id) => vec![store.run(id).await?],
        None => store.runs(limit).await?,
    };
    // A drill's run says which stage it reached (where an interrupted one stopped).
    let mut stages = Vec::with_capacity(runs.len());
    for run in &runs {
        stages.push(store.last_drill_stage(&run.run_id).await?);
    }
    if cli.global.json() {
        let mut documents: Vec<serde_json::Value> = runs
            .iter()
            .zip(&stages)
            .map(|(run, stage)| {
                let mut document = serde_json::to_value(run).expect("run serialises");
                if let Some(stage) = stage {
                    document["drill_stage"] = serde_json::json!(stage);
                }
                document
            })
            .collect();
        match run_id {
            Some(_) => print_json(&documents.remove(0)),
            None => print_json(&serde_json::json!({ "runs": documents })),
        }
    } else if runs.is_empty() {
        println!("no runs recorded in {}", store.path().display());
    } else if run_id.is_some() {
        let run = &runs[0];
        println!(
            "run {}  plan {}  status {}{}{}  started {}  ended {}",
            run.run_id,
            run.plan,
            run.status,
            stages[0]
                .as_ref()
                .map(|stage| format!(" (drill stage `{stage}`)"))
                .unwrap_or_default(),
            if run.dry_run { " (dry run)" } else { "" },
            run.started_at,
            run.ended_at.as_deref().unwrap_or("-")
        );
        let mut rows: Vec<Vec<String>> = Vec::new();
        for (index, phase) in run.phases.iter().enumerate() {
            // A phase carried from an earlier run shows that run's steps.
            let (steps, carried) = match &phase.completed_in {
                Some(other) => match store.run(other).await {
                    Ok(record) => (
                        record
                            .phases
                            .get(index)
                            .map(|p| p.steps.clone())
                            .unwrap_or_default(),
                        Some(format!(" (run {other})")),
                    ),
                    Err(_) => (phase.steps.clone(), Some(format!(" (run {other})"))),
                },
                None => (phase.steps.clone(), None),
            };
            for step in steps {
                rows.push(vec![
                    phase.name.clone(),
                    step.name.clone(),
                    step.kind.clone(),
                    format!("{}{}", step.status, carried.as_deref().unwrap_or("")),
                    step.elapsed_ms.map_or("-".into(), |ms| format!("{ms} ms")),
                ]);
            }
        }
        print!(
            "{}",
            table(&["PHASE", "STEP", "KIND", "STATUS", "ELAPSED"], &rows)
        );
        let links: Vec<Vec<String>> = run
            .phases
            .iter()
            .flat_map(|phase| &phase.steps)
            .filter_map(|step| step.positions.as_ref()?.get("links").cloned())
            .flat_map(|links| match links {
                serde_json::Value::Array(many) => many,
                one => vec![one],
            })
            .filter(|link| link.is_object())
            .map(|link| {
                let text = |key: &str| link[key].as_str().unwrap_or("-").to_string();
                vec![
                    format!("{} ← {}", text("replica"), text("source")),
                    format!("IO {}, SQL {}", text("io_thread"), text("sql_thread")),
                    format!(
                        "{} behind",
                        link["transactions_behind"].as_u64().unwrap_or(0)
                    ),
                    format!("proven in {} ms", link["waited_ms"].as_u64().unwrap_or(0)),
                ]
            })
            .collect();
        if !links.is_empty() {
            println!("\nreplication links started by this run, as they were when proven:");
            print!(
                "{}",
                table(&["LINK", "THREADS", "RECEIVED", "CHECK"], &links)
            );
        }
    } else {
        let rows: Vec<Vec<String>> = runs
            .iter()
            .zip(&stages)
            .map(|(run, stage)| {
                let steps = run.phases.iter().flat_map(|p| &p.steps);
                let done = steps
                    .clone()
                    .filter(|s| s.status == crate::store::StepStatus::Completed)
                    .count();
                vec![
                    run.run_id.clone(),
                    run.plan.clone(),
                    format!(
                        "{}{}",
                        run.status,
                        if run.dry_run { " (dry run)" } else { "" }
                    ),
                    match stage {
                        Some(stage) => format!("drill at `{stage}`"),
                        None => format!("{done}/{} steps", steps.count()),
                    },
                    run.started_at.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["RUN", "PLAN", "STATUS", "PROGRESS", "STARTED"], &rows)
        );
    }
    store.close().await;
    Ok(ExitCode::Success)
}

async fn audit_verify(cli: &Cli) -> Result<ExitCode> {
    let store = Store::open(&cli.global.state_dir()).await?;
    let verification = store.verify_audit().await?;
    store.close().await;
    if cli.global.json() {
        print_json(&serde_json::to_value(&verification).expect("verification serialises"));
    } else if verification.intact {
        println!(
            "audit log {}: {} entries, hash chain intact",
            store.path().display(),
            verification.entries
        );
    } else {
        for problem in &verification.problems {
            match problem.seq {
                Some(seq) => println!("entry {seq}: {}", problem.problem),
                None => println!("{}", problem.problem),
            }
        }
    }
    if verification.intact {
        Ok(ExitCode::Success)
    } else {
        Err(Error::AuditBroken {
            path: store.path().display().to_string(),
            problems: verification.problems.len(),
        })
    }
}

async fn audit_log(cli: &Cli, limit: u32) -> Result<ExitCode> {
    let store = Store::open(&cli.global.state_dir()).await?;
    let entries = store.audit_entries(limit).await?;
    store.close().await;
    if cli.global.json() {
        print_json(&serde_json::json!({ "entries": entries }));
    } else {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                vec![
                    e.seq.to_string(),
                    e.at.clone(),
                    e.actor.clone(),
                    e.run_id.clone().unwrap_or_else(|| "-".into()),
                    e.target.clone(),
                    e.action.clone(),
                    e.result.clone(),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["SEQ", "AT", "ACTOR", "RUN", "TARGET", "ACTION", "RESULT"],
                &rows
            )
        );
    }
    Ok(ExitCode::Success)
}

fn lab_for(cli: &Cli, dir: &Option<std::path::PathBuf>) -> Lab {
    Lab::new(
        dir.clone()
            .unwrap_or_else(|| Lab::default_dir(&cli.global.state_dir())),
    )
}

async fn lab(cli: &Cli, command: &LabCommand) -> Result<ExitCode> {
    match command {
        LabCommand::Up {
            rows,
            replicating,
            dir,
        } => {
            if *rows == 0 {
                return Err(Error::Usage("--rows must be at least 1".into()));
            }
            let lab = lab_for(cli, dir);
            let status = lab
                .up(&UpOptions {
                    rows: *rows,
                    replicating: *replicating,
                })
                .await?;
            print_lab_status(cli, &status);
            if !cli.global.json() {
                println!("\nnext: eval \"$(cutover lab env)\"");
            }
        }
        LabCommand::Down { dir } => {
            let lab = lab_for(cli, dir);
            lab.down()?;
            if cli.global.json() {
                print_json(&serde_json::json!({ "dir": lab.dir(), "down": true }));
            } else {
                println!("lab in {} stopped and removed", lab.dir().display());
            }
        }
        LabCommand::Restart {
            server,
            clock_offset,
            without_tls,
            read_only,
            dir,
        } => {
            if clock_offset.is_some_and(|offset| !offset.is_finite() || offset.abs() > 86_400.0) {
                return Err(Error::Usage(
                    "--clock-offset must be a number of seconds within ±86400".into(),
                ));
            }
            let lab = lab_for(cli, dir);
            let options = StartOptions {
                clock_offset_secs: *clock_offset,
                without_tls: *without_tls,
                read_only: *read_only,
            };
            lab.restart(server, &options).await?;
            if cli.global.json() {
                print_json(&serde_json::json!({
                    "server": server,
                    "restarted": true,
                    "clock_offset_secs": clock_offset,
                    "tls": !without_tls,
                }));
            } else {
                println!("{server} restarted");
            }
        }
        LabCommand::Kill {
            server,
            isolate,
            dir,
        } => {
            lab_for(cli, dir).kill(server, *isolate)?;
            if cli.global.json() {
                print_json(&serde_json::json!({
                    "server": server,
                    "failed": if *isolate { "isolated" } else { "killed" },
                }));
            } else if *isolate {
                println!(
                    "{server} isolated (SIGSTOP); `cutover lab restart {server}` brings it back"
                );
            } else {
                println!(
                    "{server} killed (SIGKILL); `cutover lab restart {server}` brings it back"
                );
            }
        }
        LabCommand::Status { dir } => {
            let status = lab_for(cli, dir).status();
            print_lab_status(cli, &status);
        }
        LabCommand::Env { dir } => {
            let lab = lab_for(cli, dir);
            let variables = lab.env()?;
            if cli.global.json() {
                let map: serde_json::Map<String, serde_json::Value> = variables
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), serde_json::Value::String(value)))
                    .collect();
                print_json(&serde_json::Value::Object(map));
            } else {
                for (name, value) in variables {
                    println!("export {name}={}", crate::lab::shell_quote(&value));
                }
            }
        }
    }
    Ok(ExitCode::Success)
}

fn print_lab_status(cli: &Cli, status: &crate::lab::LabStatus) {
    if cli.global.json() {
        print_json(&serde_json::to_value(status).expect("status serialises"));
        return;
    }
    println!(
        "lab {}{}",
        status.dir.display(),
        match (status.initialized, status.replicating) {
            (false, _) => " (not set up)".to_string(),
            (true, Some(true)) => format!(" (replicating, {} rows)", status.rows.unwrap_or(0)),
            (true, _) => format!(
                " (clusters empty, {} rows on legacy)",
                status.rows.unwrap_or(0)
            ),
        }
    );
    let rows: Vec<Vec<String>> = status
        .processes
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.kind.to_string(),
                p.address.clone(),
                if p.running {
                    "running".into()
                } else {
                    "stopped".into()
                },
                p.pid.map_or("-".into(), |pid| pid.to_string()),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["NAME", "KIND", "ADDRESS", "STATE", "PID"], &rows)
    );
}
