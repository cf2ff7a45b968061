//! Aggregation of load-mode results: latency histograms, throughput, classified errors and a
//! per-second time series, and the JSON report they serialize into.
//!
//! Everything is fed from [`crate::runner::ScenarioResult`]s, one per session, as they finish: the
//! timings the runner already measures per connection, the transcript sizes and the failures.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::runner::{FailureKind, FrameKind, ScenarioResult, Status};

/// Highest value a histogram records (one hour, in microseconds); larger values are clamped.
const MAX_US: u64 = 3_600_000_000;

/// The latency metrics, in report order: (key, label for people).
pub const METRICS: [(&str, &str); 7] = [
    ("connect", "connect (WebSocket handshake)"),
    ("first_event", "first event after connect"),
    ("first_token", "first token after message"),
    ("token_gap", "largest token gap per turn"),
    ("turn", "whole turn"),
    ("cancel_ack", "cancel acknowledged"),
    ("session", "whole session (scenario)"),
];

/// Error classes, in report order.
pub const CLASSES: [&str; 6] = ["refused", "timeout", "schema", "rule", "closed", "other"];

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("static histogram bounds are valid")
}

fn record(h: &mut Histogram<u64>, d_ms: f64) {
    let us = (d_ms * 1000.0).round().clamp(1.0, MAX_US as f64) as u64;
    h.saturating_record(us);
}

/// The class of a failed session: from its first failure (the one that stopped it).
pub fn classify(result: &ScenarioResult) -> Option<(&'static str, String)> {
    if result.status != Status::Failed {
        return None;
    }
    let Some(f) = result.failures.first() else {
        return Some(("other", "failed without a recorded failure".to_owned()));
    };
    let lower = f.message.to_ascii_lowercase();
    let class = match f.kind {
        FailureKind::Handshake => "refused",
        _ if lower.contains("connection refused") => "refused",
        FailureKind::Timeout => "timeout",
        FailureKind::Schema => "schema",
        FailureKind::Rule => "rule",
        FailureKind::Transport => "closed",
        _ => "other",
    };
    let message = match &f.step {
        Some(s) => format!("{} (step {} at {})", f.message, s.keyword, s.location),
        None => f.message.clone(),
    };
    Some((class, message))
}

/// One second of the run (by finish time).
struct Second {
    sessions: u64,
    errors: u64,
    frames: u64,
    session_hist: Histogram<u64>,
}

/// Running totals; fed one session result at a time.
pub struct Stats {
    hists: BTreeMap<&'static str, Histogram<u64>>,
    pub sessions: u64,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub frames: u64,
    errors: BTreeMap<&'static str, (u64, String)>,
    seconds: Vec<Second>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            hists: METRICS.iter().map(|(k, _)| (*k, new_hist())).collect(),
            sessions: 0,
            passed: 0,
            failed: 0,
            skipped: 0,
            frames: 0,
            errors: BTreeMap::new(),
            seconds: Vec::new(),
        }
    }

    fn hist(&mut self, key: &str) -> &mut Histogram<u64> {
        self.hists
            .get_mut(key)
            .expect("every metric has a histogram")
    }

    /// Adds one finished session; `finished_at` is its end relative to the start of the load.
    pub fn add(&mut self, result: &ScenarioResult, finished_at: Duration) {
        self.sessions += 1;
        match result.status {
            Status::Passed | Status::Flaky => self.passed += 1,
            Status::Failed => self.failed += 1,
            Status::Skipped => self.skipped += 1,
        }
        let session_ms = result.duration.as_secs_f64() * 1000.0;
        record(self.hist("session"), session_ms);
        for t in &result.timings {
            for (key, v) in [
                ("connect", t.connect_ms),
                ("first_event", t.first_event_ms),
                ("first_token", t.first_token_ms),
                ("token_gap", t.max_token_gap_ms),
                ("turn", t.turn_ms),
                ("cancel_ack", t.cancel_ack_ms),
            ] {
                if let Some(ms) = v {
                    record(self.hist(key), ms);
                }
            }
        }
        // Frames on the wire, both ways: records of handshakes and transport ends are not frames.
        let frames: u64 = result
            .transcripts
            .iter()
            .map(|t| {
                t.dropped
                    + t.frames
                        .iter()
                        .filter(|f| !matches!(f.kind, FrameKind::Handshake | FrameKind::End))
                        .count() as u64
            })
            .sum();
        self.frames += frames;
        let errored = if let Some((class, message)) = classify(result) {
            let e = self.errors.entry(class).or_insert((0, message));
            e.0 += 1;
            true
        } else {
            false
        };
        let sec = finished_at.as_secs() as usize;
        while self.seconds.len() <= sec {
            self.seconds.push(Second {
                sessions: 0,
                errors: 0,
                frames: 0,
                session_hist: new_hist(),
            });
        }
        let s = &mut self.seconds[sec];
        s.sessions += 1;
        s.errors += u64::from(errored);
        s.frames += frames;
        record(&mut s.session_hist, session_ms);
    }

    /// Counts a session that never produced a result (its task was aborted or panicked).
    pub fn add_lost(&mut self, class: &'static str, message: String, finished_at: Duration) {
        self.sessions += 1;
        self.failed += 1;
        let e = self.errors.entry(class).or_insert((0, message));
        e.0 += 1;
        let sec = finished_at.as_secs() as usize;
        while self.seconds.len() <= sec {
            self.seconds.push(Second {
                sessions: 0,
                errors: 0,
                frames: 0,
                session_hist: new_hist(),
            });
        }
        self.seconds[sec].sessions += 1;
        self.seconds[sec].errors += 1;
    }

    /// p99 of whole sessions so far, in milliseconds (for the progress line).
    pub fn session_p99_ms(&self) -> f64 {
        let h = &self.hists["session"];
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(0.99) as f64 / 1000.0
        }
    }

    pub fn errors(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    /// The report of the whole run.
    pub fn report(&self, meta: ReportMeta, elapsed: Duration) -> LoadReport {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let latency_ms = METRICS
            .iter()
            .map(|(k, label)| (k.to_string(), summarize(label, &self.hists[k])))
            .collect();
        let errors_total = self.errors();
        let by_class = CLASSES
            .iter()
            .filter_map(|c| {
                self.errors.get(c).map(|(n, ex)| ErrorClass {
                    class: c.to_string(),
                    count: *n,
                    example: ex.clone(),
                })
            })
            .collect();
        let timeline = self
            .seconds
            .iter()
            .enumerate()
            .map(|(i, s)| SecondReport {
                second: i as u64,
                sessions: s.sessions,
                errors: s.errors,
                frames: s.frames,
                p99_ms: if s.session_hist.is_empty() {
                    None
                } else {
                    Some(s.session_hist.value_at_quantile(0.99) as f64 / 1000.0)
                },
            })
            .collect();
        let error_rate = if self.sessions == 0 {
            0.0
        } else {
            errors_total as f64 / self.sessions as f64
        };
        let pass = match meta.max_error_rate {
            Some(max) => error_rate <= max,
            None => errors_total == 0,
        } && self.sessions > 0;
        LoadReport {
            meta,
            elapsed_s: elapsed.as_secs_f64(),
            sessions: SessionCounts {
                total: self.sessions,
                passed: self.passed,
                failed: self.failed,
                skipped: self.skipped,
            },
            throughput: Throughput {
                sessions_per_s: self.sessions as f64 / secs,
                frames_per_s: self.frames as f64 / secs,
            },
            frames: self.frames,
            latency_ms,
            errors: ErrorSummary {
                total: errors_total,
                rate: error_rate,
                by_class,
            },
            timeline,
            histograms: METRICS
                .iter()
                .map(|(k, _)| (k.to_string(), buckets(&self.hists[k])))
                .collect(),
            verdict: if pass { "pass" } else { "fail" }.to_owned(),
        }
    }
}

fn summarize(label: &str, h: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return Percentiles {
            label: label.to_owned(),
            count: 0,
            ..Default::default()
        };
    }
    Percentiles {
        label: label.to_owned(),
        count: h.len(),
        min: Some(ms(h.min())),
        mean: Some(h.mean() / 1000.0),
        p50: Some(ms(h.value_at_quantile(0.50))),
        p90: Some(ms(h.value_at_quantile(0.90))),
        p99: Some(ms(h.value_at_quantile(0.99))),
        max: Some(ms(h.max())),
    }
}

/// Up to 40 log-spaced buckets between the smallest and largest value, for the HTML histograms.
fn buckets(h: &Histogram<u64>) -> Vec<Bucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let (lo, hi) = (h.min().max(1) as f64, h.max().max(1) as f64);
    let n = if hi / lo < 1.05 { 1 } else { 40 };
    let step = (hi / lo).ln() / n as f64;
    let mut out = Vec::with_capacity(n);
    let mut from = h.min();
    for i in 1..=n {
        let to = if i == n {
            h.max()
        } else {
            (lo * (step * i as f64).exp()) as u64
        };
        if to < from {
            continue;
        }
        let count = h.count_between(from, to);
        out.push(Bucket {
            from_ms: from as f64 / 1000.0,
            to_ms: to as f64 / 1000.0,
            count,
        });
        from = h.next_non_equivalent(to);
    }
    out
}

/// How the load was run (echoed into the report).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportMeta {
    pub scenario: String,
    pub target: String,
    /// RFC 3339-like UTC start time.
    pub started_at: String,
    pub users: usize,
    pub arrival_rate: Option<f64>,
    pub duration_s: Option<f64>,
    pub iterations: Option<u64>,
    pub ramp_s: f64,
    pub schema_sample: u32,
    pub max_error_rate: Option<f64>,
}

/// The JSON report of a load run (`--report-json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    pub meta: ReportMeta,
    pub elapsed_s: f64,
    pub sessions: SessionCounts,
    pub throughput: Throughput,
    /// WebSocket frames sent and received by all sessions.
    pub frames: u64,
    /// Metric key → percentiles in milliseconds.
    pub latency_ms: BTreeMap<String, Percentiles>,
    pub errors: ErrorSummary,
    /// One entry per second of the run, by session finish time.
    pub timeline: Vec<SecondReport>,
    /// Metric key → log-spaced histogram buckets.
    pub histograms: BTreeMap<String, Vec<Bucket>>,
    /// `pass` or `fail` (the exit code follows it).
    pub verdict: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionCounts {
    pub total: u64,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throughput {
    pub sessions_per_s: f64,
    pub frames_per_s: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub label: String,
    pub count: u64,
    pub min: Option<f64>,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorSummary {
    /// Failed sessions (each counted once, in the class of its first failure).
    pub total: u64,
    /// `total / sessions`.
    pub rate: f64,
    pub by_class: Vec<ErrorClass>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorClass {
    pub class: String,
    pub count: u64,
    /// The first failure message of this class.
    pub example: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecondReport {
    pub second: u64,
    pub sessions: u64,
    pub errors: u64,
    pub frames: u64,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bucket {
    pub from_ms: f64,
    pub to_ms: f64,
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{ConnTimings, Failure};

    fn result(status: Status, ms: u64, failure: Option<(FailureKind, &str)>) -> ScenarioResult {
        ScenarioResult {
            name: "s".into(),
            description: None,
            location: "s.yaml:1:1".into(),
            file: "s.yaml".into(),
            level: crate::scenario::Level::Must,
            tags: vec![],
            status,
            skip_reason: None,
            duration: Duration::from_millis(ms),
            attempts: 1,
            steps: vec![],
            failures: failure
                .into_iter()
                .map(|(kind, m)| Failure {
                    kind,
                    message: m.into(),
                    step: None,
                    expected: None,
                    detail: vec![],
                    schema: None,
                    rule: None,
                    frame: None,
                    conn: None,
                })
                .collect(),
            transcripts: vec![],
            http: vec![],
            timings: vec![ConnTimings {
                conn: "main".into(),
                connect_ms: Some(ms as f64 / 10.0),
                first_event_ms: Some(1.0),
                first_token_ms: None,
                max_token_gap_ms: None,
                turn_ms: Some(ms as f64 / 2.0),
                cancel_ack_ms: None,
            }],
        }
    }

    fn meta() -> ReportMeta {
        ReportMeta {
            scenario: "s".into(),
            target: "t".into(),
            started_at: "now".into(),
            users: 1,
            arrival_rate: None,
            duration_s: None,
            iterations: Some(3),
            ramp_s: 0.0,
            schema_sample: 1,
            max_error_rate: None,
        }
    }

    #[test]
    fn classes_counts_and_percentiles() {
        let mut s = Stats::new();
        for i in 0..100 {
            s.add(
                &result(Status::Passed, 10 + i, None),
                Duration::from_millis(i * 30),
            );
        }
        s.add(
            &result(
                Status::Failed,
                5,
                Some((FailureKind::Timeout, "no event within 5s")),
            ),
            Duration::from_millis(100),
        );
        s.add(
            &result(Status::Failed, 5, Some((FailureKind::Timeout, "again"))),
            Duration::from_millis(100),
        );
        s.add(
            &result(
                Status::Failed,
                5,
                Some((
                    FailureKind::Http,
                    "could not connect: Connection refused (os error 111)",
                )),
            ),
            Duration::from_millis(100),
        );
        let r = s.report(meta(), Duration::from_secs(3));
        assert_eq!(r.sessions.total, 103);
        assert_eq!(r.sessions.passed + r.sessions.failed, 103);
        assert_eq!(r.errors.total, 3);
        let classes: Vec<(&str, u64)> = r
            .errors
            .by_class
            .iter()
            .map(|c| (c.class.as_str(), c.count))
            .collect();
        assert_eq!(classes, vec![("refused", 1), ("timeout", 2)]);
        assert_eq!(r.errors.by_class[1].example, "no event within 5s");
        let p = &r.latency_ms["session"];
        assert_eq!(p.count, 103);
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.max);
        assert!((p.max.unwrap() - 109.0).abs() < 0.2, "{p:?}");
        assert_eq!(r.latency_ms["first_token"].count, 0);
        assert_eq!(r.timeline.iter().map(|t| t.sessions).sum::<u64>(), 103);
        assert_eq!(r.verdict, "fail");
        let total: u64 = r.histograms["session"].iter().map(|b| b.count).sum();
        assert_eq!(total, 103);
    }

    #[test]
    fn error_rate_threshold_decides_the_verdict() {
        let mut s = Stats::new();
        for _ in 0..99 {
            s.add(&result(Status::Passed, 10, None), Duration::ZERO);
        }
        s.add(
            &result(Status::Failed, 10, Some((FailureKind::Rule, "R3"))),
            Duration::ZERO,
        );
        let mut m = meta();
        m.max_error_rate = Some(0.02);
        assert_eq!(s.report(m.clone(), Duration::from_secs(1)).verdict, "pass");
        m.max_error_rate = Some(0.005);
        assert_eq!(s.report(m, Duration::from_secs(1)).verdict, "fail");
    }
}
