//! TAP version 13: a plan, one `ok`/`not ok` line per scenario, YAML diagnostics for
//! failures and `# SKIP reason` for skipped scenarios.
//!
//! YAML values are written as JSON strings, which are valid YAML double-quoted scalars, so no
//! scenario text can break the block.

use std::io::Write;
use std::path::Path;

use crate::runner::{ScenarioResult, Status};

use super::render::{self, FailureRender};
use super::terminal::level_name;
use super::{to_io, write_file_atomically, Report};

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("string serializes")
}

/// A TAP description may not contain `#` unescaped (it starts a directive) nor a newline.
fn description(name: &str) -> String {
    render::one_line(&name.replace('\\', "\\\\")).replace('#', "\\#")
}

pub fn write_tap(report: &Report, mut w: impl Write) -> std::io::Result<()> {
    writeln!(w, "TAP version 13")?;
    writeln!(w, "1..{}", report.scenarios.len())?;
    for (i, s) in report.scenarios.iter().enumerate() {
        write_case(&mut w, i + 1, s, &report.run.target)?;
    }
    writeln!(
        w,
        "# verdict: {} ({} passed, {} failed, {} skipped, {} flaky)",
        report.summary.verdict,
        report.summary.passed,
        report.summary.failed,
        report.summary.skipped,
        report.summary.flaky
    )
}

fn write_case(
    w: &mut impl Write,
    n: usize,
    s: &ScenarioResult,
    target: &str,
) -> std::io::Result<()> {
    let name = description(&s.name);
    match s.status {
        Status::Passed => writeln!(w, "ok {n} - {name}"),
        Status::Flaky => writeln!(
            w,
            "ok {n} - {name} (flaky: passed on attempt {})",
            s.attempts
        ),
        Status::Skipped => {
            let reason = s
                .skip_reason
                .as_deref()
                .map(description)
                .unwrap_or_default();
            writeln!(w, "ok {n} - {name} # SKIP {reason}")
        }
        Status::Failed => {
            writeln!(w, "not ok {n} - {name}")?;
            writeln!(w, "  ---")?;
            let first = s.failures.first();
            writeln!(
                w,
                "  message: {}",
                q(first.map(|f| f.message.as_str()).unwrap_or("failed"))
            )?;
            writeln!(w, "  severity: fail")?;
            writeln!(w, "  level: {}", level_name(s.level))?;
            if let Some(f) = first {
                writeln!(w, "  kind: {}", render::kind_label(f))?;
            }
            writeln!(w, "  at: {}", q(&s.location))?;
            writeln!(w, "  duration_ms: {:.3}", s.duration.as_secs_f64() * 1000.0)?;
            writeln!(w, "  failures:")?;
            for f in &s.failures {
                writeln!(w, "    - kind: {}", render::kind_label(f))?;
                writeln!(w, "      message: {}", q(&f.message))?;
                if let Some(step) = &f.step {
                    writeln!(w, "      step: {}", q(&render::step_label(step)))?;
                }
                if let Some(e) = &f.expected {
                    writeln!(w, "      expected: {}", q(e))?;
                }
                if !f.detail.is_empty() {
                    writeln!(w, "      detail:")?;
                    for d in &f.detail {
                        writeln!(w, "        - {}", q(d))?;
                    }
                }
                if let Some(sv) = &f.schema {
                    writeln!(w, "      schema:")?;
                    writeln!(w, "        instance_path: {}", q(&sv.instance_path))?;
                    writeln!(w, "        keyword: {}", q(&sv.keyword))?;
                    writeln!(w, "        schema_path: {}", q(&sv.schema_path))?;
                    writeln!(w, "        message: {}", q(&sv.message))?;
                }
                if let Some(r) = &f.rule {
                    writeln!(w, "      rule: {}", q(r))?;
                }
                if let Some(t) = render::failure_transcript(s, f) {
                    let marked = f.frame.iter().map(|fr| fr.seq).collect();
                    writeln!(w, "      frames:")?;
                    for l in
                        render::transcript_lines(t, &marked, FailureRender::default().frames, 160)
                            .iter()
                            .skip(1)
                    {
                        writeln!(w, "        - {}", q(l.text().trim_end()))?;
                    }
                }
            }
            writeln!(
                w,
                "  rerun: {}",
                q(&render::rerun_command(s, render::rerun_target(target)))
            )?;
            writeln!(w, "  ...")
        }
    }
}

/// Writes the TAP 13 report of a finished run to `path` (atomically).
pub fn write_file(path: &Path, report: &Report) -> std::io::Result<()> {
    write_file_atomically(path, |w| write_tap(report, w)).map_err(to_io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{sample, Collector};

    fn tap() -> String {
        let mut c = Collector::default();
        for e in sample::events() {
            c.on_event(&e);
        }
        let mut out = Vec::new();
        write_tap(&c.report(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn snapshot() {
        let t = tap();
        insta::with_settings!({filters => vec![
            (r"duration_ms: [0-9.]+", "duration_ms: [DURATION]"),
            (r"\d+\.\d+ m?s", "[DURATION]"),
        ]}, { insta::assert_snapshot!("tap_full_run", t) });
    }

    #[test]
    fn plan_and_directives() {
        let t = tap();
        assert!(t.starts_with("TAP version 13\n1..6\n"), "{t}");
        assert!(
            t.contains("ok 4 - binary frames # SKIP requires: binary\n"),
            "{t}"
        );
        assert!(
            t.contains("not ok 2 - tokens arrive in order\n  ---\n"),
            "{t}"
        );
        assert_eq!(t.matches("  ...\n").count(), 2);
    }

    #[test]
    fn hash_in_name_is_escaped() {
        assert_eq!(description("issue #3\nx"), "issue \\#3\\nx");
    }
}
