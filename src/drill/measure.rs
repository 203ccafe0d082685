//! RTO and RPO from the write probe's acknowledgements: when the failed primary stopped answering, the first write on the new one, what was lost, the write rate; the verdict from all of it.

use super::*;

/// Poll the failed primary until it has not answered for `after`; returns when
/// that was established, or `None` if it kept answering for `limit`.
pub(super) async fn detect(
    mut endpoint: Endpoint,
    after: Duration,
    limit: Duration,
) -> Option<Instant> {
    endpoint.connect_timeout = Duration::from_millis(300);
    endpoint.query_timeout = Duration::from_millis(300);
    let deadline = Instant::now() + limit;
    let mut failing_since: Option<Instant> = None;
    loop {
        let answered = match Session::connect(&endpoint).await {
            Ok(mut session) => {
                let ok = session.exec("health check", "SELECT 1").await.is_ok();
                session.close().await;
                ok
            }
            Err(_) => false,
        };
        let now = Instant::now();
        if answered {
            failing_since = None;
        } else {
            let since = *failing_since.get_or_insert(now);
            if now.duration_since(since) >= after {
                return Some(now);
            }
        }
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first acknowledged write after `from_index` that one of `servers` took.
pub(super) fn first_write_on(acks: &[Ack], from_index: usize, servers: &[String]) -> Option<Ack> {
    acks.iter()
        .skip(from_index)
        .find(|ack| servers.contains(&ack.server))
        .cloned()
}

/// Every `ip:port` the application's name can resolve to when it points at
/// `cluster` (a host name is looked up; the probe records addresses).
pub(super) async fn addresses_of(cluster: &crate::plan::Cluster, port: u16) -> Vec<String> {
    if let Ok(ip) = cluster.host.parse::<std::net::IpAddr>() {
        return vec![std::net::SocketAddr::new(ip, port).to_string()];
    }
    let lookup = tokio::net::lookup_host((cluster.host.as_str(), port));
    match tokio::time::timeout(Duration::from_secs(5), lookup).await {
        Ok(Ok(found)) => found.map(|address| address.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Acknowledged writes per bin, from the first to the last.
pub fn write_rate(acks: &[Ack], offset_ms: u64, until_ms: u64) -> Vec<RateBin> {
    let bins = until_ms / RATE_BIN_MS + 1;
    let mut counts = vec![0u64; bins as usize];
    for ack in acks {
        let at = ack.at_ms + offset_ms;
        if let Some(bin) = counts.get_mut((at / RATE_BIN_MS) as usize) {
            *bin += 1;
        }
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, writes)| RateBin {
            at_ms: i as u64 * RATE_BIN_MS,
            writes,
        })
        .collect()
}

/// Measurements and verdict from what the drill saw.
pub(super) fn assemble(
    plan: &ValidatedPlan,
    drill: &Drill,
    failure: DrillFailure,
    drill_id: String,
    started_at: String,
    progress: Progress,
    probe: Option<(ProbeReport, Vec<Ack>, u64)>,
) -> DrillReport {
    let mut problems = progress.problems;
    let promoted_cluster = progress.promoted.as_deref().and_then(|p| plan.cluster(p));
    let failed_cluster = plan.cluster(&drill.primary);
    let rto_target = drill
        .rto
        .or_else(|| failed_cluster.and_then(|c| c.rto))
        .or_else(|| promoted_cluster.and_then(|c| c.rto));
    let rpo_target = drill
        .rpo
        .or_else(|| failed_cluster.and_then(|c| c.rpo))
        .or_else(|| promoted_cluster.and_then(|c| c.rpo));
    let rto_measured = match (progress.injected_at, progress.first_write_at) {
        (Some(injected), Some(first)) => Some(first.saturating_sub(injected)),
        _ => None,
    };
    let rto = Objective {
        measured_ms: rto_measured,
        target_ms: rto_target.map(ms),
        met: rto_measured.zip(rto_target).map(|(m, t)| m <= ms(t)),
    };
    let (mut rpo, write_rate, probe_summary) = match &probe {
        Some((report, acks, offset)) => {
            let lost_at: Vec<u64> = report
                .lost_sequences
                .iter()
                .filter_map(|seq| acks.iter().find(|a| a.seq == *seq))
                .map(|a| a.at_ms + offset)
                .collect();
            let first = lost_at.iter().min().copied();
            let last = lost_at.iter().max().copied();
            let injected = progress.injected_at.unwrap_or(0);
            let until = progress
                .timeline
                .iter()
                .map(|e| e.at_ms)
                .max()
                .unwrap_or(0)
                .max(report.elapsed_ms + offset);
            (
                Rpo {
                    lost_writes: report.lost,
                    lost_sequences: report.lost_sequences.clone(),
                    first_lost_at_ms: first,
                    last_lost_at_ms: last,
                    measured_ms: first.map_or(0, |f| injected.saturating_sub(f).max(1)),
                    target_ms: None,
                    met: None,
                },
                write_rate(acks, *offset, until),
                Some(ProbeSummary {
                    probe_id: report.probe_id.clone(),
                    rate: drill.probe_rate,
                    attempted: report.attempted,
                    acknowledged: report.acknowledged,
                    lost: report.lost,
                    duplicates: report.duplicates,
                    failed_attempts: report.failed_attempts,
                    max_unavailable_ms: report.max_unavailable_ms,
                    read_back_from: report.read_back_from.clone(),
                }),
            )
        }
        None => (
            Rpo {
                lost_writes: 0,
                lost_sequences: Vec::new(),
                first_lost_at_ms: None,
                last_lost_at_ms: None,
                measured_ms: 0,
                target_ms: None,
                met: None,
            },
            Vec::new(),
            None,
        ),
    };
    rpo.target_ms = rpo_target.map(ms);
    if probe.is_some() {
        rpo.met = rpo_target.map(|t| {
            if t.is_zero() {
                rpo.lost_writes == 0
            } else {
                rpo.measured_ms <= ms(t)
            }
        });
    }
    if let Some((report, _, _)) = &probe
        && report.duplicates > 0
    {
        problems.push(format!(
            "{} probe write(s) are present twice on the new primary",
            report.duplicates
        ));
    }
    let verified = !progress.verifications.is_empty()
        && progress
            .verifications
            .iter()
            .all(|v| v.status == "match" || v.status == "skipped");
    let failback_ok = progress.failback.as_ref().is_none_or(|f| f.error.is_none());
    let status = if !problems.is_empty() || !verified || !failback_ok || rto.measured_ms.is_none() {
        "failed"
    } else if rto.met == Some(false) || rpo.met == Some(false) {
        "missed"
    } else {
        "passed"
    };
    let elapsed_ms = ms(progress.started.elapsed());
    let mut timeline = progress.timeline;
    timeline.sort_by_key(|event| event.at_ms);
    DrillReport {
        drill_id,
        plan: plan.name.clone(),
        failure,
        primary: drill.primary.clone(),
        promoted: progress.promoted,
        status,
        started_at,
        elapsed_ms,
        rto,
        rpo,
        timeline,
        write_rate,
        probe: probe_summary,
        failover: progress.failover,
        verifications: progress.verifications,
        failback: progress.failback,
        problems,
        interrupted: None,
        reports: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_fall_into_quarter_second_bins_on_the_drill_clock() {
        let acks: Vec<Ack> = [10, 240, 260, 900]
            .iter()
            .enumerate()
            .map(|(i, at)| Ack {
                seq: i as u64 + 1,
                at_ms: *at,
                server: "x".into(),
            })
            .collect();
        let bins = write_rate(&acks, 100, 1_000);
        let counts: Vec<u64> = bins.iter().map(|b| b.writes).collect();
        assert_eq!(counts, vec![1, 2, 0, 0, 1]);
        assert_eq!(bins[1].at_ms, 250);
    }

    #[test]
    fn the_first_write_after_the_injection_on_the_new_primary_is_found() {
        let ack = |seq, server: &str| Ack {
            seq,
            at_ms: seq * 10,
            server: server.into(),
        };
        let acks = vec![
            ack(1, "127.0.0.11:1"),
            ack(2, "127.0.0.10:1"),
            ack(3, "127.0.0.11:1"),
        ];
        let c1 = ["127.0.0.11:1".to_string()];
        assert_eq!(first_write_on(&acks, 1, &c1).unwrap().seq, 3);
        assert!(first_write_on(&acks, 3, &c1).is_none());
    }
}
