//! Static validation: raw plan → validated plan. No network, no secrets read.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use super::diagnostic::{PlanError, PlanErrors};
use super::located::{Located, Position};
use super::model::*;
use super::validated::{
    Application, Cluster, Credentials, DnsConfig, Drill, Gates, KeptAccount, Phase, Pool,
    SecretSource, Step, StepKind, Tls, TsigConfig, ValidatedPlan,
};

/// Validate a parsed plan. Collects every error rather than stopping at the first.
pub fn validate(path: &Path, text: &str, raw: RawPlan) -> Result<ValidatedPlan, PlanErrors> {
    let mut checker = Checker::default();
    let plan = checker.plan(path, text, raw);
    if checker.errors.is_empty() {
        Ok(plan.expect("a plan is built whenever no error was recorded"))
    } else {
        let mut errors = checker.errors;
        errors.sort_by_key(|error| (error.line, error.column));
        Err(PlanErrors {
            path: path.to_path_buf(),
            errors,
            source_text: Some(text.to_owned()),
        })
    }
}

#[derive(Default)]
struct Checker {
    errors: Vec<PlanError>,
    /// Cluster name → (role, enabled), filled before steps are checked.
    clusters: IndexMap<String, (ClusterRole, bool)>,
    source: Option<String>,
    has_dns: bool,
    dns_values: HashSet<String>,
}

const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

impl Checker {
    fn error(&mut self, position: Position, message: impl Into<String>) {
        self.errors.push(PlanError::at(position, message));
    }

    fn error_with_help(
        &mut self,
        position: Position,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.errors
            .push(PlanError::at(position, message).with_help(help));
    }

    fn plan(&mut self, path: &Path, text: &str, raw: RawPlan) -> Option<ValidatedPlan> {
        self.identifier(&raw.name, "plan name");
        let clusters = self.clusters(raw.clusters);
        let replication = raw
            .replication
            .map(|credentials| self.credentials(credentials, "replication"));
        let application = raw
            .application
            .map(|application| self.application(application));
        let databases = raw.databases.map(|databases| {
            databases
                .into_iter()
                .map(|database| {
                    self.sql_identifier(&database, "database name");
                    database.value
                })
                .collect()
        });
        let dns = raw.dns.and_then(|dns| self.dns(dns));
        self.has_dns = dns.is_some();
        let gates = self.gates(raw.gates.unwrap_or_default());
        let drill = raw
            .drill
            .map(|drill| self.drill(drill, application.is_some()));
        let phases = self.phases(raw.phases, &gates, drill.is_some());

        if !self.errors.is_empty() {
            return None;
        }
        Some(ValidatedPlan {
            name: raw.name.value,
            description: raw.description,
            path: path.to_path_buf(),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            clusters,
            replication,
            application,
            databases,
            dns,
            gates,
            drill,
            phases,
        })
    }

    // ---- names and numbers -------------------------------------------------

    fn identifier(&mut self, name: &Located<String>, what: &str) {
        let valid = !name.value.is_empty()
            && name.value.len() <= 64
            && name
                .value
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            self.error_with_help(
                name.position,
                format!("invalid {what} `{}`", name.value),
                "use 1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter or digit",
            );
        }
    }

    fn sql_identifier(&mut self, name: &Located<String>, what: &str) {
        let valid = !name.value.is_empty()
            && name.value.len() <= 64
            && name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$'));
        if !valid {
            self.error(
                name.position,
                format!(
                    "invalid {what} `{}`: use letters, digits, `_` or `$`",
                    name.value
                ),
            );
        }
    }

    fn number(&mut self, value: &Located<i64>, low: i64, high: i64, what: &str) -> u64 {
        if value.value < low || value.value > high {
            self.error(
                value.position,
                format!(
                    "{what} is {}, but must be between {low} and {high}",
                    value.value
                ),
            );
            return low.max(0) as u64;
        }
        value.value as u64
    }

    fn millis(&mut self, value: &Located<i64>, low: i64, high: i64, what: &str) -> Duration {
        Duration::from_millis(self.number(value, low, high, what))
    }

    fn duration(
        &mut self,
        value: &Located<HumanDuration>,
        low: Duration,
        high: Duration,
        what: &str,
    ) -> Duration {
        let text = value.value.0.trim();
        match humantime::parse_duration(text) {
            Ok(duration) if duration >= low && duration <= high => duration,
            Ok(_) => {
                self.error(
                    value.position,
                    format!(
                        "{what} `{text}` is out of range: it must be between {} and {}",
                        humantime::format_duration(low),
                        humantime::format_duration(high)
                    ),
                );
                low
            }
            Err(error) => {
                self.error_with_help(
                    value.position,
                    format!("{what} `{text}` is not a duration: {error}"),
                    "write a number and a unit, e.g. `500ms`, `10s`, `5m` or `1h`",
                );
                low
            }
        }
    }

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

    fn port(&mut self, port: Option<&Located<i64>>, default: u16, what: &str) -> u16 {
        match port {
            Some(port) => self.number(port, 1, 65_535, what) as u16,
            None => default,
        }
    }

    // ---- secrets -----------------------------------------------------------

    fn secret_source(
        &mut self,
        owner: &str,
        owner_position: Position,
        literal: Option<&Located<serde::de::IgnoredAny>>,
        env: Option<&Located<String>>,
        file: Option<&Located<String>>,
        field: &str,
    ) -> SecretSource {
        if let Some(literal) = literal {
            self.errors.push(
                PlanError::at(
                    literal.position,
                    format!("{owner} has a literal `{field}`: secrets never go in a plan file"),
                )
                .with_help(format!(
                    "put it in an environment variable and use `{field}_env: VARIABLE`, or in a file and use `{field}_file: PATH`"
                ))
                .masking_secret(),
            );
        }
        match (env, file) {
            (Some(env), None) => {
                let valid = env
                    .value
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && env
                        .value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    self.error(
                        env.position,
                        format!(
                            "`{}` is not an environment variable name (letters, digits and `_`)",
                            env.value
                        ),
                    );
                }
                SecretSource::Env(env.value.clone())
            }
            (None, Some(file)) => {
                if file.value.trim().is_empty() {
                    self.error(file.position, format!("`{field}_file` is empty"));
                }
                SecretSource::File(PathBuf::from(&file.value))
            }
            (Some(env), Some(_)) => {
                self.error(
                    env.position,
                    format!("{owner} sets both `{field}_env` and `{field}_file`: keep one"),
                );
                SecretSource::Env(env.value.clone())
            }
            (None, None) => {
                if literal.is_none() {
                    self.error_with_help(
                        owner_position,
                        format!("{owner} has no {field}"),
                        format!("set `{field}_env: VARIABLE` or `{field}_file: PATH`"),
                    );
                }
                SecretSource::Env(String::new())
            }
        }
    }

    // ---- clusters ----------------------------------------------------------

    fn clusters(&mut self, raw: IndexMap<Located<String>, RawCluster>) -> Vec<Cluster> {
        let mut clusters = Vec::new();
        let mut first_source: Option<(String, Position)> = None;
        if raw.is_empty() {
            self.error(
                Position { line: 1, column: 1 },
                "`clusters` is empty: a plan needs one source and at least one target",
            );
        }
        for (name, cluster) in raw {
            self.identifier(&name, "cluster name");
            let owner = format!("cluster `{}`", name.value);
            let port = self.port(cluster.port.as_ref(), 3306, &format!("{owner} port"));
            if cluster.host.value.trim().is_empty() {
                self.error(cluster.host.position, format!("{owner} has an empty host"));
            }
            if cluster.user.value.trim().is_empty() {
                self.error(cluster.user.position, format!("{owner} has an empty user"));
            }
            let password = self.secret_source(
                &owner,
                name.position,
                cluster.password.as_ref(),
                cluster.password_env.as_ref(),
                cluster.password_file.as_ref(),
                "password",
            );
            let tls = cluster.tls.map(|tls| Tls {
                ca_file: tls.ca_file.map(|file| PathBuf::from(file.value)),
                verify: tls.verify.unwrap_or(true),
            });
            let mut pool = Pool::default();
            if let Some(raw_pool) = cluster.pool {
                if let Some(max) = &raw_pool.max {
                    pool.max = self.number(max, 1, 1_000, &format!("{owner} pool.max")) as u32;
                }
                if let Some(timeout) = &raw_pool.connect_timeout_ms {
                    pool.connect_timeout = self.millis(
                        timeout,
                        10,
                        600_000,
                        &format!("{owner} pool.connect_timeout_ms"),
                    );
                }
                if let Some(timeout) = &raw_pool.query_timeout_ms {
                    pool.query_timeout = self.millis(
                        timeout,
                        10,
                        86_400_000,
                        &format!("{owner} pool.query_timeout_ms"),
                    );
                }
            }
            let enabled = cluster.enabled.unwrap_or(true);
            let role = cluster.role.value;
            if role == ClusterRole::Source {
                match &first_source {
                    None => first_source = Some((name.value.clone(), name.position)),
                    Some((first, first_position)) => {
                        let message = format!(
                            "two sources: `{}` and `{first}` (line {}) both have `role: source`",
                            name.value, first_position.line
                        );
                        self.error_with_help(
                            cluster.role.position,
                            message,
                            "a plan has exactly one source; make the others `role: target`",
                        );
                    }
                }
                if !enabled {
                    self.error(
                        name.position,
                        format!("the source cluster `{}` cannot be disabled", name.value),
                    );
                }
            }
            let rto = cluster.rto.as_ref().map(|rto| {
                self.duration(
                    rto,
                    Duration::from_millis(1),
                    Duration::from_secs(7 * 24 * 3600),
                    &format!("{owner} rto"),
                )
            });
            let rpo = cluster.rpo.as_ref().map(|rpo| {
                self.duration(
                    rpo,
                    Duration::ZERO,
                    Duration::from_secs(7 * 24 * 3600),
                    &format!("{owner} rpo"),
                )
            });
            self.clusters.insert(name.value.clone(), (role, enabled));
            clusters.push(Cluster {
                name: name.value,
                role,
                host: cluster.host.value,
                port,
                user: cluster.user.value,
                password,
                tls,
                pool,
                enabled,
                bank: cluster.bank,
                rto,
                rpo,
            });
        }
        match first_source {
            Some((name, _)) => self.source = Some(name),
            None if !clusters.is_empty() => self.error_with_help(
                Position { line: 1, column: 1 },
                "no source cluster: exactly one cluster needs `role: source`",
                "mark the database you are migrating from with `role: source`",
            ),
            None => {}
        }
        if !clusters.is_empty() && !clusters.iter().any(|c| c.role == ClusterRole::Target) {
            self.error(
                Position { line: 1, column: 1 },
                "no target cluster: at least one cluster needs `role: target`",
            );
        }
        clusters
    }

    fn credentials(&mut self, raw: RawCredentials, owner: &str) -> Credentials {
        let password = self.secret_source(
            &format!("`{owner}`"),
            raw.user.position,
            raw.password.as_ref(),
            raw.password_env.as_ref(),
            raw.password_file.as_ref(),
            "password",
        );
        Credentials {
            user: raw.user.value,
            password,
        }
    }

    fn application(&mut self, raw: RawApplication) -> Application {
        let password = self.secret_source(
            "`application`",
            raw.user.position,
            raw.password.as_ref(),
            raw.password_env.as_ref(),
            raw.password_file.as_ref(),
            "password",
        );
        self.sql_identifier(&raw.database, "application database");
        Application {
            port: self.port(raw.port.as_ref(), 3306, "application port"),
            host: raw.host.value,
            database: raw.database.value,
            user: raw.user.value,
            password,
        }
    }

    // ---- dns ---------------------------------------------------------------

    fn server_address(&mut self, value: &Located<String>, what: &str) -> Option<SocketAddr> {
        let text = value.value.trim();
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Some(address);
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(SocketAddr::new(ip, 53));
        }
        self.error_with_help(
            value.position,
            format!("{what} `{text}` is not an IP address with an optional port"),
            "write e.g. `127.0.0.2:53`; name servers are addressed by IP so no lookup is needed to reach them",
        );
        None
    }

    fn dns(&mut self, raw: RawDns) -> Option<DnsConfig> {
        let update_server = self.server_address(&raw.update_server, "dns.update_server");
        let mut authoritative = Vec::new();
        if raw.authoritative.is_empty() {
            self.error(
                raw.update_server.position,
                "`dns.authoritative` is empty: list every authoritative server to verify",
            );
        }
        for server in &raw.authoritative {
            if let Some(address) = self.server_address(server, "dns.authoritative server") {
                authoritative.push(address);
            }
        }
        let zone = fqdn(&raw.zone.value);
        let record = fqdn(&raw.record.value);
        for (value, what) in [(&raw.zone, "dns.zone"), (&raw.record, "dns.record")] {
            if !is_domain_name(&value.value) {
                self.error(
                    value.position,
                    format!("{what} `{}` is not a domain name", value.value),
                );
            }
        }
        if is_domain_name(&raw.record.value) && !record.ends_with(&format!(".{zone}")) {
            self.error(
                raw.record.position,
                format!(
                    "dns.record `{}` is not inside the zone `{}`",
                    raw.record.value, raw.zone.value
                ),
            );
        }
        let ttl = self.number(&raw.ttl, 1, 86_400, "dns.ttl") as u32;
        let record_type = raw.record_type.unwrap_or(DnsRecordType::Cname);
        let mut values = IndexMap::new();
        for (cluster, value) in raw.values {
            if !self.clusters.contains_key(&cluster.value) {
                self.unknown_cluster(&cluster);
            }
            let text = value.value.trim();
            let valid = match record_type {
                DnsRecordType::A => text.parse::<std::net::Ipv4Addr>().is_ok(),
                DnsRecordType::Cname => is_domain_name(text),
            };
            if !valid {
                self.error(
                    value.position,
                    format!(
                        "dns value `{text}` for `{}` is not a valid {} record value",
                        cluster.value,
                        match record_type {
                            DnsRecordType::A => "A (IPv4 address)",
                            DnsRecordType::Cname => "CNAME (domain name)",
                        }
                    ),
                );
            }
            let value = match record_type {
                DnsRecordType::A => text.to_string(),
                DnsRecordType::Cname => fqdn(text),
            };
            self.dns_values.insert(cluster.value.clone());
            values.insert(cluster.value, value);
        }
        let tsig_secret = self.secret_source(
            "`dns.tsig`",
            raw.tsig.name.position,
            raw.tsig.secret.as_ref(),
            raw.tsig.secret_env.as_ref(),
            raw.tsig.secret_file.as_ref(),
            "secret",
        );
        if !is_domain_name(&raw.tsig.name.value) {
            self.error(
                raw.tsig.name.position,
                format!(
                    "TSIG key name `{}` is not a valid key name",
                    raw.tsig.name.value
                ),
            );
        }
        Some(DnsConfig {
            update_server: update_server?,
            authoritative,
            zone,
            record,
            record_type,
            ttl,
            values,
            tsig: TsigConfig {
                name: raw.tsig.name.value,
                algorithm: raw.tsig.algorithm,
                secret: tsig_secret,
            },
        })
    }

    // ---- drill -------------------------------------------------------------

    fn drill(&mut self, raw: RawDrill, has_application: bool) -> Drill {
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

    // ---- gates -------------------------------------------------------------

    fn gates(&mut self, raw: RawGates) -> Gates {
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
        }
    }

    /// Account names only (the servers say whether they exist, in the prechecks).
    fn kept_accounts(&mut self, raw: Vec<Located<String>>) -> Vec<KeptAccount> {
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

    // ---- cluster references ------------------------------------------------

    fn unknown_cluster(&mut self, name: &Located<String>) {
        let known: Vec<&str> = self.clusters.keys().map(String::as_str).collect();
        self.error_with_help(
            name.position,
            format!("unknown cluster `{}`", name.value),
            format!("the plan's clusters are: {}", known.join(", ")),
        );
    }

    /// An enabled cluster of any role.
    fn enabled_cluster(&mut self, name: &Located<String>) -> String {
        match self.clusters.get(&name.value) {
            None => self.unknown_cluster(name),
            Some((_, false)) => self.error_with_help(
                name.position,
                format!("cluster `{}` is disabled", name.value),
                "remove it from this step, or set `enabled: true` on the cluster",
            ),
            Some(_) => {}
        }
        name.value.clone()
    }

    /// An enabled cluster that is not the source.
    fn enabled_target(&mut self, name: &Located<String>, what: &str) -> String {
        let value = self.enabled_cluster(name);
        if self.source.as_deref() == Some(name.value.as_str()) {
            self.error_with_help(
                name.position,
                format!("{what} `{}` is the source", name.value),
                "a target is never the source; name a cluster with `role: target`",
            );
        }
        value
    }

    fn targets(&mut self, raw: Option<&Vec<Located<String>>>, what: &str) -> Vec<String> {
        match raw {
            Some(names) => {
                let mut seen = HashSet::new();
                let mut targets = Vec::new();
                for name in names {
                    let target = self.enabled_target(name, what);
                    if !seen.insert(target.clone()) {
                        self.error(name.position, format!("cluster `{target}` is listed twice"));
                    }
                    targets.push(target);
                }
                if names.is_empty() {
                    self.error(
                        Position::UNKNOWN,
                        format!("{what} list is empty; omit it to mean every enabled target"),
                    );
                }
                targets
            }
            None => self
                .clusters
                .iter()
                .filter(|(_, (role, enabled))| *role == ClusterRole::Target && *enabled)
                .map(|(name, _)| name.clone())
                .collect(),
        }
    }

    fn source_name(&self) -> String {
        self.source.clone().unwrap_or_default()
    }

    // ---- phases and steps --------------------------------------------------

    fn phases(&mut self, raw: Vec<RawPhase>, gates: &Gates, has_drill: bool) -> Vec<Phase> {
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

    fn steps(&mut self, phase: &str, raw: Vec<RawStep>, gates: &Gates) -> Vec<Step> {
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
    fn step(&mut self, raw: RawStep, gates: &Gates) -> Vec<(StepKind, Option<String>)> {
        let day = MAX_TIMEOUT;
        let single = |kind| vec![(kind, None)];
        match raw {
            RawStep::Snapshot(step) => single(StepKind::Snapshot {
                targets: self.targets(step.targets.as_ref(), "snapshot target"),
                workers: step.workers.as_ref().map_or(4, |workers| {
                    self.number(workers, 1, 64, "snapshot workers") as u32
                }),
                directory: step.directory.map(PathBuf::from),
                replace: step.replace.unwrap_or(false),
                skip_binlog: step.skip_binlog.unwrap_or(false),
            }),
            RawStep::Replicate(step) => single(StepKind::Replicate {
                targets: self.targets(step.targets.as_ref(), "replicate target"),
                timeout: self.optional_duration(
                    step.timeout.as_ref(),
                    gates.lag_timeout,
                    Duration::from_millis(1),
                    day,
                    "replicate timeout",
                ),
            }),
            RawStep::WaitLag(step) => single(StepKind::WaitLag {
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
            }),
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
                single(StepKind::Checksum {
                    targets: self.targets(step.targets.as_ref(), "checksum target"),
                    tables,
                    float_precision: step.float_precision.as_ref().map_or(12, |precision| {
                        self.number(precision, 1, 17, "checksum float_precision") as u32
                    }),
                    money_columns,
                })
            }
            RawStep::Freeze(step) => single(StepKind::Freeze {
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
            }),
            RawStep::CatchUp(step) => single(StepKind::CatchUp {
                targets: self.targets(step.targets.as_ref(), "catch_up target"),
                timeout: self.optional_duration(
                    step.timeout.as_ref(),
                    gates.freeze_budget,
                    Duration::from_millis(1),
                    day,
                    "catch_up timeout",
                ),
            }),
            RawStep::Promote(step) => single(StepKind::Promote {
                cluster: self.enabled_target(&step.cluster, "promote candidate"),
            }),
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
                single(StepKind::Repoint { to, clusters })
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
                single(StepKind::ReverseReplication { from, cluster })
            }
            RawStep::DnsSwitch(step) => {
                let to = self.enabled_cluster(&step.to);
                self.dns_target(&step.to, "dns_switch");
                single(StepKind::DnsSwitch {
                    to,
                    wait_ttl: step.wait_ttl.unwrap_or(false),
                    verify_timeout: self.optional_duration(
                        step.verify_timeout.as_ref(),
                        gates.dns_verify_timeout,
                        Duration::from_millis(100),
                        Duration::from_secs(3600),
                        "dns_switch verify_timeout",
                    ),
                })
            }
            RawStep::Unfreeze(_) => single(StepKind::Unfreeze),
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
                single(StepKind::Hook {
                    command: step.command.into_iter().map(|part| part.value).collect(),
                    timeout: self.optional_duration(
                        step.timeout.as_ref(),
                        Duration::from_secs(60),
                        Duration::from_millis(1),
                        day,
                        "hook timeout",
                    ),
                    cluster,
                })
            }
            RawStep::Confirm(step) => single(StepKind::Confirm {
                message: step.message,
                postpone_file: step.postpone_file.map(PathBuf::from),
            }),
            RawStep::Sleep(step) => single(StepKind::Sleep {
                duration: self.duration(&step.duration, Duration::ZERO, day, "sleep duration"),
            }),
            RawStep::Switchover(step) => self.switchover(step, gates),
        }
    }

    fn dns_target(&mut self, to: &Located<String>, what: &str) {
        if !self.has_dns {
            self.error_with_help(
                to.position,
                format!("{what} needs a `dns` section"),
                "add `dns:` with the update server, authoritative servers, record and TSIG key",
            );
        } else if self.clusters.contains_key(&to.value) && !self.dns_values.contains(&to.value) {
            self.error_with_help(
                to.position,
                format!(
                    "{what} to `{}`, but `dns.values` has no value for it",
                    to.value
                ),
                format!("add `{}: <record value>` under `dns.values`", to.value),
            );
        }
    }

    /// freeze → catch-up → promote → DNS → unfreeze → reverse replication → re-point.
    ///
    /// Only what protects acknowledged writes sits between freeze and unfreeze.
    /// Reverse replication and re-pointing wait until writes flow again: the old
    /// source is already read-only from the frozen position, the others already
    /// follow it, and GTID positioning lets each continue from the new primary's
    /// binlog whenever it connects.
    fn switchover(
        &mut self,
        step: SwitchoverStep,
        gates: &Gates,
    ) -> Vec<(StepKind, Option<String>)> {
        let to = self.enabled_target(&step.to, "switchover `to`");
        let source = self.source_name();
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
        let mut sequence = vec![
            StepKind::Freeze {
                cluster: source.clone(),
                drain_timeout,
                budget: gates.freeze_budget,
            },
            StepKind::CatchUp {
                targets: vec![to.clone()],
                timeout: gates.freeze_budget,
            },
            StepKind::Promote {
                cluster: to.clone(),
            },
        ];
        if self.has_dns {
            self.dns_target(&step.to, "switchover");
            sequence.push(StepKind::DnsSwitch {
                to: to.clone(),
                wait_ttl: step.wait_ttl.unwrap_or(false),
                verify_timeout: gates.dns_verify_timeout,
            });
        }
        sequence.push(StepKind::Unfreeze);
        sequence.push(StepKind::ReverseReplication {
            from: to.clone(),
            cluster: source,
        });
        if !others.is_empty() {
            sequence.push(StepKind::Repoint {
                to,
                clusters: others,
            });
        }
        sequence
            .into_iter()
            .map(|kind| (kind, Some(composite.clone())))
            .collect()
    }
}

fn step_name(step: &RawStep) -> Option<&Located<String>> {
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

fn unique_name(base: &str, steps: &[Step]) -> String {
    if !steps.iter().any(|step| step.name == base) {
        return base.to_string();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| !steps.iter().any(|step| step.name == *candidate))
        .expect("an unused suffix exists")
}

fn fqdn(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    }
}

fn is_domain_name(name: &str) -> bool {
    let name = name.trim().trim_end_matches('.');
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
