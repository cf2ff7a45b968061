//! Load mode: many virtual users running one scenario with every check on.
//!
//! `wschat-check load scenarios/ --filter NAME --users N (--duration D | --iterations N) [--arrival-rate R/s] [--ramp D]`
//!
//! - Closed model (no `--arrival-rate`): N users each run the scenario back to back; user *i* starts at
//!   `ramp * i / N`.
//! - Open model (`--arrival-rate R/s`): sessions start at R per second (rising linearly from 0 during
//!   `--ramp`), at most N at once; an arrival waits for a free user rather than piling up.
//!
//! Each session is one run of the runner's own per-scenario executor ([`crate::runner::Prepared`]), so
//! schema validation, ordering rules and the per-connection timings are exactly those of `run`.
//! `--schema-sample N` validates only 1 in N received events per connection (the first always), to
//! measure the server rather than the validator; rules still see every event.

pub mod html;
pub mod stats;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::{mpsc, Semaphore};

use crate::runner::{Prepared, RunError, RunOptions, ScenarioResult};
use crate::scenario::{load_suite, LoadOptions, Scenario};
use crate::transport::tls::TlsSettings;
use stats::{LoadReport, ReportMeta, Stats};

/// Exit codes (the same table as `run`).
const EXIT_OK: u8 = 0;
const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_ENV: u8 = 3;

/// How long sessions still running at the end may take to finish before they are aborted and
/// counted as `timeout` errors. Each session is bounded by its own step timeouts; this is the backstop.
const DRAIN_GRACE: Duration = Duration::from_secs(120);

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Scenario folders and files, as for `run` (the suite config is read from the first one's
    /// folder); exactly one scenario must be selected: pick it with --filter.
    #[arg(required = true, value_name = "SCENARIO")]
    pub paths: Vec<PathBuf>,
    /// Name glob selecting the scenario when the paths hold several.
    #[arg(long, value_name = "GLOB")]
    pub filter: Option<String>,
    /// Virtual users: sessions running at once.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub users: u32,
    /// Open model: start sessions at this rate, e.g. `50/s` or `50` (at most --users at once).
    #[arg(long, value_name = "R/s", value_parser = parse_rate)]
    pub arrival_rate: Option<f64>,
    /// Stop starting sessions after this long.
    #[arg(long, value_name = "DURATION", value_parser = crate::scenario::load::parse_duration, conflicts_with = "iterations", required_unless_present = "iterations")]
    pub duration: Option<Duration>,
    /// Stop after this many sessions in total.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: Option<u64>,
    /// Ramp-up: users (or the arrival rate) rise linearly from 0 over this long.
    #[arg(long, value_name = "DURATION", value_parser = crate::scenario::load::parse_duration, default_value = "0s")]
    pub ramp: Duration,
    /// Validate 1 in N received events against its schema (per connection; the first always). 1: all.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub schema_sample: u32,
    /// Pass when at most this fraction of sessions failed (0.01 = 1%); default: any failure fails.
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
    pub max_error_rate: Option<f64>,
    /// WebSocket base URL of the server under test; absent: the embedded reference server.
    #[arg(long, env = "WSCHAT_TARGET", value_name = "URL")]
    pub target: Option<String>,
    /// Template variable (repeatable).
    #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Default timeout of `expect`, `collect` and other waits (overrides the suite's).
    #[arg(long, value_name = "DURATION", value_parser = crate::scenario::load::parse_duration)]
    pub timeout: Option<Duration>,
    /// PEM file with the CA certificate(s) to trust for wss:// and https://.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    #[arg(long)]
    pub insecure: bool,
    /// Write the JSON report.
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// Write a self-contained HTML report (inline SVG charts).
    #[arg(long, value_name = "FILE")]
    pub report_html: Option<PathBuf>,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got '{s}'")),
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    match n.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("expected a positive rate like '50/s', got '{s}'")),
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "expected a fraction between 0 and 1 (0.01 = 1%), got '{s}'"
        )),
    }
}

/// Errors of load mode, each with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Scenario(String),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("could not write the report {path}: {source}")]
    Report {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl LoadError {
    pub fn exit_code(&self) -> u8 {
        match self {
            LoadError::Scenario(_) => EXIT_USAGE,
            LoadError::Run(e) => e.exit_code(),
            LoadError::Report { .. } | LoadError::Runtime(_) => EXIT_ENV,
        }
    }
}

fn report_error(msg: impl std::fmt::Display) {
    eprintln!("{:?}", miette::Report::msg(msg.to_string()));
}

/// `wschat-check load`: the exit code (0 pass, 1 errors above the limit, 2 usage, 3 environment).
pub fn cmd_load(a: LoadArgs) -> Result<u8, u8> {
    let fail = |e: LoadError| {
        report_error(&e);
        e.exit_code()
    };
    let suite = load_suite(
        &a.paths,
        &LoadOptions {
            vars: a.vars.iter().cloned().collect::<BTreeMap<_, _>>(),
        },
    )
    .map_err(|e| {
        if e.problems.is_empty() {
            report_error(&e);
        }
        for p in &e.problems {
            report_error(p);
        }
        EXIT_USAGE
    })?;
    let scenario = pick_scenario(&suite.scenarios, a.filter.as_deref()).map_err(fail)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(LoadError::Runtime(e)))?;
    let report = rt.block_on(run_load(&suite, scenario, &a)).map_err(fail)?;
    print_summary(&report);
    if let Some(p) = &a.report_json {
        let body = serde_json::to_string_pretty(&report).expect("the report serializes");
        write_file(p, &body).map_err(fail)?;
    }
    if let Some(p) = &a.report_html {
        write_file(p, &html::render(&report)).map_err(fail)?;
    }
    Ok(if report.verdict == "pass" {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

fn write_file(path: &PathBuf, body: &str) -> Result<(), LoadError> {
    std::fs::write(path, body).map_err(|source| LoadError::Report {
        path: path.clone(),
        source,
    })
}

fn pick_scenario(all: &[Scenario], filter: Option<&str>) -> Result<Scenario, LoadError> {
    let chosen: Vec<&Scenario> = all
        .iter()
        .filter(|s| filter.is_none_or(|g| crate::cli::glob_match(g, &s.name)))
        .collect();
    match chosen.as_slice() {
        [one] => Ok((*one).clone()),
        [] if all.is_empty() => Err(LoadError::Scenario(
            "no scenario found in the given path".into(),
        )),
        [] => Err(LoadError::Scenario(format!(
            "none of the {} scenario(s) matches --filter",
            all.len()
        ))),
        many => Err(LoadError::Scenario(format!(
            "{} scenarios selected ({}, ...); load runs one: pick it with --filter NAME",
            many.len(),
            many.iter()
                .take(3)
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A session's outcome as the aggregator sees it.
enum Outcome {
    Done(Box<ScenarioResult>, Duration),
}

/// Runs the load and aggregates it into a report.
pub async fn run_load(
    suite: &crate::scenario::Suite,
    scenario: Scenario,
    a: &LoadArgs,
) -> Result<LoadReport, LoadError> {
    let opts = RunOptions {
        target: a.target.clone(),
        vars: a.vars.iter().cloned().collect(),
        jobs: a.users as usize,
        expect_timeout: a.timeout,
        tls: TlsSettings {
            ca_cert: a.ca_cert.clone(),
            insecure: a.insecure,
        },
        ..Default::default()
    };
    // The per-user socket limit protects the reference server from one abusive client; here every
    // virtual user shares the scenario's user names, and a socket's slot is released only when the
    // server's handler has seen the close, which can lag the next session's connect. So the limit is
    // lifted for the embedded server (only: an external target is measured as it is configured).
    let embedded = reference_server::Config {
        token_pace: Duration::ZERO,
        max_connections_per_user: usize::MAX / 2,
        // A burst of thousands of connects may all wait for their head at the same moment.
        max_pending_heads: usize::MAX / 2,
        ..Default::default()
    };
    let mut prepared = Prepared::new(suite, &opts, embedded).await?;
    prepared.set_schema_sample(a.schema_sample);
    prepared.set_transcript_json(false);
    // Thousands of connections at once: memory per connection matters, not one stream's speed.
    prepared.set_read_buffer(crate::transport::ws::READ_BUFFER_MANY);
    let prepared = Arc::new(prepared);
    let scenario = Arc::new(scenario);

    let meta = ReportMeta {
        scenario: scenario.name.clone(),
        target: prepared.target_label().to_owned(),
        started_at: crate::runner::now_rfc3339(),
        users: a.users as usize,
        arrival_rate: a.arrival_rate,
        duration_s: a.duration.map(|d| d.as_secs_f64()),
        iterations: a.iterations,
        ramp_s: a.ramp.as_secs_f64(),
        schema_sample: a.schema_sample,
        max_error_rate: a.max_error_rate,
    };

    let start = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let plan = Plan {
        users: a.users as usize,
        rate: a.arrival_rate,
        deadline: a
            .duration
            .map(|d| tokio::time::Instant::from_std(start + d)),
        iterations: a.iterations,
        ramp: a.ramp,
        start: tokio::time::Instant::from_std(start),
    };
    let scheduler = tokio::spawn(schedule(plan, prepared.clone(), scenario.clone(), tx));

    let mut stats = Stats::new();
    let mut progress = Progress::new(a.iterations);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some(Outcome::Done(result, at)) => stats.add(&result, at),
                None => break,
            },
            _ = tick.tick() => progress.update(&stats, start.elapsed()),
        }
    }
    let lost = scheduler
        .await
        .unwrap_or_else(|e| vec![format!("internal error: the load scheduler failed: {e}")]);
    for message in lost {
        stats.add_lost("timeout", message, start.elapsed());
    }
    progress.finish(&stats);
    let elapsed = start.elapsed();
    if let Ok(p) = Arc::try_unwrap(prepared) {
        p.shutdown().await;
    }
    Ok(stats.report(meta, elapsed))
}

struct Plan {
    users: usize,
    rate: Option<f64>,
    deadline: Option<tokio::time::Instant>,
    iterations: Option<u64>,
    ramp: Duration,
    start: tokio::time::Instant,
}

impl Plan {
    /// When the k-th (from 0) arrival of the open model is due: the arrival count grows as
    /// `R t² / 2 ramp` during the ramp, then linearly at R.
    fn arrival_at(&self, k: u64, rate: f64) -> tokio::time::Instant {
        let ramp = self.ramp.as_secs_f64();
        let k = k as f64;
        let in_ramp = rate * ramp / 2.0;
        let t = if ramp > 0.0 && k < in_ramp {
            (2.0 * k * ramp / rate).sqrt()
        } else {
            ramp + (k - if ramp > 0.0 { in_ramp } else { 0.0 }) / rate
        };
        self.start + Duration::from_secs_f64(t)
    }

    fn past_deadline(&self) -> bool {
        self.deadline
            .is_some_and(|d| tokio::time::Instant::now() >= d)
    }
}

/// Starts sessions per the plan and sends each outcome. Returns messages of sessions that were lost
/// (aborted after [`DRAIN_GRACE`] or panicked).
async fn schedule(
    plan: Plan,
    prepared: Arc<Prepared>,
    scenario: Arc<Scenario>,
    tx: mpsc::UnboundedSender<Outcome>,
) -> Vec<String> {
    let claimed = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let run_one = {
        let prepared = prepared.clone();
        let scenario = scenario.clone();
        let tx = tx.clone();
        let start = plan.start;
        move || {
            let prepared = prepared.clone();
            let scenario = scenario.clone();
            let tx = tx.clone();
            async move {
                let result = prepared.run_scenario(&scenario).await;
                let _ = tx.send(Outcome::Done(Box::new(result), start.elapsed()));
            }
        }
    };
    // Claims one more session if the plan allows it.
    let claim = {
        let claimed = claimed.clone();
        let iterations = plan.iterations;
        move || {
            let n = claimed.fetch_add(1, Ordering::Relaxed);
            iterations.is_none_or(|max| n < max)
        }
    };
    match plan.rate {
        None => {
            let plan = Arc::new(plan);
            for i in 0..plan.users {
                let plan = plan.clone();
                let claim = claim.clone();
                let run_one = run_one.clone();
                tasks.spawn(async move {
                    let offset = plan.ramp.mul_f64(i as f64 / plan.users as f64);
                    // The ramp is a schedule: user i is meant to begin at this instant.
                    tokio::time::sleep_until(plan.start + offset).await;
                    while !plan.past_deadline() && claim() {
                        run_one().await;
                    }
                });
            }
        }
        Some(rate) => {
            let slots = Arc::new(Semaphore::new(plan.users));
            let mut k = 0u64;
            loop {
                let due = plan.arrival_at(k, rate);
                if plan.deadline.is_some_and(|d| due >= d) {
                    break;
                }
                tokio::time::sleep_until(due).await;
                let permit = match slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                };
                if plan.past_deadline() || !claim() {
                    break;
                }
                let run_one = run_one.clone();
                tasks.spawn(async move {
                    run_one().await;
                    drop(permit);
                });
                k += 1;
                // Finished sessions are reaped as we go so the set stays small in long runs.
                while let Some(r) = tasks.try_join_next() {
                    if let Err(e) = r {
                        if e.is_panic() {
                            let _ = tx.send(Outcome::Done(
                                Box::new(panicked(&scenario, &e.to_string())),
                                plan.start.elapsed(),
                            ));
                        }
                    }
                }
            }
        }
    }
    drop(tx);
    let mut lost = Vec::new();
    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                lost.push(format!("internal error: a session task failed: {e}"));
            }
        }
    })
    .await;
    if drained.is_err() {
        let n = tasks.len();
        tasks.abort_all();
        lost.extend((0..n).map(|_| {
            format!(
                "session still running {} after the load ended; aborted",
                humantime::format_duration(DRAIN_GRACE)
            )
        }));
    }
    lost
}

/// A failed result standing for a session whose task panicked (a harness bug, reported not hidden).
fn panicked(sc: &Scenario, message: &str) -> ScenarioResult {
    ScenarioResult {
        name: sc.name.clone(),
        description: None,
        location: sc.loc.to_string(),
        file: sc.loc.file.display().to_string(),
        level: sc.level,
        tags: sc.tags.clone(),
        status: crate::runner::Status::Failed,
        skip_reason: None,
        duration: Duration::ZERO,
        attempts: 1,
        steps: Vec::new(),
        failures: vec![crate::runner::Failure {
            kind: crate::runner::FailureKind::Transport,
            message: format!("internal error: a session task panicked: {message}"),
            step: None,
            expected: None,
            detail: Vec::new(),
            schema: None,
            rule: None,
            frame: None,
            conn: None,
        }],
        transcripts: Vec::new(),
        timings: Vec::new(),
        http: Vec::new(),
    }
}

/// The live progress line: an indicatif bar on a terminal, a plain line every 5 s otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_plain: Instant,
}

impl Progress {
    fn new(iterations: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match iterations {
                Some(n) => indicatif::ProgressBar::new(n),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let template = if iterations.is_some() {
                "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}"
            } else {
                "{elapsed_precise} {spinner} {msg}"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress {
            bar,
            last_plain: Instant::now(),
        }
    }

    fn line(stats: &Stats, elapsed: Duration) -> String {
        format!(
            "{} sessions, {:.1}/s, {} errors, p99 {:.1} ms",
            stats.sessions,
            stats.sessions as f64 / elapsed.as_secs_f64().max(1e-9),
            stats.errors(),
            stats.session_p99_ms()
        )
    }

    fn update(&mut self, stats: &Stats, elapsed: Duration) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(stats.sessions);
                bar.set_message(Self::line(stats, elapsed));
            }
            None => {
                if self.last_plain.elapsed() >= Duration::from_secs(5) {
                    self.last_plain = Instant::now();
                    eprintln!(
                        "[{:>6.1}s] {}",
                        elapsed.as_secs_f64(),
                        Self::line(stats, elapsed)
                    );
                }
            }
        }
    }

    fn finish(&self, stats: &Stats) {
        if let Some(bar) = &self.bar {
            bar.set_position(stats.sessions);
            bar.finish_and_clear();
        }
    }
}

fn print_summary(r: &LoadReport) {
    println!(
        "load: {} on {}: {} session(s) in {:.2} s, {} passed, {} failed — {}",
        r.meta.scenario,
        r.meta.target,
        r.sessions.total,
        r.elapsed_s,
        r.sessions.passed,
        r.sessions.failed,
        r.verdict.to_uppercase()
    );
    println!(
        "throughput: {:.1} sessions/s, {:.0} frames/s ({} frames)",
        r.throughput.sessions_per_s, r.throughput.frames_per_s, r.frames
    );
    println!(
        "{:<32} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "count", "p50", "p90", "p99", "max"
    );
    let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
    for (key, _) in stats::METRICS {
        if let Some(p) = r.latency_ms.get(key) {
            if p.count == 0 {
                continue;
            }
            println!(
                "{:<32} {:>7} {:>9} {:>9} {:>9} {:>9}",
                p.label,
                p.count,
                f(p.p50),
                f(p.p90),
                f(p.p99),
                f(p.max)
            );
        }
    }
    if r.errors.total > 0 {
        println!(
            "errors: {} ({:.2}% of sessions)",
            r.errors.total,
            r.errors.rate * 100.0
        );
        for e in &r.errors.by_class {
            println!("  {:<8} {:>6}  e.g. {}", e.class, e.count, e.example);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_fractions_parse() {
        assert_eq!(parse_rate("50/s"), Ok(50.0));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert_eq!(parse_fraction("0.01"), Ok(0.01));
        assert!(parse_fraction("5").is_err());
    }

    #[test]
    fn open_model_arrivals_ramp_then_hold_the_rate() {
        let start = tokio::time::Instant::now();
        let plan = Plan {
            users: 1,
            rate: Some(10.0),
            deadline: None,
            iterations: None,
            ramp: Duration::from_secs(2),
            start,
        };
        // 10/s ramped over 2 s: 10 arrivals during the ramp, then one every 100 ms.
        let at = |k| (plan.arrival_at(k, 10.0) - start).as_secs_f64();
        assert_eq!(at(0), 0.0);
        assert!((at(10) - 2.0).abs() < 1e-9);
        assert!((at(20) - 3.0).abs() < 1e-9);
        assert!(
            at(5) > 1.0 && at(5) < 2.0,
            "the ramp starts slow: {}",
            at(5)
        );
        let flat = Plan {
            ramp: Duration::ZERO,
            ..plan
        };
        assert!(((flat.arrival_at(30, 10.0) - start).as_secs_f64() - 3.0).abs() < 1e-9);
    }
}
