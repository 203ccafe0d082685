//! `cutover drill resume DRILL_ID`: finish a drill whose orchestrator died.
//!
//! The journal says which stages the drill reached and what it knew (the
//! failure, the primary's executed GTIDs before the injection, the chosen
//! candidate, when it injected); the live servers say where things stand.
//! From both: promote if the primary is down and nobody took over, otherwise
//! bring everyone under the one writable cluster and DNS onto it, then
//! measure, verify and fail back as the plan asks. The report says the drill
//! was interrupted, where, and the RTO includes the time it stood still.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{
    DrillError, DrillOptions, DrillReport, Event, Interrupted, Progress, STAGE_PREFIX,
    addresses_of, assemble, failover, first_write_on, history, ms, report, unix_ms,
};
use crate::engine::recovery;
use crate::mysql::{GtidSet, Session};
use crate::plan::{DrillFailure, StepKind, ValidatedPlan, kinds};
use crate::probe::{self, Acks, ProbeOptions};
use crate::steps::StepBehaviour;
use crate::steps::context::Context;
use crate::steps::server_ops::replication;
use crate::store::{RunStatus, Store, best_effort};

/// One journaled stage.
#[derive(Debug, Clone)]
struct Stage {
    name: String,
    at_ms: u64,
    unix_ms: u64,
    detail: String,
    observed: serde_json::Value,
}

/// The timeline keeps `&'static str` names: the stages a drill journals.
fn stage_name(name: &str) -> &'static str {
    const KNOWN: [&str; 16] = [
        "prechecks",
        "probe_started",
        "injection",
        "detection",
        "promotion",
        "dns_switch",
        "first_write",
        "verified",
        "failback_started",
        "recovered",
        "rejoined",
        "switched_back",
        "failback",
        "verified_again",
        "interrupted",
        "resumed",
    ];
    KNOWN
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("stage")
}

async fn journaled_stages(store: &Store, drill_id: &str) -> Result<Vec<Stage>, DrillError> {
    Ok(store
        .events(drill_id)
        .await?
        .iter()
        .filter_map(|event| {
            let step = event["step"].as_str()?;
            let name = step.strip_prefix(STAGE_PREFIX)?;
            let observed = event["positions"].clone();
            Some(Stage {
                name: name.to_string(),
                at_ms: observed["at_ms"].as_u64().unwrap_or(0),
                unix_ms: observed["unix_ms"].as_u64().unwrap_or(0),
                detail: observed["detail"].as_str().unwrap_or("").to_string(),
                observed,
            })
        })
        .collect())
}

/// The one cluster that takes writes now, if exactly one does.
async fn writable_now(plan: &ValidatedPlan) -> Result<Vec<String>, DrillError> {
    let topology = crate::topology::discover(plan).await?;
    Ok(topology
        .clusters
        .iter()
        .filter(|view| view.takes_writes())
        .map(|view| view.name.clone())
        .collect())
}

/// Everyone reachable (but `exclude`) under `primary`, DNS on it: the part of
/// a failover or a switch that an interrupted drill may have left undone.
/// Every action is safe to repeat.
async fn converge_on(
    ctx: &mut Context,
    primary: &str,
    exclude: Option<&str>,
) -> Result<(), DrillError> {
    let others: Vec<String> = ctx
        .plan
        .enabled_clusters()
        .map(|c| c.name.clone())
        .filter(|name| name != primary && Some(name.as_str()) != exclude)
        .collect();
    for other in others {
        if ctx.session(&other).await.is_err() {
            tracing::warn!("drill resume: `{other}` does not answer; left as it is");
            continue;
        }
        ctx.step = format!("resume.repoint-{other}");
        replication::replicate_from(ctx, &other, primary).await?;
    }
    if ctx.plan.dns.is_some() && ctx.state.dns_points_to != primary {
        ctx.step = "resume.dns_switch".into();
        let kind = StepKind::DnsSwitch(kinds::DnsSwitch {
            to: primary.to_string(),
            wait_ttl: false,
            verify_timeout: ctx.plan.gates.dns_verify_timeout,
        });
        kind.act(ctx).await?;
        ctx.state.dns_points_to = primary.to_string();
    }
    Ok(())
}

/// Rows the drill's probe wrote to `failed` that `primary` does not hold:
/// committed on the failed primary and lost with it. `None` when either
/// cannot be read. The acknowledgements died with the interrupted process,
/// so these are the writes that may have been acknowledged and lost.
async fn lost_rows(
    ctx: &mut Context,
    failed: &str,
    primary: &str,
    since_unix_ms: u64,
) -> Option<Vec<u64>> {
    let sql = format!(
        "SELECT seq FROM cutover_probe.writes WHERE written_at_us >= {} ORDER BY seq",
        since_unix_ms * 1000
    );
    let read = |cluster: String| {
        let endpoint = ctx.endpoint(&cluster).ok().cloned();
        let sql = sql.clone();
        async move {
            let mut session = Session::connect(&endpoint?).await.ok()?;
            let rows: Vec<u64> = session.query("read the probe's rows", &sql).await.ok()?;
            session.close().await;
            Some(rows)
        }
    };
    let on_failed = read(failed.to_string()).await?;
    let on_primary = read(primary.to_string()).await?;
    Some(
        on_failed
            .into_iter()
            .filter(|seq| !on_primary.contains(seq))
            .collect(),
    )
}

/// Finish an interrupted drill and write its report.
pub async fn resume(
    plan: ValidatedPlan,
    store: Store,
    drill_id: &str,
    options: &DrillOptions,
) -> Result<DrillReport, DrillError> {
    let drill = plan
        .drill
        .clone()
        .ok_or_else(|| DrillError::NoDrill(plan.name.clone()))?;
    let record = store.run(drill_id).await?;
    if record.plan_sha256 != plan.sha256 {
        return Err(DrillError::Invalid(format!(
            "plan file {} changed since drill {drill_id} started; resume it with the plan it used",
            record.plan_path
        )));
    }
    if !matches!(record.status, RunStatus::Interrupted | RunStatus::Running) {
        return Err(DrillError::Invalid(format!(
            "drill {drill_id} is {}: there is nothing to resume",
            record.status
        )));
    }
    let stages = journaled_stages(&store, drill_id).await?;
    let first = stages.first().map(|s| &s.observed);
    let failure: DrillFailure = first
        .and_then(|o| serde_json::from_value(o["failure"].clone()).ok())
        .unwrap_or(drill.failure);
    let last = stages
        .last()
        .map_or_else(|| "none".to_string(), |s| s.name.clone());
    let reached = |name: &str| stages.iter().any(|s| s.name == name);
    let started_unix_ms = stages
        .first()
        .map_or_else(|| unix_ms(SystemTime::now()), |s| s.unix_ms - s.at_ms);
    let lock = store.acquire_plan_lock(&plan.name, drill_id).await?;
    let store = store.fenced_by(&lock);
    store.adopt_run(drill_id).await?;
    let plan = Arc::new(plan);
    let mut state = Context::initial_state(&plan);
    state.primary = drill.primary.clone();
    state.dns_points_to = drill.primary.clone();
    let mut ctx = Context::new(
        plan.clone(),
        store.clone(),
        drill_id.to_string(),
        true,
        state,
    )?;
    ctx.hold_lease(&lock);
    ctx.phase = "drill".into();
    recovery::reconcile_with_live(&mut ctx).await;

    // The drill's own clock, continued: stage times stay where they were.
    let now_unix = unix_ms(SystemTime::now());
    let since_start = Duration::from_millis(now_unix.saturating_sub(started_unix_ms));
    // After a reboot the monotonic clock may be younger than the drill.
    let started = Instant::now().checked_sub(since_start).unwrap_or_else(|| {
        tracing::warn!("this host started after the drill did: drill times restart now");
        Instant::now()
    });
    // What the journal knows, on top of a fresh progress on the drill's clock.
    let mut progress = Progress {
        timeline: stages
            .iter()
            .map(|s| Event {
                name: stage_name(&s.name),
                at_ms: s.at_ms,
                detail: s.detail.clone(),
            })
            .collect(),
        injected_at: stages
            .iter()
            .find(|s| s.name == "injection")
            .map(|s| s.at_ms),
        first_write_at: stages
            .iter()
            .find(|s| s.name == "first_write")
            .map(|s| s.at_ms),
        baseline: first.and_then(|o| o["baseline"].as_str().map(String::from)),
        candidate: first.and_then(|o| o["candidate"].as_str().map(String::from)),
        ..Progress::new(
            (store.clone(), drill_id.to_string()),
            failure,
            started,
            started_unix_ms,
        )
    };
    progress.event("resumed", format!("interrupted after `{last}`"));
    let resumed_at_ms = ms(progress.started.elapsed());

    let progress_injected = progress.injected_at;
    let outcome = converge(
        &mut ctx,
        &drill,
        failure,
        &mut progress,
        reached("promotion"),
    )
    .await;
    if let Err(error) = &outcome {
        progress.problems.push(error.to_string());
    }
    ctx.drop_sessions().await;
    // The run's end is journaled under its lease, then the lease is let go.
    drop(ctx.lease.take());

    let mut report = assemble(
        &plan,
        &drill,
        failure,
        drill_id.to_string(),
        record.started_at.clone(),
        progress,
        None,
    );
    if progress_injected.is_none() {
        // Nothing was failed: there was no drill to measure.
        report.status = "interrupted";
    }
    report.interrupted = Some(Interrupted {
        stage: last,
        resumed_at_ms,
    });
    if let Some(lost) = outcome.ok().flatten() {
        report.rpo.lost_writes = lost.len() as u64;
        // Without the acknowledgements there is no time to measure: met when
        // nothing was lost, missed against a zero target, else unknown.
        report.rpo.met = report.rpo.target_ms.and_then(|target| {
            if lost.is_empty() {
                Some(true)
            } else if target == 0 {
                Some(false)
            } else {
                None
            }
        });
        report.rpo.lost_sequences = lost;
    }
    let status = if report.status == "failed" {
        RunStatus::Failed
    } else {
        RunStatus::Completed
    };
    best_effort(
        store
            .finish_run(drill_id, status, Some(report.status))
            .await,
        "the run's end",
    );
    best_effort(store.release_plan_lock(lock).await, "the plan lock release");
    report::write_all(&mut report, &options.report_dir)?;
    history::record(&store, &report).await?;
    Ok(report)
}

/// Converge, measure, verify and fail back. Returns the probe rows lost with
/// the failed primary, when they could be counted.
async fn converge(
    ctx: &mut Context,
    drill: &crate::plan::Drill,
    failure: DrillFailure,
    progress: &mut Progress,
    was_promoted: bool,
) -> Result<Option<Vec<u64>>, DrillError> {
    let plan = ctx.plan.clone();
    let injected = progress.injected_at.is_some();
    let writable = writable_now(&plan).await?;
    let primary_now = match writable.as_slice() {
        [one] => one.clone(),
        [] if injected && failure != DrillFailure::Planned => {
            // The primary is down and nobody took over: the failover, now.
            let primary = plan
                .cluster(&drill.primary)
                .cloned()
                .ok_or_else(|| DrillError::Invalid(format!("no cluster `{}`", drill.primary)))?;
            let baseline = progress
                .baseline
                .as_deref()
                .and_then(|text| {
                    let flavor = crate::mysql::Flavor::Mariadb;
                    GtidSet::parse(flavor, text)
                        .ok()
                        .or_else(|| GtidSet::parse(crate::mysql::Flavor::Mysql, text).ok())
                })
                .unwrap_or_default();
            ctx.step = "failover".into();
            let outcome = failover::run(ctx, &drill.dr, &primary, &baseline).await?;
            progress.event("promotion", format!("`{}` promoted", outcome.promoted));
            let promoted = outcome.promoted.clone();
            progress.failover = Some(outcome);
            promoted
        }
        [] if failure == DrillFailure::Planned => {
            // Died inside the switch between fencing one and opening the other.
            let candidate = progress.candidate.clone().ok_or_else(|| {
                DrillError::Failover(
                    "no cluster is writable and the journal names no candidate".into(),
                )
            })?;
            crate::engine::switchover(ctx, &candidate, "drill").await?;
            candidate
        }
        [] => {
            return Err(DrillError::Failover(
                "no cluster is writable and nothing was injected: start the primary by hand".into(),
            ));
        }
        many => {
            return Err(DrillError::Failover(format!(
                "{} are all writable: decide which keeps the role by hand, then resume",
                many.join(", ")
            )));
        }
    };
    ctx.state.primary = primary_now.clone();
    let failed_over = primary_now != drill.primary;
    // A crashed primary rejoins only through the failback's errant check.
    let exclude =
        (failed_over && failure != DrillFailure::Planned).then_some(drill.primary.as_str());
    converge_on(ctx, &primary_now, exclude).await?;
    if failed_over || was_promoted {
        progress.promoted = Some(if failed_over {
            primary_now.clone()
        } else {
            progress
                .candidate
                .clone()
                .unwrap_or_else(|| primary_now.clone())
        });
    }
    if !injected {
        return Ok(None);
    }

    // RTO: the first write through the application's name on the new primary.
    if failed_over && progress.first_write_at.is_none() {
        let acks: Acks = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let probe_plan = (*plan).clone();
        let probe_options = ProbeOptions {
            duration: Duration::from_secs(10),
            rate: drill.probe_rate.max(10),
            watch_primaries: false,
            write_timeout: Duration::from_secs(2),
            acks: Some(acks.clone()),
        };
        let probe_started = Instant::now();
        let task = tokio::spawn(async move {
            probe::run(&probe_plan, &probe_options, async {
                let _ = stopped.await;
            })
            .await
        });
        let port = plan.application.as_ref().map_or(3306, |a| a.port);
        let servers = match plan.cluster(&primary_now) {
            Some(cluster) => addresses_of(cluster, port).await,
            None => Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let found = first_write_on(&acks.lock().expect("not poisoned"), 0, &servers);
            if let Some(first) = found {
                let at = progress.at(probe_started) + first.at_ms;
                progress.first_write_at = Some(at);
                progress.event_at(
                    "first_write",
                    at,
                    format!(
                        "probe write {} on `{primary_now}` (after the resume)",
                        first.seq
                    ),
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop.send(());
        let _ = task.await;
    }

    let followers: Vec<String> = plan
        .enabled_clusters()
        .map(|c| c.name.clone())
        .filter(|name| *name != primary_now && Some(name.as_str()) != exclude)
        .collect();
    progress
        .verified(
            &plan,
            ("after_failover", "verified"),
            &primary_now,
            &followers,
        )
        .await;

    let mut lost = None;
    let since = progress.started_unix_ms;
    if failed_over && drill.rejoin {
        super::fail_back_and_verify(ctx, drill, failure, &drill.primary, &primary_now, progress)
            .await;
        lost = lost_rows(ctx, &drill.primary, &primary_now, since).await;
    } else if !failed_over {
        // Already switched back: a rejoin succeeded only if the failed primary
        // held nothing the promoted one lacked, so compare the two.
        if let Some(promoted) = progress.promoted.clone().filter(|p| *p != drill.primary) {
            lost = lost_rows(ctx, &drill.primary, &promoted, since).await;
        }
        if progress.verifications.len() < 2 {
            let replicas: Vec<String> = plan
                .enabled_clusters()
                .map(|c| c.name.clone())
                .filter(|name| *name != primary_now)
                .collect();
            progress
                .verified(
                    &plan,
                    ("after_failback", "verified_again"),
                    &primary_now,
                    &replicas,
                )
                .await;
        }
    }
    Ok(lost)
}
