//! The verdict agrees with the exit code: `--fail-level should` turns a failed `should` scenario
//! into `not conformant` and exit 1, in the terminal and in the JSON report; the default level
//! keeps it a warning with exit 0. Real binary, embedded reference server.

use std::path::PathBuf;

mod support;
use support::{cmd, text};

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A suite with one `must` scenario that passes and one `should` scenario that fails at once.
fn suite() -> TempDir {
    let d = std::env::temp_dir().join(format!("wschat-verdict-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("wschat-suite.yaml"), "timeouts:\n  http: 5s\n").unwrap();
    std::fs::write(
        d.join("healthy.yaml"),
        "name: healthy\nlevel: must\nsteps:\n  - http: { path: /healthz, status: [200] }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("teapot.yaml"),
        "name: teapot\nlevel: should\nsteps:\n  - http: { path: /healthz, status: [418] }\n",
    )
    .unwrap();
    TempDir(d)
}

fn verdict_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.starts_with("Verdict: "))
        .unwrap_or_else(|| panic!("no verdict line in:\n{stdout}"))
}

#[test]
fn the_verdict_agrees_with_the_exit_code_at_every_fail_level() {
    let d = suite();
    for (level, code, verdict) in [
        ("must", 0, "conformant with warnings"),
        ("should", 1, "not conformant"),
        ("may", 1, "not conformant"),
    ] {
        let json = d.0.join(format!("report-{level}.json"));
        let out = cmd()
            .arg("run")
            .arg(&d.0)
            .args(["--fail-level", level, "--report-json"])
            .arg(&json)
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(code),
            "--fail-level {level}\n{stdout}\n{}",
            text(&out.stderr)
        );
        let line = verdict_line(&stdout);
        assert!(
            line.starts_with(&format!("Verdict: {verdict} (")),
            "--fail-level {level}: {line}"
        );
        if code == 1 {
            assert!(
                line.contains(&format!(
                    "--fail-level {level}: should failures fail the run"
                )),
                "{line}"
            );
        }
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(
            report["summary"]["verdict"], verdict,
            "--fail-level {level}"
        );
    }
}
