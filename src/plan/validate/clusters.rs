//! Secrets, clusters, credentials, the application, and references to clusters from steps.

use super::*;

impl Checker {
    // ---- secrets -----------------------------------------------------------

    pub(super) fn secret_source(
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

    pub(super) fn clusters(&mut self, raw: IndexMap<Located<String>, RawCluster>) -> Vec<Cluster> {
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

    pub(super) fn credentials(&mut self, raw: RawCredentials, owner: &str) -> Credentials {
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

    pub(super) fn application(&mut self, raw: RawApplication) -> Application {
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

    // ---- cluster references ------------------------------------------------

    pub(super) fn unknown_cluster(&mut self, name: &Located<String>) {
        let known: Vec<&str> = self.clusters.keys().map(String::as_str).collect();
        self.error_with_help(
            name.position,
            format!("unknown cluster `{}`", name.value),
            format!("the plan's clusters are: {}", known.join(", ")),
        );
    }

    /// An enabled cluster of any role.
    pub(super) fn enabled_cluster(&mut self, name: &Located<String>) -> String {
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
    pub(super) fn enabled_target(&mut self, name: &Located<String>, what: &str) -> String {
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

    pub(super) fn targets(
        &mut self,
        raw: Option<&Vec<Located<String>>>,
        what: &str,
    ) -> Vec<String> {
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

    pub(super) fn source_name(&self) -> String {
        self.source.clone().unwrap_or_default()
    }
}
