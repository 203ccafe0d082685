//! Keeping a plan's lease while a run acts: renewed in the background well
//! inside its TTL, checked before each step that changes anything, and
//! known lost the moment this process can tell, from the store or from its
//! own monotonic clock (which also runs while the process is stopped).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{PlanLock, Store, StoreError};

/// Holds a lease for as long as it lives; dropping it stops the renewals.
pub struct LeaseKeeper {
    store: Store,
    lock: PlanLock,
    shared: Arc<Mutex<Kept>>,
    task: tokio::task::JoinHandle<()>,
}

struct Kept {
    /// When the last successful renewal was sent (or the lease taken).
    renewed_at: Instant,
    /// Why the lease is known lost.
    lost: Option<String>,
}

impl LeaseKeeper {
    /// Start renewing `lock` (just acquired) through `store`.
    pub fn start(store: &Store, lock: &PlanLock) -> LeaseKeeper {
        let settings = store.lease_settings();
        let shared = Arc::new(Mutex::new(Kept {
            renewed_at: Instant::now(),
            lost: None,
        }));
        let task = {
            let (store, lock, shared) = (store.clone(), lock.clone(), shared.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(settings.renew_every).await;
                    let sent = Instant::now();
                    if let Some(why) = locally_expired(&shared, settings.ttl) {
                        mark_lost(&shared, why);
                        return;
                    }
                    match tokio::time::timeout(settings.renew_every, store.renew_plan_lock(&lock))
                        .await
                    {
                        Ok(Ok(_)) => shared.lock().expect("not poisoned").renewed_at = sent,
                        Ok(Err(error @ StoreError::LeaseLost { .. })) => {
                            mark_lost(&shared, error.to_string());
                            return;
                        }
                        Ok(Err(error)) => {
                            tracing::warn!("could not renew the plan's lease: {error}");
                        }
                        Err(_) => tracing::warn!(
                            "renewing the plan's lease took over {} ms",
                            settings.renew_every.as_millis()
                        ),
                    }
                }
            })
        };
        LeaseKeeper {
            store: store.clone(),
            lock: lock.clone(),
            shared,
            task,
        }
    }

    /// Why the lease is lost, if this process can tell without asking.
    pub fn lost(&self) -> Option<String> {
        let settings = self.store.lease_settings();
        if let Some(why) = locally_expired(&self.shared, settings.ttl) {
            mark_lost(&self.shared, why);
        }
        self.shared.lock().expect("not poisoned").lost.clone()
    }

    /// Before a step that changes anything: the lease must have comfortably
    /// more life than the step's `bound` (at most two thirds of its TTL,
    /// which a holder renewing on time always has), by the store's clock.
    pub async fn check_before_step(&self, bound: Duration) -> Result<(), String> {
        if let Some(why) = self.lost() {
            return Err(why);
        }
        let ttl = self.store.lease_settings().ttl;
        let needed = (bound + Duration::from_secs(1)).min(ttl * 2 / 3);
        match self.store.plan_lock_remaining(&self.lock).await {
            Ok(left) if left >= needed => Ok(()),
            Ok(left) => {
                let why = format!(
                    "the lease of plan `{}` has {} ms left, less than the {} ms the next step needs: \
                     it was not renewed in time; this process stops here without acting",
                    self.lock.plan,
                    left.as_millis(),
                    needed.as_millis()
                );
                mark_lost(&self.shared, why.clone());
                Err(why)
            }
            Err(error @ StoreError::LeaseLost { .. }) => {
                mark_lost(&self.shared, error.to_string());
                Err(error.to_string())
            }
            Err(error) => Err(format!(
                "the lease of plan `{}` cannot be checked ({error}); this process stops here \
                 without acting",
                self.lock.plan
            )),
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A lease not renewed for a whole TTL has expired, whatever the store says
/// later: the monotonic clock counts time this process spent stopped.
fn locally_expired(shared: &Mutex<Kept>, ttl: Duration) -> Option<String> {
    let kept = shared.lock().expect("not poisoned");
    let since = kept.renewed_at.elapsed();
    (kept.lost.is_none() && since >= ttl).then(|| {
        format!(
            "the plan's lease was last renewed {} ms ago, past its {} ms TTL (was this process \
             stopped?); another orchestrator may hold it now: this process stops here and writes \
             nothing more",
            since.as_millis(),
            ttl.as_millis()
        )
    })
}

fn mark_lost(shared: &Mutex<Kept>, why: String) {
    let mut kept = shared.lock().expect("not poisoned");
    if kept.lost.is_none() {
        tracing::error!("{why}");
        kept.lost = Some(why);
    }
}
