//! The `gates` section and the accounts kept through a switchover.

use super::*;

impl Checker {
    pub(super) fn gates(&mut self, raw: RawGates) -> Gates {
        let defaults = Gates::default();
        let hour = Duration::from_secs(3600);
        Gates {
            max_lag_ms: raw
                .max_lag_ms
                .as_ref()
                .map_or(defaults.max_lag_ms, |value| {
                    self.number(value, 1, 3_600_000, "gates.max_lag_ms")
                }),
            sustained_for: self.optional_duration(
                raw.sustained_for.as_ref(),
                defaults.sustained_for,
                Duration::ZERO,
                hour,
                "gates.sustained_for",
            ),
            freeze_budget: raw
                .freeze_budget_ms
                .as_ref()
                .map_or(defaults.freeze_budget, |value| {
                    self.millis(value, 100, 600_000, "gates.freeze_budget_ms")
                }),
            drain_timeout: self.optional_duration(
                raw.drain_timeout.as_ref(),
                defaults.drain_timeout,
                Duration::ZERO,
                Duration::from_secs(600),
                "gates.drain_timeout",
            ),
            lag_timeout: self.optional_duration(
                raw.lag_timeout.as_ref(),
                defaults.lag_timeout,
                Duration::from_millis(1),
                MAX_TIMEOUT,
                "gates.lag_timeout",
            ),
            dns_verify_timeout: self.optional_duration(
                raw.dns_verify_timeout.as_ref(),
                defaults.dns_verify_timeout,
                Duration::from_millis(100),
                hour,
                "gates.dns_verify_timeout",
            ),
            heartbeat_interval: raw
                .heartbeat_interval_ms
                .as_ref()
                .map_or(defaults.heartbeat_interval, |value| {
                    self.millis(value, 10, 60_000, "gates.heartbeat_interval_ms")
                }),
            max_clock_skew_ms: raw
                .max_clock_skew_ms
                .as_ref()
                .map_or(defaults.max_clock_skew_ms, |value| {
                    self.number(value, 1, 3_600_000, "gates.max_clock_skew_ms")
                }),
            replication_start_timeout: self.optional_duration(
                raw.replication_start_timeout.as_ref(),
                defaults.replication_start_timeout,
                Duration::from_millis(100),
                Duration::from_secs(600),
                "gates.replication_start_timeout",
            ),
            end_old_sessions: raw
                .end_old_sessions
                .as_ref()
                .map_or(defaults.end_old_sessions, |value| value.value),
            keep_sessions_of: self.kept_accounts(raw.keep_sessions_of.unwrap_or_default()),
            max_source_stall: raw
                .max_source_stall_ms
                .as_ref()
                .map_or(defaults.max_source_stall, |value| {
                    self.millis(value, 10, 10_000, "gates.max_source_stall_ms")
                }),
        }
    }

    /// Account names only (the servers say whether they exist, in the prechecks).
    pub(super) fn kept_accounts(&mut self, raw: Vec<Located<String>>) -> Vec<KeptAccount> {
        let mut out: Vec<KeptAccount> = Vec::new();
        for entry in raw {
            let user = entry.value.trim();
            if user.is_empty()
                || user.len() > 80
                || user
                    .chars()
                    .any(|c| matches!(c, '\'' | '`' | '"' | '@') || c.is_control())
            {
                self.error(
                    entry.position,
                    format!(
                        "gates.keep_sessions_of: `{}` is not an account name (a user name as in `SHOW PROCESSLIST`, without a host)",
                        entry.value
                    ),
                );
                continue;
            }
            if out.iter().any(|kept| kept.user == user) {
                self.error(
                    entry.position,
                    format!("gates.keep_sessions_of names `{user}` twice"),
                );
                continue;
            }
            out.push(KeptAccount {
                user: user.to_string(),
                at: entry.position.to_string(),
            });
        }
        out
    }
}
