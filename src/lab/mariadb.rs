//! One lab database server's life: data directory, configuration, start,
//! accounts. MariaDB's specifics are here; MySQL's are in `mysql.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use super::process;
use super::server::LabServer;
use super::{Engine, LabError, LabFlavor, LabSecrets, MYSQL_PORT, Programs, accounts, tls};
use crate::mysql::{Address, Endpoint, Session, quote};
use crate::secret::Secret;

/// How to start a lab server; the default is the normal configuration.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Run under libfaketime with the wall clock moved by this many seconds.
    pub clock_offset_secs: Option<f64>,
    /// Start without TLS, to show what a plan requiring TLS does then.
    pub without_tls: bool,
    /// Start with `read_only = 1`, as a failed primary should come back.
    pub read_only: bool,
}

impl LabServer {
    fn config(&self, lab: &Path) -> String {
        let dir = self.dir(lab);
        let data = self.data_dir(lab);
        format!(
            "[mariadbd]
datadir={data}
socket={socket}
pid-file={dir}/mariadbd.pid
log-error={log}
bind-address={ip}
port={port}
server-id={id}
log-bin={dir}/binlog/{name}-bin
log-bin-index={dir}/binlog/{name}-bin.index
relay-log={dir}/binlog/{name}-relay
binlog-format=ROW
log-slave-updates=ON
gtid-strict-mode=ON
gtid-domain-id=0
report-host={ip}
report-port={port}
event-scheduler=ON
plugin-load-add=disks
skip-name-resolve
character-set-server=utf8mb4
collation-server=utf8mb4_unicode_ci
local-infile=1
max-connections=400
performance-schema=OFF
innodb-buffer-pool-size=128M
innodb-log-file-size=64M
innodb-flush-log-at-trx-commit=2
sync-binlog=0
slave-net-timeout=10
ssl-ca={ca}
ssl-cert={cert}
ssl-key={key}
",
            data = data.display(),
            socket = self.socket(lab).display(),
            dir = dir.display(),
            log = self.log(lab).display(),
            ip = self.ip,
            port = MYSQL_PORT,
            id = self.server_id,
            name = self.name,
            ca = tls::ca_file(lab).display(),
            cert = tls::server_cert(lab).display(),
            key = tls::server_key(lab).display(),
        )
    }

    /// Create the data directory from the shared template (made once by
    /// mariadb-install-db, or MySQL's `--initialize-insecure`).
    pub fn prepare(&self, lab: &Path, engine: &Engine) -> Result<(), LabError> {
        let dir = self.dir(lab);
        std::fs::create_dir_all(dir.join("binlog")).map_err(|e| LabError::io(&dir, e))?;
        let config = match &engine.mysql {
            Some(root) => super::mysql::config(self, lab, root),
            None => self.config(lab),
        };
        std::fs::write(self.config_path(lab), config)
            .map_err(|e| LabError::io(&self.config_path(lab), e))?;
        if self.data_dir(lab).join("mysql").exists() {
            return Ok(());
        }
        let template = lab.join(format!("template-{}", engine.flavor.name()));
        if !template.join("mysql").exists() {
            match &engine.mysql {
                Some(root) => root.initialize(&template)?,
                None => install_template(&template, &engine.programs)?,
            }
        }
        copy_dir(&template, &self.data_dir(lab))
            .map_err(|e| LabError::io(&self.data_dir(lab), e))?;
        // MySQL names each server by the UUID in auto.cnf: every copy makes its own.
        let _ = std::fs::remove_file(self.data_dir(lab).join("auto.cnf"));
        Ok(())
    }

    pub fn running(&self, lab: &Path) -> Option<u32> {
        self.pid_file(lab).running()
    }

    /// Start mariadbd and wait until it accepts connections on its socket.
    pub async fn start(
        &self,
        lab: &Path,
        engine: &Engine,
        options: &StartOptions,
    ) -> Result<(), LabError> {
        if self.running(lab).is_some() {
            return Ok(());
        }
        let (program, mut args) = match &engine.mysql {
            Some(root) => (root.loader(), root.loader_args()),
            None => (engine.programs.mariadbd.clone(), Vec::new()),
        };
        args.push(format!(
            "--defaults-file={}",
            self.config_path(lab).display()
        ));
        if nix::unistd::geteuid().is_root() {
            args.push("--user=root".to_string());
        }
        if options.without_tls {
            args.push(match engine.flavor {
                LabFlavor::Mariadb => "--skip-ssl".to_string(),
                // MySQL turns TLS off with an empty list of versions.
                LabFlavor::Mysql => "--tls-version=".to_string(),
            });
        }
        if options.read_only {
            args.push("--read-only".to_string());
        }
        let mut env = Vec::new();
        if let Some(offset) = options.clock_offset_secs {
            let library = process::find_faketime_library().ok_or(LabError::MissingProgram {
                program: "libfaketime.so.1",
                package: "libfaketime",
            })?;
            env.push(("LD_PRELOAD", library.display().to_string()));
            env.push(("FAKETIME", format!("{offset:+}")));
            // Only the wall clock moves; the server's timers keep real time.
            env.push(("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()));
        }
        let mut child = process::spawn(&program, &args, &env, &self.log(lab).with_extension("out"))
            .map_err(|e| LabError::io(&program, e))?;
        self.pid_file(lab)
            .write(child.id())
            .map_err(|e| LabError::io(&self.pid_file(lab).0, e))?;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(LabError::StartFailed {
                    server: self.name.to_string(),
                    reason: format!(
                        "the server exited with {status}: {}",
                        process::log_tail(&self.log(lab), 5)
                    ),
                });
            }
            // Before bootstrap root has no password; after it, "Access denied" also proves it is up.
            match Session::connect(&self.socket_endpoint(lab, None)).await {
                Ok(session) => {
                    session.close().await;
                    return Ok(());
                }
                Err(error) if error.to_string().contains("Access denied") => return Ok(()),
                Err(_) => {}
            }
            if Instant::now() > deadline {
                return Err(LabError::StartFailed {
                    server: self.name.to_string(),
                    reason: format!(
                        "not accepting connections after 90 s: {}",
                        process::log_tail(&self.log(lab), 5)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Root over the Unix socket; only right after install is the password empty.
    fn socket_endpoint(&self, lab: &Path, password: Option<&str>) -> Endpoint {
        Endpoint {
            name: self.name.to_string(),
            address: Address::Socket(self.socket(lab)),
            user: "root".to_string(),
            password: password.map(Secret::new),
            connect_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(30),
            tls: None,
        }
    }

    /// Create the lab's accounts once, outside the binary log so replicas never replay them.
    pub async fn bootstrap(
        &self,
        lab: &Path,
        secrets: &LabSecrets,
        flavor: LabFlavor,
    ) -> Result<(), LabError> {
        if self.bootstrapped_marker(lab).exists() {
            return Ok(());
        }
        let mut session = Session::connect(&self.socket_endpoint(lab, None))
            .await
            .map_err(|e| LabError::server(self.name, e))?;
        let statements = match flavor {
            LabFlavor::Mariadb => accounts::statements(secrets),
            LabFlavor::Mysql => super::mysql::account_statements(secrets),
        };
        for (what, sql) in &statements {
            session
                .exec(what, sql)
                .await
                .map_err(|e| LabError::server(self.name, e))?;
        }
        session
            .exec(
                "set root password",
                &format!(
                    "ALTER USER root@localhost IDENTIFIED BY {}",
                    quote(&secrets.admin)
                ),
            )
            .await
            .map_err(|e| LabError::server(self.name, e))?;
        let reset = match flavor {
            LabFlavor::Mariadb => "RESET MASTER",
            // MySQL 8.4 removed RESET MASTER.
            LabFlavor::Mysql => "RESET BINARY LOGS AND GTIDS",
        };
        session
            .exec("reset binary log", reset)
            .await
            .map_err(|e| LabError::server(self.name, e))?;
        session.close().await;
        std::fs::write(self.bootstrapped_marker(lab), "accounts created\n")
            .map_err(|e| LabError::io(&self.bootstrapped_marker(lab), e))
    }
}

fn install_template(template: &Path, programs: &Programs) -> Result<(), LabError> {
    let _ = std::fs::remove_dir_all(template);
    std::fs::create_dir_all(template).map_err(|e| LabError::io(template, e))?;
    let mut command = std::process::Command::new(&programs.install_db);
    command
        .arg("--no-defaults")
        .arg(format!("--datadir={}", template.display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg("--skip-name-resolve");
    process::make_template(command, &programs.install_db, "mariadb-install-db")
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
