//! The write probe: writes through the application's DNS name the way an
//! application would, records every acknowledged write, and reads them back
//! from whichever server is primary at the end. Optionally polls `read_only`
//! everywhere to catch two writable primaries.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use rand::Rng;
use serde::Serialize;

use crate::mysql::{Address, Endpoint, MysqlError, Session, control};
use crate::outcome::{ErrorKind, Outcome};
use crate::plan::ValidatedPlan;
use crate::secret::{self, SecretError};

const PROBE_DATABASE: &str = "cutover_probe";
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the plan has no `application` section: the probe writes as the application does")]
    NoApplication,
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("probe: cannot resolve {host} through {servers}: {reason}")]
    Resolve {
        host: String,
        servers: String,
        reason: String,
    },
    #[error("probe: {0}")]
    Mysql(#[from] MysqlError),
}

impl ProbeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProbeError::NoApplication | ProbeError::Secret(_) => ErrorKind::InvalidInput,
            ProbeError::Resolve { .. } | ProbeError::Mysql(_) => ErrorKind::Failed,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub duration: Duration,
    /// Writes per second.
    pub rate: u32,
    /// Also poll `read_only` on every enabled cluster.
    pub watch_primaries: bool,
    /// How long one write may take before it counts as failed.
    pub write_timeout: Duration,
    /// Every acknowledged write is also appended here as it happens (drills
    /// watch for the first write on a new primary).
    pub acks: Option<Acks>,
}

impl ProbeOptions {
    /// A write may wait behind a freeze: longer than any sane freeze budget.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(15);
}

/// One acknowledged write.
#[derive(Debug, Clone, Serialize)]
pub struct Ack {
    pub seq: u64,
    /// Since the probe started.
    pub at_ms: u64,
    /// The server (`ip:port`) the application's name resolved to.
    pub server: String,
}

/// Acknowledged writes, shared with whoever watches the probe.
pub type Acks = std::sync::Arc<std::sync::Mutex<Vec<Ack>>>;

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WritableReport {
    pub rounds: u64,
    /// Most clusters seen writable in one round.
    pub max_writable: usize,
    /// Rounds in which two or more clusters were writable.
    pub overlap_rounds: u64,
    pub overlaps: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub probe_id: String,
    /// Wall-clock start (Unix ms); `windows` are relative to it.
    pub started_at_unix_ms: u64,
    pub attempted: u64,
    pub acknowledged: u64,
    /// Acknowledged but missing from the primary at the end.
    pub lost: u64,
    /// Sequence numbers present more than once.
    pub duplicates: u64,
    /// The longest time without an acknowledged write.
    pub max_unavailable_ms: u64,
    pub failed_attempts: u64,
    /// Writes whose outcome was unknown (error or timeout) but that landed.
    pub unacknowledged_present: u64,
    pub lost_sequences: Vec<u64>,
    pub windows: Vec<Window>,
    /// The server that answered the read-back.
    pub read_back_from: String,
    pub elapsed_ms: u64,
    pub writable_primaries: Option<WritableReport>,
}

impl ProbeReport {
    /// A lost or duplicated write, or two writable clusters at once, is a data difference.
    pub fn outcome(&self) -> Outcome {
        let overlapping = self
            .writable_primaries
            .as_ref()
            .is_some_and(|writable| writable.overlap_rounds > 0);
        if self.lost > 0 || self.duplicates > 0 || overlapping {
            ErrorKind::Mismatch.into()
        } else {
            Outcome::Success
        }
    }
}

/// Resolves the application's name through the plan's own nameservers,
/// afresh on every call: a new resolver each time, so no cached answer
/// survives a reconnect.
struct NameLookup {
    host: String,
    port: u16,
    nameservers: Option<Vec<std::net::SocketAddr>>,
    servers: String,
}

impl NameLookup {
    fn new(plan: &ValidatedPlan, host: &str, port: u16) -> NameLookup {
        let nameservers = plan.dns.as_ref().map(|dns| dns.authoritative.clone());
        NameLookup {
            host: host.to_string(),
            port,
            servers: nameservers
                .as_ref()
                .map(|servers| {
                    servers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_else(|| "the system resolver".into()),
            nameservers,
        }
    }

    fn resolver(servers: &[std::net::SocketAddr]) -> Option<Resolver<TokioRuntimeProvider>> {
        let configs = servers
            .iter()
            .map(|server| {
                let mut connection = ConnectionConfig::udp();
                connection.port = server.port();
                let mut config = NameServerConfig::udp(server.ip());
                config.trust_negative_responses = false;
                config.connections = vec![connection];
                config
            })
            .collect();
        let mut builder = Resolver::builder_with_config(
            ResolverConfig::from_name_servers(configs),
            TokioRuntimeProvider::default(),
        );
        let options = builder.options_mut();
        options.timeout = Duration::from_millis(500);
        options.attempts = 2;
        builder.build().ok()
    }

    async fn resolve(&self) -> Result<String, ProbeError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(ip.to_string());
        }
        let failed = |reason: String| ProbeError::Resolve {
            host: self.host.clone(),
            servers: self.servers.clone(),
            reason,
        };
        let Some(servers) = &self.nameservers else {
            return Ok(self.host.clone());
        };
        let resolver =
            Self::resolver(servers).ok_or_else(|| failed("cannot build a resolver".into()))?;
        let fqdn = format!("{}.", self.host.trim_end_matches('.'));
        let lookup =
            tokio::time::timeout(Duration::from_secs(2), resolver.lookup_ip(fqdn.as_str()))
                .await
                .map_err(|_| failed("timed out".into()))?
                .map_err(|error| failed(error.to_string()))?;
        lookup
            .iter()
            .next()
            .map(|ip| ip.to_string())
            .ok_or_else(|| failed("no address".into()))
    }
}

struct Application {
    lookup: NameLookup,
    user: String,
    password: secret::Secret,
    write_timeout: Duration,
}

impl Application {
    async fn connect(&self) -> Result<(Session, String), ProbeError> {
        let ip = self.lookup.resolve().await?;
        let endpoint = Endpoint {
            name: "application".into(),
            address: Address::Tcp {
                host: ip.clone(),
                port: self.lookup.port,
            },
            user: self.user.clone(),
            password: Some(self.password.clone()),
            connect_timeout: CONNECT_TIMEOUT,
            query_timeout: self.write_timeout,
            tls: None,
        };
        Ok((
            Session::connect(&endpoint).await?,
            format!("{ip}:{}", self.lookup.port),
        ))
    }
}

/// Run the probe until `duration` passes or `stop` completes, then read back.
pub async fn run(
    plan: &ValidatedPlan,
    options: &ProbeOptions,
    stop: impl Future<Output = ()>,
) -> Result<ProbeReport, ProbeError> {
    let app = plan.application.as_ref().ok_or(ProbeError::NoApplication)?;
    let application = Application {
        lookup: NameLookup::new(plan, &app.host, app.port),
        user: app.user.clone(),
        password: secret::resolve(&app.password, "application password")?,
        write_timeout: options.write_timeout,
    };
    let probe_id = format!("{:08x}", rand::rng().random::<u32>());
    let (mut session, first_server) = application.connect().await?;
    create_table(&mut session).await?;

    let stop_watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = options.watch_primaries.then(|| {
        tokio::spawn(watch_primaries(
            plan.clone(),
            options.duration + Duration::from_secs(60),
            stop_watching.clone(),
        ))
    });

    let started = Instant::now();
    let started_at_unix_ms =
        u64::try_from(crate::mysql::server::unix_micros_now() / 1000).unwrap_or(0);
    let interval = Duration::from_secs_f64(1.0 / f64::from(options.rate.max(1)));
    let deadline = started + options.duration;
    let mut acknowledged: Vec<(u64, Duration)> = Vec::new();
    let mut unknown: Vec<u64> = Vec::new();
    let mut attempted = 0u64;
    let mut failed = 0u64;
    let mut current = Some((session, first_server));
    let mut next_at = Instant::now();
    tokio::pin!(stop);
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if next_at > now {
            tokio::select! {
                _ = tokio::time::sleep_until(next_at.into()) => {}
                _ = &mut stop => break,
            }
        }
        next_at = Instant::now().max(next_at) + interval;
        let (mut session, server) = match current.take() {
            Some(current) => current,
            None => match application.connect().await {
                Ok((mut session, server)) => {
                    // A new primary may never have received the table (its
                    // creation was lost with the old one); a failure here
                    // shows up as a failed write.
                    let _ = create_table(&mut session).await;
                    (session, server)
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        attempted += 1;
        let seq = attempted;
        let sql = format!(
            "INSERT INTO {PROBE_DATABASE}.writes (probe_id, seq, written_at_us) VALUES ('{probe_id}', {seq}, {})",
            crate::mysql::server::unix_micros_now()
        );
        match session.exec("probe write", &sql).await {
            Ok(()) => {
                let at = started.elapsed();
                acknowledged.push((seq, at));
                if let Some(acks) = &options.acks {
                    acks.lock().expect("not poisoned").push(Ack {
                        seq,
                        at_ms: millis(at),
                        server: server.clone(),
                    });
                }
                current = Some((session, server));
            }
            Err(_) => {
                failed += 1;
                unknown.push(seq);
                session.close().await;
            }
        }
    }
    let elapsed = started.elapsed();
    if let Some((session, _)) = current.take() {
        session.close().await;
    }

    // Read back from whoever is primary now (a few tries: DNS may be mid-switch).
    let mut read_back = None;
    for _ in 0..50 {
        if let Ok((mut session, address)) = application.connect().await {
            let rows: Result<Vec<(u64, u64)>, _> = session
                .query(
                    "read back the probe's writes",
                    &format!(
                        "SELECT seq, COUNT(*) FROM {PROBE_DATABASE}.writes WHERE probe_id = '{probe_id}' GROUP BY seq"
                    ),
                )
                .await;
            let read_only = control::read_only(&mut session).await.unwrap_or(true);
            session.close().await;
            if let Ok(rows) = rows
                && !read_only
            {
                read_back = Some((rows, address));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (rows, address) = read_back.ok_or_else(|| {
        ProbeError::Mysql(MysqlError::Connect {
            cluster: "application".into(),
            address: format!("{}:{}", app.host, app.port),
            reason: "no writable primary answered the read-back within 10 s".into(),
        })
    })?;
    let present: HashMap<u64, u64> = rows.into_iter().collect();
    let lost_sequences: Vec<u64> = acknowledged
        .iter()
        .map(|(seq, _)| *seq)
        .filter(|seq| !present.contains_key(seq))
        .collect();
    let duplicates = present.values().filter(|count| **count > 1).count() as u64;
    let unacknowledged_present = unknown
        .iter()
        .filter(|seq| present.contains_key(seq))
        .count() as u64;
    let (max_unavailable_ms, windows) = unavailability(&acknowledged, elapsed, interval);
    stop_watching.store(true, std::sync::atomic::Ordering::SeqCst);
    let writable_primaries = match watcher {
        Some(handle) => handle.await.ok(),
        None => None,
    };
    Ok(ProbeReport {
        probe_id,
        started_at_unix_ms,
        attempted,
        acknowledged: acknowledged.len() as u64,
        lost: lost_sequences.len() as u64,
        duplicates,
        max_unavailable_ms,
        failed_attempts: failed,
        unacknowledged_present,
        lost_sequences,
        windows,
        read_back_from: address,
        elapsed_ms: millis(elapsed),
        writable_primaries,
    })
}

async fn create_table(session: &mut Session) -> Result<(), MysqlError> {
    session
        .exec(
            "create the probe table",
            &format!(
                "CREATE DATABASE IF NOT EXISTS {PROBE_DATABASE}; \
                 CREATE TABLE IF NOT EXISTS {PROBE_DATABASE}.writes ( \
                   id BIGINT AUTO_INCREMENT PRIMARY KEY, probe_id CHAR(8) NOT NULL, \
                   seq BIGINT NOT NULL, written_at_us BIGINT NOT NULL, KEY (probe_id, seq))"
            ),
        )
        .await
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The longest stretch without an acknowledgement (from the start, between
/// acknowledgements, and to the end), and every stretch over 3 intervals.
pub fn unavailability(
    acknowledged: &[(u64, Duration)],
    elapsed: Duration,
    interval: Duration,
) -> (u64, Vec<Window>) {
    let mut times: Vec<Duration> = acknowledged.iter().map(|(_, at)| *at).collect();
    times.sort();
    let mut edges = vec![Duration::ZERO];
    edges.extend(times);
    edges.push(elapsed.max(*edges.last().expect("not empty")));
    let mut longest = 0;
    let mut windows = Vec::new();
    for pair in edges.windows(2) {
        let gap = millis(pair[1] - pair[0]);
        longest = longest.max(gap);
        if pair[1] - pair[0] > interval * 3 {
            windows.push(Window {
                start_ms: millis(pair[0]),
                end_ms: millis(pair[1]),
                duration_ms: gap,
            });
        }
    }
    (longest, windows)
}

/// Whether a polled cluster takes writes of the application's data: writable
/// and holding the application's database. An empty cluster that is writable
/// (a target before its snapshot) is no second primary: it has nothing to diverge.
///
/// `scoped`: the plan fences only its databases (`scope: databases`), so a
/// writable server whose copy of the database is fenced does not count.
async fn writable_with_data(
    session: &mut Session,
    database: Option<&str>,
    scoped: bool,
) -> Result<bool, MysqlError> {
    if control::read_only(session).await? {
        return Ok(false);
    }
    let Some(database) = database else {
        return Ok(true);
    };
    if scoped {
        let flavor = crate::mysql::server::flavor(session).await?;
        if crate::mysql::scope::is_fenced(session, flavor, database).await? {
            return Ok(false);
        }
    }
    let holds: Option<u64> = session
        .query_first(
            "look for the application's database",
            &format!(
                "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
                crate::mysql::quote(database)
            ),
        )
        .await?;
    Ok(holds.unwrap_or(0) > 0)
}

/// Poll every enabled cluster, all at once, every 20 ms, until `stop` is set
/// (or `limit` passes), for clusters that take writes of the application's data.
async fn watch_primaries(
    plan: ValidatedPlan,
    limit: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> WritableReport {
    let mut endpoints = Vec::new();
    for cluster in plan.enabled_clusters() {
        if let Ok(endpoint) = Endpoint::for_cluster(cluster) {
            endpoints.push(endpoint);
        }
    }
    let mut sessions: BTreeMap<String, Option<Session>> =
        endpoints.iter().map(|e| (e.name.clone(), None)).collect();
    let mut report = WritableReport {
        rounds: 0,
        max_writable: 0,
        overlap_rounds: 0,
        overlaps: Vec::new(),
    };
    let database = plan.application.as_ref().map(|app| app.database.clone());
    let database = database.as_deref();
    let scoped = plan.scope == crate::plan::Scope::Databases;
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    while started.elapsed() < limit && !stop.load(std::sync::atomic::Ordering::SeqCst) {
        ticker.tick().await;
        let polls = endpoints.iter().map(|endpoint| {
            let session = sessions.get_mut(&endpoint.name).and_then(Option::take);
            async move {
                let mut session = match session {
                    Some(session) => session,
                    None => match Session::connect(endpoint).await {
                        Ok(session) => session,
                        Err(_) => return (endpoint.name.clone(), None, None),
                    },
                };
                match writable_with_data(&mut session, database, scoped).await {
                    Ok(writable) => (endpoint.name.clone(), Some(!writable), Some(session)),
                    Err(_) => (endpoint.name.clone(), None, None),
                }
            }
        });
        let results = futures_util::future::join_all(polls).await;
        let mut writable = Vec::new();
        for (name, read_only, session) in results {
            if read_only == Some(false) {
                writable.push(name.clone());
            }
            sessions.insert(name, session);
        }
        report.rounds += 1;
        report.max_writable = report.max_writable.max(writable.len());
        if writable.len() > 1 {
            report.overlap_rounds += 1;
            if report.overlaps.len() < 20 {
                report.overlaps.push(format!(
                    "{} ms: {} writable",
                    started.elapsed().as_millis(),
                    writable.join(", ")
                ));
            }
        }
    }
    for session in sessions.into_values().flatten() {
        session.close().await;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_counts_from_the_start_and_to_the_end() {
        let ms = Duration::from_millis;
        let acks = [(1, ms(10)), (2, ms(20)), (3, ms(400)), (4, ms(410))];
        let (longest, windows) = unavailability(&acks, ms(430), ms(10));
        assert_eq!(longest, 380);
        assert_eq!(windows.len(), 1);
        assert_eq!((windows[0].start_ms, windows[0].end_ms), (20, 400));
        let (none, _) = unavailability(&[], ms(250), ms(10));
        assert_eq!(none, 250);
    }
}
