//! Record → check → replay, through the real binary and real sockets on 127.0.0.1: the bundled
//! suite is recorded from the embedded reference server (WebSocket frames, HTTP exchanges and
//! refused upgrades), the recordings pass the offline check, a replay of them passes the same
//! scenarios, and tampered recordings fail (offline and when replayed, with the replay naming the
//! mismatching seq or the expected HTTP request).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use serde_json::Value;

mod support;
use support::{cmd, root, text};

/// Bundled scenarios that are not recorded: skipped without a live deployment (`WSCHAT_LIVE=1`).
const NOT_RECORDED: &[&str] = &["live-smoke"];

/// Recorded, but excluded from the fast replay: they assert wall-clock timing (token gaps of a
/// paced turn), which `--pace fast` does not keep. `paced_scenarios_pass_at_the_recorded_pace`
/// replays them at the recorded pace instead.
const TIMING: &[&str] = &["paced-stream"];

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wschat-rr-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Records the whole bundled suite once per test binary; returns the folder of recordings.
fn recordings() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tmp("recordings");
        let out = cmd()
            .args(["record", "scenarios/", "--color", "never", "--out"])
            .arg(&dir)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "record failed\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        dir
    })
}

/// The scenario names that have a recording.
fn recorded_names() -> BTreeSet<String> {
    std::fs::read_dir(recordings())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(p: &Path, lines: &[String]) {
    std::fs::write(p, lines.join("\n") + "\n").unwrap();
}

/// `replay FIXTURES --run scenarios/ [extra]`, with a JSON report.
fn replay_run(fixtures: &Path, extra: &[&str], tag: &str) -> (Output, Value) {
    let report = tmp(tag).join("report.json");
    let out = cmd()
        .arg("replay")
        .arg(fixtures)
        .args(["--run", "scenarios/", "--color", "never"])
        .args(extra)
        .arg("--report-json")
        .arg(&report)
        .output()
        .unwrap();
    let r = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "no report ({e})\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out, serde_json::from_str(&r).unwrap())
}

fn records(p: &Path) -> Vec<Value> {
    read_lines(p)[1..]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_whole_suite_is_recorded() {
    let names = recorded_names();
    for n in NOT_RECORDED {
        assert!(!names.contains(*n), "{n} should have no recording");
    }
    // Every other bundled scenario has one, those of HTTP steps only too.
    assert!(
        names.len() >= 90,
        "only {} recordings: {names:?}",
        names.len()
    );
    for must in [
        "rest-healthz",
        "not-a-websocket",
        "client-id-echo",
        "tokens-concatenate",
        "refused-expired",
        "handshake-query-token-wins",
        "broadcast-two-connections",
    ] {
        assert!(names.contains(must), "{must} was not recorded");
    }
}

/// Whether `s` holds a JSON Web Token (`eyJ…` with three dot-separated base64url segments; a
/// base64 binary payload starting with `eyJ` is no token).
fn has_jwt(s: &str) -> bool {
    s.match_indices("eyJ").any(|(i, _)| {
        let seg: String = s[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        seg.split('.').filter(|p| !p.is_empty()).count() >= 2 && seg.contains('.')
    })
}

#[test]
fn recordings_are_well_formed_and_redacted() {
    let dir = recordings();
    for n in recorded_names() {
        let p = dir.join(format!("{n}.jsonl"));
        let lines = read_lines(&p);
        let h: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(h["wschat_transcript"], 1);
        assert_eq!(h["scenario"], n.as_str());
        assert_eq!(h["discriminator"], "/type");
        for (i, l) in lines[1..].iter().enumerate() {
            let r: Value = serde_json::from_str(l).unwrap();
            assert_eq!(r["seq"], i as u64, "{n}: seq runs without gaps");
        }
        let all = lines.join("\n");
        // The scenarios authenticate with minted JWTs: none may reach the file.
        assert!(!has_jwt(&all), "{n}: a token leaked into the recording");
    }
    // The session is created over HTTP before the upgrade: the exchange comes first, before the
    // main connection's upgrade (negative time), with the token redacted and the created id.
    let p = dir.join("client-id-echo.jsonl");
    let h: Value = serde_json::from_str(&read_lines(&p)[0]).unwrap();
    let rs = records(&p);
    let x = &rs[0];
    assert_eq!(x["kind"], "http");
    assert_eq!(x["dir"], "sent");
    assert!(x["t_ms"].as_f64().unwrap() <= 0.0, "{x}");
    assert_eq!(x["http"]["request"]["method"], "POST");
    assert_eq!(x["http"]["request"]["path"], "/api/v1/sessions");
    assert_eq!(
        x["http"]["request"]["headers"]["Authorization"],
        "Bearer [REDACTED]"
    );
    assert_eq!(x["http"]["response"]["status"], 201);
    let body: Value =
        serde_json::from_str(x["http"]["response"]["body"].as_str().unwrap()).unwrap();
    let session = body["session_id"].as_str().unwrap();
    assert!(
        h["handshake"]["request"]["path"]
            .as_str()
            .unwrap()
            .ends_with(session),
        "the upgrade went to the created session: {h}"
    );
    // A scenario of HTTP steps only has no WebSocket handshake, only exchanges.
    let p = dir.join("rest-healthz.jsonl");
    let h: Value = serde_json::from_str(&read_lines(&p)[0]).unwrap();
    assert!(h.get("handshake").is_none(), "{h}");
    assert!(records(&p).iter().all(|r| r["kind"] == "http"));
    // A refused upgrade is a connection with the refusal as its handshake response.
    let p = dir.join("handshake-query-token-wins.jsonl");
    let h: Value = serde_json::from_str(&read_lines(&p)[0]).unwrap();
    let second = &h["connections"]["second"]["handshake"];
    assert_eq!(second["response"]["status"], 401, "{h}");
    assert_eq!(second["request"]["query"]["token"], "[REDACTED]");
    assert_eq!(second["request"]["query"]["api_key"], "[REDACTED]");
    assert!(second["response"]["body"]
        .as_str()
        .unwrap()
        .contains("AUTH_INVALID"));
}

#[test]
fn recordings_pass_the_offline_check() {
    let html = tmp("check-html").join("check.html");
    let out = cmd()
        .arg("check")
        .arg(recordings())
        .args(["--suite", "scenarios", "--color", "never", "--report-html"])
        .arg(&html)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("conformant"));
    // `check` takes the same report flags as `run`, HTML included.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.starts_with("<!DOCTYPE html>") && page.contains("offline check"),
        "{}",
        &page[..page.len().min(400)]
    );
}

#[test]
fn the_replayed_recording_passes_the_bundled_suite() {
    let recorded = recorded_names();
    let (out, report) = replay_run(recordings(), &[], "replay-all");
    let mut passed = Vec::new();
    for s in report["scenarios"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        if TIMING.contains(&name) {
            continue;
        }
        if recorded.contains(name) {
            assert_eq!(
                s["status"],
                "passed",
                "{name}: {s:#}\nstderr:\n{}",
                text(&out.stderr)
            );
            passed.push(name.to_owned());
        } else {
            assert_eq!(s["status"], "skipped", "{name} has no recording: {s:#}");
        }
    }
    let excluded = recorded
        .iter()
        .filter(|n| TIMING.contains(&n.as_str()))
        .count();
    eprintln!(
        "recorded {}, replayed and passed {}, excluded {excluded} (wall-clock timing), not recorded {} (live only)",
        recorded.len(),
        passed.len(),
        NOT_RECORDED.len()
    );
    assert_eq!(passed.len() + excluded, recorded.len());
}

#[test]
fn paced_scenarios_pass_at_the_recorded_pace() {
    // The recorded gaps are replayed as sleeps, so paced-stream's lower bounds on the turn and the
    // token gaps hold (its upper bounds are generous: seconds). ping-during-stream sends a Ping
    // while the replay is pacing a stream: the Pong must come without waiting for the pacing.
    let mut args = vec!["--pace", "recorded"];
    for n in TIMING.iter().chain(&["ping-during-stream"]) {
        args.extend(["--filter", n]);
    }
    let (out, report) = replay_run(recordings(), &args, "paced");
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), TIMING.len() + 1);
    for s in scenarios {
        assert_eq!(
            s["status"],
            "passed",
            "{}: {s:#}\nstderr:\n{}",
            s["name"],
            text(&out.stderr)
        );
    }
}

/// A copy of a recording with `edit` applied to the first record `pick` selects, in a folder of
/// its own (so `replay DIR --run` serves it).
fn tampered(
    name: &str,
    tag: &str,
    pick: impl Fn(&Value) -> bool,
    edit: impl Fn(&mut Value),
) -> PathBuf {
    let src = recordings().join(format!("{name}.jsonl"));
    let mut lines = read_lines(&src);
    let i = lines
        .iter()
        .skip(1)
        .position(|l| pick(&serde_json::from_str(l).unwrap()))
        .expect("a record to tamper with")
        + 1;
    let mut r: Value = serde_json::from_str(&lines[i]).unwrap();
    edit(&mut r);
    lines[i] = serde_json::to_string(&r).unwrap();
    let dst = tmp(tag).join(format!("{name}.jsonl"));
    write_lines(&dst, &lines);
    dst
}

fn is_text_with(r: &Value, dir: &str, needle: &str) -> bool {
    r["dir"] == dir && r["text"].as_str().is_some_and(|t| t.contains(needle))
}

#[test]
fn a_tampered_server_frame_fails_offline_and_replayed() {
    let p = tampered(
        "tokens-concatenate",
        "tampered-received",
        |r| is_text_with(r, "received", "\"type\":\"final_answer\""),
        |r| {
            let t = r["text"]
                .as_str()
                .unwrap()
                .replace("\"final_answer\"", "\"final_answr\"");
            r["text"] = Value::String(t);
        },
    );
    let out = cmd()
        .arg("check")
        .arg(&p)
        .args(["--suite", "scenarios", "--color", "never"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("[schema]") && stdout.contains("final_answr"),
        "{stdout}"
    );

    let (out, report) = replay_run(
        &p,
        &["--filter", "tokens-concatenate"],
        "tampered-received-run",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(report["scenarios"][0]["status"], "failed");
    let failures = report["scenarios"][0]["failures"].to_string();
    assert!(failures.contains("final_answr"), "{failures}");
}

#[test]
fn a_client_frame_that_differs_from_the_recording_is_refused_by_the_replay() {
    // The recording says the client sent `cancel`; the scenario sends `message`.
    let p = tampered(
        "tokens-concatenate",
        "tampered-sent",
        |r| is_text_with(r, "sent", "\"type\":\"message\""),
        |r| r["text"] = Value::String(r#"{"type":"cancel"}"#.into()),
    );
    let seq = read_lines(&p)
        .iter()
        .skip(1)
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| is_text_with(r, "sent", "cancel"))
        .unwrap()["seq"]
        .as_u64()
        .unwrap();
    let (out, report) = replay_run(&p, &["--filter", "tokens-concatenate"], "tampered-sent-run");
    assert_eq!(out.status.code(), Some(1));
    let failures = report["scenarios"][0]["failures"].to_string();
    // The scenario sees the replay's 1008 close, and the replay's own report names the seq.
    assert!(failures.contains("1008"), "{failures}");
    assert!(
        failures.contains(&format!(
            "seq {seq}: expected a JSON frame with /type = \\\"cancel\\\""
        )),
        "{failures}"
    );
}

#[test]
fn a_tampered_http_response_fails_the_http_step() {
    let p = tampered(
        "client-id-echo",
        "tampered-http-status",
        |r| r["kind"] == "http",
        |r| r["http"]["response"]["status"] = Value::from(500),
    );
    let (out, report) = replay_run(
        &p,
        &["--filter", "client-id-echo"],
        "tampered-http-status-run",
    );
    assert_eq!(out.status.code(), Some(1));
    let s = &report["scenarios"][0];
    assert_eq!(s["status"], "failed");
    let f = &s["failures"][0];
    assert_eq!(f["kind"], "http", "{s:#}");
    let m = f["message"].as_str().unwrap();
    assert!(m.contains("expected status 201, got 500"), "{m}");
}

#[test]
fn an_unexpected_http_request_is_answered_with_what_was_expected() {
    // The recording says the client created its session at another path.
    let p = tampered(
        "client-id-echo",
        "tampered-http-path",
        |r| r["kind"] == "http",
        |r| r["http"]["request"]["path"] = Value::from("/api/v1/elsewhere"),
    );
    let (out, report) = replay_run(
        &p,
        &["--filter", "client-id-echo"],
        "tampered-http-path-run",
    );
    assert_eq!(out.status.code(), Some(1));
    let s = &report["scenarios"][0];
    assert_eq!(s["status"], "failed");
    let failures = s["failures"].to_string();
    // The scenario's HTTP step got the replay's 409, and the replay's own report names both sides.
    assert!(failures.contains("got 409"), "{failures}");
    assert!(
        failures.contains("unexpected request POST /api/v1/sessions")
            && failures.contains("expects POST /api/v1/elsewhere"),
        "{failures}"
    );
}

#[test]
fn a_structurally_broken_recording_is_reported_with_its_line() {
    let src = recordings().join("tokens-concatenate.jsonl");
    let mut lines = read_lines(&src);
    lines.remove(3); // a gap in seq
    let dst = tmp("gap").join("gap.jsonl");
    write_lines(&dst, &lines);
    let out = cmd()
        .arg("check")
        .arg(&dst)
        .args(["--suite", "scenarios", "--color", "never"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("gap.jsonl:4: seq 3 out of order: expected 2"),
        "{stdout}"
    );
}

/// Kills the replay server this test started when the test ends, passed or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_standalone_replay_serves_a_live_run() {
    use std::io::BufRead;
    let bin = assert_cmd::cargo::cargo_bin("wschat-check");
    let mut child = Child(
        std::process::Command::new(bin)
            .current_dir(root())
            .args([
                "replay",
                "examples/typing-indicator/fixtures/connect-established.jsonl",
                "--bind",
                "127.0.0.1:0",
                "--pace",
                "fast",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The first stdout line names the address; read it on a thread so the wait is bounded.
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the replay server printed its address within 60 s");
    let url = line
        .trim()
        .strip_prefix("replay listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    let out = cmd()
        .args([
            "run",
            "examples/typing-indicator",
            "--filter",
            "connect-established",
        ])
        .args(["--color", "never", "--target", &url])
        .env("WSCHAT_TARGET", &url)
        .env("WSCHAT_USER_ID", "u-1001")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("connect-established"));
}
