//! Plans: the YAML model, parsing, validation and the JSON Schema.
//!
//! Flow: file → [`parse_file`] (raw model) → [`validate()`] → [`ValidatedPlan`].

mod diagnostic;
mod gates;
pub mod kinds;
mod located;
mod millis;
pub mod model;
mod parse;
pub mod switchover;
mod validate;
mod validated;

use std::path::Path;

pub use diagnostic::{PlanError, PlanErrors};
pub use kinds::{Established, KindSyntax, StepCheck, StepKind};
pub use located::{Located, Position};
pub use parse::{MAX_PLAN_BYTES, decode, parse, parse_file};
pub use validate::validate;
pub use validated::*;

/// Read, parse and validate a plan file.
pub fn load(path: &Path) -> Result<ValidatedPlan, PlanErrors> {
    let (raw, text) = parse_file(path)?;
    validate(path, &text, raw)
}

/// Parse and validate plan text that did not come from a file.
pub fn load_str(path: &Path, text: &str) -> Result<ValidatedPlan, PlanErrors> {
    let raw = parse(path, text)?;
    validate(path, text, raw)
}

/// The JSON Schema of the plan format.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(model::RawPlan);
    serde_json::to_value(schema).expect("a schema is always serialisable")
}
