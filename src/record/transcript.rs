//! The transcript file format (`docs/TRANSCRIPT.md`): types, reading with structural validation,
//! writing, and conversion from the runner's per-connection transcripts.
//!
//! One format serves `record` (writer), `check` (offline validation) and `replay` (stand-in server), so
//! every structural rule lives here and the other modules work on an already validated [`TranscriptFile`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::report::Redactor;
use crate::runner::{Direction, FrameKind, FrameRecord, ScenarioResult, Transcript};

/// The format version this module reads and writes.
pub const VERSION: u32 = 1;
/// The value replacing a credential.
pub const REDACTED: &str = "[REDACTED]";
/// Payloads longer than this are cut (the record keeps the real length in `truncated`).
const MAX_PAYLOAD: usize = 64 * 1024;

/// Why a transcript could not be read or written. Every message names the file and, when it is about
/// one line, the line number (1-based, as editors count).
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: the file is empty (line 1 must be the transcript header)", path.display())]
    Empty { path: PathBuf },
    #[error("{}:{line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// The first line of a transcript.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub wschat_transcript: u32,
    pub tool: String,
    pub recorded_at: String,
    /// `null` when recorded outside a scenario (always written).
    pub scenario: Option<String>,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discriminator: Option<String>,
    /// The upgrade of the main connection; absent only in a recording without any WebSocket
    /// connection (a scenario of HTTP steps only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake: Option<HandshakeRec>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connections: BTreeMap<String, ConnectionRec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
}

impl Header {
    /// The discriminator as a JSON pointer (`type` and `/type` both give `/type`).
    pub fn discriminator_pointer(&self) -> String {
        match self.discriminator.as_deref() {
            None | Some("") => "/type".to_owned(),
            Some(d) if d.starts_with('/') => d.to_owned(),
            Some(d) => format!("/{d}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HandshakeRec {
    pub request: RequestRec,
    pub response: ResponseRec,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestRec {
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subprotocols: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResponseRec {
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub subprotocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConnectionRec {
    pub target: String,
    pub t_ms: f64,
    pub handshake: HandshakeRec,
}

/// What `check` must conclude about a fixture.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    Sent,
    Received,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Text,
    Binary,
    Ping,
    Pong,
    Close,
    End,
    /// Not a frame: one HTTP exchange of an `http` step (request and response), `dir: "sent"`.
    Http,
}

/// The request and response of one HTTP exchange (`kind: "http"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpRec {
    pub request: HttpRequestRec,
    pub response: HttpResponseRec,
    /// From sending the request to the end of the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpRequestRec {
    /// Upper-case method.
    pub method: String,
    /// The path without the query.
    pub path: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpResponseRec {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default)]
    pub body: String,
    /// The body was cut to 64 KiB; this is its real length in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<u64>,
}

/// A close frame's body; `{}` is a close frame without a status code.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CloseRec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One frame record (lines 2…).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub t_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<String>,
    pub dir: Dir,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close: Option<CloseRec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<u64>,
    /// The exchange of an `http` record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpRec>,
}

impl Record {
    /// The connection name (`main` when absent).
    pub fn conn_name(&self) -> &str {
        self.conn.as_deref().unwrap_or(MAIN)
    }

    /// The JSON of a text record, when it parses.
    pub fn json(&self) -> Option<Value> {
        match (self.kind, &self.text) {
            (Kind::Text, Some(t)) => serde_json::from_str(t).ok(),
            _ => None,
        }
    }
}

/// The name of the main connection.
pub const MAIN: &str = "main";

/// A transcript read from (or to be written to) a file.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptFile {
    /// Where it was read from (for messages); empty for an in-memory transcript.
    pub path: PathBuf,
    pub header: Header,
    pub records: Vec<Record>,
}

impl TranscriptFile {
    /// The scenario this transcript belongs to: the header's `scenario`, else the file stem.
    pub fn scenario_name(&self) -> String {
        self.header.scenario.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }

    /// Connection names in the order they were opened: by `t_ms`, `main` at 0 (a connection
    /// refused before the main one has a negative `t_ms`), `main` first on a tie.
    pub fn connection_order(&self) -> Vec<String> {
        let main = self.header.handshake.is_some().then_some((MAIN, 0.0));
        let mut all: Vec<(&str, f64)> = main
            .into_iter()
            .chain(
                self.header
                    .connections
                    .iter()
                    .map(|(n, c)| (n.as_str(), c.t_ms)),
            )
            .collect();
        // Stable: `main` stays first among equal times.
        all.sort_by(|a, b| a.1.total_cmp(&b.1));
        all.into_iter().map(|(n, _)| n.to_owned()).collect()
    }

    /// The handshake of a connection.
    pub fn handshake(&self, conn: &str) -> Option<&HandshakeRec> {
        if conn == MAIN {
            self.header.handshake.as_ref()
        } else {
            self.header.connections.get(conn).map(|c| &c.handshake)
        }
    }

    /// The frame records of one connection, in order (HTTP exchanges belong to no connection).
    pub fn records_of<'a>(&'a self, conn: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.records
            .iter()
            .filter(move |r| r.kind != Kind::Http && r.conn_name() == conn)
    }

    /// The HTTP exchanges, in recorded order.
    pub fn http_exchanges(&self) -> impl Iterator<Item = (&Record, &HttpRec)> + '_ {
        self.records
            .iter()
            .filter_map(|r| r.http.as_ref().map(|h| (r, h)))
    }

    /// Serializes to JSON Lines (header, then one record per line).
    pub fn to_jsonl(&self) -> String {
        let mut out = serde_json::to_string(&self.header).expect("the header serializes");
        out.push('\n');
        for r in &self.records {
            out.push_str(&serde_json::to_string(r).expect("a record serializes"));
            out.push('\n');
        }
        out
    }

    /// Writes the file, creating its folder.
    pub fn write(&self, path: &Path) -> Result<(), TranscriptError> {
        let err = |source| TranscriptError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        std::fs::write(path, self.to_jsonl()).map_err(err)
    }
}

/// Reads and validates a transcript file.
pub fn read(path: &Path) -> Result<TranscriptFile, TranscriptError> {
    let text = crate::text::read_utf8(path).map_err(|e| TranscriptError::Read {
        path: path.to_owned(),
        source: match e {
            crate::text::ReadError::Io(e) => e,
            crate::text::ReadError::Utf8(at) => {
                std::io::Error::new(std::io::ErrorKind::InvalidData, at.to_string())
            }
        },
    })?;
    parse(path, &text)
}

/// Parses and validates transcript text (`path` is only used in messages).
pub fn parse(path: &Path, text: &str) -> Result<TranscriptFile, TranscriptError> {
    let at = |line: usize, message: String| TranscriptError::Line {
        path: path.to_owned(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate();
    let Some((_, first)) = lines.next() else {
        return Err(TranscriptError::Empty {
            path: path.to_owned(),
        });
    };
    // The version is checked before the rest so a future format gets a clear message.
    let raw: Value =
        serde_json::from_str(first).map_err(|e| at(1, format!("the header is not JSON: {e}")))?;
    match raw.get("wschat_transcript").and_then(Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(at(
                1,
                format!("transcript format version {v} is not supported (this tool reads version {VERSION})"),
            ))
        }
        None => {
            return Err(at(
                1,
                "the header has no integer `wschat_transcript` (is this a transcript?)".into(),
            ))
        }
    }
    let header: Header =
        serde_json::from_value(raw).map_err(|e| at(1, format!("invalid header: {e}")))?;
    let mut records = Vec::new();
    let mut last_t = f64::NEG_INFINITY;
    for (i, line) in lines {
        let n = i + 1;
        if line.trim().is_empty() {
            return Err(at(n, "blank line (the format has none)".into()));
        }
        let r: Record =
            serde_json::from_str(line).map_err(|e| at(n, format!("invalid frame record: {e}")))?;
        let expected_seq = records.len() as u64;
        if r.seq != expected_seq {
            return Err(at(
                n,
                format!("seq {} out of order: expected {expected_seq} (seq runs 0, 1, 2, … over the whole file)", r.seq),
            ));
        }
        if !r.t_ms.is_finite() || r.t_ms < last_t {
            return Err(at(
                n,
                format!(
                    "seq {}: t_ms {} is before the previous record's {last_t}",
                    r.seq, r.t_ms
                ),
            ));
        }
        last_t = r.t_ms;
        check_payload(&r).map_err(|m| at(n, format!("seq {}: {m}", r.seq)))?;
        if let Some(c) = &r.conn {
            if c != MAIN && !header.connections.contains_key(c) {
                return Err(at(
                    n,
                    format!(
                        "seq {}: connection '{c}' is not declared in the header's `connections`",
                        r.seq
                    ),
                ));
            }
        }
        if r.kind != Kind::Http && r.conn_name() == MAIN {
            match &header.handshake {
                None => {
                    return Err(at(
                        n,
                        format!(
                            "seq {}: the header has no `handshake` (no main connection), so a frame record needs a `conn`",
                            r.seq
                        ),
                    ))
                }
                Some(h) if h.response.status != 101 => {
                    return Err(at(
                        n,
                        format!(
                            "seq {}: the main connection was refused (status {}), so it can have no frame records",
                            r.seq, h.response.status
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        records.push(r);
    }
    Ok(TranscriptFile {
        path: path.to_owned(),
        header,
        records,
    })
}

/// Exactly one payload field, as the kind says.
fn check_payload(r: &Record) -> Result<(), String> {
    let present: Vec<&str> = [
        ("text", r.text.is_some()),
        ("base64", r.base64.is_some()),
        ("close", r.close.is_some()),
        ("http", r.http.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, p)| p.then_some(n))
    .collect();
    let want: &[&str] = match r.kind {
        Kind::Text => &["text"],
        Kind::Binary | Kind::Ping | Kind::Pong => &["base64"],
        Kind::Close => &["close"],
        Kind::End => &[],
        Kind::Http => &["http"],
    };
    if present != want {
        let kind = format!("{:?}", r.kind).to_lowercase();
        return Err(match want.first() {
            Some(w) => format!(
                "a `{kind}` record needs exactly the payload field `{w}`, found {present:?}"
            ),
            None => format!("an `end` record has no payload field, found {present:?}"),
        });
    }
    if r.error.is_some() && r.kind != Kind::End {
        return Err("`error` is only allowed on `end` records".into());
    }
    if r.kind == Kind::Http {
        // An exchange is initiated by the client and belongs to no WebSocket connection.
        if r.dir != Dir::Sent {
            return Err(
                "an `http` record has `dir: \"sent\"` (the client makes the request)".into(),
            );
        }
        if r.conn.is_some() {
            return Err("an `http` record belongs to no connection: leave out `conn`".into());
        }
        if r.truncated.is_some() {
            return Err("`truncated` of an `http` record goes in its `response`".into());
        }
        let h = r.http.as_ref().expect("checked above");
        if h.request.method.is_empty() || !h.request.path.starts_with('/') {
            return Err(format!(
                "an `http` request needs a method and a path starting with `/`, found {:?} {:?}",
                h.request.method, h.request.path
            ));
        }
        if !(100..=599).contains(&h.response.status) {
            return Err(format!(
                "HTTP status {} is not between 100 and 599",
                h.response.status
            ));
        }
    }
    if let Some(b) = &r.base64 {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("`base64` is not standard base64: {e}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Redaction (the writer never stores credentials).

const SECRET_QUERY: &[&str] = &[
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "auth",
    "jwt",
    "password",
    "secret",
    "signature",
];
const SECRET_MEMBERS: &[&str] = &[
    "token",
    "access_token",
    "api_key",
    "password",
    "secret",
    "authorization",
];
static JWT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*").expect("static regex")
});

fn is_secret_query(name: &str) -> bool {
    SECRET_QUERY.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// Splits a URL into (path, query) with secret query values redacted.
pub fn split_url(url: &str) -> (String, BTreeMap<String, String>) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path_and_query = rest.find('/').map_or("/", |i| &rest[i..]);
    let path_and_query = path_and_query.split('#').next().unwrap_or("");
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, q),
        None => (path_and_query, ""),
    };
    let mut out = BTreeMap::new();
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = if is_secret_query(k) { REDACTED } else { v };
        out.insert(k.to_owned(), v.to_owned());
    }
    (path.to_owned(), out)
}

/// A URL with secret query values (and user info) redacted.
pub fn redact_url(url: &str) -> String {
    // The runner's redaction marks secrets with `***`; normalize to this format's marker.
    let url = crate::transport::ws::redact_url(url);
    let Some((base, query)) = url.split_once('?') else {
        return url;
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_secret_query(k) => format!("{k}={REDACTED}"),
            _ => kv.to_owned(),
        })
        .collect();
    format!("{base}?{}", parts.join("&"))
}

/// Redacts a text frame. Every frame: JSON Web Tokens anywhere, then the known secret values of
/// `redactor`. Frames the client sent (`credentials: true`: the scenario's own auth messages and
/// requests) also lose the values of credential-named members (`token`, `password`, ...).
///
/// A received frame keeps its members whatever their names: in a streaming protocol `token` is the
/// answer's text, not a credential, and a recording that rewrote it would no longer pass the checks
/// it passed live. Only the member's own value is replaced, in place in the wire text, so member
/// order, spacing and equal text elsewhere in the frame (a `partial_response` that repeats the
/// token) stay as they were.
pub fn redact_text(text: &str, redactor: &Redactor, credentials: bool) -> String {
    let mut out = text.to_owned();
    if credentials && text.trim_start().starts_with('{') {
        if let Ok(mut v) = serde_json::from_str::<Value>(text) {
            let mut secrets = Vec::new();
            collect_secret_members(&v, &mut secrets);
            if !secrets.is_empty() {
                for (k, s) in &secrets {
                    out = replace_member_value(&out, k, s);
                }
                // A sender escaping differently (`\u` escapes in the key or value) defeats the
                // textual replacement: then re-serialize.
                let still = serde_json::from_str::<Value>(&out).map_or(true, |v| {
                    let mut left = Vec::new();
                    collect_secret_members(&v, &mut left);
                    !left.is_empty()
                });
                if still {
                    redact_members(&mut v);
                    out = serde_json::to_string(&v).expect("JSON serializes");
                }
            }
        }
    }
    if out.contains("eyJ") {
        out = JWT.replace_all(&out, REDACTED).into_owned();
    }
    redactor.redact_str(&out).into_owned()
}

/// `text` with the string value of member `key` (written as `"key": "value"`) replaced by the
/// marker, and nothing else touched.
fn replace_member_value(text: &str, key: &str, value: &str) -> String {
    let quoted_key = serde_json::to_string(key).expect("a string serializes");
    let quoted_value = serde_json::to_string(value).expect("a string serializes");
    let pattern = format!(
        r"({}\s*:\s*){}",
        regex::escape(&quoted_key),
        regex::escape(&quoted_value)
    );
    match Regex::new(&pattern) {
        Ok(re) => re
            .replace_all(text, |c: &regex::Captures<'_>| {
                format!("{}\"{REDACTED}\"", &c[1])
            })
            .into_owned(),
        Err(_) => text.to_owned(),
    }
}

fn is_secret_member(k: &str) -> bool {
    SECRET_MEMBERS.iter().any(|s| s.eq_ignore_ascii_case(k))
}

/// (name, value) of string members with a credential name (not yet redacted), at any depth.
fn collect_secret_members(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| collect_secret_members(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                match x {
                    Value::String(s) if is_secret_member(k) => {
                        if s != REDACTED && !s.is_empty() {
                            out.push((k.clone(), s.clone()));
                        }
                    }
                    _ => collect_secret_members(x, out),
                }
            }
        }
        _ => {}
    }
}

fn redact_members(v: &mut Value) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(redact_members),
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if x.is_string() && is_secret_member(k) {
                    *x = Value::String(REDACTED.into());
                } else {
                    redact_members(x);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Conversion from the runner's transcripts.

/// Builds a transcript file from a scenario result: the connections' frames merged in time order,
/// seq renumbered over the file, times relative to the main connection's upgrade, secrets redacted.
///
/// The main connection is the one named `main`, else the first opened. Request and response headers
/// are not part of the runner's transcript, so they are written empty.
pub fn from_result(
    result: &ScenarioResult,
    discriminator: &str,
    recorded_at: &str,
    redactor: &Redactor,
) -> Option<TranscriptFile> {
    let opened = |t: &Transcript| {
        t.frames
            .iter()
            .find(|f| f.kind == FrameKind::Handshake)
            .map_or(u64::MAX, |f| f.at_us)
    };
    let mut conns: Vec<&Transcript> = result.transcripts.iter().collect();
    conns.sort_by_key(|t| opened(t));
    // Refused upgrades are connections too (with a refused handshake and no frames).
    let refusals: Vec<&crate::runner::HttpExchange> = result
        .http
        .iter()
        .filter(|x| x.upgrade_conn.is_some())
        .collect();
    // The main connection is an accepted one when there is one (the one named main, else the
    // first opened), else the first refused one.
    let main_idx = conns.iter().position(|t| t.conn == MAIN).unwrap_or(0);
    let main: Option<&Transcript> = conns.get(main_idx).copied();
    // Without any WebSocket connection (HTTP steps only), times count from the first exchange.
    let origin_us = match (main, refusals.first()) {
        (Some(m), _) => opened(m),
        (None, Some(r)) => r.at_us,
        (None, None) => result.http.first()?.at_us,
    };

    // The main connection keeps the name `main` in the file, whatever the scenario called it;
    // the others keep theirs, made unique (a reconnect reuses a name).
    let mut taken: Vec<String> = vec![MAIN.to_owned()];
    let mut unique = |want: &str| -> String {
        let mut name = want.to_owned();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{want}-{n}");
            n += 1;
        }
        taken.push(name.clone());
        name
    };
    let conn_names: Vec<String> = conns
        .iter()
        .map(|t| {
            if main.is_some_and(|m| std::ptr::eq(*t, m)) {
                MAIN.to_owned()
            } else {
                unique(&t.conn)
            }
        })
        .collect();
    let refusal_names: Vec<String> = refusals
        .iter()
        .enumerate()
        .map(|(i, x)| {
            if main.is_none() && i == 0 {
                MAIN.to_owned()
            } else {
                unique(x.upgrade_conn.as_deref().unwrap_or("refused"))
            }
        })
        .collect();
    let handshake_of = |t: &Transcript| -> HandshakeRec {
        let (path, query) = split_url(&t.url);
        let subprotocol = t
            .frames
            .iter()
            .find(|f| f.kind == FrameKind::Handshake)
            .and_then(|f| f.note.as_deref())
            .and_then(|n| n.split_once("(subprotocol "))
            .map(|(_, p)| p.trim_end_matches(')').to_owned());
        HandshakeRec {
            request: RequestRec {
                path,
                query,
                headers: BTreeMap::new(),
                subprotocols: subprotocol.clone().map(|p| vec![p]),
            },
            response: ResponseRec {
                status: 101,
                headers: BTreeMap::new(),
                subprotocol,
                body: None,
            },
        }
    };

    let mut connections = BTreeMap::new();
    for (t, name) in conns.iter().zip(&conn_names) {
        if name == MAIN {
            continue;
        }
        connections.insert(
            name.clone(),
            ConnectionRec {
                target: redact_url(&t.url),
                t_ms: signed_ms(opened(t), origin_us),
                handshake: handshake_of(t),
            },
        );
    }
    for (x, name) in refusals.iter().zip(&refusal_names) {
        if name == MAIN {
            continue;
        }
        connections.insert(
            name.clone(),
            ConnectionRec {
                target: redact_url(&x.url),
                t_ms: signed_ms(x.at_us, origin_us),
                handshake: refused_handshake_of(x, redactor),
            },
        );
    }

    // HTTP exchanges first: at equal stamps an exchange precedes the frames it made possible.
    let mut merged: Vec<(u64, Record)> = result
        .http
        .iter()
        .filter(|x| x.upgrade_conn.is_none())
        .map(|x| (x.at_us, http_record_of(x, redactor)))
        .collect();
    for (t, name) in conns.iter().zip(&conn_names) {
        let name = name.clone();
        for f in &t.frames {
            if let Some(mut r) = record_of(f, redactor) {
                r.conn = (name != MAIN).then(|| name.clone());
                merged.push((f.at_us, r));
            }
        }
    }
    // Stable sort: records of one connection keep their order when their stamps are equal.
    merged.sort_by_key(|(at, _)| *at);
    let mut records = Vec::new();
    for (at, mut r) in merged {
        r.seq = records.len() as u64;
        // Exchanges before the main upgrade (creating the session) get negative times.
        r.t_ms = signed_ms(at, origin_us);
        records.push(r);
    }
    Some(TranscriptFile {
        path: PathBuf::new(),
        header: Header {
            wschat_transcript: VERSION,
            tool: format!("wschat-check {}", env!("CARGO_PKG_VERSION")),
            recorded_at: recorded_at.to_owned(),
            scenario: Some(result.name.clone()),
            target: redact_url(match (main, refusals.first(), result.http.first()) {
                (Some(m), _, _) => &m.url,
                (None, Some(r), _) => &r.url,
                // HTTP steps only: the first request's URL.
                (None, None, Some(x)) => &x.url,
                (None, None, None) => unreachable!("origin_us needs one of them"),
            }),
            discriminator: Some(discriminator.to_owned()),
            handshake: match (main, refusals.first()) {
                (Some(m), _) => Some(handshake_of(m)),
                (None, Some(r)) => Some(refused_handshake_of(r, redactor)),
                (None, None) => None,
            },
            connections,
            description: result.description.clone(),
            expect: None,
        },
        records,
    })
}

/// The path and query of a recorded URL, secrets redacted. The runner masks tokens with `***`;
/// this format's marker is `[REDACTED]`.
fn redacted_path_and_query(url: &str, redactor: &Redactor) -> (String, BTreeMap<String, String>) {
    let (path, query) = split_url(url);
    let query = query
        .into_iter()
        .map(|(k, v)| {
            let v = if v.contains("***") {
                REDACTED.to_owned()
            } else {
                v
            };
            (k, redactor.redact_str(&v).into_owned())
        })
        .collect();
    (path, query)
}

/// The handshake of a refused upgrade: the request as sent, the refusal as answered.
fn refused_handshake_of(x: &crate::runner::HttpExchange, redactor: &Redactor) -> HandshakeRec {
    let (path, query) = redacted_path_and_query(&x.url, redactor);
    let mut headers = BTreeMap::new();
    let mut subprotocols = None;
    for (k, v) in &x.request_headers {
        if k.eq_ignore_ascii_case("sec-websocket-protocol") {
            subprotocols = Some(v.split(',').map(|p| p.trim().to_owned()).collect());
        } else {
            let v = redact_header(k, v);
            headers.insert(k.clone(), redactor.redact_str(&v).into_owned());
        }
    }
    let mut response_headers = BTreeMap::new();
    if let Some(ct) = &x.content_type {
        response_headers.insert("content-type".to_owned(), ct.clone());
    }
    HandshakeRec {
        request: RequestRec {
            path,
            query,
            headers,
            subprotocols,
        },
        response: ResponseRec {
            status: x.status,
            headers: response_headers,
            subprotocol: None,
            body: Some(cut_body(redact_text(&x.response_body, redactor, true)).0),
        },
    }
}

/// Milliseconds from `origin_us` to `at_us`, negative when `at_us` is earlier.
fn signed_ms(at_us: u64, origin_us: u64) -> f64 {
    (at_us as f64 - origin_us as f64) / 1000.0
}

/// Headers that carry credentials (`docs/TRANSCRIPT.md`, "Redaction").
fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-api-key" | "api-key"
    ) || n.contains("token")
        || n.contains("secret")
}

/// A header value as a transcript stores it: credentials replaced, keeping the scheme of
/// `Authorization` (`Bearer [REDACTED]`).
pub fn redact_header(name: &str, value: &str) -> String {
    if !is_secret_header(name) {
        return value.to_owned();
    }
    let lower = name.to_ascii_lowercase();
    if lower == "authorization" || lower == "proxy-authorization" {
        if let Some((scheme, _)) = value.trim().split_once(' ') {
            return format!("{scheme} {REDACTED}");
        }
    }
    REDACTED.to_owned()
}

/// Cuts a body to [`MAX_PAYLOAD`] bytes (on a character boundary); the real length when cut.
fn cut_body(s: String) -> (String, Option<u64>) {
    if s.len() <= MAX_PAYLOAD {
        return (s, None);
    }
    let mut end = MAX_PAYLOAD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let len = s.len() as u64;
    (s[..end].to_owned(), Some(len))
}

/// One HTTP exchange as an `http` record (seq and time are set by the caller), secrets redacted.
fn http_record_of(x: &crate::runner::HttpExchange, redactor: &Redactor) -> Record {
    let (path, query) = redacted_path_and_query(&x.url, redactor);
    let headers = x
        .request_headers
        .iter()
        .map(|(k, v)| {
            let v = redact_header(k, v);
            (k.clone(), redactor.redact_str(&v).into_owned())
        })
        .collect();
    let (body, truncated) = cut_body(redact_text(&x.response_body, redactor, true));
    Record {
        seq: 0,
        t_ms: 0.0,
        conn: None,
        dir: Dir::Sent,
        kind: Kind::Http,
        text: None,
        base64: None,
        close: None,
        error: None,
        truncated: None,
        http: Some(HttpRec {
            request: HttpRequestRec {
                method: x.method.to_ascii_uppercase(),
                path,
                query,
                headers,
                body: x
                    .request_body
                    .as_ref()
                    .map(|b| cut_body(redact_text(b, redactor, true)).0),
            },
            response: HttpResponseRec {
                status: x.status,
                content_type: x.content_type.clone(),
                body,
                truncated,
            },
            duration_ms: Some(x.duration_ms),
        }),
    }
}

/// One runner frame as a record (seq, time and connection are set by the caller); `None` for what
/// is not a record (the handshake, the end after a completed close handshake).
fn record_of(f: &FrameRecord, redactor: &Redactor) -> Option<Record> {
    let dir = match f.dir {
        Direction::Sent => Dir::Sent,
        Direction::Received => Dir::Received,
    };
    let mut r = Record {
        seq: 0,
        t_ms: 0.0,
        conn: None,
        dir,
        kind: Kind::Text,
        text: None,
        base64: None,
        close: None,
        error: None,
        truncated: None,
        http: None,
    };
    match f.kind {
        FrameKind::Handshake => return None,
        FrameKind::Text => {
            let mut t = f.text.clone().unwrap_or_default();
            if f.len > MAX_PAYLOAD {
                // The runner marks its cut; the record says so with `truncated` instead.
                t = t.trim_end_matches("…(truncated)").to_owned();
                r.truncated = Some(f.len as u64);
            }
            r.text = Some(redact_text(&t, redactor, f.dir == Direction::Sent));
        }
        FrameKind::Binary | FrameKind::Ping | FrameKind::Pong => {
            r.kind = match f.kind {
                FrameKind::Binary => Kind::Binary,
                FrameKind::Ping => Kind::Ping,
                _ => Kind::Pong,
            };
            r.base64 = Some(f.text.clone().unwrap_or_default());
            if f.len > MAX_PAYLOAD {
                r.truncated = Some(f.len as u64);
            }
        }
        FrameKind::Close => {
            r.kind = Kind::Close;
            r.close = Some(parse_close_note(f.note.as_deref()));
        }
        FrameKind::End => {
            // The runner notes a clean end (after the close handshake) as "connection closed".
            let note = f.note.as_deref().unwrap_or("");
            if note == "connection closed" {
                return None;
            }
            r.kind = Kind::End;
            r.error = Some(note.to_owned());
        }
    }
    Some(r)
}

/// `close 1000 bye` / `close 1000` / `close (no status code)` / none → the close body.
fn parse_close_note(note: Option<&str>) -> CloseRec {
    let Some(rest) = note.and_then(|n| n.strip_prefix("close ")) else {
        return CloseRec::default();
    };
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    match code.parse::<u16>() {
        Ok(code) => CloseRec {
            code: Some(code),
            reason: Some(reason.to_owned()),
        },
        Err(_) => CloseRec::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::HttpExchange;

    const HEADER: &str = r#"{"wschat_transcript":1,"tool":"hand-written","recorded_at":"2026-03-01T10:00:00Z","scenario":"s","target":"ws://h/ws?token=[REDACTED]","handshake":{"request":{"path":"/ws","query":{"token":"[REDACTED]"},"headers":{}},"response":{"status":101,"headers":{},"subprotocol":null}}}"#;

    fn file(lines: &[&str]) -> String {
        let mut s = HEADER.to_owned();
        for l in lines {
            s.push('\n');
            s.push_str(l);
        }
        s
    }

    #[test]
    fn reads_and_round_trips() {
        let text = file(&[
            r#"{"seq":0,"t_ms":1.0,"dir":"received","kind":"text","text":"{\"type\":\"hello\"}"}"#,
            r#"{"seq":1,"t_ms":2.5,"dir":"sent","kind":"close","close":{"code":1000,"reason":"bye"}}"#,
            r#"{"seq":2,"t_ms":3.0,"dir":"received","kind":"close","close":{}}"#,
        ]);
        let t = parse(Path::new("x.jsonl"), &text).unwrap();
        assert_eq!(t.records.len(), 3);
        assert_eq!(t.scenario_name(), "s");
        let again = parse(Path::new("x.jsonl"), &t.to_jsonl()).unwrap();
        assert_eq!(again.header, t.header);
        assert_eq!(again.records, t.records);
    }

    #[test]
    fn structural_errors_name_the_line() {
        let cases = [
            (
                r#"{"seq":1,"t_ms":1.0,"dir":"received","kind":"text","text":"x"}"#,
                "seq 1 out of order",
            ),
            (
                r#"{"seq":0,"t_ms":1.0,"dir":"received","kind":"text","base64":""}"#,
                "exactly the payload field `text`",
            ),
            (
                r#"{"seq":0,"t_ms":1.0,"dir":"received","kind":"text","text":"x","extra":1}"#,
                "unknown field",
            ),
            (
                r#"{"seq":0,"t_ms":1.0,"conn":"other","dir":"received","kind":"end"}"#,
                "not declared",
            ),
        ];
        for (line, want) in cases {
            let e = parse(Path::new("f.jsonl"), &file(&[line]))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("f.jsonl:2: "), "{e}");
            assert!(e.contains(want), "{e} should contain {want}");
        }
        let back = file(&[
            r#"{"seq":0,"t_ms":5.0,"dir":"received","kind":"end"}"#,
            r#"{"seq":1,"t_ms":4.0,"dir":"received","kind":"end"}"#,
        ]);
        let e = parse(Path::new("f.jsonl"), &back).unwrap_err().to_string();
        assert!(e.contains("f.jsonl:3:") && e.contains("before"), "{e}");
        let v2 = HEADER.replace("\"wschat_transcript\":1", "\"wschat_transcript\":2");
        let e = parse(Path::new("f.jsonl"), &v2).unwrap_err().to_string();
        assert!(e.contains("version 2 is not supported"), "{e}");
    }

    #[test]
    fn redaction() {
        let r = Redactor::default();
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl";
        let out = redact_text(&format!(r#"{{"type":"auth","token":"{jwt}"}}"#), &r, true);
        assert_eq!(out, r#"{"type":"auth","token":"[REDACTED]"}"#);
        let out = redact_text(
            &format!(r#"{{"type":"x","note":"Bearer {jwt}"}}"#),
            &r,
            false,
        );
        assert!(!out.contains(jwt), "{out}");
        // Untouched JSON keeps its exact text (not re-serialized).
        assert_eq!(
            redact_text(r#"{"b":1, "a":2}"#, &r, true),
            r#"{"b":1, "a":2}"#
        );
        // A sent auth message loses its credential, and only the member's own value: equal text
        // elsewhere and the spacing stay.
        assert_eq!(
            redact_text(
                r#"{"type": "auth", "token" : "s3cret-value", "note": "s3cret-value"}"#,
                &r,
                true
            ),
            r#"{"type": "auth", "token" : "[REDACTED]", "note": "s3cret-value"}"#
        );
    }

    #[test]
    fn received_protocol_content_is_never_rewritten_by_name() {
        // Shape A streams the answer in `token` members; `partial_response` repeats the text.
        let r = Redactor::default();
        for frame in [
            r#"{"type":"token","token":"Hello","partial_response":"Hello"}"#,
            r#"{"type":"token","token":" world","partial_response":"Hello world"}"#,
            r#"{"type":"auth_success","password":"not a credential to this test"}"#,
        ] {
            assert_eq!(redact_text(frame, &r, false), frame);
        }
        // A JWT is still removed from a received frame.
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl";
        let out = redact_text(
            &format!(r#"{{"type":"auth_success","session":"{jwt}"}}"#),
            &r,
            false,
        );
        assert_eq!(out, r#"{"type":"auth_success","session":"[REDACTED]"}"#);
        assert_eq!(
            redact_url("ws://h:1/ws?token=abc&room=r"),
            "ws://h:1/ws?token=[REDACTED]&room=r"
        );
        let (p, q) = split_url("ws://h:1/a/b?api_key=k&x=1");
        assert_eq!(p, "/a/b");
        assert_eq!(q["api_key"], REDACTED);
        assert_eq!(q["x"], "1");
    }

    #[test]
    fn close_notes() {
        assert_eq!(
            parse_close_note(Some("close 1000 bye now")),
            CloseRec {
                code: Some(1000),
                reason: Some("bye now".into())
            }
        );
        assert_eq!(
            parse_close_note(Some("close (no status code)")),
            CloseRec::default()
        );
        assert_eq!(parse_close_note(None), CloseRec::default());
    }

    fn frame(
        at_us: u64,
        dir: Direction,
        kind: FrameKind,
        text: Option<&str>,
        note: Option<&str>,
    ) -> FrameRecord {
        FrameRecord {
            seq: 0,
            at_us,
            dir,
            kind,
            len: text.map_or(0, str::len),
            text: text.map(str::to_owned),
            json: None,
            note: note.map(str::to_owned),
        }
    }

    #[test]
    fn from_result_merges_connections_in_time_order() {
        use crate::runner::{Status, Transcript};
        let main = Transcript {
            conn: "main".into(),
            url: "ws://h:1/ws/a?token=secret".into(),
            frames: vec![
                frame(
                    1_000,
                    Direction::Received,
                    FrameKind::Handshake,
                    Some("GET"),
                    Some("101 Switching Protocols (subprotocol chat.v1)"),
                ),
                frame(
                    2_000,
                    Direction::Received,
                    FrameKind::Text,
                    Some(r#"{"type":"hello"}"#),
                    None,
                ),
                frame(
                    5_000,
                    Direction::Sent,
                    FrameKind::Close,
                    None,
                    Some("close 1000 bye"),
                ),
                frame(
                    6_000,
                    Direction::Received,
                    FrameKind::End,
                    None,
                    Some("connection closed"),
                ),
            ],
            dropped: 0,
        };
        let second = Transcript {
            conn: "second".into(),
            url: "ws://h:1/ws/b".into(),
            frames: vec![
                frame(
                    3_000,
                    Direction::Received,
                    FrameKind::Handshake,
                    Some("GET"),
                    Some("101 Switching Protocols"),
                ),
                frame(
                    4_000,
                    Direction::Received,
                    FrameKind::End,
                    None,
                    Some("connection ended without a close frame"),
                ),
            ],
            dropped: 0,
        };
        let result = ScenarioResult {
            name: "s".into(),
            description: None,
            location: "s.yaml:1:1".into(),
            file: "s.yaml".into(),
            level: crate::scenario::Level::Must,
            tags: vec![],
            status: Status::Passed,
            skip_reason: None,
            duration: std::time::Duration::ZERO,
            attempts: 1,
            steps: vec![],
            failures: vec![],
            // Out of order on purpose: the file orders connections by when they opened.
            transcripts: vec![second, main],
            timings: vec![],
            http: vec![],
        };
        let t = from_result(
            &result,
            "/type",
            "2026-01-01T00:00:00Z",
            &Redactor::default(),
        )
        .unwrap();
        assert_eq!(t.header.target, "ws://h:1/ws/a?token=[REDACTED]");
        assert_eq!(
            t.header
                .handshake
                .as_ref()
                .and_then(|h| h.response.subprotocol.as_deref()),
            Some("chat.v1")
        );
        assert_eq!(t.header.connections["second"].t_ms, 2.0);
        let kinds: Vec<(u64, f64, Option<&str>, Kind)> = t
            .records
            .iter()
            .map(|r| (r.seq, r.t_ms, r.conn.as_deref(), r.kind))
            .collect();
        // The clean end of `main` (after its close handshake) is not a record; the drop of `second` is.
        assert_eq!(
            kinds,
            vec![
                (0, 1.0, None, Kind::Text),
                (1, 3.0, Some("second"), Kind::End),
                (2, 4.0, None, Kind::Close),
            ]
        );
        // What was written reads back and passes the structural checks.
        let again = parse(Path::new("s.jsonl"), &t.to_jsonl()).unwrap();
        assert_eq!(again.records, t.records);
    }

    fn exchange(at_us: u64, url: &str, status: u16, upgrade_conn: Option<&str>) -> HttpExchange {
        HttpExchange {
            at_us,
            method: "POST".into(),
            url: url.into(),
            request_headers: vec![("Authorization".into(), "Bearer ***".into())],
            request_body: Some(r#"{"password":"hunter2","title":"t"}"#.into()),
            status,
            content_type: Some("application/json".into()),
            response_body: r#"{"session_id":"s-1"}"#.into(),
            duration_ms: 1.5,
            upgrade_conn: upgrade_conn.map(str::to_owned),
        }
    }

    fn result_with(transcripts: Vec<Transcript>, http: Vec<HttpExchange>) -> ScenarioResult {
        ScenarioResult {
            name: "h".into(),
            description: None,
            location: "h.yaml:1:1".into(),
            file: "h.yaml".into(),
            level: crate::scenario::Level::Must,
            tags: vec![],
            status: crate::runner::Status::Passed,
            skip_reason: None,
            duration: std::time::Duration::ZERO,
            attempts: 1,
            steps: vec![],
            failures: vec![],
            transcripts,
            timings: vec![],
            http,
        }
    }

    #[test]
    fn http_exchanges_and_refusals_are_recorded() {
        let main = Transcript {
            conn: "main".into(),
            url: "ws://h:1/ws/s-1".into(),
            frames: vec![
                frame(
                    2_000,
                    Direction::Received,
                    FrameKind::Handshake,
                    Some("GET"),
                    Some("101 Switching Protocols"),
                ),
                frame(
                    3_000,
                    Direction::Received,
                    FrameKind::Text,
                    Some(r#"{"type":"connected"}"#),
                    None,
                ),
            ],
            dropped: 0,
        };
        let result = result_with(
            vec![main],
            vec![
                exchange(1_000, "http://h:1/api/sessions?api_key=k&x=1", 201, None),
                exchange(4_000, "ws://h:1/ws/s-1?token=***", 401, Some("second")),
            ],
        );
        let t = from_result(
            &result,
            "/type",
            "2026-01-01T00:00:00Z",
            &Redactor::default(),
        )
        .unwrap();
        let x = &t.records[0];
        assert_eq!((x.kind, x.dir, x.t_ms), (Kind::Http, Dir::Sent, -1.0));
        let h = x.http.as_ref().unwrap();
        assert_eq!(h.request.path, "/api/sessions");
        assert_eq!(h.request.query["api_key"], REDACTED);
        assert_eq!(h.request.query["x"], "1");
        assert_eq!(h.request.headers["Authorization"], "Bearer [REDACTED]");
        assert_eq!(
            h.request.body.as_deref(),
            Some(r#"{"password":"[REDACTED]","title":"t"}"#)
        );
        assert_eq!(h.response.status, 201);
        assert_eq!(t.records[1].kind, Kind::Text);
        // The refused upgrade is a connection with the refusal as its response, and no records.
        let second = &t.header.connections["second"];
        assert_eq!(second.t_ms, 2.0);
        assert_eq!(second.handshake.response.status, 401);
        assert_eq!(second.handshake.request.query["token"], REDACTED);
        assert_eq!(t.connection_order(), vec!["main", "second"]);
        assert_eq!(t.records_of(MAIN).count(), 1);
        assert_eq!(t.http_exchanges().count(), 1);
        let again = parse(Path::new("h.jsonl"), &t.to_jsonl()).unwrap();
        assert_eq!(again.records, t.records);
        assert_eq!(again.header, t.header);

        // HTTP steps only: no handshake, times from the first request.
        let only = result_with(
            vec![],
            vec![exchange(7_000, "http://h:1/healthz", 200, None)],
        );
        let t = from_result(&only, "/type", "2026-01-01T00:00:00Z", &Redactor::default()).unwrap();
        assert!(t.header.handshake.is_none());
        assert_eq!(t.header.target, "http://h:1/healthz");
        assert_eq!(t.records[0].t_ms, 0.0);
        assert!(t.connection_order().is_empty());
        parse(Path::new("h.jsonl"), &t.to_jsonl()).unwrap();
        // Nothing at all: nothing to record.
        assert!(from_result(
            &result_with(vec![], vec![]),
            "/type",
            "x",
            &Redactor::default()
        )
        .is_none());
    }

    #[test]
    fn http_record_structure() {
        let http = r#""http":{"request":{"method":"GET","path":"/x"},"response":{"status":200,"body":""}}"#;
        let ok = format!(r#"{{"seq":0,"t_ms":-1.0,"dir":"sent","kind":"http",{http}}}"#);
        parse(Path::new("f.jsonl"), &file(&[&ok])).unwrap();
        let cases = [
            (
                format!(r#"{{"seq":0,"t_ms":1.0,"dir":"received","kind":"http",{http}}}"#),
                "dir: \"sent\"",
            ),
            (
                format!(r#"{{"seq":0,"t_ms":1.0,"conn":"main","dir":"sent","kind":"http",{http}}}"#),
                "belongs to no connection",
            ),
            (
                r#"{"seq":0,"t_ms":1.0,"dir":"sent","kind":"http","text":"x"}"#.to_owned(),
                "exactly the payload field `http`",
            ),
            (
                r#"{"seq":0,"t_ms":1.0,"dir":"sent","kind":"http","http":{"request":{"method":"GET","path":"x"},"response":{"status":200,"body":""}}}"#.to_owned(),
                "a path starting with `/`",
            ),
            (
                r#"{"seq":0,"t_ms":1.0,"dir":"sent","kind":"http","http":{"request":{"method":"GET","path":"/x"},"response":{"status":42,"body":""}}}"#.to_owned(),
                "not between 100 and 599",
            ),
        ];
        for (line, want) in cases {
            let e = parse(Path::new("f.jsonl"), &file(&[&line]))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("f.jsonl:2: ") && e.contains(want),
                "{e} should contain {want}"
            );
        }
        // Without a handshake, a frame record must name its connection.
        let no_hs = r#"{"wschat_transcript":1,"tool":"t","recorded_at":"x","scenario":"s","target":"http://h/"}"#;
        let text = format!(
            "{no_hs}\n{}",
            r#"{"seq":0,"t_ms":0.0,"dir":"received","kind":"end"}"#
        );
        let e = parse(Path::new("f.jsonl"), &text).unwrap_err().to_string();
        assert!(e.contains("no `handshake`"), "{e}");
    }
}
