//! Hand-built results for the reporters' tests (unit and integration) and for examples.
//! Not part of the stable API.

use std::time::Duration;

use crate::runner::*;
use crate::scenario::Level;

fn frame(
    seq: u64,
    at_us: u64,
    dir: Direction,
    kind: FrameKind,
    text: Option<&str>,
    note: Option<&str>,
) -> FrameRecord {
    FrameRecord {
        seq,
        at_us,
        dir,
        kind,
        len: text.map(str::len).unwrap_or(0),
        text: text.map(str::to_string),
        json: text.and_then(|t| serde_json::from_str(t).ok()),
        note: note.map(str::to_string),
    }
}

/// A transcript of `n` alternating sent/received text frames.
pub fn long_transcript(conn: &str, n: u64) -> Transcript {
    Transcript {
        conn: conn.to_string(),
        url: "ws://127.0.0.1:4000/ws".into(),
        frames: (0..n)
            .map(|i| {
                let dir = if i % 2 == 0 {
                    Direction::Sent
                } else {
                    Direction::Received
                };
                frame(
                    i,
                    1000 * i,
                    dir,
                    FrameKind::Text,
                    Some(&format!("{{\"n\":{i}}}")),
                    None,
                )
            })
            .collect(),
        dropped: 0,
    }
}

fn base(name: &str, file: &str, level: Level, status: Status) -> ScenarioResult {
    ScenarioResult {
        name: name.to_string(),
        description: None,
        location: format!("{file}:1:7"),
        file: file.to_string(),
        level,
        tags: vec![],
        status,
        skip_reason: None,
        duration: Duration::from_micros(12_345),
        attempts: 1,
        steps: vec![],
        failures: vec![],
        transcripts: vec![],
        timings: vec![],
        http: vec![],
    }
}

fn step(
    index: usize,
    keyword: &str,
    name: Option<&str>,
    line: u32,
    outcome: StepOutcome,
) -> StepResult {
    StepResult {
        index,
        keyword: keyword.into(),
        name: name.map(str::to_string),
        location: format!("scenarios/chat/stream.yaml:{line}:7"),
        outcome,
        duration: Duration::from_micros(2_000),
    }
}

pub fn passed(name: &str, level: Level) -> ScenarioResult {
    let mut r = base(name, "scenarios/basic.yaml", level, Status::Passed);
    r.steps = vec![step(0, "connect", None, 5, StepOutcome::Passed)];
    r
}

pub fn skipped(name: &str, level: Level, reason: &str) -> ScenarioResult {
    let mut r = base(name, "scenarios/basic.yaml", level, Status::Skipped);
    r.skip_reason = Some(reason.to_string());
    r.duration = Duration::ZERO;
    r
}

pub fn flaky(name: &str, level: Level) -> ScenarioResult {
    let mut r = base(name, "scenarios/basic.yaml", level, Status::Flaky);
    r.attempts = 2;
    r
}

/// A failed `must` scenario with a schema failure on a received frame, a rule failure, a
/// transcript with an authorization header in the handshake and a JWT in a sent frame.
pub fn failed_must() -> ScenarioResult {
    let mut r = base(
        "tokens arrive in order",
        "scenarios/chat/stream.yaml",
        Level::Must,
        Status::Failed,
    );
    r.description = Some("Tokens of a turn are numbered <0..n> & concatenate".into());
    r.tags = vec!["stream".into()];
    r.steps = vec![
        step(0, "connect", None, 8, StepOutcome::Passed),
        step(1, "send", Some("ask"), 11, StepOutcome::Passed),
        step(2, "expect", Some("first token"), 14, StepOutcome::Failed),
        step(3, "close", None, 20, StepOutcome::NotRun),
    ];
    let step_ref = StepRef {
        index: 2,
        keyword: "expect".into(),
        name: Some("first token".into()),
        location: "scenarios/chat/stream.yaml:14:7".into(),
    };
    r.failures = vec![
        Failure {
            kind: FailureKind::Schema,
            message: "event `token` failed its schema".into(),
            step: Some(step_ref),
            expected: Some("{type: token, index: 0}".into()),
            detail: vec!["closest candidate: seq 3 (type token)".into()],
            schema: Some(SchemaViolation {
                event_type: Some("token".into()),
                instance_path: "".into(),
                keyword: "required".into(),
                schema_path: "/required".into(),
                message: "\"index\" is a required property".into(),
            }),
            rule: None,
            frame: Some(FrameRef {
                conn: "main".into(),
                seq: 3,
            }),
            conn: Some("main".into()),
        },
        Failure {
            kind: FailureKind::Rule,
            message: "token indexes have a gap".into(),
            step: None,
            expected: None,
            detail: vec!["index 2 follows index 0".into()],
            schema: None,
            rule: Some("R4".into()),
            frame: Some(FrameRef {
                conn: "main".into(),
                seq: 4,
            }),
            conn: Some("main".into()),
        },
    ];
    r.transcripts = vec![Transcript {
        conn: "main".into(),
        url: "ws://127.0.0.1:4000/ws?token=***TOKEN***".into(),
        frames: vec![
            frame(
                0,
                1_200,
                Direction::Sent,
                FrameKind::Handshake,
                None,
                Some("GET /ws Authorization: Bearer abc.def"),
            ),
            frame(
                1,
                2_500,
                Direction::Received,
                FrameKind::Handshake,
                None,
                Some("HTTP/1.1 101 Switching Protocols"),
            ),
            frame(
                2,
                3_000,
                Direction::Sent,
                FrameKind::Text,
                Some(
                    r#"{"type":"message","content":"hi <b>&</b>","auth":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"}"#,
                ),
                None,
            ),
            frame(
                3,
                45_000,
                Direction::Received,
                FrameKind::Text,
                Some(r#"{"type":"token","turn_id":"t1","content":"Hel"}"#),
                None,
            ),
            frame(
                4,
                47_000,
                Direction::Received,
                FrameKind::Text,
                Some(r#"{"type":"token","turn_id":"t1","index":2,"content":"lo"}"#),
                None,
            ),
            frame(
                5,
                60_000,
                Direction::Received,
                FrameKind::Close,
                None,
                Some("1000 bye"),
            ),
        ],
        dropped: 0,
    }];
    r.timings = vec![ConnTimings {
        conn: "main".into(),
        connect_ms: Some(2.5),
        first_event_ms: Some(42.0),
        first_token_ms: Some(42.0),
        max_token_gap_ms: Some(2.0),
        turn_ms: None,
        cancel_ack_ms: None,
    }];
    r
}

/// A failed `should` scenario (a timeout, no frame reference).
pub fn failed_should() -> ScenarioResult {
    let mut r = base(
        "cancel is acknowledged quickly",
        "scenarios/chat/cancel.yaml",
        Level::Should,
        Status::Failed,
    );
    r.failures = vec![Failure {
        kind: FailureKind::Timeout,
        message: "no `cancelled` event within 5s".into(),
        step: Some(StepRef {
            index: 1,
            keyword: "expect".into(),
            name: None,
            location: "scenarios/chat/cancel.yaml:9:5".into(),
        }),
        expected: Some("{type: cancelled}".into()),
        detail: vec![],
        schema: None,
        rule: None,
        frame: None,
        conn: Some("c".into()),
    }];
    r.transcripts = vec![long_transcript("c", 12)];
    r
}

pub fn run_info() -> RunInfo {
    RunInfo {
        target: "ws://127.0.0.1:4000/ws".into(),
        total: 6,
        started_at: "2025-01-02T03:04:05Z".into(),
        jobs: 2,
    }
}

/// A full run: one of each status and level combination worth showing.
pub fn results() -> Vec<ScenarioResult> {
    vec![
        passed("connect and receive connected", Level::Must),
        failed_must(),
        failed_should(),
        skipped("binary frames", Level::May, "requires: binary"),
        flaky("ping pong", Level::Should),
        passed("history endpoint", Level::May),
    ]
}

/// The events of [`results`], in a plausible interleaved order.
pub fn events() -> Vec<RunEvent> {
    let results = results();
    let mut ev = vec![RunEvent::RunStarted(run_info())];
    for (i, r) in results.iter().enumerate() {
        ev.push(RunEvent::ScenarioStarted {
            index: i,
            name: r.name.clone(),
        });
    }
    // Finish out of order, as concurrent scenarios do.
    for i in [1usize, 0, 3, 2, 5, 4] {
        ev.push(RunEvent::ScenarioFinished {
            index: i,
            result: Box::new(results[i].clone()),
        });
    }
    let by = crate::report::verdict::ByLevel::from_results(&results).total();
    ev.push(RunEvent::RunFinished(RunSummary {
        passed: by.passed,
        failed: by.failed,
        skipped: by.skipped,
        flaky: by.flaky,
        duration: Duration::from_millis(1234),
    }));
    ev
}
