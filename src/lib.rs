//! `cutover`: plan-driven, zero-data-loss migration and cutover of MySQL-family
//! databases onto several clusters.
//!
//! Data flows one way: plan file → [`plan::ValidatedPlan`] → prechecks on the
//! live clusters → [`engine`] running [`steps`] → [`store`] journal and report. The binary is a thin shell over
//! [`cli::main`].

pub mod checksum;
pub mod cli;
pub mod dns;
pub mod drill;
pub mod engine;
pub mod error;
pub mod lab;
pub mod lag;
pub mod logging;
pub mod mysql;
pub mod outcome;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod runbook;
pub mod secret;
pub mod shutdown;
pub mod snapshot;
pub mod steps;
pub mod store;
pub mod tables;
pub mod text;
pub mod topology;
pub mod whoami;

pub use error::{Error, ExitCode, Result};
