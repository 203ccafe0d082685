//! The local lab: real MariaDB servers and BIND9 on loopback addresses,
//! started as plain processes from Debian's packages.

pub mod accounts;
pub mod bind;
pub mod dataset;
mod error;
pub mod hot_rows;
pub mod mariadb;
pub mod mysql;
pub mod postgres;
pub mod process;
pub mod server;
pub mod tls;

use postgres::LabPostgres;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

use crate::mysql::{Session, quote};
pub use bind::{NAMESERVERS, NameServer, RECORD, TSIG_KEY_NAME, ZONE};
pub use error::LabError;
pub use mariadb::StartOptions;
pub use server::LabServer;

pub const MYSQL_PORT: u16 = 13306;

/// Every lab database server; the first is the source.
pub const SERVERS: &[LabServer] = &[
    LabServer {
        name: "legacy",
        ip: "127.0.0.10",
        server_id: 10,
    },
    LabServer {
        name: "c1",
        ip: "127.0.0.11",
        server_id: 11,
    },
    LabServer {
        name: "c2",
        ip: "127.0.0.12",
        server_id: 12,
    },
    LabServer {
        name: "c3",
        ip: "127.0.0.13",
        server_id: 13,
    },
    LabServer {
        name: "c6",
        ip: "127.0.0.16",
        server_id: 16,
    },
];

pub const DEFAULT_ROWS: u64 = 10_000;
const STATE_FILE: &str = "lab.json";

/// Generated once per lab; `lab env` prints them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabSecrets {
    pub admin: String,
    pub orchestrator: String,
    pub replication: String,
    pub application: String,
    /// Another business's application on legacy (`loyalty`), never migrated.
    #[serde(default)]
    pub other_application: String,
    /// base64, as BIND wants it.
    pub tsig: String,
    /// The lab PostgreSQL's `cutover` role (`lab up --postgres`).
    #[serde(default)]
    pub postgres: String,
}

impl LabSecrets {
    fn generate() -> Self {
        let password = || -> String {
            rand::rng()
                .sample_iter(&Alphanumeric)
                .take(24)
                .map(char::from)
                .collect()
        };
        let mut key = [0_u8; 32];
        rand::rng().fill(&mut key);
        use base64::Engine;
        LabSecrets {
            admin: password(),
            orchestrator: password(),
            replication: password(),
            application: password(),
            other_application: password(),
            tsig: base64::engine::general_purpose::STANDARD.encode(key),
            postgres: password(),
        }
    }
}

/// Which server the lab's five database servers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabFlavor {
    /// Debian 12's MariaDB.
    #[default]
    Mariadb,
    /// MySQL 9.7 LTS from the root `scripts/mysql-root` prepares.
    Mysql,
}

impl LabFlavor {
    pub fn name(self) -> &'static str {
        match self {
            LabFlavor::Mariadb => "mariadb",
            LabFlavor::Mysql => "mysql",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LabState {
    #[serde(default)]
    flavor: LabFlavor,
    rows: u64,
    replicating: bool,
    seeded: bool,
    replication_configured: bool,
    /// Loopback aliases this lab added (and `down` removes).
    #[serde(default)]
    added_addresses: Vec<String>,
    /// A PostgreSQL state store was started with `--postgres`.
    #[serde(default)]
    postgres: bool,
    secrets: LabSecrets,
}

/// Paths of the server programs, checked before anything starts.
#[derive(Debug, Clone)]
pub struct Programs {
    pub mariadbd: PathBuf,
    pub install_db: PathBuf,
    pub named: PathBuf,
    pub openssl: PathBuf,
}

impl Programs {
    pub fn find() -> Result<Programs, LabError> {
        Programs::find_in(&process::search_dirs())
    }

    pub fn find_in(dirs: &[PathBuf]) -> Result<Programs, LabError> {
        let find = |program: &'static str, package: &'static str| {
            process::find_program_in(program, dirs)
                .ok_or(LabError::MissingProgram { program, package })
        };
        Ok(Programs {
            mariadbd: find("mariadbd", "mariadb-server")?,
            install_db: find("mariadb-install-db", "mariadb-server")?,
            named: find("named", "bind9")?,
            openssl: find("openssl", "openssl")?,
        })
    }
}

/// The database server program a lab runs, resolved before anything starts.
#[derive(Debug, Clone)]
pub struct Engine {
    pub flavor: LabFlavor,
    pub programs: Programs,
    /// Set for MySQL.
    pub mysql: Option<mysql::MysqlRoot>,
}

impl Engine {
    pub fn new(flavor: LabFlavor, programs: Programs) -> Result<Engine, LabError> {
        let mysql = match flavor {
            LabFlavor::Mariadb => None,
            LabFlavor::Mysql => Some(mysql::MysqlRoot::find()?),
        };
        Ok(Engine {
            flavor,
            programs,
            mysql,
        })
    }
}

/// Options of `lab up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub rows: u64,
    pub replicating: bool,
    pub flavor: LabFlavor,
    /// Also a PostgreSQL for a shared state store.
    pub postgres: bool,
}

/// One line of `lab status`.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessStatus {
    pub name: String,
    pub kind: &'static str,
    pub address: String,
    pub running: bool,
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    pub dir: PathBuf,
    pub initialized: bool,
    pub replicating: Option<bool>,
    pub rows: Option<u64>,
    pub processes: Vec<ProcessStatus>,
}

/// A lab rooted at one directory.
pub struct Lab {
    dir: PathBuf,
}

impl Lab {
    pub fn new(dir: impl Into<PathBuf>) -> Lab {
        Lab { dir: dir.into() }
    }

    /// `$CUTOVER_LAB_DIR`, else `lab/` in the state directory.
    pub fn default_dir(state_dir: &Path) -> PathBuf {
        std::env::var_os("CUTOVER_LAB_DIR")
            .filter(|dir| !dir.is_empty())
            .map_or_else(|| state_dir.join("lab"), PathBuf::from)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    fn load_state(&self) -> Option<LabState> {
        let text = std::fs::read_to_string(self.state_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save_state(&self, state: &LabState) -> Result<(), LabError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.state_path();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| LabError::io(&path, e))?;
        file.write_all(
            serde_json::to_string_pretty(state)
                .expect("lab state serialises")
                .as_bytes(),
        )
        .map_err(|e| LabError::io(&path, e))
    }

    pub fn secrets(&self) -> Result<LabSecrets, LabError> {
        self.load_state()
            .map(|state| state.secrets)
            .ok_or_else(|| LabError::NotUp {
                dir: self.dir.clone(),
            })
    }

    fn any_running(&self) -> bool {
        SERVERS.iter().any(|s| s.running(&self.dir).is_some())
            || NAMESERVERS.iter().any(|n| n.running(&self.dir).is_some())
    }

    /// Bring every server up, seed the dataset and (optionally) replication.
    /// Running it again on a running lab changes nothing.
    pub async fn up(&self, options: &UpOptions) -> Result<LabStatus, LabError> {
        let programs = Programs::find()?;
        std::fs::create_dir_all(&self.dir).map_err(|e| LabError::io(&self.dir, e))?;
        let mut state = match self.load_state() {
            Some(state) => {
                if self.any_running() || state.seeded {
                    if state.flavor != options.flavor {
                        return Err(LabError::Conflict {
                            dir: self.dir.clone(),
                            existing: format!("with --flavor {}", state.flavor.name()),
                        });
                    }
                    if state.replicating != options.replicating {
                        return Err(LabError::Conflict {
                            dir: self.dir.clone(),
                            existing: if state.replicating {
                                "with --replicating".into()
                            } else {
                                "without --replicating".into()
                            },
                        });
                    }
                    if state.seeded && state.rows != options.rows {
                        return Err(LabError::Conflict {
                            dir: self.dir.clone(),
                            existing: format!("with --rows {}", state.rows),
                        });
                    }
                }
                state
            }
            None => LabState {
                flavor: options.flavor,
                rows: options.rows,
                replicating: options.replicating,
                seeded: false,
                replication_configured: false,
                added_addresses: Vec::new(),
                postgres: false,
                secrets: LabSecrets::generate(),
            },
        };
        state.rows = options.rows;
        state.replicating = options.replicating;
        self.save_state(&state)?;

        tls::ensure(&self.dir, &programs.openssl)?;
        let engine = Engine::new(state.flavor, programs.clone())?;
        for server in SERVERS {
            server.prepare(&self.dir, &engine)?;
        }
        let mut starts = tokio::task::JoinSet::new();
        for server in SERVERS {
            let server = *server;
            let dir = self.dir.clone();
            let engine = engine.clone();
            starts
                .spawn(async move { server.start(&dir, &engine, &StartOptions::default()).await });
        }
        while let Some(result) = starts.join_next().await {
            result.map_err(|e| LabError::StartFailed {
                server: "mariadbd".into(),
                reason: e.to_string(),
            })??;
        }
        for server in SERVERS {
            server
                .bootstrap(&self.dir, &state.secrets, state.flavor)
                .await?;
        }
        tracing::info!("database servers are up");

        for nameserver in NAMESERVERS {
            if bind::ensure_loopback_address(nameserver.ip)? {
                state.added_addresses.push(nameserver.ip.to_string());
                self.save_state(&state)?;
            }
            nameserver.prepare(&self.dir, &state.secrets)?;
            nameserver.start(&self.dir, &programs).await?;
        }
        tracing::info!("name servers are up");

        if !state.seeded {
            self.seed(&state).await?;
            state.seeded = true;
            self.save_state(&state)?;
        }
        if state.replicating && !state.replication_configured {
            self.start_replication(&state.secrets, state.flavor).await?;
            state.replication_configured = true;
            self.save_state(&state)?;
        }
        if options.postgres {
            if state.secrets.postgres.is_empty() {
                state.secrets.postgres = LabSecrets::generate().postgres;
            }
            state.postgres = true;
            self.save_state(&state)?;
            LabPostgres::new(&self.dir)
                .start(&state.secrets.postgres)
                .await?;
        }
        Ok(self.status())
    }

    async fn admin_session(
        &self,
        server: &LabServer,
        secrets: &LabSecrets,
    ) -> Result<Session, LabError> {
        Session::connect(&server.admin_endpoint(secrets))
            .await
            .map_err(|e| LabError::server(server.name, e))
    }

    async fn seed(&self, state: &LabState) -> Result<(), LabError> {
        let legacy = &SERVERS[0];
        let mut session = self.admin_session(legacy, &state.secrets).await?;
        let server_error = |e| LabError::server(legacy.name, e);
        for statement in dataset::SCHEMA {
            // MySQL has no CREATE OR REPLACE FUNCTION.
            let statement = match statement.strip_prefix("CREATE OR REPLACE FUNCTION ") {
                Some(rest) if state.flavor == LabFlavor::Mysql => {
                    let name = rest.split('(').next().unwrap_or_default();
                    session
                        .exec(
                            "replace the function",
                            &format!("DROP FUNCTION IF EXISTS {name}"),
                        )
                        .await
                        .map_err(server_error)?;
                    format!("CREATE FUNCTION {rest}")
                }
                _ => statement.to_string(),
            };
            session
                .exec("create the refunds schema", &statement)
                .await
                .map_err(server_error)?;
        }
        let progress = indicatif::ProgressBar::new(state.rows).with_message("seeding refunds");
        progress.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {pos}/{len} transactions ({eta})",
            )
            .expect("valid template"),
        );
        if !crate::logging::use_color() {
            progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        for (index, statement) in dataset::batches(state.rows).enumerate() {
            session
                .exec("insert refunds rows", &statement)
                .await
                .map_err(server_error)?;
            if index % 4 == 3 {
                progress.inc(1_000.min(state.rows - progress.position()));
            }
        }
        progress.finish_and_clear();
        session.close().await;
        tracing::info!(rows = state.rows, "seeded the refunds dataset on legacy");
        Ok(())
    }

    /// Replicas of legacy from its GTID position, fenced read-only (on MySQL
    /// with `super_read_only`: its `read_only` lets privileged accounts write).
    async fn start_replication(
        &self,
        secrets: &LabSecrets,
        flavor: LabFlavor,
    ) -> Result<(), LabError> {
        let legacy = &SERVERS[0];
        let mut source = self.admin_session(legacy, secrets).await?;
        let position_sql = match flavor {
            LabFlavor::Mariadb => "SELECT @@GLOBAL.gtid_binlog_pos",
            LabFlavor::Mysql => "SELECT @@GLOBAL.gtid_executed",
        };
        let position: Option<String> = source
            .query_first("read the source GTID position", position_sql)
            .await
            .map_err(|e| LabError::server(legacy.name, e))?;
        source.close().await;
        let position = position.unwrap_or_default();
        let statements = match flavor {
            LabFlavor::Mariadb => vec![
                ("stop replication", "STOP SLAVE".to_string()),
                (
                    "configure replication from legacy",
                    format!(
                        "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={MYSQL_PORT}, MASTER_USER={}, MASTER_PASSWORD={}, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                        quote(legacy.ip),
                        quote(accounts::REPLICATION_USER),
                        quote(&secrets.replication)
                    ),
                ),
                ("start replication", "START SLAVE".to_string()),
                (
                    "make the replica read-only",
                    "SET GLOBAL read_only = 1".to_string(),
                ),
            ],
            LabFlavor::Mysql => vec![
                ("stop replication", "STOP REPLICA".to_string()),
                (
                    "configure replication from legacy",
                    mysql::replicate_from(legacy, secrets),
                ),
                ("start replication", "START REPLICA".to_string()),
                (
                    "make the replica read-only",
                    "SET GLOBAL super_read_only = 1".to_string(),
                ),
            ],
        };
        let wait_sql = match flavor {
            LabFlavor::Mariadb => format!("SELECT MASTER_GTID_WAIT({}, 110)", quote(&position)),
            LabFlavor::Mysql => {
                format!(
                    "SELECT WAIT_FOR_EXECUTED_GTID_SET({}, 110)",
                    quote(&position)
                )
            }
        };
        for replica in &SERVERS[1..] {
            let mut session = self.admin_session(replica, secrets).await?;
            let error = |e| LabError::server(replica.name, e);
            for (what, sql) in &statements {
                session.exec(what, sql).await.map_err(error)?;
            }
            let waited: Option<i64> = session
                .query_first("wait for the replica to catch up", &wait_sql)
                .await
                .map_err(error)?;
            if waited != Some(0) {
                return Err(LabError::Replication(format!(
                    "{} did not reach legacy's position {position} within 110 s",
                    replica.name
                )));
            }
            session.close().await;
        }
        tracing::info!(%position, "c1, c2, c3 and c6 replicate from legacy");
        Ok(())
    }

    /// Restart one database server, optionally under a moved clock or without TLS.
    /// A server that was read-only comes back read-only.
    pub async fn restart(&self, name: &str, options: &StartOptions) -> Result<(), LabError> {
        let server = SERVERS
            .iter()
            .find(|server| server.name == name)
            .ok_or_else(|| LabError::UnknownServer(name.to_string()))?;
        let secrets = self.secrets()?;
        let flavor = self
            .load_state()
            .map(|state| state.flavor)
            .unwrap_or_default();
        let engine = Engine::new(flavor, Programs::find()?)?;
        let was_read_only = match self.admin_session(server, &secrets).await {
            Ok(mut session) => {
                let read_only: Option<i64> = session
                    .query_first("read read_only", "SELECT @@GLOBAL.read_only")
                    .await
                    .map_err(|e| LabError::server(server.name, e))?;
                session.close().await;
                read_only == Some(1)
            }
            // A stopped server: keep the replicas' usual fence.
            Err(_) => server.name != SERVERS[0].name,
        };
        // An isolated (stopped) server must run again to shut down.
        if let Some(pid) = server.pid_file(&self.dir).running() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
        if !process::stop(&server.pid_file(&self.dir), Duration::from_secs(30)) {
            return Err(LabError::StopFailed(server.name.to_string()));
        }
        server.prepare(&self.dir, &engine)?;
        server.start(&self.dir, &engine, options).await?;
        if was_read_only {
            let mut session = self.admin_session(server, &secrets).await?;
            session
                .exec("make the server read-only", "SET GLOBAL read_only = 1")
                .await
                .map_err(|e| LabError::server(server.name, e))?;
            session.close().await;
        }
        tracing::info!(server = server.name, ?options, "restarted");
        Ok(())
    }

    /// Fail one database server for a drill: SIGKILL (a crash: the server is
    /// gone, its clients see closed connections) or, with `isolate`, SIGSTOP
    /// (it stops answering; connections hang). `restart` brings it back.
    pub fn kill(&self, name: &str, isolate: bool) -> Result<(), LabError> {
        let server = SERVERS
            .iter()
            .find(|server| server.name == name)
            .ok_or_else(|| LabError::UnknownServer(name.to_string()))?;
        let pid_file = server.pid_file(&self.dir);
        let Some(pid) = pid_file.running() else {
            return Err(LabError::NotRunning(name.to_string()));
        };
        let signal = if isolate {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGKILL
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
            .map_err(|e| LabError::io(&pid_file.0, std::io::Error::from(e)))?;
        tracing::info!(server = name, ?signal, "failed on purpose");
        Ok(())
    }

    /// Run the hot-row load against one server as the application, until
    /// `load.duration` passes or `stop` is set; the writers measure the
    /// longest time with no commit.
    ///
    /// `follow_primary`: after an error, writers connect to whichever lab
    /// server takes writes (as through a proxy), so the load follows a
    /// switchover.
    pub async fn load(
        &self,
        name: &str,
        load: &hot_rows::HotRowLoad,
        follow_primary: bool,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<hot_rows::LoadReport, LabError> {
        let server = SERVERS
            .iter()
            .find(|server| server.name == name)
            .ok_or_else(|| LabError::UnknownServer(name.to_string()))?;
        let secrets = self.secrets()?;
        let mut chosen = vec![server];
        if follow_primary {
            chosen.extend(SERVERS.iter().filter(|other| other.name != name));
        }
        let admins: Vec<_> = chosen.iter().map(|s| s.admin_endpoint(&secrets)).collect();
        hot_rows::prepare(&admins, load.rows)
            .await
            .map_err(|error| LabError::server(name, error))?;
        let servers: Vec<_> = chosen
            .iter()
            .map(|s| hot_rows::application_endpoint(s, &secrets))
            .collect();
        Ok(hot_rows::run(&servers, load, stop).await)
    }

    /// Stop only the lab's own processes (by pid file) and remove its directory.
    pub fn down(&self) -> Result<(), LabError> {
        if !self.dir.exists() {
            return Ok(());
        }
        if !self.state_path().exists()
            && std::fs::read_dir(&self.dir).is_ok_and(|mut entries| entries.next().is_some())
        {
            return Err(LabError::NotALabDir {
                dir: self.dir.clone(),
            });
        }
        let mut failed = Vec::new();
        for nameserver in NAMESERVERS {
            if !process::stop(&nameserver.pid_file(&self.dir), Duration::from_secs(10)) {
                failed.push(nameserver.name);
            }
        }
        // Side by side, and briefly: the data is deleted next, so a clean
        // shutdown buys nothing (a MySQL primary takes about 7 s to close
        // its replicas' dump threads).
        let pid_files: Vec<_> = SERVERS.iter().map(|s| s.pid_file(&self.dir)).collect();
        let stopped = process::stop_all(&pid_files, Duration::from_secs(2));
        for (server, gone) in SERVERS.iter().zip(stopped) {
            if !gone {
                failed.push(server.name);
            }
        }
        if !LabPostgres::new(&self.dir).remove() {
            failed.push("postgres");
        }
        if !failed.is_empty() {
            return Err(LabError::StopFailed(failed.join(", ")));
        }
        for address in self
            .load_state()
            .map(|s| s.added_addresses)
            .unwrap_or_default()
        {
            bind::remove_loopback_address(&address);
        }
        std::fs::remove_dir_all(&self.dir).map_err(|e| LabError::io(&self.dir, e))
    }

    pub fn status(&self) -> LabStatus {
        let state = self.load_state();
        let flavor = state.as_ref().map(|s| s.flavor).unwrap_or_default();
        let mut processes = Vec::new();
        for server in SERVERS {
            let pid = server.running(&self.dir);
            processes.push(ProcessStatus {
                name: server.name.to_string(),
                kind: flavor.name(),
                address: format!("{}:{MYSQL_PORT}", server.ip),
                running: pid.is_some(),
                pid,
            });
        }
        for nameserver in NAMESERVERS {
            let pid = nameserver.running(&self.dir);
            processes.push(ProcessStatus {
                name: nameserver.name.to_string(),
                kind: if nameserver.primary {
                    "bind9 primary"
                } else {
                    "bind9 secondary"
                },
                address: nameserver.address().to_string(),
                running: pid.is_some(),
                pid,
            });
        }
        if state.as_ref().is_some_and(|s| s.postgres) {
            let pid = LabPostgres::new(&self.dir).running();
            processes.push(ProcessStatus {
                name: "postgres".into(),
                kind: "postgresql state store",
                address: format!("{}:{}", postgres::IP, postgres::PORT),
                running: pid.is_some(),
                pid,
            });
        }
        LabStatus {
            dir: self.dir.clone(),
            initialized: state.is_some(),
            replicating: state.as_ref().map(|s| s.replicating),
            rows: state.as_ref().map(|s| s.rows),
            processes,
        }
    }

    /// `(variable, value)` pairs for `lab env`.
    pub fn env(&self) -> Result<Vec<(&'static str, String)>, LabError> {
        let secrets = self.secrets()?;
        let postgres = self
            .load_state()
            .is_some_and(|s| s.postgres)
            .then(|| ("CUTOVER_LAB_STATE_URL", LabPostgres::url(&secrets.postgres)));
        let mut variables = vec![
            ("CUTOVER_LAB_DIR", self.dir.display().to_string()),
            ("CUTOVER_LAB_ADMIN_USER", accounts::ADMIN_USER.to_string()),
            ("CUTOVER_LAB_ADMIN_PASSWORD", secrets.admin),
            ("CUTOVER_LAB_USER", accounts::ORCHESTRATOR_USER.to_string()),
            ("CUTOVER_LAB_PASSWORD", secrets.orchestrator),
            (
                "CUTOVER_LAB_REPL_USER",
                accounts::REPLICATION_USER.to_string(),
            ),
            ("CUTOVER_LAB_REPL_PASSWORD", secrets.replication),
            (
                "CUTOVER_LAB_APP_USER",
                accounts::APPLICATION_USER.to_string(),
            ),
            ("CUTOVER_LAB_APP_PASSWORD", secrets.application),
            (
                "CUTOVER_LAB_OTHER_APP_USER",
                accounts::OTHER_APPLICATION_USER.to_string(),
            ),
            ("CUTOVER_LAB_OTHER_APP_PASSWORD", secrets.other_application),
            ("CUTOVER_LAB_TSIG_KEY", TSIG_KEY_NAME.to_string()),
            ("CUTOVER_LAB_TSIG_SECRET", secrets.tsig),
            (
                "CUTOVER_LAB_CA",
                tls::ca_file(&self.dir).display().to_string(),
            ),
        ];
        variables.extend(postgres);
        Ok(variables)
    }
}

/// Quote a value for a POSIX shell `export` line.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::ErrorKind;

    #[test]
    fn a_missing_server_program_names_its_debian_package() {
        let empty = tempfile::tempdir().unwrap();
        let error = Programs::find_in(&[empty.path().to_path_buf()]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`mariadbd` not found: install the Debian package `mariadb-server` (apt-get install mariadb-server)"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidInput);

        let only_mariadb = tempfile::tempdir().unwrap();
        for program in ["mariadbd", "mariadb-install-db"] {
            std::fs::write(only_mariadb.path().join(program), "").unwrap();
        }
        let error = Programs::find_in(&[only_mariadb.path().to_path_buf()]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`named` not found: install the Debian package `bind9`")
        );
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("plain"), "'plain'");
    }
}
