//! `cutover status`: runs and their step states.

use clap::Args;

use super::render::table;
use super::{Cli, print_json};
use crate::error::Result;
use crate::outcome::{ExitCode, Outcome, help_section};
use crate::store::{RunRecord, RunStatus, Store};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A run id; without it, the most recent runs.
    pub run_id: Option<String>,
    /// How many runs to list.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Stream the run's journal as it is written, from any host sharing the
    /// store, until the run ends (with --output json: one event per line).
    #[arg(long, requires = "run_id")]
    pub follow: bool,
    /// Stop following after this long even if the run goes on.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "24h", requires = "follow")]
    pub follow_for: std::time::Duration,
}

/// `--help` text after the options: examples, then the exit codes from the one table.
pub fn help() -> String {
    format!(
        "{}{}",
        "Examples:
  cutover status
  cutover status 20261121-101500-a1b2c3 --output json
  cutover status 20261121-101500-a1b2c3 --follow --state postgres://cutover@db/cutover

",
        help_section(&[
            (ExitCode::Success, "listed"),
            (ExitCode::InvalidInput, "unknown run"),
        ])
    )
}

pub async fn status(cli: &Cli, args: &StatusArgs) -> Result<Outcome> {
    let (run_id, limit) = (args.run_id.as_deref(), args.limit);
    let store = Store::open_at(&cli.global.state_location()).await?;
    if let Some(run_id) = run_id.filter(|_| args.follow) {
        let outcome = follow(cli, &store, run_id, args.follow_for).await;
        store.close().await;
        return outcome;
    }
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
            Some(id) => {
                // One run: its whole journal too, as every host sees it.
                let mut document = documents.remove(0);
                document["journal"] = serde_json::json!(store.events(id).await?);
                print_json(&document)
            }
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
    Ok(Outcome::Success)
}

/// Print the run's journal, then each event as it is written, until the run
/// is no longer running (or `limit` passed).
async fn follow(
    cli: &Cli,
    store: &Store,
    run_id: &str,
    limit: std::time::Duration,
) -> Result<Outcome> {
    let deadline = std::time::Instant::now() + limit;
    let mut waiter = store.event_waiter().await?;
    let mut last = 0;
    loop {
        // Whether it still runs is read before its journal, so that nothing
        // written before its end is missed.
        let running = store.run(run_id).await?.status == RunStatus::Running;
        for event in store.events_after(run_id, last).await? {
            last = event["id"].as_i64().unwrap_or(last);
            if cli.global.json() {
                println!("{event}");
            } else {
                let text = |key: &str| event[key].as_str().unwrap_or("").to_string();
                let place = [text("phase"), text("step")]
                    .into_iter()
                    .filter(|part| !part.is_empty())
                    .collect::<Vec<_>>()
                    .join("/");
                println!(
                    "{}  {:<11} {:<32} {:<8} {}",
                    text("at"),
                    text("kind"),
                    place,
                    text("cluster"),
                    text("message")
                );
            }
        }
        if !running || std::time::Instant::now() >= deadline {
            return Ok(Outcome::Success);
        }
        waiter.wait(run_id, std::time::Duration::from_secs(1)).await;
    }
}
