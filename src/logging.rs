//! Logs and progress on stderr; stdout is reserved for results.

use std::io::IsTerminal;

use tracing_indicatif::IndicatifLayer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Colour only on a terminal and only when `NO_COLOR` is unset or empty.
pub fn use_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
        && std::io::stderr().is_terminal()
}

/// Install the global subscriber. `verbosity`: -1 quiet, 0 info, 1 debug, 2+ trace.
pub fn init(format: LogFormat, verbosity: i8) {
    let default_level = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // Our own crate at the chosen level; dependencies only speak up for warnings.
    let filter = EnvFilter::try_from_env("CUTOVER_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,cutover={default_level}")));
    let result = match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(false),
            )
            .try_init(),
        LogFormat::Text => {
            let progress = IndicatifLayer::new();
            let writer = progress.get_stderr_writer();
            tracing_subscriber::registry()
                .with(filter)
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(writer)
                        .with_ansi(use_color())
                        .with_target(false)
                        .compact(),
                )
                .with(progress)
                .try_init()
        }
    };
    // A second init (tests calling the CLI entry point twice) keeps the first subscriber.
    let _ = result;
}
