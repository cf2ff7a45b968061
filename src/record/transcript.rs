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
    pub handshake: HandshakeRec,
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

    /// Connection names in the order they were opened: `main`, then `connections` by `t_ms`.
    pub fn connection_order(&self) -> Vec<String> {
        let mut others: Vec<(&String, f64)> = self
            .header
            .connections
            .iter()
            .map(|(n, c)| (n, c.t_ms))
            .collect();
        others.sort_by(|a, b| a.1.total_cmp(&b.1));
        std::iter::once(MAIN.to_owned())
            .chain(others.into_iter().map(|(n, _)| n.clone()))
            .collect()
    }

    /// The handshake of a connection.
    pub fn handshake(&self, conn: &str) -> Option<&HandshakeRec> {
        if conn == MAIN {
            Some(&self.header.handshake)
        } else {
            self.header.connections.get(conn).map(|c| &c.handshake)
        }
    }

    /// The records of one connection, in order.
    pub fn records_of<'a>(&'a self, conn: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.records.iter().filter(move |r| r.conn_name() == conn)
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
    let text = std::fs::read_to_string(path).map_err(|source| TranscriptError::Read {
        path: path.to_owned(),
        source,
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
        if r.conn_name() == MAIN && header.handshake.response.status != 101 {
            return Err(at(
                n,
                format!(
                    "seq {}: the main connection was refused (status {}), so it can have no frame records",
                    r.seq, header.handshake.response.status
                ),
            ));
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
    ]
    .into_iter()
    .filter_map(|(n, p)| p.then_some(n))
    .collect();
    let want: &[&str] = match r.kind {
        Kind::Text => &["text"],
        Kind::Binary | Kind::Ping | Kind::Pong => &["base64"],
        Kind::Close => &["close"],
        Kind::End => &[],
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

/// Redacts a text frame: secret JSON members (the JSON is re-serialized only when something was
/// replaced), JSON Web Tokens anywhere, then the named secrets of `redactor`.
pub fn redact_text(text: &str, redactor: &Redactor) -> String {
    let mut out = text.to_owned();
    if let Ok(mut v) = serde_json::from_str::<Value>(text) {
        let mut secrets = Vec::new();
        collect_secret_members(&v, &mut secrets);
        if !secrets.is_empty() {
            // Replace the values in the wire text, so member order and spacing stay as sent.
            for s in &secrets {
                let quoted = serde_json::to_string(s).expect("a string serializes");
                out = out.replace(&quoted, &format!("\"{REDACTED}\""));
            }
            // A server escaping differently (`\u` escapes) defeats the textual replacement: then
            // re-serialize.
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
    if out.contains("eyJ") {
        out = JWT.replace_all(&out, REDACTED).into_owned();
    }
    redactor.redact_str(&out).into_owned()
}

fn is_secret_member(k: &str) -> bool {
    SECRET_MEMBERS.iter().any(|s| s.eq_ignore_ascii_case(k))
}

/// String values of secret members (not yet redacted), at any depth.
fn collect_secret_members(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| collect_secret_members(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                match x {
                    Value::String(s) if is_secret_member(k) => {
                        if s != REDACTED && !s.is_empty() {
                            out.push(s.clone());
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
    let main_idx = conns.iter().position(|t| t.conn == MAIN).unwrap_or(0);
    let main = *conns.get(main_idx)?;
    let origin_us = opened(main);
    let ms = |at_us: u64| at_us.saturating_sub(origin_us) as f64 / 1000.0;

    // The main connection keeps the name `main` in the file, whatever the scenario called it.
    let file_name = |t: &Transcript| -> String {
        if std::ptr::eq(t, main) {
            MAIN.to_owned()
        } else if t.conn == MAIN {
            // Cannot happen (main is the one named main when there is one); kept total.
            format!("{}-2", t.conn)
        } else {
            t.conn.clone()
        }
    };
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
    for t in &conns {
        if std::ptr::eq(*t, main) {
            continue;
        }
        connections.insert(
            file_name(t),
            ConnectionRec {
                target: redact_url(&t.url),
                t_ms: ms(opened(t)),
                handshake: handshake_of(t),
            },
        );
    }

    let mut merged: Vec<(u64, usize, &FrameRecord, String)> = Vec::new();
    for (ci, t) in conns.iter().enumerate() {
        let name = file_name(t);
        for f in &t.frames {
            merged.push((f.at_us, ci, f, name.clone()));
        }
    }
    // Stable sort: frames of one connection keep their order when their stamps are equal.
    merged.sort_by_key(|(at, _, _, _)| *at);
    let mut records = Vec::new();
    for (at, _, f, name) in merged {
        let Some(mut r) = record_of(f, redactor) else {
            continue;
        };
        r.seq = records.len() as u64;
        r.t_ms = ms(at);
        r.conn = (name != MAIN).then_some(name);
        records.push(r);
    }
    Some(TranscriptFile {
        path: PathBuf::new(),
        header: Header {
            wschat_transcript: VERSION,
            tool: format!("wschat-check {}", env!("CARGO_PKG_VERSION")),
            recorded_at: recorded_at.to_owned(),
            scenario: Some(result.name.clone()),
            target: redact_url(&main.url),
            discriminator: Some(discriminator.to_owned()),
            handshake: handshake_of(main),
            connections,
            description: result.description.clone(),
            expect: None,
        },
        records,
    })
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
            r.text = Some(redact_text(&t, redactor));
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
        let out = redact_text(&format!(r#"{{"type":"auth","token":"{jwt}"}}"#), &r);
        assert_eq!(out, r#"{"type":"auth","token":"[REDACTED]"}"#);
        let out = redact_text(&format!(r#"{{"type":"x","note":"Bearer {jwt}"}}"#), &r);
        assert!(!out.contains(jwt), "{out}");
        // Untouched JSON keeps its exact text (not re-serialized).
        assert_eq!(redact_text(r#"{"b":1, "a":2}"#, &r), r#"{"b":1, "a":2}"#);
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
            t.header.handshake.response.subprotocol.as_deref(),
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
}
