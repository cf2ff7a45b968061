//! Section 3 (authentication, handshake refusals, subprotocol), section 7 (error codes) and section 8
//! (close codes), over real sockets.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use jsonwebtoken::Algorithm;
use reference_server::Config;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn expired(srv: &Srv, user: &str) -> String {
    sign(
        srv.handle.jwt_secret(),
        Algorithm::HS256,
        &json!({"sub": user, "exp": now() - 3600, "iat": now() - 7200}),
    )
}

// ---------------------------------------------------------------- handshake refusals

#[tokio::test]
async fn handshake_refusals_carry_status_and_json_code() {
    let srv = default_server().await;
    let s = srv.create_session("alice").await;
    let q = |query: String| {
        format!("{}?{query}", srv.ws_path(&s))
            .into_client_request()
            .unwrap()
    };

    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!(
                "token={}",
                sign(
                    "wrong-secret",
                    Algorithm::HS256,
                    &json!({"sub": "alice", "exp": now() + 60})
                )
            ),
            401,
            "AUTH_INVALID",
        ),
        (format!("token={}", alg_none("alice")), 401, "AUTH_INVALID"),
        (
            format!(
                "token={}",
                sign(
                    srv.handle.jwt_secret(),
                    Algorithm::HS512,
                    &json!({"sub": "alice", "exp": now() + 60})
                )
            ),
            401,
            "AUTH_INVALID",
        ),
        (
            format!(
                "token={}",
                sign(
                    srv.handle.jwt_secret(),
                    Algorithm::HS256,
                    &json!({"exp": now() + 60})
                )
            ),
            401,
            "AUTH_INVALID",
        ),
        (
            format!(
                "token={}",
                sign(
                    srv.handle.jwt_secret(),
                    Algorithm::HS256,
                    &json!({"sub": "alice"})
                )
            ),
            401,
            "AUTH_INVALID",
        ),
        ("token=not.a.jwt".to_string(), 401, "AUTH_INVALID"),
        (
            format!("token={}", expired(&srv, "alice")),
            401,
            "AUTH_EXPIRED",
        ),
        (
            format!("api_key={}", srv.token("mallory")),
            403,
            "SESSION_FORBIDDEN",
        ),
        // `token` wins over `api_key`.
        (
            format!(
                "api_key={}&token={}",
                srv.token("alice"),
                srv.token("mallory")
            ),
            403,
            "SESSION_FORBIDDEN",
        ),
    ];
    for (query, status, code) in cases {
        let (st, body) = refused(q(query.clone())).await;
        assert_eq!(
            (st, body["error"]["code"].as_str()),
            (status, Some(code)),
            "query {query}: {body}"
        );
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }

    // Header token, bad.
    let mut req = srv.ws_path(&s).into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", expired(&srv, "alice"))
            .parse()
            .unwrap(),
    );
    assert_eq!(refused(req).await.1["error"]["code"], "AUTH_EXPIRED");

    // Unknown session: 404 even without credentials, and before checking a bad token.
    let (st, body) = refused(
        srv.ws_path("no-such-session")
            .into_client_request()
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (404, Some("SESSION_NOT_FOUND"))
    );
    let (st, _) = refused(
        format!("{}?token=garbage", srv.ws_path("nope"))
            .into_client_request()
            .unwrap(),
    )
    .await;
    assert_eq!(st, 404);

    // Not an upgrade at all.
    let r = srv
        .http
        .get(srv.ws_path(&s).replace("ws://", "http://"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "BAD_REQUEST"
    );
}

#[tokio::test]
async fn too_many_connections_per_user_is_refused_with_429() {
    let srv = server(Config {
        max_connections_per_user: 2,
        ..Config::default()
    })
    .await;
    let s = srv.create_session("alice").await;
    let mut a = srv.connect(&s, "alice").await;
    let _b = srv.connect(&s, "alice").await;
    let (st, body) = refused(
        format!("{}?token={}", srv.ws_path(&s), srv.token("alice"))
            .into_client_request()
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (429, Some("TOO_MANY_CONNECTIONS"))
    );
    // Closing one frees a slot.
    a.close().await;
    assert!(a.closed(WAIT).await.code.is_some());
    let ok = tokio::time::timeout(WAIT, async {
        loop {
            let req = format!("{}?token={}", srv.ws_path(&s), srv.token("alice"))
                .into_client_request()
                .unwrap();
            if let Ok((ws, _)) = tokio_tungstenite::connect_async(req).await {
                return ws;
            }
            // The server releases the slot when the socket task ends, just after the close handshake.
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(ok.is_ok());
}

#[tokio::test]
async fn subprotocol_negotiation() {
    let srv = default_server().await;
    let s = srv.create_session("alice").await;
    let url = format!("{}?token={}", srv.ws_path(&s), srv.token("alice"));
    for (offer, expected) in [
        (Some("wschat.v1"), Some("wschat.v1")),
        (Some("other, wschat.v1"), Some("wschat.v1")),
        (Some("other"), None),
        (None, None),
    ] {
        let mut req = url.clone().into_client_request().unwrap();
        if let Some(o) = offer {
            req.headers_mut()
                .insert("sec-websocket-protocol", o.parse().unwrap());
        }
        let r = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .unwrap();
        match (r, expected) {
            (Ok((_ws, resp)), exp) => {
                let got = resp
                    .headers()
                    .get("sec-websocket-protocol")
                    .map(|v| v.to_str().unwrap().to_owned());
                assert_eq!(got.as_deref(), exp, "offer {offer:?}");
            }
            // tungstenite's client refuses a response without a protocol when it offered some; that is
            // the server accepting without selecting one.
            (Err(tokio_tungstenite::tungstenite::Error::Protocol(p)), None) => {
                assert!(p.to_string().to_lowercase().contains("subprotocol"), "{p}")
            }
            (Err(e), _) => panic!("offer {offer:?}: {e}"),
        }
    }
}

// ---------------------------------------------------------------- first-message authentication

#[tokio::test]
async fn first_message_auth_success_with_bearer_prefix() {
    let srv = default_server().await;
    let s = srv.create_session("alice").await;
    let mut c = srv.connect_query(&s, "").await;
    // The server says nothing before `auth`.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), c.next_event())
            .await
            .is_err()
    );
    c.send_message("too early").await;
    c.expect_error("AUTH_REQUIRED").await;
    c.send_json(json!({"type": "ping", "nonce": 1})).await;
    c.expect_error("AUTH_REQUIRED").await;
    c.send_text("{broken").await;
    c.expect_error("AUTH_REQUIRED").await;
    c.send_json(json!({"type": "auth", "token": format!("Bearer {}", srv.token("alice"))}))
        .await;
    assert_eq!(
        c.next_event().await,
        json!({"type": "auth_success", "user_id": "alice"})
    );
    let ev = c.expect_type("connected").await;
    assert_eq!(
        (ev["resumed"].as_bool(), ev["history_length"].as_u64()),
        (Some(false), Some(0))
    );
    c.send_json(json!({"type": "auth", "token": srv.token("alice")}))
        .await;
    c.expect_error("ALREADY_AUTHENTICATED").await;
    c.send_message("works").await;
    check_turn(&c.turn().await);
}

async fn first_message_failure(token: String, code: &str, close: u16) {
    let srv = default_server().await;
    let s = srv.create_session("alice").await;
    let mut c = srv.connect_query(&s, "").await;
    let token = if token.is_empty() {
        srv.token("mallory")
    } else {
        token
    };
    let token = token.replace("EXPIRED", &expired(&srv, "alice"));
    c.send_json(json!({"type": "auth", "token": token})).await;
    let ev = c.expect_type("auth_error").await;
    assert_eq!(ev["code"], code);
    assert_eq!(c.closed(WAIT).await.code, Some(close));
}

#[tokio::test]
async fn first_message_auth_invalid_closes_4401() {
    first_message_failure("garbage".into(), "AUTH_INVALID", 4401).await;
    first_message_failure(alg_none("alice"), "AUTH_INVALID", 4401).await;
}

#[tokio::test]
async fn first_message_auth_expired_closes_4401() {
    first_message_failure("EXPIRED".into(), "AUTH_EXPIRED", 4401).await;
}

#[tokio::test]
async fn first_message_auth_other_user_closes_4403() {
    first_message_failure(String::new(), "SESSION_FORBIDDEN", 4403).await;
}

#[tokio::test]
async fn auth_deadline_closes_4408() {
    let srv = server(Config {
        auth_timeout: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let s = srv.create_session("alice").await;
    let mut c = srv.connect_query(&s, "").await;
    let closed = c.closed(WAIT).await;
    assert_eq!(closed.code, Some(4408));
    assert_eq!(
        closed.events_before,
        [json!({"type": "closing", "reason": "auth_timeout"})]
    );
}

// ---------------------------------------------------------------- error codes (section 7)

#[tokio::test]
async fn connection_errors_keep_the_connection_usable() {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("{not json"), "INVALID_JSON"),
        (Message::text("[1,2,3]"), "INVALID_JSON"),
        (Message::text(r#"{"content":"x"}"#), "UNKNOWN_TYPE"),
        (Message::text(r#"{"type":7}"#), "UNKNOWN_TYPE"),
        (Message::text(r#"{"type":"dance"}"#), "UNKNOWN_TYPE"),
        (Message::text(r#"{"type":"message"}"#), "INVALID_MESSAGE"),
        (
            Message::text(r#"{"type":"message","content":"x","extra":true}"#),
            "INVALID_MESSAGE",
        ),
        (
            Message::text(r#"{"type":"confirmation_reply","request_id":"r"}"#),
            "INVALID_MESSAGE",
        ),
        (
            Message::text(r#"{"type":"message","content":"   "}"#),
            "EMPTY_MESSAGE",
        ),
        (
            Message::text(r#"{"type":"message","content":""}"#),
            "EMPTY_MESSAGE",
        ),
        (Message::binary(vec![0u8, 1, 2]), "BINARY_NOT_SUPPORTED"),
        (
            Message::text(format!(
                r#"{{"type":"message","content":"{}"}}"#,
                "a".repeat(70_000)
            )),
            "MESSAGE_TOO_LARGE",
        ),
        (Message::text(r#"{"type":"cancel"}"#), "NO_ACTIVE_TURN"),
        (
            Message::text(r#"{"type":"confirmation_reply","request_id":"req-5","approved":true}"#),
            "UNKNOWN_REQUEST",
        ),
        (
            Message::text(format!(
                r#"{{"type":"auth","token":"{}"}}"#,
                srv.token("alice")
            )),
            "ALREADY_AUTHENTICATED",
        ),
    ];
    for (msg, code) in cases {
        c.ws.send(msg).await.unwrap();
        let ev = c.expect_error(code).await;
        assert!(ev["message"].as_str().is_some_and(|m| !m.is_empty()));
        // R12: a following valid message starts a normal turn.
        c.send_message("still here").await;
        check_turn(&c.turn().await);
    }
}

#[tokio::test]
async fn rate_limit_drops_messages_beyond_the_burst() {
    let srv = server(Config {
        rate_limit_per_sec: 1,
        rate_burst: 3,
        ..Config::default()
    })
    .await;
    let (_s, mut c) = srv.new_chat("alice").await;
    for i in 0..5 {
        c.send_json(json!({"type": "ping", "nonce": i})).await;
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(c.next_event().await);
    }
    let pongs = got.iter().filter(|e| e["type"] == "pong").count();
    let limited = got.iter().filter(|e| e["code"] == "RATE_LIMITED").count();
    assert_eq!((pongs, limited), (3, 2), "{got:?}");
    // Tokens refill: after a second the connection is usable again (waiting for the refill is the
    // condition under test).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.send_json(json!({"type": "ping", "nonce": "later"})).await;
    assert_eq!(
        c.next_event().await,
        json!({"type": "pong", "nonce": "later"})
    );
}

// ---------------------------------------------------------------- close codes (section 8)

#[tokio::test]
async fn client_close_is_answered_with_1000() {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    c.close().await;
    assert_eq!(c.closed(WAIT).await.code, Some(1000));
}

#[tokio::test]
async fn frame_over_the_hard_limit_closes_1009_without_an_event() {
    let srv = server(Config {
        max_message_bytes: 1000,
        hard_max_message_bytes: 4096,
        ..Config::default()
    })
    .await;
    let (_s, mut c) = srv.new_chat("alice").await;
    // Between the limits: an error, the connection stays.
    c.send_text(&"x".repeat(2000)).await;
    c.expect_error("MESSAGE_TOO_LARGE").await;
    c.send_text(&"x".repeat(10_000)).await;
    let closed = c.closed(WAIT).await;
    assert_eq!(closed.code, Some(1009));
    assert!(
        closed.events_before.is_empty(),
        "{:?}",
        closed.events_before
    );
}

#[tokio::test]
async fn idle_connection_closes_4000_after_closing_event() {
    let srv = server(Config {
        idle_timeout: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let (_s, mut c) = srv.new_chat("alice").await;
    let closed = c.closed(WAIT).await;
    assert_eq!(closed.code, Some(4000));
    assert_eq!(
        closed.events_before,
        [json!({"type": "closing", "reason": "idle_timeout"})]
    );
}

#[tokio::test]
async fn a_malformed_auth_gets_auth_required_before_and_invalid_message_after_authentication() {
    let srv = default_server().await;
    let session = srv.create_session("alice").await;
    let mut c = srv.connect_query(&session, "").await;
    for frame in [json!({"type": "auth"}), json!({"type": "auth", "token": 5})] {
        c.send_json(frame).await;
        c.expect_error("AUTH_REQUIRED").await;
    }
    c.send_json(json!({"type": "auth", "token": srv.token("alice")}))
        .await;
    c.expect_type("auth_success").await;
    c.expect_type("connected").await;
    c.send_json(json!({"type": "auth"})).await;
    c.expect_error("INVALID_MESSAGE").await;
    // A well-formed auth, whatever its token, is ALREADY_AUTHENTICATED.
    c.send_json(json!({"type": "auth", "token": "garbage"}))
        .await;
    c.expect_error("ALREADY_AUTHENTICATED").await;
    c.close().await;
}

#[tokio::test]
async fn empty_means_only_unicode_white_space() {
    let srv = default_server().await;
    let (_s, mut c) = srv.new_chat("alice").await;
    // Unicode White_Space: ASCII blanks, NEL, no-break space, the U+2000 range, line and paragraph
    // separators, ideographic space.
    for blank in [
        "",
        " \t\r\n\u{b}\u{c}",
        "\u{85}\u{a0}\u{1680}\u{2000}\u{200a}",
        "\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}",
    ] {
        c.send_json(json!({"type": "message", "content": blank}))
            .await;
        c.expect_error("EMPTY_MESSAGE").await;
    }
    // Not White_Space: a zero-width space or a byte-order mark is content.
    for visible in ["\u{200b}", "\u{feff}"] {
        c.send_json(json!({"type": "message", "content": visible}))
            .await;
        let ev = c.turn().await;
        assert_eq!(
            ev.last().unwrap()["type"],
            "final_answer",
            "{visible:?}: {ev:?}"
        );
    }
    c.close().await;
}
