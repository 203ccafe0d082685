//! Waiting for an operator's stop: SIGINT (Ctrl-C) or SIGTERM.

/// Resolves on the first SIGINT or SIGTERM. Without a SIGTERM handler (the
/// signal cannot be installed) only SIGINT stops.
pub async fn requested() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
