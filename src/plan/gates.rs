//! The plan's gates: the limits every step measures itself against, and the
//! defaults a step's omitted settings take.

use std::time::Duration;

use serde::Serialize;

use super::millis;

#[derive(Debug, Clone, Serialize)]
pub struct Gates {
    pub max_lag_ms: u64,
    #[serde(with = "millis")]
    pub sustained_for: Duration,
    #[serde(with = "millis")]
    pub freeze_budget: Duration,
    #[serde(with = "millis")]
    pub drain_timeout: Duration,
    #[serde(with = "millis")]
    pub lag_timeout: Duration,
    #[serde(with = "millis")]
    pub dns_verify_timeout: Duration,
    #[serde(with = "millis")]
    pub heartbeat_interval: Duration,
    pub max_clock_skew_ms: u64,
    /// How long a started replication link has to prove it runs.
    #[serde(with = "millis")]
    pub replication_start_timeout: Duration,
    /// End client sessions on a demoted primary once the new one takes writes.
    pub end_old_sessions: bool,
    /// Accounts whose sessions are kept there, with where the plan names them.
    pub keep_sessions_of: Vec<KeptAccount>,
    /// Longest one attempt at a consistent point may hold the source's writers.
    #[serde(with = "millis")]
    pub max_source_stall: Duration,
}

/// An account named in `gates.keep_sessions_of`.
#[derive(Debug, Clone, Serialize)]
pub struct KeptAccount {
    pub user: String,
    /// `line:column` of the entry in the plan file, for errors found on the servers.
    pub at: String,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            max_lag_ms: 1_000,
            sustained_for: Duration::from_secs(5),
            freeze_budget: Duration::from_millis(3_000),
            drain_timeout: Duration::from_millis(1_000),
            lag_timeout: Duration::from_secs(300),
            dns_verify_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_millis(50),
            max_clock_skew_ms: 500,
            replication_start_timeout: Duration::from_secs(5),
            end_old_sessions: true,
            keep_sessions_of: Vec::new(),
            max_source_stall: Duration::from_millis(100),
        }
    }
}
