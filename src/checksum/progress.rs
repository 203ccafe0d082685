//! Rows per second per table and overall: bars on a terminal, a log line
//! every few seconds otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::schema::TableSpec;

const LOG_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    bars: Option<(MultiProgress, ProgressBar, Vec<ProgressBar>)>,
    names: Vec<String>,
    log: Mutex<(Instant, Instant, u64)>,
}

impl Progress {
    pub fn new(tables: &[TableSpec], enabled: bool) -> Progress {
        let names: Vec<String> = tables.iter().map(TableSpec::display_name).collect();
        let bars = (enabled && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{msg:32} {bar:24} {human_pos:>10}/{human_len:10} rows {per_sec:>14} {eta:>4}",
            )
            .expect("valid template");
            let total_rows: u64 = tables.iter().map(|t| t.estimated_rows).sum();
            let overall = multi.add(ProgressBar::new(total_rows.max(1)));
            overall.set_style(style.clone());
            overall.set_message("all tables");
            let per_table = tables
                .iter()
                .map(|table| {
                    let bar = multi.add(ProgressBar::new(table.estimated_rows.max(1)));
                    bar.set_style(style.clone());
                    bar.set_message(table.display_name());
                    bar
                })
                .collect();
            (multi, overall, per_table)
        });
        let now = Instant::now();
        Progress {
            bars,
            names,
            log: Mutex::new((now, now, 0)),
        }
    }

    pub fn advance(&self, table: usize, rows: u64) {
        if let Some((_, overall, per_table)) = &self.bars {
            for bar in [overall, &per_table[table]] {
                bar.inc(rows);
                // Estimates can be low; never show more done than the whole.
                if bar.position() > bar.length().unwrap_or(0) {
                    bar.set_length(bar.position());
                }
            }
            return;
        }
        let mut log = self.log.lock().expect("not poisoned");
        log.2 += rows;
        if log.1.elapsed() >= LOG_EVERY {
            let seconds = log.0.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                rows = log.2,
                rows_per_second = (log.2 as f64 / seconds) as u64,
                "checksum in progress (now on {})",
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
