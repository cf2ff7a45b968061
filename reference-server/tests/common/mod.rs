//! Shared helpers for the integration tests: a real server on 127.0.0.1:0, real sockets, and every wait
//! bounded by a timeout.
#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reference_server::{mint_token, start, Config, ServerHandle};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub struct Srv {
    pub handle: ServerHandle,
    pub http: reqwest::Client,
}

pub async fn server(config: Config) -> Srv {
    init();
    let handle = start(config).await.expect("server starts");
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap();
    Srv { handle, http }
}

pub async fn default_server() -> Srv {
    server(Config::default()).await
}

impl Srv {
    pub fn token(&self, user: &str) -> String {
        mint_token(
            self.handle.jwt_secret(),
            user,
            false,
            Duration::from_secs(3600),
        )
    }

    pub fn admin_token(&self, user: &str) -> String {
        mint_token(
            self.handle.jwt_secret(),
            user,
            true,
            Duration::from_secs(3600),
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.http_url())
    }

    pub fn ws_path(&self, session: &str) -> String {
        format!("{}/api/v1/chat/ws/{session}", self.handle.ws_url())
    }

    pub async fn create_session(&self, user: &str) -> String {
        let r = self
            .http
            .post(self.url("/api/v1/sessions"))
            .bearer_auth(self.token(user))
            .json(&json!({"title": "test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        v["session_id"].as_str().unwrap().to_owned()
    }

    /// Connects to `session` with a header token for `user` and consumes the `connected` event.
    pub async fn connect(&self, session: &str, user: &str) -> Client {
        let mut c = self
            .connect_query(session, &format!("token={}", self.token(user)))
            .await;
        let ev = c.next_event().await;
        assert_eq!(ev["type"], "connected", "{ev}");
        c
    }

    /// Connects with a raw query string (no `connected` consumed).
    pub async fn connect_query(&self, session: &str, query: &str) -> Client {
        let url = if query.is_empty() {
            self.ws_path(session)
        } else {
            format!("{}?{query}", self.ws_path(session))
        };
        Client::connect(url.into_client_request().unwrap())
            .await
            .expect("upgrade accepted")
    }

    pub async fn new_chat(&self, user: &str) -> (String, Client) {
        let s = self.create_session(user).await;
        let c = self.connect(&s, user).await;
        (s, c)
    }

    pub async fn status(&self) -> Value {
        self.http
            .get(self.url("/api/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    /// Every JSON event received, in order (for schema validation and debugging).
    pub seen: Vec<Value>,
}

/// What ended a socket: the close frame's code, or `None` for a TCP end without one.
#[derive(Debug, PartialEq)]
pub struct Closed {
    pub code: Option<u16>,
    pub events_before: Vec<Value>,
}

impl Client {
    pub async fn connect(
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (ws, _resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("connect timed out")?;
        Ok(Client {
            ws,
            seen: Vec::new(),
        })
    }

    pub async fn send_json(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, t: &str) {
        tokio::time::timeout(WAIT, self.ws.send(Message::text(t)))
            .await
            .expect("send timed out")
            .expect("send");
    }

    pub async fn send_message(&mut self, content: &str) {
        self.send_json(json!({"type": "message", "content": content}))
            .await;
    }

    /// The next JSON event; panics on timeout, close, or a non-text frame.
    pub async fn next_event(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for an event")
                .expect("socket ended")
                .expect("socket error");
            match frame {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("event is JSON");
                    self.seen.push(v.clone());
                    return v;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text event, got {other:?}"),
            }
        }
    }

    /// Events up to and including the first whose `type` is one of `types`.
    pub async fn until(&mut self, types: &[&str]) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let ev = self.next_event().await;
            let done = types.iter().any(|t| ev["type"] == *t);
            out.push(ev);
            if done {
                return out;
            }
        }
    }

    /// The events of a turn up to its terminal event.
    pub async fn turn(&mut self) -> Vec<Value> {
        self.until(&["final_answer", "cancelled"]).await
    }

    pub async fn expect_type(&mut self, ty: &str) -> Value {
        let ev = self.next_event().await;
        assert_eq!(ev["type"], ty, "expected {ty}, got {ev}");
        ev
    }

    pub async fn expect_error(&mut self, code: &str) -> Value {
        let ev = self.next_event().await;
        assert_eq!(
            (ev["type"].as_str(), ev["code"].as_str()),
            (Some("error"), Some(code)),
            "{ev}"
        );
        assert!(
            ev.get("turn_id").is_none(),
            "connection error must not carry turn_id: {ev}"
        );
        ev
    }

    /// Reads until the server's close frame (or the end of the stream), within `limit`.
    pub async fn closed(&mut self, limit: Duration) -> Closed {
        let mut events = Vec::new();
        let r = tokio::time::timeout(limit, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap();
                        self.seen.push(v.clone());
                        events.push(v);
                    }
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .expect("timed out waiting for the close");
        Closed {
            code: r,
            events_before: events,
        }
    }

    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(
            WAIT,
            self.ws
                .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::Normal,
                    reason: "bye".into(),
                })),
        )
        .await;
    }
}

/// Checks R2–R5 on one turn's events (they end with the terminal event).
pub fn check_turn(events: &[Value]) {
    assert_eq!(events[0]["type"], "turn_started", "{events:?}");
    let turn_id = events[0]["turn_id"].clone();
    for e in events {
        assert_eq!(e["turn_id"], turn_id, "event of another turn: {e}");
    }
    let terminal = events.last().unwrap();
    if terminal["type"] == "final_answer" {
        let tokens: Vec<&Value> = events.iter().filter(|e| e["type"] == "token").collect();
        for (i, t) in tokens.iter().enumerate() {
            assert_eq!(t["index"], i as u64, "token index gap: {t}");
        }
        let concat: String = tokens
            .iter()
            .map(|t| t["content"].as_str().unwrap())
            .collect();
        assert_eq!(terminal["content"].as_str().unwrap(), concat);
        assert_eq!(terminal["token_count"], tokens.len() as u64);
        let calls: Vec<&Value> = events.iter().filter(|e| e["type"] == "tool_call").collect();
        let results: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "tool_result")
            .collect();
        assert_eq!(calls.len(), results.len());
        for c in calls {
            assert_eq!(
                results
                    .iter()
                    .filter(|r| r["call_id"] == c["call_id"])
                    .count(),
                1
            );
        }
    }
}

pub fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// Reads a refused handshake: status and JSON body.
pub async fn refused(
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> (u16, Value) {
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            assert_eq!(
                resp.headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok()),
                Some("application/json"),
                "refusal must be JSON"
            );
            let body: Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or(b"null")).unwrap();
            (status, body)
        }
        Ok(_) => panic!("expected a refusal, the upgrade succeeded"),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
    }
}

// ---------------------------------------------------------------- hand-made tokens
// The server's `mint_token` only makes good tokens; the refusal tests need bad ones.

/// Seconds since the epoch, for hand-made `exp` claims.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token over any claims, signed with `alg` and `secret`.
pub fn sign(secret: &str, alg: jsonwebtoken::Algorithm, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// An HS256 token over any claims.
pub fn hs256(secret: &str, claims: &Value) -> String {
    sign(secret, jsonwebtoken::Algorithm::HS256, claims)
}

/// An unsigned `alg: none` token for `user`, valid for an hour.
pub fn alg_none(user: &str) -> String {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(json!({"sub": user, "exp": now() + 3600})
            .to_string()
            .as_bytes())
    )
}
