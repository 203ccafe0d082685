//! The lab's PostgreSQL: a shared state store for `--state postgres://…`,
//! Debian's `postgresql-15` run as a plain process on a loopback address of
//! the lab's own (never the system's 5432), initialised by the lab with a
//! password of its own, and removed by `lab down`.
//!
//! PostgreSQL refuses to run as root: as root the server runs as the
//! `postgres` account, in a data directory of its own under the system's
//! temporary directory (the lab's may not be open to that account).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::LabError;
use super::process::{self, PidFile};

pub const IP: &str = "127.0.0.40";
pub const PORT: u16 = 15432;
/// The role and the database the lab's state store uses.
pub const USER: &str = "cutover";
pub const DATABASE: &str = "cutover";
/// Where Debian's `postgresql-15` puts its programs.
const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// How long the server may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The lab's PostgreSQL, rooted at one lab directory.
pub struct LabPostgres {
    lab: PathBuf,
}

impl LabPostgres {
    pub fn new(lab: &Path) -> LabPostgres {
        LabPostgres {
            lab: lab.to_path_buf(),
        }
    }

    pub fn pid_file(&self) -> PidFile {
        PidFile(self.lab.join("postgres.pid"))
    }

    fn log(&self) -> PathBuf {
        self.lab.join("postgres.log")
    }

    /// The server's log, opened twice: for its standard output and error.
    fn log_files(&self) -> Result<(std::fs::File, std::fs::File), LabError> {
        let log = self.log();
        let out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| LabError::io(&log, e))?;
        let err = out.try_clone().map_err(|e| LabError::io(&log, e))?;
        Ok((out, err))
    }

    pub fn running(&self) -> Option<u32> {
        self.pid_file().running()
    }

    /// The data directory: in the lab, or, as root, one of the server
    /// account's own named after the lab's path.
    fn data_dir(&self) -> PathBuf {
        if nix::unistd::geteuid().is_root() {
            let digest = Sha256::digest(self.lab.display().to_string().as_bytes());
            std::env::temp_dir().join(format!(
                "cutover-lab-postgres-{}",
                &hex::encode(digest)[..12]
            ))
        } else {
            self.lab.join("postgres")
        }
    }

    /// The state store's URL, password included (as `lab env` prints it).
    pub fn url(password: &str) -> String {
        format!("postgres://{USER}:{password}@{IP}:{PORT}/{DATABASE}")
    }

    /// A URL for another database of the same server (tests make one each).
    pub fn url_of(password: &str, database: &str) -> String {
        format!("postgres://{USER}:{password}@{IP}:{PORT}/{database}")
    }

    /// Initialise (once) and start the server, then create the state
    /// store's database. Running it again on a running server changes nothing.
    pub async fn start(&self, password: &str) -> Result<(), LabError> {
        if self.running().is_some() {
            return Ok(());
        }
        let postgres = program("postgres")?;
        let data = self.data_dir();
        let account = ServerAccount::find()?;
        if !data.join("PG_VERSION").exists() {
            self.initialise(&data, &account, password)?;
        }
        let (out, err) = self.log_files()?;
        let mut command = Command::new(&postgres);
        command
            .arg("-D")
            .arg(&data)
            .args(["-c", &format!("listen_addresses={IP}")])
            .args(["-c", &format!("port={PORT}")])
            .args(["-c", "unix_socket_directories="])
            // A lab: durability of the store's own tests is not under test.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "max_connections=60"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        account.apply(&mut command);
        let child = command.spawn().map_err(|e| LabError::io(&postgres, e))?;
        self.pid_file()
            .write(child.id())
            .map_err(|e| LabError::io(&self.pid_file().0, e))?;
        self.wait_ready(password).await?;
        self.create_database(password).await
    }

    fn initialise(
        &self,
        data: &Path,
        account: &ServerAccount,
        password: &str,
    ) -> Result<(), LabError> {
        let initdb = program("initdb")?;
        std::fs::create_dir_all(data).map_err(|e| LabError::io(data, e))?;
        account.own(data)?;
        // initdb reads the password from a file the server account can read.
        let password_file = data.with_extension("password");
        std::fs::write(&password_file, format!("{password}\n"))
            .map_err(|e| LabError::io(&password_file, e))?;
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| LabError::io(&password_file, e))?;
        account.own(&password_file)?;
        let log = self.log();
        let (out, err) = self.log_files()?;
        let mut command = Command::new(&initdb);
        command
            .arg("-D")
            .arg(data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", password_file.display()))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        account.apply(&mut command);
        let status = command.status().map_err(|e| LabError::io(&initdb, e));
        let _ = std::fs::remove_file(&password_file);
        if !status?.success() {
            return Err(LabError::StartFailed {
                server: "postgres".into(),
                reason: format!("initdb failed: {}", process::log_tail(&log, 5)),
            });
        }
        Ok(())
    }

    async fn wait_ready(&self, password: &str) -> Result<(), LabError> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if self.running().is_none() {
                return Err(LabError::StartFailed {
                    server: "postgres".into(),
                    reason: format!("the server exited: {}", process::log_tail(&self.log(), 5)),
                });
            }
            match self.connect(password, "postgres").await {
                Ok(connection) => {
                    let _ = connection.close().await;
                    return Ok(());
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => {
                    return Err(LabError::StartFailed {
                        server: "postgres".into(),
                        reason: format!(
                            "not accepting connections after {} s: {error}",
                            START_LIMIT.as_secs()
                        ),
                    });
                }
            }
        }
    }

    async fn connect(&self, password: &str, database: &str) -> Result<PgConnection, sqlx::Error> {
        let options = PgConnectOptions::from_str(&Self::url_of(password, database))?;
        tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options))
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    async fn create_database(&self, password: &str) -> Result<(), LabError> {
        self.create(password, DATABASE).await
    }

    /// Create `database` on the lab's server if it does not exist yet.
    pub async fn create(&self, password: &str, database: &str) -> Result<(), LabError> {
        let failed = |error: sqlx::Error| LabError::StartFailed {
            server: "postgres".into(),
            reason: format!("creating database `{database}`: {error}"),
        };
        let mut connection = self.connect(password, "postgres").await.map_err(failed)?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(database)
                .fetch_optional(&mut connection)
                .await
                .map_err(failed)?;
        if exists.is_none() {
            // A name the lab chose, quoted.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE \"{}\"",
                database.replace('"', "")
            )))
            .execute(&mut connection)
            .await
            .map_err(failed)?;
        }
        let _ = connection.close().await;
        Ok(())
    }

    /// Stop the server and remove its data.
    pub fn remove(&self) -> bool {
        let stopped = process::stop(&self.pid_file(), Duration::from_secs(10));
        let data = self.data_dir();
        if data.exists() {
            let _ = std::fs::remove_dir_all(&data);
        }
        stopped
    }
}

fn program(name: &str) -> Result<PathBuf, LabError> {
    let path = Path::new(BIN_DIR).join(name);
    if path.is_file() {
        Ok(path)
    } else {
        process::find_program(name).ok_or(LabError::MissingProgram {
            program: "postgres",
            package: "postgresql-15",
        })
    }
}

/// The account the server runs as: this one, or `postgres` when this is root.
struct ServerAccount {
    ids: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
}

impl ServerAccount {
    fn find() -> Result<ServerAccount, LabError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(ServerAccount { ids: None });
        }
        let user = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or(LabError::MissingProgram {
                program: "postgres (the account)",
                package: "postgresql-15",
            })?;
        Ok(ServerAccount {
            ids: Some((user.uid, user.gid)),
        })
    }

    fn apply(&self, command: &mut Command) {
        if let Some((uid, gid)) = self.ids {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
    }

    fn own(&self, path: &Path) -> Result<(), LabError> {
        if let Some((uid, gid)) = self.ids {
            nix::unistd::chown(path, Some(uid), Some(gid))
                .map_err(|e| LabError::io(path, std::io::Error::from(e)))?;
        }
        Ok(())
    }
}
