//! What a drill learned as it went, journaled stage by stage so `drill resume` can take it up.

use super::*;

/// What the drill learned as it went; turned into the report at the end.
pub(super) struct Progress {
    pub(super) started: Instant,
    pub(super) started_unix_ms: u64,
    pub(super) timeline: Vec<Event>,
    pub(super) problems: Vec<String>,
    pub(super) promoted: Option<String>,
    pub(super) failover: Option<failover::Failover>,
    pub(super) verifications: Vec<Verification>,
    pub(super) failback: Option<failback::FailbackReport>,
    pub(super) injected_at: Option<u64>,
    pub(super) first_write_at: Option<u64>,
    /// Where each stage is journaled as it is reached: the drill's run.
    pub(super) journal: Option<(Store, String)>,
    /// What a resume needs that the servers cannot tell afterwards.
    pub(super) failure: DrillFailure,
    pub(super) baseline: Option<String>,
    pub(super) candidate: Option<String>,
}

/// The journal's step name for a drill stage, e.g. `drill.promotion`.
pub const STAGE_PREFIX: &str = "drill.";

impl Progress {
    /// A drill's progress from `started` on, journaled in `journal`'s run.
    pub(super) fn new(
        journal: (Store, String),
        failure: DrillFailure,
        started: Instant,
        started_unix_ms: u64,
    ) -> Progress {
        Progress {
            started,
            started_unix_ms,
            timeline: Vec::new(),
            problems: Vec::new(),
            promoted: None,
            failover: None,
            verifications: Vec::new(),
            failback: None,
            injected_at: None,
            first_write_at: None,
            journal: Some(journal),
            failure,
            baseline: None,
            candidate: None,
        }
    }

    pub(super) fn event(&mut self, name: &'static str, detail: impl Into<String>) -> u64 {
        let at_ms = ms(self.started.elapsed());
        self.event_at(name, at_ms, detail);
        at_ms
    }

    pub(super) fn event_at(&mut self, name: &'static str, at_ms: u64, detail: impl Into<String>) {
        let detail = detail.into();
        tracing::info!(
            "drill: {name} at {at_ms} ms{}",
            if detail.is_empty() {
                String::new()
            } else {
                format!(": {detail}")
            }
        );
        // Durable before the drill goes on: a crash leaves the last stage it
        // reached, with what it knew, in the run's journal.
        if let Some((store, run_id)) = &self.journal {
            let observed = serde_json::json!({
                "stage": name,
                "at_ms": at_ms,
                "unix_ms": self.started_unix_ms + at_ms,
                "detail": detail,
                "promoted": self.promoted,
                "injected_at_ms": self.injected_at,
                "failure": self.failure,
                "baseline": self.baseline,
                "candidate": self.candidate,
            });
            let step = format!("{STAGE_PREFIX}{name}");
            let written = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(
                    store.record(
                        run_id,
                        crate::store::Event::new(crate::store::EventKind::Observation)
                            .phase("drill")
                            .step(&step)
                            .positions(&observed)
                            .message(&format!("drill stage {name}")),
                    ),
                )
            });
            if let Err(error) = written {
                tracing::warn!("could not journal drill stage {name}: {error}");
            }
        }
        self.timeline.push(Event {
            name,
            at_ms,
            detail,
        });
        crate::engine::recovery::drill_stage_reached(name);
    }

    /// Checksum `primary` against `replicas` as `stage`, and put it on the
    /// timeline as `event`.
    pub(super) async fn verified(
        &mut self,
        plan: &ValidatedPlan,
        (stage, event): (&'static str, &'static str),
        primary: &str,
        replicas: &[String],
    ) {
        let verification = verify(plan, stage, primary, replicas).await;
        self.event(event, format!("checksum {}", verification.status));
        self.verifications.push(verification);
    }

    pub(super) fn at(&self, instant: Instant) -> u64 {
        ms(instant.saturating_duration_since(self.started))
    }
}
