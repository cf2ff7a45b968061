//! Record → check → replay, through the real binary and real sockets on 127.0.0.1: bundled scenarios
//! are recorded from the embedded reference server, the recordings pass the offline check, a replay
//! of them satisfies the same scenario's WebSocket steps, and tampered recordings fail (offline and
//! when replayed, with the replay naming the mismatching seq).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use assert_cmd::Command;
use serde_json::Value;

const RECORDED: &[&str] = &["connected-fields", "tokens-concatenate"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cmd() -> Command {
    let mut c = Command::cargo_bin("wschat-check").expect("the binary is built");
    c.current_dir(root())
        .env_remove("WSCHAT_TARGET")
        .env_remove("WSCHAT_TOKEN")
        .env_remove("WSCHAT_JWT_SECRET")
        .env("NO_COLOR", "1");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wschat-rr-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Records the scenarios once per test binary; returns the folder of recordings.
fn recordings() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tmp("recordings");
        let mut c = cmd();
        c.args(["record", "scenarios/", "--color", "never", "--out"])
            .arg(&dir);
        for n in RECORDED {
            c.args(["--filter", n]);
        }
        let out = c.output().unwrap();
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

/// The session id the recording connected to (last segment of the recorded path).
fn session_id(recording: &Path) -> String {
    let h: Value = serde_json::from_str(&read_lines(recording)[0]).unwrap();
    let path = h["handshake"]["request"]["path"].as_str().unwrap();
    path.rsplit('/').next().unwrap().to_owned()
}

/// `replay RECORDING --run tests/data/replay-ws --filter NAME`, with a JSON report.
fn replay_run(recording: &Path, name: &str, tag: &str) -> (Output, Value) {
    let report = tmp(tag).join("report.json");
    let out = cmd()
        .arg("replay")
        .arg(recording)
        .args([
            "--run",
            "tests/data/replay-ws",
            "--filter",
            name,
            "--color",
            "never",
        ])
        .arg("--var")
        .arg(format!("session_id={}", session_id(recording)))
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

#[test]
fn recordings_are_well_formed_and_redacted() {
    let dir = recordings();
    for n in RECORDED {
        let p = dir.join(format!("{n}.jsonl"));
        let lines = read_lines(&p);
        let h: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(h["wschat_transcript"], 1);
        assert_eq!(h["scenario"], *n);
        assert_eq!(h["discriminator"], "/type");
        assert_eq!(h["handshake"]["response"]["status"], 101);
        assert!(lines.len() > 2, "{n}: frames were recorded");
        for (i, l) in lines[1..].iter().enumerate() {
            let r: Value = serde_json::from_str(l).unwrap();
            assert_eq!(r["seq"], i as u64, "{n}: seq runs without gaps");
        }
        let all = lines.join("\n");
        // The scenarios authenticate with minted JWTs: none may reach the file.
        assert!(
            !all.contains("eyJ"),
            "{n}: a token leaked into the recording"
        );
    }
}

#[test]
fn recordings_pass_the_offline_check() {
    let out = cmd()
        .arg("check")
        .arg(recordings())
        .args(["--suite", "scenarios", "--color", "never"])
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
}

#[test]
fn replayed_recordings_satisfy_the_same_scenarios() {
    for n in RECORDED {
        let p = recordings().join(format!("{n}.jsonl"));
        let (out, report) = replay_run(&p, n, &format!("replay-{n}"));
        let s = &report["scenarios"][0];
        assert_eq!(
            s["status"],
            "passed",
            "{n}: {s:#}\nstderr:\n{}",
            text(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0));
    }
}

/// A copy of a recording with `edit` applied to the first record `pick` selects.
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

    let (out, report) = replay_run(&p, "tokens-concatenate", "tampered-received-run");
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
    let (out, report) = replay_run(&p, "tokens-concatenate", "tampered-sent-run");
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
