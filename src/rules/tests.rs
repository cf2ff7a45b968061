//! Checker tests per rule kind: a satisfying sequence gives nothing, each way of breaking a
//! rule gives the expected violation. Rules are written as YAML, as users write them.

use std::path::Path;

use serde_json::{json, Value};

use super::{parse_rules, RuleSet, RuleViolation};
use crate::runner::Direction;

fn rules(yaml: &str) -> RuleSet {
    parse_rules(Path::new("test-rules.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn r(v: Value) -> (Direction, Value) {
    (Direction::Received, v)
}

fn s(v: Value) -> (Direction, Value) {
    (Direction::Sent, v)
}

/// Feeds frames with seq = position; `closed`: Some(c) calls `finish(c)` at the end.
fn run(set: &RuleSet, frames: &[(Direction, Value)], closed: Option<bool>) -> Vec<RuleViolation> {
    let mut c = set.checker("/type");
    let mut out = Vec::new();
    for (i, (d, v)) in frames.iter().enumerate() {
        out.extend(c.observe(i as u64, *d, v));
    }
    if let Some(closed) = closed {
        out.extend(c.finish(closed));
    }
    out
}

fn clean(set: &RuleSet, frames: &[(Direction, Value)]) {
    let v = run(set, frames, Some(true));
    assert!(v.is_empty(), "unexpected violations: {v:#?}");
}

/// Exactly one violation, whose message contains every fragment; returns it.
fn one(v: Vec<RuleViolation>, fragments: &[&str]) -> RuleViolation {
    assert_eq!(v.len(), 1, "expected one violation, got {v:#?}");
    let got = v.into_iter().next().unwrap();
    for f in fragments {
        assert!(got.message.contains(f), "{:?} lacks {f:?}", got.message);
    }
    got
}

fn t(ty: &str) -> Value {
    json!({ "type": ty })
}

fn turn(ty: &str, turn: &str) -> Value {
    json!({ "type": ty, "turn_id": turn })
}

#[test]
fn first() {
    let set = rules(
        "rules:\n  - id: connected-first\n    kind: first\n    one_of: [connected, auth_success]\n",
    );
    clean(&set, &[s(t("ping")), r(t("connected")), r(t("pong"))]);
    clean(&set, &[r(t("auth_success")), r(t("connected"))]);
    let v = one(
        run(&set, &[s(t("message")), r(t("token")), r(t("token"))], None),
        &[
            "rule connected-first:",
            "connected|auth_success",
            "\"token\" (frame #1)",
        ],
    );
    assert_eq!(v.rule, "connected-first");
    assert_eq!(v.seqs, vec![1]);
}

#[test]
fn first_per_key() {
    let set = rules(
        "rules:\n  - id: turn-started-first\n    kind: first_per_key\n    key: /turn_id\n    one_of: [turn_started]\n",
    );
    clean(
        &set,
        &[
            r(t("connected")),
            r(turn("turn_started", "turn-1")),
            r(turn("token", "turn-1")),
            s(turn("cancel", "turn-2")),
            r(turn("turn_started", "turn-2")),
        ],
    );
    one(
        run(
            &set,
            &[
                r(turn("turn_started", "turn-1")),
                r(turn("thinking", "turn-2")),
            ],
            None,
        ),
        &[
            "turn_id \"turn-2\" starts with \"thinking\" (frame #1)",
            "expected turn_started first",
        ],
    );
}

#[test]
fn only_before() {
    let set = rules(
        r#"rules:
  - id: auth-gate
    kind: only_before
    until: connected
    allowed: [auth_success, auth_error, { type: error, where: { /code: AUTH_REQUIRED } }]
"#,
    );
    clean(
        &set,
        &[
            r(json!({"type": "error", "code": "AUTH_REQUIRED"})),
            r(t("auth_success")),
            r(t("connected")),
            r(t("broadcast")),
        ],
    );
    one(
        run(
            &set,
            &[
                r(json!({"type": "error", "code": "INVALID_JSON"})),
                r(t("connected")),
            ],
            None,
        ),
        &[
            "\"error\" (frame #0) arrived before connected",
            "error{/code=AUTH_REQUIRED}",
        ],
    );
}

#[test]
fn followed_by() {
    let set = rules(
        "rules:\n  - id: auth-then-connected\n    kind: followed_by\n    event: auth_success\n    one_of: connected\n",
    );
    clean(
        &set,
        &[
            s(t("auth")),
            r(t("auth_success")),
            s(t("ping")),
            r(t("connected")),
        ],
    );
    one(
        run(&set, &[r(t("auth_success")), r(t("pong"))], None),
        &["\"auth_success\" (frame #0) must be followed immediately by connected, got \"pong\" (frame #1)"],
    );
    // Still waiting when the scenario stops: not conclusive.
    assert!(run(&set, &[r(t("auth_success"))], Some(false)).is_empty());
    one(
        run(&set, &[r(t("auth_success"))], Some(true)),
        &["connection closed first"],
    );
}

#[test]
fn preceded_by() {
    let set = rules(
        r#"rules:
  - id: tool-use-marker
    kind: preceded_by
    event: tool_start
    one_of: { type: custom_event, where: { /event_type: toolUse } }
"#,
    );
    clean(
        &set,
        &[
            r(json!({"type": "custom_event", "event_type": "toolUse"})),
            s(t("heartbeat")),
            r(t("tool_start")),
        ],
    );
    one(
        run(&set, &[r(json!({"type": "custom_event", "event_type": "reasoning"})), r(t("tool_start"))], None),
        &["\"tool_start\" (frame #1) must come immediately after custom_event{/event_type=toolUse}", "follows \"custom_event\" (frame #0)"],
    );
    one(
        run(&set, &[r(t("tool_start"))], None),
        &["it is the first frame"],
    );
}

const TERMINAL: &str = "rules:\n  - id: one-terminal\n    kind: terminal\n    key: /turn_id\n    terminal: [final_answer, cancelled, error]\n";

#[test]
fn terminal_keyed() {
    let set = rules(TERMINAL);
    clean(
        &set,
        &[
            r(turn("turn_started", "turn-1")),
            r(turn("final_answer", "turn-1")),
            // A connection-level error has no turn_id: not part of any turn.
            r(json!({"type": "error", "code": "NO_ACTIVE_TURN"})),
            r(turn("turn_started", "turn-2")),
            r(turn("cancelled", "turn-2")),
            // Still running when the connection closes: not required by default.
            r(turn("turn_started", "turn-3")),
        ],
    );
    let v = one(
        run(
            &set,
            &[
                r(turn("turn_started", "turn-2")),
                r(turn("cancelled", "turn-2")),
                r(turn("final_answer", "turn-2")),
            ],
            None,
        ),
        &[
            "rule one-terminal: turn_id \"turn-2\" got a second terminal event \"final_answer\" (frame #2; terminal: \"cancelled\" at frame #1)",
        ],
    );
    assert_eq!(v.seqs, vec![1, 2]);
    one(
        run(&set, &[r(turn("error", "turn-1")), r(turn("token", "turn-1"))], None),
        &["turn_id \"turn-1\" got \"token\" after its terminal event (frame #1; terminal: \"error\" at frame #0)"],
    );
}

#[test]
fn terminal_required_on_close() {
    let set = rules(&format!("{TERMINAL}    require_on_close: true\n"));
    let frames = [
        r(turn("turn_started", "turn-1")),
        r(turn("token", "turn-1")),
    ];
    assert!(run(&set, &frames, Some(false)).is_empty());
    one(
        run(&set, &frames, Some(true)),
        &["turn_id \"turn-1\" (first frame #0) got no terminal event (final_answer|cancelled|error) before the connection closed"],
    );
}

#[test]
fn terminal_connection_with_restart() {
    let set = rules(
        "rules:\n  - id: run-end\n    kind: terminal\n    terminal: [RUN_FINISHED, RUN_ERROR]\n    restart: RUN_STARTED\n",
    );
    clean(
        &set,
        &[
            r(t("RUN_STARTED")),
            r(t("RUN_ERROR")),
            r(t("RUN_STARTED")),
            r(t("TEXT_MESSAGE_START")),
            r(t("RUN_FINISHED")),
        ],
    );
    one(
        run(&set, &[r(t("RUN_STARTED")), r(t("RUN_ERROR")), r(t("TEXT_MESSAGE_START"))], None),
        &["frame \"TEXT_MESSAGE_START\" (frame #2) after the terminal event \"RUN_ERROR\" (frame #1); only RUN_STARTED may follow it"],
    );
}

const TOOL_PAIRS: &str = r#"rules:
  - id: one-terminal
    kind: terminal
    key: /turn_id
    terminal: [final_answer, cancelled, error]
  - id: tool-pairs
    kind: pair
    open: tool_call
    close: tool_result
    key: /call_id
    scope: /turn_id
    unless_terminal: [cancelled, error]
"#;

fn call(ty: &str, turn: &str, call: &str) -> Value {
    json!({ "type": ty, "turn_id": turn, "call_id": call })
}

#[test]
fn pair_ok() {
    let set = rules(TOOL_PAIRS);
    clean(
        &set,
        &[
            r(turn("turn_started", "turn-1")),
            r(call("tool_call", "turn-1", "call-1")),
            r(call("tool_result", "turn-1", "call-1")),
            r(turn("final_answer", "turn-1")),
            // call ids are unique per turn only: call-1 again in turn 2.
            r(turn("turn_started", "turn-2")),
            r(call("tool_call", "turn-2", "call-1")),
            r(call("tool_result", "turn-2", "call-1")),
            r(call("tool_call", "turn-2", "call-2")),
            // A cancelled turn may leave a call open.
            r(turn("cancelled", "turn-2")),
        ],
    );
}

#[test]
fn pair_violations() {
    let set = rules(TOOL_PAIRS);
    one(
        run(&set, &[r(turn("turn_started", "turn-1")), r(call("tool_result", "turn-1", "call-9"))], None),
        &["rule tool-pairs: tool_result call_id \"call-9\" (frame #1) answers no earlier tool_call"],
    );
    // The result belongs to another turn.
    one(
        run(
            &set,
            &[
                r(call("tool_call", "turn-1", "call-1")),
                r(call("tool_result", "turn-2", "call-1")),
            ],
            None,
        ),
        &["answers no earlier tool_call"],
    );
    one(
        run(
            &set,
            &[
                r(call("tool_call", "turn-1", "call-1")),
                r(call("tool_result", "turn-1", "call-1")),
                r(call("tool_result", "turn-1", "call-1")),
            ],
            None,
        ),
        &["tool_result call_id \"call-1\" (frame #2) closes a tool_call that was already closed at frame #1"],
    );
    one(
        run(
            &set,
            &[
                r(call("tool_call", "turn-1", "call-1")),
                r(call("tool_call", "turn-1", "call-1")),
            ],
            None,
        ),
        &["tool_call call_id \"call-1\" (frame #1) reuses a key still open since frame #0"],
    );
    let v = one(
        run(&set, &[r(call("tool_call", "turn-1", "call-1")), r(turn("final_answer", "turn-1"))], None),
        &["\"final_answer\" (frame #1) ended turn_id \"turn-1\" while tool_call call_id \"call-1\" (frame #0) was still open; expected tool_result first"],
    );
    assert_eq!(v.seqs, vec![0, 1]);
}

const ASK: &str = r#"rules:
  - id: ask-human
    kind: pair
    open: ask_human
    close: { direction: sent, type: human_reply }
    key: /request_id
    scope: /turn_id
    scope_end: [final_answer, cancelled, error]
    unless_terminal: [cancelled, error]
"#;

#[test]
fn pair_closed_by_client_message() {
    let set = rules(ASK);
    let ask = json!({"type": "ask_human", "turn_id": "turn-1", "request_id": "req-1"});
    let reply = json!({"type": "human_reply", "request_id": "req-1", "content": "Ada"});
    clean(
        &set,
        &[
            r(ask.clone()),
            s(reply.clone()),
            r(turn("final_answer", "turn-1")),
        ],
    );
    // A stray reply from the client is the scenario's doing, not the server's.
    clean(
        &set,
        &[s(
            json!({"type": "human_reply", "request_id": "nope", "content": "x"}),
        )],
    );
    one(
        run(&set, &[r(ask.clone()), r(turn("final_answer", "turn-1"))], None),
        &["ended turn_id \"turn-1\" while ask_human request_id \"req-1\" (frame #0) was still open; expected sent human_reply first"],
    );
    clean(&set, &[r(ask), r(turn("error", "turn-1"))]);
}

#[test]
fn pair_during_and_required_on_close() {
    let set = rules(
        r#"rules:
  - id: text-messages
    kind: pair
    open: TEXT_MESSAGE_START
    during: TEXT_MESSAGE_CONTENT
    close: TEXT_MESSAGE_END
    key: /messageId
    require_on_close: true
"#,
    );
    let m = |ty: &str, id: &str| json!({"type": ty, "messageId": id});
    clean(
        &set,
        &[
            r(m("TEXT_MESSAGE_START", "m1")),
            r(m("TEXT_MESSAGE_CONTENT", "m1")),
            r(m("TEXT_MESSAGE_END", "m1")),
            // Reuse after close is fine.
            r(m("TEXT_MESSAGE_START", "m1")),
            r(m("TEXT_MESSAGE_END", "m1")),
        ],
    );
    one(
        run(&set, &[r(m("TEXT_MESSAGE_CONTENT", "m2"))], None),
        &["TEXT_MESSAGE_CONTENT messageId \"m2\" (frame #0) needs an open TEXT_MESSAGE_START"],
    );
    one(
        run(&set, &[r(m("TEXT_MESSAGE_START", "m1")), r(m("TEXT_MESSAGE_CONTENT", "m1"))], Some(true)),
        &["TEXT_MESSAGE_START messageId \"m1\" (frame #0) was still open (no TEXT_MESSAGE_END) when the connection closed"],
    );
    assert!(run(&set, &[r(m("TEXT_MESSAGE_START", "m1"))], Some(false)).is_empty());
}

#[test]
fn pair_max_open() {
    let set = rules(
        r#"rules:
  - id: busy
    kind: pair
    open: turn_started
    close: [final_answer, cancelled, error]
    key: /turn_id
    max_open: 1
"#,
    );
    clean(
        &set,
        &[
            r(turn("turn_started", "turn-1")),
            r(json!({"type": "error", "code": "TURN_IN_PROGRESS"})),
            r(turn("final_answer", "turn-1")),
            r(turn("turn_started", "turn-2")),
        ],
    );
    one(
        run(&set, &[r(turn("turn_started", "turn-1")), r(turn("turn_started", "turn-2"))], None),
        &["turn_started turn_id \"turn-2\" (frame #1) opens while 1 already open (at most 1): \"turn-1\" (frame #0)"],
    );
}

const TEAM: &str = r#"rules:
  - id: one-terminal
    kind: terminal
    key: /turn_id
    terminal: [final_answer, cancelled, error]
  - id: team-lifecycle
    kind: lifecycle
    key: /team_id
    start: team_formed
    middle: [plan_update, expert_step, expert_result]
    end: [team_synthesis, team_dissolved]
    scope: /turn_id
"#;

fn team(ty: &str) -> Value {
    json!({"type": ty, "turn_id": "turn-1", "team_id": "team-1"})
}

#[test]
fn lifecycle_ok() {
    let set = rules(TEAM);
    let mut frames: Vec<_> = [
        "team_formed",
        "plan_update",
        "expert_step",
        "expert_result",
        "team_synthesis",
        "team_dissolved",
    ]
    .iter()
    .map(|ty| r(team(ty)))
    .collect();
    frames.push(r(turn("final_answer", "turn-1")));
    // The same team id in the next turn starts afresh.
    frames.push(r(
        json!({"type": "team_formed", "turn_id": "turn-2", "team_id": "team-1"}),
    ));
    clean(&set, &frames);
}

#[test]
fn lifecycle_violations() {
    let set = rules(TEAM);
    let seq = |types: &[&str]| -> Vec<(Direction, Value)> {
        types.iter().map(|ty| r(team(ty))).collect()
    };
    one(
        run(&set, &seq(&["expert_step"]), None),
        &["rule team-lifecycle: team_id \"team-1\": \"expert_step\" (frame #0) before team_formed"],
    );
    one(
        run(&set, &seq(&["team_formed", "team_formed"]), None),
        &["\"team_formed\" (frame #1) starts it again (started at frame #0)"],
    );
    one(
        run(
            &set,
            &seq(&["team_formed", "team_synthesis", "plan_update"]),
            None,
        ),
        &["\"plan_update\" (frame #2) after team_synthesis (frame #1)"],
    );
    one(
        run(&set, &seq(&["team_formed", "team_dissolved"]), None),
        &["\"team_dissolved\" (frame #1) out of order; expected team_synthesis next"],
    );
    one(
        run(
            &set,
            &seq(&[
                "team_formed",
                "team_synthesis",
                "team_dissolved",
                "expert_step",
            ]),
            None,
        ),
        &["\"expert_step\" (frame #3) after the lifecycle ended (frame #2)"],
    );
    let mut frames = seq(&["team_formed", "plan_update"]);
    frames.push(r(turn("final_answer", "turn-1")));
    one(
        run(&set, &frames, None),
        &["\"final_answer\" (frame #2) ended turn_id \"turn-1\" before team_id \"team-1\" (started at frame #0) finished; expected team_synthesis first"],
    );
}

const PING: &str = "rules:\n  - id: ping-pong\n    kind: reply\n    request: { direction: sent, type: ping }\n    reply: pong\n    key: /nonce\n";

#[test]
fn reply_ok() {
    let set = rules(PING);
    clean(
        &set,
        &[
            s(json!({"type": "ping", "nonce": 1})),
            s(json!({"type": "ping"})),
            s(json!({"type": "ping", "nonce": "a"})),
            r(json!({"type": "token"})),
            r(json!({"type": "pong", "nonce": "a"})),
            r(json!({"type": "pong"})),
            r(json!({"type": "pong", "nonce": 1.0})),
        ],
    );
}

#[test]
fn reply_violations() {
    let set = rules(PING);
    one(
        run(&set, &[s(json!({"type": "ping", "nonce": 7}))], Some(true)),
        &["rule ping-pong: ping nonce 7 (frame #0) got no pong before the connection closed"],
    );
    assert!(run(&set, &[s(json!({"type": "ping", "nonce": 7}))], Some(false)).is_empty());
    one(
        run(
            &set,
            &[
                s(json!({"type": "ping", "nonce": 7})),
                r(json!({"type": "pong", "nonce": 7})),
                r(json!({"type": "pong", "nonce": 7})),
            ],
            None,
        ),
        &["\"pong\" nonce 7 (frame #2) answers no pending sent ping"],
    );
    // Same JSON value: the string "1" does not answer the number 1; absent does not answer present.
    let v = run(
        &set,
        &[
            s(json!({"type": "ping", "nonce": 1})),
            r(json!({"type": "pong", "nonce": "1"})),
            r(json!({"type": "pong"})),
        ],
        Some(true),
    );
    assert_eq!(v.len(), 3, "{v:#?}");
    assert!(v[0]
        .message
        .contains("nonce \"1\" (frame #1) answers no pending"));
    assert!(v[1]
        .message
        .contains("nonce (absent) (frame #2) answers no pending"));
    assert!(v[2].message.contains("ping nonce 1 (frame #0) got no pong"));
}

const TWO_EVENT: &str = r#"rules:
  - id: request-complete
    kind: completion
    request: { direction: sent, present: /request_type }
    complete_when: [text_completed, [tts_completed, tts_not_requested]]
    require_on_close: true
"#;

#[test]
fn completion_two_events() {
    let set = rules(TWO_EVENT);
    let req = || s(json!({"request_type": "text", "user_input": {}}));
    clean(
        &set,
        &[
            r(t("websocket_ready")),
            req(),
            r(t("text_chunk")),
            r(t("text_completed")),
            r(t("tts_not_requested")),
            req(),
            r(t("tts_started")),
            r(t("tts_completed")),
            r(t("text_completed")),
        ],
    );
    one(
        run(&set, &[req(), r(t("text_completed"))], Some(true)),
        &["rule request-complete: (no type) (frame #0) got no tts_completed|tts_not_requested before the connection closed"],
    );
    one(
        run(&set, &[req(), r(t("text_completed")), r(t("text_completed"))], None),
        &["\"text_completed\" (frame #2) is a second text_completed for (no type) at frame #0 (first: frame #1)"],
    );
    one(
        run(
            &set,
            &[req(), r(t("tts_completed")), r(t("tts_not_requested"))],
            None,
        ),
        &["is a second tts_completed|tts_not_requested"],
    );
    one(
        run(&set, &[r(t("text_completed"))], None),
        &["\"text_completed\" (frame #0) answers no pending sent *{/request_type present}"],
    );
    assert!(run(&set, &[req()], Some(false)).is_empty());
}

#[test]
fn requires_prior() {
    let set = rules(
        r#"rules:
  - id: expert-step-first
    kind: requires_prior
    event: expert_result
    prior: expert_step
    key: [/turn_id, /team_id, /expert]
"#,
    );
    let e = |ty: &str, ex: &str| json!({"type": ty, "turn_id": "turn-1", "team_id": "team-1", "expert": ex});
    clean(
        &set,
        &[
            r(e("expert_step", "writer")),
            r(e("expert_step", "writer")),
            r(e("expert_result", "writer")),
        ],
    );
    one(
        run(&set, &[r(e("expert_step", "researcher")), r(e("expert_result", "writer"))], None),
        &["\"expert_result\" (turn_id, team_id, expert) [\"turn-1\",\"team-1\",\"writer\"] (frame #1) has no earlier expert_step"],
    );
}

const CONCAT: &str = r#"rules:
  - id: one-terminal
    kind: terminal
    key: /turn_id
    terminal: [final_answer, cancelled, error]
  - id: tokens-concat
    kind: concat
    items: token
    field: /content
    index: /index
    scope: /turn_id
    equals: { event: final_answer, field: /content }
    count: { event: final_answer, field: /token_count }
"#;

fn tok(turn: &str, i: u64, c: &str) -> (Direction, Value) {
    r(json!({"type": "token", "turn_id": turn, "index": i, "content": c}))
}

fn answer(turn: &str, c: &str, n: u64) -> (Direction, Value) {
    r(json!({"type": "final_answer", "turn_id": turn, "content": c, "token_count": n}))
}

#[test]
fn concat_ok() {
    let set = rules(CONCAT);
    clean(
        &set,
        &[
            tok("turn-1", 0, "You"),
            tok("turn-1", 1, " said:"),
            tok("turn-1", 2, " hi"),
            answer("turn-1", "You said: hi", 3),
            // A cancelled turn drops its partial text; the next turn starts from index 0.
            tok("turn-2", 0, "w0"),
            r(turn("cancelled", "turn-2")),
            tok("turn-3", 0, ""),
            answer("turn-3", "", 1),
        ],
    );
}

#[test]
fn concat_violations() {
    let set = rules(CONCAT);
    one(
        run(
            &set,
            &[
                tok("turn-1", 0, "a"),
                tok("turn-1", 2, "b"),
                answer("turn-1", "ab", 2),
            ],
            None,
        ),
        &["rule tokens-concat: token /index is 2 (frame #1) in turn_id \"turn-1\"; expected 1"],
    );
    one(
        run(&set, &[tok("turn-1", 0, "You"), tok("turn-1", 1, " sad"), answer("turn-1", "You said", 2)], None),
        &["final_answer /content (frame #2) in turn_id \"turn-1\" differs from the 2 concatenated token /content: first difference at char 6"],
    );
    one(
        run(&set, &[tok("turn-1", 0, "a"), answer("turn-1", "a", 2)], None),
        &["final_answer /token_count is 2 (frame #1) in turn_id \"turn-1\", but 1 token events arrived"],
    );
}

/// The AG-UI lifecycle its client enforces, as data.
const AG_UI: &str = r#"rules:
  - id: run-first
    kind: first
    one_of: [RUN_STARTED, RUN_ERROR]
  - id: run-end
    kind: terminal
    terminal: [RUN_FINISHED, RUN_ERROR]
    restart: RUN_STARTED
  - id: messages
    kind: pair
    open: TEXT_MESSAGE_START
    during: TEXT_MESSAGE_CONTENT
    close: TEXT_MESSAGE_END
    key: /messageId
    scope_end: [RUN_FINISHED, RUN_ERROR]
    unless_terminal: RUN_ERROR
  - id: tool-calls
    kind: pair
    open: TOOL_CALL_START
    during: TOOL_CALL_ARGS
    close: TOOL_CALL_END
    key: /toolCallId
    scope_end: [RUN_FINISHED, RUN_ERROR]
    unless_terminal: RUN_ERROR
  - id: steps
    kind: pair
    open: STEP_STARTED
    close: STEP_FINISHED
    key: /stepName
    scope_end: [RUN_FINISHED, RUN_ERROR]
    unless_terminal: RUN_ERROR
"#;

#[test]
fn ag_ui_lifecycle() {
    let set = rules(AG_UI);
    let e = |ty: &str, extra: Value| {
        let mut v = extra;
        v["type"] = json!(ty);
        r(v)
    };
    let good = vec![
        e("RUN_STARTED", json!({"threadId": "t", "runId": "r1"})),
        e("STEP_STARTED", json!({"stepName": "plan"})),
        e("TEXT_MESSAGE_START", json!({"messageId": "m1"})),
        e(
            "TEXT_MESSAGE_CONTENT",
            json!({"messageId": "m1", "delta": "hi"}),
        ),
        e(
            "TOOL_CALL_START",
            json!({"toolCallId": "c1", "toolCallName": "search"}),
        ),
        e("TOOL_CALL_ARGS", json!({"toolCallId": "c1", "delta": "{}"})),
        e("TOOL_CALL_END", json!({"toolCallId": "c1"})),
        e("TEXT_MESSAGE_END", json!({"messageId": "m1"})),
        e("STEP_FINISHED", json!({"stepName": "plan"})),
        e("RUN_FINISHED", json!({"threadId": "t", "runId": "r1"})),
        e("RUN_STARTED", json!({"threadId": "t", "runId": "r2"})),
        e("TEXT_MESSAGE_START", json!({"messageId": "m2"})),
        e("RUN_ERROR", json!({"message": "boom"})),
        e("RUN_STARTED", json!({"threadId": "t", "runId": "r3"})),
        e("RUN_FINISHED", json!({"threadId": "t", "runId": "r3"})),
    ];
    clean(&set, &good);

    one(
        run(
            &set,
            &[e("TEXT_MESSAGE_START", json!({"messageId": "m1"}))],
            None,
        ),
        &["rule run-first: the first frame must be RUN_STARTED|RUN_ERROR"],
    );
    one(
        run(
            &set,
            &[
                e("RUN_STARTED", json!({})),
                e("RUN_ERROR", json!({})),
                e("STEP_STARTED", json!({"stepName": "x"})),
            ],
            None,
        ),
        &[
            "rule run-end:",
            "after the terminal event \"RUN_ERROR\" (frame #1); only RUN_STARTED may follow it",
        ],
    );
    one(
        run(
            &set,
            &[
                e("RUN_STARTED", json!({})),
                e("TOOL_CALL_START", json!({"toolCallId": "c1"})),
                e("TOOL_CALL_START", json!({"toolCallId": "c1"})),
            ],
            None,
        ),
        &["rule tool-calls: TOOL_CALL_START toolCallId \"c1\" (frame #2) reuses a key still open since frame #1"],
    );
    one(
        run(&set, &[e("RUN_STARTED", json!({})), e("TOOL_CALL_ARGS", json!({"toolCallId": "c1"}))], None),
        &["rule tool-calls: TOOL_CALL_ARGS toolCallId \"c1\" (frame #1) needs an open TOOL_CALL_START"],
    );
    one(
        run(
            &set,
            &[
                e("RUN_STARTED", json!({})),
                e("STEP_FINISHED", json!({"stepName": "x"})),
            ],
            None,
        ),
        &["rule steps: STEP_FINISHED stepName \"x\" (frame #1) answers no earlier STEP_STARTED"],
    );
    one(
        run(
            &set,
            &[e("RUN_STARTED", json!({})), e("TEXT_MESSAGE_START", json!({"messageId": "m1"})), e("RUN_FINISHED", json!({}))],
            None,
        ),
        &["rule messages: \"RUN_FINISHED\" (frame #2) ended the connection while TEXT_MESSAGE_START messageId \"m1\" (frame #1) was still open"],
    );
}

/// OpenAI Realtime: a response's events carry its id at another place than `response.created`.
#[test]
fn realtime_response_pairs() {
    let set = rules(
        r#"rules:
  - id: response-lifecycle
    kind: pair
    open: { type: response.created, key: /response/id }
    close: { type: response.done, key: /response/id }
    during:
      - { type: response.output_item.added, key: /response_id }
      - { type: response.output_text.delta, key: /response_id }
    key: /response_id
"#,
    );
    let created = |id: &str| {
        r(json!({"type": "response.created", "response": {"id": id, "status": "in_progress"}}))
    };
    let delta = |id: &str| {
        r(json!({"type": "response.output_text.delta", "response_id": id, "delta": "x"}))
    };
    let done = |id: &str| {
        r(json!({"type": "response.done", "response": {"id": id, "status": "completed"}}))
    };
    clean(
        &set,
        &[
            created("resp_1"),
            delta("resp_1"),
            done("resp_1"),
            created("resp_2"),
            done("resp_2"),
        ],
    );
    one(
        run(&set, &[created("resp_1"), done("resp_1"), delta("resp_1")], None),
        &["response.output_text.delta response_id \"resp_1\" (frame #2) needs an open response.created"],
    );
}

/// The bundled rules file loads, and a reference-server-like transcript satisfies it.
#[test]
fn bundled_rules_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/rules.yaml");
    let set = super::load_rules(&path).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = set.rules().iter().map(|r| r.id.as_str()).collect();
    for id in [
        "connected-first",
        "one-terminal",
        "turn-started-first",
        "tokens-concat",
        "tool-pairs",
        "ask-human",
        "team-lifecycle",
        "ping-pong",
    ] {
        assert!(
            ids.contains(&id),
            "scenarios/rules.yaml lacks rule {id} (has {ids:?})"
        );
    }
    let t1 = |ty: &str, extra: Value| {
        let mut v = extra;
        v["type"] = json!(ty);
        v["turn_id"] = json!("turn-1");
        r(v)
    };
    let frames = vec![
        r(
            json!({"type": "connected", "session_id": "s", "user_id": "alice", "protocol": "wschat.v1", "resumed": false, "history_length": 0}),
        ),
        s(json!({"type": "message", "content": "hi #tool #ask"})),
        t1("turn_started", json!({})),
        t1("thinking", json!({"content": "Thinking about: hi"})),
        t1("step", json!({"name": "tool", "status": "started"})),
        t1(
            "tool_call",
            json!({"call_id": "call-1", "name": "echo", "arguments": {"text": "hi"}}),
        ),
        s(json!({"type": "ping", "nonce": 5})),
        r(json!({"type": "pong", "nonce": 5})),
        t1(
            "tool_result",
            json!({"call_id": "call-1", "status": "ok", "output": {"text": "hi"}}),
        ),
        t1("step", json!({"name": "tool", "status": "completed"})),
        t1(
            "ask_human",
            json!({"request_id": "req-1", "question": "What name should I use?"}),
        ),
        s(json!({"type": "human_reply", "request_id": "req-1", "content": "Ada"})),
        t1("token", json!({"index": 0, "content": "You"})),
        t1("token", json!({"index": 1, "content": " said: hi"})),
        t1(
            "final_answer",
            json!({"content": "You said: hi", "token_count": 2}),
        ),
    ];
    clean(&set, &frames);
    // And it catches a broken one: the tool call never answered.
    let mut broken = frames.clone();
    broken.remove(8);
    let v = run(&set, &broken, None);
    assert!(v.iter().any(|v| v.rule == "tool-pairs"), "{v:#?}");
}

#[test]
fn only_before_without_allowed_reports_once() {
    let set =
        rules("rules:\n  - id: ready-first\n    kind: only_before\n    until: websocket_ready\n");
    clean(
        &set,
        &[s(t("request")), r(t("websocket_ready")), r(t("working"))],
    );
    one(
        run(
            &set,
            &[r(t("working")), r(t("text_chunk")), r(t("websocket_ready"))],
            None,
        ),
        &["\"working\" (frame #0) arrived before websocket_ready; nothing may come before it"],
    );
}

/// Every YAML example in docs/RULES.md loads (a snippet of rules is wrapped in `rules:`).
#[test]
fn documented_examples_load() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/RULES.md");
    let doc = std::fs::read_to_string(&path).expect("docs/RULES.md");
    let mut blocks = 0;
    for (n, block) in doc.split("```yaml\n").skip(1).enumerate() {
        let body = block.split("```").next().unwrap_or_default();
        let yaml = if body.trim_start().starts_with("rules:") {
            body.to_owned()
        } else {
            let indented: String = body.lines().map(|l| format!("  {l}\n")).collect();
            format!("rules:\n{indented}")
        };
        if let Err(e) = parse_rules(Path::new("RULES.md"), &yaml) {
            panic!(
                "example {} of docs/RULES.md does not load: {e}\n{yaml}",
                n + 1
            );
        }
        blocks += 1;
    }
    assert!(blocks >= 12, "only {blocks} examples found");
}

#[test]
fn checker_is_send_and_rule_set_is_shareable() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<super::RuleChecker>();
    send_sync::<RuleSet>();
}

// ---- Options closing examples/GAPS.md G4–G10 ----

#[test]
fn concat_running_prefix_g4() {
    let set = rules(
        "rules:\n  - id: running\n    kind: concat\n    items: token\n    field: /text\n    running: /partial_response\n",
    );
    let tok = |text: &str, partial: &str| {
        r(json!({"type": "token", "text": text, "partial_response": partial}))
    };
    clean(
        &set,
        &[tok("He", "He"), tok("llo", "Hello"), tok("!", "Hello!")],
    );
    let v = one(
        run(
            &set,
            &[tok("He", "He"), tok("llo", "Hallo"), tok("!", "Hallo!")],
            None,
        ),
        &[
            "rule running:",
            "/partial_response (frame #1)",
            "first difference at char 1",
        ],
    );
    // One divergence is reported once: the checker follows the server's running text.
    assert_eq!(v.seqs, vec![1]);
}

#[test]
fn keyless_pair_and_ignoring_g5() {
    let set = rules(
        "rules:\n  - id: typing\n    kind: pair\n    open: {type: typing, where: {/on: true}}\n    close: {type: typing, where: {/on: false}}\n    during: reply\n    require_on_close: true\n",
    );
    let typing = |on: bool| r(json!({"type": "typing", "on": on}));
    clean(
        &set,
        &[
            typing(true),
            r(t("broadcast")),
            r(t("reply")),
            typing(false),
            typing(true),
            r(t("reply")),
            typing(false),
        ],
    );
    one(
        run(&set, &[typing(true), typing(true)], None),
        &[
            "rule typing:",
            "reuses a key still open",
            "bracket (keyless)",
        ],
    );
    one(run(&set, &[r(t("reply"))], None), &["needs an open"]);
    one(run(&set, &[typing(true)], Some(true)), &["still open"]);

    let set = rules(
        "rules:\n  - id: reply-then-off\n    kind: followed_by\n    event: reply\n    one_of: {type: typing, where: {/on: false}}\n    ignoring: [broadcast]\n  - id: on-before-reply\n    kind: preceded_by\n    event: reply\n    one_of: {type: typing, where: {/on: true}}\n    ignoring: broadcast\n",
    );
    clean(
        &set,
        &[
            typing(true),
            r(t("broadcast")),
            r(t("reply")),
            r(t("broadcast")),
            typing(false),
        ],
    );
    let v = run(
        &set,
        &[typing(true), r(t("error")), r(t("reply")), r(t("pong"))],
        None,
    );
    assert_eq!(v.len(), 2, "{v:#?}");
    assert!(v
        .iter()
        .any(|x| x.rule == "on-before-reply" && x.message.contains("follows \"error\"")));
    assert!(v
        .iter()
        .any(|x| x.rule == "reply-then-off" && x.message.contains("got \"pong\"")));
}

#[test]
fn completion_unsolicited_allow_g6_g7() {
    let yaml = |extra: &str| {
        format!(
            "rules:\n  - id: tts\n    kind: completion\n    request: tts_error\n    complete_when: [tts_completed]\n    require_on_close: true\n{extra}"
        )
    };
    let frames = [
        r(t("tts_completed")),
        r(t("tts_error")),
        r(t("tts_completed")),
    ];
    one(
        run(&rules(&yaml("")), &frames, Some(true)),
        &["answers no pending tts_error"],
    );
    let allow = rules(&yaml("    unsolicited: allow\n"));
    clean(&allow, &frames);
    // The request side is still enforced.
    one(
        run(&allow, &[r(t("tts_error"))], Some(true)),
        &["got no tts_completed before the connection closed"],
    );
    let e = parse_rules(Path::new("r.yaml"), &yaml("    unsolicited: maybe\n")).unwrap_err();
    assert!(
        e.to_string().contains("unsolicited is 'allow' or 'report'"),
        "{e}"
    );
    // The reply kind takes it too.
    let set = rules("rules:\n  - id: cancel\n    kind: reply\n    request: {direction: sent, type: cancel}\n    reply: [done, error]\n    unsolicited: allow\n");
    clean(
        &set,
        &[r(t("done")), s(t("cancel")), r(t("error")), r(t("error"))],
    );
}

#[test]
fn selector_scope_override_and_composite_scope_g8() {
    let set = rules(
        "rules:\n  - id: items-done\n    kind: pair\n    open: item.added\n    close: item.done\n    key: /item_id\n    scope: /response_id\n    scope_end: {type: response.done, scope: /response/id}\n",
    );
    let item =
        |ty: &str, id: &str, resp: &str| r(json!({"type": ty, "item_id": id, "response_id": resp}));
    let done = |resp: &str| r(json!({"type": "response.done", "response": {"id": resp}}));
    clean(
        &set,
        &[
            item("item.added", "i1", "r1"),
            item("item.done", "i1", "r1"),
            done("r1"),
        ],
    );
    // response.done of another response leaves r1's item open; its own closes it with an error.
    let v = one(
        run(
            &set,
            &[item("item.added", "i1", "r1"), done("r2"), done("r1")],
            None,
        ),
        &[
            "\"response.done\" (frame #2) ended response_id \"r1\"",
            "item_id \"i1\"",
        ],
    );
    assert_eq!(v.seqs, vec![0, 2]);

    let set = rules(
        "rules:\n  - id: text\n    kind: concat\n    items: delta\n    field: /d\n    scope: [/item_id, /content_index]\n    equals: {event: text.done, field: /text}\n",
    );
    let delta =
        |ci: u64, d: &str| r(json!({"type": "delta", "item_id": "i", "content_index": ci, "d": d}));
    let done = |ci: u64, text: &str| {
        r(json!({"type": "text.done", "item_id": "i", "content_index": ci, "text": text}))
    };
    clean(
        &set,
        &[
            delta(0, "a"),
            delta(1, "x"),
            delta(0, "b"),
            done(0, "ab"),
            done(1, "x"),
        ],
    );
    one(
        run(&set, &[delta(0, "a"), delta(1, "x"), done(0, "ax")], None),
        &["(item_id, content_index) [\"i\",0]", "differs"],
    );
}

#[test]
fn concat_without_equals_and_by_jsonpath_g9() {
    let set = rules(
        "rules:\n  - id: order\n    kind: concat\n    items: TEXT_MESSAGE_CONTENT\n    field: /delta\n    index: /i\n    scope: /messageId\n",
    );
    let content = |id: &str, i: u64| {
        r(json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": id, "i": i, "delta": "x"}))
    };
    clean(&set, &[content("m", 0), content("m", 1), content("n", 0)]);
    one(
        run(&set, &[content("m", 0), content("m", 2)], None),
        &["/i is 2", "expected 1"],
    );

    let set = rules(
        "rules:\n  - id: snapshot\n    kind: concat\n    items: TEXT_MESSAGE_CONTENT\n    field: /delta\n    scope: /messageId\n    scope_end: TEXT_MESSAGE_END\n    equals: {event: MESSAGES_SNAPSHOT, path: \"$.messages[?@.id == '{scope}'].content\"}\n",
    );
    let c =
        |id: &str, d: &str| r(json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": id, "delta": d}));
    let end = |id: &str| r(json!({"type": "TEXT_MESSAGE_END", "messageId": id}));
    let snap = |text: &str| {
        r(json!({"type": "MESSAGES_SNAPSHOT", "messages": [
            {"id": "u", "role": "user", "content": "hi"},
            {"id": "m1", "role": "assistant", "content": text}
        ]}))
    };
    // A snapshot taken mid-stream is not compared; after the end it must hold the whole text.
    clean(
        &set,
        &[
            c("m1", "Hel"),
            snap("Hel"),
            c("m1", "lo"),
            end("m1"),
            snap("Hello"),
        ],
    );
    one(
        run(
            &set,
            &[c("m1", "Hel"), c("m1", "lo"), end("m1"), snap("Help")],
            None,
        ),
        &[
            "$.messages[?@.id == 'm1'].content",
            "differs",
            "first difference at char 3",
        ],
    );
    let e = parse_rules(
        Path::new("r.yaml"),
        "rules:\n  - id: x\n    kind: concat\n    items: a\n    field: /d\n    equals: {event: b, path: \"$.[\"}\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a valid JSONPath"), "{e}");
}

#[test]
fn restart_only_after_terminal_g10() {
    let yaml = |extra: &str| {
        format!("rules:\n  - id: run\n    kind: terminal\n    terminal: [RUN_FINISHED, RUN_ERROR]\n    restart: RUN_STARTED\n{extra}")
    };
    let frames = [
        r(t("RUN_STARTED")),
        r(t("STEP_STARTED")),
        r(t("RUN_STARTED")),
        r(t("RUN_FINISHED")),
    ];
    clean(&rules(&yaml("")), &frames);
    let strict = rules(&yaml("    restart_only_after_terminal: true\n"));
    let v = one(
        run(&strict, &frames, None),
        &["\"RUN_STARTED\" (frame #2) restarts while the cycle begun at frame #0 is still running"],
    );
    assert_eq!(v.seqs, vec![0, 2]);
    clean(
        &strict,
        &[
            r(t("RUN_STARTED")),
            r(t("RUN_FINISHED")),
            r(t("RUN_STARTED")),
            r(t("RUN_ERROR")),
        ],
    );
}
