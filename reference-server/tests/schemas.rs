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
