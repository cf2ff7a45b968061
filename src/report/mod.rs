//! Reporters: consumers of [`RunEvent`]s (terminal, JSON, JUnit, TAP, HTML).
//!
//! The runner never calls into a reporter directly: the CLI forwards each event, in order,
//! to every configured reporter. Reporters hold whatever they need to render at `finish`.
//!
//! The CLI builds everything from [`ReportOptions`]: the result is a [`ReportSet`], itself a
//! [`Reporter`], that redacts every event once, fans it out to the configured reporters and,
//! after `finish`, gives the exit [`Decision`] (verdict + baseline).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runner::{RunEvent, RunInfo, RunSummary, ScenarioResult};
use crate::scenario::Level;

pub mod baseline;
pub mod html;
pub mod json;
pub mod junit;
pub mod merge;
pub mod redact;
pub mod render;
#[doc(hidden)]
pub mod sample;
pub mod tap;
pub mod terminal;
pub mod verdict;

pub use baseline::{Baseline, BaselineEntry, Decision};
pub use json::read_json_report;
pub use merge::merge_reports;
pub use redact::{Redactor, Secret};
pub use terminal::{ColorChoice, TerminalReporter};
pub use verdict::{ByLevel, LevelCounts, Verdict};

/// A consumer of run events.
pub trait Reporter: Send {
    /// Called for every event, in emission order.
    fn on_event(&mut self, event: &RunEvent);
    /// Called once after `RunFinished`: write files, print the summary.
    fn finish(&mut self) -> std::io::Result<()>;
}

/// Errors of the reporting side, each naming the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a wschat-check JSON report: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: report version {found} is not supported (expected {expected})")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{path}: {message}")]
    Baseline { path: PathBuf, message: String },
    #[error("--secret {arg:?}: {message}")]
    Secret { arg: String, message: String },
    #[error(transparent)]
    Merge(#[from] merge::MergeError),
    #[error("{path}: cannot write JUnit XML: {message}")]
    Junit { path: PathBuf, message: String },
}

impl ReportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The JSON report format version.
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

impl ToolInfo {
    pub fn current() -> Self {
        ToolInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// Run totals plus the verdict; counts are always derived from the scenarios.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportSummary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub flaky: usize,
    #[serde(with = "crate::runner::duration_ms")]
    pub duration: Duration,
    pub verdict: Verdict,
    pub by_level: ByLevel,
}

/// A whole run: what the JSON report holds and what every file writer renders.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub tool: ToolInfo,
    pub run: RunInfo,
    pub summary: ReportSummary,
    pub scenarios: Vec<ScenarioResult>,
}

impl Report {
    /// Builds a report, deriving counts and verdict from `scenarios`.
    pub fn new(run: RunInfo, scenarios: Vec<ScenarioResult>, duration: Duration) -> Self {
        let by_level = ByLevel::from_results(&scenarios);
        let t = by_level.total();
        Report {
            version: REPORT_VERSION,
            tool: ToolInfo::current(),
            run,
            summary: ReportSummary {
                passed: t.passed,
                failed: t.failed,
                skipped: t.skipped,
                flaky: t.flaky,
                duration,
                verdict: by_level.verdict(),
                by_level,
            },
            scenarios,
        }
    }

    /// The events that reproduce this report, so any reporter can render a stored or merged
    /// report exactly as it renders a live run.
    pub fn events(&self) -> Vec<RunEvent> {
        let mut ev = Vec::with_capacity(self.scenarios.len() * 2 + 2);
        ev.push(RunEvent::RunStarted(self.run.clone()));
        for (index, s) in self.scenarios.iter().enumerate() {
            ev.push(RunEvent::ScenarioStarted {
                index,
                name: s.name.clone(),
            });
            ev.push(RunEvent::ScenarioFinished {
                index,
                result: Box::new(s.clone()),
            });
        }
        ev.push(RunEvent::RunFinished(RunSummary {
            passed: self.summary.passed,
            failed: self.summary.failed,
            skipped: self.summary.skipped,
            flaky: self.summary.flaky,
            duration: self.summary.duration,
        }));
        ev
    }
}

/// Gathers events into a [`Report`]; scenarios end up in run order whatever order they
/// finished in.
#[derive(Debug, Default, Clone)]
pub struct Collector {
    run: Option<RunInfo>,
    results: std::collections::BTreeMap<usize, ScenarioResult>,
    summary: Option<RunSummary>,
}

impl Collector {
    pub fn on_event(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted(info) => self.run = Some(info.clone()),
            RunEvent::ScenarioStarted { .. } => {}
            RunEvent::ScenarioFinished { index, result } => {
                self.results.insert(*index, (**result).clone());
            }
            RunEvent::RunFinished(s) => self.summary = Some(s.clone()),
        }
    }

    pub fn run_info(&self) -> Option<&RunInfo> {
        self.run.as_ref()
    }

    pub fn results(&self) -> impl Iterator<Item = &ScenarioResult> {
        self.results.values()
    }

    /// Whether `RunFinished` arrived (a report without it is from an interrupted run).
    pub fn finished(&self) -> bool {
        self.summary.is_some()
    }

    pub fn report(&self) -> Report {
        self.clone().into_report()
    }

    /// The report, moving the results rather than copying them.
    pub fn into_report(self) -> Report {
        let scenarios: Vec<ScenarioResult> = self.results.into_values().collect();
        let run = self.run.unwrap_or_else(|| RunInfo {
            target: "unknown".into(),
            total: scenarios.len(),
            // The report format requires an RFC 3339 time; the run's own start is unknown.
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            jobs: 0,
        });
        let duration = self
            .summary
            .as_ref()
            .map(|s| s.duration)
            .unwrap_or_else(|| scenarios.iter().map(|s| s.duration).sum());
        Report::new(run, scenarios, duration)
    }
}

/// Writes a file through a temporary sibling and a rename, so a reader never sees half a
/// report and an old report is not destroyed by a failed write.
pub(crate) fn write_file_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> Result<(), ReportError> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| ReportError::io(parent, e))?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let f = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::new(f);
        write(&mut w)?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(ReportError::io(path, e));
    }
    Ok(())
}

/// Converts a typed error for the `Reporter::finish` signature, keeping it as the source.
pub(crate) fn to_io(e: ReportError) -> std::io::Error {
    match e {
        ReportError::Io { source, path } => {
            std::io::Error::new(source.kind(), format!("{}: {source}", path.display()))
        }
        other => std::io::Error::other(other),
    }
}

/// What the CLI knows about reporting, straight from its flags.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// `--report-json FILE`
    pub json: Option<PathBuf>,
    /// `--report-junit FILE`
    pub junit: Option<PathBuf>,
    /// `--report-tap FILE`
    pub tap: Option<PathBuf>,
    /// `--report-html FILE`
    pub html: Option<PathBuf>,
    /// `--color auto|always|never`
    pub color: ColorChoice,
    /// `--secret NAME=VALUE`, repeatable.
    pub secrets: Vec<Secret>,
    /// Also redact `WSCHAT_TOKEN` from the environment (on by default).
    pub env_secrets: bool,
    /// `--baseline FILE`
    pub baseline: Option<PathBuf>,
    /// `--target URL` as given, for the re-run command (None: the embedded server).
    pub target: Option<String>,
    /// Failures at this level or stricter fail the run (default: `Must`).
    pub fail_level: Level,
    /// Frames shown per failure on the terminal.
    pub frames: usize,
    /// Whether to print to the terminal at all (`false` for `--quiet`-style runs).
    pub terminal: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            json: None,
            junit: None,
            tap: None,
            html: None,
            color: ColorChoice::Auto,
            secrets: Vec::new(),
            env_secrets: true,
            baseline: None,
            target: None,
            fail_level: Level::Must,
            frames: 8,
            terminal: true,
        }
    }
}

impl ReportOptions {
    /// Builds the reporters: the terminal one (stdout, progress on stderr) and one per file.
    /// Fails early, before anything runs, on an unreadable baseline.
    pub fn build(&self) -> Result<ReportSet, ReportError> {
        let baseline = match &self.baseline {
            Some(p) => Some(Baseline::load(p)?),
            None => None,
        };
        let mut redactor = Redactor::new(self.secrets.iter().cloned());
        if self.env_secrets {
            redactor.add_env_tokens();
        }
        for w in redactor.warnings() {
            eprintln!("{w}");
        }
        let mut reporters: Vec<Box<dyn Reporter>> = Vec::new();
        if self.terminal {
            let mut t = TerminalReporter::stdout(self.color)
                .with_target(self.target.clone())
                .with_frames(self.frames)
                .with_fail_level(self.fail_level);
            if let Some(b) = &baseline {
                t = t.with_baseline(b.clone());
            }
            reporters.push(Box::new(t));
        }
        let files = [
            self.json.clone().map(ReportFile::Json),
            self.junit.clone().map(ReportFile::Junit),
            self.tap.clone().map(ReportFile::Tap),
            self.html.clone().map(ReportFile::Html),
        ]
        .into_iter()
        .flatten()
        .collect();
        Ok(ReportSet {
            reporters,
            files,
            redactor,
            baseline,
            fail_level: self.fail_level,
            collector: Collector::default(),
            report: None,
        })
    }
}

/// A report file, written once from the run's one collected [`Report`] when the run is finished.
/// (The file formats need the whole run; letting each keep its own copy of every result, transcripts
/// included, multiplied the memory of a large run by the number of formats.)
#[derive(Debug, Clone)]
pub enum ReportFile {
    Json(PathBuf),
    Junit(PathBuf),
    Tap(PathBuf),
    Html(PathBuf),
}

impl ReportFile {
    pub fn write(&self, report: &Report) -> std::io::Result<()> {
        match self {
            ReportFile::Json(p) => json::write_file(p, report),
            ReportFile::Junit(p) => junit::write_file(p, report),
            ReportFile::Tap(p) => tap::write_file(p, report),
            ReportFile::Html(p) => html::write_file(p, report),
        }
    }
}

/// The configured reporters behind one [`Reporter`]: redacts each event once, forwards it to
/// the live reporters (the terminal), collects the run once for the report files, and decides the
/// run's outcome.
pub struct ReportSet {
    reporters: Vec<Box<dyn Reporter>>,
    files: Vec<ReportFile>,
    redactor: Redactor,
    baseline: Option<Baseline>,
    fail_level: Level,
    collector: Collector,
    /// The collected run, once `finish` has moved it out of the collector.
    report: Option<Report>,
}

impl ReportSet {
    /// A set of explicit reporters (tests, embedders).
    pub fn new(reporters: Vec<Box<dyn Reporter>>, redactor: Redactor) -> Self {
        ReportSet {
            reporters,
            files: Vec::new(),
            redactor,
            baseline: None,
            fail_level: Level::Must,
            collector: Collector::default(),
            report: None,
        }
    }

    /// Adds a report file, written at `finish`.
    pub fn with_file(mut self, file: ReportFile) -> Self {
        self.files.push(file);
        self
    }

    pub fn with_baseline(mut self, baseline: Option<Baseline>) -> Self {
        self.baseline = baseline;
        self
    }

    pub fn with_fail_level(mut self, level: Level) -> Self {
        self.fail_level = level;
        self
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Feeds a stored (e.g. merged) report through every reporter, then finishes them.
    pub fn replay(&mut self, report: &Report) -> std::io::Result<()> {
        for e in report.events() {
            self.on_event(&e);
        }
        self.finish()
    }

    /// The outcome of everything seen so far (call after `finish`).
    pub fn decision(&self) -> Decision {
        let results: Vec<&ScenarioResult> = match &self.report {
            Some(r) => r.scenarios.iter().collect(),
            None => self.collector.results().collect(),
        };
        baseline::decide(results, self.baseline.as_ref(), self.fail_level)
    }
}

impl Reporter for ReportSet {
    fn on_event(&mut self, event: &RunEvent) {
        let mut event = event.clone();
        self.redactor.redact_event(&mut event);
        self.collector.on_event(&event);
        for r in &mut self.reporters {
            r.on_event(&event);
        }
    }

    /// Finishes every reporter and writes every file even when one fails, then reports the first
    /// error.
    fn finish(&mut self) -> std::io::Result<()> {
        let mut first_err = None;
        for r in &mut self.reporters {
            if let Err(e) = r.finish() {
                first_err.get_or_insert(e);
            }
        }
        let mut report = std::mem::take(&mut self.collector).into_report();
        // The files say what the terminal says and the exit code does (`--fail-level`).
        report.summary.verdict = report.summary.by_level.verdict_at(self.fail_level);
        for f in &self.files {
            if let Err(e) = f.write(&report) {
                first_err.get_or_insert(e);
            }
        }
        self.report = Some(report);
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Status;

    #[test]
    fn collector_orders_by_index_and_counts() {
        let mut c = Collector::default();
        for e in sample::events() {
            c.on_event(&e);
        }
        assert!(c.finished());
        let r = c.report();
        let names: Vec<_> = r.scenarios.iter().map(|s| s.name.clone()).collect();
        let expected: Vec<_> = sample::results().into_iter().map(|s| s.name).collect();
        assert_eq!(names, expected);
        assert_eq!(r.summary.failed, 2);
        assert_eq!(r.summary.flaky, 1);
        assert_eq!(r.summary.skipped, 1);
        assert_eq!(r.summary.passed, 2);
        assert_eq!(r.summary.verdict, Verdict::NotConformant);
        assert_eq!(r.summary.duration, Duration::from_millis(1234));
    }

    #[test]
    fn interrupted_run_still_reports() {
        let mut c = Collector::default();
        c.on_event(&RunEvent::ScenarioFinished {
            index: 0,
            result: Box::new(sample::passed("a", Level::Must)),
        });
        let r = c.report();
        assert!(!c.finished());
        assert_eq!(r.run.target, "unknown");
        assert_eq!(r.summary.verdict, Verdict::Conformant);
    }

    #[test]
    fn events_round_trip_through_collector() {
        let mut c = Collector::default();
        for e in sample::events() {
            c.on_event(&e);
        }
        let r1 = c.report();
        let mut c2 = Collector::default();
        for e in r1.events() {
            c2.on_event(&e);
        }
        let r2 = c2.report();
        assert_eq!(
            serde_json::to_value(&r1).unwrap(),
            serde_json::to_value(&r2).unwrap()
        );
    }

    /// A reporter that records what it saw, to check the set redacts before forwarding.
    struct Spy(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
    impl Reporter for Spy {
        fn on_event(&mut self, e: &RunEvent) {
            if let RunEvent::ScenarioFinished { result, .. } = e {
                self.0
                    .lock()
                    .unwrap()
                    .push(serde_json::to_string(result).unwrap());
            }
        }
        fn finish(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::other("spy refuses"))
        }
    }

    #[test]
    fn set_redacts_forwards_and_finishes_all() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen2 = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let redactor = Redactor::new([Secret::new("KEY", "hunter2-secret")]);
        let mut set = ReportSet::new(
            vec![Box::new(Spy(seen.clone())), Box::new(Spy(seen2.clone()))],
            redactor,
        );
        let mut r = sample::passed("uses hunter2-secret", Level::Must);
        r.status = Status::Passed;
        set.on_event(&RunEvent::ScenarioFinished {
            index: 0,
            result: Box::new(r),
        });
        let err = set.finish().unwrap_err();
        assert!(err.to_string().contains("spy refuses"));
        for s in [&seen, &seen2] {
            let v = s.lock().unwrap();
            assert_eq!(v.len(), 1);
            assert!(!v[0].contains("hunter2-secret"), "{}", v[0]);
            assert!(v[0].contains("***KEY***"));
        }
        assert!(set.decision().success);
    }

    #[test]
    fn atomic_write_creates_dirs_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("wschat-report-atomic-{}", std::process::id()));
        let path = dir.join("sub/out.txt");
        write_file_atomically(&path, |w| w.write_all(b"hello")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        let err = write_file_atomically(&path, |_| Err(std::io::Error::other("boom"))).unwrap_err();
        assert!(err.to_string().contains("out.txt"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
