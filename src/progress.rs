//! Progress of long copies and comparisons: bars per table and overall on a
//! terminal (rows, rows/s, ETA, and bytes when they are counted), a log line
//! every few seconds otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

const LOG_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    bars: Option<(MultiProgress, ProgressBar, Vec<ProgressBar>)>,
    names: Vec<String>,
    what: &'static str,
    /// (started, last log line, rows, bytes)
    log: Mutex<(Instant, Instant, u64, u64)>,
}

impl Progress {
    /// `tables`: name and estimated rows. `what` names the work in log lines.
    pub fn new(tables: &[(String, u64)], enabled: bool, what: &'static str) -> Progress {
        let names: Vec<String> = tables.iter().map(|(name, _)| name.clone()).collect();
        let bars = (enabled && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{msg:32} {bar:24} {human_pos:>10}/{human_len:10} rows {per_sec:>14} {eta:>4} {prefix}",
            )
            .expect("valid template");
            let total_rows: u64 = tables.iter().map(|(_, rows)| rows).sum();
            let overall = multi.add(ProgressBar::new(total_rows.max(1)));
            overall.set_style(style.clone());
            overall.set_message("all tables");
            let per_table = tables
                .iter()
                .map(|(name, rows)| {
                    let bar = multi.add(ProgressBar::new((*rows).max(1)));
                    bar.set_style(style.clone());
                    bar.set_message(name.clone());
                    bar
                })
                .collect();
            (multi, overall, per_table)
        });
        let now = Instant::now();
        Progress {
            bars,
            names,
            what,
            log: Mutex::new((now, now, 0, 0)),
        }
    }

    pub fn advance(&self, table: usize, rows: u64, bytes: u64) {
        let mut log = self.log.lock().expect("not poisoned");
        log.2 += rows;
        log.3 += bytes;
        if let Some((_, overall, per_table)) = &self.bars {
            for bar in [overall, &per_table[table]] {
                bar.inc(rows);
                // Estimates can be low; never show more done than the whole.
                if bar.position() > bar.length().unwrap_or(0) {
                    bar.set_length(bar.position());
                }
            }
            if log.3 > 0 {
                overall.set_prefix(indicatif::HumanBytes(log.3).to_string());
            }
            return;
        }
        if log.1.elapsed() >= LOG_EVERY {
            let seconds = log.0.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                rows = log.2,
                bytes = log.3,
                rows_per_second = (log.2 as f64 / seconds) as u64,
                "{} in progress (now on {})",
                self.what,
                self.names[table]
            );
            log.1 = Instant::now();
        }
    }

    pub fn finish(&self) {
        if let Some((multi, overall, per_table)) = &self.bars {
            for bar in per_table.iter().chain([overall]) {
                bar.finish_and_clear();
            }
            let _ = multi.clear();
        }
    }
}

/// A bounded wait (a lag gate, replication catching up): a spinner with the
/// latest status and the time left on a terminal, a log line every few
/// seconds otherwise.
pub struct Waiting {
    bar: Option<ProgressBar>,
    what: String,
    limit: Duration,
    started: Instant,
    last_log: Mutex<Instant>,
}

impl Waiting {
    pub fn start(what: impl Into<String>, limit: Duration) -> Waiting {
        let what = what.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4} {msg}")
                    .expect("valid template"),
            );
            bar.set_prefix(what.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Waiting {
            bar,
            what,
            limit,
            started: now,
            last_log: Mutex::new(now),
        }
    }

    /// The latest status, e.g. which target is behind and by how much.
    pub fn update(&self, status: &str) {
        let left = self.limit.saturating_sub(self.started.elapsed());
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{status} (gives up in {} s)", left.as_secs()));
            return;
        }
        let mut last = self.last_log.lock().expect("not poisoned");
        if last.elapsed() >= LOG_EVERY {
            tracing::info!(
                waited_s = self.started.elapsed().as_secs(),
                gives_up_in_s = left.as_secs(),
                "{}: {status}",
                self.what
            );
            *last = Instant::now();
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
