//! What a rollback or resume starts from after a crash: the freshest state in
//! the journal, checked against the live servers and DNS (a crash between an
//! action and its journal entry leaves the journal one step behind), and the
//! test-only kill switch that proves it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::dns;
use crate::mysql::{Session, control, scope, server};
use crate::steps::context::{Context, SwitchState};
use crate::store::{Event, EventKind, Store, StoreError};

/// Test-only: SIGKILL this process when it is about to start its N-th step
/// (counted from 1 across the process: a run's steps, a rollback's reverse
/// switchover steps). Lets tests crash the orchestrator at every step
/// boundary; never set it in production.
pub const KILL_AT_STEP_ENV: &str = "CUTOVER_TEST_KILL_AT_STEP";

static STARTED_STEPS: AtomicU64 = AtomicU64::new(0);

/// Count a step about to start; die here if the test asked for it.
pub fn step_starting() {
    let started = STARTED_STEPS.fetch_add(1, Ordering::SeqCst) + 1;
    let kill_at: Option<u64> = std::env::var(KILL_AT_STEP_ENV)
        .ok()
        .and_then(|v| v.parse().ok());
    if kill_at == Some(started) {
        tracing::warn!("{KILL_AT_STEP_ENV}={started}: killing this process (test only)");
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    }
}

/// The newest switchover state any event of the run journaled: a step's
/// intent or result, or a rollback step's.
pub async fn last_journaled_state(
    store: &Store,
    run_id: &str,
) -> Result<Option<SwitchState>, StoreError> {
    Ok(store.events(run_id).await?.iter().rev().find_map(|event| {
        serde_json::from_value::<SwitchState>(event["positions"].get("state")?.clone()).ok()
    }))
}

/// The primary when `phase` began: the state journaled with the intent of its
/// first step. A rollback of the phase goes back to it.
pub async fn phase_start_primary(
    store: &Store,
    run_id: &str,
    phase: &str,
) -> Result<Option<String>, StoreError> {
    Ok(store.events(run_id).await?.iter().find_map(|event| {
        (event["kind"] == EventKind::Intent.as_str() && event["phase"] == phase)
            .then(|| {
                event["positions"]["state"]["primary"]
                    .as_str()
                    .map(String::from)
            })
            .flatten()
    }))
}

/// The phase a rollback of this run was taking the run back to, if one began
/// and did not finish (its process died, or a step failed).
pub async fn unfinished_rollback(
    store: &Store,
    run_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(store.events(run_id).await?.iter().rev().find_map(|event| {
        let message = event["message"].as_str()?;
        let phase = message.strip_prefix(ROLLBACK_NOTE)?;
        Some(phase.trim_matches('`').to_string())
    }))
}

/// The journal note a rollback starts with, followed by the phase in backticks.
pub const ROLLBACK_NOTE: &str = "rollback to the start of phase ";

/// Correct the journaled state with what the servers and DNS say now: the one
/// writable cluster is the primary; the DNS record names what it names. Logs
/// and journals every correction.
pub async fn reconcile_with_live(ctx: &mut Context) {
    let mut writable = Vec::new();
    let names: Vec<String> = ctx
        .plan
        .enabled_clusters()
        .map(|c| c.name.clone())
        .collect();
    for name in &names {
        let Ok(endpoint) = ctx.endpoint(name).cloned() else {
            continue;
        };
        let Ok(Ok(mut session)) =
            tokio::time::timeout(Duration::from_secs(3), Session::connect(&endpoint)).await
        else {
            continue;
        };
        if let Ok(false) = control::read_only(&mut session).await {
            // A scoped source stays writable; its fenced databases say.
            let fenced = match ctx.plan.fence_scope(name) {
                Some(databases) => match server::flavor(&mut session).await {
                    Ok(flavor) => scope::any_fenced(&mut session, flavor, &databases)
                        .await
                        .unwrap_or(false),
                    Err(_) => false,
                },
                None => false,
            };
            if !fenced {
                writable.push(name.clone());
            }
        }
        session.close().await;
    }
    let mut corrections = Vec::new();
    if let [live] = writable.as_slice()
        && *live != ctx.state.primary
    {
        corrections.push(format!(
            "`{live}` is the writable primary (the journal said `{}`)",
            ctx.state.primary
        ));
        ctx.state.previous_primary = Some(ctx.state.primary.clone());
        ctx.state.primary = live.clone();
    }
    if let Some(config) = ctx.plan.dns.clone()
        && let Some(server) = config.authoritative.first()
        && let Ok(answer) = dns::query_authoritative(
            *server,
            &config.record,
            config.record_type.into(),
            Duration::from_millis(1500),
        )
        .await
        && let [value] = answer.values.as_slice()
        && let Some((cluster, _)) = config
            .values
            .iter()
            .find(|(_, expected)| dns::same_value(value, expected))
        && *cluster != ctx.state.dns_points_to
    {
        corrections.push(format!(
            "DNS names `{cluster}` (the journal said `{}`)",
            ctx.state.dns_points_to
        ));
        ctx.state.dns_points_to = cluster.clone();
    }
    if !corrections.is_empty() {
        let message = format!(
            "the servers are ahead of the journal: {}",
            corrections.join("; ")
        );
        tracing::warn!("{message}");
        let positions = serde_json::json!({ "state": ctx.state });
        ctx.store
            .record_best_effort(
                &ctx.run_id,
                Event::new(EventKind::Note)
                    .phase(&ctx.phase)
                    .positions(&positions)
                    .message(&message),
            )
            .await;
    }
}

/// Test-only: SIGKILL a drill when it reaches the named stage of its
/// timeline, e.g. `promotion`; never set it in production.
pub const KILL_AT_DRILL_STAGE_ENV: &str = "CUTOVER_TEST_KILL_AT_DRILL_STAGE";

/// Die here if the test asked for it at this drill stage.
pub fn drill_stage_reached(stage: &str) {
    if std::env::var(KILL_AT_DRILL_STAGE_ENV).is_ok_and(|wanted| wanted == stage) {
        tracing::warn!("{KILL_AT_DRILL_STAGE_ENV}={stage}: killing this process (test only)");
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    }
}

/// What the servers and DNS say now, against a journaled state: `Ok` with
/// what was checked, or `Err` with every way they differ. Read-only.
pub async fn check_live(
    plan: &crate::plan::ValidatedPlan,
    journal: &SwitchState,
) -> Result<String, Vec<String>> {
    let mut differences = Vec::new();
    let topology = match crate::topology::discover(plan).await {
        Ok(topology) => topology,
        Err(error) => return Err(vec![error.to_string()]),
    };
    let writable: Vec<&str> = topology
        .clusters
        .iter()
        .filter(|view| view.takes_writes())
        .map(|view| view.name.as_str())
        .collect();
    if writable != [journal.primary.as_str()] {
        differences.push(format!(
            "writable: {} (the journal says `{}` is primary)",
            if writable.is_empty() {
                "none".to_string()
            } else {
                writable.join(", ")
            },
            journal.primary
        ));
    }
    for view in &topology.clusters {
        if view.name == journal.primary {
            if !view.reachable {
                differences.push(format!(
                    "`{}` (the journaled primary) does not answer",
                    view.name
                ));
            }
            continue;
        }
        let following = view.replicating_from.as_deref() == Some(journal.primary.as_str())
            && view.replication.as_ref().is_some_and(|r| {
                r.io_thread == crate::mysql::server::ThreadState::Running
                    && r.sql_thread == crate::mysql::server::ThreadState::Running
            });
        if !view.reachable {
            differences.push(format!("`{}` does not answer", view.name));
        } else if !following {
            differences.push(format!(
                "`{}` does not replicate from `{}` (it follows {})",
                view.name,
                journal.primary,
                view.replicating_from.as_deref().unwrap_or("nobody")
            ));
        }
    }
    if let Some(config) = &plan.dns {
        let expected = config
            .values
            .get(&journal.dns_points_to)
            .cloned()
            .unwrap_or_default();
        for server in &config.authoritative {
            match dns::query_authoritative(
                *server,
                &config.record,
                config.record_type.into(),
                Duration::from_millis(1500),
            )
            .await
            {
                Ok(answer)
                    if answer.values.len() == 1
                        && dns::same_value(&answer.values[0], &expected) => {}
                Ok(answer) => differences.push(format!(
                    "DNS at {server} answers {:?} (the journal says {expected})",
                    answer.values
                )),
                Err(error) => differences.push(format!("DNS at {server}: {error}")),
            }
        }
    }
    if differences.is_empty() {
        Ok(format!(
            "checked: `{}` is the one writable cluster, every other follows it, DNS names it on every authoritative server",
            journal.primary
        ))
    } else {
        Err(differences)
    }
}
