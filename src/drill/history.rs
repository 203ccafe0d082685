//! Drill history: every drill is recorded in the state store, and `cutover
//! drill history` shows RTO and RPO against their targets with the trend.

use serde::Serialize;

use super::{DrillError, DrillReport};
use crate::store::{DrillRecord, Store};

pub async fn record(store: &Store, report: &DrillReport) -> Result<(), DrillError> {
    let as_i64 = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok());
    let record = DrillRecord {
        drill_id: report.drill_id.clone(),
        plan: report.plan.clone(),
        failure: serde_json::to_value(report.failure)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        started_at: report.started_at.clone(),
        status: report.status.to_string(),
        primary: report.primary.clone(),
        promoted: report.promoted.clone(),
        rto_ms: as_i64(report.rto.measured_ms),
        rto_target_ms: as_i64(report.rto.target_ms),
        rpo_ms: as_i64(Some(report.rpo.measured_ms)).unwrap_or(0),
        rpo_target_ms: as_i64(report.rpo.target_ms),
        lost_writes: as_i64(Some(report.rpo.lost_writes)).unwrap_or(0),
        report_dir: report
            .reports
            .first()
            .and_then(|path| std::path::Path::new(path).parent())
            .map(|dir| dir.display().to_string()),
    };
    let document = serde_json::to_value(report).unwrap_or_default();
    store.record_drill(&record, &document).await?;
    Ok(())
}

/// How the latest RTO compares with the ones before it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trend {
    /// Mean RTO of the earlier drills in the list (ms).
    pub earlier_mean_rto_ms: Option<u64>,
    pub latest_rto_ms: Option<u64>,
    /// `better`, `worse` (more than 10 % off the mean), `steady`, or `unknown`.
    pub direction: &'static str,
}

pub fn trend(records: &[DrillRecord]) -> Trend {
    let rtos: Vec<u64> = records
        .iter()
        .filter_map(|r| r.rto_ms.and_then(|v| u64::try_from(v).ok()))
        .collect();
    let Some((latest, earlier)) = rtos.split_last() else {
        return Trend {
            earlier_mean_rto_ms: None,
            latest_rto_ms: None,
            direction: "unknown",
        };
    };
    if earlier.is_empty() {
        return Trend {
            earlier_mean_rto_ms: None,
            latest_rto_ms: Some(*latest),
            direction: "unknown",
        };
    }
    let mean = earlier.iter().sum::<u64>() / earlier.len() as u64;
    let direction = if (*latest as f64) > mean as f64 * 1.1 {
        "worse"
    } else if (*latest as f64) < mean as f64 * 0.9 {
        "better"
    } else {
        "steady"
    };
    Trend {
        earlier_mean_rto_ms: Some(mean),
        latest_rto_ms: Some(*latest),
        direction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(rto: Option<i64>) -> DrillRecord {
        DrillRecord {
            drill_id: "d".into(),
            plan: "p".into(),
            failure: "crash".into(),
            started_at: "t".into(),
            status: "passed".into(),
            primary: "legacy".into(),
            promoted: Some("c1".into()),
            rto_ms: rto,
            rto_target_ms: None,
            rpo_ms: 0,
            rpo_target_ms: None,
            lost_writes: 0,
            report_dir: None,
        }
    }

    #[test]
    fn the_trend_compares_the_latest_rto_with_the_mean_before_it() {
        let worse = trend(&[record(Some(1000)), record(Some(1200)), record(Some(1500))]);
        assert_eq!(worse.earlier_mean_rto_ms, Some(1100));
        assert_eq!(worse.direction, "worse");
        assert_eq!(
            trend(&[record(Some(1000)), record(Some(500))]).direction,
            "better"
        );
        assert_eq!(
            trend(&[record(Some(1000)), record(Some(1050))]).direction,
            "steady"
        );
        assert_eq!(
            trend(&[record(None), record(Some(10))]).direction,
            "unknown"
        );
        assert_eq!(trend(&[]).direction, "unknown");
    }
}
