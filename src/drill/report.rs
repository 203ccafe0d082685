//! A drill's reports: JSON (the document `--output json` prints), markdown,
//! and a self-contained HTML page with an SVG timeline of the events over the
//! probe's write rate.

use std::fmt::Write as _;
use std::path::Path;

use super::{DrillError, DrillReport, RATE_BIN_MS};

/// Write `drill.json`, `drill.md` and `drill.html` into `dir/<drill id>/`
/// and list them in the report.
pub fn write_all(report: &mut DrillReport, dir: &Path) -> Result<(), DrillError> {
    let folder = dir.join(&report.drill_id);
    let failed = |path: &Path, error: std::io::Error| DrillError::Report {
        path: path.display().to_string(),
        reason: error.to_string(),
    };
    std::fs::create_dir_all(&folder).map_err(|e| failed(&folder, e))?;
    let files = ["drill.json", "drill.md", "drill.html"].map(|name| folder.join(name));
    report.reports = files.iter().map(|p| p.display().to_string()).collect();
    let json = serde_json::to_string_pretty(report).expect("a report serialises");
    for (path, text) in files.iter().zip([json, markdown(report), html(report)]) {
        std::fs::write(path, text).map_err(|e| failed(path, e))?;
    }
    Ok(())
}

fn objective(measured: Option<u64>, target: Option<u64>, met: Option<bool>) -> String {
    let measured = measured.map_or("not measured".to_string(), |m| format!("{m} ms"));
    match (target, met) {
        (Some(t), Some(true)) => format!("{measured} (target {t} ms: met)"),
        (Some(t), Some(false)) => format!("{measured} (target {t} ms: **missed**)"),
        (Some(t), None) => format!("{measured} (target {t} ms)"),
        (None, _) => format!("{measured} (no target)"),
    }
}

pub fn markdown(report: &DrillReport) -> String {
    let mut out = String::new();
    let failure = serde_json::to_value(report.failure)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let _ = writeln!(out, "# Drill {} — {}\n", report.drill_id, report.status);
    let _ = writeln!(
        out,
        "Plan `{}`, a `{failure}` of `{}`{}, started {} and took {} ms.\n",
        report.plan,
        report.primary,
        report
            .promoted
            .as_ref()
            .map_or(String::new(), |p| format!(", taken over by `{p}`")),
        report.started_at,
        report.elapsed_ms
    );
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(
        out,
        "| RTO | {} |",
        objective(report.rto.measured_ms, report.rto.target_ms, report.rto.met)
    );
    let _ = writeln!(
        out,
        "| RPO | {} lost write(s); {} |",
        report.rpo.lost_writes,
        objective(
            Some(report.rpo.measured_ms),
            report.rpo.target_ms,
            report.rpo.met
        )
    );
    if !report.rpo.lost_sequences.is_empty() {
        let _ = writeln!(
            out,
            "| Lost probe writes | sequences {:?}, acknowledged from {} ms to {} ms |",
            report.rpo.lost_sequences,
            report.rpo.first_lost_at_ms.unwrap_or(0),
            report.rpo.last_lost_at_ms.unwrap_or(0)
        );
    }
    if let Some(probe) = &report.probe {
        let _ = writeln!(
            out,
            "| Probe | {} writes/s: {} attempted, {} acknowledged, {} lost, {} duplicated; longest gap {} ms; read back from {} |",
            probe.rate,
            probe.attempted,
            probe.acknowledged,
            probe.lost,
            probe.duplicates,
            probe.max_unavailable_ms,
            probe.read_back_from
        );
    }
    let _ = writeln!(
        out,
        "\n## Timeline\n\n| at (ms) | event | detail |\n|---:|---|---|"
    );
    for event in &report.timeline {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            event.at_ms, event.name, event.detail
        );
    }
    if let Some(failover) = &report.failover {
        let _ = writeln!(
            out,
            "\n## Failover\n\n| cluster | healthy | transactions | errant GTIDs | problem |\n|---|---|---:|---|---|"
        );
        for c in &failover.candidates {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                c.cluster,
                c.healthy,
                c.transactions,
                c.errant_gtids.as_deref().unwrap_or("none"),
                c.problem.as_deref().unwrap_or("")
            );
        }
    }
    let _ = writeln!(
        out,
        "\n## Verification\n\n| stage | primary | replicas | checksum | rows |\n|---|---|---|---|---:|"
    );
    for v in &report.verifications {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            v.stage,
            v.primary,
            v.replicas.join(", "),
            v.status,
            v.rows_compared
        );
    }
    if let Some(failback) = &report.failback {
        let _ = writeln!(
            out,
            "\n## Failback\n\n`{}`: rejoined {}, errant GTIDs {}, switched back {}{}",
            failback.cluster,
            failback.rejoined,
            failback.errant_gtids.as_deref().unwrap_or("none"),
            failback.switched_back,
            failback
                .error
                .as_ref()
                .map_or(String::new(), |e| format!("; **{e}**"))
        );
    }
    if !report.problems.is_empty() {
        let _ = writeln!(out, "\n## Problems\n");
        for problem in &report.problems {
            let _ = writeln!(out, "- {problem}");
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The timeline: write rate as bars, the outage shaded, every event a line.
pub fn svg(report: &DrillReport) -> String {
    const WIDTH: f64 = 960.0;
    const LEFT: f64 = 50.0;
    const RIGHT: f64 = 20.0;
    const CHART_TOP: f64 = 150.0;
    const CHART_HEIGHT: f64 = 120.0;
    let span = report
        .timeline
        .iter()
        .map(|e| e.at_ms)
        .chain(report.write_rate.last().map(|b| b.at_ms + RATE_BIN_MS))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |ms: u64| LEFT + (WIDTH - LEFT - RIGHT) * ms as f64 / span;
    let peak = report
        .write_rate
        .iter()
        .map(|b| b.writes)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} 320" width="{WIDTH}" height="320" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        out,
        r##"<rect x="0" y="0" width="{WIDTH}" height="320" fill="#fff"/>"##
    );
    // The outage: from the injection to the first write on the new primary.
    let at = |name: &str| {
        report
            .timeline
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.at_ms)
    };
    if let (Some(start), Some(end)) = (at("injection"), at("first_write")) {
        let _ = write!(
            out,
            r##"<rect x="{:.1}" y="20" width="{:.1}" height="{:.1}" fill="#fde2e2"><title>RTO {} ms</title></rect>"##,
            x(start),
            (x(end) - x(start)).max(1.0),
            CHART_TOP + CHART_HEIGHT - 20.0,
            end.saturating_sub(start)
        );
    }
    let bar = (WIDTH - LEFT - RIGHT) * RATE_BIN_MS as f64 / span;
    for bin in &report.write_rate {
        let height = CHART_HEIGHT * bin.writes as f64 / peak;
        let _ = write!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#4a7bd0"><title>{} ms: {} writes</title></rect>"##,
            x(bin.at_ms),
            CHART_TOP + CHART_HEIGHT - height,
            (bar - 0.5).max(0.5),
            height,
            bin.at_ms,
            bin.writes
        );
    }
    let axis = CHART_TOP + CHART_HEIGHT;
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" y1="{axis}" x2="{}" y2="{axis}" stroke="#333"/>"##,
        WIDTH - RIGHT
    );
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="{}" fill="#333">0</text><text x="{}" y="{}" text-anchor="end" fill="#333">{} ms</text>"##,
        axis + 14.0,
        WIDTH - RIGHT,
        axis + 14.0,
        span as u64
    );
    let _ = write!(
        out,
        r##"<text x="8" y="{}" fill="#333" transform="rotate(-90 8 {})">writes / {RATE_BIN_MS} ms</text>"##,
        CHART_TOP + CHART_HEIGHT,
        CHART_TOP + CHART_HEIGHT
    );
    for (i, event) in report.timeline.iter().enumerate() {
        let ex = x(event.at_ms);
        let label_y = 14.0 + 12.0 * (i % 8) as f64;
        // Labels in the right third read leftwards so they stay inside.
        let (anchor, label_x) = if ex > WIDTH * 0.66 {
            ("end", ex - 3.0)
        } else {
            ("start", ex + 3.0)
        };
        let _ = write!(
            out,
            r##"<line x1="{ex:.1}" y1="{label_y}" x2="{ex:.1}" y2="{axis}" stroke="#c0392b" stroke-dasharray="3,2"/><text x="{label_x:.1}" y="{label_y}" text-anchor="{anchor}" fill="#c0392b">{} ({} ms)<title>{}</title></text>"##,
            escape(event.name),
            event.at_ms,
            escape(&event.detail)
        );
    }
    out.push_str("</svg>");
    out
}

pub fn html(report: &DrillReport) -> String {
    let body = markdown_to_html(&markdown(report));
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Drill {id}</title>\
         <style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}\
         .status-passed{{color:#1e7b34}}.status-missed,.status-failed{{color:#b03a2e}}</style></head>\
         <body><p class=\"status-{status}\"><strong>{status}</strong></p>\n{svg}\n{body}</body></html>\n",
        id = escape(&report.drill_id),
        status = report.status,
        svg = svg(report),
    )
}

/// The markdown this module writes, as HTML: headings, tables, list items,
/// paragraphs, `code` and **bold**. Not a general markdown renderer.
fn markdown_to_html(text: &str) -> String {
    let inline = |line: &str| {
        let mut out = String::new();
        let escaped = escape(line);
        let mut code = false;
        let mut bold = false;
        let mut chars = escaped.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '`' => {
                    out.push_str(if code { "</code>" } else { "<code>" });
                    code = !code;
                }
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    out.push_str(if bold { "</strong>" } else { "<strong>" });
                    bold = !bold;
                }
                other => out.push(other),
            }
        }
        out
    };
    let mut out = String::new();
    let mut in_table = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('|') {
            let cells: Vec<&str> = trimmed
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            if cells
                .iter()
                .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':')))
            {
                continue;
            }
            if !in_table {
                out.push_str("<table>");
                in_table = true;
            }
            out.push_str("<tr>");
            for cell in cells {
                let _ = write!(out, "<td>{}</td>", inline(cell));
            }
            out.push_str("</tr>\n");
            continue;
        }
        if in_table {
            out.push_str("</table>\n");
            in_table = false;
        }
        if let Some(heading) = trimmed.strip_prefix("## ") {
            let _ = writeln!(out, "<h2>{}</h2>", inline(heading));
        } else if let Some(heading) = trimmed.strip_prefix("# ") {
            let _ = writeln!(out, "<h1>{}</h1>", inline(heading));
        } else if let Some(item) = trimmed.strip_prefix("- ") {
            let _ = writeln!(out, "<li>{}</li>", inline(item));
        } else if !trimmed.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", inline(trimmed));
        }
    }
    if in_table {
        out.push_str("</table>\n");
    }
    out
}
