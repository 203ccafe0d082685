//! One precheck's result, as the report and the journal carry it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Precheck {
    pub cluster: String,
    pub check: String,
    pub status: CheckStatus,
    pub detail: String,
    /// Set when the check ran at the start of this phase instead of before the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}
