//! End-to-end checks of the harness features that close examples/GAPS.md: the bundled suite run
//! with its schemas taken from `schemas/asyncapi.yaml` (item 5), `target_required` (G2), and a
//! scenario provoking close code 1009 with `${repeat:N:TEXT}`. Real sockets, embedded server.

use std::path::PathBuf;

use assert_cmd::Command;

mod support;
use support::{root, text};

/// The shared clean-environment command, with this file's backstop against a hung run.
fn cmd() -> Command {
    let mut c = support::cmd();
    // Generous: the whole suite on a loaded 2-core machine.
    c.timeout(std::time::Duration::from_secs(600));
    c
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("wschat-gaps-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn bundled_suite_passes_with_schemas_from_asyncapi() {
    let out = cmd()
        .args(["run", "scenarios/", "--asyncapi", "schemas/asyncapi.yaml"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("Verdict: conformant"));
}

#[test]
fn a_bad_asyncapi_document_is_a_configuration_error() {
    let d = TempDir::new("bad-asyncapi");
    let doc = d.0.join("api.yaml");
    // A payload whose `$ref` points nowhere: the run must stop before any scenario.
    std::fs::write(
        &doc,
        "asyncapi: 2.6.0\nchannels:\n  c:\n    subscribe:\n      message:\n        payload:\n          $ref: '#/components/schemas/Missing'\n",
    )
    .unwrap();
    let out = cmd()
        .args(["run", "scenarios/", "--asyncapi"])
        .arg(&doc)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("has nothing at '/components/schemas/Missing'"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn target_required_refuses_without_a_target() {
    let out = cmd().args(["run", "examples/ag-ui"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("target_required"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn repeat_builds_a_frame_over_the_hard_limit() {
    // The reference server's hard frame limit closes with 1009 (docs/PROTOCOL.md).
    let d = TempDir::new("repeat");
    std::fs::write(
        d.0.join("wschat-suite.yaml"),
        format!(
            "schemas: {}\nvars:\n  chat: /api/v1/chat/ws\n  sessions: /api/v1/sessions\n",
            root().join("schemas").display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.0.join("too-large.yaml"),
        r#"name: frame-too-large-1009
steps:
  - http:
      method: POST
      path: "${sessions}"
      headers: { Authorization: "Bearer ${jwt:alice}" }
      status: 201
      capture: { session_id: /session_id }
  - connect:
      path: "${chat}/${session_id}"
      headers: { Authorization: "Bearer ${jwt:alice}" }
  - expect: { match: { type: connected } }
  - send: { text: "${repeat:1_100_000:a}" }
  - expect_close: { code: 1009 }
"#,
    )
    .unwrap();
    let out = cmd().arg("run").arg(&d.0).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
