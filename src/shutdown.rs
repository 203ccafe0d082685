//! Waiting for an operator's stop: SIGINT (Ctrl-C) or SIGTERM.

use std::future::Future;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// One signal's next delivery; never, when it could not be installed.
async fn next(signal: Option<&mut Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Take over SIGINT and SIGTERM now (so a stop that arrives before anyone
/// waits is not the default "terminate at once"), and resolve on the first.
/// A signal that cannot be installed is left to its default.
pub fn install() -> impl Future<Output = ()> {
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            _ = next(interrupt.as_mut()) => {}
            _ = next(terminate.as_mut()) => {}
        }
    }
}
