use super::*;
use serde_json::json;

fn opts() -> LoadOptions {
    let mut o = LoadOptions::default();
    o.vars.insert("cli_var".into(), "1".into());
    o
}

fn load(yaml: &str) -> Result<Scenario, LoadError> {
    load_scenario_str(Path::new("t.yaml"), yaml, &SuiteConfig::default(), &opts())
}

fn ok(yaml: &str) -> Scenario {
    load(yaml).unwrap_or_else(|e| panic!("{}", e.render_plain()))
}

/// All problems, one per line.
fn errs(yaml: &str) -> String {
    match load(yaml) {
        Ok(s) => panic!("expected a load error, got {s:?}"),
        Err(e) => e.render_plain(),
    }
}

/// Asserts one problem at `line:col` whose message contains `needle`.
#[track_caller]
fn assert_err(yaml: &str, line_col: &str, needle: &str) {
    let all = errs(yaml);
    let want = format!("t.yaml:{line_col}: ");
    assert!(
        all.lines()
            .any(|l| l.starts_with(&want) && l.contains(needle)),
        "expected a problem at {line_col} containing {needle:?}, got:\n{all}"
    );
}

const ALL_STEPS: &str = r#"# yaml-language-server: $schema=../schemas/scenario.schema.json
name: every-step
description: all step kinds
tags: [a, b]
level: should
requires: [WSCHAT_TEST_UNSET_VAR_FOR_LOADER]
vars:
  text: hello
  auth: "Bearer ${jwt:alice}"
steps:
  - http:
      name: create
      method: post
      path: /api/v1/sessions
      headers: { Authorization: "${auth}" }
      query: { verbose: 1 }
      json: { title: "${text}", n: 2 }
      status: [200, 201]
      match: { user_id: alice }
      capture:
        session_id: /session_id
        first_role: $.history[0].role
      timeout: 5s
  - http: { url: "${http_base}/x", body: "raw ${session_id}" }
  - connect:
      path: /api/v1/chat/ws/${session_id}
      query: { token: "${jwt:alice}" }
      headers: { X-Env: "${env:WSCHAT_TEST_UNSET_VAR_FOR_LOADER}" }
      subprotocols: [wschat.v1]
      expect_subprotocol: wschat.v1
      timeout: 2s
  - connect: { conn: second, url: "ws://x/y", expect_subprotocol: null, expect_refusal: { status: 404, body: { error: { code: SESSION_NOT_FOUND } } } }
  - send: { json: { type: message, content: "${text}" } }
  - send: { text: "{not json" }
  - send: { binary: "AAEC", conn: second }
  - send: { ping: abc }
  - expect:
      name: first token
      match: { type: token, index: { $gte: 0 } }
      skip: false
      timeout: 2s
      capture: { turn: /turn_id }
  - expect_pong: { payload: abc, timeout: 1s }
  - collect:
      until: { type: { $in: [final_answer, cancelled, error] } }
      timeout: 10s
      capture: { answer: /content }
      assert:
        count: { token: { $gte: 1 }, final_answer: 1 }
        present: [turn_started, final_answer]
        absent: [error]
        order: [turn_started, token, final_answer]
        all_before: { token: final_answer }
        concat: { items: token, field: /content, equals: { event: final_answer, field: /content } }
        each: { type: token, match: { turn_id: "${turn}" } }
  - expect_none: { match: { type: token }, within: 200ms }
  - expect_close: { code: 4401, reason: { $regex: auth }, timeout: 2s, strict: true }
  - expect_close: { code: none, conn: second }
  - close: { code: 1000, reason: bye }
  - close:
  - sleep: 100ms
  - sleep: { duration: 1s, name: pause }
  - timing:
      connect: { $lte: 500ms }
      first_token: { $gte: 1ms, $lt: 2s }
      turn: 5s
  - send: { json: { answer: "${answer}", c: "${cli_var}", u: "${uuid}", t: "${target}", k: "${token}", e: "cost $${x}" } }
"#;

#[test]
fn every_step_kind_round_trips() {
    let s = ok(ALL_STEPS);
    assert_eq!(s.name, "every-step");
    assert_eq!(s.description.as_deref(), Some("all step kinds"));
    assert_eq!(s.tags, vec!["a", "b"]);
    assert_eq!(s.level, Level::Should);
    assert_eq!(s.requires, vec!["WSCHAT_TEST_UNSET_VAR_FOR_LOADER"]);
    assert_eq!(s.vars["auth"].0, json!("Bearer ${jwt:alice}"));
    assert_eq!((s.loc.line, s.loc.col), (2, 1));
    let kinds: Vec<&str> = s.steps.iter().map(|st| st.kind.keyword()).collect();
    assert_eq!(
        kinds,
        [
            "http",
            "http",
            "connect",
            "connect",
            "send",
            "send",
            "send",
            "send",
            "expect",
            "expect_pong",
            "collect",
            "expect_none",
            "expect_close",
            "expect_close",
            "close",
            "close",
            "sleep",
            "sleep",
            "timing",
            "send"
        ]
    );
    assert_eq!((s.steps[0].loc.line, s.steps[0].loc.col), (11, 5));
    assert_eq!(s.steps[0].name.as_deref(), Some("create"));

    let StepKind::Http(h) = &s.steps[0].kind else {
        panic!()
    };
    assert_eq!(h.method, "POST");
    assert!(matches!(&h.url, Url::Path(t) if t.0 == json!("/api/v1/sessions")));
    assert_eq!(h.headers["Authorization"].0, json!("${auth}"));
    assert_eq!(h.query["verbose"].0, json!(1));
    assert!(
        matches!(&h.body, Some(HttpBody::Json(t)) if t.0 == json!({"title": "${text}", "n": 2}))
    );
    assert_eq!(h.status, vec![200, 201]);
    assert_eq!(
        h.matcher.as_ref().unwrap().0 .0,
        json!({"user_id": "alice"})
    );
    assert!(matches!(&h.capture["session_id"], CapturePath::Pointer(p) if p == "/session_id"));
    assert!(
        matches!(&h.capture["first_role"], CapturePath::JsonPath(p) if p == "$.history[0].role")
    );
    assert_eq!(h.timeout, Some(Duration::from_secs(5)));

    let StepKind::Http(h) = &s.steps[1].kind else {
        panic!()
    };
    assert_eq!(h.method, "GET");
    assert!(matches!(&h.url, Url::Absolute(t) if t.0 == json!("${http_base}/x")));
    assert!(matches!(&h.body, Some(HttpBody::Text(t)) if t.0 == json!("raw ${session_id}")));
    assert!(h.status.is_empty());

    let StepKind::Connect(c) = &s.steps[2].kind else {
        panic!()
    };
    assert_eq!(c.conn, "main");
    assert_eq!(c.subprotocols, vec!["wschat.v1"]);
    assert_eq!(c.expect_subprotocol, Some(Some("wschat.v1".into())));
    assert!(c.expect_refusal.is_none());
    assert_eq!(c.timeout, Some(Duration::from_secs(2)));
    let StepKind::Connect(c) = &s.steps[3].kind else {
        panic!()
    };
    assert_eq!(c.conn, "second");
    assert_eq!(c.expect_subprotocol, Some(None));
    let r = c.expect_refusal.as_ref().unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(
        r.body.as_ref().unwrap().0 .0,
        json!({"error": {"code": "SESSION_NOT_FOUND"}})
    );

    let payloads: Vec<&SendPayload> = s.steps[4..8]
        .iter()
        .map(|st| match &st.kind {
            StepKind::Send(x) => &x.payload,
            _ => panic!(),
        })
        .collect();
    assert!(
        matches!(payloads[0], SendPayload::Json(t) if t.0 == json!({"type": "message", "content": "${text}"}))
    );
    assert!(matches!(payloads[1], SendPayload::Text(t) if t.0 == json!("{not json")));
    assert!(matches!(payloads[2], SendPayload::Binary(b) if b == &[0u8, 1, 2]));
    assert!(matches!(payloads[3], SendPayload::Ping(b) if b == b"abc"));
    let StepKind::Send(x) = &s.steps[6].kind else {
        panic!()
    };
    assert_eq!(x.conn, "second");

    let StepKind::Expect(e) = &s.steps[8].kind else {
        panic!()
    };
    assert_eq!(s.steps[8].name.as_deref(), Some("first token"));
    assert!(!e.skip);
    assert_eq!(e.timeout, Some(Duration::from_secs(2)));
    assert!(e.capture.contains_key("turn"));

    let StepKind::ExpectPong(p) = &s.steps[9].kind else {
        panic!()
    };
    assert_eq!(p.payload.as_deref(), Some(&b"abc"[..]));
    assert_eq!(p.timeout, Some(Duration::from_secs(1)));

    let StepKind::Collect(c) = &s.steps[10].kind else {
        panic!()
    };
    assert_eq!(c.timeout, Some(Duration::from_secs(10)));
    assert_eq!(c.assert.count.len(), 2);
    assert_eq!(c.assert.count["final_answer"].0 .0, json!(1));
    assert_eq!(c.assert.present, vec!["turn_started", "final_answer"]);
    assert_eq!(c.assert.absent, vec!["error"]);
    assert_eq!(c.assert.order.len(), 3);
    assert_eq!(c.assert.all_before["token"], "final_answer");
    let cc = c.assert.concat.as_ref().unwrap();
    assert_eq!(
        (cc.items.as_str(), cc.field.as_str()),
        ("token", "/content")
    );
    match &cc.target {
        ConcatTarget::Event { event, field } => {
            assert_eq!(
                (event.as_str(), field.as_str()),
                ("final_answer", "/content")
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.assert.each.len(), 1);
    assert_eq!(c.assert.each[0].event_type, "token");

    let StepKind::ExpectNone(n) = &s.steps[11].kind else {
        panic!()
    };
    assert_eq!(n.within, Duration::from_millis(200));
    let StepKind::ExpectClose(x) = &s.steps[12].kind else {
        panic!()
    };
    assert!(matches!(x.code, CloseCodeExpect::Code(4401)) && x.strict && x.reason.is_some());
    let StepKind::ExpectClose(x) = &s.steps[13].kind else {
        panic!()
    };
    assert!(matches!(x.code, CloseCodeExpect::NoFrame) && !x.strict && x.conn == "second");
    let StepKind::Close(x) = &s.steps[14].kind else {
        panic!()
    };
    assert_eq!((x.code, x.reason.as_str()), (1000, "bye"));
    let StepKind::Close(x) = &s.steps[15].kind else {
        panic!()
    };
    assert_eq!(
        (x.code, x.reason.as_str(), x.conn.as_str()),
        (1000, "", "main")
    );
    assert!(matches!(s.steps[16].kind, StepKind::Sleep(d) if d == Duration::from_millis(100)));
    assert!(matches!(s.steps[17].kind, StepKind::Sleep(d) if d == Duration::from_secs(1)));
    assert_eq!(s.steps[17].name.as_deref(), Some("pause"));
    let StepKind::Timing(t) = &s.steps[18].kind else {
        panic!()
    };
    assert_eq!(
        t.bounds[&TimingMetric::Connect].max,
        Some(Duration::from_millis(500))
    );
    let ft = t.bounds[&TimingMetric::FirstToken];
    assert_eq!(
        (ft.min, ft.max),
        (Some(Duration::from_millis(1)), Some(Duration::from_secs(2)))
    );
    assert_eq!(
        t.bounds[&TimingMetric::Turn].max,
        Some(Duration::from_secs(5))
    );
}

#[test]
fn defaults() {
    let s = ok("name: d\nsteps:\n  - expect: { match: { type: x } }\n  - connect: {}\n");
    assert_eq!(s.level, Level::Must);
    let StepKind::Expect(e) = &s.steps[0].kind else {
        panic!()
    };
    assert!(e.skip);
    assert_eq!(e.conn, "main");
    assert!(e.timeout.is_none());
    let StepKind::Connect(c) = &s.steps[1].kind else {
        panic!()
    };
    assert!(matches!(&c.url, Url::Path(t) if t.0 == json!("")));
    assert!(c.expect_subprotocol.is_none());
}

#[test]
fn bad_yaml_keeps_the_parser_message_and_place() {
    assert_err("name: x\nsteps: [1, 2\nfoo: 3\n", "3:4", "invalid YAML");
    let all = errs("name: a\nname: b\n");
    assert!(
        all.starts_with("t.yaml:2:1: invalid YAML: duplicate mapping key"),
        "{all}"
    );
    assert!(!all.contains("DuplicateKeyPolicy"), "{all}");
}

#[test]
fn unknown_step_kind() {
    assert_err(
        "name: x\nsteps:\n  - expct: { match: {} }\n",
        "3:5",
        "unknown step kind 'expct'; did you mean 'expect'?",
    );
    assert_err(
        "name: x\nsteps:\n  - sleep\n",
        "3:5",
        "write `- sleep: {...}`",
    );
    assert_err(
        "name: x\nsteps:\n  - sleep: 1s\n    name: nap\n",
        "4:5",
        "move 'name' inside the 'sleep' step",
    );
}

#[test]
fn unknown_fields() {
    assert_err(
        "name: x\nstep: []\n",
        "2:1",
        "unknown field 'step' in a scenario; did you mean 'steps'?",
    );
    assert_err(
        "name: x\nsteps:\n  - expect: { match: {}, timout: 1s }\n",
        "3:26",
        "unknown field 'timout' in an expect step; did you mean 'timeout'?",
    );
    assert_err(
        "name: x\nsteps:\n  - http: { path: /, statuss: 200 }\n",
        "3:22",
        "unknown field 'statuss'",
    );
}

#[test]
fn wrong_types() {
    assert_err(
        "name: x\nsteps:\n  - expect: { match: {}, skip: yes }\n",
        "3:32",
        "skip must be true or false, got a string",
    );
    assert_err(
        "name: x\nsteps:\n  - close: { code: big }\n",
        "3:20",
        "code must be an integer",
    );
    assert_err(
        "name: x\nsteps:\n  - http: { path: /, status: 42 }\n",
        "3:30",
        "HTTP status from 100 to 599",
    );
    assert_err("name: x\nsteps: {}\n", "2:8", "steps must be a list");
    assert_err(
        "name: x\nlevel: must-ish\nsteps: [sleep: 1s]\n",
        "2:8",
        "level must be one of must, should, may",
    );
    assert_err(
        "name: X y\nsteps: [sleep: 1s]\n",
        "1:7",
        "must match [a-z0-9._-]+",
    );
    assert_err(
        "name: x\nsteps:\n  - send: { binary: '!!' }\n",
        "3:21",
        "binary must be base64",
    );
}

#[test]
fn missing_and_conflicting_fields() {
    assert_err(
        "name: x\nsteps:\n  - expect: { skip: true }\n",
        "3:13",
        "an expect step needs 'match'",
    );
    assert_err("steps: [sleep: 1s]\n", "1:1", "a scenario needs 'name'");
    assert_err(
        "name: x\nsteps:\n  - send: { json: {}, text: a }\n",
        "3:23",
        "takes only one of json, text, binary, ping",
    );
    assert_err(
        "name: x\nsteps:\n  - http: { json: {} }\n",
        "3:11",
        "an http step needs one of: path, url",
    );
    assert_err("name: x\nsteps: []\n", "2:8", "steps must not be empty");
}

#[test]
fn bad_matchers_point_at_the_operator() {
    assert_err(
        "name: x\nsteps:\n  - expect:\n      match: { type: { $regexp: '^a' } }\n",
        "4:24",
        "unknown operator '$regexp'; did you mean '$regex'?",
    );
    assert_err(
        "name: x\nsteps:\n  - expect:\n      match: { id: { $regex: '(' } }\n",
        "4:30",
        "invalid regex \"(\": unclosed group",
    );
    assert_err(
        "name: x\nsteps:\n  - expect:\n      match: { n: { $gte: ten } }\n",
        "4:27",
        "$gte takes a number",
    );
    assert_err(
        "name: x\nsteps:\n  - collect:\n      until: { type: a }\n      assert: { count: { a: { $lt: x } } }\n",
        "5:36",
        "$lt takes a number",
    );
    assert_err(
        "name: x\nsteps:\n  - expect_close: { reason: { $nope: 1 } }\n",
        "3:31",
        "unknown operator '$nope'",
    );
}

#[test]
fn unknown_variables() {
    assert_err(
        "name: x\nvars: { session_id: a }\nsteps:\n  - send: { text: 'id ${sesion_id}' }\n",
        "4:19",
        "unknown variable 'sesion_id'; did you mean 'session_id'? (known: cli_var, session_id, target, http_base, token, uuid)",
    );
    // A capture is known only after the step that captures it.
    assert_err(
        "name: x\nsteps:\n  - expect: { match: { t: '${turn}' }, capture: { turn: /turn } }\n  - send: { text: '${turn}' }\n",
        "3:27",
        "unknown variable 'turn'",
    );
    assert!(load("name: x\nsteps:\n  - expect: { match: {}, capture: { turn: /turn } }\n  - send: { text: '${turn}' }\n").is_ok());
    assert_err(
        "name: x\nsteps:\n  - send: { text: '${jtw:alice}' }\n",
        "3:19",
        "unknown variable prefix 'jtw:' in '${jtw:alice}'; did you mean 'jwt:'?",
    );
    assert_err(
        "name: x\nsteps:\n  - send: { text: 'a ${b' }\n",
        "3:19",
        "unclosed placeholder",
    );
    assert_err(
        "name: x\nsteps:\n  - send: { text: '${env:WSCHAT_LOADER_SURELY_UNSET}' }\n",
        "3:19",
        "environment variable 'WSCHAT_LOADER_SURELY_UNSET' is not set",
    );
    assert_err(
        "name: x\nvars: { a: '${b}', b: 'x${a}' }\nsteps: [sleep: 1s]\n",
        "2:9",
        "variable 'a' refers to itself",
    );
    assert_err(
        "name: x\nsteps:\n  - connect: { conn: '${c}' }\n",
        "3:22",
        "conn is not templated",
    );
}

#[test]
fn bad_durations_and_captures() {
    assert_err(
        "name: x\nsteps:\n  - sleep: 5\n",
        "3:12",
        "sleep must be a duration with a unit",
    );
    assert_err(
        "name: x\nsteps:\n  - sleep: 5 parsecs\n",
        "3:12",
        "invalid duration",
    );
    assert_err(
        "name: x\nsteps:\n  - expect: { match: {}, timeout: soon }\n",
        "3:35",
        "invalid duration \"soon\"",
    );
    assert_err(
        "name: x\nsteps:\n  - expect: { match: {}, capture: { a: turn_id } }\n",
        "3:40",
        "did you mean '/turn_id'?",
    );
    assert_err(
        "name: x\nsteps:\n  - expect: { match: {}, capture: { a: '$[' } }\n",
        "3:40",
        "invalid JSONPath",
    );
}

#[test]
fn reports_every_problem_of_a_file() {
    let all =
        errs("name: x\nsteps:\n  - expct: {}\n  - sleep: never\n  - send: { text: '${nope}' }\n");
    assert_eq!(all.lines().count(), 3, "{all}");
    assert!(
        all.lines().next().unwrap().starts_with("t.yaml:3:5: "),
        "{all}"
    );
    let e = load("name: x\nsteps:\n  - expct: {}\n  - sleep: never\n").unwrap_err();
    assert!(
        e.to_string().starts_with("t.yaml:3:5: unknown step kind"),
        "{e}"
    );
    assert!(e.to_string().ends_with("(and 1 more problem)"), "{e}");
}

#[test]
fn miette_diagnostic_has_snippet_and_labels() {
    let e = load("name: x\nsteps:\n  - expct: {}\n").unwrap_err();
    let labels: Vec<LabeledSpan> = Diagnostic::labels(&e).unwrap().collect();
    assert_eq!(labels.len(), 1);
    let text = "name: x\nsteps:\n  - expct: {}\n";
    assert_eq!(
        &text[labels[0].offset()..labels[0].offset() + labels[0].len()],
        "expct"
    );
    assert!(Diagnostic::source_code(&e).is_some());
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .render_report(&mut out, &e)
        .unwrap();
    assert!(out.contains("unknown step"), "{out}");
    assert!(out.contains("expct: {}"), "{out}");
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
    assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
    assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
    assert_eq!(parse_size("4096").unwrap(), 4096);
    assert!(parse_size("16 parsecs").is_err());
    assert!(parse_size("").is_err());
    assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
    assert!(parse_duration("5").is_err());
}

// ------------------------------------------------------------------ suites on disk

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("wschat-load-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn suite_folder_with_config_rules_and_fixtures() {
    let d = TempDir::new("suite");
    d.write(
        "wschat-suite.yaml",
        "target: ws://127.0.0.1:1\ndiscriminator: kind\nignore: [heartbeat]\ntimeouts: { expect: 2s }\nmax_frame_bytes: 1MiB\nrules: ordering.yaml\nauth: { jwt_secret: '${env:WSCHAT_LOADER_SURELY_UNSET}' }\nvars: { user: alice }\nschemas: .\n",
    );
    d.write("ordering.yaml", "rules: []\n");
    d.write("b.yaml", "name: b\nsteps:\n  - send: { text: '${user}' }\n");
    d.write("a/a.yml", "name: a\nsteps: [sleep: 1s]\n");
    d.write("fixtures/bad.yaml", "this is: [not a scenario\n");
    d.write("notes.txt", "ignored");
    let suite = load_suite(std::slice::from_ref(&d.0), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{}", e.render_plain()));
    let names: Vec<&str> = suite.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let c = &suite.config;
    assert_eq!(c.discriminator, "/kind");
    assert_eq!(c.ignore, vec!["heartbeat"]);
    assert_eq!(c.timeouts.expect, Duration::from_secs(2));
    assert_eq!(c.timeouts.connect, Duration::from_secs(5));
    assert_eq!(c.max_frame_bytes, 1 << 20);
    assert_eq!(c.target.as_ref().unwrap().0, json!("ws://127.0.0.1:1"));
    assert_eq!(c.vars["user"].0, json!("alice"));
    assert_eq!(c.schemas_dir.as_deref(), Some(d.0.join(".").as_path()));
    assert_eq!(
        suite.rules_file.as_deref(),
        Some(d.0.join("ordering.yaml").as_path())
    );
    assert_eq!(
        c.file.as_deref(),
        Some(d.0.join("wschat-suite.yaml").as_path())
    );
}

#[test]
fn default_rules_file_is_not_a_scenario() {
    let d = TempDir::new("rules");
    d.write("rules.yaml", "rules: []\n");
    d.write("s.yaml", "name: s\nsteps: [sleep: 1s]\n");
    let suite = load_suite(std::slice::from_ref(&d.0), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{}", e.render_plain()));
    assert_eq!(suite.scenarios.len(), 1);
    assert_eq!(
        suite.rules_file.as_deref(),
        Some(d.0.join("rules.yaml").as_path())
    );
    assert_eq!(suite.config.discriminator, "/type");
    assert!(suite.config.file.is_none());
}

#[test]
fn duplicate_names_show_both_places() {
    let d = TempDir::new("dup");
    let a = d.write("a.yaml", "name: same\nsteps: [sleep: 1s]\n");
    let b = d.write("b.yaml", "# second\nname: same\nsteps: [sleep: 1s]\n");
    let e = load_suite(std::slice::from_ref(&d.0), &LoadOptions::default()).unwrap_err();
    assert_eq!(e.problems.len(), 1, "{}", e.render_plain());
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}:2:7: duplicate scenario name 'same'",
            b.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("first defined at {}:1:1", a.display())),
        "{msg}"
    );
}

#[test]
fn problems_from_several_files_and_the_config() {
    let d = TempDir::new("multi");
    d.write("wschat-suite.yaml", "timeouts: { expect: 5 }\n");
    d.write("a.yaml", "name: a\nsteps: [slep: 1s]\n");
    d.write("b.yaml", "name: b\nsteps: [sleep: x]\n");
    let e = load_suite(std::slice::from_ref(&d.0), &LoadOptions::default()).unwrap_err();
    let all = e.render_plain();
    assert_eq!(e.problems.len(), 3, "{all}");
    assert!(
        all.contains("wschat-suite.yaml:1:21: timeouts.expect must be a duration"),
        "{all}"
    );
    assert!(
        all.contains("a.yaml:2:9: unknown step kind 'slep'"),
        "{all}"
    );
    assert!(
        all.contains("b.yaml:2:16: sleep: invalid duration"),
        "{all}"
    );
}

#[test]
fn single_file_argument_and_cli_vars() {
    let d = TempDir::new("file");
    d.write("wschat-suite.yaml", "vars: { base: x }\n");
    let f = d.write(
        "one.yaml",
        "name: one\nsteps:\n  - send: { text: '${base} ${from_cli}' }\n",
    );
    d.write("other.yaml", "name: other\nsteps: [sleep: 1s]\n");
    let e = load_suite(std::slice::from_ref(&f), &LoadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("unknown variable 'from_cli'"), "{e}");
    let mut o = LoadOptions::default();
    o.vars.insert("from_cli".into(), "1".into());
    let suite = load_suite(&[f], &o).unwrap();
    assert_eq!(suite.scenarios.len(), 1);
    assert!(suite.config.vars.contains_key("base"));
}

#[test]
fn missing_path_is_an_error() {
    let e = load_suite(
        &[PathBuf::from("/nonexistent/wschat/x.yaml")],
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/wschat/x.yaml: no such file or folder"),
        "{e}"
    );
}

/// The files in fixtures/invalid/ each name the expected `line:col` on their first line.
#[test]
fn invalid_fixtures_fail_where_they_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/invalid");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut n = 0;
    for entry in entries {
        let p = entry.unwrap().path();
        if !is_yaml(&p) {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let expected = first.strip_prefix("# expect: ").unwrap_or_else(|| {
            panic!(
                "{}: first line must be '# expect: L:C message'",
                p.display()
            )
        });
        let (line_col, needle) = expected.split_once(' ').unwrap();
        let e = load_scenario_str(&p, &text, &SuiteConfig::default(), &LoadOptions::default())
            .unwrap_err();
        let want = format!("{}:{line_col}: ", p.display());
        let all = e.render_plain();
        assert!(
            all.starts_with(&want) && all.lines().next().unwrap().contains(needle),
            "{}: expected {expected}, got:\n{all}",
            p.display()
        );
        n += 1;
    }
    assert!(n >= 5, "expected the invalid fixtures, found {n}");
}

#[test]
fn duplicate_name_fixture_folder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/invalid/duplicate-name");
    let e = load_suite(std::slice::from_ref(&dir), &LoadOptions::default()).unwrap_err();
    let msg = e.to_string();
    let want = format!(
        "{}:2:7: duplicate scenario name 'same-name' (first defined at {}:2:1)",
        dir.join("b.yaml").display(),
        dir.join("a.yaml").display()
    );
    assert_eq!(msg, want);
}

#[test]
fn suite_requires_target_required_asyncapi_claims_g2_g3() {
    let d = TempDir::new("gaps");
    d.write(
        "wschat-suite.yaml",
        "requires: [WSCHAT_TARGET, WSCHAT_TOKEN]\ntarget_required: true\ncheck_sent: false\nasyncapi: api.yaml\nauth:\n  jwt_secret: ${env:WSCHAT_LOADER_SURELY_UNSET:-}\n  claims: { customer_id: '${cid}', tier: 2 }\nvars: { cid: c-1 }\n",
    );
    d.write("api.yaml", "asyncapi: 3.0.0\n");
    // The scenario's own `requires` follow the suite's, without repeats; the unset env var it
    // uses is then no load error (the runner skips the scenario with the reason instead).
    d.write(
        "s.yaml",
        "name: s\nrequires: [WSCHAT_TOKEN, WSCHAT_OTHER]\nsteps:\n  - send: { text: '${env:WSCHAT_TARGET}' }\n",
    );
    let suite = load_suite(std::slice::from_ref(&d.0), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{}", e.render_plain()));
    let c = &suite.config;
    assert_eq!(c.requires, ["WSCHAT_TARGET", "WSCHAT_TOKEN"]);
    assert!(c.target_required);
    assert!(!c.check_sent);
    assert_eq!(c.asyncapi.as_deref(), Some(d.0.join("api.yaml").as_path()));
    assert_eq!(
        c.auth.claims.as_ref().unwrap().0,
        json!({"customer_id": "${cid}", "tier": 2})
    );
    assert_eq!(
        suite.scenarios[0].requires,
        ["WSCHAT_TARGET", "WSCHAT_TOKEN", "WSCHAT_OTHER"]
    );

    // Defaults: none of it.
    let c = SuiteConfig::default();
    assert!(c.requires.is_empty() && !c.target_required && c.asyncapi.is_none() && c.check_sent);

    // Wrong shapes name the place.
    let bad = |yaml: &str| match load_config_str(&d.0.join("wschat-suite.yaml"), yaml, &opts()) {
        Ok(_) => panic!("expected an error for {yaml:?}"),
        Err(e) => e.render_plain(),
    };
    assert!(bad("asyncapi: missing.yaml\n").contains("AsyncAPI document"));
    assert!(bad("auth: { claims: [a] }\n").contains("auth.claims must map claim names"));
    assert!(bad("target_required: yes\n").contains("target_required must be true or false"));
    assert!(bad("requires: WSCHAT_X\n").contains("requires must be a list"));
}

#[test]
fn repeat_and_env_default_placeholders_are_checked_at_load() {
    // `${env:NAME:-default}` needs no `requires`: it always renders.
    ok("name: e\nsteps:\n  - send: { text: '${env:WSCHAT_LOADER_SURELY_UNSET:-x}' }\n");
    ok("name: r\nsteps:\n  - send: { text: '${repeat:1100000:a}' }\n");
    let e = errs("name: r\nsteps:\n  - send: { text: '${repeat:many:a}' }\n");
    assert!(
        e.contains("repeat count 'many' is not a whole number"),
        "{e}"
    );
    let e = errs("name: r\nsteps:\n  - send: { text: '${repeat:999999999999:ab}' }\n");
    assert!(e.contains("MiB limit"), "{e}");
}

// ------------------------------------------------------------------ embedded: and durations as vars

const EMBEDDED_SUITE: &str = "vars:\n  quiet: 200ms\n  wait: ${env:WSCHAT_LOADER_SURELY_UNSET_WAIT:-8s}\nembedded:\n  server: { auth_timeout: 300ms, rate_burst: 10, max_message_bytes: 64KiB }\n  vars: { quiet: 50ms }\n";
const EMBEDDED_SCENARIO: &str = "name: s\nvars: { local: 3s }\nsteps:\n  - sleep: \"${quiet}\"\n  - sleep: \"${wait}\"\n  - sleep: \"${local}\"\n  - sleep: \"1${from_cli}\"\n";

fn sleeps(s: &Scenario) -> Vec<Duration> {
    s.steps
        .iter()
        .filter_map(|st| match st.kind {
            StepKind::Sleep(d) => Some(d),
            _ => None,
        })
        .collect()
}

#[test]
fn embedded_vars_replace_suite_vars_only_for_the_embedded_server() {
    let d = TempDir::new("embedded");
    d.write("wschat-suite.yaml", EMBEDDED_SUITE);
    d.write("s.yaml", EMBEDDED_SCENARIO);
    let mut o = LoadOptions::default();
    o.vars.insert("from_cli".into(), "00ms".into());
    let ms = Duration::from_millis;

    // No --target and no suite target: the embedded server runs, with the embedded vars.
    let suite = load_suite_for_run(std::slice::from_ref(&d.0), &o, false)
        .unwrap_or_else(|e| panic!("{}", e.render_plain()));
    let e = &suite.config.embedded;
    assert!(e.applied);
    assert_eq!(e.server.auth_timeout, Some(ms(300)));
    assert_eq!(e.server.rate_burst, Some(10));
    assert_eq!(e.server.max_message_bytes, Some(64 * 1024));
    assert_eq!(e.server.idle_timeout, None);
    assert_eq!(suite.config.vars["quiet"].0, json!("50ms"));
    assert_eq!(e.replaced["quiet"].0, json!("200ms"));
    assert_eq!(
        sleeps(&suite.scenarios[0]),
        [ms(50), ms(8000), ms(3000), ms(100)]
    );
    let server = e.server.apply(reference_server::Config::default());
    assert_eq!(server.auth_timeout, ms(300));
    assert_eq!(server.rate_limit_per_sec, 20, "unset keys keep the default");

    // --target: the suite's own vars; the server settings stay unapplied.
    let suite = load_suite_for_run(std::slice::from_ref(&d.0), &o, true).unwrap();
    assert!(!suite.config.embedded.applied);
    assert_eq!(suite.config.vars["quiet"].0, json!("200ms"));
    assert_eq!(sleeps(&suite.scenarios[0])[0], ms(200));

    // A --var wins over both.
    o.vars.insert("quiet".into(), "7ms".into());
    let suite = load_suite_for_run(std::slice::from_ref(&d.0), &o, false).unwrap();
    assert_eq!(sleeps(&suite.scenarios[0])[0], ms(7));

    // A suite target means another server as well.
    d.write(
        "wschat-suite.yaml",
        &format!("target: ws://127.0.0.1:1\n{EMBEDDED_SUITE}"),
    );
    let suite = load_suite_for_run(std::slice::from_ref(&d.0), &o, false).unwrap();
    assert!(!suite.config.embedded.applied);
}

#[test]
fn embedded_section_mistakes_are_located() {
    let d = TempDir::new("embedded-bad");
    let cfg = d.write(
        "wschat-suite.yaml",
        "vars: { quiet: 200ms }\nembedded:\n  server:\n    auth_timout: 1s\n    rate_burst: 0\n    reply_timeout: ${quiet}\n  vars: { quite: 50ms }\n  other: 1\n",
    );
    d.write("s.yaml", "name: s\nsteps: [sleep: 1s]\n");
    let e = load_suite(std::slice::from_ref(&d.0), &LoadOptions::default()).unwrap_err();
    let all = e.render_plain();
    let at = |lc: &str, needle: &str| {
        let want = format!("{}:{lc}: ", cfg.display());
        assert!(
            all.lines()
                .any(|l| l.starts_with(&want) && l.contains(needle)),
            "expected {lc} {needle:?} in:\n{all}"
        );
    };
    at("4:5", "auth_timout");
    at("5:17", "at least 1");
    at("6:20", "cannot use variables");
    at("7:11", "replaces nothing");
    at("7:11", "did you mean 'quiet'");
    at("8:3", "other");

    // A combination the server would refuse at start.
    d.write(
        "wschat-suite.yaml",
        "embedded:\n  server: { max_message_bytes: 2MiB, hard_max_message_bytes: 1MiB }\n",
    );
    let e = load_suite(std::slice::from_ref(&d.0), &LoadOptions::default()).unwrap_err();
    assert!(
        e.render_plain()
            .contains("wschat-suite.yaml:2:11: embedded.server: hard_max_message_bytes"),
        "{}",
        e.render_plain()
    );
}

#[test]
fn durations_as_templates_are_checked_in_both_variants() {
    let d = TempDir::new("embedded-dur");
    d.write(
        "wschat-suite.yaml",
        "vars: { quiet: soon, pause: 1s }\nembedded:\n  vars: { quiet: 50ms }\n",
    );
    let f = d.write(
        "s.yaml",
        "name: s\nsteps:\n  - sleep: \"${quiet}\"\n  - expect_none: { match: {}, within: \"${nope}\" }\n  - sleep: \"${uuid}\"\n",
    );
    // The embedded run would work with quiet = 50ms; the suite's own value is still reported.
    let e =
        load_suite_for_run(std::slice::from_ref(&d.0), &LoadOptions::default(), false).unwrap_err();
    let all = e.render_plain();
    let p = f.display();
    assert!(
        all.contains(&format!(
            "{p}:3:12: sleep: \"${{quiet}}\" gives invalid duration \"soon\""
        )) && all.contains("(with the suite's vars for other servers)"),
        "{all}"
    );
    assert!(
        all.contains(&format!("{p}:4:39: within: unknown variable 'nope'")),
        "{all}"
    );
    assert!(
        all.contains(&format!("{p}:5:12: sleep: unknown variable 'uuid'")),
        "{all}"
    );
}

#[test]
fn a_duration_from_a_required_env_var_may_be_unset() {
    let s = ok("name: s\nrequires: [WSCHAT_LOADER_SURELY_UNSET_DUR]\nsteps:\n  - sleep: \"${env:WSCHAT_LOADER_SURELY_UNSET_DUR}\"\n");
    assert!(matches!(s.steps[0].kind, StepKind::Sleep(d) if d.is_zero()));
    assert_err(
        "name: s\nsteps:\n  - sleep: \"${env:WSCHAT_LOADER_SURELY_UNSET_DUR}\"\n",
        "3:12",
        "unknown variable 'env:WSCHAT_LOADER_SURELY_UNSET_DUR'",
    );
}

#[test]
fn codec_jobs_and_timing_names_in_the_suite_config() {
    let d = TempDir::new("codec");
    let cfg = |yaml: &str| load_config_str(&d.0.join("wschat-suite.yaml"), yaml, &opts());
    let (c, _) = cfg("codec: text\njobs: 1\ntiming: { request: [$text], chunk: [$text] }\n")
        .unwrap_or_else(|e| panic!("{}", e.render_plain()));
    assert_eq!(
        c.codec,
        crate::codec::Codecs {
            server: crate::codec::Codec::Text,
            client: crate::codec::Codec::Text
        }
    );
    assert_eq!(c.jobs, Some(1));
    assert_eq!(c.timing.request, ["$text"]);
    assert_eq!(c.timing.chunk, ["$text"]);
    assert_eq!(c.timing.terminal, TimingNames::default().terminal);
    assert!(!c.timing.terminal_needs_turn_id);
    let (c, _) = cfg("codec: { server: mixed }\n").unwrap();
    assert_eq!(c.codec.server, crate::codec::Codec::Mixed);
    assert_eq!(c.codec.client, crate::codec::Codec::Json);
    let (c, _) = cfg("vars: {}\n").unwrap();
    assert_eq!(c.codec, crate::codec::Codecs::default());
    assert_eq!(c.jobs, None);
    assert_eq!(c.timing, TimingNames::default());

    let bad = |yaml: &str| match cfg(yaml) {
        Ok(_) => panic!("expected an error for {yaml:?}"),
        Err(e) => e.render_plain(),
    };
    let e = bad("codec: txt\n");
    assert!(
        e.contains("wschat-suite.yaml:1:8: codec must be one of json, text, mixed, got 'txt'; did you mean 'text'?"),
        "{e}"
    );
    let e = bad("codec: { sever: text }\n");
    assert!(e.contains("unknown field 'sever'"), "{e}");
    assert!(e.contains("did you mean 'server'"), "{e}");
    let e = bad("jobs: 0\n");
    assert!(
        e.contains("1:7: jobs must be a whole number of at least 1"),
        "{e}"
    );
    let e = bad("timing: { chunks: [token] }\n");
    assert!(e.contains("unknown field 'chunks'"), "{e}");
}

#[test]
fn collect_quiet_expect_text_and_concat_match() {
    let s = ok(r#"name: t
steps:
  - collect:
      quiet: 300ms
      assert:
        concat: { items: $text, field: /text, match: { $regex: "^You said" } }
  - expect: { text: { $regex: "^You" } }
"#);
    let StepKind::Collect(c) = &s.steps[0].kind else {
        panic!()
    };
    assert!(c.until.is_none());
    assert_eq!(c.quiet, Some(Duration::from_millis(300)));
    let cc = c.assert.concat.as_ref().unwrap();
    assert!(
        matches!(&cc.target, ConcatTarget::Match(m) if m.0 .0 == json!({"$regex": "^You said"}))
    );
    let StepKind::Expect(e) = &s.steps[1].kind else {
        panic!()
    };
    // The short form is a match on the `$text` view.
    assert_eq!(
        e.matcher.0 .0,
        json!({"type": "$text", "text": {"$regex": "^You"}})
    );

    assert_err(
        "name: t\nsteps:\n  - collect: { assert: { count: { token: 1 } } }\n",
        "3:14",
        "a collect step needs `until` (the event that ends it) or `quiet`",
    );
    assert_err(
        "name: t\nsteps:\n  - expect: { match: { type: a }, text: x }\n",
        "3:41",
        "takes `match` or `text`",
    );
    assert_err(
        "name: t\nsteps:\n  - collect: { until: { type: a }, assert: { concat: { items: a, field: /x } } }\n",
        "3:54",
        "needs `equals: {event, field}` or `match: <matcher>`",
    );
    assert_err(
        "name: t\nsteps:\n  - collect:\n      until: { type: a }\n      assert: { concat: { items: a, field: /x, equals: { event: b, field: /y }, match: z } }\n",
        "5:88",
        "not both",
    );
    assert_err(
        "name: t\nvars: { user: alice }\nsteps:\n  - send: { text: '${${user}}' }\n",
        "4:19",
        "cannot be a template",
    );
    // Nested placeholders are checked by their inner names too.
    assert_err(
        "name: t\nsteps:\n  - send: { text: '${jwt:${usr}}' }\n",
        "3:19",
        "unknown variable 'usr'",
    );
    ok("name: t\nvars: { user: alice }\nsteps:\n  - send: { text: 'Bearer ${jwt:${user}}' }\n");
}
