//! Disaster-recovery drills: fail a primary on purpose (a planned switchover,
//! a crash, or an isolation, through the plan's hook commands), fail over,
//! measure RTO and RPO with the write probe, verify with checksums, fail
//! back, and report with a timeline.
//!
//! Flow: prechecks (primary writable, a DR cluster able to take over, DNS
//! where it should be) → write probe → injection → detection → failover
//! (planned: the graceful switchover; otherwise emergency promotion of the
//! most advanced replica) → first acknowledged write on the new primary
//! (RTO) → probe read-back (RPO: acknowledged writes lost) → checksum of the
//! survivors → failback (rejoin the failed server as a replica, optionally
//! switch back) → checksum → reports and history.

pub mod failback;
pub mod failover;
pub mod history;
pub mod report;
pub mod resume;
pub mod schedule;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::checksum::{self, ChecksumOptions, Verdict};
use crate::mysql::{Endpoint, GtidSet, MysqlError, Session, control, server};
use crate::outcome::{ErrorKind, Outcome};
use crate::plan::{ClusterRole, Drill, DrillFailure, ValidatedPlan};
use crate::probe::{self, Ack, Acks, ProbeOptions, ProbeReport};
use crate::steps::context::Context;
use crate::steps::{StepError, hook};
use crate::store::{RunStatus, Store, StoreError};

/// The longest a drill waits for the first write on the new primary.
const FIRST_WRITE_LIMIT: Duration = Duration::from_secs(60);
/// The longest the injected primary may keep answering.
const DETECTION_LIMIT: Duration = Duration::from_secs(60);
/// A probe write that takes longer counts as failed (an isolated server never answers).
const PROBE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Width of one bar of the write-rate chart.
pub const RATE_BIN_MS: u64 = 250;

#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// Override the plan's `drill.failure`.
    pub failure: Option<DrillFailure>,
    /// Where the markdown, JSON and HTML reports go (a directory per drill).
    pub report_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("plan `{0}` has no `drill` section")]
    NoDrill(String),
    #[error("{0}")]
    Invalid(String),
    /// Refused before anything was injected.
    #[error("drill precheck: {0}; nothing was injected")]
    Precheck(String),
    #[error("failover: {0}")]
    Failover(String),
    #[error("failback: {0}")]
    Failback(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("drill report: cannot write {path}: {reason}")]
    Report { path: String, reason: String },
}

impl DrillError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DrillError::NoDrill(_) | DrillError::Invalid(_) | DrillError::Secret(_) => {
                ErrorKind::InvalidInput
            }
            DrillError::Precheck(_) | DrillError::Store(StoreError::LockHeld { .. }) => {
                ErrorKind::Refused
            }
            DrillError::Failover(_)
            | DrillError::Failback(_)
            | DrillError::Store(_)
            | DrillError::Mysql(_)
            | DrillError::Step(_)
            | DrillError::Report { .. } => ErrorKind::Failed,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            DrillError::NoDrill(_) => Some("add one (see plans/lab-dr-drill.yaml)".into()),
            DrillError::Store(error) => error.hint(),
            _ => None,
        }
    }

    pub fn cluster(&self) -> Option<&str> {
        match self {
            DrillError::Mysql(error) => Some(error.cluster()),
            _ => None,
        }
    }
}

/// One moment of the drill, in milliseconds since it started.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub name: &'static str,
    pub at_ms: u64,
    pub detail: String,
}

/// A measured figure against its target.
#[derive(Debug, Clone, Serialize)]
pub struct Objective {
    pub measured_ms: Option<u64>,
    pub target_ms: Option<u64>,
    /// `None` without a target or a measurement.
    pub met: Option<bool>,
}

/// The acknowledged writes the failover lost.
#[derive(Debug, Clone, Serialize)]
pub struct Rpo {
    pub lost_writes: u64,
    pub lost_sequences: Vec<u64>,
    /// When the first and last lost writes were acknowledged (drill time).
    pub first_lost_at_ms: Option<u64>,
    pub last_lost_at_ms: Option<u64>,
    /// From the first lost write to the failure: the data the failover gave up.
    pub measured_ms: u64,
    pub target_ms: Option<u64>,
    pub met: Option<bool>,
}

/// One checksum of the clusters that carry the data.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub stage: &'static str,
    pub primary: String,
    pub replicas: Vec<String>,
    /// `match`, `mismatch`, `incomplete`, `error`, or `skipped` (no replica to compare).
    pub status: String,
    pub rows_compared: u64,
    pub detail: Option<String>,
}

/// Writes acknowledged per bin of [`RATE_BIN_MS`].
#[derive(Debug, Clone, Serialize)]
pub struct RateBin {
    pub at_ms: u64,
    pub writes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeSummary {
    /// The probe's rows in `cutover_probe.writes` carry this id.
    pub probe_id: String,
    pub rate: u32,
    pub attempted: u64,
    pub acknowledged: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub failed_attempts: u64,
    pub max_unavailable_ms: u64,
    pub read_back_from: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub drill_id: String,
    pub plan: String,
    pub failure: DrillFailure,
    /// The primary that was failed.
    pub primary: String,
    /// The cluster that took over.
    pub promoted: Option<String>,
    /// `passed` (every target met, every verification matched), `missed` (a
    /// target missed), `failed` (a stage failed or a verification did not
    /// match) or `interrupted` (its orchestrator died before it failed anything).
    pub status: &'static str,
    pub started_at: String,
    pub elapsed_ms: u64,
    pub rto: Objective,
    pub rpo: Rpo,
    pub timeline: Vec<Event>,
    pub write_rate: Vec<RateBin>,
    pub probe: Option<ProbeSummary>,
    pub failover: Option<failover::Failover>,
    pub verifications: Vec<Verification>,
    pub failback: Option<failback::FailbackReport>,
    pub problems: Vec<String>,
    /// Set when the drill's orchestrator died and `drill resume` finished it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interrupted>,
    /// The files written for this drill.
    pub reports: Vec<String>,
}

/// Where an interrupted drill stopped, and when it was taken up again.
#[derive(Debug, Clone, Serialize)]
pub struct Interrupted {
    /// The last stage it journaled (`none` if it died before the first).
    pub stage: String,
    /// Drill time at which `drill resume` took it up.
    pub resumed_at_ms: u64,
}

impl DrillReport {
    pub fn outcome(&self) -> Outcome {
        if self.verifications.iter().any(|v| v.status == "mismatch") {
            return ErrorKind::Mismatch.into();
        }
        match self.status {
            "passed" => Outcome::Success,
            _ => ErrorKind::Failed.into(),
        }
    }
}

/// Milliseconds of `duration`, saturating.
fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(ms)
        .unwrap_or(0)
}

/// What the drill learned as it went; turned into the report at the end.
struct Progress {
    started: Instant,
    started_unix_ms: u64,
    timeline: Vec<Event>,
    problems: Vec<String>,
    promoted: Option<String>,
    failover: Option<failover::Failover>,
    verifications: Vec<Verification>,
    failback: Option<failback::FailbackReport>,
    injected_at: Option<u64>,
    first_write_at: Option<u64>,
    /// Where each stage is journaled as it is reached: the drill's run.
    journal: Option<(Store, String)>,
    /// What a resume needs that the servers cannot tell afterwards.
    failure: DrillFailure,
    baseline: Option<String>,
    candidate: Option<String>,
}

/// The journal's step name for a drill stage, e.g. `drill.promotion`.
pub const STAGE_PREFIX: &str = "drill.";

impl Progress {
    /// A drill's progress from `started` on, journaled in `journal`'s run.
    fn new(
        journal: (Store, String),
        failure: DrillFailure,
        started: Instant,
        started_unix_ms: u64,
    ) -> Progress {
        Progress {
            started,
            started_unix_ms,
            timeline: Vec::new(),
            problems: Vec::new(),
            promoted: None,
            failover: None,
            verifications: Vec::new(),
            failback: None,
            injected_at: None,
            first_write_at: None,
            journal: Some(journal),
            failure,
            baseline: None,
            candidate: None,
        }
    }

    fn event(&mut self, name: &'static str, detail: impl Into<String>) -> u64 {
        let at_ms = ms(self.started.elapsed());
        self.event_at(name, at_ms, detail);
        at_ms
    }

    fn event_at(&mut self, name: &'static str, at_ms: u64, detail: impl Into<String>) {
        let detail = detail.into();
        tracing::info!(
            "drill: {name} at {at_ms} ms{}",
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        );
        // Durable before the drill goes on: a crash leaves the last stage it
        // reached, with what it knew, in the run's journal.
        if let Some((store, run_id)) = &self.journal {
            let observed = serde_json::json!({
                "stage": name,
                "at_ms": at_ms,
                "unix_ms": self.started_unix_ms + at_ms,
                "detail": detail,
                "promoted": self.promoted,
                "injected_at_ms": self.injected_at,
                "failure": self.failure,
                "baseline": self.baseline,
                "candidate": self.candidate,
            });
            let step = format!("{STAGE_PREFIX}{name}");
            let written = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(store.record_event(
                    run_id,
                    crate::store::EventKind::Observation,
                    Some("drill"),
                    Some(&step),
                    None,
                    Some(&observed),
                    Some(&format!("drill stage {name}")),
                ))
            });
            if let Err(error) = written {
                tracing::warn!("could not journal drill stage {name}: {error}");
            }
        }
        self.timeline.push(Event {
            name,
            at_ms,
            detail,
        });
        crate::engine::recovery::drill_stage_reached(name);
    }

    /// Checksum `primary` against `replicas` as `stage`, and put it on the
    /// timeline as `event`.
    async fn verified(
        &mut self,
        plan: &ValidatedPlan,
        (stage, event): (&'static str, &'static str),
        primary: &str,
        replicas: &[String],
    ) {
        let verification = verify(plan, stage, primary, replicas).await;
        self.event(event, format!("checksum {}", verification.status));
        self.verifications.push(verification);
    }

    fn at(&self, instant: Instant) -> u64 {
        ms(instant.saturating_duration_since(self.started))
    }
}

/// The plan with `primary` as the source and only `replicas` as enabled
/// targets: what a checksum compares after the roles moved.
pub fn with_roles(plan: &ValidatedPlan, primary: &str, replicas: &[String]) -> ValidatedPlan {
    let mut plan = plan.clone();
    for cluster in &mut plan.clusters {
        if cluster.name == primary {
            cluster.role = ClusterRole::Source;
            cluster.enabled = true;
        } else {
            cluster.role = ClusterRole::Target;
            cluster.enabled = replicas.contains(&cluster.name);
        }
    }
    plan
}

async fn verify(
    plan: &ValidatedPlan,
    stage: &'static str,
    primary: &str,
    replicas: &[String],
) -> Verification {
    if replicas.is_empty() {
        return Verification {
            stage,
            primary: primary.to_string(),
            replicas: Vec::new(),
            status: "skipped".into(),
            rows_compared: 0,
            detail: Some(format!(
                "no cluster replicates from `{primary}` to compare it with"
            )),
        };
    }
    let derived = with_roles(plan, primary, replicas);
    let mut verification = Verification {
        stage,
        primary: primary.to_string(),
        replicas: replicas.to_vec(),
        status: "error".into(),
        rows_compared: 0,
        detail: None,
    };
    match checksum::run(&derived, &ChecksumOptions::new()).await {
        Ok(report) => {
            verification.status = match report.status {
                Verdict::Match => "match",
                Verdict::Mismatch => "mismatch",
                Verdict::Incomplete => "incomplete",
            }
            .into();
            verification.rows_compared = report.rows_compared;
            if report.status != Verdict::Match {
                verification.detail = Some(report.summary());
            }
        }
        Err(error) => verification.detail = Some(error.to_string()),
    }
    tracing::info!(
        "drill: checksum {stage}: {} ({} rows, {primary} against {})",
        verification.status,
        verification.rows_compared,
        replicas.join(", ")
    );
    verification
}

/// Poll the failed primary until it has not answered for `after`; returns when
/// that was established, or `None` if it kept answering for `limit`.
async fn detect(mut endpoint: Endpoint, after: Duration, limit: Duration) -> Option<Instant> {
    endpoint.connect_timeout = Duration::from_millis(300);
    endpoint.query_timeout = Duration::from_millis(300);
    let deadline = Instant::now() + limit;
    let mut failing_since: Option<Instant> = None;
    loop {
        let answered = match Session::connect(&endpoint).await {
            Ok(mut session) => {
                let ok = session.exec("health check", "SELECT 1").await.is_ok();
                session.close().await;
                ok
            }
            Err(_) => false,
        };
        let now = Instant::now();
        if answered {
            failing_since = None;
        } else {
            let since = *failing_since.get_or_insert(now);
            if now.duration_since(since) >= after {
                return Some(now);
            }
        }
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first acknowledged write after `from_index` that one of `servers` took.
fn first_write_on(acks: &[Ack], from_index: usize, servers: &[String]) -> Option<Ack> {
    acks.iter()
        .skip(from_index)
        .find(|ack| servers.contains(&ack.server))
        .cloned()
}

/// Every `ip:port` the application's name can resolve to when it points at
/// `cluster` (a host name is looked up; the probe records addresses).
async fn addresses_of(cluster: &crate::plan::Cluster, port: u16) -> Vec<String> {
    if let Ok(ip) = cluster.host.parse::<std::net::IpAddr>() {
        return vec![std::net::SocketAddr::new(ip, port).to_string()];
    }
    let lookup = tokio::net::lookup_host((cluster.host.as_str(), port));
    match tokio::time::timeout(Duration::from_secs(5), lookup).await {
        Ok(Ok(found)) => found.map(|address| address.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Acknowledged writes per bin, from the first to the last.
pub fn write_rate(acks: &[Ack], offset_ms: u64, until_ms: u64) -> Vec<RateBin> {
    let bins = until_ms / RATE_BIN_MS + 1;
    let mut counts = vec![0u64; bins as usize];
    for ack in acks {
        let at = ack.at_ms + offset_ms;
        if let Some(bin) = counts.get_mut((at / RATE_BIN_MS) as usize) {
            *bin += 1;
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, writes)| RateBin {
            at_ms: i as u64 * RATE_BIN_MS,
            writes,
        })
        .collect()
}

/// Run one drill and write its reports.
pub async fn run(
    plan: ValidatedPlan,
    store: Store,
    options: &DrillOptions,
) -> Result<DrillReport, DrillError> {
    let drill = plan
        .drill
        .clone()
        .ok_or_else(|| DrillError::NoDrill(plan.name.clone()))?;
    let failure = options.failure.unwrap_or(drill.failure);
    if failure != DrillFailure::Planned && drill.inject.is_empty() {
        return Err(DrillError::Invalid(
            "a `crash` or `isolate` drill needs `drill.inject` in the plan".into(),
        ));
    }
    let plan = Arc::new(plan);
    let record = store.create_run(&plan, false).await?;
    let run_id = record.run_id.clone();
    let lock = match store.acquire_plan_lock(&plan.name, &run_id).await {
        Ok(lock) => lock,
        Err(error) => {
            let _ = store
                .finish_run(&run_id, RunStatus::Refused, Some(&error.to_string()))
                .await;
            return Err(error.into());
        }
    };
    let mut state = Context::initial_state(&plan);
    state.primary = drill.primary.clone();
    state.dns_points_to = drill.primary.clone();
    let mut ctx = Context::new(plan.clone(), store.clone(), run_id.clone(), true, state)?;
    ctx.phase = "drill".into();
    let mut progress = Progress::new(
        (store.clone(), run_id.clone()),
        failure,
        Instant::now(),
        unix_ms(SystemTime::now()),
    );
    let started_at = crate::whoami::now();
    let outcome = drive(&mut ctx, &drill, failure, &mut progress).await;
    ctx.drop_sessions().await;
    let _ = store.release_plan_lock(lock).await;
    let probe = match outcome {
        Ok(probe) => probe,
        Err(error) => {
            let _ = store
                .finish_run(&run_id, RunStatus::Refused, Some(&error.to_string()))
                .await;
            return Err(error);
        }
    };
    let mut report = assemble(
        &plan,
        &drill,
        failure,
        run_id.clone(),
        started_at,
        progress,
        probe,
    );
    let status = if report.status == "failed" {
        RunStatus::Failed
    } else {
        RunStatus::Completed
    };
    let _ = store.finish_run(&run_id, status, Some(report.status)).await;
    report::write_all(&mut report, &options.report_dir)?;
    history::record(&store, &report).await?;
    Ok(report)
}

/// Measurements and verdict from what the drill saw.
fn assemble(
    plan: &ValidatedPlan,
    drill: &Drill,
    failure: DrillFailure,
    drill_id: String,
    started_at: String,
    progress: Progress,
    probe: Option<(ProbeReport, Vec<Ack>, u64)>,
) -> DrillReport {
    let mut problems = progress.problems;
    let promoted_cluster = progress.promoted.as_deref().and_then(|p| plan.cluster(p));
    let failed_cluster = plan.cluster(&drill.primary);
    let rto_target = drill
        .rto
        .or_else(|| failed_cluster.and_then(|c| c.rto))
        .or_else(|| promoted_cluster.and_then(|c| c.rto));
    let rpo_target = drill
        .rpo
        .or_else(|| failed_cluster.and_then(|c| c.rpo))
        .or_else(|| promoted_cluster.and_then(|c| c.rpo));
    let rto_measured = match (progress.injected_at, progress.first_write_at) {
        (Some(injected), Some(first)) => Some(first.saturating_sub(injected)),
        _ => None,
    };
    let rto = Objective {
        measured_ms: rto_measured,
        target_ms: rto_target.map(ms),
        met: rto_measured.zip(rto_target).map(|(m, t)| m <= ms(t)),
    };
    let (mut rpo, write_rate, probe_summary) = match &probe {
        Some((report, acks, offset)) => {
            let lost_at: Vec<u64> = report
                .lost_sequences
                .iter()
                .filter_map(|seq| acks.iter().find(|a| a.seq == *seq))
                .map(|a| a.at_ms + offset)
                .collect();
            let first = lost_at.iter().min().copied();
            let last = lost_at.iter().max().copied();
            let injected = progress.injected_at.unwrap_or(0);
            let until = progress
                .timeline
                .iter()
                .map(|e| e.at_ms)
                .max()
                .unwrap_or(0)
                .max(report.elapsed_ms + offset);
            (
                Rpo {
                    lost_writes: report.lost,
                    lost_sequences: report.lost_sequences.clone(),
                    first_lost_at_ms: first,
                    last_lost_at_ms: last,
                    measured_ms: first.map_or(0, |f| injected.saturating_sub(f).max(1)),
                    target_ms: None,
                    met: None,
                },
                write_rate(acks, *offset, until),
                Some(ProbeSummary {
                    probe_id: report.probe_id.clone(),
                    rate: drill.probe_rate,
                    attempted: report.attempted,
                    acknowledged: report.acknowledged,
                    lost: report.lost,
                    duplicates: report.duplicates,
                    failed_attempts: report.failed_attempts,
                    max_unavailable_ms: report.max_unavailable_ms,
                    read_back_from: report.read_back_from.clone(),
                }),
            )
        }
        None => (
            Rpo {
                lost_writes: 0,
                lost_sequences: Vec::new(),
                first_lost_at_ms: None,
                last_lost_at_ms: None,
                measured_ms: 0,
                target_ms: None,
                met: None,
            },
            Vec::new(),
            None,
        ),
    };
    rpo.target_ms = rpo_target.map(ms);
    if probe.is_some() {
        rpo.met = rpo_target.map(|t| {
            if t.is_zero() {
                rpo.lost_writes == 0
            } else {
                rpo.measured_ms <= ms(t)
            }
        });
    }
    if let Some((report, _, _)) = &probe
        && report.duplicates > 0
    {
        problems.push(format!(
            "{} probe write(s) are present twice on the new primary",
            report.duplicates
        ));
    }
    let verified = !progress.verifications.is_empty()
        && progress
            .verifications
            .iter()
            .all(|v| v.status == "match" || v.status == "skipped");
    let failback_ok = progress.failback.as_ref().is_none_or(|f| f.error.is_none());
    let status = if !problems.is_empty() || !verified || !failback_ok || rto.measured_ms.is_none() {
        "failed"
    } else if rto.met == Some(false) || rpo.met == Some(false) {
        "missed"
    } else {
        "passed"
    };
    let elapsed_ms = ms(progress.started.elapsed());
    let mut timeline = progress.timeline;
    timeline.sort_by_key(|event| event.at_ms);
    DrillReport {
        drill_id,
        plan: plan.name.clone(),
        failure,
        primary: drill.primary.clone(),
        promoted: progress.promoted,
        status,
        started_at,
        elapsed_ms,
        rto,
        rpo,
        timeline,
        write_rate,
        probe: probe_summary,
        failover: progress.failover,
        verifications: progress.verifications,
        failback: progress.failback,
        problems,
        interrupted: None,
        reports: Vec::new(),
    }
}

/// Everything between the prechecks and the report. Returns the probe's
/// report, its acknowledgements and their offset on the drill's clock; a
/// problem after injection is recorded in `progress`, not returned.
async fn drive(
    ctx: &mut Context,
    drill: &Drill,
    failure: DrillFailure,
    progress: &mut Progress,
) -> Result<Option<(ProbeReport, Vec<Ack>, u64)>, DrillError> {
    let plan = ctx.plan.clone();
    let primary = plan
        .cluster(&drill.primary)
        .cloned()
        .ok_or_else(|| DrillError::Invalid(format!("no cluster `{}`", drill.primary)))?;

    // Prechecks: nothing is injected unless all pass.
    let baseline = {
        let (session, flavor) = ctx
            .session_and_flavor(&primary.name)
            .await
            .map_err(|e| DrillError::Precheck(e.to_string()))?;
        if control::read_only(session)
            .await
            .map_err(|e| DrillError::Precheck(e.to_string()))?
        {
            return Err(DrillError::Precheck(format!(
                "`{}` is read-only: it is not the primary this drill fails",
                primary.name
            )));
        }
        server::executed(session, flavor)
            .await
            .map_err(|e| DrillError::Precheck(e.to_string()))?
    };
    let (candidate, _) = failover::choose(ctx, &drill.dr, &primary, &baseline)
        .await
        .map_err(|e| DrillError::Precheck(e.to_string()))?;
    progress.baseline = Some(baseline.to_string());
    progress.candidate = Some(candidate.clone());
    progress.event(
        "prechecks",
        format!("`{}` is primary; `{candidate}` can take over", primary.name),
    );

    // The write probe, through the application's DNS name.
    let acks: Acks = Arc::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let probe_plan = (*plan).clone();
    let probe_options = ProbeOptions {
        duration: Duration::from_secs(30 * 60),
        rate: drill.probe_rate,
        watch_primaries: false,
        write_timeout: PROBE_WRITE_TIMEOUT,
        acks: Some(acks.clone()),
    };
    let probe_task = tokio::spawn(async move {
        probe::run(&probe_plan, &probe_options, async {
            let _ = stopped.await;
        })
        .await
    });
    let warm = Instant::now();
    // About a second of writes before the failure, for the chart's baseline.
    let baseline_writes = (drill.probe_rate as usize).clamp(5, 200);
    while acks.lock().expect("not poisoned").len() < baseline_writes {
        if probe_task.is_finished() || warm.elapsed() > Duration::from_secs(10) {
            let _ = stop.send(());
            let detail = match probe_task.await {
                Ok(Err(error)) => error.to_string(),
                _ => "no write was acknowledged within 10 s".into(),
            };
            return Err(DrillError::Precheck(format!(
                "the write probe cannot write through the application's name: {detail}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress.event("probe_started", format!("{} writes/s", drill.probe_rate));

    // Injection, detection and failover.
    let injected_index = acks.lock().expect("not poisoned").len();
    let injected_at = Instant::now();
    progress.injected_at = Some(progress.at(injected_at));
    let result = match failure {
        DrillFailure::Planned => planned(ctx, &candidate, progress, injected_at).await,
        DrillFailure::Crash | DrillFailure::Isolate => {
            unplanned(
                ctx,
                drill,
                failure,
                &primary,
                &baseline,
                progress,
                injected_at,
            )
            .await
        }
    };
    if let Err(error) = result {
        progress.problems.push(error.to_string());
    }

    // RTO: the first acknowledged write on the new primary.
    let port = plan.application.as_ref().map_or(primary.port, |a| a.port);
    let new_primary = match progress.promoted.as_deref().and_then(|p| plan.cluster(p)) {
        Some(cluster) => addresses_of(cluster, port).await,
        None => Vec::new(),
    };
    if let Some(promoted) = progress.promoted.clone() {
        let deadline = Instant::now() + FIRST_WRITE_LIMIT;
        loop {
            let found = first_write_on(
                &acks.lock().expect("not poisoned"),
                injected_index,
                &new_primary,
            );
            if found.is_some() {
                // A second of writes on the new primary, for the chart.
                tokio::time::sleep(Duration::from_secs(1)).await;
                break;
            }
            if Instant::now() >= deadline {
                progress.problems.push(format!(
                    "no write through the application's name reached `{promoted}` within {} s",
                    FIRST_WRITE_LIMIT.as_secs()
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let _ = stop.send(());
    let probe = match probe_task.await {
        Ok(Ok(report)) => Some(report),
        Ok(Err(error)) => {
            progress
                .problems
                .push(format!("the probe's read-back failed: {error}"));
            None
        }
        Err(error) => {
            progress
                .problems
                .push(format!("the probe stopped: {error}"));
            None
        }
    };
    let all_acks = acks.lock().expect("not poisoned").clone();
    let probe = probe.map(|report| {
        let offset = report
            .started_at_unix_ms
            .saturating_sub(progress.started_unix_ms);
        (report, all_acks, offset)
    });
    if let (Some((_, acks, offset)), Some(promoted)) = (&probe, progress.promoted.clone())
        && let Some(first) = first_write_on(acks, injected_index, &new_primary)
    {
        let at = first.at_ms + offset;
        progress.first_write_at = Some(at);
        progress.event_at(
            "first_write",
            at,
            format!("probe write {} on `{promoted}`", first.seq),
        );
    }

    // Verification, failback, verification.
    if let Some(promoted) = progress.promoted.clone() {
        let survivors: Vec<String> = progress
            .failover
            .as_ref()
            .map(|f| f.repointed.clone())
            .unwrap_or_else(|| {
                plan.enabled_clusters()
                    .map(|c| c.name.clone())
                    .filter(|name| *name != promoted)
                    .collect()
            });
        progress
            .verified(&plan, ("after_failover", "verified"), &promoted, &survivors)
            .await;
        if drill.rejoin {
            fail_back_and_verify(ctx, drill, failure, &primary.name, &promoted, progress).await;
        }
    }
    Ok(probe)
}

/// Rejoin the failed primary under the promoted one (and switch back, as the
/// plan asks), then checksum every cluster that carries the data.
async fn fail_back_and_verify(
    ctx: &mut Context,
    drill: &Drill,
    failure: DrillFailure,
    failed: &str,
    promoted: &str,
    progress: &mut Progress,
) {
    progress.event("failback_started", "");
    ctx.drop_sessions().await;
    let report = failback::run(ctx, drill, failure, failed, promoted, progress).await;
    let broken = report.error.is_some();
    progress.failback = Some(report);
    let now = ctx.state.primary.clone();
    if !broken {
        progress.event("failback", format!("`{now}` is primary"));
    }
    // A failed primary that could not rejoin carries no data to compare.
    let replicas: Vec<String> = ctx
        .plan
        .enabled_clusters()
        .map(|c| c.name.clone())
        .filter(|name| *name != now && (!broken || name != failed))
        .collect();
    let plan = ctx.plan.clone();
    progress
        .verified(&plan, ("after_failback", "verified_again"), &now, &replicas)
        .await;
}

/// A planned drill: the graceful switchover to the chosen DR cluster.
async fn planned(
    ctx: &mut Context,
    candidate: &str,
    progress: &mut Progress,
    injected_at: Instant,
) -> Result<(), DrillError> {
    progress.event_at(
        "injection",
        progress.at(injected_at),
        format!("planned switchover to `{candidate}`"),
    );
    let from = ctx.state.primary.clone();
    crate::engine::switchover(ctx, candidate, "drill").await?;
    // The steps journal when each finished: place promotion and DNS on the timeline.
    let events = ctx.store.events(&ctx.run_id).await.unwrap_or_default();
    for (suffix, name) in [(".promote", "promotion"), (".dns_switch", "dns_switch")] {
        let finished = events.iter().find(|e| {
            e["message"] == "ok"
                && e["step"]
                    .as_str()
                    .is_some_and(|step| step.starts_with("drill-to-") && step.ends_with(suffix))
        });
        if let Some(at) = finished
            .and_then(|e| e["at"].as_str())
            .and_then(|text| humantime::parse_rfc3339(text).ok())
        {
            let at_ms = unix_ms(at).saturating_sub(progress.started_unix_ms);
            progress.event_at(name, at_ms, format!("`{from}` → `{candidate}`"));
        }
    }
    progress.promoted = Some(candidate.to_string());
    Ok(())
}

/// A crash or isolation: inject through the hook, detect, fail over.
async fn unplanned(
    ctx: &mut Context,
    drill: &Drill,
    failure: DrillFailure,
    primary: &crate::plan::Cluster,
    baseline: &GtidSet,
    progress: &mut Progress,
    injected_at: Instant,
) -> Result<(), DrillError> {
    ctx.step = "inject".into();
    let how = if failure == DrillFailure::Crash {
        "crash"
    } else {
        "isolate"
    };
    hook::act(ctx, &drill.inject, drill.hook_timeout, Some(&primary.name)).await?;
    progress.event_at(
        "injection",
        progress.at(injected_at),
        format!("{how} `{}`: {}", primary.name, drill.inject.join(" ")),
    );
    ctx.drop_sessions().await;
    let endpoint = Endpoint::for_cluster(primary)?;
    let Some(detected) = detect(endpoint, drill.detect_after, DETECTION_LIMIT).await else {
        return Err(DrillError::Failover(format!(
            "`{}` still answers {} s after the injection: `{}` did not fail it",
            primary.name,
            DETECTION_LIMIT.as_secs(),
            drill.inject.join(" ")
        )));
    };
    progress.event_at(
        "detection",
        progress.at(detected),
        format!(
            "`{}` unreachable for {} ms",
            primary.name,
            ms(drill.detect_after)
        ),
    );
    ctx.step = "failover".into();
    let outcome = failover::run(ctx, &drill.dr, primary, baseline).await?;
    if let Some(at) = outcome.promoted_at {
        progress.event_at(
            "promotion",
            progress.at(at),
            format!("`{}` promoted", outcome.promoted),
        );
    }
    if let Some(at) = outcome.dns_switched_at {
        progress.event_at(
            "dns_switch",
            progress.at(at),
            format!("record points at `{}`", outcome.promoted),
        );
    }
    progress.promoted = Some(outcome.promoted.clone());
    progress.failover = Some(outcome);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_fall_into_quarter_second_bins_on_the_drill_clock() {
        let acks: Vec<Ack> = [10, 240, 260, 900]
            .iter()
            .enumerate()
            .map(|(i, at)| Ack {
                seq: i as u64 + 1,
                at_ms: *at,
                server: "x".into(),
            })
            .collect();
        let bins = write_rate(&acks, 100, 1_000);
        let counts: Vec<u64> = bins.iter().map(|b| b.writes).collect();
        assert_eq!(counts, vec![1, 2, 0, 0, 1]);
        assert_eq!(bins[1].at_ms, 250);
    }

    #[test]
    fn the_first_write_after_the_injection_on_the_new_primary_is_found() {
        let ack = |seq, server: &str| Ack {
            seq,
            at_ms: seq * 10,
            server: server.into(),
        };
        let acks = vec![
            ack(1, "127.0.0.11:1"),
            ack(2, "127.0.0.10:1"),
            ack(3, "127.0.0.11:1"),
        ];
        let c1 = ["127.0.0.11:1".to_string()];
        assert_eq!(first_write_on(&acks, 1, &c1).unwrap().seq, 3);
        assert!(first_write_on(&acks, 3, &c1).is_none());
    }
}
