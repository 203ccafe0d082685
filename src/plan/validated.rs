//! The validated plan: every reference checked, every default filled in,
//! composite steps expanded. Nothing here has touched the network.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Serialize;

pub use super::gates::{Gates, KeptAccount};
use super::kinds::StepKind;
use super::millis;

pub use super::model::{
    ClusterRole, DnsRecordType, DrillFailure, RollbackMode, Scope, TsigAlgorithmName,
};

/// Where a secret comes from. The secret itself is read only when needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidatedPlan {
    pub name: String,
    pub description: Option<String>,
    pub path: PathBuf,
    /// sha256 of the plan file, recorded with every run.
    pub sha256: String,
    pub clusters: Vec<Cluster>,
    pub replication: Option<Credentials>,
    pub application: Option<Application>,
    pub databases: Option<Vec<String>>,
    pub scope: Scope,
    pub dns: Option<DnsConfig>,
    pub gates: Gates,
    pub drill: Option<Drill>,
    pub phases: Vec<Phase>,
}

/// A validated drill.
#[derive(Debug, Clone, Serialize)]
pub struct Drill {
    pub primary: String,
    pub dr: Vec<String>,
    pub failure: DrillFailure,
    pub inject: Vec<String>,
    pub recover: Vec<String>,
    #[serde(with = "millis")]
    pub hook_timeout: Duration,
    #[serde(with = "millis")]
    pub detect_after: Duration,
    pub probe_rate: u32,
    #[serde(with = "millis::optional")]
    pub rto: Option<Duration>,
    #[serde(with = "millis::optional")]
    pub rpo: Option<Duration>,
    pub rejoin: bool,
    pub switch_back: bool,
}

impl ValidatedPlan {
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|cluster| cluster.name == name)
    }

    /// The databases a fence on `cluster` covers: `None` fences the whole
    /// server. Only the source is scoped: the targets hold nothing else.
    pub fn fence_scope(&self, cluster: &str) -> Option<Vec<String>> {
        match (&self.scope, &self.databases) {
            (Scope::Databases, Some(databases)) if self.source().name == cluster => {
                let mut fenced = databases.clone();
                // The probe writes as the application does: fenced with it.
                fenced.push("cutover_probe".to_string());
                fenced.sort();
                fenced.dedup();
                Some(fenced)
            }
            _ => None,
        }
    }

    /// The orchestrator's account on `cluster` and the replication account:
    /// never fenced, their sessions never ended.
    pub fn own_accounts(&self, cluster: &str) -> Vec<String> {
        self.cluster(cluster)
            .map(|c| c.user.clone())
            .into_iter()
            .chain(self.replication.as_ref().map(|r| r.user.clone()))
            .collect()
    }

    pub fn source(&self) -> &Cluster {
        self.clusters
            .iter()
            .find(|cluster| cluster.role == ClusterRole::Source)
            .expect("validation guarantees exactly one source")
    }

    /// Enabled targets in plan order.
    pub fn enabled_targets(&self) -> impl Iterator<Item = &Cluster> {
        self.clusters
            .iter()
            .filter(|cluster| cluster.enabled && cluster.role == ClusterRole::Target)
    }

    pub fn enabled_clusters(&self) -> impl Iterator<Item = &Cluster> {
        self.clusters.iter().filter(|cluster| cluster.enabled)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub name: String,
    pub role: ClusterRole,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: SecretSource,
    pub tls: Option<Tls>,
    pub pool: Pool,
    pub enabled: bool,
    pub bank: Option<String>,
    #[serde(with = "millis::optional")]
    pub rto: Option<Duration>,
    #[serde(with = "millis::optional")]
    pub rpo: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub verify: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pool {
    pub max: u32,
    #[serde(with = "millis")]
    pub connect_timeout: Duration,
    #[serde(with = "millis")]
    pub query_timeout: Duration,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            max: 10,
            connect_timeout: Duration::from_millis(2_000),
            query_timeout: Duration::from_millis(30_000),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Credentials {
    pub user: String,
    pub password: SecretSource,
}

#[derive(Debug, Clone, Serialize)]
pub struct Application {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: SecretSource,
}

#[derive(Debug, Clone, Serialize)]
pub struct DnsConfig {
    pub update_server: SocketAddr,
    pub authoritative: Vec<SocketAddr>,
    /// Fully qualified, with the trailing dot.
    pub zone: String,
    /// Fully qualified, with the trailing dot.
    pub record: String,
    pub record_type: DnsRecordType,
    pub ttl: u32,
    /// Cluster name → record value (fully qualified for CNAME).
    pub values: IndexMap<String, String>,
    pub tsig: TsigConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct TsigConfig {
    pub name: String,
    pub algorithm: TsigAlgorithmName,
    pub secret: SecretSource,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub description: Option<String>,
    pub rollback: RollbackMode,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Unique within its phase.
    pub name: String,
    pub kind: StepKind,
    /// Set when the step came from expanding a composite `switchover`.
    pub expanded_from: Option<String>,
}
