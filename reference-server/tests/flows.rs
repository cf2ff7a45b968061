//! Section 11 (the scripted model) and the ordering rules of section 6, over real sockets.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use reference_server::Config;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn plain_message_streams_tokens_that_concatenate() {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    c.send_json(json!({"type": "message", "content": "hello   world", "client_id": "c-1"}))
        .await;
    let ev = c.turn().await;
    check_turn(&ev);
    assert_eq!(ev[0]["client_id"], "c-1");
    assert_eq!(ev[0]["turn_id"], "turn-1");
    assert_eq!(
        ev[1],
        json!({"type": "thinking", "turn_id": "turn-1", "content": "Thinking about: hello world"})
    );
    let toks: Vec<&str> = ev
        .iter()
        .filter(|e| e["type"] == "token")
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(toks, ["You", " said:", " hello", " world"]);
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "final_answer");
    assert_eq!(last["content"], "You said: hello world");
    assert_eq!(last["token_count"], 4);
    // A second turn on the same connection gets the next id.
    c.send_message("again").await;
    let ev = c.turn().await;
    assert_eq!(ev[0]["turn_id"], "turn-2");
    assert!(ev[0].get("client_id").is_none());
}

#[tokio::test]
async fn tool_flow() {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    c.send_message("look up #tool cats").await;
    let ev = c.turn().await;
    check_turn(&ev);
    assert_eq!(
        &types(&ev)[..6],
        [
            "turn_started",
            "thinking",
            "step",
            "tool_call",
            "tool_result",
            "step"
        ]
    );
    assert_eq!(ev[2]["status"], "started");
    assert_eq!(ev[3]["name"], "echo");
    assert_eq!(ev[3]["arguments"], json!({"text": "look up cats"}));
    assert_eq!(ev[4]["status"], "ok");
    assert_eq!(ev[4]["output"], json!({"text": "look up cats"}));
    assert_eq!(ev[5]["status"], "completed");
    assert_eq!(
        ev.last().unwrap()["content"],
        "You said: look up cats [tool: look up cats]"
    );
}

#[tokio::test]
async fn failtool_flow() {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    c.send_message("#failtool x").await;
    let ev = c.turn().await;
    check_turn(&ev);
    assert_eq!(
        &types(&ev)[..4],
        ["turn_started", "thinking", "tool_call", "tool_result"]
    );
    assert_eq!(ev[2]["name"], "fail");
    assert_eq!(ev[2]["arguments"], json!({}));
    assert_eq!(ev[3]["status"], "error");
    assert_eq!(ev[3]["output"], json!({"error": "tool failed on purpose"}));
    assert_eq!(ev.last().unwrap()["content"], "You said: x [tool failed]");
}

async fn confirm(approved: bool) -> Vec<Value> {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    c.send_message("clean up #confirm").await;
    let head = c.until(&["confirmation_request"]).await;
    let req = head.last().unwrap().clone();
    assert_eq!(req["tool"], "delete_file");
    assert_eq!(req["arguments"], json!({"path": "/tmp/demo.txt"}));
    assert_eq!(req["prompt"], "Allow delete_file on /tmp/demo.txt?");
    assert_eq!(req["request_id"], "req-1");
    // The turn waits: nothing arrives until the reply.
    assert!(
        tokio::time::timeout(Duration::from_millis(150), c.next_event())
            .await
            .is_err()
    );
    c.send_json(json!({"type": "confirmation_reply", "request_id": "req-1", "approved": approved}))
        .await;
    let rest = c.turn().await;
    let mut all = head;
    all.extend(rest);
    check_turn(&all);
    all
}

#[tokio::test]
async fn confirm_approved_runs_the_tool() {
    let ev = confirm(true).await;
    let i = ev
        .iter()
        .position(|e| e["type"] == "confirmation_result")
        .unwrap();
    assert_eq!(ev[i]["approved"], true);
    assert_eq!(ev[i + 1]["type"], "tool_call");
    assert_eq!(ev[i + 1]["name"], "delete_file");
    assert_eq!(ev[i + 2]["output"], json!({"deleted": true}));
    assert_eq!(
        ev.last().unwrap()["content"],
        "You said: clean up [confirmed]"
    );
}

#[tokio::test]
async fn confirm_denied_skips_the_tool() {
    let ev = confirm(false).await;
    assert!(!ev.iter().any(|e| e["type"] == "tool_call"));
    assert_eq!(ev.last().unwrap()["content"], "You said: clean up [denied]");
}

#[tokio::test]
async fn ask_human_flow() {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    c.send_message("name it #ask").await;
    let ask = c.until(&["ask_human"]).await.pop().unwrap();
    assert_eq!(ask["question"], "What name should I use?");
    let rid = ask["request_id"].as_str().unwrap().to_owned();
    // A reply to an unknown request is refused and the question stays open.
    c.send_json(json!({"type": "human_reply", "request_id": "req-999", "content": "x"}))
        .await;
    let e = c.expect_error("UNKNOWN_REQUEST").await;
    assert_eq!(e["request_id"], "req-999");
    // A confirmation_reply with the id of a question is not an answer to it either.
    c.send_json(json!({"type": "confirmation_reply", "request_id": rid, "approved": true}))
        .await;
    c.expect_error("UNKNOWN_REQUEST").await;
    c.send_json(json!({"type": "human_reply", "request_id": rid, "content": "Ada  Lovelace"}))
        .await;
    let ev = c.turn().await;
    assert_eq!(
        ev.last().unwrap()["content"],
        "You said: name it [human: Ada  Lovelace]"
    );
    // Answering again after the turn ended: unknown.
    c.send_json(json!({"type": "human_reply", "request_id": rid, "content": "x"}))
        .await;
    c.expect_error("UNKNOWN_REQUEST").await;
}

#[tokio::test]
async fn team_flow() {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    c.send_message("write a report #team").await;
    let ev = c.turn().await;
    check_turn(&ev);
    let t = types(&ev);
    assert_eq!(
        &t[2..14],
        [
            "team_formed",
            "plan_update",
            "plan_update",
            "expert_step",
            "expert_result",
            "plan_update",
            "plan_update",
            "expert_step",
            "expert_result",
            "plan_update",
            "team_synthesis",
            "team_dissolved"
        ]
    );
    assert_eq!(ev[2]["goal"], "write a report");
    assert_eq!(ev[2]["experts"], json!(["researcher", "writer"]));
    assert!(ev[2..14].iter().all(|e| e["team_id"] == "team-1"));
    assert_eq!(ev[5]["content"], "researcher working on: write a report");
    assert_eq!(ev[6]["result"], "researcher done");
    assert_eq!(ev[13 - 1]["content"], "researcher and writer agree");
    assert_eq!(
        ev.last().unwrap()["content"],
        "You said: write a report [team: researcher and writer agree]"
    );
}

#[tokio::test]
async fn error_directive_ends_the_turn_with_internal_error() {
    let srv = default_server().await;
    let (s, mut c) = srv.new_chat("alice").await;
    c.send_message("boom #error").await;
    let ev = c.until(&["error"]).await;
    assert_eq!(types(&ev), ["turn_started", "thinking", "error"]);
    let e = ev.last().unwrap();
    assert_eq!(
        (e["code"].as_str(), e["turn_id"].as_str()),
        (Some("INTERNAL_ERROR"), Some("turn-1"))
    );
    assert_eq!(e["message"], "scripted internal error");
    // Nothing of that turn follows, and the connection is usable (R12).
    c.send_message("ok").await;
    let ev = c.turn().await;
    assert_eq!(ev[0]["turn_id"], "turn-2");
    // A failed turn stores the user entry only.
    let h: Value = srv
        .http
        .get(srv.url(&format!("/api/v1/sessions/{s}")))
        .bearer_auth(srv.token("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let roles: Vec<&str> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "user", "assistant"]);
}

#[tokio::test]
async fn skills_match_and_annotate_the_answer() {
    let srv = default_server().await;
    for (name, kw) in [
        ("weather", json!(["rain", "Sun"])),
        ("greeter", json!(["hello"])),
    ] {
        let r = srv
            .http
            .post(srv.url("/api/v1/skills"))
            .bearer_auth(srv.token("alice"))
            .json(&json!({"name": name, "keywords": kw, "description": "d"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"name": name, "keywords": kw})
        );
    }
    let (_s, mut c) = srv.new_chat("alice").await;
    c.send_message("HELLO sun and rain").await;
    let ev = c.turn().await;
    assert_eq!(
        &types(&ev)[..4],
        ["turn_started", "thinking", "skill_match", "skill_match"]
    );
    assert_eq!(
        (ev[2]["skill"].as_str(), ev[2]["keyword"].as_str()),
        (Some("weather"), Some("rain"))
    );
    assert_eq!(ev[3]["skill"], "greeter");
    assert_eq!(
        ev.last().unwrap()["content"],
        "You said: HELLO sun and rain [skill: weather] [skill: greeter]"
    );
}

#[tokio::test]
async fn long_answer_and_several_directives() {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    c.send_message("#long=2000 #tool #failtool go").await;
    let ev = c.turn().await;
    check_turn(&ev);
    let last = ev.last().unwrap();
    assert_eq!(last["token_count"], 2000);
    assert!(last["content"].as_str().unwrap().ends_with(" w1999"));
    let calls: Vec<&Value> = ev.iter().filter(|e| e["type"] == "tool_call").collect();
    assert_eq!(
        (calls[0]["call_id"].as_str(), calls[1]["call_id"].as_str()),
        (Some("call-1"), Some("call-2"))
    );
}

#[tokio::test]
async fn pace_directive_spaces_tokens() {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    let start = tokio::time::Instant::now();
    c.send_message("#long=6 #pace=40").await;
    let ev = c.turn().await;
    check_turn(&ev);
    // Five pauses of 40 ms between six tokens.
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn ping_is_answered_while_a_turn_streams() {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    c.send_message("#long=100000 #pace=1").await;
    c.until(&["token"]).await;
    c.send_json(json!({"type": "ping", "nonce": "n-1"})).await;
    c.send_json(json!({"type": "ping", "nonce": 42})).await;
    c.send_json(json!({"type": "ping"})).await;
    let mut pongs = Vec::new();
    while pongs.len() < 3 {
        let ev = c.next_event().await;
        assert_ne!(
            ev["type"], "final_answer",
            "the turn should still be streaming"
        );
        if ev["type"] == "pong" {
            pongs.push(ev);
        }
    }
    assert_eq!(
        pongs,
        [
            json!({"type": "pong", "nonce": "n-1"}),
            json!({"type": "pong", "nonce": 42}),
            json!({"type": "pong"})
        ]
    );
    // A WebSocket Ping control frame gets a Pong with the same payload, also mid-stream.
    c.ws.send(Message::Ping(b"abc".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, async {
        loop {
            match futures_util::StreamExt::next(&mut c.ws).await {
                Some(Ok(Message::Pong(p))) => return p,
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("pong control frame");
    assert_eq!(&pong[..], b"abc");
    c.send_json(json!({"type": "cancel"})).await;
    c.until(&["cancelled"]).await;
}

#[tokio::test]
async fn cancel_mid_stream_ends_the_turn_and_keeps_the_connection() {
    let srv = default_server().await;
    let (s, mut c) = srv.new_chat("alice").await;
    c.send_message("#long=100000 #pace=1").await;
    let started = c.until(&["token"]).await;
    let turn_id = started[0]["turn_id"].as_str().unwrap().to_owned();
    // A cancel for another turn id is refused; the turn keeps running.
    c.send_json(json!({"type": "cancel", "turn_id": "turn-99"}))
        .await;
    let ev = c.until(&["error"]).await;
    assert_eq!(ev.last().unwrap()["code"], "NO_ACTIVE_TURN");
    let sent = tokio::time::Instant::now();
    c.send_json(json!({"type": "cancel", "turn_id": turn_id}))
        .await;
    let ev = c.until(&["cancelled"]).await;
    assert!(sent.elapsed() < Duration::from_secs(2));
    let cancelled = ev.last().unwrap();
    assert_eq!(cancelled["reason"], "client_cancel");
    assert_eq!(cancelled["turn_id"], turn_id.as_str());
    assert!(!ev.iter().any(|e| e["type"] == "final_answer"));
    // Nothing of the cancelled turn follows.
    c.send_json(json!({"type": "ping", "nonce": "after"})).await;
    assert_eq!(
        c.next_event().await,
        json!({"type": "pong", "nonce": "after"})
    );
    c.send_json(json!({"type": "cancel"})).await;
    c.expect_error("NO_ACTIVE_TURN").await;
    c.send_message("next").await;
    let ev = c.turn().await;
    check_turn(&ev);
    assert_eq!(srv.status().await["turns_in_flight"], 0);
    // A cancelled turn keeps the user entry only.
    let h: Value = srv
        .http
        .get(srv.url(&format!("/api/v1/sessions/{s}")))
        .bearer_auth(srv.token("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["history"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn cancel_while_waiting_for_a_confirmation() {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    c.send_message("#confirm").await;
    let req = c.until(&["confirmation_request"]).await.pop().unwrap();
    c.send_json(json!({"type": "cancel"})).await;
    c.expect_type("cancelled").await;
    c.send_json(
        json!({"type": "confirmation_reply", "request_id": req["request_id"], "approved": true}),
    )
    .await;
    c.expect_error("UNKNOWN_REQUEST").await;
}

#[tokio::test]
async fn busy_turn_is_refused_and_unaffected() {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    c.send_message("#long=300 #pace=2").await;
    c.until(&["turn_started"]).await;
    c.send_json(json!({"type": "message", "content": "second", "client_id": "c-2"}))
        .await;
    let mut ev = c.until(&["error"]).await;
    let err = ev.pop().unwrap();
    assert_eq!(err["code"], "TURN_IN_PROGRESS");
    assert_eq!(err["client_id"], "c-2");
    assert!(err.get("turn_id").is_none());
    ev.extend(c.turn().await.into_iter());
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "final_answer");
    assert_eq!(last["token_count"], 300);
}

#[tokio::test]
async fn reply_timeout_ends_the_turn_with_an_error() {
    let srv = server(Config {
        reply_timeout: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let (_s, mut c) = srv.new_chat("alice").await;
    c.send_message("#confirm").await;
    let ev = c.until(&["error"]).await;
    let e = ev.last().unwrap();
    assert_eq!(
        (e["code"].as_str(), e["turn_id"].as_str()),
        (Some("CONFIRMATION_TIMEOUT"), Some("turn-1"))
    );
    c.send_message("#ask").await;
    let ev = c.until(&["error"]).await;
    assert_eq!(ev.last().unwrap()["code"], "HUMAN_REPLY_TIMEOUT");
}

#[tokio::test]
async fn resume_after_reconnect() {
    let srv = default_server().await;
    let (s, mut c) = srv.new_chat("alice").await;
    c.send_message("first").await;
    c.turn().await;
    c.close().await;
    let mut c = srv
        .connect_query(&s, &format!("api_key={}", srv.token("alice")))
        .await;
    let ev = c.next_event().await;
    assert_eq!(ev["type"], "connected");
    assert_eq!(ev["resumed"], true);
    assert_eq!(ev["history_length"], 2);
    assert_eq!(ev["protocol"], "wschat.v1");
    c.send_message("second").await;
    assert_eq!(c.turn().await[0]["turn_id"], "turn-2");
    let h: Value = srv
        .http
        .get(srv.url(&format!("/api/v1/sessions/{s}")))
        .bearer_auth(srv.token("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        h["history"],
        json!([
            {"role": "user", "content": "first", "turn_id": "turn-1"},
            {"role": "assistant", "content": "You said: first", "turn_id": "turn-1"},
            {"role": "user", "content": "second", "turn_id": "turn-2"},
            {"role": "assistant", "content": "You said: second", "turn_id": "turn-2"},
        ])
    );
    assert_eq!(h["title"], "test");
}

#[tokio::test]
async fn pong_carries_the_nonce_exactly_as_sent() {
    use futures_util::StreamExt;
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    // Beyond 64 bits, written with a fraction or an exponent: still integers for the schema, and
    // the same JSON value only if the text comes back unchanged.
    for nonce in [
        "18446744073709551616",
        "7.0",
        "1e2",
        "123456789012345678901234567890",
    ] {
        c.ws.send(Message::text(format!(
            r#"{{"type":"ping","nonce":{nonce}}}"#
        )))
        .await
        .unwrap();
        let text = tokio::time::timeout(WAIT, async {
            loop {
                match c.ws.next().await {
                    Some(Ok(Message::Text(t))) => break t.as_str().to_owned(),
                    Some(Ok(_)) => continue,
                    other => panic!("socket ended: {other:?}"),
                }
            }
        })
        .await
        .expect("pong in time");
        assert_eq!(text, format!(r#"{{"nonce":{nonce},"type":"pong"}}"#));
    }
    c.close().await;
}

#[tokio::test]
async fn broadcasts_reach_only_sockets_that_got_connected() {
    let srv = default_server().await;
    let (_s, mut authed) = srv.new_chat("alice").await;
    let session = srv.create_session("bob").await;
    let mut waiting = srv.connect_query(&session, "").await;
    let r = srv
        .http
        .post(srv.url("/api/v1/admin/broadcast"))
        .bearer_auth(srv.admin_token("root"))
        .json(&json!({"content": "notice"}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["delivered"], 1, "{body}");
    assert_eq!(authed.expect_type("broadcast").await["content"], "notice");
    // The socket still waiting for `auth` got nothing: after authenticating, its first events are
    // auth_success and connected, and a ping's pong comes next (no broadcast queued in between).
    waiting
        .send_json(json!({"type": "auth", "token": srv.token("bob")}))
        .await;
    waiting.send_json(json!({"type": "ping", "nonce": 1})).await;
    let mut types = Vec::new();
    for _ in 0..3 {
        types.push(
            waiting.next_event().await["type"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(types, ["auth_success", "connected", "pong"]);
    authed.close().await;
    waiting.close().await;
}
