//! The plan file as an operator writes it: the raw, unvalidated model.
//!
//! Every struct denies unknown fields, and values that validation must point
//! at are `Located`. Validation turns this into [`super::ValidatedPlan`].

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::kinds::{self, KindSyntax, StepCheck, StepKind};
pub use super::located::HumanDuration;
use super::located::Located;

/// A migration or cutover plan.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "cutover plan")]
pub struct RawPlan {
    /// Identifies the plan; runs of the same name are serialised by a lock.
    pub name: Located<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Database servers by name. Exactly one has `role: source`.
    pub clusters: IndexMap<Located<String>, RawCluster>,
    /// The account targets use to replicate from a primary.
    #[serde(default)]
    pub replication: Option<RawCredentials>,
    /// How applications reach the primary (used by the write probe).
    #[serde(default)]
    pub application: Option<RawApplication>,
    /// Databases to snapshot and compare; default: every non-system database.
    #[serde(default)]
    pub databases: Option<Vec<Located<String>>>,
    /// What a switchover away from the source fences: the whole server
    /// (default) or only `databases`, so its other databases keep writing.
    #[serde(default)]
    pub scope: Option<Located<Scope>>,
    #[serde(default)]
    pub dns: Option<RawDns>,
    #[serde(default)]
    pub gates: Option<RawGates>,
    /// A disaster-recovery drill run by `cutover drill run`.
    #[serde(default)]
    pub drill: Option<RawDrill>,
    #[serde(default)]
    pub phases: Vec<RawPhase>,
}

/// What a drill does: which primary fails, how, who takes over, and how it
/// comes back.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDrill {
    /// The cluster whose failure is drilled; default: the source.
    #[serde(default)]
    pub primary: Option<Located<String>>,
    /// Clusters that may take over; default: every other enabled cluster.
    #[serde(default)]
    pub dr: Option<Vec<Located<String>>>,
    /// `planned` (a switchover), `crash` (the server stops abruptly) or
    /// `isolate` (the server stops answering).
    pub failure: Located<DrillFailure>,
    /// Command (program and arguments) that crashes or isolates the primary.
    #[serde(default)]
    pub inject: Option<Vec<Located<String>>>,
    /// Command that brings the failed primary back, fenced read-only, for failback.
    #[serde(default)]
    pub recover: Option<Vec<Located<String>>>,
    /// Time each command may take; default 60s.
    #[serde(default)]
    pub hook_timeout: Option<Located<HumanDuration>>,
    /// How long the primary must stay unreachable to be declared failed; default 1s.
    #[serde(default)]
    pub detect_after: Option<Located<HumanDuration>>,
    /// Probe writes per second; default 50.
    #[serde(default)]
    pub probe_rate: Option<Located<i64>>,
    /// Targets for this drill instead of the clusters' `rto` and `rpo`.
    #[serde(default)]
    pub rto: Option<Located<HumanDuration>>,
    #[serde(default)]
    pub rpo: Option<Located<HumanDuration>>,
    #[serde(default)]
    pub failback: Option<RawFailback>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DrillFailure {
    Planned,
    Crash,
    Isolate,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFailback {
    /// Bring the failed primary back as a replica of the new one; default true.
    #[serde(default)]
    pub rejoin: Option<Located<bool>>,
    /// Then switch the primary role back to it; default false.
    #[serde(default)]
    pub switch_back: Option<Located<bool>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClusterRole {
    Source,
    Target,
}

/// One database server (or the writable primary of a bank's cluster).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub role: Located<ClusterRole>,
    pub host: Located<String>,
    #[serde(default)]
    pub port: Option<Located<i64>>,
    pub user: Located<String>,
    /// Name of the environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<Located<String>>,
    /// Path of a file holding the password (first line, trimmed).
    #[serde(default)]
    pub password_file: Option<Located<String>>,
    /// Never allowed: present only to explain why.
    #[serde(default)]
    #[schemars(skip)]
    pub password: Option<Located<IgnoredAny>>,
    #[serde(default)]
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub pool: Option<RawPool>,
    /// A disabled cluster is skipped everywhere.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Free label, e.g. the partner bank's name.
    #[serde(default)]
    pub bank: Option<String>,
    /// Recovery time objective for DR drills, e.g. `15m`.
    #[serde(default)]
    pub rto: Option<Located<HumanDuration>>,
    /// Recovery point objective for DR drills, e.g. `1m` or `0s`.
    #[serde(default)]
    pub rpo: Option<Located<HumanDuration>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file of the CA that signed the server certificate.
    #[serde(default)]
    pub ca_file: Option<Located<String>>,
    /// Verify the server certificate and host name (default true).
    #[serde(default)]
    pub verify: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// Most connections the orchestrator opens to this cluster.
    #[serde(default)]
    pub max: Option<Located<i64>>,
    #[serde(default)]
    pub connect_timeout_ms: Option<Located<i64>>,
    #[serde(default)]
    pub query_timeout_ms: Option<Located<i64>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    pub user: Located<String>,
    #[serde(default)]
    pub password_env: Option<Located<String>>,
    #[serde(default)]
    pub password_file: Option<Located<String>>,
    #[serde(default)]
    #[schemars(skip)]
    pub password: Option<Located<IgnoredAny>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApplication {
    /// The DNS name applications connect to.
    pub host: Located<String>,
    #[serde(default)]
    pub port: Option<Located<i64>>,
    pub database: Located<String>,
    pub user: Located<String>,
    #[serde(default)]
    pub password_env: Option<Located<String>>,
    #[serde(default)]
    pub password_file: Option<Located<String>>,
    #[serde(default)]
    #[schemars(skip)]
    pub password: Option<Located<IgnoredAny>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DnsProvider {
    Rfc2136,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum DnsRecordType {
    A,
    Cname,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub provider: DnsProvider,
    /// `host:port` of the primary server that accepts RFC 2136 updates.
    pub update_server: Located<String>,
    /// Every authoritative server (`host:port`) that must answer the switch.
    pub authoritative: Vec<Located<String>>,
    pub zone: Located<String>,
    /// The name applications resolve, e.g. `refunds-primary.bank.internal`.
    pub record: Located<String>,
    #[serde(rename = "type", default)]
    pub record_type: Option<DnsRecordType>,
    pub ttl: Located<i64>,
    /// The record's value for each cluster that can be primary.
    pub values: IndexMap<Located<String>, Located<String>>,
    pub tsig: RawTsig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TsigAlgorithmName {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTsig {
    /// Key name as configured on the server.
    pub name: Located<String>,
    pub algorithm: TsigAlgorithmName,
    #[serde(default)]
    pub secret_env: Option<Located<String>>,
    #[serde(default)]
    pub secret_file: Option<Located<String>>,
    #[serde(default)]
    #[schemars(skip)]
    pub secret: Option<Located<IgnoredAny>>,
}

/// Limits that every step inherits unless it sets its own.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGates {
    /// Highest replication lag a target may show (milliseconds).
    #[serde(default)]
    pub max_lag_ms: Option<Located<i64>>,
    /// How long lag must stay under the limit, e.g. `10s`.
    #[serde(default)]
    pub sustained_for: Option<Located<HumanDuration>>,
    /// Hard budget for writes being frozen (milliseconds).
    #[serde(default)]
    pub freeze_budget_ms: Option<Located<i64>>,
    /// Time allowed for application sessions to finish before they are killed.
    #[serde(default)]
    pub drain_timeout: Option<Located<HumanDuration>>,
    /// How long `wait_lag` waits for the lag gate before refusing.
    #[serde(default)]
    pub lag_timeout: Option<Located<HumanDuration>>,
    /// How long every authoritative server has to answer a DNS switch.
    #[serde(default)]
    pub dns_verify_timeout: Option<Located<HumanDuration>>,
    /// Heartbeat write interval for lag measurement (10 ms or more).
    #[serde(default)]
    pub heartbeat_interval_ms: Option<Located<i64>>,
    /// Warn when a server's clock is further than this from ours (milliseconds).
    #[serde(default)]
    pub max_clock_skew_ms: Option<Located<i64>>,
    /// How long a step that starts replication waits for proof that it runs
    /// (IO thread connected, SQL thread running, the source's position
    /// received), e.g. `5s`.
    #[serde(default)]
    pub replication_start_timeout: Option<Located<HumanDuration>>,
    /// End the client sessions left on a demoted primary once the new one
    /// takes writes, so connection pools reconnect and follow the name
    /// (default true).
    #[serde(default)]
    pub end_old_sessions: Option<Located<bool>>,
    /// Accounts whose sessions on a demoted primary are never ended (besides
    /// the orchestrator's and replication's own).
    #[serde(default)]
    pub keep_sessions_of: Option<Vec<Located<String>>>,
    /// Longest one attempt at a consistent point (checksum, snapshot) may keep
    /// the source's writers waiting (milliseconds, default 100): a longer wait
    /// is cancelled and tried again.
    #[serde(default)]
    pub max_source_stall_ms: Option<Located<i64>>,
}

/// What a switchover fences on the source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The whole server: a global read lock, then `read_only`.
    #[default]
    Server,
    /// Only the plan's databases: their tables locked, then MySQL's schema
    /// `READ ONLY` or, on MariaDB, the applications' write privileges revoked.
    Databases,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMode {
    /// A failure inside the phase undoes its completed steps.
    Auto,
    /// A failure stops and waits for an operator.
    Manual,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPhase {
    pub name: Located<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub rollback: RollbackMode,
    pub steps: Vec<RawStep>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetsStep {
    #[serde(default)]
    pub name: Option<Located<String>>,
    /// Default: every enabled target.
    #[serde(default)]
    pub targets: Option<Vec<Located<String>>>,
    #[serde(default)]
    pub timeout: Option<Located<HumanDuration>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchoverStep {
    #[serde(default)]
    pub name: Option<Located<String>>,
    /// The target that becomes the primary.
    pub to: Located<String>,
    #[serde(default)]
    pub drain_timeout: Option<Located<HumanDuration>>,
    #[serde(default)]
    pub wait_ttl: Option<bool>,
}

macro_rules! define_raw_steps {
    ($( $(#[$doc:meta])* $kind:ident = $name:literal, )*) => {
        /// One step. Written as a single-key map: `- freeze: { drain_timeout: 2s }`.
        #[derive(Debug, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub enum RawStep {
            $( $(#[$doc])* #[serde(rename = $name)] $kind(<kinds::$kind as KindSyntax>::Raw), )*
            /// The standard freeze → catch-up → promote → … → unfreeze sequence.
            #[serde(rename = "switchover")]
            Switchover(SwitchoverStep),
        }

        impl RawStep {
            /// The `name:` the plan gives the step, if any.
            pub fn explicit_name(&self) -> Option<&Located<String>> {
                match self {
                    $( RawStep::$kind(raw) => <kinds::$kind as KindSyntax>::explicit_name(raw), )*
                    RawStep::Switchover(raw) => raw.name.as_ref(),
                }
            }

            /// One kind's entry checked into its parameters (by the kind's own
            /// `KindSyntax`); a composite (`switchover`) is handed back to be
            /// expanded.
            pub fn check(self, checker: &mut dyn StepCheck) -> Result<StepKind, Box<SwitchoverStep>> {
                match self {
                    $( RawStep::$kind(raw) => Ok(StepKind::$kind(<kinds::$kind as KindSyntax>::check(raw, checker))), )*
                    RawStep::Switchover(raw) => Err(Box::new(raw)),
                }
            }
        }
    };
}

kinds::with_step_kinds!(define_raw_steps);
