//! REST (section 9), persistence (section 10), broadcast, status counters and graceful shutdown.

mod common;

use std::time::Duration;

use common::*;
use reference_server::Config;
use serde_json::{json, Value};

#[tokio::test]
async fn rest_endpoints_and_their_errors() {
    let srv = server(Config {
        dev: false,
        ..Config::default()
    })
    .await;
    let http = &srv.http;

    let r = http.get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    let r = http.get(srv.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("/api/v1/chat/ws/"));

    // Sessions: no token, bad token, no body, owner only.
    let r = http.post(srv.url("/api/v1/sessions")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "AUTH_INVALID"
    );
    let r = http
        .post(srv.url("/api/v1/sessions"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(srv.url("/api/v1/sessions"))
        .bearer_auth(srv.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let id = created["session_id"].as_str().unwrap();
    assert_eq!(created["user_id"], "alice");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let r = http
        .get(srv.url(&format!("/api/v1/sessions/{id}")))
        .bearer_auth(srv.token("bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "SESSION_FORBIDDEN"
    );
    let r = http
        .get(srv.url("/api/v1/sessions/nope"))
        .bearer_auth(srv.token("bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "SESSION_NOT_FOUND"
    );
    let r = http
        .get(srv.url(&format!("/api/v1/sessions/{id}")))
        .bearer_auth(srv.token("alice"))
        .send()
        .await
        .unwrap();
    let got: Value = r.json().await.unwrap();
    assert_eq!(
        (got["title"].clone(), got["history"].clone()),
        (Value::Null, json!([]))
    );

    // Skills: shape errors are INVALID_MESSAGE.
    for body in [
        json!({"name": "x"}),
        json!({"name": "x", "keywords": []}),
        json!({"name": "x", "keywords": [1]}),
        json!({"name": "x", "keywords": ["a"], "extra": 1}),
    ] {
        let r = http
            .post(srv.url("/api/v1/skills"))
            .bearer_auth(srv.token("alice"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "INVALID_MESSAGE"
        );
    }

    // Broadcast needs an admin.
    let r = http
        .post(srv.url("/api/v1/admin/broadcast"))
        .bearer_auth(srv.token("alice"))
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "ADMIN_REQUIRED"
    );
    let r = http
        .post(srv.url("/api/v1/admin/broadcast"))
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The dev endpoint does not exist without `dev`; unknown paths are JSON 404s.
    let r = http
        .post(srv.url("/api/v1/dev/token"))
        .json(&json!({"user_id": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http.get(srv.url("/api/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "NOT_FOUND"
    );
    // A known path with a method it does not serve is a JSON 405, not axum's empty default.
    for (method, path) in [
        (reqwest::Method::DELETE, "/api/v1/sessions"),
        (reqwest::Method::PUT, "/healthz"),
        (reqwest::Method::POST, &*format!("/api/v1/sessions/{id}")),
    ] {
        let r = http
            .request(method.clone(), srv.url(path))
            .bearer_auth(srv.token("alice"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "METHOD_NOT_ALLOWED",
            "{method} {path}"
        );
    }
    srv.handle.shutdown().await;
}

#[tokio::test]
async fn dev_token_endpoint_mints_working_tokens() {
    let srv = server(Config {
        dev: true,
        ..Config::default()
    })
    .await;
    let r = srv
        .http
        .post(srv.url("/api/v1/dev/token"))
        .json(&json!({"user_id": "carol", "admin": true, "ttl_seconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = srv
        .http
        .post(srv.url("/api/v1/admin/broadcast"))
        .bearer_auth(&token)
        .json(&json!({"content": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"delivered": 0}));
    let r = srv
        .http
        .post(srv.url("/api/v1/dev/token"))
        .json(&json!({"user_id": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// R1 under load: while broadcasts keep coming, every new socket still gets `connected` first. (The
/// socket once joined the broadcast registry before queueing `connected`, so a broadcast could
/// overtake it: this test failed in two runs of three with that order; it cannot prove the absence
/// of the race, only make it likely to show.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_comes_before_any_broadcast() {
    const SOCKETS: usize = 800;
    const CONNECTORS: usize = 8;
    let srv = std::sync::Arc::new(default_server().await);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammers: Vec<_> = (0..2)
        .map(|_| {
            let (http, url, token, stop) = (
                srv.http.clone(),
                srv.url("/api/v1/admin/broadcast"),
                srv.admin_token("root"),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut sent = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"content": "x"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let connectors: Vec<_> = (0..CONNECTORS)
        .map(|_| {
            let srv = srv.clone();
            tokio::spawn(async move {
                let mut early = Vec::new();
                for _ in 0..SOCKETS / CONNECTORS {
                    let session = srv.create_session("alice").await;
                    let mut c = srv
                        .connect_query(&session, &format!("token={}", srv.token("alice")))
                        .await;
                    let first = c.next_event().await;
                    if first["type"] != "connected" {
                        early.push(first);
                    }
                    c.close().await;
                }
                early
            })
        })
        .collect();
    let mut early = Vec::new();
    for c in connectors {
        early.extend(tokio::time::timeout(WAIT, c).await.unwrap().unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for h in hammers {
        sent += tokio::time::timeout(WAIT, h).await.unwrap().unwrap();
    }
    assert!(
        sent > 0,
        "no broadcast was sent while the sockets connected"
    );
    assert!(
        early.is_empty(),
        "{} of {SOCKETS} sockets got another event before `connected` ({sent} broadcasts): {:?}",
        early.len(),
        &early[..early.len().min(3)]
    );
}

#[tokio::test]
async fn broadcast_reaches_every_authenticated_socket() {
    let srv = default_server().await;
    let (_s1, mut a) = srv.new_chat("alice").await;
    let (_s2, mut b) = srv.new_chat("bob").await;
    // A socket still waiting for first-message auth is not a recipient (R1).
    let s3 = srv.create_session("carol").await;
    let mut pending = srv.connect_query(&s3, "").await;
    let r = srv
        .http
        .post(srv.url("/api/v1/admin/broadcast"))
        .bearer_auth(srv.admin_token("root"))
        .json(&json!({"content": "maintenance at noon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"delivered": 2}));
    let expected = json!({"type": "broadcast", "content": "maintenance at noon", "from": "root"});
    assert_eq!(a.next_event().await, expected);
    assert_eq!(b.next_event().await, expected);
    assert!(
        tokio::time::timeout(Duration::from_millis(100), pending.next_event())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn status_counts_connections_sessions_and_turns() {
    let srv = default_server().await;
    let st = srv.status().await;
    assert_eq!(st["protocol"], "wschat.v1");
    assert_eq!(
        (
            st["active_connections"].as_u64(),
            st["sessions"].as_u64(),
            st["turns_in_flight"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert!(st["uptime_seconds"].is_u64());
    let (_s, mut c) = srv.new_chat("alice").await;
    c.send_message("#long=100000 #pace=1").await;
    c.until(&["token"]).await;
    let st = srv.status().await;
    assert_eq!(
        (
            st["active_connections"].as_u64(),
            st["sessions"].as_u64(),
            st["turns_in_flight"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    // Dropping the socket mid-turn ends the turn and frees the counters.
    drop(c);
    let done = tokio::time::timeout(WAIT, async {
        loop {
            let st = srv.status().await;
            if st["active_connections"] == 0 && st["turns_in_flight"] == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "counters did not return to zero: {}",
        srv.status().await
    );
}

#[tokio::test]
async fn graceful_shutdown_sends_closing_and_1001_to_every_socket() {
    let srv = default_server().await;
    let (_s, mut a) = srv.new_chat("alice").await;
    let (_s2, mut b) = srv.new_chat("bob").await;
    a.send_message("#long=100000 #pace=1").await;
    a.until(&["token"]).await;
    let shutdown = tokio::spawn(srv.handle.shutdown());
    for c in [&mut a, &mut b] {
        let closed = c.closed(WAIT).await;
        assert_eq!(closed.code, Some(1001));
        let last = closed.events_before.last().unwrap();
        assert_eq!(last, &json!({"type": "closing", "reason": "shutdown"}));
        // Nothing follows the closing event, and no turn event comes after it.
        assert!(
            closed
                .events_before
                .iter()
                .filter(|e| e["type"] == "closing")
                .count()
                == 1
        );
    }
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown finishes")
        .unwrap();
}

/// An upgrade request that reached the server before shutdown began but finishes after it gets a JSON
/// 503 `SHUTTING_DOWN`, not a socket that would be closed at once.
#[tokio::test]
async fn an_upgrade_finished_during_shutdown_is_refused_with_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = default_server().await;
    let (session, mut a) = srv.new_chat("alice").await;
    // The request line and the first headers are on the wire; the blank line ending the head is not.
    let addr = srv
        .handle
        .http_url()
        .trim_start_matches("http://")
        .to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "GET /api/v1/chat/ws/{session} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {}\r\n",
        srv.token("alice")
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let shutdown = tokio::spawn(srv.handle.shutdown());
    // `closing` on the open socket proves the shutdown has begun; the socket is not closed by us yet,
    // so the server is still draining.
    a.until(&["closing"]).await;
    tcp.write_all(b"\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("the refusal arrives in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"SHUTTING_DOWN\""), "{answer}");
    drop(a);
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown finishes")
        .unwrap();
}

#[tokio::test]
async fn sessions_history_and_skills_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "wschat-restart-{}-{}",
        std::process::id(),
        uuid_like()
    ));
    let config = Config {
        data_dir: Some(dir.clone()),
        jwt_secret: "restart-secret".into(),
        ..Config::default()
    };

    let srv = server(config.clone()).await;
    let r = srv
        .http
        .post(srv.url("/api/v1/skills"))
        .bearer_auth(srv.token("alice"))
        .json(&json!({"name": "weather", "keywords": ["rain"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (s, mut c) = srv.new_chat("alice").await;
    c.send_message("rain today").await;
    let first = c.turn().await;
    assert_eq!(
        first.last().unwrap()["content"],
        "You said: rain today [skill: weather]"
    );
    c.close().await;
    srv.handle.shutdown().await;

    let srv = server(config).await;
    let mut c = srv
        .connect_query(&s, &format!("token={}", srv.token("alice")))
        .await;
    let ev = c.expect_type("connected").await;
    assert_eq!(
        (ev["resumed"].as_bool(), ev["history_length"].as_u64()),
        (Some(true), Some(2))
    );
    c.send_message("rain again").await;
    let ev = c.turn().await;
    assert_eq!(
        ev[0]["turn_id"], "turn-2",
        "turn ids continue after a restart"
    );
    assert_eq!(
        ev.last().unwrap()["content"],
        "You said: rain again [skill: weather]"
    );
    assert_eq!(srv.status().await["sessions"], 1);
    c.close().await;
    srv.handle.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A unique-enough suffix without extra crates: the clock's nanoseconds.
fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
