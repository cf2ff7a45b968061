//! End-to-end tests of the `wschat-check` binary: the bundled suite passes, and every kind of check
//! can fail (fixtures/failing, fixtures/suites), with the key parts of each failure message asserted
//! on the JSON report. Everything runs over real sockets on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

mod support;
use support::{cmd, root, text};

/// A fresh path for a report file.
fn report_path(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wschat-check-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{tag}.json"))
}

/// Runs `run ARGS... --report-json FILE` and returns the process output and the parsed report.
fn run_with_report(tag: &str, args: &[&str]) -> (Output, Value) {
    let path = report_path(tag);
    let out = cmd()
        .arg("run")
        .args(args)
        .args(["--color", "never", "--report-json"])
        .arg(&path)
        .output()
        .unwrap();
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no report at {} ({e})\nstdout:\n{}\nstderr:\n{}",
            path.display(),
            text(&out.stdout),
            text(&out.stderr)
        )
    }))
    .unwrap();
    (out, report)
}

fn scenario<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("scenario {name} not in the report"))
}

/// The first failure of a scenario that must have failed.
fn first_failure<'a>(report: &'a Value, name: &str) -> &'a Value {
    let s = scenario(report, name);
    assert_eq!(s["status"], "failed", "{name} should fail: {s:#}");
    &s["failures"][0]
}

fn assert_failure(f: &Value, kind: &str, parts: &[&str]) {
    assert_eq!(f["kind"], kind, "{f:#}");
    let msg = f["message"].as_str().unwrap();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

#[test]
fn bundled_scenarios_pass_against_the_embedded_server() {
    let out = cmd()
        .args(["run", "scenarios/", "--color", "never"])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("embedded reference server at ws://127.0.0.1:"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn every_kind_of_check_can_fail() {
    let (out, report) = run_with_report("failing", &["fixtures/failing", "--jobs", "4"]);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", text(&out.stderr));
    assert_eq!(
        report["summary"]["passed"], 0,
        "every failing fixture must fail"
    );

    let f = first_failure(&report, "expect-mismatch");
    assert_failure(
        f,
        "timeout",
        &[
            "timed out after 1s on 'main'",
            "final_answer",
            "not the answer",
        ],
    );
    let detail = f["detail"].as_array().unwrap();
    assert!(
        detail
            .iter()
            .any(|d| d.as_str().unwrap().contains("did not match at /content")),
        "the nearest candidate explains itself: {detail:?}"
    );
    assert!(f["step"]["location"]
        .as_str()
        .unwrap()
        .starts_with("fixtures/failing/expect-mismatch.yaml:"));

    let f = first_failure(&report, "strict-next-mismatch");
    assert_failure(
        f,
        "expectation",
        &["the next event on 'main' does not match (skip: false)"],
    );
    assert!(
        f["detail"][1]
            .as_str()
            .unwrap()
            .contains("at /type: expected \"token\", got \"turn_started\""),
        "{f:#}"
    );

    let f = first_failure(&report, "expect-timeout");
    assert_failure(f, "timeout", &["timed out after 300ms", "pong"]);

    let f = first_failure(&report, "expect-none-violated");
    assert_failure(
        f,
        "expectation",
        &["an event matching", "token", "arrived on 'main' within 1s"],
    );

    let f = first_failure(&report, "timing-violated");
    assert_failure(
        f,
        "timing",
        &["max_token_gap on 'main' was", "expected ≤ 1ms"],
    );

    let f = first_failure(&report, "collect-count-violated");
    assert_failure(f, "expectation", &["count of 'token' is 4, expected 1"]);

    let f = first_failure(&report, "unexpected-refusal");
    assert_failure(
        f,
        "handshake",
        &[
            "expected 101 Switching Protocols, got 401 Unauthorized",
            "AUTH_EXPIRED",
        ],
    );
    let detail: Vec<&str> = f["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        detail.contains(&"content-type: application/json"),
        "headers are shown: {detail:?}"
    );
    assert!(
        !serde_json::to_string(&report)
            .unwrap()
            .contains("token=eyJ"),
        "tokens in URLs are redacted"
    );

    let f = first_failure(&report, "wrong-close-code");
    assert_failure(
        f,
        "expectation",
        &["expected close code 4000 on 'main', got 4401"],
    );

    let f = first_failure(&report, "http-status-mismatch");
    assert_failure(f, "http", &["expected status 200, got 404 Not Found"]);

    let f = first_failure(&report, "http-match-mismatch");
    assert_failure(
        f,
        "expectation",
        &["response body does not match: at /protocol"],
    );

    // A failed step leaves the rest NotRun and keeps the transcript.
    let s = scenario(&report, "strict-next-mismatch");
    let steps = s["steps"].as_array().unwrap();
    assert_eq!(steps.last().unwrap()["outcome"], "failed");
    assert!(!s["transcripts"][0]["frames"].as_array().unwrap().is_empty());
}

#[test]
fn a_failed_step_marks_later_steps_not_run() {
    let (out, report) = run_with_report(
        "not-run",
        &["fixtures/failing", "--filter", "timing-violated"],
    );
    assert_eq!(out.status.code(), Some(1));
    let steps = scenario(&report, "timing-violated")["steps"]
        .as_array()
        .unwrap()
        .clone();
    let outcomes: Vec<&str> = steps
        .iter()
        .map(|s| s["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.last(), Some(&"failed"));
    let (out, report) = run_with_report(
        "not-run-2",
        &["fixtures/failing", "--filter", "http-status-mismatch"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        report["scenarios"].as_array().unwrap().len(),
        1,
        "--filter selects one"
    );
}

#[test]
fn schema_violations_name_pointer_and_keyword() {
    let (out, report) = run_with_report("strict-schema", &["fixtures/suites/strict-schema"]);
    assert_eq!(out.status.code(), Some(1));
    let f = first_failure(&report, "long-token");
    assert_failure(
        f,
        "schema",
        &["'token' event violates its schema at /content (maxLength)"],
    );
    assert_eq!(f["schema"]["instance_path"], "/content");
    assert_eq!(f["schema"]["keyword"], "maxLength");
    assert_eq!(f["schema"]["event_type"], "token");
    assert_eq!(f["frame"]["conn"], "main");

    let f = first_failure(&report, "unknown-type");
    assert_failure(
        f,
        "schema",
        &["unknown event type 'pong' (known: connected, final_answer, thinking, token, turn_started)"],
    );
}

#[test]
fn rule_violations_name_the_rule() {
    let (out, report) = run_with_report("strict-rules", &["fixtures/suites/strict-rules"]);
    assert_eq!(out.status.code(), Some(1));
    let f = first_failure(&report, "any-turn");
    assert_eq!(f["kind"], "rule", "{f:#}");
    assert_eq!(f["rule"], "thinking-first");
    assert!(
        f["message"].as_str().unwrap().contains("thinking-first"),
        "{f:#}"
    );
}

#[test]
fn scenarios_requiring_unset_variables_are_skipped() {
    let (out, report) = run_with_report("requires", &["fixtures/suites/requires"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "skips are allowed: {}",
        text(&out.stdout)
    );
    let s = scenario(&report, "needs-env");
    assert_eq!(s["status"], "skipped");
    assert!(
        s["skip_reason"]
            .as_str()
            .unwrap()
            .contains("WSCHAT_FIXTURE_NEVER_SET"),
        "{s:#}"
    );
    assert_eq!(scenario(&report, "runs")["status"], "passed");
}

#[test]
fn invalid_scenario_files_exit_2_with_their_location() {
    let dir = root().join("fixtures/invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for sub in ["validate", "run"] {
            let out = cmd().args([sub, &rel]).output().unwrap();
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{sub} {rel}: {stderr}");
            let located =
                regex::Regex::new(&format!(r"{}[^:\s]*:\d+:\d+: ", regex::escape(&rel))).unwrap();
            assert!(
                located.is_match(&stderr),
                "{sub} {rel}: no file:line:col in {stderr:?}"
            );
        }
        seen += 1;
    }
    assert!(
        seen >= 5,
        "fixtures/invalid holds the bad files ({seen} found)"
    );
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_target_that_is_not_listening_fails_cleanly() {
    let port = closed_port();
    let target = format!("ws://127.0.0.1:{port}");
    let (out, report) = run_with_report(
        "closed-port",
        &["fixtures/suites/connect-only", "--target", &target],
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let f = first_failure(&report, "connect-first");
    assert_failure(
        f,
        "transport",
        &[&format!(
            "could not connect to ws://127.0.0.1:{port}/api/v1/chat/ws/any"
        )],
    );
    assert!(text(&out.stdout).contains(&format!("127.0.0.1:{port}")));
    assert!(!text(&out.stderr).contains("panicked"));
}

#[test]
fn an_external_target_with_a_shared_secret_passes() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let secret = format!("test-secret-{}", std::process::id());
    let server = rt
        .block_on(reference_server::start(reference_server::Config {
            jwt_secret: secret.clone(),
            ..Default::default()
        }))
        .unwrap();
    let out = cmd()
        .args([
            "run",
            "fixtures/suites/external",
            "--color",
            "never",
            "--target",
        ])
        .arg(server.ws_url())
        .env("WSCHAT_JWT_SECRET", &secret)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains(&server.ws_url()), "{stdout}");
    assert!(stdout.contains("PASS  single-message-exact"), "{stdout}");
    assert!(stdout.contains("PASS  refused-expired"), "{stdout}");
    // The same suite with the wrong secret fails: tokens are really checked by the server.
    let out = cmd()
        .args([
            "run",
            "fixtures/suites/external",
            "--color",
            "never",
            "--target",
        ])
        .arg(server.ws_url())
        .env("WSCHAT_JWT_SECRET", "not-the-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    rt.block_on(server.shutdown());
}

#[test]
fn validate_list_and_token_commands() {
    let out = cmd().args(["validate", "scenarios/"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("ok: "),
        "{}",
        text(&out.stdout)
    );

    let out = cmd()
        .args(["list", "fixtures/suites/requires"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("needs-env") && l.contains("must")),
        "{stdout}"
    );

    let out = cmd()
        .args(["token", "--user", "alice", "--secret", "s", "--admin"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let token = text(&out.stdout);
    assert_eq!(token.trim().split('.').count(), 3, "{token}");

    // Extra claims: JSON values stay JSON, other text is a string; `sub`/`exp`/`iat` are refused.
    let out = cmd()
        .args([
            "token",
            "--user",
            "alice",
            "--secret",
            "s",
            "--claim",
            "tenant=acme",
        ])
        .args(["--claim", r#"scope=["chat","tools"]"#, "--claim", "tier=3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let token = text(&out.stdout);
    let payload = token.trim().split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["scope"], serde_json::json!(["chat", "tools"]));
    assert_eq!(claims["tier"], 3);
    assert!(claims.get("admin").is_none(), "{claims}");
    let out = cmd()
        .args([
            "token",
            "--user",
            "alice",
            "--secret",
            "s",
            "--claim",
            "sub=mallory",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--claim sub"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = cmd().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = cmd()
        .args(["run", "scenarios/", "--jobs", "many"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = cmd()
        .args(["run", "scenarios/", "--filter", "no-such-scenario-*"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("matches --filter/--tag"),
        "{}",
        text(&out.stderr)
    );
    let out = cmd()
        .args([
            "run",
            "fixtures/suites/requires",
            "--ca-cert",
            "/nonexistent/ca.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--ca-cert /nonexistent/ca.pem"),
        "{}",
        text(&out.stderr)
    );
    assert!(Path::new(&root()).join("scenarios").is_dir());
}
