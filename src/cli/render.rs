//! Plain-text tables for human output.

pub use crate::text::table;

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn yes_no(value: Option<bool>) -> String {
    or_dash(value.map(|v| if v { "yes" } else { "no" }))
}

/// `cutover topology`: one line per cluster, then what needs attention.
pub fn topology(topology: &crate::topology::Topology) -> String {
    use crate::mysql::server::ThreadState;
    let thread = |state: ThreadState| match state {
        ThreadState::Running => "yes",
        ThreadState::Connecting => "connecting",
        ThreadState::Stopped => "no",
    };
    let rows: Vec<Vec<String>> = topology
        .clusters
        .iter()
        .map(|view| {
            if !view.reachable {
                return vec![
                    view.name.clone(),
                    view.address.clone(),
                    "unreachable".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ];
            }
            vec![
                view.name.clone(),
                view.address.clone(),
                or_dash(view.role.map(|role| role.as_str())),
                view.replicating_from
                    .clone()
                    .or_else(|| view.source_address.clone())
                    .unwrap_or_else(|| "-".into()),
                yes_no(view.read_only),
                view.replication.as_ref().map_or_else(
                    || "-".into(),
                    |r| format!("{}/{}", thread(r.io_thread), thread(r.sql_thread)),
                ),
                or_dash(view.clock_offset_ms.map(|ms| format!("{ms:+.1} ms"))),
                or_dash(view.version.as_ref()),
                view.gtid_position.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "CLUSTER", "ADDRESS", "ROLE", "SOURCE", "RO", "IO/SQL", "CLOCK", "VERSION", "GTID",
        ],
        &rows,
    );
    let mut notes = Vec::new();
    for view in &topology.clusters {
        if let Some(error) = &view.error {
            notes.push(format!("{}: unreachable: {error}", view.name));
        }
        if let Some(errant) = &view.errant_gtids {
            notes.push(format!(
                "{}: errant transactions (not on its source {}): {errant}",
                view.name,
                view.replicating_from.as_deref().unwrap_or("?")
            ));
        }
        if let Some(replication) = &view.replication {
            for (thread, error) in [
                ("IO", &replication.last_io_error),
                ("SQL", &replication.last_sql_error),
            ] {
                if let Some(error) = error {
                    notes.push(format!(
                        "{}: replication {thread} error: {error}",
                        view.name
                    ));
                }
            }
        }
        if view.clock_skew_warning {
            notes.push(format!(
                "{}: clock is {:+.0} ms off this host (information only: lag does not use server clocks)",
                view.name,
                view.clock_offset_ms.unwrap_or_default()
            ));
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        for note in notes {
            out.push_str(&note);
            out.push('\n');
        }
    }
    out
}

/// `cutover lag`: one line per target.
pub fn lag(samples: &[crate::lag::LagSample]) -> String {
    let rows: Vec<Vec<String>> = samples
        .iter()
        .map(|sample| {
            vec![
                sample.name.clone(),
                or_dash(sample.lag_ms.map(|ms| format!("{ms:.1}"))),
                or_dash(sample.transactions_behind),
                or_dash(sample.timestamp_lag_ms.map(|ms| format!("{ms:.0}"))),
                or_dash(sample.seconds_behind_source),
                sample.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "TARGET",
            "LAG_MS",
            "BEHIND",
            "CLOCK_LAG_MS",
            "SBM_S",
            "NOTE",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn columns_line_up() {
        let text = table(
            &["NAME", "STATUS"],
            &[
                vec!["legacy".into(), "up".into()],
                vec!["c1".into(), "down".into()],
            ],
        );
        assert_eq!(text, "NAME    STATUS\nlegacy  up\nc1      down\n");
    }
}
