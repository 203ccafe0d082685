//! What steps share during a run: connections, the live fence, the
//! switchover state that the journal carries across a crash.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::dns::TsigKey;
use crate::mysql::control;
use crate::mysql::{Endpoint, Flavor, MysqlError, Session};
use crate::plan::ValidatedPlan;
use crate::secret::{self, Secret, SecretError};
use crate::store::{AuditEntry, LeaseKeeper, PlanLock, Store};

/// Who holds what, as of the last completed step. Journaled with every step
/// so `resume` and `rollback` can rebuild it from the state store alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SwitchState {
    /// The cluster that takes writes (or will, once unfrozen).
    pub primary: String,
    /// The cluster the DNS record points at.
    pub dns_points_to: String,
    /// Set by the last freeze.
    pub frozen: Option<Frozen>,
    /// The cluster that was primary before the last promotion.
    pub previous_primary: Option<String>,
    /// The GTID position of the last snapshot, where `replicate` starts the targets.
    #[serde(default)]
    pub snapshot_position: Option<String>,
}

impl SwitchState {
    /// The state a step leaves when it succeeds, as far as roles go: what the
    /// dry run and the runbook describe the next step from.
    pub fn after(&self, kind: &crate::plan::StepKind) -> SwitchState {
        use crate::plan::{StepKind, kinds};
        let mut next = self.clone();
        match kind {
            StepKind::Promote(kinds::Promote { cluster }) if *cluster != self.primary => {
                next.previous_primary = Some(self.primary.clone());
                next.primary = cluster.clone();
            }
            StepKind::DnsSwitch(kinds::DnsSwitch { to, .. }) => next.dns_points_to = to.clone(),
            _ => {}
        }
        next
    }
}

/// Sessions a step ended on a demoted primary.
#[derive(Debug, Clone, Serialize)]
pub struct EndedSessions {
    pub step: String,
    pub cluster: String,
    pub sessions: usize,
}

/// The source's position while writes were fenced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Frozen {
    pub cluster: String,
    /// As the server prints it (MariaDB `gtid_binlog_pos`, MySQL `gtid_executed`):
    /// what replicas wait for and start from.
    pub position: String,
    /// Every executed transaction, for errant and reached checks.
    pub executed: String,
    /// Set when only some databases were fenced (`scope: databases`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<FenceScope>,
}

/// What a scoped fence covers: the databases, and the accounts of the
/// applications writing them (whose sessions it may end).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FenceScope {
    pub databases: Vec<String>,
    pub accounts: Vec<String>,
}

impl FenceScope {
    /// A session of one of the fenced applications, or one using a fenced database.
    pub fn covers(&self, client: &control::ClientSession) -> bool {
        self.accounts.contains(&client.user)
            || client
                .db
                .as_ref()
                .is_some_and(|db| self.databases.contains(db))
    }
}

/// The write fence: a global read lock held on one connection. Losing the
/// connection (a crash, a kill, the server's `wait_timeout`) releases it, and
/// the watchdog releases it at the budget unless promotion committed to it.
pub struct Fence {
    pub cluster: String,
    pub session: Session,
    pub connection_id: u64,
    /// When the lock was requested: writers wait from then, so the budget
    /// and the freeze's length count from it.
    pub writes_held_since: Instant,
    pub budget: Duration,
    committed: Arc<AtomicBool>,
    expired: Arc<AtomicBool>,
    watchdog: tokio::task::JoinHandle<()>,
}

impl Fence {
    pub fn new(
        cluster: String,
        session: Session,
        connection_id: u64,
        writes_held_since: Instant,
        budget: Duration,
    ) -> Fence {
        let committed = Arc::new(AtomicBool::new(false));
        let expired = Arc::new(AtomicBool::new(false));
        let endpoint = session.endpoint().clone();
        let watchdog = {
            let committed = committed.clone();
            let expired = expired.clone();
            let cluster = cluster.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until((writes_held_since + budget).into()).await;
                if committed.load(Ordering::SeqCst) {
                    return;
                }
                expired.store(true, Ordering::SeqCst);
                tracing::warn!(
                    "freeze budget of {} ms on `{cluster}` ran out: releasing the fence",
                    budget.as_millis()
                );
                // Bounded retries: the server's wait_timeout is the last resort.
                for _ in 0..3 {
                    if let Ok(mut killer) = Session::connect(&endpoint).await {
                        let killed = control::kill_connection(&mut killer, connection_id).await;
                        killer.close().await;
                        if killed.is_ok() {
                            return;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Fence {
            cluster,
            session,
            connection_id,
            writes_held_since,
            budget,
            committed,
            expired,
            watchdog,
        }
    }

    /// Promotion is about to make the fence persistent: the watchdog stands down.
    /// `false` if the budget already ran out.
    pub fn commit(&self) -> bool {
        self.committed.store(true, Ordering::SeqCst);
        !self.expired.load(Ordering::SeqCst)
    }

    pub fn remaining(&self) -> Duration {
        self.budget.saturating_sub(self.writes_held_since.elapsed())
    }

    /// Drop the lock and the connection. Never fails: a dead connection has no lock.
    pub async fn release(mut self) -> Duration {
        self.committed.store(true, Ordering::SeqCst);
        self.watchdog.abort();
        let held = self.writes_held_since.elapsed();
        let _ = self
            .session
            .exec_within(
                Duration::from_secs(2),
                "release the global read lock",
                "UNLOCK TABLES",
            )
            .await;
        self.session.close().await;
        held
    }
}

/// A step's environment.
pub struct Context {
    pub plan: Arc<ValidatedPlan>,
    pub store: Store,
    pub run_id: String,
    pub phase: String,
    pub step: String,
    pub yes: bool,
    pub state: SwitchState,
    pub fence: Option<Fence>,
    /// When the last freeze requested its lock (for `write_freeze_ms`).
    pub freeze_started: Option<Instant>,
    pub write_freeze_ms: Option<u64>,
    /// A checksum step found rows or totals that differ (exit 4).
    pub data_mismatch: bool,
    /// Client sessions ended on demoted primaries, step by step.
    pub sessions_ended: Vec<EndedSessions>,
    /// Every replication link a step started, as it was proven running.
    pub replication_links: Vec<crate::mysql::link::LinkState>,
    /// The step about to run was interrupted and is being continued (`cutover
    /// resume`): it picks up from what it journaled instead of starting over.
    pub resuming: bool,
    /// The plan's lease this run holds (and renews), once it holds one.
    pub lease: Option<LeaseKeeper>,
    endpoints: HashMap<String, Endpoint>,
    flavors: HashMap<String, Flavor>,
    sessions: HashMap<String, Session>,
}

impl Context {
    pub fn new(
        plan: Arc<ValidatedPlan>,
        store: Store,
        run_id: String,
        yes: bool,
        state: SwitchState,
    ) -> Result<Context, SecretError> {
        let mut endpoints = HashMap::new();
        for cluster in plan.enabled_clusters() {
            endpoints.insert(cluster.name.clone(), Endpoint::for_cluster(cluster)?);
        }
        Ok(Context {
            plan,
            store,
            run_id,
            phase: String::new(),
            step: String::new(),
            yes,
            state,
            fence: None,
            freeze_started: None,
            write_freeze_ms: None,
            data_mismatch: false,
            sessions_ended: Vec::new(),
            replication_links: Vec::new(),
            resuming: false,
            lease: None,
            endpoints,
            flavors: HashMap::new(),
            sessions: HashMap::new(),
        })
    }

    /// The state a run starts from: the plan's source is primary and DNS points at it.
    pub fn initial_state(plan: &ValidatedPlan) -> SwitchState {
        let source = plan.source().name.clone();
        SwitchState {
            primary: source.clone(),
            dns_points_to: source,
            frozen: None,
            previous_primary: None,
            snapshot_position: None,
        }
    }

    pub fn endpoint(&self, cluster: &str) -> Result<&Endpoint, MysqlError> {
        self.endpoints
            .get(cluster)
            .ok_or_else(|| MysqlError::Connect {
                cluster: cluster.to_string(),
                address: "-".into(),
                reason: "not an enabled cluster of this plan".into(),
            })
    }

    /// A cached connection to `cluster`, opened on first use.
    pub async fn session(&mut self, cluster: &str) -> Result<&mut Session, MysqlError> {
        // A run that lost its lease to another orchestrator acts on nothing more.
        if let Some(why) = self.lease.as_ref().and_then(LeaseKeeper::lost) {
            return Err(MysqlError::Connect {
                cluster: cluster.to_string(),
                address: "-".into(),
                reason: why,
            });
        }
        if !self.sessions.contains_key(cluster) {
            let endpoint = self.endpoint(cluster)?.clone();
            let mut session = Session::connect(&endpoint).await?;
            if !self.flavors.contains_key(cluster) {
                let flavor = crate::mysql::server::flavor(&mut session).await?;
                self.flavors.insert(cluster.to_string(), flavor);
            }
            self.sessions.insert(cluster.to_string(), session);
        }
        Ok(self.sessions.get_mut(cluster).expect("inserted above"))
    }

    /// The session and the server's flavor together.
    pub async fn session_and_flavor(
        &mut self,
        cluster: &str,
    ) -> Result<(&mut Session, Flavor), MysqlError> {
        self.session(cluster).await?;
        let flavor = self.flavors[cluster];
        Ok((self.sessions.get_mut(cluster).expect("opened"), flavor))
    }

    pub async fn flavor(&mut self, cluster: &str) -> Result<Flavor, MysqlError> {
        self.session(cluster).await?;
        Ok(self.flavors[cluster])
    }

    /// Forget cached connections (after an error they may be mid-statement).
    pub async fn drop_sessions(&mut self) {
        for (_, session) in self.sessions.drain() {
            session.close().await;
        }
    }

    pub fn replication_credentials(&self) -> Result<(String, Secret), SecretError> {
        match &self.plan.replication {
            Some(credentials) => Ok((
                credentials.user.clone(),
                secret::resolve(&credentials.password, "replication password")?,
            )),
            None => {
                // Validation requires `replication:` for plans that move replicas;
                // fall back to the source's account for hand-written partial plans.
                let source = self.plan.source();
                Ok((
                    source.user.clone(),
                    secret::resolve(
                        &source.password,
                        &format!("cluster `{}` password", source.name),
                    )?,
                ))
            }
        }
    }

    pub fn tsig_key(&self) -> Result<Option<TsigKey>, SecretError> {
        let Some(dns) = &self.plan.dns else {
            return Ok(None);
        };
        Ok(Some(TsigKey {
            name: dns.tsig.name.clone(),
            algorithm: dns.tsig.algorithm,
            secret: secret::resolve(&dns.tsig.secret, &format!("TSIG key `{}`", dns.tsig.name))?,
        }))
    }

    /// Hold `lock` for the rest of this run: renew it in the background, and
    /// make every journal write name it (a write after it is lost is refused).
    pub fn hold_lease(&mut self, lock: &PlanLock) {
        self.store = self.store.fenced_by(lock);
        self.lease = Some(LeaseKeeper::start(&self.store, lock));
    }

    /// Why this run's lease is lost, if it is.
    pub fn lease_lost(&self) -> Option<String> {
        self.lease.as_ref().and_then(LeaseKeeper::lost)
    }

    /// Append to the audit chain; a failing audit write is logged, not fatal,
    /// because the journal already holds the intent.
    pub async fn audit(&self, target: &str, action: &str, result: &str) {
        let entry = AuditEntry {
            run_id: Some(self.run_id.clone()),
            step: Some(format!("{}/{}", self.phase, self.step)),
            target: target.to_string(),
            action: action.to_string(),
            result: result.to_string(),
        };
        if let Err(error) = self.store.audit(&entry).await {
            tracing::warn!("audit log: {error}");
        }
    }
}
