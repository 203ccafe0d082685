//! Waiting for a run's next journal events: PostgreSQL announces each one
//! (`LISTEN cutover_events`), SQLite is polled.

use std::time::Duration;

use sqlx::postgres::PgListener;

use super::{Backend, Store, StoreError};

/// How often a store without announcements is read again.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// Wakes when a run's journal may have grown.
pub struct EventWaiter {
    listener: Option<PgListener>,
}

impl Store {
    /// Something to wait on for new journal events.
    pub async fn event_waiter(&self) -> Result<EventWaiter, StoreError> {
        let listener = match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(pool) => {
                let mut listener = PgListener::connect_with(pool)
                    .await
                    .map_err(|e| self.database_error(e))?;
                listener
                    .listen("cutover_events")
                    .await
                    .map_err(|e| self.database_error(e))?;
                Some(listener)
            }
        };
        Ok(EventWaiter { listener })
    }
}

impl EventWaiter {
    /// Wait until an event of `run_id` is announced, or at most `limit`
    /// (the caller reads the journal either way).
    pub async fn wait(&mut self, run_id: &str, limit: Duration) {
        let Some(listener) = &mut self.listener else {
            tokio::time::sleep(POLL_EVERY.min(limit)).await;
            return;
        };
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, listener.recv()).await {
                Ok(Ok(notification)) if notification.payload() == run_id => return,
                Ok(Ok(_)) => {}
                // A lost connection: read the journal and wait again.
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }
}
