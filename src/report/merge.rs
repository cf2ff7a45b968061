//! Merging the JSON reports of several shards into one report, judged as one run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::runner::RunInfo;

use super::json::read_json_report;
use super::{Report, ReportError};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge: no reports given")]
    Empty,
    #[error("scenario {name:?} appears in {first} and in {second}: shards must not overlap")]
    Duplicate {
        name: String,
        first: String,
        second: String,
    },
}

/// Merges reports given with where each came from (for messages).
///
/// Scenarios keep shard order; counts and verdict are recomputed from them, so the merged
/// verdict is exactly that of one run with all scenarios. The run duration is the longest
/// shard's (shards run side by side), the start the earliest, jobs and totals add up.
pub fn merge_reports(reports: Vec<(String, Report)>) -> Result<Report, MergeError> {
    if reports.is_empty() {
        return Err(MergeError::Empty);
    }
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut scenarios = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    let mut started_at: Option<String> = None;
    let mut jobs = 0;
    let mut total = 0;
    let mut duration = Duration::ZERO;
    for (origin, report) in reports {
        for s in &report.scenarios {
            if let Some(first) = seen.insert(s.name.clone(), origin.clone()) {
                return Err(MergeError::Duplicate {
                    name: s.name.clone(),
                    first,
                    second: origin,
                });
            }
        }
        if !targets.contains(&report.run.target) {
            targets.push(report.run.target.clone());
        }
        // RFC 3339 timestamps in one offset compare correctly as strings.
        if !report.run.started_at.is_empty()
            && started_at
                .as_ref()
                .is_none_or(|s| report.run.started_at < *s)
        {
            started_at = Some(report.run.started_at.clone());
        }
        jobs += report.run.jobs;
        total += report.run.total;
        duration = duration.max(report.summary.duration);
        scenarios.extend(report.scenarios);
    }
    let run = RunInfo {
        target: targets.join(", "),
        total,
        started_at: started_at.unwrap_or_default(),
        jobs,
    };
    Ok(Report::new(run, scenarios, duration))
}

/// Reads and merges JSON report files.
pub fn merge_files(paths: &[PathBuf]) -> Result<Report, ReportError> {
    let mut reports = Vec::with_capacity(paths.len());
    for p in paths {
        reports.push((display(p), read_json_report(p)?));
    }
    Ok(merge_reports(reports)?)
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{sample, Collector, Verdict};

    fn full() -> Report {
        let mut c = Collector::default();
        for e in sample::events() {
            c.on_event(&e);
        }
        c.report()
    }

    fn shard(report: &Report, range: std::ops::Range<usize>, started: &str, ms: u64) -> Report {
        let mut run = report.run.clone();
        run.started_at = started.into();
        run.jobs = 1;
        run.total = range.len();
        Report::new(
            run,
            report.scenarios[range].to_vec(),
            Duration::from_millis(ms),
        )
    }

    #[test]
    fn merged_shards_equal_one_run() {
        let whole = full();
        let a = shard(&whole, 0..2, "2025-01-02T03:04:06Z", 900);
        let b = shard(&whole, 2..6, "2025-01-02T03:04:05Z", 1200);
        let m = merge_reports(vec![("a.json".into(), a), ("b.json".into(), b)]).unwrap();
        assert_eq!(m.summary.verdict, whole.summary.verdict);
        assert_eq!(m.summary.verdict, Verdict::NotConformant);
        assert_eq!(m.summary.by_level, whole.summary.by_level);
        assert_eq!(m.scenarios.len(), 6);
        assert_eq!(m.run.started_at, "2025-01-02T03:04:05Z");
        assert_eq!(m.run.jobs, 2);
        assert_eq!(m.run.total, 6);
        assert_eq!(m.run.target, whole.run.target);
        assert_eq!(m.summary.duration, Duration::from_millis(1200));
    }

    #[test]
    fn a_shard_without_failures_does_not_hide_anothers() {
        let whole = full();
        let ok = shard(&whole, 0..1, "x", 1);
        let bad = shard(&whole, 2..3, "x", 1);
        assert_eq!(ok.summary.verdict, Verdict::Conformant);
        let m = merge_reports(vec![("ok".into(), ok), ("bad".into(), bad)]).unwrap();
        assert_eq!(m.summary.verdict, Verdict::ConformantWithWarnings);
    }

    #[test]
    fn duplicates_and_empty_are_errors() {
        let whole = full();
        let a = shard(&whole, 0..2, "x", 1);
        let b = shard(&whole, 1..3, "x", 1);
        let e = merge_reports(vec![("a.json".into(), a), ("b.json".into(), b)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "scenario \"tokens arrive in order\" appears in a.json and in b.json: shards must not overlap"
        );
        assert!(matches!(merge_reports(vec![]), Err(MergeError::Empty)));
    }

    #[test]
    fn different_targets_are_listed() {
        let whole = full();
        let a = shard(&whole, 0..1, "x", 1);
        let mut b = shard(&whole, 1..2, "x", 1);
        b.run.target = "ws://127.0.0.1:5000/ws".into();
        let m = merge_reports(vec![("a".into(), a), ("b".into(), b)]).unwrap();
        assert_eq!(
            m.run.target,
            "ws://127.0.0.1:4000/ws, ws://127.0.0.1:5000/ws"
        );
    }
}
