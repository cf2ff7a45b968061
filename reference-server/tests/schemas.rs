//! Every event the server sends, across every flow, validates against `schemas/` (index.json maps each
//! `type` to its schema); every server event type of the index is observed at least once; the client
//! messages these tests send validate against the client schemas; REST bodies validate too.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use reference_server::Config;
use serde_json::{json, Value};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

fn load(rel: &str) -> jsonschema::Validator {
    let path = schemas_dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{}: invalid schema: {e}", path.display()))
}

struct Registry {
    by_type: BTreeMap<String, jsonschema::Validator>,
}

impl Registry {
    fn load(side: &str) -> Registry {
        let index: Value = serde_json::from_str(
            &std::fs::read_to_string(schemas_dir().join("index.json")).unwrap(),
        )
        .unwrap();
        let by_type = index[side]
            .as_object()
            .unwrap_or_else(|| panic!("index.json has no '{side}' map"))
            .iter()
            .map(|(t, file)| (t.clone(), load(file.as_str().unwrap())))
            .collect();
        Registry { by_type }
    }

    /// Problems of one event, as readable lines (empty if it validates).
    fn problems(&self, ev: &Value) -> Vec<String> {
        let Some(ty) = ev["type"].as_str() else {
            return vec![format!("no string 'type': {ev}")];
        };
        let Some(v) = self.by_type.get(ty) else {
            return vec![format!("type '{ty}' is not in index.json: {ev}")];
        };
        v.iter_errors(ev)
            .map(|e| {
                format!(
                    "{ev}\n    at '{}' (schema {}): {e}",
                    e.instance_path(),
                    e.schema_path()
                )
            })
            .collect()
    }
}

/// Runs every flow of the protocol and returns (events received, client messages sent, REST bodies).
async fn exercise() -> (Vec<Value>, Vec<Value>, Vec<(String, Value)>) {
    let mut events = Vec::new();
    let mut sent = Vec::new();
    let mut rest = Vec::new();

    let srv = server(Config {
        reply_timeout: Duration::from_millis(300),
        dev: true,
        ..Config::default()
    })
    .await;
    macro_rules! send {
        ($c:expr, $v:expr) => {{
            let v: Value = $v;
            sent.push(v.clone());
            $c.send_json(v).await;
        }};
    }

    // REST bodies.
    let skill = srv
        .http
        .post(srv.url("/api/v1/skills"))
        .bearer_auth(srv.token("alice"))
        .json(&json!({"name": "weather", "keywords": ["rain"], "description": "forecasts"}))
        .send()
        .await
        .unwrap();
    rest.push((
        "rest/skill_created.schema.json".into(),
        skill.json().await.unwrap(),
    ));
    let created = srv
        .http
        .post(srv.url("/api/v1/sessions"))
        .bearer_auth(srv.token("alice"))
        .json(&json!({"title": "schemas"}))
        .send()
        .await
        .unwrap();
    let created: Value = created.json().await.unwrap();
    rest.push(("rest/session_created.schema.json".into(), created.clone()));
    let s = created["session_id"].as_str().unwrap().to_owned();
    let err = srv
        .http
        .get(srv.url("/api/v1/sessions/nope"))
        .bearer_auth(srv.token("alice"))
        .send()
        .await
        .unwrap();
    rest.push(("rest/error.schema.json".into(), err.json().await.unwrap()));
    let tok = srv
        .http
        .post(srv.url("/api/v1/dev/token"))
        .json(&json!({"user_id": "dev"}))
        .send()
        .await
        .unwrap();
    rest.push((
        "rest/dev_token.schema.json".into(),
        tok.json().await.unwrap(),
    ));
    let health = srv.http.get(srv.url("/healthz")).send().await.unwrap();
    rest.push((
        "rest/health.schema.json".into(),
        health.json().await.unwrap(),
    ));

    // First-message authentication, then every turn flow on that connection.
    let mut c = srv.connect_query(&s, "").await;
    send!(c, json!({"type": "message", "content": "early"}));
    c.expect_error("AUTH_REQUIRED").await;
    send!(c, json!({"type": "auth", "token": srv.token("alice")}));
    c.expect_type("auth_success").await;
    c.expect_type("connected").await;
    send!(c, json!({"type": "auth", "token": srv.token("alice")}));
    c.expect_error("ALREADY_AUTHENTICATED").await;
    send!(c, json!({"type": "ping", "nonce": "a"}));
    send!(c, json!({"type": "ping", "nonce": 7}));
    send!(c, json!({"type": "ping"}));
    c.until(&["pong"]).await;
    c.until(&["pong"]).await;
    c.until(&["pong"]).await;
    for content in [
        "hello rain",
        "#tool x",
        "#failtool y",
        "#team z",
        "#long=5 w",
    ] {
        send!(
            c,
            json!({"type": "message", "content": content, "client_id": "cid"})
        );
        check_turn(&c.turn().await);
    }
    send!(c, json!({"type": "message", "content": "#error"}));
    c.until(&["error"]).await;
    for approved in [true, false] {
        send!(c, json!({"type": "message", "content": "#confirm"}));
        let req = c.until(&["confirmation_request"]).await.pop().unwrap();
        send!(
            c,
            json!({"type": "confirmation_reply", "request_id": req["request_id"], "approved": approved})
        );
        c.turn().await;
    }
    send!(c, json!({"type": "message", "content": "#ask"}));
    let ask = c.until(&["ask_human"]).await.pop().unwrap();
    send!(
        c,
        json!({"type": "human_reply", "request_id": "req-404", "content": "?"})
    );
    c.until(&["error"]).await;
    send!(
        c,
        json!({"type": "human_reply", "request_id": ask["request_id"], "content": "Ada"})
    );
    c.turn().await;
    send!(c, json!({"type": "message", "content": "#confirm"}));
    c.until(&["error"]).await; // CONFIRMATION_TIMEOUT
    send!(c, json!({"type": "message", "content": "#ask"}));
    c.until(&["error"]).await; // HUMAN_REPLY_TIMEOUT
    send!(
        c,
        json!({"type": "message", "content": "#long=100000 #pace=1"})
    );
    let started = c.until(&["token"]).await;
    send!(
        c,
        json!({"type": "message", "content": "busy", "client_id": "c2"})
    );
    c.until(&["error"]).await;
    send!(
        c,
        json!({"type": "cancel", "turn_id": started[0]["turn_id"]})
    );
    c.until(&["cancelled"]).await;
    send!(c, json!({"type": "cancel"}));
    c.expect_error("NO_ACTIVE_TURN").await;
    for (raw, code) in [
        ("{x", "INVALID_JSON"),
        (r#"{"type":"nope"}"#, "UNKNOWN_TYPE"),
        (r#"{"type":"message","content":1}"#, "INVALID_MESSAGE"),
        (r#"{"type":"message","content":" "}"#, "EMPTY_MESSAGE"),
    ] {
        c.send_text(raw).await;
        c.expect_error(code).await;
    }
    c.send_text(&"x".repeat(70_000)).await;
    c.expect_error("MESSAGE_TOO_LARGE").await;
    futures_util::SinkExt::send(
        &mut c.ws,
        tokio_tungstenite::tungstenite::Message::binary(vec![1u8]),
    )
    .await
    .unwrap();
    c.expect_error("BINARY_NOT_SUPPORTED").await;

    // Broadcast, and the status body while a socket is open.
    let b = srv
        .http
        .post(srv.url("/api/v1/admin/broadcast"))
        .bearer_auth(srv.admin_token("root"))
        .json(&json!({"content": "notice"}))
        .send()
        .await
        .unwrap();
    rest.push((
        "rest/broadcast_result.schema.json".into(),
        b.json().await.unwrap(),
    ));
    c.expect_type("broadcast").await;
    rest.push(("rest/status.schema.json".into(), srv.status().await));
    let sess = srv
        .http
        .get(srv.url(&format!("/api/v1/sessions/{s}")))
        .bearer_auth(srv.token("alice"))
        .send()
        .await
        .unwrap();
    rest.push((
        "rest/session.schema.json".into(),
        sess.json().await.unwrap(),
    ));

    // Rate limiting on its own socket.
    let mut r = srv.connect(&s, "alice").await;
    for i in 0..45 {
        send!(r, json!({"type": "ping", "nonce": i}));
    }
    let mut limited = false;
    for _ in 0..45 {
        limited |= r.next_event().await["code"] == "RATE_LIMITED";
    }
    assert!(limited, "45 pings at once must exceed the burst of 40");

    // Failed first-message authentications.
    for (token, close) in [("garbage".to_string(), 4401), (srv.token("mallory"), 4403)] {
        let mut f = srv.connect_query(&s, "").await;
        send!(f, json!({"type": "auth", "token": token}));
        assert_eq!(f.closed(WAIT).await.code, Some(close));
        events.extend(f.seen);
    }

    // Graceful shutdown: closing {shutdown}.
    let shutdown = tokio::spawn(srv.handle.shutdown());
    assert_eq!(c.closed(WAIT).await.code, Some(1001));
    assert_eq!(r.closed(WAIT).await.code, Some(1001));
    shutdown.await.unwrap();
    events.extend(c.seen);
    events.extend(r.seen);

    // Timeouts: closing {auth_timeout} and {idle_timeout}.
    let srv = server(Config {
        auth_timeout: Duration::from_millis(150),
        idle_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let s = srv.create_session("alice").await;
    let mut a = srv.connect_query(&s, "").await;
    assert_eq!(a.closed(WAIT).await.code, Some(4408));
    let mut i = srv.connect(&s, "alice").await;
    assert_eq!(i.closed(WAIT).await.code, Some(4000));
    events.extend(a.seen);
    events.extend(i.seen);
    (events, sent, rest)
}

#[tokio::test]
async fn every_event_of_every_flow_validates_against_the_schemas() {
    let index = schemas_dir().join("index.json");
    assert!(index.exists(), "{} is missing", index.display());
    let server_reg = Registry::load("server");
    let client_reg = Registry::load("client");

    // The validators are not vacuous: a token with a negative index and an extra field is refused.
    assert_eq!(
        server_reg
            .problems(
                &json!({"type": "token", "turn_id": "t", "index": -1, "content": "x", "x": 1})
            )
            .len(),
        2
    );

    let (events, sent, rest) = exercise().await;

    let mut problems = Vec::new();
    let mut seen_types = BTreeSet::new();
    for ev in &events {
        seen_types.insert(ev["type"].as_str().unwrap_or("?").to_owned());
        problems.extend(server_reg.problems(ev));
    }
    for msg in &sent {
        problems.extend(
            client_reg
                .problems(msg)
                .into_iter()
                .map(|p| format!("client message {p}")),
        );
    }
    for (file, body) in &rest {
        let v = load(file);
        problems.extend(
            v.iter_errors(body)
                .map(|e| format!("{file}: {body}\n    at '{}': {e}", e.instance_path())),
        );
    }
    assert!(
        problems.is_empty(),
        "{} schema violations:\n{}",
        problems.len(),
        problems.join("\n")
    );

    let missing: Vec<&String> = server_reg
        .by_type
        .keys()
        .filter(|t| !seen_types.contains(*t))
        .collect();
    assert!(
        missing.is_empty(),
        "flows never produced these event types: {missing:?}"
    );
    assert!(events.len() > 100, "only {} events collected", events.len());
}

// ---------------------------------------------------------------------------------------------
// REST: every answer the server can give, against its schema; request schemas against what the
// server accepts.

/// One REST exchange and its answer.
struct Answer {
    what: String,
    status: u16,
    content_type: Option<String>,
    body: Value,
}

async fn send(srv: &Srv, what: &str, req: reqwest::RequestBuilder) -> Answer {
    let r = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    let _ = srv;
    Answer {
        what: what.to_owned(),
        status,
        content_type,
        body,
    }
}

/// The codes of `rest/error.schema.json`'s enum.
fn error_codes() -> BTreeSet<String> {
    let text = std::fs::read_to_string(schemas_dir().join("rest/error.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    schema["properties"]["error"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

/// Every code the server's source can put in a REST or handshake error body:
/// `ApiError::new(StatusCode::X, "CODE", ...)` and the token errors.
fn codes_in_the_source() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut codes = BTreeSet::new();
    for file in ["rest.rs", "ws.rs", "lib.rs", "listen.rs"] {
        let text = std::fs::read_to_string(src.join(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("ApiError::new(") {
            rest = &rest[at + "ApiError::new(".len()..];
            let args = &rest[..rest.find(';').unwrap_or(rest.len())];
            if let Some(code) = args.split('"').nth(1) {
                if code.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !code.is_empty() {
                    codes.insert(code.to_owned());
                }
            }
        }
        codes.extend(
            ["AUTH_INVALID", "AUTH_EXPIRED"]
                .into_iter()
                .filter(|_| file == "rest.rs")
                .map(str::to_owned),
        );
    }
    codes
}

#[tokio::test]
async fn every_rest_answer_validates_against_its_schema() {
    // The enum and the source agree, and so does PROTOCOL.md.
    let enum_codes = error_codes();
    let source_codes = codes_in_the_source();
    assert!(
        source_codes.len() >= 10,
        "the source scan found too little: {source_codes:?}"
    );
    let missing: Vec<_> = source_codes.difference(&enum_codes).collect();
    assert!(
        missing.is_empty(),
        "codes the server sends but rest/error.schema.json lacks: {missing:?}"
    );
    let unused: Vec<_> = enum_codes.difference(&source_codes).collect();
    assert!(
        unused.is_empty(),
        "codes in rest/error.schema.json the server never sends: {unused:?}"
    );
    let protocol = std::fs::read_to_string(schemas_dir().join("../docs/PROTOCOL.md")).unwrap();
    for c in &enum_codes {
        assert!(
            protocol.contains(&format!("`{c}`")),
            "PROTOCOL.md does not name {c}"
        );
    }

    let srv = server(Config {
        dev: true,
        allowed_origins: vec!["https://app.example.com".into()],
        ..Config::default()
    })
    .await;
    let no_dev = server(Config::default()).await;
    let alice = srv.token("alice");
    let admin = srv.admin_token("root");
    let expired = hs256(
        srv.handle.jwt_secret(),
        &json!({"sub": "alice", "exp": now() - 60}),
    );
    let session = srv.create_session("alice").await;
    let h = &srv.http;
    let u = |p: &str| srv.url(p);
    let mut answers = Vec::new();
    macro_rules! ask {
        ($what:expr, $req:expr) => {
            answers.push(send(&srv, $what, $req).await)
        };
    }
    // Successes.
    ask!("healthz", h.get(u("/healthz")));
    ask!("status", h.get(u("/api/v1/status")));
    ask!(
        "create session",
        h.post(u("/api/v1/sessions"))
            .bearer_auth(&alice)
            .json(&json!({"title": "t"}))
    );
    ask!(
        "create session, no body",
        h.post(u("/api/v1/sessions")).bearer_auth(&alice)
    );
    ask!(
        "get session",
        h.get(u(&format!("/api/v1/sessions/{session}")))
            .bearer_auth(&alice)
    );
    ask!(
        "create skill",
        h.post(u("/api/v1/skills"))
            .bearer_auth(&alice)
            .json(&json!({"name": "w", "keywords": ["rain"]}))
    );
    ask!(
        "broadcast",
        h.post(u("/api/v1/admin/broadcast"))
            .bearer_auth(&admin)
            .json(&json!({"content": "hi"}))
    );
    ask!(
        "dev token",
        h.post(u("/api/v1/dev/token"))
            .json(&json!({"user_id": "d"}))
    );
    // Errors, every code the REST API and the handshake give.
    ask!("no token", h.post(u("/api/v1/sessions")));
    ask!(
        "expired token",
        h.post(u("/api/v1/sessions")).bearer_auth(&expired)
    );
    ask!(
        "unknown session",
        h.get(u("/api/v1/sessions/nope")).bearer_auth(&alice)
    );
    ask!(
        "another user's session",
        h.get(u(&format!("/api/v1/sessions/{session}")))
            .bearer_auth(srv.token("bob"))
    );
    ask!(
        "not JSON",
        h.post(u("/api/v1/skills"))
            .bearer_auth(&alice)
            .body("{nope")
    );
    ask!(
        "not an object",
        h.post(u("/api/v1/skills")).bearer_auth(&alice).body("[1]")
    );
    ask!(
        "bad field",
        h.post(u("/api/v1/skills"))
            .bearer_auth(&alice)
            .json(&json!({"name": 1, "keywords": ["a"]}))
    );
    ask!(
        "not admin",
        h.post(u("/api/v1/admin/broadcast"))
            .bearer_auth(&alice)
            .json(&json!({"content": "hi"}))
    );
    ask!("unknown route", h.get(u("/nope")));
    ask!("wrong method", h.delete(u("/healthz")));
    ask!(
        "dev token without --dev",
        no_dev
            .http
            .post(no_dev.url("/api/v1/dev/token"))
            .json(&json!({"user_id": "d"}))
    );
    ask!(
        "session id not UTF-8",
        h.get(u("/api/v1/sessions/%FF")).bearer_auth(&alice)
    );
    ask!(
        "body over the limit",
        h.post(u("/api/v1/skills"))
            .bearer_auth(&alice)
            .body(vec![b' '; 3 << 20])
    );
    let ws = |p: &str| u(&format!("/api/v1/chat/ws/{p}"));
    let upgrade = |req: reqwest::RequestBuilder| {
        req.header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    };
    ask!("not an upgrade", h.get(ws(&session)));
    ask!(
        "foreign origin",
        upgrade(h.get(ws(&session)))
            .header("origin", "https://evil.example")
            .bearer_auth(&alice)
    );
    ask!(
        "upgrade, unknown session",
        upgrade(h.get(ws("nope"))).bearer_auth(&alice)
    );
    ask!(
        "upgrade, session id not UTF-8",
        upgrade(h.get(ws("%FF"))).bearer_auth(&alice)
    );
    ask!(
        "upgrade, bad token",
        upgrade(h.get(ws(&session))).bearer_auth("not.a.jwt")
    );
    ask!(
        "upgrade, another user",
        upgrade(h.get(ws(&session))).bearer_auth(srv.token("bob"))
    );
    let hog = server(Config {
        max_connections_per_user: 1,
        ..Config::default()
    })
    .await;
    let hog_session = hog.create_session("alice").await;
    let held = hog.connect(&hog_session, "alice").await;
    answers.push(
        send(
            &hog,
            "upgrade, too many connections",
            upgrade(
                hog.http
                    .get(hog.url(&format!("/api/v1/chat/ws/{hog_session}"))),
            )
            .bearer_auth(hog.token("alice")),
        )
        .await,
    );
    drop(held);

    let error_schema = load("rest/error.schema.json");
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for a in &answers {
        if a.content_type.as_deref() != Some("application/json") {
            problems.push(format!(
                "{}: {} with content type {:?}: {}",
                a.what, a.status, a.content_type, a.body
            ));
            continue;
        }
        if a.status >= 400 {
            seen.insert(a.body["error"]["code"].as_str().unwrap_or("?").to_owned());
            problems.extend(error_schema.iter_errors(&a.body).map(|e| {
                format!(
                    "{}: {} {}\n    at '{}': {e}",
                    a.what,
                    a.status,
                    a.body,
                    e.instance_path()
                )
            }));
        }
    }
    assert!(
        problems.is_empty(),
        "{} REST answers do not fit their schema:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Every code of the enum was given here, except a failing store's (no client can provoke it)
    // and SHUTTING_DOWN (an upgrade finished during shutdown: lifecycle.rs provokes it).
    let not_provoked: BTreeSet<String> =
        ["INTERNAL_ERROR", "SHUTTING_DOWN"].map(String::from).into();
    let unseen: Vec<_> = enum_codes
        .difference(&seen)
        .filter(|c| !not_provoked.contains(*c))
        .collect();
    assert!(
        unseen.is_empty(),
        "codes never provoked: {unseen:?} (seen: {seen:?})"
    );
}

#[tokio::test]
async fn request_schemas_accept_exactly_what_the_server_accepts() {
    let srv = server(Config {
        dev: true,
        ..Config::default()
    })
    .await;
    let alice = srv.token("alice");
    let admin = srv.admin_token("root");
    let long_user = "u".repeat(129);
    let cases: Vec<(&str, &str, &str, Vec<Value>)> = vec![
        (
            "rest/create_session.request.schema.json",
            "/api/v1/sessions",
            alice.as_str(),
            vec![
                json!({}),
                json!({"title": "t"}),
                json!({"title": ""}),
                json!({"title": 1}),
                json!({"title": null}),
                json!({"x": 1}),
                json!([]),
            ],
        ),
        (
            "rest/create_skill.request.schema.json",
            "/api/v1/skills",
            alice.as_str(),
            vec![
                json!({"name": "w", "keywords": ["rain"]}),
                json!({"name": "w", "keywords": ["rain", "snow"], "description": "d"}),
                json!({"name": "", "keywords": ["rain"]}),
                json!({"name": "  ", "keywords": ["rain"]}),
                json!({"name": "w", "keywords": []}),
                json!({"name": "w", "keywords": [""]}),
                json!({"name": "w", "keywords": [" \t"]}),
                json!({"name": "w", "keywords": [1]}),
                json!({"name": "w", "keywords": "rain"}),
                json!({"keywords": ["rain"]}),
                json!({"name": "w", "keywords": ["rain"], "description": 1}),
                json!({"name": "w", "keywords": ["rain"], "x": 1}),
            ],
        ),
        (
            "rest/broadcast.request.schema.json",
            "/api/v1/admin/broadcast",
            admin.as_str(),
            vec![
                json!({"content": "hi"}),
                json!({"content": ""}),
                json!({"content": 1}),
                json!({}),
                json!({"content": "hi", "x": 1}),
            ],
        ),
        (
            "rest/dev_token.request.schema.json",
            "/api/v1/dev/token",
            "",
            vec![
                json!({"user_id": "d"}),
                json!({"user_id": "d", "admin": true, "ttl_seconds": 60}),
                json!({"user_id": "d", "ttl_seconds": 3600.0}),
                json!({"user_id": "d", "ttl_seconds": 1e3}),
                json!({"user_id": "d", "ttl_seconds": 0}),
                json!({"user_id": "d", "ttl_seconds": -1}),
                json!({"user_id": "d", "ttl_seconds": 1.5}),
                json!({"user_id": "d", "ttl_seconds": "60"}),
                json!({"user_id": ""}),
                json!({"user_id": long_user}),
                json!({"user_id": "d", "admin": "yes"}),
                json!({"user_id": "d", "x": 1}),
                json!({}),
            ],
        ),
    ];
    let mut disagreements = Vec::new();
    for (schema_file, path, token, bodies) in cases {
        let schema = load(schema_file);
        for body in bodies {
            let mut req = srv.http.post(srv.url(path)).json(&body);
            if !token.is_empty() {
                req = req.bearer_auth(token);
            }
            let r = req.send().await.unwrap();
            let accepted = r.status().is_success();
            let valid = schema.is_valid(&body);
            if accepted != valid {
                disagreements.push(format!(
                    "{schema_file}: {body}: the schema says {}, the server answered {} {}",
                    if valid { "valid" } else { "invalid" },
                    r.status(),
                    r.text().await.unwrap_or_default()
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements between request schemas and the server:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
