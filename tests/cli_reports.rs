//! Reports and CI ergonomics, end to end through the real binary against the embedded reference
//! server (real sockets on 127.0.0.1): terminal output snapshots of passing and failing runs, the
//! JUnit file against its XSD, the HTML report in headless Chromium, secret redaction in every
//! output, shard + `report merge` equal to one run, the JSON report of a real run against its
//! schema, and the selection and scheduling flags (`--level`, `--shard`, `--fail-fast`, `--retries`).
//!
//! External tools (xmllint, chromium) are installed by `.ci/run`. When one is missing, the test
//! prints SKIPPED and passes on a developer machine, but fails when `CI` is set, so CI cannot pass
//! without really checking.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

mod support;
use support::{root, text};

/// The shared clean-environment command, with this file's backstop against a hung run.
fn cmd() -> Command {
    let mut c = support::cmd();
    // Every run is bounded: a hung run fails the test instead of hanging CI.
    c.timeout(std::time::Duration::from_secs(180));
    c
}

/// A fresh folder for this test's files.
fn tmp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wschat-cli-reports-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `CI` set to anything but empty/`false`/`0` means external tools are required.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether `tool` runs; when it does not, SKIPPED on a developer machine, a failure in CI.
fn tool_available(tool: &str, probe_arg: &str) -> bool {
    let ok = std::process::Command::new(tool)
        .arg(probe_arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !in_ci(),
            "{tool} is required in CI (CI is set) but is not installed; .ci/run installs it"
        );
        eprintln!("SKIPPED: {tool} is not installed (CI is unset)");
    }
    ok
}

fn describe(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().map_or("signal".into(), |c| c.to_string()),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Snapshots terminal output with everything that changes between runs masked.
fn snapshot(name: &str, out: &Output) {
    snapshot_with(name, out, &[]);
}

/// A failure found by the per-frame checks (schema, rules) on a reply is attributed to the step
/// running when the reply was read: the `send` that caused it, or the `expect` after it, depending
/// on scheduling. These lines mask that step (and the `expect`'s matcher line that comes with it).
const FRAME_CHECK_STEP: (&str, &str) = (
    r"    at step \d+ (send|expect) at [^\n]+\n(    expected: \{[^\n]*\n)?",
    "    at step [send or expect]\n",
);

fn snapshot_with(name: &str, out: &Output, extra: &[(&str, &str)]) {
    let mut settings = insta::Settings::clone_current();
    for (re, with) in extra {
        settings.add_filter(re, *with);
    }
    settings.set_prepend_module_to_snapshot(false);
    settings.set_snapshot_path("snapshots");
    for (re, with) in [
        // HTTP `date:` headers and RFC 3339 timestamps (`created_at`).
        (
            r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT",
            "[HTTP-DATE]",
        ),
        (
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
            "[TIME]",
        ),
        // Ports of the embedded server.
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        // Session ids.
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[UUID]",
        ),
        // Transcript offsets are right-aligned: their padding varies with their width.
        (r" +\+\d+(\.\d+)? (ms|µs|s)\b", " +[DUR]"),
        // Measured durations (`12.3 ms`, `in 2.08 s`); configured ones (`300ms`) stay.
        (r"\d+(\.\d+)? (ms|µs|s)\b", "[DUR]"),
        // Temporary folders.
        (r"/tmp/[^\s:]+", "[TMP]"),
    ] {
        settings.add_filter(re, with);
    }
    settings.bind(|| insta::assert_snapshot!(name, describe(out)));
}

fn run(args: &[&str]) -> Output {
    cmd()
        .arg("run")
        .args(args)
        .args(["--color", "never", "--jobs", "1"])
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> Value {
    let s = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no report at {}: {e}", path.display()));
    serde_json::from_str(&s).unwrap()
}

fn names(report: &Value) -> BTreeSet<String> {
    report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

fn scenario<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("scenario {name} not in the report"))
}

// ---------------------------------------------------------------------------------------------
// Terminal snapshots

#[test]
fn terminal_passing_run() {
    let out = run(&[
        "scenarios/",
        "--filter",
        "app-ping-string-nonce",
        "--filter",
        "single-message-exact",
        "--filter",
        "rest-healthz",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    snapshot("terminal_passing", &out);
}

#[test]
fn terminal_schema_failure() {
    let out = run(&["fixtures/reports/schema-pong"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    snapshot_with("terminal_schema_failure", &out, &[FRAME_CHECK_STEP]);
}

#[test]
fn terminal_rule_failure() {
    let out = run(&["fixtures/reports/rule-pong"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    snapshot_with("terminal_rule_failure", &out, &[FRAME_CHECK_STEP]);
}

#[test]
fn terminal_timeout() {
    let out = run(&["fixtures/failing/expect-timeout.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    snapshot("terminal_timeout", &out);
}

#[test]
fn terminal_refused_handshake() {
    let out = run(&["fixtures/failing/unexpected-refusal.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    snapshot("terminal_refused_handshake", &out);
}

#[test]
fn terminal_live_scenarios_skipped_without_wschat_live() {
    // WSCHAT_TOKEN is set so the scenario's `requires` holds: the skip must come from the live gate.
    let out = cmd()
        .args(["run", "scenarios/", "--filter", "live-smoke"])
        .args(["--color", "never", "--jobs", "1"])
        .env("WSCHAT_TOKEN", "not-used-because-skipped")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(text(&out.stdout).contains("WSCHAT_LIVE=1"));
    snapshot("terminal_live_skipped", &out);
}

// ---------------------------------------------------------------------------------------------
// Report files

/// A failing run with every report written; returns the folder.
fn failing_run_with_reports(tag: &str) -> PathBuf {
    let dir = tmp_dir(tag);
    let out = cmd()
        .args(["run", "fixtures/failing", "--color", "never"])
        .args([
            "--filter",
            "expect-timeout",
            "--filter",
            "unexpected-refusal",
        ])
        .args(["--filter", "http-status-mismatch"])
        .arg("--report-json")
        .arg(dir.join("report.json"))
        .arg("--report-junit")
        .arg(dir.join("junit.xml"))
        .arg("--report-html")
        .arg(dir.join("report.html"))
        .arg("--report-tap")
        .arg(dir.join("report.tap"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    dir
}

#[test]
fn junit_of_a_failing_run_validates_against_the_xsd() {
    if !tool_available("xmllint", "--version") {
        return;
    }
    let dir = failing_run_with_reports("junit");
    let junit = dir.join("junit.xml");
    let out = std::process::Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(root().join("tests/data/junit.xsd"))
        .arg(&junit)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xmllint rejects {}:\n{}{}",
        junit.display(),
        text(&out.stdout),
        text(&out.stderr)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<failure"), "{xml}");
    assert!(xml.contains("expect-timeout"), "{xml}");
}

#[test]
fn json_report_of_a_real_run_validates_against_the_schema() {
    let dir = failing_run_with_reports("json");
    let report = read_json(&dir.join("report.json"));
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/report.schema.json")).unwrap(),
    )
    .unwrap();
    let v = jsonschema::validator_for(&schema).expect("report schema compiles");
    let errors: Vec<String> = v
        .iter_errors(&report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(report["summary"]["failed"], 3, "{report:#}");
    assert_eq!(report["summary"]["verdict"], "not conformant");
}

#[test]
fn html_report_renders_in_headless_chromium() {
    if !tool_available("chromium", "--version") {
        return;
    }
    let dir = failing_run_with_reports("html");
    let html = dir.join("report.html");
    let artifacts = root().join("target/report-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("report.png");
    let _ = std::fs::remove_file(&png);
    let profile = dir.join("chromium-profile");
    // `timeout` bounds the browser: a stuck headless Chromium must not hang the test run.
    let out = std::process::Command::new("timeout")
        .args(["-k", "10", "120", "chromium"])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--window-size=1200,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed ({:?}):\n{}",
        out.status,
        text(&out.stderr)
    );
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank page compresses to a few kilobytes; a rendered report with text is much larger.
    assert!(
        bytes.len() > 20_000,
        "screenshot only {} bytes",
        bytes.len()
    );
}

#[test]
fn secrets_and_tokens_appear_in_no_output() {
    const KEY: &str = "sk-live-5e6f7a8b9c0d1e2f";
    const TOKEN: &str = "opaque-token-3f9a2c7d41";
    let dir = tmp_dir("secrets");
    let files = ["report.json", "junit.xml", "report.html", "report.tap"];
    let out = cmd()
        .args(["run", "fixtures/reports/ci", "--filter", "secret-echo"])
        .args(["--color", "never", "--frames", "20"])
        .args(["--secret", &format!("API_KEY={KEY}")])
        .args(["--var", &format!("api_key={KEY}")])
        .env("WSCHAT_TOKEN", TOKEN)
        .arg("--report-json")
        .arg(dir.join(files[0]))
        .arg("--report-junit")
        .arg(dir.join(files[1]))
        .arg("--report-html")
        .arg(dir.join(files[2]))
        .arg("--report-tap")
        .arg(dir.join(files[3]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let mut outputs = vec![
        ("stdout".to_owned(), text(&out.stdout)),
        ("stderr".to_owned(), text(&out.stderr)),
    ];
    for f in files {
        outputs.push((f.to_owned(), std::fs::read_to_string(dir.join(f)).unwrap()));
    }
    for (what, content) in &outputs {
        assert!(!content.contains(KEY), "{what} leaks the --secret value");
        assert!(!content.contains(TOKEN), "{what} leaks WSCHAT_TOKEN");
    }
    // The values did flow through the run (sent and echoed), and show up masked, so the absence
    // above is redaction, not a run that never carried them.
    let stdout = &outputs[0].1;
    assert!(stdout.contains("***API_KEY***"), "{stdout}");
    assert!(stdout.contains("***WSCHAT_TOKEN***"), "{stdout}");
    let json = &outputs[2].1;
    assert!(json.contains("***API_KEY***") && json.contains("***WSCHAT_TOKEN***"));
}

#[test]
fn the_suites_jwt_secret_appears_in_no_output() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let secret = format!("hs256-test-secret-{}", std::process::id());
    let server = rt
        .block_on(reference_server::start(reference_server::Config {
            jwt_secret: secret.clone(),
            ..Default::default()
        }))
        .unwrap();
    let dir = tmp_dir("jwt-secret");
    let out = cmd()
        .args([
            "run",
            "fixtures/reports/external-secret",
            "--color",
            "never",
        ])
        .arg("--target")
        .arg(server.ws_url())
        .env("WSCHAT_JWT_SECRET", &secret)
        .arg("--report-json")
        .arg(dir.join("report.json"))
        .arg("--report-html")
        .arg(dir.join("report.html"))
        .output()
        .unwrap();
    rt.block_on(server.shutdown());
    // Exit 1, not 2 or 3: tokens minted with the secret were accepted, the scenario ran and failed.
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = text(&out.stdout);
    for (what, content) in [
        ("stdout", stdout.clone()),
        ("stderr", text(&out.stderr)),
        (
            "report.json",
            std::fs::read_to_string(dir.join("report.json")).unwrap(),
        ),
        (
            "report.html",
            std::fs::read_to_string(dir.join("report.html")).unwrap(),
        ),
    ] {
        assert!(!content.contains(&secret), "{what} leaks the JWT secret");
    }
    assert!(stdout.contains("secret ***JWT_SECRET***"), "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// Shards and merge

/// Runs `args` once whole and as `n` shards, merges the shards, and checks that the merge has the
/// single run's scenario set, verdict and exit code.
fn shards_merge_like_one_run(tag: &str, args: &[&str], n: usize, expected_code: i32) {
    let dir = tmp_dir(tag);
    let single_path = dir.join("single.json");
    let single = cmd()
        .arg("run")
        .args(args)
        .args(["--color", "never", "--report-json"])
        .arg(&single_path)
        .output()
        .unwrap();
    assert_eq!(
        single.status.code(),
        Some(expected_code),
        "{}",
        describe(&single)
    );
    let single_report = read_json(&single_path);

    let mut shard_paths = Vec::new();
    let mut seen = BTreeSet::new();
    for k in 1..=n {
        let p = dir.join(format!("shard-{k}.json"));
        let out = cmd()
            .arg("run")
            .args(args)
            .args([
                "--color",
                "never",
                "--shard",
                &format!("{k}/{n}"),
                "--report-json",
            ])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            describe(&out)
        );
        for name in names(&read_json(&p)) {
            assert!(seen.insert(name.clone()), "{name} is in two shards");
        }
        shard_paths.push(p);
    }
    assert_eq!(seen, names(&single_report), "the shards cover the run");

    let merged_path = dir.join("merged.json");
    let merge = cmd()
        .args(["report", "merge"])
        .args(&shard_paths)
        .args(["--color", "never", "--report-json"])
        .arg(&merged_path)
        .arg("--report-junit")
        .arg(dir.join("merged.xml"))
        .output()
        .unwrap();
    assert_eq!(
        merge.status.code(),
        Some(expected_code),
        "{}",
        describe(&merge)
    );
    let merged = read_json(&merged_path);
    assert_eq!(names(&merged), names(&single_report));
    assert_eq!(
        merged["summary"]["verdict"],
        single_report["summary"]["verdict"]
    );
    for key in ["passed", "failed", "skipped", "flaky"] {
        assert_eq!(
            merged["summary"][key], single_report["summary"][key],
            "{key}"
        );
    }
    assert!(dir.join("merged.xml").is_file());
}

#[test]
fn merged_shards_equal_a_passing_single_run() {
    shards_merge_like_one_run(
        "merge-pass",
        &["scenarios/", "--filter", "app-ping-*", "--filter", "rest-*"],
        4,
        0,
    );
}

#[test]
fn merged_shards_equal_a_failing_single_run() {
    shards_merge_like_one_run(
        "merge-fail",
        &["fixtures/reports/ci", "--filter", "ff-*"],
        2,
        1,
    );
}

#[test]
fn merge_rejects_overlapping_and_missing_reports() {
    let dir = tmp_dir("merge-bad");
    let p = dir.join("r.json");
    let out = cmd()
        .args([
            "run",
            "fixtures/reports/ci",
            "--filter",
            "ff-2-passes",
            "--color",
            "never",
        ])
        .arg("--report-json")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = cmd()
        .args(["report", "merge"])
        .args([&p, &p])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("ff-2-passes"),
        "{}",
        describe(&out)
    );
    let out = cmd()
        .args(["report", "merge"])
        .arg(dir.join("missing.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("missing.json"),
        "{}",
        describe(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// Selection and scheduling

#[test]
fn fail_fast_skips_the_rest_with_a_reason() {
    let dir = tmp_dir("fail-fast");
    let p = dir.join("r.json");
    let out = cmd()
        .args([
            "run",
            "fixtures/reports/ci",
            "--filter",
            "ff-*",
            "--color",
            "never",
        ])
        .args(["--jobs", "1", "--fail-fast", "--report-json"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = read_json(&p);
    assert_eq!(scenario(&r, "ff-1-fails")["status"], "failed");
    for name in ["ff-2-passes", "ff-3-passes"] {
        let s = scenario(&r, name);
        assert_eq!(s["status"], "skipped", "{s:#}");
        assert_eq!(s["attempts"], 0);
        let reason = s["skip_reason"].as_str().unwrap();
        assert!(
            reason.contains("--fail-fast") && reason.contains("ff-1-fails"),
            "{reason}"
        );
    }
    // Without --fail-fast the same scenarios all run.
    let out = cmd()
        .args([
            "run",
            "fixtures/reports/ci",
            "--filter",
            "ff-*",
            "--color",
            "never",
        ])
        .args(["--jobs", "1", "--report-json"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = read_json(&p);
    assert_eq!(scenario(&r, "ff-2-passes")["status"], "passed");
    assert_eq!(scenario(&r, "ff-3-passes")["status"], "passed");
}

#[test]
fn retries_mark_a_late_pass_flaky_and_count_attempts() {
    let dir = tmp_dir("retries");
    let p = dir.join("r.json");
    // Alone on a fresh server this scenario fails once, then passes.
    let out = cmd()
        .args([
            "run",
            "fixtures/reports/ci",
            "--filter",
            "flaky-second-attempt",
        ])
        .args(["--color", "never", "--retries", "2", "--report-json"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let s = scenario(&read_json(&p), "flaky-second-attempt").clone();
    assert_eq!(s["status"], "flaky", "{s:#}");
    assert_eq!(s["attempts"], 2);
    assert!(text(&out.stdout).contains("FLAKY"));

    // Without retries the first attempt's failure stands.
    let out = cmd()
        .args([
            "run",
            "fixtures/reports/ci",
            "--filter",
            "flaky-second-attempt",
        ])
        .args(["--color", "never", "--report-json"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    // A scenario that always fails is tried 1 + N times and stays failed.
    let out = cmd()
        .args([
            "run",
            "fixtures/failing/expect-timeout.yaml",
            "--color",
            "never",
        ])
        .args(["--retries", "2", "--report-json"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let s = scenario(&read_json(&p), "expect-timeout").clone();
    assert_eq!(s["status"], "failed");
    assert_eq!(s["attempts"], 3);
}

#[test]
fn level_filter_and_shard_spec_errors() {
    let dir = tmp_dir("level");
    let p = dir.join("r.json");
    let out = cmd()
        .args([
            "run",
            "scenarios/",
            "--filter",
            "*message*",
            "--filter",
            "live-*",
        ])
        .args([
            "--level",
            "should",
            "--level",
            "may",
            "--color",
            "never",
            "--report-json",
        ])
        .arg(&p)
        .output()
        .unwrap();
    let r = read_json(&p);
    let levels: BTreeSet<String> = r["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["level"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // `*message*` matches must scenarios too (single-message-exact, ...): the level filter drops them.
    assert_eq!(
        names(&r),
        [
            "large-message-under-limit",
            "live-smoke",
            "oversized-message"
        ]
        .map(String::from)
        .into(),
    );
    assert_eq!(
        levels,
        ["may", "should"].map(String::from).into(),
        "{levels:?}"
    );

    // Nothing of that level: a usage error naming the flags.
    let out = cmd()
        .args([
            "run",
            "fixtures/reports/ci",
            "--filter",
            "ff-*",
            "--level",
            "may",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(text(&out.stderr).contains("--level"), "{}", describe(&out));

    for bad in ["0/4", "5/4", "2", "a/b"] {
        let out = cmd()
            .args(["run", "scenarios/", "--shard", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", describe(&out));
        assert!(text(&out.stderr).contains("K/N"), "{}", describe(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// Other commands

#[test]
fn list_json_and_completions() {
    let out = cmd()
        .args(["list", "--json", "fixtures/reports/ci"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ff = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "ff-1-fails")
        .expect("ff-1-fails listed");
    assert_eq!(ff["level"], "must");
    assert_eq!(ff["tags"], serde_json::json!(["fail-fast"]));
    assert!(ff["location"]
        .as_str()
        .unwrap()
        .starts_with("fixtures/reports/ci/ff-1-fails.yaml:"));

    for shell in ["bash", "zsh", "fish"] {
        let out = cmd().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", describe(&out));
        let script = text(&out.stdout);
        assert!(script.contains("wschat-check"), "{shell}");
        assert!(script.contains("fail-fast"), "{shell}: run flags completed");
    }
    let out = cmd().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn validate_exits_2_on_an_invalid_scenario() {
    let out = cmd()
        .args(["validate", "fixtures/invalid/bad-duration.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("bad-duration.yaml:"),
        "{}",
        describe(&out)
    );
    let out = cmd()
        .args(["validate", "fixtures/reports/ci"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}
