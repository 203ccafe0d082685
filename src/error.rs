//! The library's top-level error and the documented exit codes it maps to.

use crate::lab::LabError;
use crate::plan::PlanErrors;
use crate::secret::SecretError;
use crate::store::StoreError;

/// Process exit codes. Documented in the README; scripts rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    Success = 0,
    /// A step failed; the report says what state it left.
    StepFailed = 1,
    /// Bad command-line use, an invalid plan, or a missing prerequisite.
    InvalidInput = 2,
    /// A gate or precheck refused: nothing changed, or the phase was rolled back cleanly.
    Refused = 3,
    /// A data mismatch was found (rows, sums, or a broken audit chain).
    DataMismatch = 4,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        self as u8
    }
}

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
    Lag(#[from] crate::lag::LagError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Probe(#[from] crate::probe::ProbeError),
    #[error(transparent)]
    Checksum(#[from] crate::checksum::ChecksumError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error(transparent)]
    Drill(#[from] crate::drill::DrillError),
    #[error(
        "audit log {path}: the hash chain is broken ({problems} problem(s)); see `cutover audit verify`"
    )]
    AuditBroken { path: String, problems: usize },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Plan(_) | Error::Usage(_) | Error::Secret(_) => ExitCode::InvalidInput,
            Error::Store(StoreError::LockHeld { .. }) => ExitCode::Refused,
            Error::Store(StoreError::UnknownRun(_)) => ExitCode::InvalidInput,
            Error::Store(_) | Error::Io { .. } => ExitCode::StepFailed,
            Error::Lab(error) => error.exit_code(),
            Error::AuditBroken { .. } => ExitCode::DataMismatch,
            Error::Lag(crate::lag::LagError::Secret(_)) => ExitCode::InvalidInput,
            Error::Lag(crate::lag::LagError::NoPrimary(_)) => ExitCode::Refused,
            Error::Lag(_) => ExitCode::StepFailed,
            Error::Engine(crate::engine::EngineError::Store(StoreError::LockHeld { .. })) => {
                ExitCode::Refused
            }
            Error::Engine(crate::engine::EngineError::Store(_)) => ExitCode::StepFailed,
            Error::Engine(crate::engine::EngineError::EarlierPhasesNotCompleted { .. }) => {
                ExitCode::Refused
            }
            Error::Engine(crate::engine::EngineError::JournalDisagrees { .. }) => {
                ExitCode::StepFailed
            }
            Error::Engine(_) => ExitCode::InvalidInput,
            Error::Probe(
                crate::probe::ProbeError::Mysql(_) | crate::probe::ProbeError::Resolve { .. },
            ) => ExitCode::StepFailed,
            Error::Probe(_) => ExitCode::InvalidInput,
            Error::Checksum(
                crate::checksum::ChecksumError::Secret(_)
                | crate::checksum::ChecksumError::UnknownTarget(_)
                | crate::checksum::ChecksumError::NoTables(_),
            ) => ExitCode::InvalidInput,
            Error::Checksum(crate::checksum::ChecksumError::Source(_)) => ExitCode::StepFailed,
            Error::Snapshot(
                crate::snapshot::SnapshotError::Secret(_)
                | crate::snapshot::SnapshotError::UnknownTarget(_)
                | crate::snapshot::SnapshotError::NoTables(_),
            ) => ExitCode::InvalidInput,
            Error::Snapshot(
                crate::snapshot::SnapshotError::NotEmpty { .. }
                | crate::snapshot::SnapshotError::SourceNotReady { .. }
                | crate::snapshot::SnapshotError::Corrupt { .. },
            ) => ExitCode::Refused,
            Error::Snapshot(_) => ExitCode::StepFailed,
            Error::Drill(error) => error.exit_code(),
        }
    }
}

impl From<PlanErrors> for Error {
    fn from(errors: PlanErrors) -> Self {
        Error::Plan(Box::new(errors))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
