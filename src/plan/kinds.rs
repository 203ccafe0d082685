//! The one list of step kinds ([`with_step_kinds!`]), and each kind's
//! validated parameters.
//!
//! Everything else about a kind is in its own file, `src/steps/<kind>.rs`:
//! how it is written in a plan and checked (its [`KindSyntax`]), and what it
//! does (its action, inverse, runbook text, prechecks, dry-run fact and
//! properties, `steps::StepBehaviour`). Adding a kind: its file, its
//! parameters below, and one line in the list.

use std::fmt::Debug;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::gates::Gates;
use super::located::{HumanDuration, Located, Position};
use super::millis;

/// The one list of step kinds: each kind's parameter type and what a plan
/// says about it (the doc line is the plan schema's description). Calls
/// `$callback!` with the list, so `StepKind` here, `RawStep` in `model` and
/// the steps' dispatch in `steps` are generated from it; `$name` is the
/// kind's name in plans, journals and reports.
macro_rules! with_step_kinds {
    ($callback:ident) => {
        $callback! {
            /// Copy one consistent snapshot of the source to the targets.
            Snapshot = "snapshot",
            /// Start replication on targets from the snapshot's GTID position.
            Replicate = "replicate",
            /// Wait until every target's lag stays under the gate.
            WaitLag = "wait_lag",
            /// Compare rows across the source and targets.
            Checksum = "checksum",
            /// Fence the primary against writes and drain sessions.
            Freeze = "freeze",
            /// Wait until targets executed exactly the frozen position.
            CatchUp = "catch_up",
            /// Make a caught-up target the writable primary.
            Promote = "promote",
            /// Move other clusters under the new primary.
            Repoint = "repoint",
            /// Make the old source a read-only replica of the new primary.
            ReverseReplication = "reverse_replication",
            /// Compare-and-swap the DNS record and verify every authoritative server.
            DnsSwitch = "dns_switch",
            /// Release the write fence on the current primary.
            Unfreeze = "unfreeze",
            /// Run a command.
            Hook = "hook",
            /// Ask the operator (skipped with `--yes`) and honour a postpone file.
            Confirm = "confirm",
            /// Wait for a fixed time.
            Sleep = "sleep",
        }
    };
}

pub(crate) use with_step_kinds;

/// How a kind is written in a plan and checked; implemented in the kind's
/// own file beside its behaviour.
pub trait KindSyntax: Sized {
    /// The kind's entry in a plan: `- <kind>: { … }`.
    type Raw: DeserializeOwned + JsonSchema + Debug;

    /// The `name:` the plan gives the step, if any.
    fn explicit_name(raw: &Self::Raw) -> Option<&Located<String>>;

    /// The raw entry checked into parameters, every problem recorded in
    /// `checker` (the parameters are then never used).
    fn check(raw: Self::Raw, checker: &mut dyn StepCheck) -> Self;
}

/// The longest timeout a step may be given.
pub const MAX_STEP_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What a kind's check may ask of the validation under way (which provides
/// it): the clusters the plan names, its gates, and where to record what is
/// wrong, with its line.
pub trait StepCheck {
    /// The plan's gates, where a step's omitted settings come from.
    fn gates(&self) -> &Gates;

    fn error(&mut self, position: Position, message: String);

    /// A number within `low..=high`.
    fn number(&mut self, value: &Located<i64>, low: i64, high: i64, what: &str) -> u64;

    /// A duration within `low..=high`.
    fn duration(
        &mut self,
        value: &Located<HumanDuration>,
        low: Duration,
        high: Duration,
        what: &str,
    ) -> Duration;

    /// Enabled targets, each once; every enabled target when omitted.
    fn targets(&mut self, raw: Option<&Vec<Located<String>>>, what: &str) -> Vec<String>;

    /// A cluster the plan declares and enables.
    fn enabled_cluster(&mut self, name: &Located<String>) -> String;

    /// An enabled cluster that is a target, not the source.
    fn enabled_target(&mut self, name: &Located<String>, what: &str) -> String;

    /// The plan's source cluster.
    fn source_name(&self) -> String;

    /// A DNS switch to `to` needs a `dns` section with a value for it.
    fn dns_target(&mut self, to: &Located<String>, what: &str);

    /// Milliseconds within `low..=high`.
    fn millis(&mut self, value: &Located<i64>, low: i64, high: i64, what: &str) -> Duration {
        Duration::from_millis(self.number(value, low, high, what))
    }

    /// A duration within `low..=high`, or `default` when omitted.
    fn optional_duration(
        &mut self,
        value: Option<&Located<HumanDuration>>,
        default: Duration,
        low: Duration,
        high: Duration,
        what: &str,
    ) -> Duration {
        match value {
            Some(value) => self.duration(value, low, high, what),
            None => default,
        }
    }
}

macro_rules! define_step_kinds {
    ($( $(#[$doc:meta])* $kind:ident = $name:literal, )*) => {
        /// Every step kind, with its validated parameters.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "kind")]
        pub enum StepKind {
            $( #[serde(rename = $name)] $kind($kind), )*
        }

        impl StepKind {
            /// The name used in plans, journals and reports.
            pub fn kind_name(&self) -> &'static str {
                match self {
                    $( StepKind::$kind(_) => $name, )*
                }
            }
        }
    };
}

with_step_kinds!(define_step_kinds);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub targets: Vec<String>,
    pub workers: u32,
    pub directory: Option<PathBuf>,
    pub replace: bool,
    pub skip_binlog: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replicate {
    pub targets: Vec<String>,
    #[serde(with = "millis")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitLag {
    pub targets: Vec<String>,
    pub max_lag_ms: u64,
    #[serde(with = "millis")]
    pub sustained_for: Duration,
    #[serde(with = "millis")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checksum {
    pub targets: Vec<String>,
    pub tables: Vec<String>,
    pub float_precision: u32,
    pub money_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Freeze {
    pub cluster: String,
    #[serde(with = "millis")]
    pub drain_timeout: Duration,
    #[serde(with = "millis")]
    pub budget: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatchUp {
    pub targets: Vec<String>,
    #[serde(with = "millis")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Promote {
    pub cluster: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Repoint {
    pub to: String,
    pub clusters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReverseReplication {
    pub from: String,
    pub cluster: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsSwitch {
    pub to: String,
    pub wait_ttl: bool,
    #[serde(with = "millis")]
    pub verify_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unfreeze {}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hook {
    pub command: Vec<String>,
    #[serde(with = "millis")]
    pub timeout: Duration,
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confirm {
    pub message: Option<String>,
    pub postpone_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sleep {
    #[serde(with = "millis")]
    pub duration: Duration,
}

/// A fact of the topology that a step establishes for the steps after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Established {
    Nothing,
    /// These clusters replicate from the primary (`None`: every enabled target).
    Replication(Option<Vec<String>>),
    /// Another cluster is primary (so every other cluster follows it).
    Primary,
    /// The DNS record names another cluster.
    Dns,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_serialises_flat_with_its_name_as_journals_keep_it() {
        let freeze = StepKind::Freeze(Freeze {
            cluster: "legacy".into(),
            drain_timeout: Duration::from_millis(250),
            budget: Duration::from_secs(3),
        });
        assert_eq!(
            serde_json::to_value(&freeze).unwrap(),
            serde_json::json!({
                "kind": "freeze", "cluster": "legacy", "drain_timeout": 250, "budget": 3000
            })
        );
        assert_eq!(
            serde_json::to_value(StepKind::Unfreeze(Unfreeze {})).unwrap(),
            serde_json::json!({ "kind": "unfreeze" })
        );
        assert_eq!(freeze.kind_name(), "freeze");
    }
}
