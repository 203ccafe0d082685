//! Replication lag that never trusts a server clock.
//!
//! The orchestrator writes a sequence-numbered heartbeat row on the source
//! every interval and remembers its own monotonic time for each sequence. A
//! replica that has applied sequence `s` has applied every write committed on
//! the source before `s` was sent, so `now − sent(s)` is an upper bound of its
//! lag, measured on one clock. The row also carries this host's wall-clock
//! time, so a replica whose newest heartbeat came from an earlier process (one
//! that stopped applying long ago) still gets a true value from the same
//! host's clock. Server clocks appear only in `timestamp_lag_ms`, the
//! pt-heartbeat-style figure shown for contrast.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::mysql::gtid::{self, Flavor, GtidSet};
use crate::mysql::server::{self, unix_micros_now};
use crate::mysql::{ClusterPool, Endpoint, MysqlError, Session, control, quote};
use crate::outcome::{ErrorKind, Outcome};
use crate::plan::ValidatedPlan;
use crate::secret::SecretError;

const TABLE: &str = "cutover.heartbeat";
/// How long sent times are remembered; older sequences fall back to the row's host time.
const SENT_MEMORY: Duration = Duration::from_secs(600);

/// How a lag value was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LagBasis {
    /// This process's monotonic clock at both ends.
    Monotonic,
    /// This host's wall clock at both ends (a heartbeat from an earlier run on this host).
    HostClock,
}

/// The latest measurement for one target.
#[derive(Debug, Clone, Serialize)]
pub struct LagSample {
    pub name: String,
    pub lag_ms: Option<f64>,
    pub basis: Option<LagBasis>,
    pub transactions_behind: Option<u64>,
    /// Replica clock minus source clock at write time (what pt-heartbeat reports).
    pub timestamp_lag_ms: Option<f64>,
    /// The server's own `Seconds_Behind_Master`.
    pub seconds_behind_source: Option<u64>,
    pub error: Option<String>,
    #[serde(skip)]
    measured_at: Option<Instant>,
}

impl LagSample {
    fn empty(name: &str) -> LagSample {
        LagSample {
            name: name.to_string(),
            lag_ms: None,
            basis: None,
            transactions_behind: None,
            timestamp_lag_ms: None,
            seconds_behind_source: None,
            error: None,
            measured_at: None,
        }
    }

    /// The lag now. A fresh measurement (within two poll periods) stands as
    /// taken; a stale one (a poll that hangs) can only have grown since.
    fn aged(&self, poll: Duration) -> LagSample {
        let mut sample = self.clone();
        if let (Some(lag), Some(at)) = (sample.lag_ms, sample.measured_at) {
            let stale = at.elapsed().saturating_sub(poll * 2);
            sample.lag_ms = Some(round(lag + stale.as_secs_f64() * 1e3));
        }
        sample
    }
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// Replicas are polled twice per heartbeat, so a value is at most half an interval old.
fn poll_period(interval: Duration) -> Duration {
    (interval / 2).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

/// GTID positions and the server's own status are read less often than the heartbeat.
const STATUS_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("heartbeat on the source: {0}")]
    Heartbeat(MysqlError),
    /// Our account writes through `read_only`, so a heartbeat on a replica
    /// would be an errant transaction there: refuse instead.
    #[error("no single writable primary to write the heartbeat on ({0})")]
    NoPrimary(String),
}

impl LagError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            LagError::Secret(_) => ErrorKind::InvalidInput,
            LagError::NoPrimary(_) => ErrorKind::Refused,
            LagError::Heartbeat(_) => ErrorKind::Failed,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            LagError::Heartbeat(_) => {
                Some("the orchestrator account needs CREATE and INSERT on `cutover`.*".into())
            }
            LagError::NoPrimary(_) => Some("see `cutover topology PLAN`".into()),
            LagError::Secret(_) => None,
        }
    }

    pub fn cluster(&self) -> Option<&str> {
        match self {
            LagError::Heartbeat(error) => Some(error.cluster()),
            _ => None,
        }
    }
}

/// Heartbeat send times, by sequence.
#[derive(Default)]
struct SentLog {
    sent: BTreeMap<u64, Instant>,
    last_error: Option<String>,
}

struct Shared {
    writer_id: u64,
    host: String,
    sent: Mutex<SentLog>,
    paused: std::sync::atomic::AtomicBool,
    samples: Mutex<Vec<LagSample>>,
    source_executed: Mutex<Option<(Flavor, GtidSet)>>,
}

/// A running heartbeat writer plus one poller per target. Dropping it stops them.
pub struct LagMonitor {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
    pub source: String,
    pub interval: Duration,
}

/// The plan's source while it is writable; otherwise the one writable enabled
/// cluster, or an error naming what was found.
async fn live_primary(plan: &ValidatedPlan) -> Result<String, LagError> {
    let mut writable = Vec::new();
    for cluster in plan.enabled_clusters() {
        let endpoint = Endpoint::for_cluster(cluster)?;
        let Ok(mut session) = Session::connect(&endpoint).await else {
            continue;
        };
        let read_only = control::read_only(&mut session).await;
        session.close().await;
        if let Ok(false) = read_only {
            if cluster.name == plan.source().name {
                return Ok(cluster.name.clone());
            }
            writable.push(cluster.name.clone());
        }
    }
    match writable.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(LagError::NoPrimary(
            "every reachable cluster is read-only".into(),
        )),
        many => Err(LagError::NoPrimary(format!(
            "the source is read-only and {} are writable",
            many.join(", ")
        ))),
    }
}

impl LagMonitor {
    /// Measure from the live primary: the plan's source while it is writable,
    /// else the one writable cluster (after a switchover).
    pub async fn start(plan: &ValidatedPlan, interval: Duration) -> Result<LagMonitor, LagError> {
        let primary = live_primary(plan).await?;
        LagMonitor::start_from(plan, &primary, interval).await
    }

    /// Create the heartbeat table on `primary` if needed and start writing
    /// there and polling every other enabled cluster.
    pub async fn start_from(
        plan: &ValidatedPlan,
        primary: &str,
        interval: Duration,
    ) -> Result<LagMonitor, LagError> {
        let source_cluster = plan
            .enabled_clusters()
            .find(|c| c.name == primary)
            .ok_or_else(|| LagError::NoPrimary(format!("`{primary}` is not an enabled cluster")))?;
        // Pools are sized from the plan; the source needs two (writer and position reader).
        let source = Arc::new(ClusterPool::new(
            Endpoint::for_cluster(source_cluster)?,
            source_cluster.pool.max.max(2),
        ));
        let targets: Vec<Arc<ClusterPool>> = plan
            .enabled_clusters()
            .filter(|cluster| cluster.name != primary)
            .map(|cluster| {
                Ok(Arc::new(ClusterPool::new(
                    Endpoint::for_cluster(cluster)?,
                    cluster.pool.max,
                )))
            })
            .collect::<Result<_, SecretError>>()?;
        let mut writer = source.session().await.map_err(LagError::Heartbeat)?;
        if control::read_only(&mut writer)
            .await
            .map_err(LagError::Heartbeat)?
        {
            return Err(LagError::NoPrimary(format!("`{primary}` is read-only")));
        }
        create_table(&mut writer)
            .await
            .map_err(LagError::Heartbeat)?;
        let shared = Arc::new(Shared {
            writer_id: rand::random::<u64>() >> 1,
            host: crate::whoami::hostname(),
            sent: Mutex::new(SentLog::default()),
            paused: std::sync::atomic::AtomicBool::new(false),
            samples: Mutex::new(
                targets
                    .iter()
                    .map(|t| LagSample::empty(&t.endpoint().name))
                    .collect(),
            ),
            source_executed: Mutex::new(None),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(write_heartbeats(
            writer,
            Arc::clone(&source),
            Arc::clone(&shared),
            interval,
        ));
        tasks.spawn(watch_source(source, Arc::clone(&shared), interval));
        for (index, target) in targets.into_iter().enumerate() {
            tasks.spawn(poll_target(target, index, Arc::clone(&shared), interval));
        }
        Ok(LagMonitor {
            shared,
            tasks,
            source: source_cluster.name.clone(),
            interval,
        })
    }

    /// Every target's latest measurement, aged to now.
    pub fn snapshot(&self) -> Vec<LagSample> {
        let poll = poll_period(self.interval);
        lock(&self.shared.samples)
            .iter()
            .map(|sample| sample.aged(poll))
            .collect()
    }

    /// The heartbeat writer's latest error, if its last write failed.
    pub fn writer_error(&self) -> Option<String> {
        lock(&self.shared.sent).last_error.clone()
    }

    /// Stop writing heartbeats (pollers go on), so GTID positions can settle.
    pub fn pause_writer(&self) {
        self.shared
            .paused
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stop every task now.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn create_table(session: &mut Session) -> Result<(), MysqlError> {
    session
        .exec(
            "create the heartbeat schema",
            "CREATE DATABASE IF NOT EXISTS cutover",
        )
        .await?;
    session
        .exec(
            "create the heartbeat table",
            "CREATE TABLE IF NOT EXISTS cutover.heartbeat (\
               writer_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,\
               host VARCHAR(255) NOT NULL,\
               seq BIGINT UNSIGNED NOT NULL,\
               written_at_us BIGINT NOT NULL,\
               source_ts DATETIME(6) NOT NULL,\
               KEY by_host (host, written_at_us)\
             ) ENGINE=InnoDB",
        )
        .await
}

async fn write_heartbeats(
    mut session: Session,
    pool: Arc<ClusterPool>,
    shared: Arc<Shared>,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let host = quote(&shared.host);
    let mut seq: u64 = 0;
    loop {
        ticker.tick().await;
        if shared.paused.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        seq += 1;
        // The send time is taken before the write: everything committed before
        // it is ordered before this heartbeat in the binary log.
        let sent = Instant::now();
        {
            let mut log = lock(&shared.sent);
            log.sent.insert(seq, sent);
            while log
                .sent
                .first_key_value()
                .is_some_and(|(_, at)| at.elapsed() > SENT_MEMORY)
            {
                log.sent.pop_first();
            }
        }
        let sql = format!(
            "INSERT INTO {TABLE} (writer_id, host, seq, written_at_us, source_ts) \
             VALUES ({id}, {host}, {seq}, {now}, NOW(6)) \
             ON DUPLICATE KEY UPDATE seq = VALUES(seq), written_at_us = VALUES(written_at_us), \
             source_ts = VALUES(source_ts)",
            id = shared.writer_id,
            now = unix_micros_now(),
        );
        let result = session.exec("write a heartbeat", &sql).await;
        let failed = result.is_err();
        lock(&shared.sent).last_error = result.err().map(|e| e.to_string());
        if failed {
            // Reconnect within the cluster's connect timeout; the ticker bounds the retries.
            if let Ok(fresh) = pool.session().await {
                session = fresh;
            }
        }
    }
}

async fn watch_source(pool: Arc<ClusterPool>, shared: Arc<Shared>, interval: Duration) {
    let mut session: Option<(Session, Flavor)> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        if session.is_none() {
            session = connect_with_flavor(&pool).await.ok();
        }
        let Some((conn, flavor)) = session.as_mut() else {
            continue;
        };
        match server::executed(conn, *flavor).await {
            Ok(set) => *lock(&shared.source_executed) = Some((*flavor, set)),
            Err(_) => session = None,
        }
    }
}

async fn connect_with_flavor(pool: &ClusterPool) -> Result<(Session, Flavor), MysqlError> {
    let mut session = pool.session().await?;
    let flavor = server::flavor(&mut session).await?;
    Ok((session, flavor))
}

async fn poll_target(
    pool: Arc<ClusterPool>,
    index: usize,
    shared: Arc<Shared>,
    interval: Duration,
) {
    let mut session: Option<(Session, Flavor)> = None;
    let mut ticker = tokio::time::interval(poll_period(interval));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut status_read: Option<Instant> = None;
    let mut status = Status::default();
    loop {
        ticker.tick().await;
        if session.is_none() {
            match connect_with_flavor(&pool).await {
                Ok(connected) => session = Some(connected),
                Err(error) => {
                    lock(&shared.samples)[index].error = Some(error.to_string());
                    continue;
                }
            }
        }
        let (conn, flavor) = session.as_mut().expect("connected above");
        if status_read.is_none_or(|at| at.elapsed() >= STATUS_EVERY) {
            match read_status(conn, *flavor, &shared).await {
                Ok(fresh) => status = fresh,
                Err(error) => {
                    lock(&shared.samples)[index].error = Some(error.to_string());
                    session = None;
                    continue;
                }
            }
            status_read = Some(Instant::now());
        }
        match measure(conn, &shared).await {
            Ok(mut sample) => {
                sample.transactions_behind = status.transactions_behind;
                sample.seconds_behind_source = status.seconds_behind_source;
                lock(&shared.samples)[index] = sample;
            }
            Err(error) => {
                lock(&shared.samples)[index].error = Some(error.to_string());
                session = None;
            }
        }
    }
}

#[derive(Default)]
struct Status {
    transactions_behind: Option<u64>,
    seconds_behind_source: Option<u64>,
}

async fn read_status(
    session: &mut Session,
    flavor: Flavor,
    shared: &Shared,
) -> Result<Status, MysqlError> {
    // The source's position is read before the replica's, so a transaction
    // counted as missing was committed on the source before we looked.
    let source = lock(&shared.source_executed).clone();
    let executed = server::executed(session, flavor).await?;
    let channel = server::replication(session, flavor)
        .await?
        .into_iter()
        .next();
    Ok(Status {
        transactions_behind: source.map(|(source_flavor, source_set)| {
            gtid::transactions_behind(source_flavor, &executed, &source_set)
        }),
        seconds_behind_source: channel.and_then(|c| c.seconds_behind_source),
    })
}

async fn measure(session: &mut Session, shared: &Shared) -> Result<LagSample, MysqlError> {
    let name = session.endpoint().name.clone();
    let row: Option<(u64, u64, i64, Option<i64>)> = match session
        .query_first(
            "read the heartbeat",
            &format!(
                "SELECT writer_id, seq, written_at_us, \
                 TIMESTAMPDIFF(MICROSECOND, source_ts, NOW(6)) FROM {TABLE} \
                 WHERE writer_id = {id} OR host = {host} \
                 ORDER BY writer_id = {id} DESC, written_at_us DESC LIMIT 1",
                id = shared.writer_id,
                host = quote(&shared.host),
            ),
        )
        .await
    {
        Ok(row) => row,
        // The table has not reached this replica (error 1146): no heartbeat yet.
        Err(error) if error.is_server_error(&[1146]) => None,
        Err(error) => return Err(error),
    };
    let now = Instant::now();
    let mut sample = LagSample::empty(&name);
    sample.measured_at = Some(now);
    match row {
        None => {
            sample.error = Some("no heartbeat from this host has reached it yet".to_string());
        }
        Some((writer_id, seq, written_at_us, timestamp_lag_us)) => {
            sample.timestamp_lag_ms = timestamp_lag_us.map(|us| round(us as f64 / 1e3));
            let sent = (writer_id == shared.writer_id)
                .then(|| lock(&shared.sent).sent.get(&seq).copied())
                .flatten();
            match sent {
                Some(sent) => {
                    sample.lag_ms = Some(round(now.duration_since(sent).as_secs_f64() * 1e3));
                    sample.basis = Some(LagBasis::Monotonic);
                }
                None => {
                    let lag_us = (unix_micros_now() - written_at_us).max(0);
                    sample.lag_ms = Some(round(lag_us as f64 / 1e3));
                    sample.basis = Some(LagBasis::HostClock);
                }
            }
        }
    }
    Ok(sample)
}

/// A one-shot measurement: heartbeats run until every target has shown one
/// of ours (or `settle` passes, for targets that are not applying), then the
/// writer pauses so transaction counts settle.
pub async fn measure_once(
    plan: &ValidatedPlan,
    interval: Duration,
    settle: Duration,
) -> Result<(Vec<LagSample>, Option<String>), LagError> {
    let monitor = LagMonitor::start(plan, interval).await?;
    let deadline = Instant::now() + settle;
    loop {
        tokio::time::sleep(interval).await;
        let samples = monitor.snapshot();
        let settled = samples
            .iter()
            .all(|sample| sample.basis == Some(LagBasis::Monotonic));
        if settled || Instant::now() >= deadline {
            break;
        }
    }
    let lags = monitor.snapshot();
    monitor.pause_writer();
    tokio::time::sleep(interval * 2 + STATUS_EVERY * 2).await;
    let settled = monitor.snapshot();
    let writer_error = monitor.writer_error();
    monitor.stop().await;
    let samples = lags
        .into_iter()
        .zip(settled)
        .map(|(mut lag, later)| {
            lag.transactions_behind = later.transactions_behind;
            lag.error = lag.error.or(later.error);
            lag
        })
        .collect();
    Ok((samples, writer_error))
}

/// What the lag gate needs: every target under `max_lag` for `sustained_for`.
#[derive(Debug, Clone, Copy)]
pub struct LagGate {
    pub max_lag: Duration,
    pub sustained_for: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Laggard {
    pub name: String,
    pub lag_ms: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub enum GateOutcome {
    Passed {
        waited_ms: u64,
    },
    Refused {
        waited_ms: u64,
        laggards: Vec<Laggard>,
    },
}

impl GateOutcome {
    pub fn outcome(&self) -> Outcome {
        match self {
            GateOutcome::Passed { .. } => Outcome::Success,
            GateOutcome::Refused { .. } => ErrorKind::Refused.into(),
        }
    }
}

/// Wait until every target has stayed under the limit for the whole window,
/// or refuse at the timeout naming those that did not.
pub async fn wait_for(monitor: &LagMonitor, gate: LagGate) -> GateOutcome {
    let started = Instant::now();
    let max_ms = gate.max_lag.as_secs_f64() * 1e3;
    let mut under_since: Vec<Option<Instant>> = Vec::new();
    let mut ticker = tokio::time::interval(monitor.interval);
    let waiting = crate::progress::Waiting::start("lag gate", gate.timeout);
    let outcome = loop {
        ticker.tick().await;
        let now = Instant::now();
        let samples = monitor.snapshot();
        under_since.resize(samples.len(), None);
        for (since, sample) in under_since.iter_mut().zip(&samples) {
            let under = sample.lag_ms.is_some_and(|lag| lag <= max_ms);
            *since = if under { since.or(Some(now)) } else { None };
        }
        waiting.update(&gate_status(
            &samples,
            &under_since,
            max_ms,
            gate.sustained_for,
            now,
        ));
        let waited_ms = started.elapsed().as_millis() as u64;
        if under_since
            .iter()
            .all(|since| since.is_some_and(|at| now.duration_since(at) >= gate.sustained_for))
        {
            break GateOutcome::Passed { waited_ms };
        }
        if started.elapsed() >= gate.timeout {
            let laggards = samples
                .into_iter()
                .zip(&under_since)
                .filter(|(_, since)| {
                    !since.is_some_and(|at| now.duration_since(at) >= gate.sustained_for)
                })
                .map(|(sample, _)| Laggard {
                    name: sample.name,
                    lag_ms: sample.lag_ms,
                    error: sample.error,
                })
                .collect();
            break GateOutcome::Refused {
                waited_ms,
                laggards,
            };
        }
    };
    waiting.finish();
    outcome
}

/// One line for the wait: how many targets are under the limit, for how long
/// the slowest of them has been, and the worst lag.
fn gate_status(
    samples: &[LagSample],
    under_since: &[Option<Instant>],
    max_ms: f64,
    sustained_for: Duration,
    now: Instant,
) -> String {
    let under = under_since.iter().filter(|since| since.is_some()).count();
    let worst = samples
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.lag_ms?)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let held = under_since
        .iter()
        .map(|since| since.map_or(Duration::ZERO, |at| now.duration_since(at)))
        .min()
        .unwrap_or_default();
    format!(
        "{under}/{} under {max_ms:.0} ms, held {:.1}/{:.1} s{}",
        samples.len(),
        held.as_secs_f64(),
        sustained_for.as_secs_f64(),
        worst
            .map(|(name, lag)| format!("; worst `{name}` {lag:.0} ms"))
            .unwrap_or_default()
    )
}
