//! Phases and steps: each raw step checked and turned into its kind, composites expanded.

use super::*;
use crate::plan::{kinds, switchover};

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
            let explicit = step_name(&raw_step).cloned();
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

    /// One raw step → one step, or the sequence a composite expands to.
    pub(super) fn step(&mut self, raw: RawStep, gates: &Gates) -> Vec<(StepKind, Option<String>)> {
        let day = MAX_TIMEOUT;
        let single = |kind| vec![(kind, None)];
        match raw {
            RawStep::Snapshot(step) => single(StepKind::Snapshot(kinds::Snapshot {
                targets: self.targets(step.targets.as_ref(), "snapshot target"),
                workers: step.workers.as_ref().map_or(4, |workers| {
                    self.number(workers, 1, 64, "snapshot workers") as u32
                }),
                directory: step.directory.map(PathBuf::from),
                replace: step.replace.unwrap_or(false),
                skip_binlog: step.skip_binlog.unwrap_or(false),
            })),
            RawStep::Replicate(step) => single(StepKind::Replicate(kinds::Replicate {
                targets: self.targets(step.targets.as_ref(), "replicate target"),
                timeout: self.optional_duration(
                    step.timeout.as_ref(),
                    gates.lag_timeout,
                    Duration::from_millis(1),
                    day,
                    "replicate timeout",
                ),
            })),
            RawStep::WaitLag(step) => single(StepKind::WaitLag(kinds::WaitLag {
                targets: self.targets(step.targets.as_ref(), "wait_lag target"),
                max_lag_ms: step.max_lag_ms.as_ref().map_or(gates.max_lag_ms, |value| {
                    self.number(value, 1, 3_600_000, "wait_lag max_lag_ms")
                }),
                sustained_for: self.optional_duration(
                    step.sustained_for.as_ref(),
                    gates.sustained_for,
                    Duration::ZERO,
                    Duration::from_secs(3600),
                    "wait_lag sustained_for",
                ),
                timeout: self.optional_duration(
                    step.timeout.as_ref(),
                    gates.lag_timeout,
                    Duration::from_millis(1),
                    day,
                    "wait_lag timeout",
                ),
            })),
            RawStep::Checksum(step) => {
                let tables = step
                    .tables
                    .unwrap_or_default()
                    .into_iter()
                    .map(|pattern| {
                        if pattern.value.trim().is_empty()
                            || pattern.value.contains(char::is_whitespace)
                        {
                            self.error(
                                pattern.position,
                                format!("table pattern `{}` is empty or has spaces", pattern.value),
                            );
                        }
                        pattern.value
                    })
                    .collect();
                let money_columns = step
                    .money_columns
                    .unwrap_or_default()
                    .into_iter()
                    .map(|column| {
                        if column.value.split('.').count() < 2 {
                            self.error(
                                column.position,
                                format!(
                                    "money column `{}` must be written `table.column`",
                                    column.value
                                ),
                            );
                        }
                        column.value
                    })
                    .collect();
                single(StepKind::Checksum(kinds::Checksum {
                    targets: self.targets(step.targets.as_ref(), "checksum target"),
                    tables,
                    float_precision: step.float_precision.as_ref().map_or(12, |precision| {
                        self.number(precision, 1, 17, "checksum float_precision") as u32
                    }),
                    money_columns,
                }))
            }
            RawStep::Freeze(step) => single(StepKind::Freeze(kinds::Freeze {
                cluster: match &step.cluster {
                    Some(cluster) => self.enabled_cluster(cluster),
                    None => self.source_name(),
                },
                drain_timeout: self.optional_duration(
                    step.drain_timeout.as_ref(),
                    gates.drain_timeout,
                    Duration::ZERO,
                    Duration::from_secs(600),
                    "freeze drain_timeout",
                ),
                budget: step
                    .budget_ms
                    .as_ref()
                    .map_or(gates.freeze_budget, |value| {
                        self.millis(value, 100, 600_000, "freeze budget_ms")
                    }),
            })),
            RawStep::CatchUp(step) => single(StepKind::CatchUp(kinds::CatchUp {
                targets: self.targets(step.targets.as_ref(), "catch_up target"),
                timeout: self.optional_duration(
                    step.timeout.as_ref(),
                    gates.freeze_budget,
                    Duration::from_millis(1),
                    day,
                    "catch_up timeout",
                ),
            })),
            RawStep::Promote(step) => single(StepKind::Promote(kinds::Promote {
                cluster: self.enabled_target(&step.cluster, "promote candidate"),
            })),
            RawStep::Repoint(step) => {
                let to = self.enabled_cluster(&step.to);
                let clusters = match &step.clusters {
                    Some(_) => self.targets(step.clusters.as_ref(), "repoint cluster"),
                    None => self
                        .targets(None, "repoint cluster")
                        .into_iter()
                        .filter(|name| *name != to)
                        .collect(),
                };
                if let Some(list) = &step.clusters
                    && let Some(same) = list.iter().find(|name| name.value == to)
                {
                    self.error(
                        same.position,
                        format!("cluster `{to}` cannot replicate from itself"),
                    );
                }
                single(StepKind::Repoint(kinds::Repoint { to, clusters }))
            }
            RawStep::ReverseReplication(step) => {
                let from = self.enabled_target(&step.from, "reverse_replication `from`");
                let cluster = match &step.cluster {
                    Some(cluster) => self.enabled_cluster(cluster),
                    None => self.source_name(),
                };
                if cluster == from {
                    self.error(
                        step.from.position,
                        format!("cluster `{from}` cannot replicate from itself"),
                    );
                }
                single(StepKind::ReverseReplication(kinds::ReverseReplication {
                    from,
                    cluster,
                }))
            }
            RawStep::DnsSwitch(step) => {
                let to = self.enabled_cluster(&step.to);
                self.dns_target(&step.to, "dns_switch");
                single(StepKind::DnsSwitch(kinds::DnsSwitch {
                    to,
                    wait_ttl: step.wait_ttl.unwrap_or(false),
                    verify_timeout: self.optional_duration(
                        step.verify_timeout.as_ref(),
                        gates.dns_verify_timeout,
                        Duration::from_millis(100),
                        Duration::from_secs(3600),
                        "dns_switch verify_timeout",
                    ),
                }))
            }
            RawStep::Unfreeze(_) => single(StepKind::Unfreeze(kinds::Unfreeze {})),
            RawStep::Hook(step) => {
                if step.command.is_empty() || step.command[0].value.trim().is_empty() {
                    let position = step
                        .command
                        .first()
                        .map_or(Position::UNKNOWN, |first| first.position);
                    self.error(
                        position,
                        "hook command is empty: give the program and its arguments",
                    );
                }
                let cluster = step
                    .cluster
                    .as_ref()
                    .map(|cluster| self.enabled_cluster(cluster));
                single(StepKind::Hook(kinds::Hook {
                    command: step.command.into_iter().map(|part| part.value).collect(),
                    timeout: self.optional_duration(
                        step.timeout.as_ref(),
                        Duration::from_secs(60),
                        Duration::from_millis(1),
                        day,
                        "hook timeout",
                    ),
                    cluster,
                }))
            }
            RawStep::Confirm(step) => single(StepKind::Confirm(kinds::Confirm {
                message: step.message,
                postpone_file: step.postpone_file.map(PathBuf::from),
            })),
            RawStep::Sleep(step) => single(StepKind::Sleep(kinds::Sleep {
                duration: self.duration(&step.duration, Duration::ZERO, day, "sleep duration"),
            })),
            RawStep::Switchover(step) => self.switchover(step, gates),
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

pub(super) fn step_name(step: &RawStep) -> Option<&Located<String>> {
    match step {
        RawStep::Snapshot(s) => s.name.as_ref(),
        RawStep::Replicate(s) | RawStep::CatchUp(s) => s.name.as_ref(),
        RawStep::WaitLag(s) => s.name.as_ref(),
        RawStep::Checksum(s) => s.name.as_ref(),
        RawStep::Freeze(s) => s.name.as_ref(),
        RawStep::Promote(s) => s.name.as_ref(),
        RawStep::Repoint(s) => s.name.as_ref(),
        RawStep::ReverseReplication(s) => s.name.as_ref(),
        RawStep::DnsSwitch(s) => s.name.as_ref(),
        RawStep::Unfreeze(s) => s.name.as_ref(),
        RawStep::Hook(s) => s.name.as_ref(),
        RawStep::Confirm(s) => s.name.as_ref(),
        RawStep::Sleep(s) => s.name.as_ref(),
        RawStep::Switchover(s) => s.name.as_ref(),
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
