//! The one list of step kinds, and each kind's validated parameters.
//!
//! What a kind does (its action, inverse, runbook text, prechecks, dry-run
//! facts and properties) is its `steps::Step` implementation in
//! `src/steps/<kind>.rs`; how it is written in a plan is its raw form in
//! `model.rs`, checked in `validate/steps.rs`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::validated::millis;

/// Every step kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    Snapshot(Snapshot),
    Replicate(Replicate),
    WaitLag(WaitLag),
    Checksum(Checksum),
    Freeze(Freeze),
    CatchUp(CatchUp),
    Promote(Promote),
    Repoint(Repoint),
    ReverseReplication(ReverseReplication),
    DnsSwitch(DnsSwitch),
    Unfreeze(Unfreeze),
    Hook(Hook),
    Confirm(Confirm),
    Sleep(Sleep),
}

/// Calls `$body` with `$k` bound to the parameters of whichever kind `$kind`
/// is: the one match over the list above that dispatching needs.
#[macro_export]
macro_rules! each_step_kind {
    ($kind:expr, $k:ident => $body:expr) => {
        match $kind {
            $crate::plan::StepKind::Snapshot($k) => $body,
            $crate::plan::StepKind::Replicate($k) => $body,
            $crate::plan::StepKind::WaitLag($k) => $body,
            $crate::plan::StepKind::Checksum($k) => $body,
            $crate::plan::StepKind::Freeze($k) => $body,
            $crate::plan::StepKind::CatchUp($k) => $body,
            $crate::plan::StepKind::Promote($k) => $body,
            $crate::plan::StepKind::Repoint($k) => $body,
            $crate::plan::StepKind::ReverseReplication($k) => $body,
            $crate::plan::StepKind::DnsSwitch($k) => $body,
            $crate::plan::StepKind::Unfreeze($k) => $body,
            $crate::plan::StepKind::Hook($k) => $body,
            $crate::plan::StepKind::Confirm($k) => $body,
            $crate::plan::StepKind::Sleep($k) => $body,
        }
    };
}

impl StepKind {
    /// The name used in plans, journals and reports.
    pub fn kind_name(&self) -> &'static str {
        match self {
            StepKind::Snapshot(_) => "snapshot",
            StepKind::Replicate(_) => "replicate",
            StepKind::WaitLag(_) => "wait_lag",
            StepKind::Checksum(_) => "checksum",
            StepKind::Freeze(_) => "freeze",
            StepKind::CatchUp(_) => "catch_up",
            StepKind::Promote(_) => "promote",
            StepKind::Repoint(_) => "repoint",
            StepKind::ReverseReplication(_) => "reverse_replication",
            StepKind::DnsSwitch(_) => "dns_switch",
            StepKind::Unfreeze(_) => "unfreeze",
            StepKind::Hook(_) => "hook",
            StepKind::Confirm(_) => "confirm",
            StepKind::Sleep(_) => "sleep",
        }
    }
}

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
