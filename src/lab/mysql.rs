//! What differs when the lab runs MySQL 9.7 LTS: the server comes from a
//! Debian unstable root prepared once per machine (`scripts/mysql-root`) and
//! runs through that root's own dynamic loader as a plain host process; its
//! configuration, accounts and replication use MySQL's names.

use std::path::{Path, PathBuf};

use super::{LabError, LabSecrets, LabServer, MYSQL_PORT, accounts, tls};
use crate::mysql::quote;

/// Where `scripts/mysql-root` caches the root, unless `CUTOVER_MYSQL_ROOT` says otherwise.
pub const DEFAULT_ROOT: &str = "/var/cache/cutover/mysql-9.7";

/// A prepared MySQL root.
#[derive(Debug, Clone)]
pub struct MysqlRoot {
    pub dir: PathBuf,
}

impl MysqlRoot {
    /// The cached root, complete, or an error that names the script that makes it.
    pub fn find() -> Result<MysqlRoot, LabError> {
        let dir = std::env::var_os("CUTOVER_MYSQL_ROOT")
            .filter(|dir| !dir.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from);
        if dir.join("usr/sbin/mysqld").is_file() && dir.join(".complete").exists() {
            Ok(MysqlRoot { dir })
        } else {
            Err(LabError::MissingMysqlRoot { dir })
        }
    }

    /// The program to run: the root's dynamic loader.
    pub fn loader(&self) -> PathBuf {
        self.dir.join("lib64/ld-linux-x86-64.so.2")
    }

    /// The loader's arguments before mysqld's own.
    pub fn loader_args(&self) -> Vec<String> {
        vec![
            "--library-path".into(),
            format!(
                "{root}/usr/lib/x86_64-linux-gnu:{root}/lib/x86_64-linux-gnu",
                root = self.dir.display()
            ),
            self.dir.join("usr/sbin/mysqld").display().to_string(),
        ]
    }

    /// Where mysqld finds its own files inside the root.
    fn paths(&self) -> String {
        let root = self.dir.display();
        format!(
            "basedir={root}/usr\nlc-messages-dir={root}/usr/share/mysql\n\
             character-sets-dir={root}/usr/share/mysql/charsets\nplugin-dir={root}/usr/lib/mysql/plugin\n"
        )
    }

    /// Make an initialized data directory (`--initialize-insecure`: root
    /// without a password, reachable only over the socket until bootstrap).
    pub fn initialize(&self, data: &Path) -> Result<(), LabError> {
        let _ = std::fs::remove_dir_all(data);
        let mut command = std::process::Command::new(self.loader());
        command
            .args(self.loader_args())
            .arg("--no-defaults")
            .arg("--initialize-insecure")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--basedir={}/usr", self.dir.display()))
            .arg(format!(
                "--lc-messages-dir={}/usr/share/mysql",
                self.dir.display()
            ));
        super::process::make_template(command, &self.loader(), "mysqld --initialize-insecure")
    }
}

/// A server's configuration: GTIDs on, every change logged, TLS from the
/// lab's CA, `local_infile` at MySQL's default (off).
pub fn config(server: &LabServer, lab: &Path, root: &MysqlRoot) -> String {
    let dir = server.dir(lab);
    format!(
        "[mysqld]
{paths}datadir={data}
socket={socket}
pid-file={dir}/mysqld.pid
log-error={log}
bind-address={ip}
port={port}
mysqlx=OFF
secure-file-priv=
server-id={id}
log-bin={dir}/binlog/{name}-bin
relay-log={dir}/binlog/{name}-relay
gtid-mode=ON
enforce-gtid-consistency=ON
log-replica-updates=ON
report-host={ip}
report-port={port}
skip-name-resolve
character-set-server=utf8mb4
collation-server=utf8mb4_unicode_ci
max-connections=400
innodb-buffer-pool-size=128M
innodb-redo-log-capacity=128M
innodb-flush-log-at-trx-commit=2
sync-binlog=0
replica-net-timeout=10
# Routines are created by the orchestrator's account (no SUPER) with the binary
# log on, as a snapshot of a database with functions does.
log-bin-trust-function-creators=ON
ssl-ca={ca}
ssl-cert={cert}
ssl-key={key}
",
        paths = root.paths(),
        data = dir.join("data").display(),
        socket = server.socket(lab).display(),
        dir = dir.display(),
        log = server.log(lab).display(),
        ip = server.ip,
        port = MYSQL_PORT,
        id = server.server_id,
        name = server.name,
        ca = tls::ca_file(lab).display(),
        cert = tls::server_cert(lab).display(),
        key = tls::server_key(lab).display(),
    )
}

/// The lab's accounts in MySQL's words: `caching_sha2_password` only, and the
/// dynamic privileges MySQL splits SUPER into. `(what, sql)`; the SQL holds passwords.
pub fn account_statements(secrets: &LabSecrets) -> Vec<(String, String)> {
    let mut out = vec![(
        "disable binary logging for account setup".to_string(),
        "SET SESSION sql_log_bin = 0".to_string(),
    )];
    let accounts = [
        (
            accounts::ADMIN_USER,
            &secrets.admin,
            vec!["GRANT ALL PRIVILEGES ON *.* TO {} WITH GRANT OPTION"],
        ),
        (
            accounts::ORCHESTRATOR_USER,
            &secrets.orchestrator,
            vec![
                "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, CREATE VIEW, SHOW VIEW, \
                 CREATE ROUTINE, ALTER ROUTINE, EXECUTE, TRIGGER, EVENT, LOCK TABLES, REFERENCES, \
                 CREATE TEMPORARY TABLES, RELOAD, PROCESS, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {}",
                "GRANT REPLICATION_SLAVE_ADMIN, CONNECTION_ADMIN, SYSTEM_VARIABLES_ADMIN, \
                 BACKUP_ADMIN, SESSION_VARIABLES_ADMIN, REPLICATION_APPLIER ON *.* TO {}",
            ],
        ),
        (
            accounts::REPLICATION_USER,
            &secrets.replication,
            vec!["GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {}"],
        ),
        (
            accounts::APPLICATION_USER,
            &secrets.application,
            vec![
                "GRANT SELECT, INSERT, UPDATE, DELETE ON refunds.* TO {}",
                "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON cutover_probe.* TO {}",
            ],
        ),
        (
            accounts::OTHER_APPLICATION_USER,
            &secrets.other_application,
            vec![accounts::OTHER_APPLICATION_GRANT],
        ),
    ];
    // MySQL has no CREATE OR REPLACE USER.
    out.extend(accounts::create_and_grant(
        &accounts,
        |account, password| {
            vec![
                format!("DROP USER IF EXISTS {account}"),
                format!(
                    "CREATE USER {account} IDENTIFIED WITH caching_sha2_password BY {}",
                    quote(password)
                ),
            ]
        },
    ));
    out
}

/// A replica of `source` from GTID auto-positioning, over TLS (the accounts
/// use `caching_sha2_password`, which needs TLS or the source's public key).
pub fn replicate_from(source: &LabServer, secrets: &LabSecrets) -> String {
    format!(
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST={}, SOURCE_PORT={MYSQL_PORT}, SOURCE_USER={}, \
         SOURCE_PASSWORD={}, SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_SSL=1",
        quote(source.ip),
        quote(accounts::REPLICATION_USER),
        quote(&secrets.replication)
    )
}
