//! What can go wrong bringing a lab up, using it and tearing it down.

use std::path::{Path, PathBuf};

use super::STATE_FILE;
use crate::mysql::MysqlError;
use crate::outcome::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "`{program}` not found: install the Debian package `{package}` (apt-get install {package})"
    )]
    MissingProgram {
        program: &'static str,
        package: &'static str,
    },
    #[error("lab server `{server}` did not start: {reason}")]
    StartFailed { server: String, reason: String },
    #[error("lab server `{server}`: {source}")]
    Server {
        server: String,
        #[source]
        source: MysqlError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the lab in {dir} is not set up: run `cutover lab up` first")]
    NotUp { dir: PathBuf },
    #[error(
        "the lab in {dir} is already up {existing}; run `cutover lab down` first to change that"
    )]
    Conflict { dir: PathBuf, existing: String },
    #[error("refusing to remove {dir}: it does not look like a lab directory (no {STATE_FILE})")]
    NotALabDir { dir: PathBuf },
    #[error("lab replication: {0}")]
    Replication(String),
    #[error("could not stop {0} within the time allowed")]
    StopFailed(String),
    #[error("there is no lab server `{0}`: the lab has legacy, c1, c2, c3 and c6")]
    UnknownServer(String),
    #[error("lab server `{0}` is not running: `cutover lab restart {0}` starts it")]
    NotRunning(String),
    #[error(
        "no MySQL root at {dir}: run scripts/mysql-root (scripts/install-deps runs it), or set CUTOVER_MYSQL_ROOT"
    )]
    MissingMysqlRoot { dir: PathBuf },
}

impl LabError {
    pub(super) fn io(path: &Path, source: std::io::Error) -> Self {
        LabError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(super) fn server(server: &str, source: MysqlError) -> Self {
        LabError::Server {
            server: server.to_string(),
            source,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            LabError::MissingProgram { .. }
            | LabError::MissingMysqlRoot { .. }
            | LabError::NotUp { .. }
            | LabError::Conflict { .. }
            | LabError::UnknownServer(_) => ErrorKind::InvalidInput,
            LabError::StartFailed { .. }
            | LabError::Server { .. }
            | LabError::Io { .. }
            | LabError::NotALabDir { .. }
            | LabError::Replication(_)
            | LabError::StopFailed(_)
            | LabError::NotRunning(_) => ErrorKind::Failed,
        }
    }

    pub fn cluster(&self) -> Option<&str> {
        match self {
            LabError::StartFailed { server, .. } | LabError::Server { server, .. } => Some(server),
            LabError::UnknownServer(server) | LabError::NotRunning(server) => Some(server),
            _ => None,
        }
    }
}
