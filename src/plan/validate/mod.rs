//! Static validation: raw plan → validated plan. No network, no secrets read.

mod clusters;
mod dns;
mod drill;
mod gates;
mod steps;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use super::diagnostic::{PlanError, PlanErrors};
use super::kinds::StepKind;
use super::located::{Located, Position};
use super::model::*;
use super::validated::{
    Application, Cluster, Credentials, DnsConfig, Drill, Gates, KeptAccount, Phase, Pool,
    SecretSource, Step, Tls, TsigConfig, ValidatedPlan,
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

const MAX_TIMEOUT: Duration = super::kinds::MAX_STEP_TIMEOUT;

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
        let scope = match raw.scope {
            Some(scope) if scope.value == Scope::Databases && databases.is_none() => {
                self.error_with_help(
                    scope.position,
                    "`scope: databases` fences only the plan's databases, but the plan names none",
                    "list them under `databases:`, or use `scope: server`",
                );
                Scope::Databases
            }
            Some(scope) => scope.value,
            None => Scope::Server,
        };
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
            scope,
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
}
