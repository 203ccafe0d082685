//! Phases and steps: each raw step checked and turned into its kind, composites expanded.

use super::*;
use crate::plan::kinds::StepCheck;
use crate::plan::switchover;

/// The validation under way, as a step kind's check (its `KindSyntax`, in
/// its own file) sees it.
struct StepChecker<'a> {
    checker: &'a mut Checker,
    gates: &'a Gates,
}

impl StepCheck for StepChecker<'_> {
    fn gates(&self) -> &Gates {
        self.gates
    }

    fn error(&mut self, position: Position, message: String) {
        self.checker.error(position, message);
    }

    fn number(&mut self, value: &Located<i64>, low: i64, high: i64, what: &str) -> u64 {
        self.checker.number(value, low, high, what)
    }

    fn duration(
        &mut self,
        value: &Located<HumanDuration>,
        low: Duration,
        high: Duration,
        what: &str,
    ) -> Duration {
        self.checker.duration(value, low, high, what)
    }

    fn targets(&mut self, raw: Option<&Vec<Located<String>>>, what: &str) -> Vec<String> {
        self.checker.targets(raw, what)
    }

    fn enabled_cluster(&mut self, name: &Located<String>) -> String {
        self.checker.enabled_cluster(name)
    }

    fn enabled_target(&mut self, name: &Located<String>, what: &str) -> String {
        self.checker.enabled_target(name, what)
    }

    fn source_name(&self) -> String {
        self.checker.source_name()
    }

    fn dns_target(&mut self, to: &Located<String>, what: &str) {
        self.checker.dns_target(to, what);
    }
}

impl Checker {
    pub(super) fn phases(
        &mut self,
        raw: Vec<RawPhase>,
        gates: &Gates,
        has_drill: bool,
    ) -> Vec<Phase> {
        if raw.is_empty() && !has_drill {
            self.error(
                Position { line: 1, column: 1 },
                "`phases` is empty: a plan needs at least one phase (or a `drill`)",
            );
        }
        let mut seen: IndexMap<String, Position> = IndexMap::new();
        let mut phases = Vec::new();
        for phase in raw {
            self.identifier(&phase.name, "phase name");
            if let Some(first) = seen.get(&phase.name.value) {
                let message = format!(
                    "duplicate phase name `{}` (first used on line {})",
                    phase.name.value, first.line
                );
                self.error(phase.name.position, message);
            } else {
                seen.insert(phase.name.value.clone(), phase.name.position);
            }
            if phase.steps.is_empty() {
                self.error(
                    phase.name.position,
                    format!("phase `{}` has no steps", phase.name.value),
                );
            }
            let steps = self.steps(&phase.name.value, phase.steps, gates);
            phases.push(Phase {
                name: phase.name.value,
                description: phase.description,
                rollback: phase.rollback,
                steps,
            });
        }
        phases
    }

    pub(super) fn steps(&mut self, phase: &str, raw: Vec<RawStep>, gates: &Gates) -> Vec<Step> {
        let mut steps: Vec<Step> = Vec::new();
        let mut explicit_names: IndexMap<String, Position> = IndexMap::new();
        for raw_step in raw {
            let explicit = raw_step.explicit_name().cloned();
            if let Some(name) = &explicit {
                self.identifier(name, "step name");
                if let Some(first) = explicit_names.get(&name.value) {
                    let message = format!(
                        "duplicate step name `{}` in phase `{phase}` (first used on line {})",
                        name.value, first.line
                    );
                    self.error(name.position, message);
                } else {
                    explicit_names.insert(name.value.clone(), name.position);
                }
            }
            for (kind, expanded_from) in self.step(raw_step, gates) {
                let base = match (&explicit, &expanded_from) {
                    (Some(name), Some(_)) => format!("{}.{}", name.value, kind.kind_name()),
                    (Some(name), None) => name.value.clone(),
                    (None, Some(composite)) => format!("{composite}.{}", kind.kind_name()),
                    (None, None) => kind.kind_name().to_string(),
                };
                let name = unique_name(&base, &steps);
                steps.push(Step {
                    name,
                    kind,
                    expanded_from,
                });
            }
        }
        steps
    }

    /// One raw step → one step (checked in its kind's own file), or the
    /// sequence a composite expands to.
    pub(super) fn step(&mut self, raw: RawStep, gates: &Gates) -> Vec<(StepKind, Option<String>)> {
        let mut checker = StepChecker {
            checker: self,
            gates,
        };
        match raw.check(&mut checker) {
            Ok(kind) => vec![(kind, None)],
            Err(composite) => self.switchover(*composite, gates),
        }
    }

    /// A `switchover` step: the one sequence of [`switchover::sequence`].
    pub(super) fn switchover(
        &mut self,
        step: SwitchoverStep,
        gates: &Gates,
    ) -> Vec<(StepKind, Option<String>)> {
        let to = self.enabled_target(&step.to, "switchover `to`");
        let drain_timeout = self.optional_duration(
            step.drain_timeout.as_ref(),
            gates.drain_timeout,
            Duration::ZERO,
            Duration::from_secs(600),
            "switchover drain_timeout",
        );
        let composite = format!("switchover-{to}");
        let others: Vec<String> = self
            .targets(None, "switchover")
            .into_iter()
            .filter(|name| *name != to)
            .collect();
        if self.has_dns {
            self.dns_target(&step.to, "switchover");
        }
        let switchover = switchover::Switchover {
            from: self.source_name(),
            to,
            others,
            drain_timeout,
            freeze_budget: gates.freeze_budget,
            dns_verify_timeout: gates.dns_verify_timeout,
            dns: self.has_dns,
            wait_ttl: step.wait_ttl.unwrap_or(false),
            catch_up_by_replicating: false,
            promoted_already: false,
            unfreeze: true,
        };
        switchover::sequence(&switchover)
            .into_iter()
            .map(|kind| (kind, Some(composite.clone())))
            .collect()
    }
}

pub(super) fn unique_name(base: &str, steps: &[Step]) -> String {
    if !steps.iter().any(|step| step.name == base) {
        return base.to_string();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| !steps.iter().any(|step| step.name == *candidate))
        .expect("an unused suffix exists")
}
