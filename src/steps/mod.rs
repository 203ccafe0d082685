//! One file per step kind: its action, verification, inverse and the text
//! the runbook and the dry run show for it, side by side.

pub mod catch_up;
pub mod checksum;
pub mod confirm;
pub mod context;
pub mod dns_switch;
pub mod freeze;
pub mod hook;
pub mod promote;
pub mod replicate;
pub mod repoint;
pub mod reverse_replication;
pub mod sleep;
pub mod snapshot;
pub mod unfreeze;
pub mod wait_lag;

use serde::Serialize;

use crate::dns::DnsError;
use crate::mysql::MysqlError;
use crate::plan::{StepKind, ValidatedPlan};
use crate::secret::SecretError;
use crate::steps::context::{Context, SwitchState};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A gate said no before anything unsafe happened (exit 3 once undone).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
    /// Data differs between clusters: a refusal that exits 4.
    #[error("{0}")]
    Mismatch(String),
}

impl StepError {
    pub fn is_refusal(&self) -> bool {
        matches!(self, StepError::Refused(_) | StepError::Mismatch(_))
    }
}

/// What a step does, for the runbook and the dry run.
#[derive(Debug, Clone, Serialize)]
pub struct Description {
    /// The cluster or DNS server it acts on.
    pub cluster: String,
    /// One line.
    pub action: String,
    /// The statements or DNS operation, as an operator would type them.
    pub commands: Vec<String>,
    /// How to check by hand that it worked.
    pub verify: Vec<String>,
    /// How it is undone.
    pub inverse: String,
}

/// Run one step. Returns what it observed, for the journal.
pub async fn act(ctx: &mut Context, kind: &StepKind) -> Result<serde_json::Value, StepError> {
    match kind {
        StepKind::Freeze {
            cluster,
            drain_timeout,
            budget,
        } => freeze::act(ctx, cluster, *drain_timeout, *budget).await,
        StepKind::CatchUp { targets, timeout } => catch_up::act(ctx, targets, *timeout).await,
        StepKind::Promote { cluster } => promote::act(ctx, cluster).await,
        StepKind::Repoint { to, clusters } => repoint::act(ctx, to, clusters).await,
        StepKind::ReverseReplication { from, cluster } => {
            reverse_replication::act(ctx, from, cluster).await
        }
        StepKind::DnsSwitch {
            to,
            wait_ttl,
            verify_timeout,
        } => dns_switch::act(ctx, to, *wait_ttl, *verify_timeout).await,
        StepKind::Unfreeze => unfreeze::act(ctx).await,
        StepKind::Hook {
            command,
            timeout,
            cluster,
        } => hook::act(ctx, command, *timeout, cluster.as_deref()).await,
        StepKind::Confirm {
            message,
            postpone_file,
        } => confirm::act(ctx, message.as_deref(), postpone_file.as_deref()).await,
        StepKind::Sleep { duration } => sleep::act(*duration).await,
        StepKind::WaitLag {
            targets,
            max_lag_ms,
            sustained_for,
            timeout,
        } => wait_lag::act(ctx, targets, *max_lag_ms, *sustained_for, *timeout).await,
        StepKind::Checksum {
            targets,
            tables,
            float_precision,
            money_columns,
        } => checksum::act(ctx, targets, tables, *float_precision, money_columns).await,
        StepKind::Snapshot {
            targets,
            workers,
            replace,
            skip_binlog,
            directory,
        } => {
            snapshot::act(
                ctx,
                targets,
                *workers,
                *replace,
                *skip_binlog,
                directory.as_deref(),
            )
            .await
        }
        StepKind::Replicate { targets, timeout } => replicate::act(ctx, targets, *timeout).await,
    }
}

/// Undo one completed step, given what it journaled.
pub async fn undo(
    ctx: &mut Context,
    kind: &StepKind,
    observed: &serde_json::Value,
) -> Result<(), StepError> {
    match kind {
        StepKind::Freeze { cluster, .. } => freeze::undo(ctx, cluster).await,
        StepKind::Promote { cluster } => promote::undo(ctx, cluster, observed).await,
        StepKind::Repoint { clusters, .. } => repoint::undo(ctx, clusters, observed).await,
        StepKind::ReverseReplication { cluster, .. } => {
            reverse_replication::undo(ctx, cluster).await
        }
        StepKind::DnsSwitch { verify_timeout, .. } => {
            dns_switch::undo(ctx, observed, *verify_timeout).await
        }
        StepKind::Unfreeze => unfreeze::undo(ctx).await,
        // Read-only or operator-defined: nothing to put back.
        StepKind::CatchUp { .. }
        | StepKind::Hook { .. }
        | StepKind::Confirm { .. }
        | StepKind::Sleep { .. }
        | StepKind::WaitLag { .. }
        | StepKind::Checksum { .. } => Ok(()),
        StepKind::Snapshot { .. } => snapshot::undo(ctx, observed).await,
        StepKind::Replicate { .. } => replicate::undo(ctx, observed).await,
    }
}

/// The runbook text of one step, as it starts from `state` (who is primary
/// and where DNS points then: the plan's source going forward, the new
/// primary in a reverse switchover).
pub fn describe(plan: &ValidatedPlan, state: &SwitchState, kind: &StepKind) -> Description {
    match kind {
        StepKind::Freeze {
            cluster,
            drain_timeout,
            budget,
        } => freeze::describe(plan, cluster, *drain_timeout, *budget),
        StepKind::CatchUp { targets, timeout } => catch_up::describe(plan, targets, *timeout),
        StepKind::Promote { cluster } => promote::describe(plan, &state.primary, cluster),
        StepKind::Repoint { to, clusters } => repoint::describe(plan, to, clusters),
        StepKind::ReverseReplication { from, cluster } => {
            reverse_replication::describe(plan, from, cluster)
        }
        StepKind::DnsSwitch {
            to,
            wait_ttl,
            verify_timeout,
        } => dns_switch::describe(plan, &state.dns_points_to, to, *wait_ttl, *verify_timeout),
        StepKind::Unfreeze => unfreeze::describe(plan),
        StepKind::Hook {
            command,
            timeout,
            cluster,
        } => hook::describe(command, *timeout, cluster.as_deref()),
        StepKind::Confirm {
            message,
            postpone_file,
        } => confirm::describe(message.as_deref(), postpone_file.as_deref()),
        StepKind::Sleep { duration } => sleep::describe(*duration),
        StepKind::WaitLag {
            targets,
            max_lag_ms,
            sustained_for,
            timeout,
        } => wait_lag::describe(targets, *max_lag_ms, *sustained_for, *timeout),
        StepKind::Checksum {
            targets,
            tables,
            float_precision,
            ..
        } => checksum::describe(plan, targets, tables, *float_precision),
        StepKind::Snapshot {
            targets,
            workers,
            replace,
            skip_binlog,
            ..
        } => snapshot::describe(plan, targets, *workers, *replace, *skip_binlog),
        StepKind::Replicate { targets, timeout } => replicate::describe(plan, targets, *timeout),
    }
}

/// The host:port a replica should use to reach `cluster`.
pub(crate) fn address_of(plan: &ValidatedPlan, cluster: &str) -> (String, u16) {
    plan.cluster(cluster)
        .map(|c| (c.host.clone(), c.port))
        .unwrap_or_else(|| (cluster.to_string(), 3306))
}

pub(crate) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
