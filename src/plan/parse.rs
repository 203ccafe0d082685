//! The one place YAML is turned into the raw plan model.

use std::path::Path;

use serde_saphyr::{Budget, DuplicateKeyPolicy, Options};

use super::diagnostic::{PlanError, PlanErrors};
use super::located::Position;
use super::model::RawPlan;

/// Plans are small; anything larger is a mistake or an attack.
pub const MAX_PLAN_BYTES: usize = 1024 * 1024;

/// Read and parse a plan file into the raw model (no semantic checks).
pub fn parse_file(path: &Path) -> Result<(RawPlan, String), PlanErrors> {
    let bytes = std::fs::read(path).map_err(|error| {
        PlanErrors::single(
            path,
            PlanError::at(Position::UNKNOWN, format!("cannot read plan file: {error}")),
            None,
        )
    })?;
    let text = decode(path, &bytes)?;
    let plan = parse(path, &text)?;
    Ok((plan, text))
}

/// Check size and encoding before any YAML parsing.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<String, PlanErrors> {
    if bytes.len() > MAX_PLAN_BYTES {
        return Err(PlanErrors::single(
            path,
            PlanError::at(
                Position { line: 1, column: 1 },
                format!(
                    "plan file is {} bytes; plans are limited to {} bytes",
                    bytes.len(),
                    MAX_PLAN_BYTES
                ),
            ),
            None,
        ));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(error) => {
            let valid = &bytes[..error.valid_up_to()];
            // The valid prefix is UTF-8 by definition, so positions count characters.
            let valid_text = std::str::from_utf8(valid).unwrap_or_default();
            let line = valid_text.matches('\n').count() as u64 + 1;
            let column = valid_text
                .rsplit('\n')
                .next()
                .map_or(0, |tail| tail.chars().count()) as u64
                + 1;
            let bad = bytes[error.valid_up_to()];
            Err(PlanErrors::single(
                path,
                PlanError::at(
                    Position { line, column },
                    format!("plan file is not valid UTF-8: byte 0x{bad:02x} is not part of a UTF-8 character"),
                )
                .with_help("save the plan as UTF-8"),
                Some(String::from_utf8_lossy(bytes).into_owned()),
            ))
        }
    }
}

fn options() -> Options {
    let mut budget = Budget::default();
    budget.max_depth = 32;
    budget.max_aliases = 64;
    budget.max_anchors = 64;
    budget.max_nodes = 100_000;
    budget.max_events = 200_000;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = MAX_PLAN_BYTES;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    options.strict_booleans = true;
    options.with_snippet = false;
    options.alias_limits.max_total_replayed_events = 10_000;
    options.alias_limits.max_alias_expansions_per_anchor = 64;
    options
}

/// Parse plan text into the raw model.
pub fn parse(path: &Path, text: &str) -> Result<RawPlan, PlanErrors> {
    let fail = |error: PlanError| PlanErrors::single(path, error, Some(text.to_owned()));
    if text
        .lines()
        .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
    {
        return Err(fail(
            PlanError::at(Position { line: 1, column: 1 }, "plan file is empty").with_help(
                "a plan needs at least `name`, `clusters` and `phases`; see `cutover plan schema`",
            ),
        ));
    }
    // A structure-only pass first, so hostile input (alias bombs, deep nesting)
    // trips the safety budget rather than whichever field happens to come first.
    serde_saphyr::from_str_with_options::<serde::de::IgnoredAny>(text, options())
        .map_err(|error| fail(translate(&error, error_position(&error))))?;
    serde_saphyr::from_str_with_options::<RawPlan>(text, options())
        .map_err(|error| fail(translate(&error, error_position(&error))))
}

fn error_position(error: &serde_saphyr::Error) -> Position {
    error
        .location()
        .map(|location| Position {
            line: location.line(),
            column: location.column(),
        })
        .filter(Position::is_known)
        .unwrap_or(Position { line: 1, column: 1 })
}

fn translate(error: &serde_saphyr::Error, position: Position) -> PlanError {
    let inner = error.without_snippet();
    let raw = strip_location_suffix(&inner.to_string());
    let lower = raw.to_ascii_lowercase();
    if lower.contains("alias replay") || lower.contains("alias expansion") {
        return PlanError::at(
            position,
            "refused: aliases expand beyond the parser's safety limit (an alias bomb?)",
        )
        .with_help("plans never need many aliases; write the values out");
    }
    if lower.contains("budget breached") {
        let what = if lower.contains("depth") {
            "nesting is deeper than 32 levels".to_string()
        } else {
            format!("the YAML exceeds the parser's safety limits ({raw})")
        };
        return PlanError::at(position, format!("refused: {what}"))
            .with_help("plans never need deep nesting, many anchors or huge scalars");
    }
    match inner {
        serde_saphyr::Error::DuplicateMappingKey { .. } => PlanError::at(
            position,
            raw.split(", set DuplicateKeyPolicy")
                .next()
                .unwrap_or(&raw)
                .to_string(),
        )
        .with_help("each key may appear once in a mapping; remove or rename the duplicate"),
        serde_saphyr::Error::SerdeUnknownField { .. } => PlanError::at(position, raw)
            .with_help("see `cutover plan schema` for the fields each section takes"),
        _ if lower.starts_with("invalid i64") || lower.starts_with("invalid u64") => {
            PlanError::at(position, "expected a whole number here")
        }
        _ => PlanError::at(position, raw),
    }
}

/// The parser appends "at line L, column C"; the position is reported separately.
fn strip_location_suffix(message: &str) -> String {
    let trimmed = message.trim();
    for marker in [" at line ", " at Line "] {
        if let Some(index) = trimmed.rfind(marker) {
            let tail = &trimmed[index + marker.len()..];
            if tail
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == ' ' || c.is_ascii_alphabetic())
                && tail.contains("column")
            {
                return trimmed[..index].trim_end_matches([',', ':']).to_string();
            }
        }
    }
    trimmed.to_string()
}
