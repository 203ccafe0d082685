//! What every command comes down to, and the one table from that to the
//! process exit code.
//!
//! Domain errors say which [`ErrorKind`] they are, reports say which
//! [`Outcome`] they reached; only [`exit_code`] turns either into a number, so
//! two commands can never disagree about what the same result exits with.

use serde::Serialize;

/// What kind of failure an error is, independent of which module raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad command-line use, an invalid plan, or a missing prerequisite.
    InvalidInput,
    /// A gate or precheck said no: nothing changed, or it was undone cleanly.
    Refused,
    /// Something failed while acting; the report says what state it left.
    Failed,
    /// Data differs (rows, sums, or a broken audit chain).
    Mismatch,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(ErrorKind),
}

impl From<ErrorKind> for Outcome {
    fn from(kind: ErrorKind) -> Self {
        Outcome::Failure(kind)
    }
}

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

    pub const ALL: [ExitCode; 5] = [
        ExitCode::Success,
        ExitCode::StepFailed,
        ExitCode::InvalidInput,
        ExitCode::Refused,
        ExitCode::DataMismatch,
    ];

    /// The short name each command's `--help` lists it under.
    pub fn name(self) -> &'static str {
        match self {
            ExitCode::Success => "success",
            ExitCode::StepFailed => "step failed",
            ExitCode::InvalidInput => "invalid input",
            ExitCode::Refused => "refused",
            ExitCode::DataMismatch => "mismatch",
        }
    }

    /// What it means for every command.
    pub fn description(self) -> &'static str {
        match self {
            ExitCode::Success => "success",
            ExitCode::StepFailed => "a step failed (the report says what state it left)",
            ExitCode::InvalidInput => {
                "invalid input: bad command-line use, an invalid plan, a missing secret or program"
            }
            ExitCode::Refused => {
                "a gate or precheck refused (nothing changed, or the phase was rolled back cleanly),\n     or another run holds the plan's lock"
            }
            ExitCode::DataMismatch => {
                "a data mismatch was found (rows, sums, or a broken audit chain)"
            }
        }
    }
}

/// The one table from an outcome to its exit code.
pub fn exit_code(outcome: impl Into<Outcome>) -> ExitCode {
    match outcome.into() {
        Outcome::Success => ExitCode::Success,
        Outcome::Failure(ErrorKind::Failed) => ExitCode::StepFailed,
        Outcome::Failure(ErrorKind::InvalidInput) => ExitCode::InvalidInput,
        Outcome::Failure(ErrorKind::Refused) => ExitCode::Refused,
        Outcome::Failure(ErrorKind::Mismatch) => ExitCode::DataMismatch,
    }
}

/// The exit-code section of the top-level `--help`: every code.
pub fn help_section_all() -> String {
    let mut text = String::from("Exit codes:");
    for code in ExitCode::ALL {
        text.push_str(&format!("\n  {}  {}", code.code(), code.description()));
    }
    text
}

/// The exit-code section of one command's `--help`: the codes it can end
/// with, each under the table's name, with what it means for this command.
pub fn help_section(codes: &[(ExitCode, &str)]) -> String {
    let mut text = String::from("Exit codes:");
    for (code, meaning) in codes {
        text.push_str(&format!("\n  {}  {}: {meaning}", code.code(), code.name()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_code() {
        let codes = [
            ErrorKind::InvalidInput,
            ErrorKind::Refused,
            ErrorKind::Failed,
            ErrorKind::Mismatch,
        ]
        .map(|kind| exit_code(kind).code());
        assert_eq!(codes, [2, 3, 1, 4]);
        assert_eq!(exit_code(Outcome::Success).code(), 0);
    }

    #[test]
    fn the_help_section_uses_the_tables_words() {
        let text = help_section(&[(ExitCode::Refused, "the plan lock is held")]);
        assert_eq!(text, "Exit codes:\n  3  refused: the plan lock is held");
        let all = help_section_all();
        for code in ExitCode::ALL {
            assert!(all.contains(&format!("\n  {}  {}", code.code(), code.description())));
        }
    }
}
