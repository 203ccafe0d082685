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
pub mod server_ops;
pub mod sleep;
pub mod snapshot;
pub mod unfreeze;
pub mod wait_lag;

use std::collections::BTreeSet;

use serde::Serialize;
use serde::de::DeserializeOwned;

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
    /// What it observed, as the journal keeps it and its inverse reads it
    /// back. Every field has a default, so a record an older version wrote
    /// (or none at all) still reads.
    type Observed: Serialize + DeserializeOwned + Default;

    /// Run it. Returns what it observed, for the journal.
    async fn act(&self, ctx: &mut Context) -> Result<Self::Observed, StepError>;

    /// Undo it once completed, given what it journaled. By default there is
    /// nothing to put back (it only reads, waits, or is the operator's own).
    async fn undo(&self, _ctx: &mut Context, _observed: &Self::Observed) -> Result<(), StepError> {
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

    /// How long it may take by its own settings: the plan's lease must have
    /// comfortably more life than this before it starts (a step with no
    /// bound of its own: the freeze budget).
    fn time_bound(&self, plan: &ValidatedPlan) -> std::time::Duration {
        plan.gates.freeze_budget
    }

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
            type Observed = serde_json::Value;

            async fn act(&self, ctx: &mut Context) -> Result<serde_json::Value, StepError> {
                match self { $( StepKind::$kind(k) => k.act(ctx).await.map(journal_form), )* }
            }

            async fn undo(&self, ctx: &mut Context, observed: &serde_json::Value) -> Result<(), StepError> {
                match self { $( StepKind::$kind(k) => k.undo(ctx, &read_back(self, observed)?).await, )* }
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

            fn time_bound(&self, plan: &ValidatedPlan) -> std::time::Duration {
                match self { $( StepKind::$kind(k) => k.time_bound(plan), )* }
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

crate::plan::kinds::with_step_kinds!(dispatch_to_kinds);

/// A kind's record as the journal keeps it.
fn journal_form(observed: impl Serialize) -> serde_json::Value {
    serde_json::to_value(observed).unwrap_or_else(|error| {
        // The step has acted: losing its record must not fail it.
        tracing::error!("a step's record could not be written as JSON: {error}");
        serde_json::Value::Null
    })
}

/// A kind's record read back from the journal (its defaults when there is none).
fn read_back<T: DeserializeOwned + Default>(
    kind: &StepKind,
    observed: &serde_json::Value,
) -> Result<T, StepError> {
    if observed.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(observed.clone()).map_err(|error| {
        StepError::Failed(format!(
            "the journal's record of this `{}` step cannot be read ({error}): undo it by hand \
             as `cutover runbook PLAN` describes",
            kind.kind_name()
        ))
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::kinds;
    use serde_json::json;

    fn promote() -> StepKind {
        StepKind::Promote(kinds::Promote {
            cluster: "c1".into(),
        })
    }

    #[test]
    fn a_promote_record_as_journals_hold_it_reads_back_typed() {
        // As the engine journals it: the step's record plus the state after it.
        let journaled = json!({
            "cluster": "c1",
            "old_primary": "legacy",
            "frozen_position": "0-10-42",
            "frozen_executed": "0-10-42",
            "events_enabled": { "events": ["refunds.nightly"] },
            "candidate_previous_source": null,
            "state": { "primary": "c1" }
        });
        let record: promote::PromoteObserved = read_back(&promote(), &journaled).unwrap();
        assert_eq!(record.old_primary.as_deref(), Some("legacy"));
        assert_eq!(record.frozen_position.as_deref(), Some("0-10-42"));
        assert_eq!(record.events_enabled.events, ["refunds.nightly"]);
        assert!(!record.already_primary);
        // Written again, it keeps the keys the journal had.
        let written = journal_form(&record);
        assert_eq!(written["old_primary"], "legacy");
        assert_eq!(written["events_enabled"]["events"][0], "refunds.nightly");
        assert!(written.get("already_primary").is_none());
    }

    #[test]
    fn no_record_reads_as_the_defaults_and_a_garbled_one_names_the_kind() {
        let none: promote::PromoteObserved =
            read_back(&promote(), &serde_json::Value::Null).unwrap();
        assert!(none.old_primary.is_none());
        let garbled = json!({ "old_primary": 7 });
        let error = read_back::<promote::PromoteObserved>(&promote(), &garbled).unwrap_err();
        assert!(
            error.to_string().contains("`promote` step cannot be read"),
            "{error}"
        );
    }
}
