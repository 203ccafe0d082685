//! What a drill found, as its report carries it: events, RTO and RPO against their targets, the write rate, the verifications and where an interrupted drill stopped.

use super::*;

/// One moment of the drill, in milliseconds since it started.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub name: &'static str,
    pub at_ms: u64,
    pub detail: String,
}

/// A measured figure against its target.
#[derive(Debug, Clone, Serialize)]
pub struct Objective {
    pub measured_ms: Option<u64>,
    pub target_ms: Option<u64>,
    /// `None` without a target or a measurement.
    pub met: Option<bool>,
}

/// The acknowledged writes the failover lost.
#[derive(Debug, Clone, Serialize)]
pub struct Rpo {
    pub lost_writes: u64,
    pub lost_sequences: Vec<u64>,
    /// When the first and last lost writes were acknowledged (drill time).
    pub first_lost_at_ms: Option<u64>,
    pub last_lost_at_ms: Option<u64>,
    /// From the first lost write to the failure: the data the failover gave up.
    pub measured_ms: u64,
    pub target_ms: Option<u64>,
    pub met: Option<bool>,
}

/// One checksum of the clusters that carry the data.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub stage: &'static str,
    pub primary: String,
    pub replicas: Vec<String>,
    /// `match`, `mismatch`, `incomplete`, `error`, or `skipped` (no replica to compare).
    pub status: String,
    pub rows_compared: u64,
    pub detail: Option<String>,
}

/// Writes acknowledged per bin of [`RATE_BIN_MS`].
#[derive(Debug, Clone, Serialize)]
pub struct RateBin {
    pub at_ms: u64,
    pub writes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeSummary {
    /// The probe's rows in `cutover_probe.writes` carry this id.
    pub probe_id: String,
    pub rate: u32,
    pub attempted: u64,
    pub acknowledged: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub failed_attempts: u64,
    pub max_unavailable_ms: u64,
    pub read_back_from: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub drill_id: String,
    pub plan: String,
    pub failure: DrillFailure,
    /// The primary that was failed.
    pub primary: String,
    /// The cluster that took over.
    pub promoted: Option<String>,
    /// `passed` (every target met, every verification matched), `missed` (a
    /// target missed), `failed` (a stage failed or a verification did not
    /// match) or `interrupted` (its orchestrator died before it failed anything).
    pub status: &'static str,
    pub started_at: String,
    pub elapsed_ms: u64,
    pub rto: Objective,
    pub rpo: Rpo,
    pub timeline: Vec<Event>,
    pub write_rate: Vec<RateBin>,
    pub probe: Option<ProbeSummary>,
    pub failover: Option<failover::Failover>,
    pub verifications: Vec<Verification>,
    pub failback: Option<failback::FailbackReport>,
    pub problems: Vec<String>,
    /// Set when the drill's orchestrator died and `drill resume` finished it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interrupted>,
    /// The files written for this drill.
    pub reports: Vec<String>,
}

/// Where an interrupted drill stopped, and when it was taken up again.
#[derive(Debug, Clone, Serialize)]
pub struct Interrupted {
    /// The last stage it journaled (`none` if it died before the first).
    pub stage: String,
    /// Drill time at which `drill resume` took it up.
    pub resumed_at_ms: u64,
}

impl DrillReport {
    pub fn outcome(&self) -> Outcome {
        if self.verifications.iter().any(|v| v.status == "mismatch") {
            return ErrorKind::Mismatch.into();
        }
        match self.status {
            "passed" => Outcome::Success,
            _ => ErrorKind::Failed.into(),
        }
    }
}
