//! The replay server: accepts WebSocket upgrades on a real socket and plays recorded connections.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::exchange::{self, Head, Prefixed, ReadError};
use super::Pace;
use crate::record::transcript::{Dir, HandshakeRec, Kind, Record, TranscriptFile, MAIN};

/// Bound on the upgrade of one connection: a client that never finishes it must not pin a task.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Close reasons are limited to 123 bytes by RFC 6455.
const MAX_REASON: usize = 123;
/// The close code of a mismatch (policy violation).
pub const MISMATCH_CLOSE: u16 = 1008;

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub bind: SocketAddr,
    pub pace: Pace,
    /// Extra time a client frame may take beyond its recorded gap; also how long a connection that ran
    /// out of records stays open.
    pub slack: Duration,
}

/// One servable connection of one recording.
#[derive(Debug)]
struct Slot {
    file: usize,
    conn: String,
    path: String,
    used: bool,
}

/// One recorded HTTP exchange, served once per round.
#[derive(Debug)]
struct HttpSlot {
    file: usize,
    /// Index into the file's records.
    record: usize,
    method: String,
    path: String,
    used: bool,
}

/// What the replay answers to a plain HTTP request.
#[derive(Debug, PartialEq)]
enum HttpAnswer {
    /// The recorded response: (file, record index).
    Recorded(usize, usize),
    /// No recorded exchange fits; the status and message name what was expected.
    Unexpected(u16, String),
}

struct Shared {
    transcripts: Vec<TranscriptFile>,
    slots: Mutex<Vec<Slot>>,
    http: Mutex<Vec<HttpSlot>>,
    opts: ReplayOptions,
    problems: Mutex<Vec<String>>,
}

impl Shared {
    fn problem(&self, p: String) {
        self.problems
            .lock()
            .expect("the problems lock is never poisoned")
            .push(p);
    }

    /// Chooses the recording of an upgrade to `path` (`docs/TRANSCRIPT.md`, "Choosing a transcript").
    fn pick(&self, path: &str) -> Option<(usize, String)> {
        let mut slots = self.slots.lock().expect("the slots lock is never poisoned");
        let single_file = self.transcripts.len() == 1;
        let fits = |s: &Slot| single_file || paths_match(&s.path, path);
        let exact = |s: &Slot| single_file || s.path == path;
        // Prefer an unused exact match, then an unused wildcard match; when all were served, start over
        // (a retried scenario connects again).
        let pick = slots
            .iter()
            .position(|s| !s.used && exact(s))
            .or_else(|| slots.iter().position(|s| !s.used && fits(s)))
            .or_else(|| {
                for s in slots.iter_mut().filter(|s| fits(s)) {
                    s.used = false;
                }
                slots
                    .iter()
                    .position(exact)
                    .or_else(|| slots.iter().position(fits))
            })?;
        slots[pick].used = true;
        Some((slots[pick].file, slots[pick].conn.clone()))
    }
}

impl Shared {
    /// Chooses the recorded exchange answering `method path` (`docs/TRANSCRIPT.md`, "HTTP
    /// requests"): each file's exchanges are served in recorded order, so only the next unserved
    /// one of each file is a candidate; the first candidate with the same method and path answers.
    /// When every exchange was served, the order starts over (a retried scenario asks again).
    fn pick_http(&self, method: &str, path: &str) -> HttpAnswer {
        let mut slots = self.http.lock().expect("the http lock is never poisoned");
        if slots.is_empty() {
            return HttpAnswer::Unexpected(
                404,
                format!("replay: the recording has no HTTP exchange, got {method} {path}"),
            );
        }
        let heads = |slots: &[HttpSlot]| -> Vec<usize> {
            let mut seen = Vec::new();
            let mut out = Vec::new();
            for (i, s) in slots.iter().enumerate() {
                if !s.used && !seen.contains(&s.file) {
                    seen.push(s.file);
                    out.push(i);
                }
            }
            out
        };
        let mut candidates = heads(&slots);
        if candidates.is_empty() {
            for s in slots.iter_mut() {
                s.used = false;
            }
            candidates = heads(&slots);
        }
        // An exact path first; else one that differs only in id-like segments (a scenario that
        // asks for a fresh `${uuid}` sends another id than the recorded one).
        let exact = candidates
            .iter()
            .find(|&&i| slots[i].method == method && slots[i].path == path);
        let similar = || {
            candidates
                .iter()
                .find(|&&i| slots[i].method == method && same_but_ids(&slots[i].path, path))
        };
        if let Some(&i) = exact.or_else(similar) {
            slots[i].used = true;
            return HttpAnswer::Recorded(slots[i].file, slots[i].record);
        }
        let expected: Vec<String> = candidates
            .iter()
            .map(|&i| {
                let s = &slots[i];
                let t = &self.transcripts[s.file];
                format!(
                    "{} {} ({} seq {})",
                    s.method,
                    s.path,
                    t.path.display(),
                    t.records[s.record].seq
                )
            })
            .collect();
        HttpAnswer::Unexpected(
            409,
            format!(
                "replay: unexpected request {method} {path}: the recording expects {} next",
                expected.join(" or ")
            ),
        )
    }
}

/// A path segment that looks like a generated id (a UUID, a hex or numeric id): at least 8
/// characters of letters, digits, `-` and `_`, with at least one digit.
fn id_like(seg: &str) -> bool {
    seg.len() >= 8
        && seg.chars().any(|c| c.is_ascii_digit())
        && seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Two HTTP paths that have the same segments except where both hold an id.
fn same_but_ids(recorded: &str, actual: &str) -> bool {
    let a: Vec<&str> = recorded.split('/').collect();
    let b: Vec<&str> = actual.split('/').collect();
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x == y || (id_like(x) && id_like(y)))
}

/// Two paths match when they have the same segments, any segment that differs counting as a wildcard
/// (ids in paths change from run to run): the same number of segments and the same first segment.
fn paths_match(recorded: &str, actual: &str) -> bool {
    let a: Vec<&str> = recorded.trim_matches('/').split('/').collect();
    let b: Vec<&str> = actual.trim_matches('/').split('/').collect();
    a.len() == b.len() && a.first() == b.first()
}

pub struct ReplayServer;

/// A running replay server.
pub struct ReplayHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<Duration>>,
    task: JoinHandle<()>,
}

impl ReplayServer {
    /// Binds and starts serving `transcripts`.
    pub async fn start(
        transcripts: Vec<TranscriptFile>,
        opts: ReplayOptions,
    ) -> std::io::Result<ReplayHandle> {
        let listener = TcpListener::bind(opts.bind).await?;
        let addr = listener.local_addr()?;
        let mut slots = Vec::new();
        for (file, t) in transcripts.iter().enumerate() {
            for conn in t.connection_order() {
                let path = t
                    .handshake(&conn)
                    .map(|h| h.request.path.clone())
                    .unwrap_or_default();
                slots.push(Slot {
                    file,
                    conn,
                    path,
                    used: false,
                });
            }
        }
        let mut http = Vec::new();
        for (file, t) in transcripts.iter().enumerate() {
            for (record, r) in t.records.iter().enumerate() {
                if let Some(h) = &r.http {
                    http.push(HttpSlot {
                        file,
                        record,
                        method: h.request.method.to_ascii_uppercase(),
                        path: h.request.path.clone(),
                        used: false,
                    });
                }
            }
        }
        let shared = Arc::new(Shared {
            transcripts,
            slots: Mutex::new(slots),
            http: Mutex::new(http),
            opts,
            problems: Mutex::new(Vec::new()),
        });
        let (stop_tx, mut stop_rx) = oneshot::channel::<Duration>();
        let sh = shared.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            let grace = loop {
                tokio::select! {
                    g = &mut stop_rx => break g.unwrap_or(Duration::ZERO),
                    acc = listener.accept() => match acc {
                        Ok((stream, _)) => {
                            conns.spawn(handle(stream, sh.clone()));
                        }
                        Err(e) => sh.problem(format!("accept failed: {e}")),
                    },
                    // Reap finished connections so the set does not grow without bound.
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            };
            // Let connections that are still playing finish (the client is closing them), then stop.
            let _ =
                tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} })
                    .await;
            conns.abort_all();
        });
        Ok(ReplayHandle {
            addr,
            shared,
            stop: Some(stop_tx),
            task,
        })
    }
}

impl ReplayHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Problems found so far (mismatches, timeouts), one line each.
    pub fn problems(&self) -> Vec<String> {
        self.shared
            .problems
            .lock()
            .expect("the problems lock is never poisoned")
            .clone()
    }

    /// Stops accepting, gives open connections up to `grace` to finish, and returns every problem.
    pub async fn shutdown(mut self, grace: Duration) -> Vec<String> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(grace);
        }
        let _ = (&mut self.task).await;
        self.problems()
    }
}

impl Drop for ReplayHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error_response(status: u16, body: String) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r
}

/// Headers the WebSocket layer owns; recorded values of these are never replayed.
fn is_owned_header(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "connection"
            | "upgrade"
            | "sec-websocket-accept"
            | "sec-websocket-protocol"
            | "sec-websocket-extensions"
            | "content-length"
            | "transfer-encoding"
            | "date"
    )
}

fn copy_headers(from: &std::collections::BTreeMap<String, String>, to: &mut http::HeaderMap) {
    for (k, v) in from {
        if is_owned_header(k) {
            continue;
        }
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            to.insert(k, v);
        }
    }
}

// The callback's error type is tungstenite's `ErrorResponse` (an HTTP response); it is not ours to box.
#[allow(clippy::result_large_err)]
async fn handle(mut stream: TcpStream, shared: Arc<Shared>) {
    // The head decides: an upgrade goes to the WebSocket layer (with the bytes already read), any
    // other request is answered from the recorded HTTP exchanges.
    let (head, buf) =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange::read_head(&mut stream)).await {
            Ok(Ok(x)) => x,
            // A client that connects and leaves, or never finishes its head, is not the recording's problem.
            Ok(Err(ReadError::Eof | ReadError::Io(_))) | Err(_) => return,
            Ok(Err(e)) => {
                let body = exchange::error_body("BAD_REQUEST", &format!("replay: {e}"));
                let _ = exchange::respond(
                    &mut stream,
                    400,
                    Some("application/json"),
                    &body,
                    HANDSHAKE_TIMEOUT,
                )
                .await;
                return;
            }
        };
    if !head.is_upgrade() {
        serve_http(stream, head, buf, &shared).await;
        return;
    }
    let stream = Prefixed::new(buf, stream);
    let chosen: Arc<Mutex<Option<(usize, String)>>> = Arc::new(Mutex::new(None));
    let ch = chosen.clone();
    let sh = shared.clone();
    let callback = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let path = req.uri().path().to_owned();
        let Some((file, conn)) = sh.pick(&path) else {
            let msg = format!("replay: no recorded connection for path {path}");
            sh.problem(msg.clone());
            return Err(error_response(404, msg));
        };
        let hs: &HandshakeRec = sh.transcripts[file]
            .handshake(&conn)
            .expect("slots name recorded connections");
        if hs.response.status != 101 {
            // A recorded refusal is replayed as it was: status, headers, body.
            let mut r = error_response(
                hs.response.status,
                hs.response.body.clone().unwrap_or_default(),
            );
            copy_headers(&hs.response.headers, r.headers_mut());
            return Err(r);
        }
        if let Some(p) = &hs.response.subprotocol {
            let offered: Vec<String> = req
                .headers()
                .get_all("sec-websocket-protocol")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(',').map(|s| s.trim().to_owned()))
                .collect();
            if !offered.iter().any(|o| o == p) {
                let msg = format!(
                    "replay: the recording selected subprotocol '{p}', which the client did not offer (offered: {})",
                    if offered.is_empty() { "none".to_owned() } else { offered.join(", ") }
                );
                sh.problem(format!("{}: {msg}", sh.transcripts[file].path.display()));
                return Err(error_response(400, msg));
            }
            resp.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::try_from(p.as_str())
                    .expect("a negotiated subprotocol is a valid header value"),
            );
        }
        copy_headers(&hs.response.headers, resp.headers_mut());
        *ch.lock().expect("never poisoned") = Some((file, conn));
        Ok(resp)
    };
    let ws = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async(stream, callback),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        // Refusals were decided (and, when wrong, reported) in the callback; a client that gives up
        // mid-handshake is not the recording's problem.
        Ok(Err(_)) | Err(_) => return,
    };
    let Some((file, conn)) = chosen.lock().expect("never poisoned").take() else {
        return;
    };
    let t = &shared.transcripts[file];
    if let Err((seq, msg)) = play(ws, t, &conn, &shared.opts).await {
        let place = match seq {
            Some(s) => format!("seq {s}: "),
            None => String::new(),
        };
        shared.problem(format!(
            "{}: connection '{conn}': {place}{msg}",
            t.path.display()
        ));
    }
}

/// Answers one plain HTTP request with its recorded response (or an error naming what was
/// expected), then closes the connection.
async fn serve_http(mut stream: TcpStream, head: Head, buf: Vec<u8>, shared: &Shared) {
    if let Err(e) = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        exchange::skip_body(&mut stream, &head, &buf),
    )
    .await
    .unwrap_or(Err(ReadError::Eof))
    {
        shared.problem(format!(
            "HTTP {} {}: could not read the request body: {e}",
            head.method, head.path
        ));
        return;
    }
    let (status, content_type, body) = match shared.pick_http(&head.method, &head.path) {
        HttpAnswer::Recorded(file, record) => {
            let h = shared.transcripts[file].records[record]
                .http
                .as_ref()
                .expect("http slots name http records");
            (
                h.response.status,
                h.response.content_type.clone(),
                h.response.body.clone(),
            )
        }
        HttpAnswer::Unexpected(status, message) => {
            shared.problem(message.clone());
            let code = if status == 404 {
                "NOT_FOUND"
            } else {
                "CONFLICT"
            };
            (
                status,
                Some("application/json".to_owned()),
                exchange::error_body(code, &message),
            )
        }
    };
    // A client that went away before the answer is not the recording's problem.
    let _ = exchange::respond(
        &mut stream,
        status,
        content_type.as_deref(),
        &body,
        HANDSHAKE_TIMEOUT,
    )
    .await;
}

type Ws = WebSocketStream<Prefixed>;
type Mismatch = (Option<u64>, String);

fn cut_reason(s: &str) -> String {
    let mut end = s.len().min(MAX_REASON);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Plays one recorded connection. On a mismatch the connection is closed with 1008 and the reason.
async fn play(
    ws: Ws,
    t: &TranscriptFile,
    conn: &str,
    opts: &ReplayOptions,
) -> Result<(), Mismatch> {
    let (mut sink, mut stream) = ws.split();
    let disc = t.header.discriminator_pointer();
    let mut last_t = if conn == MAIN {
        0.0
    } else {
        t.header.connections.get(conn).map_or(0.0, |c| c.t_ms)
    };
    let fail = |seq: Option<u64>, msg: String| (seq, msg);
    let records: Vec<&Record> = t.records_of(conn).collect();
    // Client data frames read while pacing server frames, not yet matched; and whether the client's
    // side already ended.
    let mut early: std::collections::VecDeque<Message> = std::collections::VecDeque::new();
    let mut ended = false;
    let result: Result<bool, Mismatch> = async {
        for r in &records {
            let gap = Duration::from_secs_f64((r.t_ms - last_t).max(0.0) / 1000.0);
            last_t = r.t_ms;
            match r.dir {
                Dir::Received => {
                    if opts.pace == Pace::Recorded && !gap.is_zero() {
                        // Keep reading while waiting: the WebSocket layer answers the client's
                        // Pings only while the stream is read, and a data frame that comes early
                        // is kept for the `sent` record it belongs to.
                        let until = tokio::time::Instant::now() + gap;
                        while !ended {
                            tokio::select! {
                                _ = tokio::time::sleep_until(until) => break,
                                m = stream.next() => match m {
                                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                                    Some(Ok(m)) => early.push_back(m),
                                    None | Some(Err(_)) => ended = true,
                                },
                            }
                        }
                        if ended {
                            tokio::time::sleep_until(until).await;
                        }
                    }
                    let msg = match r.kind {
                        Kind::Text => Message::text(r.text.clone().unwrap_or_default()),
                        Kind::Binary => Message::binary(decode(r)),
                        Kind::Ping => Message::Ping(decode(r).into()),
                        // The WebSocket layer answers the client's pings itself.
                        Kind::Pong => continue,
                        Kind::Close => {
                            let c = r.close.clone().unwrap_or_default();
                            let frame = c.code.map(|code| CloseFrame {
                                code: CloseCode::from(code),
                                reason: c.reason.unwrap_or_default().into(),
                            });
                            let _ = sink.send(Message::Close(frame)).await;
                            drain(&mut stream, opts.slack).await;
                            return Ok(true);
                        }
                        // Drop the TCP connection without a close frame, as recorded.
                        Kind::End => return Ok(true),
                        // `records_of` leaves HTTP exchanges out; they are served by `serve_http`.
                        Kind::Http => continue,
                    };
                    sink.send(msg).await.map_err(|e| {
                        fail(
                            Some(r.seq),
                            format!("could not send the recorded frame: {e}"),
                        )
                    })?;
                }
                Dir::Sent => {
                    if matches!(r.kind, Kind::Ping | Kind::Pong | Kind::End | Kind::Http) {
                        continue;
                    }
                    let wait = gap + opts.slack;
                    let got = loop {
                        if let Some(m) = early.pop_front() {
                            break m;
                        }
                        if ended {
                            return Err(fail(
                                Some(r.seq),
                                format!(
                                    "expected {}, got the end of the connection",
                                    describe_record(r, &disc)
                                ),
                            ));
                        }
                        match tokio::time::timeout(wait, stream.next()).await {
                            Err(_) => {
                                return Err(fail(
                                    Some(r.seq),
                                    format!(
                                        "expected {} within {}, got nothing",
                                        describe_record(r, &disc),
                                        humantime::format_duration(wait)
                                    ),
                                ))
                            }
                            Ok(None) | Ok(Some(Err(_))) => {
                                return Err(fail(
                                    Some(r.seq),
                                    format!(
                                        "expected {}, got the end of the connection",
                                        describe_record(r, &disc)
                                    ),
                                ))
                            }
                            Ok(Some(Ok(
                                Message::Ping(_) | Message::Pong(_) | Message::Frame(_),
                            ))) => continue,
                            Ok(Some(Ok(m))) => break m,
                        }
                    };
                    if let Err(e) = compare(r, &got, &disc) {
                        return Err(fail(Some(r.seq), e));
                    }
                    if r.kind == Kind::Close {
                        // The WebSocket layer has answered the close; nothing more can be sent.
                        drain(&mut stream, opts.slack).await;
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }
    .await;
    match result {
        Ok(true) => Ok(()),
        Ok(false) => {
            // Out of records: the client may still close; another data frame is not in the recording.
            loop {
                let next = match early.pop_front() {
                    Some(m) => Ok(Some(Ok(m))),
                    None if ended => Ok(None),
                    None => tokio::time::timeout(opts.slack, stream.next()).await,
                };
                match next {
                    Err(_) => {
                        let _ = sink
                            .send(Message::Close(Some(CloseFrame {
                                code: CloseCode::Normal,
                                reason: "replay: end of the recording".into(),
                            })))
                            .await;
                        return Ok(());
                    }
                    Ok(None) | Ok(Some(Err(_))) => return Ok(()),
                    Ok(Some(Ok(Message::Close(_)))) => {
                        drain(&mut stream, opts.slack).await;
                        return Ok(());
                    }
                    Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {}
                    Ok(Some(Ok(m))) => {
                        let msg = format!(
                            "the recording has no more client frames, got {}",
                            describe_message(&m)
                        );
                        close_mismatch(&mut sink, &msg).await;
                        return Err(fail(records.last().map(|r| r.seq), msg));
                    }
                }
            }
        }
        Err((seq, msg)) => {
            let reason = match seq {
                Some(s) => format!("replay: seq {s}: {msg}"),
                None => format!("replay: {msg}"),
            };
            close_mismatch(&mut sink, &reason).await;
            Err((seq, msg))
        }
    }
}

async fn close_mismatch(sink: &mut futures_util::stream::SplitSink<Ws, Message>, reason: &str) {
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        sink.send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(MISMATCH_CLOSE),
            reason: cut_reason(reason).into(),
        }))),
    )
    .await;
}

/// Reads until the client finishes the close handshake (or `within` passes), so close replies are
/// flushed before the socket is dropped.
async fn drain(stream: &mut futures_util::stream::SplitStream<Ws>, within: Duration) {
    let _ = tokio::time::timeout(within, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

fn decode(r: &Record) -> Vec<u8> {
    r.base64
        .as_deref()
        .and_then(|b| B64.decode(b).ok())
        .unwrap_or_default()
}

fn short(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(80).collect::<String>())
    }
}

/// What a `sent` record asks of the client, for messages.
fn describe_record(r: &Record, disc: &str) -> String {
    match r.kind {
        Kind::Text => match r.json() {
            Some(v) => match v.pointer(disc) {
                Some(d) => format!("a JSON frame with {disc} = {d}"),
                None => format!("a JSON {} frame", json_type(&v)),
            },
            None => "a text frame".into(),
        },
        Kind::Binary => "a binary frame".into(),
        Kind::Close => "a close frame".into(),
        other => format!("a {other:?} frame").to_lowercase(),
    }
}

fn describe_message(m: &Message) -> String {
    match m {
        Message::Text(t) => format!("text {}", short(t.as_str())),
        Message::Binary(b) => format!("a binary frame of {} bytes", b.len()),
        Message::Close(Some(c)) => format!("close {}", u16::from(c.code)),
        Message::Close(None) => "a close frame".into(),
        Message::Ping(_) => "a ping".into(),
        Message::Pong(_) => "a pong".into(),
        Message::Frame(_) => "a raw frame".into(),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether a client frame matches a `sent` record (order is given by the caller; see
/// `docs/TRANSCRIPT.md`, "Matching a client frame").
fn compare(r: &Record, got: &Message, disc: &str) -> Result<(), String> {
    let want = || describe_record(r, disc);
    match (r.kind, got) {
        (Kind::Text, Message::Text(t)) => {
            let Some(rv) = r.json() else {
                // Non-JSON text: only the kind is compared.
                return Ok(());
            };
            let Ok(gv) = serde_json::from_str::<Value>(t.as_str()) else {
                return Err(format!(
                    "expected {}, got non-JSON text {}",
                    want(),
                    short(t.as_str())
                ));
            };
            match rv.pointer(disc) {
                Some(d) => {
                    if gv.pointer(disc) == Some(d) {
                        Ok(())
                    } else {
                        Err(format!("expected {}, got {}", want(), short(t.as_str())))
                    }
                }
                None => {
                    let same_type = json_type(&rv) == json_type(&gv);
                    let same_keys = match (&rv, &gv) {
                        (Value::Object(a), Value::Object(b)) => {
                            a.keys().collect::<Vec<_>>() == b.keys().collect::<Vec<_>>()
                        }
                        _ => true,
                    };
                    if same_type && same_keys {
                        Ok(())
                    } else {
                        Err(format!(
                            "expected {} with the recorded member names, got {}",
                            want(),
                            short(t.as_str())
                        ))
                    }
                }
            }
        }
        (Kind::Binary, Message::Binary(_)) | (Kind::Close, Message::Close(_)) => Ok(()),
        (_, m) => Err(format!("expected {}, got {}", want(), describe_message(m))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: Kind, text: Option<&str>) -> Record {
        Record {
            seq: 4,
            t_ms: 0.0,
            conn: None,
            dir: Dir::Sent,
            kind,
            text: text.map(str::to_owned),
            base64: None,
            close: None,
            error: None,
            truncated: None,
            http: None,
        }
    }

    #[test]
    fn matching_rules() {
        let r = rec(Kind::Text, Some(r#"{"type":"message","content":"a"}"#));
        assert!(compare(
            &r,
            &Message::text(r#"{"type":"message","content":"b","x":1}"#),
            "/type"
        )
        .is_ok());
        let e = compare(&r, &Message::text(r#"{"type":"cancel"}"#), "/type").unwrap_err();
        assert!(e.contains("/type = \"message\""), "{e}");
        assert!(compare(&r, &Message::text("nope"), "/type").is_err());
        assert!(compare(&r, &Message::binary(vec![1u8]), "/type").is_err());
        // No discriminator: same type and member names.
        let r = rec(Kind::Text, Some(r#"{"message":"hi","metadata":{}}"#));
        assert!(compare(
            &r,
            &Message::text(r#"{"metadata":{"a":1},"message":"yo"}"#),
            "/type"
        )
        .is_ok());
        assert!(compare(&r, &Message::text(r#"{"message":"yo"}"#), "/type").is_err());
        // Non-JSON text matches any text.
        let r = rec(Kind::Text, Some("{not json"));
        assert!(compare(&r, &Message::text("also not json"), "/type").is_ok());
        let r = rec(Kind::Close, None);
        assert!(compare(&r, &Message::Close(None), "/type").is_ok());
    }

    #[test]
    fn http_paths_differing_in_ids() {
        assert!(same_but_ids(
            "/api/v1/sessions/8eaeb7c4-324d-490a-a113-f4681ebc797a",
            "/api/v1/sessions/0b7f3c1e-1d2a-4b8e-9c1f-2a3b4c5d6e7f"
        ));
        assert!(!same_but_ids("/api/v1/sessions", "/api/v1/elsewhere"));
        assert!(!same_but_ids(
            "/api/v1/sessions/abc12345",
            "/api/v1/sessions"
        ));
        assert!(!same_but_ids(
            "/api/v1/sessions/history",
            "/api/v1/sessions/abc12345"
        ));
    }

    #[test]
    fn paths_and_reasons() {
        assert!(paths_match("/api/v1/chat/ws/abc", "/api/v1/chat/ws/def"));
        assert!(!paths_match("/api/v1/chat/ws/abc", "/api/v1/chat"));
        assert!(!paths_match("/a/x", "/b/x"));
        let long = "é".repeat(100);
        let c = cut_reason(&long);
        assert!(c.len() <= MAX_REASON && long.starts_with(&c));
    }
}
