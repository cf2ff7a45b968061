//! The six protocol packs under `examples/` against their hand-written fixtures, through the real
//! binary: `check --expect` agrees with every fixture's `expect` header, each pack's scenarios pass
//! against a replay of its fixtures (real sockets on 127.0.0.1), and each `broken-*` fixture makes
//! its scenario fail, both offline and when replayed, with the failure its header declares.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

mod support;
use support::{cmd, root, text};

const PACKS: &[&str] = &[
    "ag-ui",
    "connection-ack-heartbeat",
    "openai-realtime-text",
    "plain-text-stream",
    "progress-token-complete",
    "text-chunk-tts",
    "typing-indicator",
];

/// Fixtures that conform but that a rules gap (examples/GAPS.md) still reports: the file, and the only
/// rule it may fail with. They may pass (once the gap is closed) but never fail in another way.
const KNOWN_GAPS: &[(&str, &str)] = &[
    // None today. An entry looks like
    // ("connection-ack-heartbeat/fixtures/error-codes-keep-connection.jsonl", "one-ai-reply-per-message").
];

fn report_path(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wschat-packs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{tag}.json"))
}

/// Runs the binary with `--report-json` and returns the output and the report.
fn with_report(tag: &str, args: &[&str]) -> (Output, Value) {
    let path = report_path(tag);
    let out = cmd()
        .args(args)
        .args(["--color", "never", "--report-json"])
        .arg(&path)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no report at {} ({e})\nstdout:\n{}\nstderr:\n{}",
            path.display(),
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out, serde_json::from_str(&report).unwrap())
}

fn fixtures(pack: &str) -> Vec<PathBuf> {
    let dir = root().join("examples").join(pack).join("fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    v.sort();
    v
}

fn header(path: &Path) -> Value {
    let t = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(t.lines().next().unwrap()).unwrap()
}

fn known_gap(file: &str) -> Option<&'static str> {
    KNOWN_GAPS
        .iter()
        .find(|(f, _)| file.ends_with(f))
        .map(|(_, r)| *r)
}

/// A failed result is acceptable only as its known gap.
fn assert_passed_or_known_gap(s: &Value, what: &str) {
    if s["status"] == "passed" {
        return;
    }
    let file = s["file"].as_str().unwrap_or("");
    let gap = known_gap(file);
    let Some(rule) = gap else {
        panic!("{what}: {} failed: {s:#}", s["name"]);
    };
    let all = s["failures"].to_string();
    assert!(
        all.contains(rule),
        "{what}: {} may fail only with the known gap {rule}: {s:#}",
        s["name"]
    );
}

fn file_stem(file: &str) -> &str {
    Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("")
}

#[test]
fn check_agrees_with_every_fixture_header() {
    // One process for all packs: each file is checked against the suite above its fixtures folder.
    let dirs: Vec<String> = PACKS
        .iter()
        .map(|p| format!("examples/{p}/fixtures"))
        .collect();
    let mut args = vec!["check", "--expect"];
    args.extend(dirs.iter().map(String::as_str));
    let (_out, report) = with_report("check-expect", &args);
    let scenarios = report["scenarios"].as_array().unwrap();
    let total: usize = PACKS.iter().map(|p| fixtures(p).len()).sum();
    assert_eq!(scenarios.len(), total, "one result per fixture");
    let broken = scenarios
        .iter()
        .filter(|s| file_stem(s["file"].as_str().unwrap()).starts_with("broken-"))
        .count();
    assert!(
        broken >= 12,
        "the packs have at least two broken fixtures each"
    );
    for s in scenarios {
        assert_passed_or_known_gap(s, "check --expect");
    }
}

#[test]
fn broken_fixtures_fail_offline_with_their_declared_failure() {
    for pack in PACKS {
        for f in fixtures(pack)
            .into_iter()
            .filter(|f| file_stem(f.to_str().unwrap()).starts_with("broken-"))
        {
            let h = header(&f);
            let e = &h["expect"];
            assert_eq!(
                e["verdict"],
                "fail",
                "{}: a broken fixture declares a failure",
                f.display()
            );
            let (out, report) = with_report(
                &format!("broken-{pack}-{}", file_stem(f.to_str().unwrap())),
                &["check", f.to_str().unwrap()],
            );
            assert_eq!(
                out.status.code(),
                Some(1),
                "{}: check must fail",
                f.display()
            );
            let failures = &report["scenarios"][0]["failures"];
            let hit = failures.as_array().unwrap().iter().any(|x| {
                x["kind"] == e["kind"]
                    && (e["rule"].is_null() || x["rule"] == e["rule"])
                    && (e["seq"].is_null() || x["frame"]["seq"] == e["seq"])
            });
            assert!(hit, "{}: expected {e}, got {failures:#}", f.display());
        }
    }
}

#[test]
fn each_pack_passes_against_its_replayed_fixtures() {
    for pack in PACKS {
        let dir = format!("examples/{pack}");
        let fx = format!("{dir}/fixtures");
        let (out, report) = with_report(&format!("replay-{pack}"), &["replay", &fx, "--run", &dir]);
        let scenarios = report["scenarios"].as_array().unwrap();
        assert!(!scenarios.is_empty(), "{pack}: no scenario ran");
        for s in scenarios {
            assert_ne!(
                s["status"], "skipped",
                "{pack}: every scenario has a fixture: {s:#}"
            );
            if s["status"] != "passed" {
                // A scenario may fail only because its fixture hits a known rules gap.
                let fixture = format!("{pack}/fixtures/{}.jsonl", s["name"].as_str().unwrap());
                let rule = known_gap(&fixture).unwrap_or_else(|| {
                    panic!(
                        "{pack}: {} failed against its replayed fixture: {s:#}\nstderr:\n{}",
                        s["name"],
                        text(&out.stderr)
                    )
                });
                assert!(s["failures"].to_string().contains(rule), "{s:#}");
            }
        }
    }
}

#[test]
fn broken_fixtures_fail_when_replayed() {
    for pack in PACKS {
        for f in fixtures(pack)
            .into_iter()
            .filter(|f| file_stem(f.to_str().unwrap()).starts_with("broken-"))
        {
            let h = header(&f);
            let scenario = h["scenario"].as_str().unwrap().to_owned();
            let e = &h["expect"];
            let dir = format!("examples/{pack}");
            let (out, report) = with_report(
                &format!("replay-broken-{pack}-{}", file_stem(f.to_str().unwrap())),
                &[
                    "replay",
                    f.to_str().unwrap(),
                    "--run",
                    &dir,
                    "--filter",
                    &scenario,
                ],
            );
            let s = &report["scenarios"][0];
            assert_eq!(s["name"], scenario.as_str());
            // The status, not the exit code: a `should` scenario does not fail the run.
            assert_eq!(
                s["status"],
                "failed",
                "{}: the scenario must fail against it\nstdout:\n{}",
                f.display(),
                text(&out.stdout)
            );
            let hit =
                s["failures"].as_array().unwrap().iter().any(|x| {
                    x["kind"] == e["kind"] && (e["rule"].is_null() || x["rule"] == e["rule"])
                });
            assert!(
                hit,
                "{}: expected {e} among {:#}",
                f.display(),
                s["failures"]
            );
        }
    }
}
