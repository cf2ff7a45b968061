//! End-to-end tests of `wschat-check load`: the real binary runs short loads against the embedded
//! reference server over real sockets on 127.0.0.1, and the JSON report's numbers must be consistent
//! (counts add up, percentiles ordered, the time series covers every session). No timing assertions:
//! only relations that hold however loaded the machine is.

use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value;

mod support;

/// The shared clean-environment command, with this file's backstop against a hung run.
fn cmd() -> Command {
    let mut c = support::cmd();
    // Every session is bounded by the scenario's own timeouts; this is the backstop.
    c.timeout(std::time::Duration::from_secs(300));
    c
}

fn out_path(tag: &str, ext: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wschat-check-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{tag}.{ext}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Checks the invariants every load report must satisfy; returns the report.
fn check_consistent(r: &Value) {
    let s = &r["sessions"];
    let total = u(&s["total"]);
    assert_eq!(
        u(&s["passed"]) + u(&s["failed"]) + u(&s["skipped"]),
        total,
        "session counts add up: {s}"
    );
    let by_class: u64 = r["errors"]["by_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(!c["example"].as_str().unwrap().is_empty(), "{c}");
            u(&c["count"])
        })
        .sum();
    assert_eq!(by_class, u(&r["errors"]["total"]));
    assert_eq!(u(&r["errors"]["total"]), u(&s["failed"]));
    let timeline = r["timeline"].as_array().unwrap();
    assert_eq!(
        timeline.iter().map(|t| u(&t["sessions"])).sum::<u64>(),
        total,
        "the time series covers every session"
    );
    assert_eq!(
        timeline.iter().map(|t| u(&t["frames"])).sum::<u64>(),
        u(&r["frames"])
    );
    for (key, p) in r["latency_ms"].as_object().unwrap() {
        let n = u(&p["count"]);
        let hist: u64 = r["histograms"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| u(&b["count"]))
            .sum();
        assert_eq!(hist, n, "histogram of {key} holds every sample");
        if n == 0 {
            continue;
        }
        let f = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("{key}.{k}: {p}"));
        assert!(
            f("min") <= f("p50")
                && f("p50") <= f("p90")
                && f("p90") <= f("p99")
                && f("p99") <= f("max"),
            "percentiles of {key} are ordered: {p}"
        );
        assert!(f("min") > 0.0, "{key}: {p}");
    }
    let elapsed = r["elapsed_s"].as_f64().unwrap();
    assert!(elapsed > 0.0);
    let sps = r["throughput"]["sessions_per_s"].as_f64().unwrap();
    assert!((sps * elapsed - total as f64).abs() < 1e-6 * total.max(1) as f64 + 1e-6);
}

#[test]
fn iterations_with_four_users_report_consistent_numbers() {
    let json = out_path("iter", "json");
    let html = out_path("iter", "html");
    let out = cmd()
        .args([
            "load",
            "scenarios",
            "--filter",
            "full-turn-order",
            "--users",
            "4",
            "--iterations",
            "20",
            "--report-json",
        ])
        .arg(&json)
        .arg("--report-html")
        .arg(&html)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("20 session(s)"), "{stdout}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    check_consistent(&r);
    assert_eq!(u(&r["sessions"]["total"]), 20);
    assert_eq!(u(&r["sessions"]["passed"]), 20);
    assert_eq!(r["verdict"], "pass");
    assert_eq!(r["meta"]["users"], 4);
    // One connection per session: 20 samples of every per-connection metric of a streamed turn.
    for key in [
        "connect",
        "first_event",
        "first_token",
        "token_gap",
        "turn",
        "session",
    ] {
        assert_eq!(u(&r["latency_ms"][key]["count"]), 20, "{key}");
    }
    assert_eq!(u(&r["latency_ms"]["cancel_ack"]["count"]), 0);
    // connected, then at least turn_started, thinking, 11 tokens, final_answer; plus the message sent.
    assert!(u(&r["frames"]) >= 20 * 16, "{}", r["frames"]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("full-turn-order"));
    assert!(!page.contains("<script") && !page.contains("http://") && !page.contains("https://"));
}

#[test]
fn errors_are_classified_and_fail_the_run() {
    // A 1 ms expect timeout cannot be met by a streamed turn: every session fails with `timeout`.
    let json = out_path("errors", "json");
    let out = cmd()
        .args([
            "load",
            "scenarios",
            "--filter",
            "cancel-mid-stream",
            "--users",
            "2",
            "--iterations",
            "4",
            "--timeout",
            "1ms",
            "--schema-sample",
            "10",
            "--report-json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    check_consistent(&r);
    assert_eq!(u(&r["sessions"]["failed"]), 4);
    assert_eq!(r["verdict"], "fail");
    assert_eq!(r["meta"]["schema_sample"], 10);
    let classes = r["errors"]["by_class"].as_array().unwrap();
    assert!(
        classes.iter().any(|c| c["class"] == "timeout"),
        "{classes:?}"
    );
    assert!(stdout.contains("errors: 4"), "{stdout}");

    // The same failures under a tolerant --max-error-rate pass.
    let out = cmd()
        .args([
            "load",
            "scenarios",
            "--filter",
            "cancel-mid-stream",
            "--users",
            "2",
            "--iterations",
            "2",
            "--timeout",
            "1ms",
            "--max-error-rate",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn open_model_with_duration_and_cancel_timings() {
    let json = out_path("open", "json");
    let out = cmd()
        .args([
            "load",
            "scenarios",
            "--filter",
            "cancel-mid-stream",
            "--users",
            "3",
            "--arrival-rate",
            "20/s",
            "--duration",
            "1s",
            "--ramp",
            "200ms",
            "--report-json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    check_consistent(&r);
    let total = u(&r["sessions"]["total"]);
    // At most 20/s for 1 s, minus the ramp; at least one session starts at t = 0.
    assert!((1..=20).contains(&total), "{total}");
    assert_eq!(u(&r["latency_ms"]["cancel_ack"]["count"]), total);
}

#[test]
fn usage_errors_exit_2() {
    let out = cmd()
        .args([
            "load",
            "scenarios",
            "--filter",
            "stream-*",
            "--iterations",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--filter"));
    let out = cmd()
        .args(["load", "scenarios", "--filter", "full-turn-order"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "needs --duration or --iterations"
    );
}
