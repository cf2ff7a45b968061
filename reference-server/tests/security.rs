//! Hostile and broken clients against a real server on 127.0.0.1:0: every kind of bad token on every
//! way of presenting one (handshake header, `token`/`api_key` query, first message, REST), tokens kept
//! out of the logs, malformed and oversized frames sent as raw bytes, too many sockets from one user,
//! the rate limit. Every test ends by checking that a well-behaved client still gets a normal turn and
//! that no server task panicked.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::SinkExt;
use reference_server::Config;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use common::{alg_none, check_turn, hs256, now, refused, server, Client, Srv, WAIT};

// ---------------------------------------------------------------------------------------------
// Process-wide instruments: captured log output and a count of panics in server tasks.

/// Everything the tracing subscriber wrote, at trace level for every target.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
/// Panics on tokio worker threads: the server's tasks run there (the tests use the multi-thread
/// runtime), while test assertions run on the test's own thread and are not counted.
static SERVER_PANICS: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn instruments() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = SharedBuf(buf.clone());
        // Trace for every target: the server logs its requests at info, and anything a dependency
        // might log about a request (headers, URIs, frames) shows up at debug or trace.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("no other global subscriber in this test binary");
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some("tokio-runtime-worker") {
                SERVER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
        buf
    });
}

fn logs() -> String {
    let buf = LOGS.get().expect("instruments() ran");
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

async fn start(config: Config) -> Srv {
    instruments();
    server(config).await
}

/// A fresh user and session, a full turn, and no panicked server task so far.
async fn assert_still_serving(srv: &Srv) {
    let user = format!("healthy-{}", uuid::Uuid::new_v4().simple());
    let (_, mut c) = srv.new_chat(&user).await;
    c.send_message("still there? #tool").await;
    let events = c.turn().await;
    check_turn(&events);
    assert_eq!(events.last().unwrap()["type"], "final_answer", "{events:?}");
    c.close().await;
    assert_eq!(
        SERVER_PANICS.load(Ordering::SeqCst),
        0,
        "a server task panicked (see the test output)"
    );
}

// ---------------------------------------------------------------------------------------------
// Bad tokens.

/// A bad credential and the code every channel must answer it with.
struct BadToken {
    name: &'static str,
    token: String,
    /// `AUTH_INVALID`, `AUTH_EXPIRED` or `SESSION_FORBIDDEN`.
    code: &'static str,
}

/// The cases of section 3, for a session owned by `owner` on `srv`.
fn bad_tokens(srv: &Srv, owner: &str) -> Vec<BadToken> {
    let secret = srv.handle.jwt_secret();
    let exp = now() + 3600;
    vec![
        BadToken {
            name: "wrong signature",
            token: hs256("some-other-secret", &json!({"sub": owner, "exp": exp})),
            code: "AUTH_INVALID",
        },
        BadToken {
            name: "alg none",
            token: alg_none(owner),
            code: "AUTH_INVALID",
        },
        BadToken {
            name: "expired",
            token: hs256(secret, &json!({"sub": owner, "exp": now() - 30})),
            code: "AUTH_EXPIRED",
        },
        BadToken {
            name: "no exp",
            token: hs256(secret, &json!({"sub": owner})),
            code: "AUTH_INVALID",
        },
        // RFC 7519 §4.1.5: not to be accepted before `nbf` (an hour ahead, far beyond the leeway).
        BadToken {
            name: "not valid yet (nbf)",
            token: hs256(
                secret,
                &json!({"sub": owner, "exp": exp + 3600, "nbf": now() + 3600}),
            ),
            code: "AUTH_INVALID",
        },
        BadToken {
            name: "no sub",
            token: hs256(secret, &json!({"exp": exp})),
            code: "AUTH_INVALID",
        },
        BadToken {
            name: "garbage",
            token: "not.a.jwt".into(),
            code: "AUTH_INVALID",
        },
        BadToken {
            name: "another user's token",
            token: srv.token("intruder"),
            code: "SESSION_FORBIDDEN",
        },
    ]
}

fn http_status(code: &str) -> u16 {
    if code == "SESSION_FORBIDDEN" {
        403
    } else {
        401
    }
}

/// A refusal names the problem and never echoes the credential.
fn assert_refusal(case: &BadToken, how: &str, status: u16, body: &Value) {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (http_status(case.code), Some(case.code)),
        "{} via {how}: {body}",
        case.name
    );
    assert!(
        !body.to_string().contains(&case.token),
        "{} via {how}: the refusal echoes the token: {body}",
        case.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_at_the_handshake_header_and_query() {
    let srv = start(Config::default()).await;
    let session = srv.create_session("owner").await;
    for case in bad_tokens(&srv, "owner") {
        let mut req = srv.ws_path(&session).into_client_request().unwrap();
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            format!("Bearer {}", case.token).parse().unwrap(),
        );
        let (status, body) = refused(req).await;
        assert_refusal(&case, "Authorization header", status, &body);
        for param in ["token", "api_key"] {
            let url = format!("{}?{param}={}", srv.ws_path(&session), case.token);
            let (status, body) = refused(url.into_client_request().unwrap()).await;
            assert_refusal(&case, &format!("?{param}="), status, &body);
        }
    }
    // An empty bearer header is a presented (and invalid) credential, not "no credentials".
    let mut req = srv.ws_path(&session).into_client_request().unwrap();
    req.headers_mut()
        .insert(http::header::AUTHORIZATION, "Bearer ".parse().unwrap());
    let (status, body) = refused(req).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("AUTH_INVALID"))
    );
    // A bad header token is not rescued by a good query token: the header wins.
    let url = format!("{}?token={}", srv.ws_path(&session), srv.token("owner"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        http::header::AUTHORIZATION,
        "Bearer not.a.jwt".parse().unwrap(),
    );
    assert_eq!(refused(req).await.0, 401);
    assert_eq!(srv.status().await["active_connections"], 0);
    assert_still_serving(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_at_the_handshake_means_first_message_auth_and_nothing_else() {
    let srv = start(Config::default()).await;
    let session = srv.create_session("owner").await;
    let mut c = srv.connect_query(&session, "").await;
    // Nothing is served before `auth`: not a ping, not a message, not a reply.
    for frame in [
        json!({"type": "ping", "nonce": 1}),
        json!({"type": "message", "content": "let me in"}),
        json!({"type": "cancel"}),
        json!({"type": "auth"}),
    ] {
        c.send_json(frame).await;
        c.expect_error("AUTH_REQUIRED").await;
    }
    c.send_text("{not json").await;
    c.expect_error("AUTH_REQUIRED").await;
    assert!(c.seen.iter().all(|e| e["type"] == "error"), "{:?}", c.seen);
    assert_eq!(srv.status().await["sessions"], 1);
    c.close().await;
    assert_still_serving(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_in_the_first_message_get_auth_error_and_a_close_code() {
    let srv = start(Config::default()).await;
    let session = srv.create_session("owner").await;
    let mut cases = bad_tokens(&srv, "owner");
    cases.push(BadToken {
        name: "empty token",
        token: String::new(),
        code: "AUTH_INVALID",
    });
    for case in cases {
        let mut c = srv.connect_query(&session, "").await;
        c.send_json(json!({"type": "auth", "token": case.token}))
            .await;
        let ev = c.next_event().await;
        assert_eq!(
            (ev["type"].as_str(), ev["code"].as_str()),
            (Some("auth_error"), Some(case.code)),
            "{}: {ev}",
            case.name
        );
        assert!(
            case.token.is_empty() || !ev.to_string().contains(&case.token),
            "{}: the auth_error echoes the token",
            case.name
        );
        let closed = c.closed(WAIT).await;
        let expected = if case.code == "SESSION_FORBIDDEN" {
            4403
        } else {
            4401
        };
        assert_eq!(closed.code, Some(expected), "{}: {closed:?}", case.name);
        assert!(closed.events_before.is_empty(), "{}: {closed:?}", case.name);
    }
    assert_still_serving(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_on_rest() {
    let srv = start(Config::default()).await;
    let session = srv.create_session("owner").await;
    let get = srv.url(&format!("/api/v1/sessions/{session}"));
    let cases = bad_tokens(&srv, "owner");
    for case in &cases {
        let r = srv
            .http
            .get(&get)
            .bearer_auth(&case.token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(
            r.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        assert_refusal(case, "REST GET", status, &r.json().await.unwrap());
        if case.code != "SESSION_FORBIDDEN" {
            let r = srv
                .http
                .post(srv.url("/api/v1/sessions"))
                .bearer_auth(&case.token)
                .json(&json!({"title": "nope"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            assert_refusal(case, "REST POST", status, &r.json().await.unwrap());
        }
    }
    // No header at all; and a query token is no REST credential (it would end up in access logs).
    let r = srv.http.get(&get).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = srv
        .http
        .get(format!("{get}?token={}", srv.token("owner")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // An admin endpoint with a valid non-admin token.
    let r = srv
        .http
        .post(srv.url("/api/v1/admin/broadcast"))
        .bearer_auth(srv.token("owner"))
        .json(&json!({"content": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Only the owner's session exists: no refused call created one.
    assert_eq!(srv.status().await["sessions"], 1);
    assert_still_serving(&srv).await;
}

// ---------------------------------------------------------------------------------------------
// Raw sockets: requests and frames that no well-behaved library would send. They also keep the
// log test honest, since these clients log nothing of their own.

/// Sends `request` and reads the whole response (the request asks the server to close).
async fn raw_http(srv: &Srv, request: String) -> String {
    let mut s = TcpStream::connect(srv.handle.local_addr()).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("response timed out")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens a WebSocket by hand; returns the stream positioned after the 101 response.
async fn raw_upgrade(srv: &Srv, path_and_query: &str, extra_headers: &str) -> TcpStream {
    let mut s = TcpStream::connect(srv.handle.local_addr()).await.unwrap();
    let req = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n",
        srv.handle.local_addr()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Byte by byte up to the blank line, so no frame bytes are consumed with the headers.
    let mut head = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !head.ends_with(b"\r\n\r\n") {
            head.push(s.read_u8().await.expect("upgrade response"));
        }
    })
    .await
    .expect("upgrade response timed out");
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// A client frame: FIN set, `opcode`, masked unless told otherwise, `declared_len` in the header
/// (normally the payload's length).
fn frame(opcode: u8, payload: &[u8], masked: bool, declared_len: u64) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    if declared_len < 126 {
        f.push(mask_bit | declared_len as u8);
    } else if declared_len <= u16::MAX as u64 {
        f.push(mask_bit | 126);
        f.extend_from_slice(&(declared_len as u16).to_be_bytes());
    } else {
        f.push(mask_bit | 127);
        f.extend_from_slice(&declared_len.to_be_bytes());
    }
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// How the server ended a raw socket.
#[derive(Debug, PartialEq)]
enum RawEnd {
    /// A close frame with this code.
    Close(u16),
    /// The TCP stream ended (or was reset) without a close frame.
    Dropped,
}

/// One server frame (servers do not mask): opcode and payload, or `None` at the end of the stream.
async fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.ok()?;
    let len = match h[1] & 0x7f {
        126 => s.read_u16().await.ok()? as usize,
        127 => s.read_u64().await.ok()? as usize,
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    Some((h[0] & 0x0f, payload))
}

/// Reads server frames until a close frame or the end of the stream; text frames are returned
/// alongside.
async fn raw_end(s: &mut TcpStream) -> (RawEnd, Vec<String>) {
    let mut texts = Vec::new();
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match read_frame(s).await {
                None => return RawEnd::Dropped,
                Some((0x1, payload)) => texts.push(String::from_utf8_lossy(&payload).into_owned()),
                Some((0x8, payload)) if payload.len() >= 2 => {
                    return RawEnd::Close(u16::from_be_bytes([payload[0], payload[1]]))
                }
                Some((0x8, _)) => return RawEnd::Close(1005),
                Some(_) => {}
            }
        }
    })
    .await
    .expect("the server neither closed nor dropped the socket in time");
    (end, texts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_logs() {
    let srv = start(Config::default()).await;
    let session = srv.create_session("owner").await;
    let addr = srv.handle.local_addr();
    let (header_token, query_token, key_token, message_token, bad_token) = (
        srv.token("owner"),
        srv.token("owner"),
        srv.token("owner"),
        srv.token("owner"),
        hs256("wrong", &json!({"sub": "owner", "exp": now() + 60})),
    );
    // Header and query on the WebSocket handshake, a first-message token, a refused query token.
    let path = format!("/api/v1/chat/ws/{session}");
    let mut a = raw_upgrade(
        &srv,
        &path,
        &format!("Authorization: Bearer {header_token}\r\n"),
    )
    .await;
    let mut b = raw_upgrade(&srv, &format!("{path}?token={query_token}"), "").await;
    let mut c = raw_upgrade(&srv, &format!("{path}?api_key={key_token}"), "").await;
    let mut d = raw_upgrade(&srv, &path, "").await;
    let auth = json!({"type": "auth", "token": message_token}).to_string();
    d.write_all(&frame(0x1, auth.as_bytes(), true, auth.len() as u64))
        .await
        .unwrap();
    for s in [&mut a, &mut b, &mut c, &mut d] {
        s.write_all(&frame(0x8, &1000u16.to_be_bytes(), true, 2))
            .await
            .unwrap();
        let (end, texts) = raw_end(s).await;
        assert_eq!(end, RawEnd::Close(1000), "{texts:?}");
        assert!(
            texts.iter().any(|t| t.contains("\"connected\"")),
            "{texts:?}"
        );
    }
    let refused = raw_http(
        &srv,
        format!(
            "GET {path}?token={bad_token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade, close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        ),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    // REST with a header token, and with a token in the query string (ignored, but logged?).
    let rest = raw_http(
        &srv,
        format!(
            "GET /api/v1/sessions/{session}?token={query_token} HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {header_token}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    // The request log line is written once the handler returns; the refusal above returned long ago
    // and the socket tasks log as they end, which the close handshakes above waited for.
    let logs = logs();
    assert!(
        logs.contains(&path),
        "the request log should name the path {path}; captured:\n{logs}"
    );
    let rest_path = format!("/api/v1/sessions/{session}");
    assert!(
        logs.lines()
            .any(|l| l.contains(&format!("path={rest_path} ")) && l.contains("status=200")),
        "the request log should name the REST path {rest_path}; captured:\n{logs}"
    );
    for (what, t) in [
        ("header token", &header_token),
        ("query token", &query_token),
        ("api_key token", &key_token),
        ("first-message token", &message_token),
        ("refused token", &bad_token),
    ] {
        assert!(!logs.contains(t.as_str()), "the {what} appears in the logs");
        // The signature alone is the secret part; it must not appear either.
        let sig = t.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(sig),
            "the {what}'s signature appears in the logs"
        );
    }
    assert_still_serving(&srv).await;
}

// ---------------------------------------------------------------------------------------------
// Frames.

fn small_limits() -> Config {
    Config {
        max_message_bytes: 1024,
        hard_max_message_bytes: 4096,
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_get_an_error_then_1009() {
    let srv = start(small_limits()).await;
    let (_, mut c) = srv.new_chat("big").await;
    // Over the soft limit: an error, and the connection stays usable.
    c.send_message(&"x".repeat(2000)).await;
    c.expect_error("MESSAGE_TOO_LARGE").await;
    c.send_json(json!({"type": "ping", "nonce": 7})).await;
    assert_eq!(c.expect_type("pong").await["nonce"], 7);
    // Over the hard limit: close 1009 and no event.
    c.send_message(&"y".repeat(5000)).await;
    let closed = c.closed(WAIT).await;
    assert_eq!(closed.code, Some(1009), "{closed:?}");
    assert!(closed.events_before.is_empty(), "{closed:?}");
    // A header that merely declares 2^40 bytes is refused without waiting for them.
    let session = srv.create_session("big").await;
    let mut s = raw_upgrade(
        &srv,
        &format!("/api/v1/chat/ws/{session}?token={}", srv.token("big")),
        "",
    )
    .await;
    s.write_all(&frame(0x1, b"", true, 1 << 40)).await.unwrap();
    let (end, texts) = raw_end(&mut s).await;
    assert_eq!(end, RawEnd::Close(1009), "{texts:?}");
    assert_still_serving(&srv).await;
}

/// Opens an authenticated raw socket and consumes the server's `connected` frame.
async fn raw_connected(srv: &Srv, user: &str) -> TcpStream {
    let session = srv.create_session(user).await;
    let mut s = raw_upgrade(
        srv,
        &format!("/api/v1/chat/ws/{session}?token={}", srv.token(user)),
        "",
    )
    .await;
    let (opcode, body) = tokio::time::timeout(WAIT, read_frame(&mut s))
        .await
        .expect("no connected event in time")
        .expect("the socket ended before the connected event");
    assert_eq!(opcode, 0x1, "the first server frame is a text frame");
    assert!(String::from_utf8_lossy(&body).contains("\"connected\""));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_end_the_connection_and_nothing_else() {
    let srv = start(Config::default()).await;
    // RFC 6455 7.4.1: 1007 for data inconsistent with the message type, 1002 for a protocol error.
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "invalid UTF-8 in a text frame",
            frame(0x1, &[0xc3, 0x28, 0xff], true, 3),
            1007,
        ),
        (
            "an unmasked client frame",
            frame(0x1, b"{\"type\":\"ping\"}", false, 15),
            1002,
        ),
        ("a reserved opcode", frame(0x3, b"x", true, 1), 1002),
        (
            "reserved bits set",
            {
                let mut f = frame(0x1, b"{}", true, 2);
                f[0] |= 0x70;
                f
            },
            1002,
        ),
        (
            "a fragmented control frame",
            {
                let mut f = frame(0x9, b"p", true, 1);
                f[0] &= 0x7f;
                f
            },
            1002,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut s = raw_connected(&srv, "raw").await;
        s.write_all(&bytes).await.unwrap();
        let (end, texts) = raw_end(&mut s).await;
        // The server fails the connection with the close code that names the violation (RFC 6455
        // says it SHOULD); it must not answer the frame as if it were a message.
        assert_eq!(end, RawEnd::Close(code), "{what}");
        assert!(texts.is_empty(), "{what}: the server answered {texts:?}");
    }
    assert_still_serving(&srv).await;
}

// ---------------------------------------------------------------------------------------------
// Connection and rate limits.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_cannot_hog_connections() {
    let srv = start(Config {
        max_connections_per_user: 4,
        ..Config::default()
    })
    .await;
    let session = srv.create_session("hog").await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(srv.connect(&session, "hog").await);
    }
    // Every further attempt, header or query, is refused with a JSON 429 ...
    for _ in 0..3 {
        let (status, body) = refused(
            format!("{}?token={}", srv.ws_path(&session), srv.token("hog"))
                .into_client_request()
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (429, Some("TOO_MANY_CONNECTIONS")),
            "{body}"
        );
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // ... while the sockets it holds keep working, and other users are served.
    held[0].send_json(json!({"type": "ping", "nonce": 1})).await;
    assert_eq!(held[0].expect_type("pong").await["nonce"], 1);
    assert_eq!(srv.status().await["active_connections"], 4);
    assert_still_serving(&srv).await;
    for mut c in held {
        c.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_drops_a_flood_and_spares_others() {
    let (rate, burst) = (2u32, 5u32);
    let srv = start(Config {
        rate_limit_per_sec: rate,
        rate_burst: burst,
        ..Config::default()
    })
    .await;
    let (_, mut flood) = srv.new_chat("flooder").await;
    let (_, mut calm) = srv.new_chat("calm").await;
    let sent = 30u64;
    let started = std::time::Instant::now();
    for n in 0..sent {
        flood.send_json(json!({"type": "ping", "nonce": n})).await;
    }
    // Every ping is answered exactly once: a pong, or RATE_LIMITED for a dropped one.
    let (mut pongs, mut limited) = (0u64, 0u64);
    for _ in 0..sent {
        let ev = flood.next_event().await;
        match (ev["type"].as_str(), ev["code"].as_str()) {
            (Some("pong"), _) => pongs += 1,
            (Some("error"), Some("RATE_LIMITED")) => limited += 1,
            _ => panic!("unexpected event in the flood: {ev}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst always passes; refills during the flood may add a few more, bounded by the rate.
    let ceiling = burst as u64 + (elapsed * rate as f64).ceil() as u64 + 1;
    assert!(
        pongs >= burst as u64 && pongs <= ceiling,
        "{pongs} pongs, {limited} limited, {elapsed:.2}s"
    );
    assert_eq!(pongs + limited, sent);
    assert!(limited > 0);
    // The flooder's socket stays open, and another user's bucket is untouched.
    for n in 0..burst {
        calm.send_json(json!({"type": "ping", "nonce": n})).await;
        assert_eq!(calm.expect_type("pong").await["nonce"], n);
    }
    assert_still_serving(&srv).await;
    flood.close().await;
    calm.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_does_not_stall_the_server() {
    // A client that asks for a long stream and never reads: its socket backs up, others are served.
    let srv = start(Config::default()).await;
    let session = srv.create_session("stalled").await;
    let url = format!("{}?token={}", srv.ws_path(&session), srv.token("stalled"));
    let mut stalled = Client::connect(url.into_client_request().unwrap())
        .await
        .unwrap();
    stalled
        .ws
        .send(Message::text(
            json!({"type": "message", "content": "#long=200000"}).to_string(),
        ))
        .await
        .unwrap();
    assert_still_serving(&srv).await;
    drop(stalled);
    assert_still_serving(&srv).await;
}

// ---------------------------------------------------------------------------------------------
// Slow request heads (slowloris) and settings no deadline can hold.

/// Opens a connection and sends the start of a request head that never ends.
async fn slow_head(srv: &Srv) -> TcpStream {
    let mut s = TcpStream::connect(srv.handle.local_addr()).await.unwrap();
    s.write_all(b"GET /api/v1/chat/ws/slow HTTP/1.1\r\nHost: slow\r\n")
        .await
        .unwrap();
    s
}

/// Reads until the server closes the connection (bounded by `WAIT`); whatever it sent first (a
/// 408 answer, say) is returned.
async fn until_closed(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: the server kept the connection open for {WAIT:?}"));
    out
}

/// Still open: nothing to read yet and no end of stream (checked without waiting).
fn still_open(s: &TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_cut_and_a_fresh_client_is_still_served() {
    let srv = start(Config {
        header_read_timeout: std::time::Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let mut s = slow_head(&srv).await;
    // The attack's pace: one more header line every 100 ms, for far longer than the timeout
    // (bounded: 200 lines). The head is never completed.
    let (mut rd, mut wr) = s.split();
    let trickle = async {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        for i in 0..200 {
            tick.tick().await;
            if wr
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let mut buf = [0u8; 1024];
    let closed = async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        _ = closed => {}
        _ = trickle => panic!("the trickled head was never cut"),
        _ = tokio::time::sleep(WAIT) => panic!("the slow head was still open after {WAIT:?}"),
    }
    drop(s);
    assert_still_serving(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_unfinished_heads_close_the_oldest_and_fresh_clients_are_still_served() {
    // A long header timeout: here it is the cap that cuts, not the clock.
    let srv = start(Config {
        header_read_timeout: std::time::Duration::from_secs(60),
        max_pending_heads: 4,
        ..Config::default()
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..5 {
        slow.push(slow_head(&srv).await);
    }
    // The fifth made the first one, the oldest, give way.
    until_closed(&mut slow[0], "the oldest unfinished head").await;
    for (i, s) in slow.iter().enumerate().skip(1) {
        assert!(still_open(s), "unfinished head {i} was closed too");
    }
    // A client that sends its head promptly is served while the slow ones still wait.
    let r = srv.http.get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_still_serving(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durations_no_deadline_can_hold_are_refused_at_startup() {
    instruments();
    let huge = std::time::Duration::from_secs(9_223_372_036_854_775_808);
    for (name, config) in [
        (
            "idle_timeout",
            Config {
                idle_timeout: huge,
                ..Config::default()
            },
        ),
        (
            "auth_timeout",
            Config {
                auth_timeout: huge,
                ..Config::default()
            },
        ),
        (
            "reply_timeout",
            Config {
                reply_timeout: huge,
                ..Config::default()
            },
        ),
        (
            "header_read_timeout",
            Config {
                header_read_timeout: huge,
                ..Config::default()
            },
        ),
    ] {
        let e = match reference_server::start(config).await {
            Ok(_) => panic!("{name} = 2^63 s was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains(name) && e.contains("more than the maximum of 365 days"),
            "{name}: {e}"
        );
    }
    // The longest allowed value serves a whole session without a panicking socket task.
    let srv = start(Config {
        idle_timeout: reference_server::config::MAX_DURATION,
        auth_timeout: reference_server::config::MAX_DURATION,
        ..Config::default()
    })
    .await;
    assert_still_serving(&srv).await;
}

// ---------------------------------------------------------------------------------------------
// Origin allow-list.

/// An upgrade request for `session` as `user` with this `Origin` header (`None`: none).
fn with_origin(
    srv: &Srv,
    session: &str,
    user: &str,
    origin: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = srv.ws_path(session).into_client_request().unwrap();
    req.headers_mut().insert(
        http::header::AUTHORIZATION,
        format!("Bearer {}", srv.token(user)).parse().unwrap(),
    );
    if let Some(o) = origin {
        req.headers_mut()
            .insert(http::header::ORIGIN, o.parse().unwrap());
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_refused_only_with_an_allow_list() {
    // Off by default: non-browser clients (and the bundled suite) send any Origin or none.
    let srv = start(Config::default()).await;
    let session = srv.create_session("owner").await;
    let mut c = common::Client::connect(with_origin(
        &srv,
        &session,
        "owner",
        Some("https://evil.example"),
    ))
    .await
    .expect("accepted without an allow-list");
    c.expect_type("connected").await;
    c.close().await;

    let srv = start(Config {
        allowed_origins: vec!["https://app.example.com".into()],
        ..Config::default()
    })
    .await;
    let session = srv.create_session("owner").await;
    let (status, body) = refused(with_origin(
        &srv,
        &session,
        "owner",
        Some("https://evil.example"),
    ))
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("ORIGIN_NOT_ALLOWED")),
        "{body}"
    );
    for origin in [
        Some("https://app.example.com"),
        Some("https://APP.example.com"),
        None,
    ] {
        let mut c = common::Client::connect(with_origin(&srv, &session, "owner", origin))
            .await
            .unwrap_or_else(|e| panic!("origin {origin:?} refused: {e}"));
        c.expect_type("connected").await;
        c.close().await;
    }
    assert_still_serving(&srv).await;
}

// ---------------------------------------------------------------------------------------------
// Behaviour PROTOCOL.md states about frames and closes (section 7, section 8).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_apply_to_the_whole_message_not_to_each_fragment() {
    let srv = start(Config::default()).await;
    let mut s = raw_connected(&srv, "fragments").await;
    // Two fragments of 40,000 bytes: each under the 65,536-byte soft limit, the message over it.
    let piece = vec![b'x'; 40_000];
    let mut first = frame(0x1, &piece, true, piece.len() as u64);
    first[0] &= 0x7f; // not FIN
    let last = frame(0x0, &piece, true, piece.len() as u64);
    s.write_all(&first).await.unwrap();
    s.write_all(&last).await.unwrap();
    let (opcode, body) = tokio::time::timeout(WAIT, read_frame(&mut s))
        .await
        .expect("an answer in time")
        .expect("the socket stays open");
    assert_eq!(opcode, 0x1);
    let ev: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ev["code"], "MESSAGE_TOO_LARGE", "{ev}");
    assert!(
        ev["message"].as_str().unwrap().contains("80000 bytes"),
        "{ev}"
    );
    assert_still_serving(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_close_is_answered_with_its_own_code_and_reason() {
    let srv = start(Config::default()).await;
    for (code, reason) in [(1000u16, ""), (1001, "going away"), (4321, "bye")] {
        let mut s = raw_connected(&srv, "closer").await;
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        s.write_all(&frame(0x8, &payload, true, payload.len() as u64))
            .await
            .unwrap();
        let answer = tokio::time::timeout(WAIT, async {
            loop {
                match read_frame(&mut s).await {
                    Some((0x8, p)) => break Some(p),
                    Some(_) => continue,
                    None => break None,
                }
            }
        })
        .await
        .expect("the close is answered in time")
        .expect("a close frame, not a dropped connection");
        assert_eq!(answer, payload, "close {code} {reason:?}");
    }
    assert_still_serving(&srv).await;
}
