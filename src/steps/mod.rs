//! One file per step kind: its action, verification, inverse, the text the
//! runbook and the dry run show for it, the prechecks it needs, its live
//! dry-run fact and its properties, side by side as that kind's
//! [`StepBehaviour`]; `plan::kinds` holds the one list of kinds.

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

use std::collections::BTreeSet;

use serde::Serialize;

use crate::dns::DnsError;
use crate::mysql::{Endpoint, MysqlError, Session, control};
use crate::plan::{Established, StepKind, ValidatedPlan};
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

/// What one step kind does, implemented in the kind's own file on its
/// parameters (`plan::kinds`), and reached from a [`StepKind`] through the
/// dispatch generated from the one list of kinds.
#[allow(async_fn_in_trait)]
pub trait StepBehaviour {
    /// Run it. Returns what it observed, for the journal.
    async fn act(&self, ctx: &mut Context) -> Result<serde_json::Value, StepError>;

    /// Undo it once completed, given what it journaled. By default there is
    /// nothing to put back (it only reads, waits, or is the operator's own).
    async fn undo(
        &self,
        _ctx: &mut Context,
        _observed: &serde_json::Value,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// The runbook text, as it starts from `state` (who is primary and where
    /// DNS points then: the plan's source going forward, the new primary in a
    /// reverse switchover).
    fn describe(&self, plan: &ValidatedPlan, state: &SwitchState) -> Description;

    /// What the prechecks must look at because this step will run.
    fn needs(&self, _plan: &ValidatedPlan, _needs: &mut PrecheckNeeds) {}

    /// A fact read live for the dry run (a position, a DNS answer).
    async fn live_fact(&self, _plan: &ValidatedPlan) -> Option<String> {
        None
    }

    /// Whether it changes a server or DNS (and so needs an inverse and an audit entry).
    fn is_mutating(&self) -> bool;

    /// Whether `cutover resume` continues a phase interrupted in or after this
    /// step instead of rolling it back: the step either journals its own
    /// progress (`snapshot`), picks up what is already in place (`replicate`),
    /// or only reads and waits. A phase continues only if every step up to the
    /// interrupted one says so, so no freeze or promotion is ever re-entered.
    fn continues_after_interruption(&self) -> bool {
        false
    }

    /// Whether it needs the other clusters to replicate from the primary when
    /// it starts (it reads their lag or position, or moves them).
    fn needs_followers(&self) -> bool {
        false
    }

    /// What it makes true for the steps after it, so prechecks of those wait
    /// until it has run.
    fn establishes(&self) -> Established {
        Established::Nothing
    }
}

/// `StepKind` behaves as whichever kind it holds: one match per method over
/// the one list of kinds.
macro_rules! dispatch_to_kinds {
    ($( $(#[$doc:meta])* $kind:ident = $name:literal, )*) => {
        impl StepBehaviour for StepKind {
            async fn act(&self, ctx: &mut Context) -> Result<serde_json::Value, StepError> {
                match self { $( StepKind::$kind(k) => k.act(ctx).await, )* }
            }

            async fn undo(&self, ctx: &mut Context, observed: &serde_json::Value) -> Result<(), StepError> {
                match self { $( StepKind::$kind(k) => k.undo(ctx, observed).await, )* }
            }

            fn describe(&self, plan: &ValidatedPlan, state: &SwitchState) -> Description {
                match self { $( StepKind::$kind(k) => k.describe(plan, state), )* }
            }

            fn needs(&self, plan: &ValidatedPlan, needs: &mut PrecheckNeeds) {
                match self { $( StepKind::$kind(k) => k.needs(plan, needs), )* }
            }

            async fn live_fact(&self, plan: &ValidatedPlan) -> Option<String> {
                match self { $( StepKind::$kind(k) => k.live_fact(plan).await, )* }
            }

            fn is_mutating(&self) -> bool {
                match self { $( StepKind::$kind(k) => k.is_mutating(), )* }
            }

            fn continues_after_interruption(&self) -> bool {
                match self { $( StepKind::$kind(k) => k.continues_after_interruption(), )* }
            }

            fn needs_followers(&self) -> bool {
                match self { $( StepKind::$kind(k) => k.needs_followers(), )* }
            }

            fn establishes(&self) -> Established {
                match self { $( StepKind::$kind(k) => k.establishes(), )* }
            }
        }
    };
}

crate::with_step_kinds!(dispatch_to_kinds);

/// What the selected phases will do, so only the relevant prechecks run;
/// each kind adds its part in [`StepBehaviour::needs`].
#[derive(Debug, Default)]
pub struct PrecheckNeeds {
    pub candidates: BTreeSet<String>,
    pub freezes: BTreeSet<String>,
    pub moves_replication: bool,
    pub dns_switch: bool,
    /// A checksum locks the source for a moment and pauses its replicas.
    pub checksums: bool,
    /// Targets a snapshot loads without `replace` (they must be empty).
    pub snapshot_targets: BTreeSet<String>,
    /// A `replicate` step points targets at the source.
    pub starts_replication: bool,
    /// A snapshot loads targets (fenced read-only first).
    pub loads: bool,
    /// Every target a snapshot loads, and where it writes chunk files.
    pub loaded_targets: BTreeSet<String>,
    pub snapshot_directory: Option<std::path::PathBuf>,
}

/// Where `cluster` stands now, for the dry run: its GTID position and
/// `read_only`; `None` when it cannot be reached.
pub(crate) async fn position_of(plan: &ValidatedPlan, cluster: &str) -> Option<String> {
    let endpoint = Endpoint::for_cluster(plan.cluster(cluster)?).ok()?;
    let mut session = Session::connect(&endpoint).await.ok()?;
    let flavor = crate::mysql::server::flavor(&mut session).await.ok()?;
    let position = control::binlog_position(&mut session, flavor).await.ok();
    let read_only = control::read_only(&mut session).await.ok();
    session.close().await;
    Some(format!(
        "`{cluster}` at {}{}",
        position.unwrap_or_else(|| "?".into()),
        match read_only {
            Some(true) => ", read_only = 1",
            Some(false) => ", read_only = 0",
            None => "",
        }
    ))
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
