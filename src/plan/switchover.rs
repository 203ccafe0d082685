//! The one switchover sequence: what a plan's `switchover` step expands to,
//! and what a rollback runs to switch back.
//!
//! freeze → catch-up → promote → DNS → unfreeze → reverse replication → re-point.
//! Only what protects acknowledged writes sits between freeze and unfreeze.
//! Reverse replication and re-pointing wait until writes flow again: the old
//! primary is already read-only from the frozen position, the others already
//! follow it, and GTID positioning lets each continue from the new primary's
//! binlog whenever it connects.

use std::time::Duration;

use super::StepKind;
use super::kinds;

/// One switchover, and what an earlier attempt of it already did.
#[derive(Debug, Clone)]
pub struct Switchover {
    /// The primary being left.
    pub from: String,
    /// The cluster promoted.
    pub to: String,
    /// The other clusters, re-pointed at `to` at the end.
    pub others: Vec<String>,
    pub drain_timeout: Duration,
    pub freeze_budget: Duration,
    pub dns_verify_timeout: Duration,
    /// Move the DNS record (the plan has DNS, and it does not name `to` yet).
    pub dns: bool,
    pub wait_ttl: bool,
    /// Start by making `to` replicate from `from`: a switch back to a
    /// cluster that was primary before has to catch up with what it missed.
    pub catch_up_by_replicating: bool,
    /// An earlier attempt got past the promotion: run only what follows it.
    pub promoted_already: bool,
    /// Lift the freeze (false only when an earlier attempt already did, with
    /// DNS in place: ending sessions again would cut readers for nothing).
    pub unfreeze: bool,
}

/// The steps of `switchover`, in order.
pub fn sequence(switchover: &Switchover) -> Vec<StepKind> {
    let Switchover { from, to, .. } = switchover;
    let mut steps = Vec::new();
    if !switchover.promoted_already {
        if switchover.catch_up_by_replicating {
            steps.push(StepKind::ReverseReplication(kinds::ReverseReplication {
                from: from.clone(),
                cluster: to.clone(),
            }));
        }
        steps.extend([
            StepKind::Freeze(kinds::Freeze {
                cluster: from.clone(),
                drain_timeout: switchover.drain_timeout,
                budget: switchover.freeze_budget,
            }),
            StepKind::CatchUp(kinds::CatchUp {
                targets: vec![to.clone()],
                timeout: switchover.freeze_budget,
            }),
            StepKind::Promote(kinds::Promote {
                cluster: to.clone(),
            }),
        ]);
    }
    if switchover.dns {
        steps.push(StepKind::DnsSwitch(kinds::DnsSwitch {
            to: to.clone(),
            wait_ttl: switchover.wait_ttl,
            verify_timeout: switchover.dns_verify_timeout,
        }));
    }
    if switchover.unfreeze {
        steps.push(StepKind::Unfreeze(kinds::Unfreeze {}));
    }
    steps.push(StepKind::ReverseReplication(kinds::ReverseReplication {
        from: to.clone(),
        cluster: from.clone(),
    }));
    if !switchover.others.is_empty() {
        steps.push(StepKind::Repoint(kinds::Repoint {
            to: to.clone(),
            clusters: switchover.others.clone(),
        }));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward() -> Switchover {
        Switchover {
            from: "legacy".into(),
            to: "c1".into(),
            others: vec!["c2".into()],
            drain_timeout: Duration::from_secs(2),
            freeze_budget: Duration::from_secs(3),
            dns_verify_timeout: Duration::from_secs(5),
            dns: true,
            wait_ttl: false,
            catch_up_by_replicating: false,
            promoted_already: false,
            unfreeze: true,
        }
    }

    fn names(steps: &[StepKind]) -> Vec<&'static str> {
        steps.iter().map(StepKind::kind_name).collect()
    }

    #[test]
    fn only_what_protects_writes_sits_inside_the_freeze() {
        assert_eq!(
            names(&sequence(&forward())),
            [
                "freeze",
                "catch_up",
                "promote",
                "dns_switch",
                "unfreeze",
                "reverse_replication",
                "repoint"
            ]
        );
    }

    #[test]
    fn a_switch_back_first_catches_up_by_replicating_and_a_resumed_one_skips_what_is_done() {
        let back = Switchover {
            catch_up_by_replicating: true,
            ..forward()
        };
        assert_eq!(
            names(&sequence(&back))[..2],
            ["reverse_replication", "freeze"]
        );
        let resumed = Switchover {
            promoted_already: true,
            dns: false,
            unfreeze: false,
            others: Vec::new(),
            ..back
        };
        assert_eq!(names(&sequence(&resumed)), ["reverse_replication"]);
    }
}
