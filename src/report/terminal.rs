//! The terminal reporter: a live progress bar on a TTY (stderr), one line per finished
//! scenario, then every failure in full, a summary by conformance level and the verdict.
//!
//! Writes to any `impl Write`, so tests capture exactly what a user sees.

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use colored::Color;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::runner::{RunEvent, RunInfo, RunSummary, ScenarioResult, Status};
use crate::scenario::Level;

use super::baseline::{self, Baseline};
use super::render::{self, FailureRender, Line, Tone};
use super::{Collector, Reporter};

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Decides colour for one stream. `NO_COLOR` (any non-empty value, per no-color.org)
    /// wins over `Auto` but not over an explicit `Always`.
    pub fn resolve(self, no_color: Option<&OsStr>, is_tty: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_tty && no_color.is_none_or(|v| v.is_empty()),
        }
    }

    /// [`ColorChoice::resolve`] with this process's environment.
    pub fn resolve_env(self, is_tty: bool) -> bool {
        self.resolve(std::env::var_os("NO_COLOR").as_deref(), is_tty)
    }
}

/// Applies tones as ANSI colours. The decision is per reporter, not colored's process-wide
/// switch, so two reporters (or parallel tests) with different choices do not interfere.
#[derive(Debug, Clone, Copy)]
struct Painter {
    enabled: bool,
}

impl Painter {
    fn paint(&self, tone: Tone, text: &str) -> String {
        if !self.enabled || text.is_empty() {
            return text.to_string();
        }
        let (color, bold) = match tone {
            Tone::Normal => return text.to_string(),
            Tone::Strong => (None, true),
            Tone::Dim => (Some(Color::BrightBlack), false),
            Tone::Bad => (Some(Color::Red), true),
            Tone::Good => (Some(Color::Green), true),
            Tone::Warn => (Some(Color::Yellow), true),
        };
        let mut codes = Vec::new();
        if bold {
            codes.push("1".to_string());
        }
        if let Some(c) = color {
            codes.push(c.to_fg_str().into_owned());
        }
        format!("\x1b[{}m{text}\x1b[0m", codes.join(";"))
    }

    fn line(&self, line: &Line) -> String {
        line.0.iter().map(|(t, s)| self.paint(*t, s)).collect()
    }
}

pub struct TerminalReporter<W: Write + Send = Box<dyn Write + Send>> {
    out: W,
    painter: Painter,
    progress: Option<ProgressBar>,
    target: Option<String>,
    render: FailureRender,
    fail_level: Level,
    baseline: Option<Baseline>,
    collector: Collector,
    /// The first write error; reported by `finish` since `on_event` cannot fail.
    error: Option<std::io::Error>,
}

impl TerminalReporter<Box<dyn Write + Send>> {
    /// Lines on stdout (coloured per `choice` and stdout being a terminal); the progress bar
    /// on stderr, only when stderr is a terminal.
    pub fn stdout(choice: ColorChoice) -> Self {
        let color = choice.resolve_env(std::io::stdout().is_terminal());
        let mut t =
            TerminalReporter::new(Box::new(std::io::stdout()) as Box<dyn Write + Send>, color);
        if std::io::stderr().is_terminal() {
            let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            t = t.with_progress(pb);
        }
        t
    }
}

impl<W: Write + Send> TerminalReporter<W> {
    pub fn new(out: W, color: bool) -> Self {
        TerminalReporter {
            out,
            painter: Painter { enabled: color },
            progress: None,
            target: None,
            render: FailureRender::default(),
            fail_level: Level::Must,
            baseline: None,
            collector: Collector::default(),
            error: None,
        }
    }

    pub fn with_progress(mut self, pb: ProgressBar) -> Self {
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}",
            )
            .expect("static template"),
        );
        self.progress = Some(pb);
        self
    }

    /// The `--target` given on the command line, for the re-run command.
    pub fn with_target(mut self, target: Option<String>) -> Self {
        self.target = target;
        self
    }

    /// How many transcript frames to show per failure.
    pub fn with_frames(mut self, frames: usize) -> Self {
        self.render.frames = frames;
        self
    }

    pub fn with_fail_level(mut self, level: Level) -> Self {
        self.fail_level = level;
        self
    }

    pub fn with_baseline(mut self, baseline: Baseline) -> Self {
        self.baseline = Some(baseline);
        self
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    fn emit(&mut self, lines: &[Line]) {
        if self.error.is_some() {
            return;
        }
        let text: String = lines.iter().map(|l| self.painter.line(l) + "\n").collect();
        let out = &mut self.out;
        // Printing while the bar is drawn would tear it: hide it for the write.
        let res = match &self.progress {
            Some(pb) => pb.suspend(|| out.write_all(text.as_bytes()).and_then(|_| out.flush())),
            None => out.write_all(text.as_bytes()),
        };
        if let Err(e) = res {
            self.error = Some(e);
        }
    }

    fn on_run_started(&mut self, info: &RunInfo) {
        if let Some(pb) = &self.progress {
            pb.set_length(info.total as u64);
            pb.enable_steady_tick(Duration::from_millis(120));
        }
        self.emit(&[Line::new()
            .push(Tone::Strong, format!("Running {} scenario(s)", info.total))
            .push(
                Tone::Normal,
                format!(" against {} (jobs: {})", info.target, info.jobs),
            )]);
    }

    fn on_finished(&mut self, r: &ScenarioResult) {
        if let Some(pb) = &self.progress {
            pb.inc(1);
        }
        let line = status_line(r);
        self.emit(&[line]);
    }

    fn failure_section(&self, results: &[&ScenarioResult]) -> Vec<Line> {
        let failed: Vec<&&ScenarioResult> = results
            .iter()
            .filter(|r| r.status == Status::Failed)
            .collect();
        let mut lines = Vec::new();
        if failed.is_empty() {
            return lines;
        }
        lines.push(Line::new());
        lines.push(Line::new().push(Tone::Strong, format!("Failures ({}):", failed.len())));
        for r in failed {
            lines.push(Line::new());
            lines.push(
                Line::new()
                    .push(Tone::Bad, "FAIL ")
                    .push(Tone::Strong, r.name.clone())
                    .push(
                        Tone::Dim,
                        format!(" ({}, {})", level_name(r.level), r.location),
                    ),
            );
            if let Some(e) = self.baseline.as_ref().and_then(|b| b.get(&r.name)) {
                lines.push(Line::new().push(
                    Tone::Warn,
                    format!(
                        "  known failure (baseline){}",
                        e.reason.as_ref().map(|s| format!(": {s}")).unwrap_or_default()
                    ),
                ));
            }
            for block in render::scenario_failure_blocks(r, self.render) {
                for (i, l) in block.into_iter().enumerate() {
                    let indent = if i == 0 { "  " } else { "    " };
                    let mut spans = vec![(Tone::Normal, indent.to_string())];
                    spans.extend(l.0);
                    lines.push(Line(spans));
                }
            }
            lines.push(Line::new().push(Tone::Dim, "  re-run: ").push(
                Tone::Normal,
                render::rerun_command(r, self.target.as_deref()),
            ));
        }
        lines
    }

    fn summary_section(
        &self,
        results: &[&ScenarioResult],
        summary: Option<&RunSummary>,
    ) -> Vec<Line> {
        let d = baseline::decide(
            results.iter().copied(),
            self.baseline.as_ref(),
            self.fail_level,
        );
        let mut lines = vec![
            Line::new(),
            Line::new().push(Tone::Strong, "Summary by level:"),
            Line::new().push(
                Tone::Dim,
                format!(
                    "  {:<8}{:>8}{:>8}{:>9}{:>7}",
                    "level", "passed", "failed", "skipped", "flaky"
                ),
            ),
        ];
        for (level, c) in d.by_level.iter() {
            let tone = if c.failed > 0 {
                if level == Level::Must {
                    Tone::Bad
                } else {
                    Tone::Warn
                }
            } else {
                Tone::Normal
            };
            lines.push(Line::new().push(
                tone,
                format!(
                    "  {:<8}{:>8}{:>8}{:>9}{:>7}",
                    level_name(level),
                    c.passed,
                    c.failed,
                    c.skipped,
                    c.flaky
                ),
            ));
        }
        let t = d.by_level.total();
        let duration = summary
            .map(|s| s.duration)
            .unwrap_or_else(|| results.iter().map(|r| r.duration).sum());
        lines.push(Line::new().push(
            Tone::Strong,
            format!(
                "  {:<8}{:>8}{:>8}{:>9}{:>7}   in {}",
                "total",
                t.passed,
                t.failed,
                t.skipped,
                t.flaky,
                render::fmt_duration(duration)
            ),
        ));
        if !d.known_failures.is_empty() {
            lines.push(Line::new().push(
                Tone::Warn,
                format!(
                    "Baseline: {} known failure(s) tolerated: {}",
                    d.known_failures.len(),
                    d.known_failures.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if !d.stale.is_empty() {
            lines.push(Line::new().push(
                Tone::Bad,
                format!(
                    "Baseline: {} stale entr{} (now passing, remove from the baseline): {}",
                    d.stale.len(),
                    if d.stale.len() == 1 { "y" } else { "ies" },
                    d.stale.join(", ")
                ),
            ));
        }
        if !d.unmatched.is_empty() {
            lines.push(Line::new().push(
                Tone::Dim,
                format!("Baseline: not in this run: {}", d.unmatched.join(", ")),
            ));
        }
        if self.baseline.is_some() && !d.new_failures.is_empty() {
            lines.push(Line::new().push(
                Tone::Bad,
                format!(
                    "New failure(s) not in the baseline: {}",
                    d.new_failures.join(", ")
                ),
            ));
        }
        if summary.is_none() {
            lines
                .push(Line::new().push(Tone::Warn, "The run did not finish: results are partial."));
        }
        let tone = match d.verdict {
            super::Verdict::Conformant => Tone::Good,
            super::Verdict::ConformantWithWarnings => Tone::Warn,
            super::Verdict::NotConformant => Tone::Bad,
        };
        lines.push(
            Line::new()
                .push(Tone::Strong, "Verdict: ")
                .push(tone, d.verdict.as_str())
                .push(Tone::Dim, verdict_reason(&d, self.fail_level)),
        );
        lines
    }
}

fn verdict_reason(d: &baseline::Decision, fail_level: Level) -> String {
    let must = d.by_level.must.failed;
    let other = d.by_level.should.failed + d.by_level.may.failed;
    let counts = match (must, other) {
        (0, 0) => return String::new(),
        (0, n) => format!("{n} should/may failure(s)"),
        (m, 0) => format!("{m} must failure(s)"),
        (m, n) => format!("{m} must failure(s), {n} should/may failure(s)"),
    };
    // Below `must`, a failure counts as non-conformance only because `--fail-level` says so.
    let stricter: Vec<&str> = [Level::Should, Level::May]
        .into_iter()
        .filter(|l| {
            d.by_level.get(*l).failed > 0 && super::verdict::level_fails_run(*l, fail_level)
        })
        .map(level_name)
        .collect();
    if stricter.is_empty() {
        format!(" ({counts})")
    } else {
        format!(
            " ({counts}; --fail-level {}: {} failures fail the run)",
            level_name(fail_level),
            stricter.join("/")
        )
    }
}

pub(crate) fn level_name(level: Level) -> &'static str {
    match level {
        Level::Must => "must",
        Level::Should => "should",
        Level::May => "may",
    }
}

/// `PASS  name  (12.3 ms, must)` and friends.
fn status_line(r: &ScenarioResult) -> Line {
    let (tone, word) = match r.status {
        Status::Passed => (Tone::Good, "PASS "),
        Status::Failed => (Tone::Bad, "FAIL "),
        Status::Skipped => (Tone::Warn, "SKIP "),
        Status::Flaky => (Tone::Warn, "FLAKY"),
    };
    let mut line = Line::new()
        .push(tone, word)
        .push(Tone::Normal, format!(" {}", r.name))
        .push(
            Tone::Dim,
            format!(
                " ({}, {})",
                render::fmt_duration(r.duration),
                level_name(r.level)
            ),
        );
    match r.status {
        Status::Skipped => {
            if let Some(reason) = &r.skip_reason {
                line = line.push(Tone::Dim, format!(": {reason}"));
            }
        }
        Status::Flaky => {
            line = line.push(Tone::Dim, format!(": passed on attempt {}", r.attempts));
        }
        Status::Failed => {
            if let Some(f) = r.failures.first() {
                line = line.push(Tone::Normal, format!(": {}", f.message));
            }
        }
        Status::Passed => {}
    }
    line
}

impl<W: Write + Send> Reporter for TerminalReporter<W> {
    fn on_event(&mut self, event: &RunEvent) {
        self.collector.on_event(event);
        match event {
            RunEvent::RunStarted(info) => self.on_run_started(info),
            RunEvent::ScenarioStarted { name, .. } => {
                if let Some(pb) = &self.progress {
                    pb.set_message(name.clone());
                }
            }
            RunEvent::ScenarioFinished { result, .. } => self.on_finished(result),
            RunEvent::RunFinished(_) => {}
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if let Some(pb) = self.progress.take() {
            pb.finish_and_clear();
        }
        let collector = std::mem::take(&mut self.collector);
        let results: Vec<&ScenarioResult> = collector.results().collect();
        let summary = collector
            .finished()
            .then(|| collector.report().summary)
            .map(|s| RunSummary {
                passed: s.passed,
                failed: s.failed,
                skipped: s.skipped,
                flaky: s.flaky,
                duration: s.duration,
            });
        let mut lines = self.failure_section(&results);
        lines.extend(self.summary_section(&results, summary.as_ref()));
        self.emit(&lines);
        self.collector = collector;
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::baseline::BaselineEntry;
    use crate::report::sample;

    fn render(t: TerminalReporter<Vec<u8>>) -> String {
        let mut t = t;
        for e in sample::events() {
            t.on_event(&e);
        }
        t.finish().unwrap();
        String::from_utf8(t.into_inner()).unwrap()
    }

    fn masked(f: impl FnOnce()) {
        insta::with_settings!({filters => vec![
            (r"\d+\.\d+ m?s", "[DURATION]"),
        ]}, { f() });
    }

    #[test]
    fn full_run_plain() {
        let out = render(
            TerminalReporter::new(Vec::new(), false)
                .with_target(Some("ws://127.0.0.1:4000/ws".into())),
        );
        assert!(!out.contains('\x1b'));
        masked(|| insta::assert_snapshot!("terminal_full_run_plain", out));
    }

    #[test]
    fn colour_always_emits_ansi_and_never_does_not() {
        let out = render(TerminalReporter::new(Vec::new(), true));
        assert!(out.contains("\x1b[1;31mFAIL \x1b[0m"), "{out:?}");
        assert!(out.contains("\x1b[1;32mPASS \x1b[0m"), "{out:?}");
    }

    #[test]
    fn color_choice_resolution() {
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        assert!(ColorChoice::Auto.resolve(None, true));
        assert!(!ColorChoice::Auto.resolve(None, false));
        assert!(!ColorChoice::Auto.resolve(set, true));
        assert!(ColorChoice::Auto.resolve(empty, true));
        assert!(ColorChoice::Always.resolve(set, false));
        assert!(!ColorChoice::Never.resolve(None, true));
    }

    #[test]
    fn baseline_lines_in_summary() {
        let b = Baseline {
            source: None,
            entries: vec![
                BaselineEntry {
                    name: "tokens arrive in order".into(),
                    reason: Some("upstream bug".into()),
                },
                BaselineEntry {
                    name: "history endpoint".into(),
                    reason: None,
                },
            ],
        };
        let out = render(TerminalReporter::new(Vec::new(), false).with_baseline(b));
        assert!(
            out.contains("known failure (baseline): upstream bug"),
            "{out}"
        );
        assert!(
            out.contains("1 known failure(s) tolerated: tokens arrive in order"),
            "{out}"
        );
        assert!(
            out.contains("1 stale entry (now passing, remove from the baseline): history endpoint"),
            "{out}"
        );
    }

    #[test]
    fn conformant_run_and_partial_run() {
        let mut t = TerminalReporter::new(Vec::new(), false);
        t.on_event(&RunEvent::RunStarted(sample::run_info()));
        t.on_event(&RunEvent::ScenarioFinished {
            index: 0,
            result: Box::new(sample::passed("a", Level::Must)),
        });
        t.finish().unwrap();
        let out = String::from_utf8(t.into_inner()).unwrap();
        assert!(out.contains("Verdict: conformant\n"), "{out}");
        assert!(out.contains("did not finish"), "{out}");
        assert!(!out.contains("Failures"), "{out}");
    }

    #[test]
    fn hidden_progress_bar_does_not_swallow_lines() {
        let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        let out = render(TerminalReporter::new(Vec::new(), false).with_progress(pb.clone()));
        assert!(out.contains("PASS  connect and receive connected"), "{out}");
        assert_eq!(pb.position(), 6);
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "closed",
            ))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_surface_in_finish() {
        let mut t = TerminalReporter::new(Broken, false);
        for e in sample::events() {
            t.on_event(&e);
        }
        assert_eq!(
            t.finish().unwrap_err().kind(),
            std::io::ErrorKind::BrokenPipe
        );
    }
}
