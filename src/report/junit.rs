//! JUnit XML (via quick-junit, the writer cargo-nextest uses): one `<testsuite>` per
//! conformance level, one `<testcase>` per scenario. Failures carry the first failure's message,
//! its kind as `type`, and every failure with its transcript excerpt as text; skipped cases
//! carry the reason; flaky cases are successes with `<flakyFailure>` entries, as nextest does.

use std::io::Write;
use std::path::Path;

use quick_junit::{
    NonSuccessKind, Property, Report as JReport, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use crate::runner::{ScenarioResult, Status};
use crate::scenario::Level;

use super::render::{self, FailureRender};
use super::terminal::level_name;
use super::{to_io, write_file_atomically, Report, ReportError};

/// Builds the JUnit document of a report.
pub fn junit_report(report: &Report) -> JReport {
    let mut j = JReport::new("wschat-check");
    j.set_time(report.summary.duration);
    for level in [Level::Must, Level::Should, Level::May] {
        let cases: Vec<&ScenarioResult> = report
            .scenarios
            .iter()
            .filter(|s| s.level == level)
            .collect();
        if cases.is_empty() {
            continue;
        }
        let mut suite = TestSuite::new(level_name(level));
        suite.set_time(cases.iter().map(|c| c.duration).sum());
        suite.add_property(Property::new("target", report.run.target.as_str()));
        suite.add_property(Property::new("verdict", report.summary.verdict.as_str()));
        for s in cases {
            suite.add_test_case(test_case(s, &report.run.target));
        }
        j.add_test_suite(suite);
    }
    j
}

fn test_case(s: &ScenarioResult, target: &str) -> TestCase {
    let opts = FailureRender::default();
    let status = match s.status {
        Status::Passed => TestCaseStatus::success(),
        Status::Failed => {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            if let Some(f) = s.failures.first() {
                st.set_message(f.message.as_str());
                st.set_type(render::kind_label(f));
            } else {
                st.set_message("failed");
            }
            let mut body = render::failures_text(s, opts);
            body.push_str(&format!(
                "\nre-run: {}\n",
                render::rerun_command(s, render::rerun_target(target))
            ));
            st.set_description(body);
            st
        }
        Status::Skipped => {
            let mut st = TestCaseStatus::skipped();
            st.set_message(s.skip_reason.as_deref().unwrap_or("skipped"));
            st
        }
        Status::Flaky => {
            let mut st = TestCaseStatus::success();
            // The results keep no per-attempt detail beyond failures possibly recorded from
            // earlier attempts; one flakyFailure per failed attempt is what consumers count.
            let failed_attempts = s.attempts.saturating_sub(1).max(1);
            for i in 0..failed_attempts {
                let mut rerun = TestRerun::new(NonSuccessKind::Failure);
                match s.failures.get(i as usize) {
                    Some(f) => {
                        rerun.set_message(f.message.as_str());
                        rerun.set_type(render::kind_label(f));
                    }
                    None => {
                        rerun.set_message(format!(
                            "attempt {} failed; passed on attempt {}",
                            i + 1,
                            s.attempts
                        ));
                        rerun.set_type("flaky");
                    }
                }
                st.add_rerun(rerun);
            }
            st
        }
    };
    let mut tc = TestCase::new(s.name.as_str(), status);
    tc.set_classname(s.file.as_str());
    tc.set_time(s.duration);
    tc.add_property(Property::new("level", level_name(s.level)));
    tc.add_property(Property::new("location", s.location.as_str()));
    if s.status == Status::Flaky {
        tc.add_property(Property::new("flaky", "true"));
        tc.add_property(Property::new("attempts", s.attempts.to_string()));
    }
    tc
}

/// Serializes the JUnit document of `report`.
pub fn write_junit(report: &Report, mut w: impl Write) -> Result<(), quick_junit::SerializeError> {
    junit_report(report).serialize(&mut w)
}

/// Writes the JUnit XML report of a finished run to `path` (atomically).
pub fn write_file(path: &Path, report: &Report) -> std::io::Result<()> {
    let xml = junit_report(report).to_string().map_err(|e| {
        to_io(ReportError::Junit {
            path: path.to_owned(),
            message: e.to_string(),
        })
    })?;
    write_file_atomically(path, |w| w.write_all(xml.as_bytes())).map_err(to_io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{sample, Collector};

    fn xml() -> String {
        let mut c = Collector::default();
        for e in sample::events() {
            c.on_event(&e);
        }
        junit_report(&c.report()).to_string().unwrap()
    }

    #[test]
    fn snapshot() {
        let x = xml();
        insta::with_settings!({filters => vec![
            (r#"time="[0-9.]+""#, r#"time="[TIME]""#),
            (r"\d+\.\d+ m?s", "[DURATION]"),
        ]}, { insta::assert_snapshot!("junit_full_run", x) });
    }

    #[test]
    fn structure() {
        let x = xml();
        assert!(
            x.contains(r#"<testsuite name="must" tests="2" skipped="0" errors="0" failures="1""#),
            "{x}"
        );
        assert!(
            x.contains(r#"<failure message="event `token` failed its schema" type="schema">"#),
            "{x}"
        );
        assert!(
            x.contains(r#"<skipped message="requires: binary"/>"#),
            "{x}"
        );
        assert!(x.contains("<flakyFailure"), "{x}");
        // Payload text is escaped, never raw markup.
        assert!(x.contains("hi &lt;b&gt;&amp;&lt;/b&gt;"), "{x}");
    }
}
