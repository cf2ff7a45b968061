//! Values at and beyond the limits of what the harness accepts, through the real binary: every
//! duration field over the documented maximum is a load error at its `file:line:col` (and a
//! command-line duration a usage error) instead of a panic at run time; the maximum itself runs.

use std::path::{Path, PathBuf};

mod support;
use support::{cmd, text};

/// A value humantime parses (2^63 s) that no deadline can hold.
const HUGE: &str = "9223372036854775808s";

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("wschat-limits-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 1-based line and column (in characters) of the first `needle` in `text`.
fn place_of(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {text}"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// A scenario with `steps` (YAML lines under `steps:`).
fn scenario(steps: &str) -> String {
    format!("name: limits\nsteps:\n{steps}")
}

/// Runs `validate` on `dir` and asserts a problem at the place of `needle` in `file` naming
/// `field` and the maximum.
#[track_caller]
fn assert_refused(dir: &Path, file: &Path, needle: &str, field: &str) {
    let out = cmd().arg("validate").arg(dir).output().unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{field}: exit code\n{all}");
    assert!(!all.contains("panicked"), "{field}: panic\n{all}");
    let (line, col) = place_of(&std::fs::read_to_string(file).unwrap(), needle);
    let want = format!(
        "{}:{line}:{col}: {field}: duration \"{HUGE}\" exceeds the maximum of 365 days",
        file.display()
    );
    assert!(all.contains(&want), "{field}: expected {want:?} in:\n{all}");
}

#[test]
fn every_duration_field_over_the_maximum_is_refused_where_it_is_written() {
    // Suite config fields.
    for (field, config) in [
        (
            "timeouts.connect",
            format!("timeouts:\n  connect: {HUGE}\n"),
        ),
        ("timeouts.expect", format!("timeouts:\n  expect: {HUGE}\n")),
        ("timeouts.http", format!("timeouts:\n  http: {HUGE}\n")),
        (
            "embedded.server.auth_timeout",
            format!("embedded:\n  server:\n    auth_timeout: {HUGE}\n"),
        ),
        (
            "embedded.server.idle_timeout",
            format!("embedded:\n  server:\n    idle_timeout: {HUGE}\n"),
        ),
        (
            "embedded.server.reply_timeout",
            format!("embedded:\n  server:\n    reply_timeout: {HUGE}\n"),
        ),
        (
            "embedded.server.token_pace",
            format!("embedded:\n  server:\n    token_pace: {HUGE}\n"),
        ),
    ] {
        let d = TempDir::new("suite");
        let suite = d.write("wschat-suite.yaml", &config);
        d.write("a.yaml", &scenario("  - sleep: 1ms\n"));
        assert_refused(&d.0, &suite, HUGE, field);
    }
    // Scenario fields, each in the step that has it.
    for (field, steps) in [
        ("timeout", format!("  - http: {{ path: /healthz, timeout: {HUGE} }}\n")),
        ("timeout", format!("  - connect: {{ path: /ws, timeout: {HUGE} }}\n")),
        (
            "timeout",
            format!("  - connect: {{ path: /ws }}\n  - expect: {{ match: {{ type: x }}, timeout: {HUGE} }}\n"),
        ),
        (
            "timeout",
            format!("  - connect: {{ path: /ws }}\n  - expect_pong: {{ payload: abc, timeout: {HUGE} }}\n"),
        ),
        (
            "timeout",
            format!("  - connect: {{ path: /ws }}\n  - collect: {{ until: {{ type: x }}, timeout: {HUGE} }}\n"),
        ),
        (
            "within",
            format!("  - connect: {{ path: /ws }}\n  - expect_none: {{ match: {{ type: x }}, within: {HUGE} }}\n"),
        ),
        (
            "timeout",
            format!("  - connect: {{ path: /ws }}\n  - expect_close: {{ code: 1000, timeout: {HUGE} }}\n"),
        ),
        ("sleep", format!("  - sleep: {HUGE}\n")),
        ("sleep", format!("  - sleep: {{ duration: {HUGE} }}\n")),
        (
            "timing.connect.$lte",
            format!("  - connect: {{ path: /ws }}\n  - timing: {{ connect: {{ $lte: {HUGE} }} }}\n"),
        ),
        (
            "turn",
            format!("  - connect: {{ path: /ws }}\n  - timing: {{ turn: {HUGE} }}\n"),
        ),
    ] {
        let d = TempDir::new("scenario");
        d.write("wschat-suite.yaml", "timeouts:\n  expect: 2s\n");
        let file = d.write("a.yaml", &scenario(&steps));
        assert_refused(&d.0, &file, HUGE, field);
    }
    // A duration written as a template: refused where the template is written.
    let d = TempDir::new("template");
    d.write("wschat-suite.yaml", &format!("vars:\n  quiet: {HUGE}\n"));
    let file = d.write(
        "a.yaml",
        &scenario("  - connect: { path: /ws }\n  - expect_none: { match: { type: x }, within: \"${quiet}\" }\n"),
    );
    let out = cmd().arg("validate").arg(&d.0).output().unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{all}");
    let (line, col) = place_of(&std::fs::read_to_string(&file).unwrap(), "\"${quiet}\"");
    assert!(
        all.contains(&format!("a.yaml:{line}:{col}: within: "))
            && all.contains("exceeds the maximum of 365 days"),
        "{all}"
    );
}

#[test]
fn command_line_durations_over_the_maximum_are_usage_errors() {
    for args in [
        vec!["run", "--timeout", HUGE, "scenarios/"],
        vec!["load", "--duration", HUGE, "scenarios/"],
        vec!["load", "--iterations", "1", "--ramp", HUGE, "scenarios/"],
    ] {
        let out = cmd().args(&args).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{err}");
        assert!(!err.contains("panicked"), "{args:?}\n{err}");
        assert!(
            err.contains(&format!(
                "duration \"{HUGE}\" exceeds the maximum of 365 days"
            )),
            "{args:?}\n{err}"
        );
    }
}

#[test]
fn the_maximum_duration_itself_runs() {
    // Every wait of the bundled ping scenarios with a 365-day default: the deadlines are far
    // away but representable, and the run passes (no wait lasts: each is satisfied at once).
    let out = cmd()
        .args(["run", "--timeout", "365d", "--tag", "ping", "scenarios/"])
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn a_file_that_is_not_utf8_is_refused_at_its_first_bad_byte() {
    // A scenario: line 3, after "  - sleep: " and "é" (one character, two bytes) comes 0xFF.
    let d = TempDir::new("utf8");
    d.write("wschat-suite.yaml", "timeouts:\n  expect: 2s\n");
    let file = d.0.join("a.yaml");
    std::fs::write(&file, b"name: a\nsteps:\n  - sleep: \xC3\xA9\xFF1ms\n").unwrap();
    let out = cmd().arg("validate").arg(&d.0).output().unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains(&format!(
            "{}:3:13: the file is not valid UTF-8: byte 0xFF at line 3, column 13",
            file.display()
        )),
        "{all}"
    );
    // The suite config and the rules file are located the same way.
    let d = TempDir::new("utf8-config");
    let config = d.0.join("wschat-suite.yaml");
    std::fs::write(&config, b"timeouts:\n  expect: \x802s\n").unwrap();
    d.write("a.yaml", &scenario("  - sleep: 1ms\n"));
    let out = cmd().arg("validate").arg(&d.0).output().unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains(&format!(
            "{}:2:11: the file is not valid UTF-8: byte 0x80",
            config.display()
        )),
        "{all}"
    );
    let d = TempDir::new("utf8-rules");
    d.write("wschat-suite.yaml", "rules: rules.yaml\n");
    let rules = d.0.join("rules.yaml");
    std::fs::write(&rules, b"rules:\n  - id: x\xFE\n").unwrap();
    d.write("a.yaml", &scenario("  - sleep: 1ms\n"));
    let out = cmd().arg("validate").arg(&d.0).output().unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains(&format!(
            "{}:2:10: the file is not valid UTF-8: byte 0xFE",
            rules.display()
        )),
        "{all}"
    );
}

#[test]
fn a_secret_too_short_to_redact_safely_is_refused_or_left_out_with_a_warning() {
    let d = TempDir::new("short-secret");
    d.write("wschat-suite.yaml", "timeouts:\n  http: 5s\n");
    d.write(
        "a.yaml",
        "name: text-turn\nsteps:\n  - http: { path: /healthz, status: [200] }\n",
    );
    // WSCHAT_TOKEN=x used to turn the name into `te***WSCHAT_TOKEN***t-turn`.
    let out = cmd()
        .arg("run")
        .arg(&d.0)
        .env("WSCHAT_TOKEN", "x")
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("PASS  text-turn"), "{stdout}");
    assert!(!stdout.contains("***WSCHAT_TOKEN***"), "{stdout}");
    assert!(
        stderr.contains(
            "warning: the value of WSCHAT_TOKEN is shorter than 8 characters and is not redacted"
        ),
        "{stderr}"
    );
    // An explicit --secret that short is a usage error that does not echo the value.
    let out = cmd()
        .arg("run")
        .arg(&d.0)
        .args(["--secret", "PIN=t"])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("shorter than 8 characters"), "{stderr}");
    assert!(!stderr.contains("PIN=t"), "{stderr}");
}
