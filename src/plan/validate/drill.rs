//! The `drill` section.

use super::*;

impl Checker {
    pub(super) fn drill(&mut self, raw: RawDrill, has_application: bool) -> Drill {
        let position = raw.failure.position;
        let primary = match &raw.primary {
            Some(name) => self.enabled_cluster(name),
            None => self.source.clone().unwrap_or_default(),
        };
        let dr: Vec<String> = match &raw.dr {
            Some(names) => names
                .iter()
                .map(|name| {
                    let value = self.enabled_cluster(name);
                    if value == primary {
                        self.error(
                            name.position,
                            format!("drill.dr names `{value}`, the primary being failed"),
                        );
                    }
                    value
                })
                .collect(),
            None => self
                .clusters
                .iter()
                .filter(|(name, (_, enabled))| *enabled && **name != primary)
                .map(|(name, _)| name.clone())
                .collect(),
        };
        if dr.is_empty() {
            self.error(
                position,
                "drill: no cluster can take over (drill.dr is empty)",
            );
        }
        if !self.has_dns {
            self.error_with_help(
                position,
                "a drill switches the application's DNS record, but the plan has no `dns` section",
                "add `dns:` with the record applications use",
            );
        }
        if !has_application {
            self.error_with_help(
                position,
                "a drill measures RTO and RPO with the write probe, but the plan has no `application` section",
                "add `application:` with the host and account applications use",
            );
        }
        let command = |parts: Option<Vec<Located<String>>>| -> Vec<String> {
            parts
                .unwrap_or_default()
                .into_iter()
                .map(|part| part.value)
                .collect()
        };
        let inject = command(raw.inject);
        let recover = command(raw.recover);
        let failure = raw.failure.value;
        if failure != DrillFailure::Planned && inject.is_empty() {
            self.error_with_help(
                position,
                "a `crash` or `isolate` drill needs `inject`: the command that fails the primary",
                "for the lab: inject: [cutover, lab, kill, legacy]",
            );
        }
        let rejoin = raw
            .failback
            .as_ref()
            .and_then(|f| f.rejoin.as_ref())
            .is_none_or(|v| v.value);
        let switch_back = raw
            .failback
            .as_ref()
            .and_then(|f| f.switch_back.as_ref())
            .is_some_and(|v| v.value);
        if failure != DrillFailure::Planned && rejoin && recover.is_empty() {
            self.error_with_help(
                position,
                "failback rejoins the failed primary, which needs `recover`: the command that brings it back",
                "for the lab: recover: [cutover, lab, restart, legacy, --read-only]; or set failback.rejoin: false",
            );
        }
        if switch_back && !rejoin {
            self.error(
                position,
                "failback.switch_back needs failback.rejoin: the old primary must be a replica first",
            );
        }
        let week = Duration::from_secs(7 * 24 * 3600);
        Drill {
            primary,
            dr,
            failure,
            inject,
            recover,
            hook_timeout: self.optional_duration(
                raw.hook_timeout.as_ref(),
                Duration::from_secs(60),
                Duration::from_millis(1),
                MAX_TIMEOUT,
                "drill.hook_timeout",
            ),
            detect_after: self.optional_duration(
                raw.detect_after.as_ref(),
                Duration::from_secs(1),
                Duration::ZERO,
                Duration::from_secs(600),
                "drill.detect_after",
            ),
            probe_rate: raw.probe_rate.as_ref().map_or(50, |rate| {
                self.number(rate, 1, 1000, "drill.probe_rate") as u32
            }),
            rto: raw
                .rto
                .as_ref()
                .map(|rto| self.duration(rto, Duration::from_millis(1), week, "drill.rto")),
            rpo: raw
                .rpo
                .as_ref()
                .map(|rpo| self.duration(rpo, Duration::ZERO, week, "drill.rpo")),
            rejoin,
            switch_back,
        }
    }
}
