//! `--stats`: where a checksum's time went, to tune it and to compare its
//! cost per row with other tools'. Measured on this side of the wire: a
//! cluster's first-pass time is its hash plus the round trip.

use std::time::Duration;

use serde::Serialize;

use super::compare::Shared;

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Connections, schema reading and shape checks, and the consistent point.
    pub setup_ms: u64,
    /// From the first chunk handed out to the last result.
    pub compare_ms: u64,
    /// Walking the source's key to cut chunks (overlaps the comparing).
    pub key_walk_ms: u64,
    pub chunks: u64,
    pub rows: u64,
    pub workers: usize,
    /// Worker time with no chunk in hand, over all workers.
    pub worker_idle_ms: u64,
    /// The whole run per source row, in nanoseconds.
    pub ns_per_row: u64,
    /// The first pass per source row on each cluster (its hash plus the
    /// round trip, summed over chunks), in nanoseconds.
    pub clusters: Vec<ClusterStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStats {
    pub cluster: String,
    /// Its first-pass queries, summed.
    pub first_pass_ms: u64,
    /// Per chunk, how long it had finished before the slowest cluster, summed:
    /// time its session sat idle waiting for the others.
    pub waiting_ms: u64,
    pub first_pass_ns_per_row: u64,
}

/// Adds up the chunks as they finish.
#[derive(Debug, Default)]
pub struct Collector {
    chunks: u64,
    rows: u64,
    busy: Duration,
    first_pass: Vec<Duration>,
    waiting: Vec<Duration>,
}

impl Collector {
    pub fn new(participants: usize) -> Collector {
        Collector {
            first_pass: vec![Duration::ZERO; participants],
            waiting: vec![Duration::ZERO; participants],
            ..Collector::default()
        }
    }

    /// One chunk: its source rows, how long the worker held it, and each
    /// participant's first-pass time (`None`: not compared).
    pub fn chunk(&mut self, rows: u64, held: Duration, timings: &[Option<Duration>]) {
        self.chunks += 1;
        self.rows += rows;
        self.busy += held;
        let slowest = timings.iter().flatten().max().copied().unwrap_or_default();
        for (p, timing) in timings.iter().enumerate() {
            if let Some(took) = timing {
                self.first_pass[p] += *took;
                self.waiting[p] += slowest.saturating_sub(*took);
            }
        }
    }

    pub fn finish(
        self,
        shared: &Shared,
        setup: Duration,
        compare: Duration,
        key_walk: Duration,
        workers: usize,
        total: Duration,
    ) -> Stats {
        let per_row = |d: Duration| {
            u64::try_from(d.as_nanos() / u128::from(self.rows.max(1))).unwrap_or(u64::MAX)
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut clusters: Vec<ClusterStats> = Vec::new();
        for (p, participant) in shared.participants.iter().enumerate() {
            if self.first_pass[p].is_zero() {
                continue;
            }
            // The source can take part twice (at the point and live): one line.
            if let Some(line) = clusters
                .iter_mut()
                .find(|c| c.cluster == participant.cluster)
            {
                line.first_pass_ms += ms(self.first_pass[p]);
                line.waiting_ms += ms(self.waiting[p]);
                continue;
            }
            clusters.push(ClusterStats {
                cluster: participant.cluster.clone(),
                first_pass_ms: ms(self.first_pass[p]),
                waiting_ms: ms(self.waiting[p]),
                first_pass_ns_per_row: per_row(self.first_pass[p]),
            });
        }
        let capacity = compare * u32::try_from(workers).unwrap_or(u32::MAX);
        Stats {
            setup_ms: ms(setup),
            compare_ms: ms(compare),
            key_walk_ms: ms(key_walk),
            chunks: self.chunks,
            rows: self.rows,
            workers,
            worker_idle_ms: ms(capacity.saturating_sub(self.busy)),
            ns_per_row: per_row(total),
            clusters,
        }
    }
}

/// The human form: one line for the run, one per cluster.
pub fn render(stats: &Stats) -> String {
    let mut out = format!(
        "stats: setup {} ms, compare {} ms ({} chunks, {} workers, {} ms idle), key walk {} ms, {} ns per row\n",
        stats.setup_ms,
        stats.compare_ms,
        stats.chunks,
        stats.workers,
        stats.worker_idle_ms,
        stats.key_walk_ms,
        stats.ns_per_row
    );
    for cluster in &stats.clusters {
        out.push_str(&format!(
            "  {}: first pass {} ms ({} ns per row), waited {} ms for the slowest\n",
            cluster.cluster,
            cluster.first_pass_ms,
            cluster.first_pass_ns_per_row,
            cluster.waiting_ms
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_is_the_gap_to_the_slowest_cluster() {
        let mut collector = Collector::new(3);
        let ms = Duration::from_millis;
        collector.chunk(100, ms(50), &[Some(ms(40)), Some(ms(50)), None]);
        collector.chunk(100, ms(30), &[Some(ms(30)), Some(ms(10)), None]);
        assert_eq!(collector.first_pass, [ms(70), ms(60), ms(0)]);
        assert_eq!(collector.waiting, [ms(10), ms(20), ms(0)]);
        assert_eq!(collector.busy, ms(80));
        assert_eq!((collector.chunks, collector.rows), (2, 200));
    }
}
