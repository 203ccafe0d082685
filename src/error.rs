//! The library's top-level error: what a command could not do, with its kind,
//! the cluster it concerns and a hint. [`crate::outcome::exit_code`] turns the
//! kind into the process exit code.

use crate::checksum::ChecksumError;
use crate::drill::DrillError;
use crate::engine::EngineError;
use crate::lab::LabError;
use crate::lag::LagError;
use crate::outcome::ErrorKind;
pub use crate::outcome::ExitCode;
use crate::plan::PlanErrors;
use crate::probe::ProbeError;
use crate::secret::SecretError;
use crate::snapshot::SnapshotError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Plan(Box<PlanErrors>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Lag(#[from] LagError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Drill(#[from] DrillError),
    #[error("audit log {path}: the hash chain is broken ({problems} problem(s))")]
    AuditBroken { path: String, problems: usize },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Plan(_) | Error::Usage(_) | Error::Secret(_) => ErrorKind::InvalidInput,
            Error::Store(error) => error.kind(),
            Error::Io { .. } => ErrorKind::Failed,
            Error::Lab(error) => error.kind(),
            Error::AuditBroken { .. } => ErrorKind::Mismatch,
            Error::Lag(error) => error.kind(),
            Error::Engine(error) => error.kind(),
            Error::Probe(error) => error.kind(),
            Error::Checksum(error) => error.kind(),
            Error::Snapshot(error) => error.kind(),
            Error::Drill(error) => error.kind(),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        crate::outcome::exit_code(self.kind())
    }

    /// What to do about it, when there is one thing to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Store(error) => error.hint(),
            Error::Lag(error) => error.hint(),
            Error::Engine(error) => error.hint(),
            Error::Checksum(error) => error.hint(),
            Error::Snapshot(error) => error.hint(),
            Error::Drill(error) => error.hint(),
            Error::AuditBroken { .. } => Some("see `cutover audit verify`".into()),
            Error::Plan(_)
            | Error::Secret(_)
            | Error::Lab(_)
            | Error::Usage(_)
            | Error::Probe(_)
            | Error::Io { .. } => None,
        }
    }

    /// The cluster (or lab server) it concerns, when it concerns one.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Error::Lab(error) => error.cluster(),
            Error::Lag(error) => error.cluster(),
            Error::Checksum(error) => error.cluster(),
            Error::Snapshot(error) => error.cluster(),
            Error::Drill(error) => error.cluster(),
            Error::Probe(ProbeError::Mysql(error)) => Some(error.cluster()),
            _ => None,
        }
    }
}

impl From<PlanErrors> for Error {
    fn from(errors: PlanErrors) -> Self {
        Error::Plan(Box::new(errors))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
