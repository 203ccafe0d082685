//! Live view of a plan's clusters: who is reachable, who replicates from
//! whom, fences, positions, errant transactions and clock offsets.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::mysql::gtid::{self, Flavor};
use crate::mysql::server::{self, ClockOffset, ReplicationStatus, ServerFacts};
use crate::mysql::{Endpoint, Session, with_timeout};
use crate::outcome::{ErrorKind, Outcome};
use crate::plan::{Cluster, ValidatedPlan};
use crate::secret::SecretError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
    Standalone,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Standalone => "standalone",
        }
    }
}

/// One cluster as seen right now.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub name: String,
    pub address: String,
    pub reachable: bool,
    /// Why it is not reachable (connect error or timeout), naming the cluster.
    pub error: Option<String>,
    pub flavor: Option<Flavor>,
    pub version: Option<String>,
    pub role: Option<Role>,
    /// The plan cluster it replicates from.
    pub replicating_from: Option<String>,
    /// The source address as the replica reports it (also when it is not in the plan).
    pub source_address: Option<String>,
    pub read_only: Option<bool>,
    pub super_read_only: Option<bool>,
    /// The plan's databases are fenced here for good (`scope: databases`, on
    /// the plan's source only): it takes none of the plan's writes even when
    /// `read_only` is 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scoped_fence: Option<bool>,
    pub gtid_position: Option<String>,
    /// Transactions this replica has that its source never had.
    pub errant_gtids: Option<String>,
    pub replication: Option<ReplicationStatus>,
    pub server: Option<ServerFacts>,
    pub clock_offset_ms: Option<f64>,
    pub clock_round_trip_ms: Option<f64>,
    /// The offset is above the plan's `gates.max_clock_skew_ms` (information only).
    pub clock_skew_warning: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    pub clusters: Vec<ClusterView>,
}

impl ClusterView {
    /// Takes the plan's writes now: reachable, writable, and its copy of the
    /// plan's databases not fenced.
    pub fn takes_writes(&self) -> bool {
        self.reachable && self.read_only == Some(false) && self.scoped_fence != Some(true)
    }
}

impl Topology {
    pub fn unreachable(&self) -> impl Iterator<Item = &ClusterView> {
        self.clusters.iter().filter(|cluster| !cluster.reachable)
    }

    /// Errant transactions are a data difference and win over an unreachable cluster.
    pub fn outcome(&self) -> Outcome {
        if self.with_errant().next().is_some() {
            ErrorKind::Mismatch.into()
        } else if self.unreachable().next().is_some() {
            ErrorKind::Failed.into()
        } else {
            Outcome::Success
        }
    }

    pub fn with_errant(&self) -> impl Iterator<Item = &ClusterView> {
        self.clusters
            .iter()
            .filter(|cluster| cluster.errant_gtids.is_some())
    }
}

/// What one probe found before the clusters are related to each other.
struct Probe {
    facts: ServerFacts,
    channel: Option<ReplicationStatus>,
    clock: Option<ClockOffset>,
    source_ips: Vec<IpAddr>,
    scoped_fence: Option<bool>,
}

/// Endpoints for every enabled cluster, secrets resolved up front so a missing
/// one is an input error rather than an unreachable cluster.
pub fn endpoints(plan: &ValidatedPlan) -> Result<Vec<(Cluster, Endpoint)>, SecretError> {
    plan.enabled_clusters()
        .map(|cluster| Ok((cluster.clone(), Endpoint::for_cluster(cluster)?)))
        .collect()
}

/// Probe every enabled cluster at once; each probe is bounded by its cluster's timeouts.
pub async fn discover(plan: &ValidatedPlan) -> Result<Topology, SecretError> {
    let endpoints = endpoints(plan)?;
    let mut probes = tokio::task::JoinSet::new();
    for (index, (cluster, endpoint)) in endpoints.iter().enumerate() {
        let endpoint = endpoint.clone();
        let cluster = cluster.clone();
        let scope = plan.fence_scope(&cluster.name);
        probes.spawn(async move { (index, probe(&cluster, &endpoint, scope).await) });
    }
    let mut results: Vec<Option<Result<Probe, String>>> = endpoints.iter().map(|_| None).collect();
    while let Some(joined) = probes.join_next().await {
        let (index, result) = joined.expect("probe tasks do not panic");
        results[index] = Some(result);
    }
    let cluster_ips: Vec<Vec<IpAddr>> = {
        let mut all = Vec::new();
        for (cluster, _) in &endpoints {
            all.push(resolve(&cluster.host, cluster.pool.connect_timeout).await);
        }
        all
    };

    let mut views: Vec<ClusterView> = Vec::new();
    for ((cluster, _), result) in endpoints.iter().zip(&results) {
        let address = format!("{}:{}", cluster.host, cluster.port);
        let view = match result.as_ref().expect("every probe reports") {
            Err(error) => ClusterView {
                name: cluster.name.clone(),
                address,
                reachable: false,
                error: Some(error.clone()),
                flavor: None,
                version: None,
                role: None,
                replicating_from: None,
                source_address: None,
                read_only: None,
                super_read_only: None,
                scoped_fence: None,
                gtid_position: None,
                errant_gtids: None,
                replication: None,
                server: None,
                clock_offset_ms: None,
                clock_round_trip_ms: None,
                clock_skew_warning: false,
            },
            Ok(probe) => {
                let replicating_from = probe.channel.as_ref().and_then(|channel| {
                    endpoints
                        .iter()
                        .zip(&cluster_ips)
                        .find(|((other, _), ips)| {
                            other.name != cluster.name
                                && other.port == channel.source_port
                                && (other.host.eq_ignore_ascii_case(&channel.source_host)
                                    || ips.iter().any(|ip| probe.source_ips.contains(ip)))
                        })
                        .map(|((other, _), _)| other.name.clone())
                });
                let offset = probe.clock.map(|clock| clock.offset_ms);
                ClusterView {
                    name: cluster.name.clone(),
                    address,
                    reachable: true,
                    error: None,
                    flavor: Some(probe.facts.flavor),
                    version: Some(probe.facts.version.clone()),
                    role: None,
                    replicating_from,
                    source_address: probe
                        .channel
                        .as_ref()
                        .map(|c| format!("{}:{}", c.source_host, c.source_port)),
                    read_only: Some(probe.facts.read_only),
                    super_read_only: probe.facts.super_read_only,
                    scoped_fence: probe.scoped_fence,
                    gtid_position: Some(probe.facts.executed.to_string()),
                    errant_gtids: None,
                    replication: probe.channel.clone(),
                    server: Some(probe.facts.clone()),
                    clock_offset_ms: offset,
                    clock_round_trip_ms: probe.clock.map(|clock| clock.round_trip_ms),
                    clock_skew_warning: offset
                        .is_some_and(|ms| ms.abs() > plan.gates.max_clock_skew_ms as f64),
                }
            }
        };
        views.push(view);
    }

    // Roles and errant transactions need the whole picture.
    let snapshot = views.clone();
    for view in views.iter_mut().filter(|view| view.reachable) {
        let has_replicas = snapshot
            .iter()
            .any(|other| other.replicating_from.as_deref() == Some(view.name.as_str()));
        view.role = Some(if view.replication.is_some() {
            Role::Replica
        } else if has_replicas || view.takes_writes() {
            Role::Primary
        } else {
            Role::Standalone
        });
        let source = view
            .replicating_from
            .as_deref()
            .and_then(|name| snapshot.iter().find(|other| other.name == name))
            .and_then(|source| source.server.as_ref());
        if let (Some(mine), Some(source)) = (view.server.as_ref(), source) {
            let errant = gtid::errant(&mine.executed, &source.executed);
            if !errant.is_empty() {
                view.errant_gtids = Some(errant.to_string());
            }
        }
    }
    // The probes ran concurrently, so a replica may have been read after its
    // source took (and shipped) more writes. Read such sources again, now
    // that every replica was read: a real errant transaction stays errant.
    for view in views.iter_mut() {
        if view.errant_gtids.is_none() {
            continue;
        }
        let Some(source_name) = view.replicating_from.clone() else {
            continue;
        };
        let Some((_, endpoint)) = endpoints.iter().find(|(c, _)| c.name == source_name) else {
            continue;
        };
        let (Some(flavor), Some(mine)) = (view.flavor, view.server.as_ref()) else {
            continue;
        };
        if let Ok(mut session) = Session::connect(endpoint).await {
            if let Ok(fresh) = server::executed(&mut session, flavor).await {
                let errant = gtid::errant(&mine.executed, &fresh);
                view.errant_gtids = (!errant.is_empty()).then(|| errant.to_string());
            }
            session.close().await;
        }
    }
    Ok(Topology { clusters: views })
}

async fn probe(
    cluster: &Cluster,
    endpoint: &Endpoint,
    scope: Option<Vec<String>>,
) -> Result<Probe, String> {
    let mut session = Session::connect(endpoint)
        .await
        .map_err(|error| error.to_string())?;
    let result = async {
        let facts = server::facts(&mut session).await?;
        let channel = server::replication(&mut session, facts.flavor)
            .await?
            .into_iter()
            .next();
        let clock = server::clock_offset(&mut session).await.ok();
        let scoped_fence = match &scope {
            Some(databases) => {
                Some(crate::mysql::scope::any_fenced(&mut session, facts.flavor, databases).await?)
            }
            None => None,
        };
        Ok::<_, crate::mysql::MysqlError>((facts, channel, clock, scoped_fence))
    }
    .await;
    session.close().await;
    let (facts, channel, clock, scoped_fence) = result.map_err(|error| error.to_string())?;
    let source_ips = match &channel {
        Some(channel) => resolve(&channel.source_host, cluster.pool.connect_timeout).await,
        None => Vec::new(),
    };
    Ok(Probe {
        facts,
        channel,
        clock,
        source_ips,
        scoped_fence,
    })
}

/// Addresses for a host name or literal, bounded by `limit`; empty if unknown.
pub(crate) async fn resolve(host: &str, limit: Duration) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    match with_timeout(limit, tokio::net::lookup_host((host, 0))).await {
        Ok(Ok(addresses)) => addresses.map(|address| address.ip()).collect(),
        _ => Vec::new(),
    }
}
