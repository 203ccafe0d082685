//! The drill's stages between the prechecks and the report: inject (planned or not), fail over, verify with checksums, fail back.

use super::*;

/// The plan with `primary` as the source and only `replicas` as enabled
/// targets: what a checksum compares after the roles moved.
pub fn with_roles(plan: &ValidatedPlan, primary: &str, replicas: &[String]) -> ValidatedPlan {
    let mut plan = plan.clone();
    for cluster in &mut plan.clusters {
        if cluster.name == primary {
            cluster.role = ClusterRole::Source;
            cluster.enabled = true;
        } else {
            cluster.role = ClusterRole::Target;
            cluster.enabled = replicas.contains(&cluster.name);
        }
    }
    plan
}

pub(super) async fn verify(
    plan: &ValidatedPlan,
    stage: &'static str,
    primary: &str,
    replicas: &[String],
) -> Verification {
    if replicas.is_empty() {
        return Verification {
            stage,
            primary: primary.to_string(),
            replicas: Vec::new(),
            status: "skipped".into(),
            rows_compared: 0,
            detail: Some(format!(
                "no cluster replicates from `{primary}` to compare it with"
            )),
        };
    }
    let derived = with_roles(plan, primary, replicas);
    let mut verification = Verification {
        stage,
        primary: primary.to_string(),
        replicas: replicas.to_vec(),
        status: "error".into(),
        rows_compared: 0,
        detail: None,
    };
    match checksum::run(&derived, &ChecksumOptions::new()).await {
        Ok(report) => {
            verification.status = match report.status {
                Verdict::Match => "match",
                Verdict::Mismatch => "mismatch",
                Verdict::Incomplete => "incomplete",
            }
            .into();
            verification.rows_compared = report.rows_compared;
            if report.status != Verdict::Match {
                verification.detail = Some(report.summary());
            }
        }
        Err(error) => verification.detail = Some(error.to_string()),
    }
    tracing::info!(
        "drill: checksum {stage}: {} ({} rows, {primary} against {})",
        verification.status,
        verification.rows_compared,
        replicas.join(", ")
    );
    verification
}

/// Everything between the prechecks and the report. Returns the probe's
/// report, its acknowledgements and their offset on the drill's clock; a
/// problem after injection is recorded in `progress`, not returned.
pub(super) async fn drive(
    ctx: &mut Context,
    drill: &Drill,
    failure: DrillFailure,
    progress: &mut Progress,
) -> Result<Option<(ProbeReport, Vec<Ack>, u64)>, DrillError> {
    let plan = ctx.plan.clone();
    let primary = plan
        .cluster(&drill.primary)
        .cloned()
        .ok_or_else(|| DrillError::Invalid(format!("no cluster `{}`", drill.primary)))?;

    // Prechecks: nothing is injected unless all pass.
    let baseline = {
        let (session, flavor) = ctx
            .session_and_flavor(&primary.name)
            .await
            .map_err(|e| DrillError::Precheck(e.to_string()))?;
        if control::read_only(session)
            .await
            .map_err(|e| DrillError::Precheck(e.to_string()))?
        {
            return Err(DrillError::Precheck(format!(
                "`{}` is read-only: it is not the primary this drill fails",
                primary.name
            )));
        }
        server::executed(session, flavor)
            .await
            .map_err(|e| DrillError::Precheck(e.to_string()))?
    };
    let (candidate, _) = failover::choose(ctx, &drill.dr, &primary, &baseline)
        .await
        .map_err(|e| DrillError::Precheck(e.to_string()))?;
    progress.baseline = Some(baseline.to_string());
    progress.candidate = Some(candidate.clone());
    progress.event(
        "prechecks",
        format!("`{}` is primary; `{candidate}` can take over", primary.name),
    );

    // The write probe, through the application's DNS name.
    let acks: Acks = Arc::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let probe_plan = (*plan).clone();
    let probe_options = ProbeOptions {
        duration: Duration::from_secs(30 * 60),
        rate: drill.probe_rate,
        watch_primaries: false,
        write_timeout: PROBE_WRITE_TIMEOUT,
        acks: Some(acks.clone()),
    };
    let probe_task = tokio::spawn(async move {
        probe::run(&probe_plan, &probe_options, async {
            let _ = stopped.await;
        })
        .await
    });
    let warm = Instant::now();
    // About a second of writes before the failure, for the chart's baseline.
    let baseline_writes = (drill.probe_rate as usize).clamp(5, 200);
    while acks.lock().expect("not poisoned").len() < baseline_writes {
        if probe_task.is_finished() || warm.elapsed() > Duration::from_secs(10) {
            let _ = stop.send(());
            let detail = match probe_task.await {
                Ok(Err(error)) => error.to_string(),
                _ => "no write was acknowledged within 10 s".into(),
            };
            return Err(DrillError::Precheck(format!(
                "the write probe cannot write through the application's name: {detail}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress.event("probe_started", format!("{} writes/s", drill.probe_rate));

    // Injection, detection and failover.
    let injected_index = acks.lock().expect("not poisoned").len();
    let injected_at = Instant::now();
    progress.injected_at = Some(progress.at(injected_at));
    let result = match failure {
        DrillFailure::Planned => planned(ctx, &candidate, progress, injected_at).await,
        DrillFailure::Crash | DrillFailure::Isolate => {
            unplanned(
                ctx,
                drill,
                failure,
                &primary,
                &baseline,
                progress,
                injected_at,
            )
            .await
        }
    };
    if let Err(error) = result {
        progress.problems.push(error.to_string());
    }

    // RTO: the first acknowledged write on the new primary.
    let port = plan.application.as_ref().map_or(primary.port, |a| a.port);
    let new_primary = match progress.promoted.as_deref().and_then(|p| plan.cluster(p)) {
        Some(cluster) => addresses_of(cluster, port).await,
        None => Vec::new(),
    };
    if let Some(promoted) = progress.promoted.clone() {
        let deadline = Instant::now() + FIRST_WRITE_LIMIT;
        loop {
            let found = first_write_on(
                &acks.lock().expect("not poisoned"),
                injected_index,
                &new_primary,
            );
            if found.is_some() {
                // A second of writes on the new primary, for the chart.
                tokio::time::sleep(Duration::from_secs(1)).await;
                break;
            }
            if Instant::now() >= deadline {
                progress.problems.push(format!(
                    "no write through the application's name reached `{promoted}` within {} s",
                    FIRST_WRITE_LIMIT.as_secs()
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let _ = stop.send(());
    let probe = match probe_task.await {
        Ok(Ok(report)) => Some(report),
        Ok(Err(error)) => {
            progress
                .problems
                .push(format!("the probe's read-back failed: {error}"));
            None
        }
        Err(error) => {
            progress
                .problems
                .push(format!("the probe stopped: {error}"));
            None
        }
    };
    let all_acks = acks.lock().expect("not poisoned").clone();
    let probe = probe.map(|report| {
        let offset = report
            .started_at_unix_ms
            .saturating_sub(progress.started_unix_ms);
        (report, all_acks, offset)
    });
    if let (Some((_, acks, offset)), Some(promoted)) = (&probe, progress.promoted.clone())
        && let Some(first) = first_write_on(acks, injected_index, &new_primary)
    {
        let at = first.at_ms + offset;
        progress.first_write_at = Some(at);
        progress.event_at(
            "first_write",
            at,
            format!("probe write {} on `{promoted}`", first.seq),
        );
    }

    // Verification, failback, verification.
    if let Some(promoted) = progress.promoted.clone() {
        let survivors: Vec<String> = progress
            .failover
            .as_ref()
            .map(|f| f.repointed.clone())
            .unwrap_or_else(|| {
                plan.enabled_clusters()
                    .map(|c| c.name.clone())
                    .filter(|name| *name != promoted)
                    .collect()
            });
        progress
            .verified(&plan, ("after_failover", "verified"), &promoted, &survivors)
            .await;
        if drill.rejoin {
            fail_back_and_verify(ctx, drill, failure, &primary.name, &promoted, progress).await;
        }
    }
    Ok(probe)
}

/// Rejoin the failed primary under the promoted one (and switch back, as the
/// plan asks), then checksum every cluster that carries the data.
pub(super) async fn fail_back_and_verify(
    ctx: &mut Context,
    drill: &Drill,
    failure: DrillFailure,
    failed: &str,
    promoted: &str,
    progress: &mut Progress,
) {
    progress.event("failback_started", "");
    ctx.drop_sessions().await;
    let report = failback::run(ctx, drill, failure, failed, promoted, progress).await;
    let broken = report.error.is_some();
    progress.failback = Some(report);
    let now = ctx.state.primary.clone();
    if !broken {
        progress.event("failback", format!("`{now}` is primary"));
    }
    // A failed primary that could not rejoin carries no data to compare.
    let replicas: Vec<String> = ctx
        .plan
        .enabled_clusters()
        .map(|c| c.name.clone())
        .filter(|name| *name != now && (!broken || name != failed))
        .collect();
    let plan = ctx.plan.clone();
    progress
        .verified(&plan, ("after_failback", "verified_again"), &now, &replicas)
        .await;
}

/// A planned drill: the graceful switchover to the chosen DR cluster.
pub(super) async fn planned(
    ctx: &mut Context,
    candidate: &str,
    progress: &mut Progress,
    injected_at: Instant,
) -> Result<(), DrillError> {
    progress.event_at(
        "injection",
        progress.at(injected_at),
        format!("planned switchover to `{candidate}`"),
    );
    let from = ctx.state.primary.clone();
    crate::engine::switchover(ctx, candidate, "drill").await?;
    // The steps journal when each finished: place promotion and DNS on the timeline.
    let events = ctx.store.events(&ctx.run_id).await.unwrap_or_default();
    for (suffix, name) in [(".promote", "promotion"), (".dns_switch", "dns_switch")] {
        let finished = events.iter().find(|e| {
            e["message"] == "ok"
                && e["step"]
                    .as_str()
                    .is_some_and(|step| step.starts_with("drill-to-") && step.ends_with(suffix))
        });
        if let Some(at) = finished
            .and_then(|e| e["at"].as_str())
            .and_then(|text| humantime::parse_rfc3339(text).ok())
        {
            let at_ms = unix_ms(at).saturating_sub(progress.started_unix_ms);
            progress.event_at(name, at_ms, format!("`{from}` → `{candidate}`"));
        }
    }
    progress.promoted = Some(candidate.to_string());
    Ok(())
}

/// A crash or isolation: inject through the hook, detect, fail over.
pub(super) async fn unplanned(
    ctx: &mut Context,
    drill: &Drill,
    failure: DrillFailure,
    primary: &crate::plan::Cluster,
    baseline: &GtidSet,
    progress: &mut Progress,
    injected_at: Instant,
) -> Result<(), DrillError> {
    ctx.step = "inject".into();
    let how = if failure == DrillFailure::Crash {
        "crash"
    } else {
        "isolate"
    };
    crate::steps::server_ops::hook::run(
        ctx,
        &drill.inject,
        drill.hook_timeout,
        Some(&primary.name),
    )
    .await?;
    progress.event_at(
        "injection",
        progress.at(injected_at),
        format!("{how} `{}`: {}", primary.name, drill.inject.join(" ")),
    );
    ctx.drop_sessions().await;
    let endpoint = Endpoint::for_cluster(primary)?;
    let Some(detected) = detect(endpoint, drill.detect_after, DETECTION_LIMIT).await else {
        return Err(DrillError::Failover(format!(
            "`{}` still answers {} s after the injection: `{}` did not fail it",
            primary.name,
            DETECTION_LIMIT.as_secs(),
            drill.inject.join(" ")
        )));
    };
    progress.event_at(
        "detection",
        progress.at(detected),
        format!(
            "`{}` unreachable for {} ms",
            primary.name,
            ms(drill.detect_after)
        ),
    );
    ctx.step = "failover".into();
    let outcome = failover::run(ctx, &drill.dr, primary, baseline).await?;
    if let Some(at) = outcome.promoted_at {
        progress.event_at(
            "promotion",
            progress.at(at),
            format!("`{}` promoted", outcome.promoted),
        );
    }
    if let Some(at) = outcome.dns_switched_at {
        progress.event_at(
            "dns_switch",
            progress.at(at),
            format!("record points at `{}`", outcome.promoted),
        );
    }
    progress.promoted = Some(outcome.promoted.clone());
    progress.failover = Some(outcome);
    Ok(())
}
