//! Which prechecks run before the run and which wait for the start of the
//! phase that needs them, because an earlier phase of the same run makes
//! their state true (targets replicate after `replicate`, another primary
//! after a switchover). Pure: it reads the plan, never a server.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::plan::{Established, Phase, ValidatedPlan};
use crate::steps::StepBehaviour;

/// A precheck left to the start of a phase, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeferredCheck {
    /// The phase whose start runs it.
    pub phase: String,
    pub cluster: String,
    pub check: String,
    pub reason: String,
}

/// When each precheck runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrecheckSchedule {
    /// Clusters that must already replicate from the source before the run.
    pub must_follow_now: BTreeSet<String>,
    /// Clusters whose replication checks wait for a later phase.
    pub deferred_clusters: BTreeSet<String>,
    /// Phases (by index in the plan) whose start runs their prechecks again.
    pub phase_starts: BTreeSet<usize>,
    pub deferred: Vec<DeferredCheck>,
}

impl PrecheckSchedule {
    /// Leave `(cluster, check)` to the start of `phase`.
    fn defer(&mut self, index: usize, phase: &Phase, what: (&str, &str), reason: String) {
        self.phase_starts.insert(index);
        self.deferred.push(DeferredCheck {
            phase: phase.name.clone(),
            cluster: what.0.to_string(),
            check: what.1.to_string(),
            reason,
        });
    }
}

/// Who made a fact true, for the reason shown to the operator.
#[derive(Debug, Clone)]
struct Maker {
    phase: String,
    step: String,
    kind: &'static str,
}

impl Maker {
    fn reason(&self, what: &str) -> String {
        format!(
            "{what} once `{}` ({}) in phase `{}` has run",
            self.step, self.kind, self.phase
        )
    }
}

/// Walk the selected phases in order and decide, for every check a phase
/// needs, whether the state it checks exists before the run or is made by an
/// earlier phase of this run.
pub fn schedule(plan: &ValidatedPlan, phases: &[(usize, &Phase)]) -> PrecheckSchedule {
    let source = plan.source().name.clone();
    let targets: Vec<String> = plan
        .enabled_clusters()
        .map(|c| c.name.clone())
        .filter(|name| *name != source)
        .collect();
    let mut out = PrecheckSchedule::default();
    // Facts made by the phases walked so far (not by earlier steps of the same phase).
    let mut replication_by: BTreeMap<String, Maker> = BTreeMap::new();
    let mut primary_by: Option<Maker> = None;
    let mut dns_by: Option<Maker> = None;

    for (index, phase) in phases {
        let needs_followers = phase.steps.iter().any(|s| s.kind.needs_followers());
        let switches = phase.steps.iter().any(|s| {
            matches!(
                s.kind.establishes(),
                Established::Primary | Established::Dns
            )
        });
        if needs_followers {
            for cluster in &targets {
                let maker = primary_by.as_ref().or(replication_by.get(cluster));
                match maker {
                    Some(maker) => {
                        out.deferred_clusters.insert(cluster.clone());
                        out.defer(
                            *index,
                            phase,
                            (cluster, "replication"),
                            maker.reason("replicates from the primary"),
                        );
                    }
                    None => {
                        out.must_follow_now.insert(cluster.clone());
                    }
                }
            }
        }
        if switches {
            if let Some(maker) = &primary_by {
                let reason = maker.reason("another cluster is primary");
                out.defer(*index, phase, ("the primary then", "writable"), reason);
            }
            if let (Some(maker), true) = (&dns_by, plan.dns.is_some()) {
                let reason = maker.reason("the record names another cluster");
                out.defer(*index, phase, ("dns", "record"), reason);
            }
        }
        for step in &phase.steps {
            let maker = Maker {
                phase: phase.name.clone(),
                step: step.name.clone(),
                kind: step.kind.kind_name(),
            };
            match step.kind.establishes() {
                Established::Nothing => {}
                Established::Replication(clusters) => {
                    for cluster in clusters.unwrap_or_else(|| targets.clone()) {
                        replication_by.insert(cluster, maker.clone());
                    }
                }
                Established::Primary => primary_by = Some(maker),
                Established::Dns => dns_by = Some(maker),
            }
        }
    }
    // A cluster checked now for one phase is not also "deferred only".
    out.deferred_clusters
        .retain(|cluster| !out.must_follow_now.contains(cluster));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::load_str;
    use std::path::Path;

    const CLUSTERS: &str = "
clusters:
  legacy: { role: source, host: 127.0.0.10, user: u, password_env: P }
  c1: { role: target, host: 127.0.0.11, user: u, password_env: P }
  c2: { role: target, host: 127.0.0.12, user: u, password_env: P }
";

    fn plan(phases: &str) -> ValidatedPlan {
        let text = format!("name: t\n{CLUSTERS}phases:\n{phases}");
        load_str(Path::new("t.yaml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn all(plan: &ValidatedPlan) -> PrecheckSchedule {
        let phases: Vec<(usize, &Phase)> = plan.phases.iter().enumerate().collect();
        schedule(plan, &phases)
    }

    #[test]
    fn replication_made_by_an_earlier_phase_is_checked_at_the_phase_that_needs_it() {
        let plan = plan(
            "  - name: load\n    rollback: manual\n    steps:\n      - snapshot: {}\n      - replicate: {}\n\
             \x20 - name: verify\n    rollback: manual\n    steps:\n      - wait_lag: {}\n\
             \x20 - name: cut\n    rollback: auto\n    steps:\n      - switchover: { to: c1 }\n",
        );
        let schedule = all(&plan);
        assert!(schedule.must_follow_now.is_empty(), "{schedule:?}");
        assert_eq!(
            schedule.deferred_clusters,
            BTreeSet::from(["c1".to_string(), "c2".to_string()])
        );
        assert_eq!(schedule.phase_starts, BTreeSet::from([1, 2]));
        let first = &schedule.deferred[0];
        assert_eq!(
            (first.phase.as_str(), first.cluster.as_str()),
            ("verify", "c1")
        );
        assert!(first.reason.contains("phase `load`"), "{first:?}");
    }

    #[test]
    fn a_plan_without_a_replicate_step_checks_replication_before_the_run() {
        let plan = plan(
            "  - name: verify\n    rollback: manual\n    steps:\n      - wait_lag: {}\n\
             \x20 - name: cut\n    rollback: auto\n    steps:\n      - switchover: { to: c1 }\n",
        );
        let schedule = all(&plan);
        assert_eq!(
            schedule.must_follow_now,
            BTreeSet::from(["c1".to_string(), "c2".to_string()])
        );
        assert!(schedule.deferred.is_empty(), "{schedule:?}");
        assert!(schedule.phase_starts.is_empty());
    }

    #[test]
    fn replication_made_in_the_same_phase_needs_no_precheck() {
        let plan = plan(
            "  - name: all\n    rollback: manual\n    steps:\n      - snapshot: {}\n      - replicate: {}\n      - wait_lag: {}\n",
        );
        let schedule = all(&plan);
        // The phase needs followers but nothing earlier in the run made them:
        // checked before the run, as a plan run on its own would be.
        assert_eq!(schedule.must_follow_now.len(), 2);
        assert!(schedule.deferred.is_empty());
    }

    #[test]
    fn a_second_switchover_checks_the_new_primary_at_its_phase_start() {
        let plan = plan(
            "  - name: there\n    rollback: auto\n    steps:\n      - switchover: { to: c1 }\n\
             \x20 - name: back\n    rollback: auto\n    steps:\n      - switchover: { to: c2 }\n",
        );
        let schedule = all(&plan);
        assert_eq!(schedule.phase_starts, BTreeSet::from([1]));
        assert!(
            schedule
                .deferred
                .iter()
                .any(|d| d.phase == "back" && d.check == "writable"),
            "{schedule:?}"
        );
        // Followers are needed by the first switchover before the run.
        assert_eq!(schedule.must_follow_now.len(), 2);
        assert!(schedule.deferred_clusters.is_empty());
    }

    #[test]
    fn only_the_selected_phases_count() {
        let plan = plan(
            "  - name: load\n    rollback: manual\n    steps:\n      - replicate: {}\n\
             \x20 - name: verify\n    rollback: manual\n    steps:\n      - checksum: {}\n",
        );
        let verify_only: Vec<(usize, &Phase)> = vec![(1, &plan.phases[1])];
        let schedule = schedule(&plan, &verify_only);
        assert_eq!(schedule.must_follow_now.len(), 2);
        assert!(schedule.deferred.is_empty());
    }
}
