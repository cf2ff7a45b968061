//! WebSocket connections: the handshake, one reader task per connection, and the write half.
//!
//! The reader task owns the read half. It timestamps each frame on arrival, parses text frames as JSON
//! exactly once, and hands records to the runner over a channel; the runner owns the transcript, so
//! no lock is taken per frame. The write half stays with the runner, which can therefore send
//! (`cancel`, `ping`) while it waits for events.
//!
//! The channel has no length limit but a byte budget (`QUEUE_BYTES`): a record holds its share of
//! the budget until the runner has processed it, and the reader waits for budget before reading on.
//! A server that floods faster than the runner checks (or while the runner is busy elsewhere)
//! therefore meets TCP backpressure instead of growing the harness's memory without limit.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type WsStream = WebSocketStream<CloseTap<MaybeTlsStream<TcpStream>>>;
pub type WsSink = SplitSink<WsStream, Message>;

/// Everything needed to open one connection.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The complete URL, query included (`ws://host:port/path?x=1`).
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub subprotocols: Vec<String>,
    pub timeout: Duration,
    /// Largest accepted frame and message, in bytes.
    pub max_frame_bytes: usize,
    /// A custom TLS config (`--ca-cert`, `--insecure`); `None`: the default roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Read buffer size ([`READ_BUFFER`], or [`READ_BUFFER_MANY`] for many sessions at once).
    pub read_buffer: usize,
}

/// The upgrade response of an accepted connection.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub subprotocol: Option<String>,
    /// TCP + TLS + HTTP upgrade.
    pub duration: Duration,
    /// When the upgrade completed (before the reader task started).
    pub completed_at: Instant,
}

/// A refused upgrade: the server answered with something other than 101.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: u16,
    /// `401 Unauthorized`.
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    /// The body as received (lossy UTF-8), possibly partial.
    pub body: String,
    /// The body parsed as JSON, when it is JSON.
    pub json: Option<Value>,
}

impl Refusal {
    /// The likely cause of a refusal, from the shapes real servers answer with; a hint worded
    /// as one (the status and body are always shown beside it), `None` when nothing is known.
    pub fn hint(&self) -> Option<String> {
        let header = |name: &str| {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let uvicorn = header("server").is_some_and(|s| s.to_ascii_lowercase().contains("uvicorn"));
        let detail = self
            .json
            .as_ref()
            .and_then(|j| j.as_object())
            .is_some_and(|o| o.contains_key("detail"));
        let body_empty = self.body.trim().is_empty();
        // A body in the protocol's error shape names the reason itself: no guess is added.
        if self
            .json
            .as_ref()
            .is_some_and(|j| j.get("error").is_some_and(Value::is_object))
        {
            return None;
        }
        let hint = match self.status {
            403 if body_empty => format!(
                "{}an empty-body 403 is what Starlette/FastAPI answers a WebSocket upgrade with when no WebSocket route matches the path, or when the handler closed the socket before calling accept(); check the connect path and that the handler accepts first",
                if uvicorn { "the server is uvicorn, and " } else { "" }
            ),
            401 | 403 if detail => "a {\"detail\": ...} body is what a FastAPI/Starlette HTTPException sends: an auth dependency or middleware likely refused the upgrade before the WebSocket handler ran; check the credentials the connect step sends (Authorization header, token query parameter)".to_owned(),
            401 => "the server wants credentials on the upgrade request itself: check the Authorization header or token query parameter the connect step sends".to_owned(),
            404 => "nothing answers WebSocket upgrades at this path: check the connect step's path and the --target base URL".to_owned(),
            500 => "the server failed before accepting the WebSocket (an exception in the handler, or in a dependency run before accept()); its log should name the error".to_owned(),
            _ => return None,
        };
        Some(hint)
    }

    /// Headers as `name: value` lines, for failure details.
    pub fn header_lines(&self) -> Vec<String> {
        self.headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("expected 101 Switching Protocols, got {}: {}", .0.status_line, if .0.body.is_empty() { "(empty body)" } else { .0.body.as_str() })]
    Refused(Box<Refusal>),
    #[error("connecting to {url} timed out after {} {phase}", humantime::format_duration(*.after))]
    Timeout {
        url: String,
        after: Duration,
        /// What was still awaited: `during the TCP connect`, `waiting for the answer to the
        /// upgrade request`, ...
        phase: String,
    },
    #[error("invalid WebSocket URL '{url}': {message}")]
    Url { url: String, message: String },
    #[error("could not connect to {url}: {message}")]
    Io { url: String, message: String },
    #[error("TLS handshake with {url} failed: {message}")]
    Tls { url: String, message: String },
    #[error("WebSocket handshake with {url} failed: {message}")]
    Protocol { url: String, message: String },
}

/// Why a connection's read side ended abnormally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndError {
    /// EOF without a close frame.
    NoCloseFrame,
    /// The peer reset the TCP connection.
    Reset(String),
    /// A frame or message exceeded `max_frame_bytes`.
    TooLarge {
        size: usize,
        max: usize,
    },
    /// A text frame was not valid UTF-8.
    InvalidUtf8(String),
    /// Any other WebSocket protocol violation by the peer.
    Protocol(String),
    Io(String),
}

impl std::fmt::Display for EndError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndError::NoCloseFrame => {
                f.write_str("the server closed the TCP connection without a close frame")
            }
            EndError::Reset(e) => {
                write!(f, "the server reset the TCP connection, without a close frame ({e})")
            }
            EndError::TooLarge { size, max } => write!(
                f,
                "received a message of {size} bytes, which exceeds max_frame_bytes ({max} bytes); raise max_frame_bytes in wschat-suite.yaml if this is intended"
            ),
            EndError::InvalidUtf8(e) => {
                write!(f, "received a text frame with invalid UTF-8, which RFC 6455 forbids ({e})")
            }
            EndError::Protocol(e) => write!(f, "WebSocket protocol violation by the server: {e}"),
            EndError::Io(e) => write!(f, "connection failed: {e}"),
        }
    }
}

/// One thing the reader task observed, stamped on arrival.
#[derive(Debug)]
pub struct Incoming {
    pub at: Instant,
    pub event: WsEvent,
    /// This record's share of the queue's byte budget, returned when the record is dropped.
    pub budget: Option<OwnedSemaphorePermit>,
}

#[derive(Debug)]
pub enum WsEvent {
    /// A text frame and its JSON parse (the error message when it is not JSON).
    Text {
        text: String,
        json: Result<Value, String>,
    },
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame: code and reason (`None`: a close frame without a status code).
    Close(Option<(u16, String)>),
    /// The read side ended: `None` after a completed close handshake, else the reason.
    End(Option<EndError>),
}

/// An open connection: the write half plus the channel fed by the reader task.
pub struct WsConnection {
    /// The write half; `None` once [`WsConnection::release`] let the socket go.
    sink: Option<WsSink>,
    pub rx: mpsc::UnboundedReceiver<Incoming>,
    pub handshake: Handshake,
    reader: JoinHandle<()>,
}

impl Drop for WsConnection {
    fn drop(&mut self) {
        // The reader would otherwise outlive the scenario on a connection the server keeps open.
        self.reader.abort();
    }
}

impl WsConnection {
    /// Sends one message (flushing it).
    pub async fn send(&mut self, msg: Message) -> Result<(), String> {
        let Some(sink) = self.sink.as_mut() else {
            return Err("the connection is already closed".into());
        };
        sink.send(msg).await.map_err(|e| describe_send_error(&e))
    }

    /// Lets the socket go once the closing handshake is over: the reader task is stopped and the
    /// write half dropped, so the TCP connection closes now rather than when the scenario ends.
    /// A server that waits for the client's side of TCP to close before it reports the disconnect
    /// (uvicorn's `websockets` implementation, after it sent its FIN) would otherwise keep the user
    /// connected while the scenario goes on (RFC 6455 §7.1.1: after the close frames, the TCP
    /// connection is closed).
    pub fn release(&mut self) {
        self.reader.abort();
        self.sink = None;
    }

    /// Sends a close frame with this code and reason.
    pub async fn send_close(&mut self, code: u16, reason: &str) -> Result<(), String> {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        self.send(Message::Close(Some(frame))).await
    }
}

fn describe_send_error(e: &WsError) -> String {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            "the connection is already closed".into()
        }
        WsError::Protocol(ProtocolError::SendAfterClosing) => {
            "the connection is closing (a close frame was already exchanged)".into()
        }
        WsError::Io(io) => format!("write failed: {io}"),
        other => other.to_string(),
    }
}

/// tungstenite's read buffer per connection (`ConnectRequest::read_buffer`) for a `run`: it bounds
/// how much one read takes from the socket (a larger frame grows it to the frame's size). On one
/// zero-pace stream, 16 KiB gave ~7 % more validated events/s than 4 KiB (two bench binaries run
/// alternately, 4 runs each: 448–490 k vs 382–473 k/s); tungstenite's default, 128 KiB, is no faster.
pub const READ_BUFFER: usize = 16 * 1024;
/// The read buffer for many concurrent sessions (load mode): the buffer stays allocated for the
/// connection's life, and at 10,000 sessions 16 KiB each is most of the harness's memory, while
/// per-connection throughput no longer matters (the CPU is shared by thousands of connections).
pub const READ_BUFFER_MANY: usize = 4 * 1024;

/// Largest HTTP response head accepted during the handshake.
const MAX_HEAD: usize = 64 * 1024;
/// Largest refusal body kept.
const MAX_BODY: usize = 1024 * 1024;

/// Opens a connection and starts its reader task.
///
/// The HTTP upgrade is done here rather than by tungstenite: tungstenite fails a handshake in which
/// the client offered subprotocols and the server selected none, which RFC 6455 allows (and the
/// protocol requires for unknown subprotocols); and a refusal's whole body is wanted for reports.
pub async fn connect(req: &ConnectRequest) -> Result<WsConnection, ConnectError> {
    let started = Instant::now();
    // Updated by `connect_inner` as it goes, so a timeout can say what the server never did.
    let mut phase = String::from("during the TCP connect");
    match tokio::time::timeout(req.timeout, connect_inner(req, started, &mut phase)).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout {
            url: redact_url(&req.url),
            after: req.timeout,
            phase,
        }),
    }
}

#[derive(Debug)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    path_and_query: String,
}

fn parse_target(url: &str) -> Result<Target, String> {
    let uri: tokio_tungstenite::tungstenite::http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        Some(other) => {
            return Err(format!(
                "unsupported scheme '{other}' (use ws:// or wss://)"
            ))
        }
        None => return Err("missing scheme (use ws:// or wss://)".into()),
    };
    let host = uri.host().filter(|h| !h.is_empty()).ok_or("missing host")?;
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
    // Credentials in the URL are not sent in the Host header.
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_owned();
    let path_and_query = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let path_and_query = if path_and_query.is_empty() {
        "/".to_owned()
    } else {
        path_and_query
    };
    Ok(Target {
        tls,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        authority,
        path_and_query,
    })
}

fn default_tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("the default provider supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

async fn connect_inner(
    req: &ConnectRequest,
    started: Instant,
    phase: &mut String,
) -> Result<WsConnection, ConnectError> {
    let shown = redact_url(&req.url);
    let url_err = |message: String| ConnectError::Url {
        url: shown.clone(),
        message,
    };
    let target = parse_target(&req.url).map_err(url_err)?;
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        target.path_and_query, target.authority
    );
    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    head.push_str(&format!("Sec-WebSocket-Key: {key}\r\n"));
    if !req.subprotocols.is_empty() {
        head.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            req.subprotocols.join(", ")
        ));
    }
    for (k, v) in &req.headers {
        HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| url_err(format!("header name '{k}': {e}")))?;
        HeaderValue::from_str(v).map_err(|e| url_err(format!("header '{k}': {e}")))?;
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");

    let io_err = |e: std::io::Error| ConnectError::Io {
        url: shown.clone(),
        message: e.to_string(),
    };
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(io_err)?;
    // Small frames (a `cancel` during a stream) must not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    *phase = if target.tls {
        "during the TLS handshake"
    } else {
        "while sending the upgrade request"
    }
    .into();
    let mut stream = if target.tls {
        let config = req.tls.clone().unwrap_or_else(default_tls_config);
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|e| url_err(format!("host '{}': {e}", target.host)))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| {
                let message = crate::transport::http::error_chain(&e);
                ConnectError::Tls {
                    url: shown.clone(),
                    message: format!("{message}{}", tls_hint(&message)),
                }
            })?;
        MaybeTlsStream::Rustls(tls)
    } else {
        MaybeTlsStream::Plain(tcp)
    };
    *phase = "while sending the upgrade request".into();
    stream.write_all(head.as_bytes()).await.map_err(io_err)?;
    stream.flush().await.map_err(io_err)?;

    *phase = "waiting for the answer to the upgrade request".into();
    let (resp, leftover) =
        read_response_head(&mut stream)
            .await
            .map_err(|m| ConnectError::Protocol {
                url: shown.clone(),
                message: m,
            })?;
    let proto_err = |message: String| ConnectError::Protocol {
        url: shown.clone(),
        message,
    };
    if resp.status != 101 {
        *phase = format!(
            "while reading the body of the {} refusal",
            resp.status_line()
        );
        let body = read_body(&mut stream, &resp, leftover).await;
        let json = serde_json::from_slice(&body).ok();
        return Err(ConnectError::Refused(Box::new(Refusal {
            status: resp.status,
            status_line: resp.status_line(),
            headers: resp.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            json,
        })));
    }
    let expected_accept =
        tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    match resp.header("sec-websocket-accept") {
        Some(a) if a.trim() == expected_accept => {}
        Some(a) => {
            return Err(proto_err(format!(
                "Sec-WebSocket-Accept is '{a}', expected '{expected_accept}'"
            )))
        }
        None => {
            return Err(proto_err(
                "the 101 response has no Sec-WebSocket-Accept header".into(),
            ))
        }
    }
    if !resp
        .header("upgrade")
        .is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"))
    {
        return Err(proto_err(
            "the 101 response lacks 'Upgrade: websocket'".into(),
        ));
    }
    let subprotocol = resp
        .header("sec-websocket-protocol")
        .map(|p| p.trim().to_owned());
    if let Some(p) = &subprotocol {
        if !req.subprotocols.iter().any(|o| o == p) {
            return Err(proto_err(format!(
                "the server selected subprotocol '{p}', which was not offered (offered: {})",
                if req.subprotocols.is_empty() {
                    "none".to_owned()
                } else {
                    req.subprotocols.join(", ")
                }
            )));
        }
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(req.read_buffer)
        .max_frame_size(Some(req.max_frame_bytes))
        .max_message_size(Some(req.max_frame_bytes));
    let (stream, wire_close) = CloseTap::new(stream, &leftover);
    let ws =
        WebSocketStream::from_partially_read(stream, leftover, Role::Client, Some(config)).await;
    let handshake = Handshake {
        status: resp.status,
        headers: resp.headers,
        subprotocol,
        duration: started.elapsed(),
        completed_at: Instant::now(),
    };
    let (sink, read) = ws.split();
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = queue_budget(req.max_frame_bytes);
    let reader = tokio::spawn(read_loop(read, tx, budget, wire_close));
    Ok(WsConnection {
        sink: Some(sink),
        rx,
        handshake,
        reader,
    })
}

struct ResponseHead {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

impl ResponseHead {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn status_line(&self) -> String {
        let reason = tokio_tungstenite::tungstenite::http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .map(str::to_owned)
            .unwrap_or_else(|| self.reason.clone());
        if reason.is_empty() {
            self.status.to_string()
        } else {
            format!("{} {reason}", self.status)
        }
    }
}

/// Reads and parses the response head; returns it and the bytes read past it.
async fn read_response_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(ResponseHead, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(format!("the response head exceeds {MAX_HEAD} bytes"));
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        if buf.is_empty() && n > 0 {
            if let Some(what) = tls_record(&chunk[..n]) {
                return Err(format!(
                    "the server answered with a TLS {what} record ({}), not HTTP: this port speaks TLS, use wss:// instead of ws://",
                    hex_prefix(&chunk[..n], 7)
                ));
            }
        }
        if n == 0 {
            return Err(if buf.is_empty() {
                "the server closed the connection without answering the upgrade request".into()
            } else {
                format!(
                    "the server closed the connection in the middle of the response head: {:?}",
                    String::from_utf8_lossy(&buf)
                )
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let leftover = buf[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: {status_line:?}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let reason = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    Ok((
        ResponseHead {
            status,
            reason,
            headers,
        },
        leftover,
    ))
}

/// What a TLS record starting `bytes` is (`alert`, `handshake`), when it is one: content type
/// 21 or 22, then a TLS version 3.0-3.4 (RFC 8446 §5.1). An HTTP answer starts with `HTTP/`.
fn tls_record(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [t @ (0x15 | 0x16), 0x03, 0x00..=0x04, ..] => {
            Some(if *t == 0x15 { "alert" } else { "handshake" })
        }
        _ => None,
    }
}

/// The first `n` bytes in hex (`15 03 03 00 02`).
fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes
        .iter()
        .take(n)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A hint for a failed TLS handshake whose cause is likely a plain (non-TLS) server.
fn tls_hint(message: &str) -> &'static str {
    if message.contains("InvalidContentType") || message.contains("corrupt message") {
        " (the answer was not TLS: if this port serves plain HTTP, use ws:// instead of wss://)"
    } else {
        ""
    }
}

/// Reads a refusal's body (Content-Length, chunked, or to EOF), bounded in size; a body cut short
/// is returned as far as it came.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    resp: &ResponseHead,
    mut body: Vec<u8>,
) -> Vec<u8> {
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let length = resp
        .header("content-length")
        .and_then(|l| l.trim().parse::<usize>().ok());
    let want = match (chunked, length) {
        (false, Some(n)) => Some(n.min(MAX_BODY)),
        _ => None,
    };
    let mut chunk = [0u8; 4096];
    loop {
        if want.is_some_and(|w| body.len() >= w) || body.len() >= MAX_BODY {
            break;
        }
        if chunked && body.windows(5).any(|w| w == b"0\r\n\r\n") {
            break;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if let Some(w) = want {
        body.truncate(w);
    }
    if chunked {
        body = dechunk(&body);
    }
    body
}

fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        rest = &rest[eol + 2..];
        if size == 0 || rest.len() < size {
            out.extend_from_slice(&rest[..size.min(rest.len())]);
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The server's close frame as it came off the wire

/// The read side of a connection with a scanner of the server's frame headers: it keeps the
/// payload of the first close frame, so the code and reason are reported exactly as sent.
/// tungstenite replaces a close code that RFC 6455 forbids (1005, 1006, 1015, below 1000, an
/// unassigned range) with 1002 "Protocol violation" before the application sees it, and the
/// harness must neither accept the forbidden code nor report the substitute as the server's.
///
/// The scanner reads only frame headers (2 to 14 bytes per frame) and skips payloads by length,
/// so it costs next to nothing per frame; after the close frame it stops.
pub struct CloseTap<S> {
    inner: S,
    scan: FrameScanner,
    close: Arc<OnceLock<Vec<u8>>>,
}

impl<S> CloseTap<S> {
    /// Wraps `inner`; `already_read`: bytes read past the HTTP response head, which the WebSocket
    /// layer reads before `inner`. Returns the slot the close payload is written to.
    fn new(inner: S, already_read: &[u8]) -> (CloseTap<S>, Arc<OnceLock<Vec<u8>>>) {
        let close = Arc::new(OnceLock::new());
        let mut tap = CloseTap {
            inner,
            scan: FrameScanner::default(),
            close: close.clone(),
        };
        tap.scan.feed(already_read, &tap.close);
        (tap, close)
    }
}

/// Server-to-client frame boundaries, fed the byte stream in order.
#[derive(Default)]
struct FrameScanner {
    head: [u8; 14],
    /// Header bytes collected so far.
    have: usize,
    /// The header's length, once its second byte is known.
    need: usize,
    /// Payload bytes of the current frame still to skip.
    remaining: u64,
    /// The payload collected while inside a close frame.
    capture: Option<Vec<u8>>,
    /// The first close frame was seen: nothing more to do.
    done: bool,
}

/// A control frame's payload is at most 125 bytes (RFC 6455 §5.5); a longer one is refused by
/// the WebSocket layer, so no more of it is kept.
const MAX_CLOSE_PAYLOAD: usize = 125;

impl FrameScanner {
    fn feed(&mut self, mut bytes: &[u8], out: &OnceLock<Vec<u8>>) {
        while !bytes.is_empty() && !self.done {
            if self.remaining > 0 {
                let n = (self.remaining.min(bytes.len() as u64)) as usize;
                if let Some(c) = &mut self.capture {
                    let room = MAX_CLOSE_PAYLOAD.saturating_sub(c.len()).min(n);
                    c.extend_from_slice(&bytes[..room]);
                }
                self.remaining -= n as u64;
                bytes = &bytes[n..];
                if self.remaining == 0 {
                    self.end_frame(out);
                }
                continue;
            }
            self.head[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if self.have == 2 {
                let extended = match self.head[1] & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
                self.need = 2 + extended + mask;
            }
            if self.have >= 2 && self.have == self.need {
                self.remaining = match self.head[1] & 0x7f {
                    126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                    127 => u64::from_be_bytes(self.head[2..10].try_into().expect("8 bytes")),
                    n => u64::from(n),
                };
                self.have = 0;
                self.need = 0;
                self.capture = (self.head[0] & 0x0f == 0x8).then(Vec::new);
                if self.remaining == 0 {
                    self.end_frame(out);
                }
            }
        }
    }

    fn end_frame(&mut self, out: &OnceLock<Vec<u8>>) {
        if let Some(payload) = self.capture.take() {
            let _ = out.set(payload);
            self.done = true;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CloseTap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !this.scan.done {
            this.scan.feed(&buf.filled()[before..], &this.close);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CloseTap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A close frame's payload: `None` for an empty one (no status code), else the code and the
/// reason (the WebSocket layer has checked that the reason is UTF-8 before handing the frame on).
fn parse_close_payload(raw: &[u8]) -> Option<(u16, String)> {
    if raw.len() < 2 {
        return None;
    }
    let code = u16::from_be_bytes([raw[0], raw[1]]);
    Some((code, String::from_utf8_lossy(&raw[2..]).into_owned()))
}

/// Why a close code received from the server is not allowed on the wire, naming the rule of
/// RFC 6455; `None` for a valid code (1000-1003, 1007-1014, 3000-4999).
pub fn close_code_problem(code: u16) -> Option<String> {
    let why = match code {
        1005 | 1006 | 1015 => {
            let meaning = match code {
                1005 => "no status code was present",
                1006 => "the connection closed abnormally",
                _ => "the TLS handshake failed",
            };
            format!(
                "RFC 6455 §7.4.1 reserves {code} for an endpoint to report that {meaning}; it MUST NOT be set as the status code of a close frame"
            )
        }
        0..=999 => {
            "RFC 6455 §7.4.2: codes 0-999 are not used, so it is not a valid close code".to_owned()
        }
        1004 => "RFC 6455 §7.4.1 reserves 1004 (no meaning defined); it is not a valid close code"
            .to_owned(),
        1016..=2999 => "RFC 6455 §7.4.2 reserves 1000-2999 for the protocol and registered extensions, and no code there beyond 1015 is assigned (IANA WebSocket Close Code registry), so it is not a valid close code".to_owned(),
        5000.. => "RFC 6455 §7.4.2 defines codes up to 4999 only, so it is not a valid close code"
            .to_owned(),
        _ => return None,
    };
    Some(why)
}

/// Bytes of received records that may wait for the runner, per connection.
const QUEUE_BYTES: usize = 32 * 1024 * 1024;
/// Fixed cost charged per record, so a flood of tiny frames is bounded too: the record and its
/// channel slot, and for JSON the parsed object's first map node (about 400 bytes, measured).
const RECORD_OVERHEAD: usize = 640;

/// The byte budget of one connection's queue.
struct Budget {
    sem: Arc<Semaphore>,
    capacity: usize,
}

/// `QUEUE_BYTES`, or more if one maximal message would not fit (a message `max_frame_bytes` long
/// must always pass).
fn queue_budget(max_frame_bytes: usize) -> Budget {
    let max_cost = max_frame_bytes
        .saturating_mul(3)
        .saturating_add(RECORD_OVERHEAD);
    let capacity = QUEUE_BYTES
        .max(max_cost)
        .min(Semaphore::MAX_PERMITS)
        .min(u32::MAX as usize);
    Budget {
        sem: Arc::new(Semaphore::new(capacity)),
        capacity,
    }
}

/// What a record costs in the budget, approximately its memory: a text frame is kept both as text
/// and as parsed JSON (a `Value` takes a small multiple of its text).
fn cost(event: &WsEvent) -> usize {
    let payload = match event {
        WsEvent::Text { text, .. } => text.len().saturating_mul(3),
        WsEvent::Binary(b) | WsEvent::Ping(b) | WsEvent::Pong(b) => b.len(),
        WsEvent::Close(c) => c.as_ref().map_or(0, |(_, r)| r.len()),
        WsEvent::End(_) => 0,
    };
    payload.saturating_add(RECORD_OVERHEAD)
}

async fn read_loop(
    mut read: SplitStream<WsStream>,
    tx: mpsc::UnboundedSender<Incoming>,
    budget: Budget,
    wire_close: Arc<OnceLock<Vec<u8>>>,
) {
    loop {
        let item = read.next().await;
        let at = Instant::now();
        let event = match item {
            None => WsEvent::End(None),
            Some(Ok(msg)) => match msg {
                Message::Text(t) => {
                    let text = t.as_str();
                    let json = serde_json::from_str::<Value>(text).map_err(|e| e.to_string());
                    WsEvent::Text {
                        text: text.to_owned(),
                        json,
                    }
                }
                Message::Binary(b) => WsEvent::Binary(b.to_vec()),
                Message::Ping(b) => WsEvent::Ping(b.to_vec()),
                Message::Pong(b) => WsEvent::Pong(b.to_vec()),
                // The code and reason as the server sent them: tungstenite hands over 1002
                // "Protocol violation" in place of a code RFC 6455 forbids.
                Message::Close(frame) => WsEvent::Close(match wire_close.get() {
                    Some(raw) => parse_close_payload(raw),
                    None => frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                }),
                // Raw frames are never produced when reading.
                Message::Frame(_) => continue,
            },
            Some(Err(e)) => WsEvent::End(Some(classify_read_error(e))),
        };
        let end = matches!(event, WsEvent::End(_));
        // The end of the stream is never held back: it must reach the runner even when the
        // budget is exhausted. Otherwise wait (no further reads: TCP backpressure) until the
        // runner has processed enough; a closed semaphore cannot happen (it is never closed).
        let budget = if end {
            None
        } else {
            // A record never asks for more than the whole budget, so it can always get it.
            let wanted = cost(&event).min(budget.capacity) as u32;
            match budget.sem.clone().acquire_many_owned(wanted).await {
                Ok(p) => Some(p),
                Err(_) => break,
            }
        };
        if tx.send(Incoming { at, event, budget }).is_err() || end {
            break;
        }
    }
}

fn classify_read_error(e: WsError) -> EndError {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => EndError::NoCloseFrame,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => EndError::NoCloseFrame,
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => EndError::TooLarge {
            size,
            max: max_size,
        },
        WsError::Utf8(m) => EndError::InvalidUtf8(m),
        WsError::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => EndError::Reset(io.to_string()),
            std::io::ErrorKind::UnexpectedEof => EndError::NoCloseFrame,
            _ => EndError::Io(io.to_string()),
        },
        WsError::Protocol(p) => EndError::Protocol(p.to_string()),
        other => EndError::Io(other.to_string()),
    }
}

/// Hides credentials in a URL: `token`/`api_key`/`access_token` query values and userinfo.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    let Some(query) = query else {
        return base;
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_secret_name(k) => format!("{k}=***"),
            _ => kv.to_owned(),
        })
        .collect();
    format!("{base}?{}", parts.join("&"))
}

fn is_secret_name(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    matches!(
        k.as_str(),
        "token" | "api_key" | "apikey" | "access_token" | "key" | "password" | "secret" | "jwt"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn req(url: String) -> ConnectRequest {
        ConnectRequest {
            url,
            headers: vec![("X-Test".into(), "1".into())],
            subprotocols: vec!["wschat.v1".into()],
            timeout: Duration::from_secs(5),
            max_frame_bytes: 1024,
            tls: None,
            read_buffer: READ_BUFFER,
        }
    }

    /// A one-shot server that accepts a WebSocket, then runs `script` on the raw socket.
    async fn ws_server<F, Fut>(script: F) -> String
    where
        F: FnOnce(WebSocketStream<TcpStream>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            script(ws).await;
        });
        format!("ws://{addr}/ws")
    }

    async fn next(conn: &mut WsConnection) -> WsEvent {
        tokio::time::timeout(Duration::from_secs(5), conn.rx.recv())
            .await
            .expect("event in time")
            .expect("channel open")
            .event
    }

    #[tokio::test]
    async fn text_frames_arrive_parsed_and_close_ends_cleanly() {
        let url = ws_server(|mut ws| async move {
            ws.send(Message::text(r#"{"type":"connected"}"#))
                .await
                .unwrap();
            ws.send(Message::text("{not json")).await.unwrap();
            ws.close(Some(CloseFrame {
                code: CloseCode::from(4401),
                reason: "bye".into(),
            }))
            .await
            .unwrap();
            while ws.next().await.is_some() {}
        })
        .await;
        let mut conn = connect(&req(url)).await.unwrap();
        assert_eq!(conn.handshake.status, 101);
        // wschat.v1 was offered and not selected: allowed (RFC 6455 4.2.2).
        assert_eq!(conn.handshake.subprotocol, None);
        match next(&mut conn).await {
            WsEvent::Text { json: Ok(v), .. } => assert_eq!(v["type"], "connected"),
            other => panic!("unexpected {other:?}"),
        }
        match next(&mut conn).await {
            WsEvent::Text { json: Err(e), text } => {
                assert_eq!(text, "{not json");
                assert!(e.contains("line 1"), "{e}");
            }
            other => panic!("unexpected {other:?}"),
        }
        match next(&mut conn).await {
            WsEvent::Close(Some((code, reason))) => {
                assert_eq!((code, reason.as_str()), (4401, "bye"))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(next(&mut conn).await, WsEvent::End(None)));
    }

    #[tokio::test]
    async fn refused_upgrade_keeps_status_and_body() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            let body = r#"{"error":{"code":"AUTH_INVALID","message":"bad token"}}"#;
            let resp = format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            tcp.write_all(resp.as_bytes()).await.unwrap();
            let _ = tcp.shutdown().await;
        });
        let err = connect(&req(format!("ws://{addr}/x?token=secret")))
            .await
            .err()
            .expect("refused");
        let msg = err.to_string();
        assert!(
            msg.starts_with("expected 101 Switching Protocols, got 401 Unauthorized: {\"error\""),
            "{msg}"
        );
        let ConnectError::Refused(r) = err else {
            unreachable!()
        };
        assert_eq!(r.json.as_ref().unwrap()["error"]["code"], "AUTH_INVALID");
        assert!(r
            .header_lines()
            .iter()
            .any(|h| h == "content-type: application/json"));
    }

    #[tokio::test]
    async fn wss_to_a_plain_http_port_suggests_ws() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
            let _ = tcp.shutdown().await;
        });
        let err = connect(&req(format!("wss://localhost:{}/", addr.port())))
            .await
            .err()
            .expect("no TLS");
        assert!(matches!(err, ConnectError::Tls { .. }), "{err:?}");
        assert!(
            err.to_string().contains("use ws:// instead of wss://"),
            "{err}"
        );
    }

    #[test]
    fn tls_records_are_recognised_and_http_is_not() {
        assert_eq!(
            tls_record(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]),
            Some("alert")
        );
        assert_eq!(tls_record(&[0x16, 0x03, 0x01, 0x00]), Some("handshake"));
        assert_eq!(tls_record(b"HTTP/1.1 200 OK"), None);
        assert_eq!(tls_record(&[0x15]), None);
    }

    #[tokio::test]
    async fn closed_port_is_an_io_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = connect(&req(format!("ws://{addr}/")))
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, ConnectError::Io { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("could not connect to ws://{addr}/")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn oversized_binary_and_eof_are_reported() {
        let url = ws_server(|mut ws| async move {
            ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
            ws.send(Message::text("x".repeat(2000))).await.unwrap();
            let _ = ws.flush().await;
            let _ = ws.next().await;
        })
        .await;
        let mut conn = connect(&req(url)).await.unwrap();
        assert!(matches!(next(&mut conn).await, WsEvent::Binary(b) if b == [1, 2, 3]));
        match next(&mut conn).await {
            WsEvent::End(Some(
                e @ EndError::TooLarge {
                    size: 2000,
                    max: 1024,
                },
            )) => {
                assert!(e
                    .to_string()
                    .contains("exceeds max_frame_bytes (1024 bytes)"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn eof_without_close_frame() {
        let url = ws_server(|ws| async move {
            let tcp = ws.into_inner();
            drop(tcp);
        })
        .await;
        let mut conn = connect(&req(url)).await.unwrap();
        match next(&mut conn).await {
            WsEvent::End(Some(e)) => {
                assert!(
                    matches!(e, EndError::NoCloseFrame | EndError::Reset(_)),
                    "{e:?}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn invalid_utf8_text_is_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut tcp = ws.into_inner();
            // FIN + text opcode, unmasked, 2 bytes: an invalid UTF-8 sequence.
            tcp.write_all(&[0x81, 0x02, 0xC3, 0x28]).await.unwrap();
            let mut buf = [0u8; 64];
            let _ = tcp.read(&mut buf).await;
        });
        let mut conn = connect(&req(format!("ws://{addr}/"))).await.unwrap();
        match next(&mut conn).await {
            WsEvent::End(Some(e @ EndError::InvalidUtf8(_))) => {
                assert!(e.to_string().contains("invalid UTF-8"), "{e}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_queue_budget_always_fits_one_maximal_message() {
        let text = |n: usize| WsEvent::Text {
            text: "x".repeat(n),
            json: Err("not JSON".into()),
        };
        // Tiny frames still cost their overhead, so a flood of them is bounded.
        assert_eq!(cost(&WsEvent::Pong(Vec::new())), RECORD_OVERHEAD);
        assert_eq!(cost(&text(10)), 30 + RECORD_OVERHEAD);
        for max in [1024, 1 << 20, 16 << 20, 64 << 20] {
            let b = queue_budget(max);
            assert!(b.capacity >= QUEUE_BYTES.min(u32::MAX as usize));
            assert!(b.capacity >= cost(&text(max)), "max_frame_bytes {max}");
            assert_eq!(b.sem.available_permits(), b.capacity);
        }
        // Larger than a permit count can express: clamped, and a record asks for at most all.
        assert_eq!(queue_budget(usize::MAX).capacity, u32::MAX as usize);
    }

    /// Frames as a server writes them (unmasked), with every length encoding.
    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(n as u8),
            n @ 126..=65535 => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn the_scanner_finds_the_first_close_frame_in_any_split() {
        let mut close = 1006u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"gone");
        let mut stream = server_frame(0x1, b"{\"type\":\"connected\"}");
        stream.extend(server_frame(0x2, &vec![7u8; 300]));
        stream.extend(server_frame(0x1, &vec![b'x'; 70_000]));
        stream.extend(server_frame(0x9, b"ping"));
        stream.extend(server_frame(0x8, &close));
        stream.extend(server_frame(0x8, &1000u16.to_be_bytes()));
        for split in [1, 2, 3, 7, 4096, stream.len()] {
            let out = OnceLock::new();
            let mut scan = FrameScanner::default();
            for chunk in stream.chunks(split) {
                scan.feed(chunk, &out);
            }
            assert_eq!(
                out.get().map(|p| parse_close_payload(p)),
                Some(Some((1006, "gone".to_owned()))),
                "chunks of {split}"
            );
        }
        // An empty close frame has no status code.
        let out = OnceLock::new();
        FrameScanner::default().feed(&server_frame(0x8, b""), &out);
        assert_eq!(out.get().map(|p| parse_close_payload(p)), Some(None));
    }

    #[test]
    fn close_codes_rfc_6455_forbids_are_named() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4000, 4999,
        ] {
            assert_eq!(close_code_problem(ok), None, "{ok}");
        }
        for (bad, section) in [
            (1005, "§7.4.1"),
            (1006, "§7.4.1"),
            (1015, "§7.4.1"),
            (1004, "§7.4.1"),
            (0, "§7.4.2"),
            (999, "§7.4.2"),
            (1016, "§7.4.2"),
            (2999, "§7.4.2"),
            (5000, "§7.4.2"),
            (u16::MAX, "§7.4.2"),
        ] {
            let why = close_code_problem(bad).unwrap_or_else(|| panic!("{bad} is accepted"));
            assert!(why.contains(section), "{bad}: {why}");
        }
    }

    #[tokio::test]
    async fn a_forbidden_close_code_is_reported_as_sent_not_as_substituted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut tcp = ws.into_inner();
            let mut payload = 1006u16.to_be_bytes().to_vec();
            payload.extend_from_slice(b"abnormal");
            tcp.write_all(&server_frame(0x8, &payload)).await.unwrap();
            let mut buf = [0u8; 64];
            let _ = tcp.read(&mut buf).await;
        });
        let mut conn = connect(&req(format!("ws://{addr}/"))).await.unwrap();
        match next(&mut conn).await {
            WsEvent::Close(Some((code, reason))) => {
                assert_eq!((code, reason.as_str()), (1006, "abnormal"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(
            dechunk(b"4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\n\r\n"),
            b"Wikipedia"
        );
        assert_eq!(dechunk(b"a\r\nshort"), b"short");
    }

    #[test]
    fn bad_urls_are_reported() {
        assert!(parse_target("http://h/x")
            .unwrap_err()
            .contains("unsupported scheme 'http'"));
        let t = parse_target("wss://user:pw@example.com/a?b=1").unwrap();
        assert_eq!(
            (
                t.tls,
                t.port,
                t.authority.as_str(),
                t.path_and_query.as_str()
            ),
            (true, 443, "example.com", "/a?b=1")
        );
        let t = parse_target("ws://[::1]:9/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("ws://h:1/p?token=abc&x=1&api_key=zz"),
            "ws://h:1/p?token=***&x=1&api_key=***"
        );
        assert_eq!(redact_url("wss://user:pw@h/p"), "wss://***@h/p");
        assert_eq!(redact_url("ws://h/p"), "ws://h/p");
    }
}
