//! `wschat-check record --interactive`: a conversation typed (or piped) by hand, recorded as a
//! transcript (`docs/TRANSCRIPT.md`), secrets redacted.
//!
//! Each input line is a command ([`super::repl_command`]): a JSON message, plain text, or a
//! `:command` (ping, close, connect, http, wait, sleep). Frames print as they arrive, with the time
//! since their connection's upgrade. Over a pipe a session is deterministic: after a frame is sent,
//! the next send (or close, connect, end of input) first waits until the server is quiet for
//! `--settle`, unless a `:wait` or `:sleep` came in between; so each line is its own exchange and
//! `msg` / `:wait token` / `cancel` sends the cancel mid-stream.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::repl_command::{parse, render_env, Command};
use super::transcript::{
    redact_header, redact_text, redact_url, split_url, CloseRec, ConnectionRec, Dir, HandshakeRec,
    Header, HttpRec, HttpRequestRec, HttpResponseRec, Kind, Record, RequestRec, ResponseRec,
    TranscriptFile, MAIN,
};
use crate::check::report_error;
use crate::cli::{EXIT_ENV, EXIT_OK, EXIT_USAGE};
use crate::report::Redactor;
use crate::transport::ws::{self, ConnectError, ConnectRequest, Incoming, WsConnection, WsEvent};

/// Default silence that ends an exchange over a pipe.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(500);
/// Default bound of every wait.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Payloads longer than this are shortened on screen (never in the transcript).
const SHOW: usize = 200;
/// Bodies and payloads kept in the transcript.
const MAX_PAYLOAD: usize = 64 * 1024;

/// Everything a session needs.
pub struct SessionOptions {
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub subprotocols: Vec<String>,
    pub out: PathBuf,
    pub name: String,
    pub settle: Duration,
    pub timeout: Duration,
    /// JSON pointer of the discriminator (`:wait TYPE`).
    pub discriminator: String,
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub redactor: Redactor,
    /// Wait for silence after every send (a pipe); `false` at a terminal.
    pub settle_sends: bool,
    pub color: bool,
}

/// The session used by `init --target --send`: a script of lines, no terminal.
pub struct ScriptedSession {
    pub target: String,
    pub headers: Vec<String>,
    pub out: PathBuf,
    pub settle: Option<Duration>,
    pub script: String,
}

/// Records `s.script` against `s.target` into `s.out` (errors are reported here).
pub fn record_script(s: ScriptedSession) -> Result<u8, u8> {
    let headers = parse_headers(&s.headers)?;
    let mut redactor = Redactor::new(Vec::new());
    redactor.add_env_tokens();
    let opts = SessionOptions {
        target: render_env(&s.target).map_err(usage)?,
        headers,
        subprotocols: Vec::new(),
        out: s.out,
        name: "session".into(),
        settle: s.settle.unwrap_or(DEFAULT_SETTLE),
        timeout: DEFAULT_TIMEOUT,
        discriminator: "/type".into(),
        tls: None,
        redactor,
        settle_sends: true,
        color: false,
    };
    run_session(opts, Box::new(std::io::Cursor::new(s.script.into_bytes())))
}

fn usage(e: String) -> u8 {
    report_error(e);
    EXIT_USAGE
}

/// `--header 'Name: value'` values, with `${env:..}` rendered.
pub fn parse_headers(raw: &[String]) -> Result<Vec<(String, String)>, u8> {
    raw.iter()
        .map(|h| match h.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_owned(), render_env(v.trim()).map_err(usage)?))
            }
            _ => Err(usage(format!("--header {h:?}: expected 'Name: value'"))),
        })
        .collect()
}

/// Whether stdin is a terminal (then lines are sent at once and nothing settles).
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Runs a session reading commands from `input`; writes the transcript; the exit code.
pub fn run_session(opts: SessionOptions, input: Box<dyn BufRead + Send>) -> Result<u8, u8> {
    let rt = crate::check::runtime()?;
    rt.block_on(async move {
        // Lines come from a blocking thread, so frames keep printing while a person types.
        let (tx, mut rx) = mpsc::unbounded_channel::<std::io::Result<String>>();
        std::thread::spawn(move || {
            for line in input.lines() {
                let stop = line.is_err();
                if tx.send(line).is_err() || stop {
                    break;
                }
            }
        });
        let mut s = Session::new(opts);
        s.connect(None).await;
        let mut line_no = 0usize;
        loop {
            let line = tokio::select! {
                l = rx.recv() => l,
                _ = s.pump_any() => continue,
            };
            let Some(line) = line else { break };
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    report_error(format!("cannot read the input: {e}"));
                    break;
                }
            };
            line_no += 1;
            match parse(&line) {
                Ok(None) => {}
                Ok(Some(Command::Quit)) => break,
                Ok(Some(cmd)) => s.run(cmd, line_no).await,
                Err(e) => eprintln!("line {line_no}: {e}"),
            }
        }
        s.finish().await
    })
}

/// One connection of the session.
struct Conn {
    name: String,
    ws: Option<WsConnection>,
    /// When its upgrade completed (its frames' display times count from here).
    opened_at: Instant,
    open: bool,
}

struct Session {
    opts: SessionOptions,
    started: Instant,
    /// The main connection's upgrade (t_ms 0); the session start until one is accepted.
    base: Option<Instant>,
    conns: Vec<Conn>,
    /// (when, record); sorted and numbered at the end.
    records: Vec<(Instant, Record)>,
    header_main: Option<(String, HandshakeRec)>,
    others: Vec<(String, String, Instant, HandshakeRec)>,
    unsettled: bool,
    http: Option<crate::transport::http::HttpClient>,
}

impl Session {
    fn new(opts: SessionOptions) -> Self {
        Session {
            opts,
            started: Instant::now(),
            base: None,
            conns: Vec::new(),
            records: Vec::new(),
            header_main: None,
            others: Vec::new(),
            unsettled: false,
            http: None,
        }
    }

    fn ms(&self, at: Instant) -> f64 {
        let base = self.base.unwrap_or(self.started);
        if at >= base {
            at.duration_since(base).as_secs_f64() * 1000.0
        } else {
            -(base.duration_since(at).as_secs_f64() * 1000.0)
        }
    }

    fn newest(&mut self) -> Option<&mut Conn> {
        self.conns.iter_mut().rev().find(|c| c.open)
    }

    fn print(&self, conn: &str, dir: Dir, at: Instant, opened_at: Instant, what: &str) {
        let arrow = if dir == Dir::Sent { "→" } else { "←" };
        let t = at.saturating_duration_since(opened_at).as_secs_f64() * 1000.0;
        let what = self.opts.redactor.redact_str(what).into_owned();
        let shown = if what.chars().count() > SHOW {
            format!(
                "{}… ({} bytes)",
                what.chars().take(SHOW).collect::<String>(),
                what.len()
            )
        } else {
            what
        };
        if self.opts.color {
            let c = if dir == Dir::Sent {
                "\x1b[36m"
            } else {
                "\x1b[32m"
            };
            println!("{c}{arrow} {conn} +{t:.1}ms\x1b[0m {shown}");
        } else {
            println!("{arrow} {conn} +{t:.1}ms {shown}");
        }
    }

    async fn run(&mut self, cmd: Command, line: usize) {
        match cmd {
            Command::Quit => {}
            Command::Help => eprintln!("{}", super::repl_command::HELP),
            Command::Text(t) | Command::Json(t) => {
                self.settle_if_needed().await;
                self.send(Message::text(t.clone()), Kind::Text, Some(t), None)
                    .await;
            }
            Command::Binary(b) => {
                self.settle_if_needed().await;
                let len = b.len();
                self.send(
                    Message::binary(b.clone()),
                    Kind::Binary,
                    Some(format!("binary ({len} bytes)")),
                    Some(b),
                )
                .await;
            }
            Command::Ping(p) => {
                self.settle_if_needed().await;
                let shown = format!("ping {:?}", String::from_utf8_lossy(&p));
                self.send(
                    Message::Ping(p.clone().into()),
                    Kind::Ping,
                    Some(shown),
                    Some(p),
                )
                .await;
            }
            Command::Close(code, reason) => {
                self.settle_if_needed().await;
                self.close_newest(code, &reason).await;
            }
            Command::Connect(to) => {
                self.settle_if_needed().await;
                self.connect(to).await;
            }
            Command::Http {
                method,
                target,
                body,
            } => {
                self.settle_if_needed().await;
                self.http(&method, &target, body).await;
            }
            Command::Wait(w) => {
                self.unsettled = false;
                self.wait(w, line).await;
            }
            Command::Sleep(d) => {
                self.unsettled = false;
                let until = tokio::time::Instant::now() + d;
                while tokio::time::Instant::now() < until {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        _ = self.pump_any() => {}
                    }
                }
            }
        }
    }

    async fn settle_if_needed(&mut self) {
        if self.unsettled && self.opts.settle_sends {
            self.wait(super::repl_command::Wait::Quiet(None), 0).await;
        }
        self.unsettled = false;
    }

    /// The URL of `:connect ARG`: a full URL, a path on the target's origin, or the target.
    fn connect_url(&self, to: Option<&str>) -> String {
        match to {
            None => self.opts.target.clone(),
            Some(u) if u.contains("://") => u.to_owned(),
            Some(path) => {
                let t = &self.opts.target;
                let origin_end = t
                    .split_once("://")
                    .map(|(s, rest)| s.len() + 3 + rest.find('/').unwrap_or(rest.len()))
                    .unwrap_or(t.len());
                let origin = &t[..origin_end];
                let query = t.split_once('?').map(|(_, q)| q);
                let path = if path.starts_with('/') {
                    path.to_owned()
                } else {
                    format!("/{path}")
                };
                match query {
                    Some(q) if !path.contains('?') => format!("{origin}{path}?{q}"),
                    _ => format!("{origin}{path}"),
                }
            }
        }
    }

    async fn connect(&mut self, to: Option<String>) {
        let url = self.connect_url(to.as_deref());
        let name = if self.conns.is_empty() && self.header_main.is_none() {
            MAIN.to_owned()
        } else {
            format!(
                "c{}",
                self.conns.len() + 1 + usize::from(self.conns.is_empty())
            )
        };
        let req = ConnectRequest {
            url: url.clone(),
            headers: self.opts.headers.clone(),
            subprotocols: self.opts.subprotocols.clone(),
            timeout: self.opts.timeout,
            max_frame_bytes: 16 * 1024 * 1024,
            tls: self.opts.tls.clone(),
            read_buffer: ws::READ_BUFFER,
        };
        let (path, query) = split_url(&url);
        let request = RequestRec {
            path,
            query,
            headers: self
                .opts
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), redact_header(k, v)))
                .collect(),
            subprotocols: (!self.opts.subprotocols.is_empty())
                .then(|| self.opts.subprotocols.clone()),
        };
        let shown = redact_url(&url);
        let at = Instant::now();
        match ws::connect(&req).await {
            Ok(c) => {
                let opened_at = c.handshake.completed_at;
                if self.base.is_none() {
                    self.base = Some(opened_at);
                }
                let response = ResponseRec {
                    status: c.handshake.status,
                    headers: kept_headers(&c.handshake.headers),
                    subprotocol: c.handshake.subprotocol.clone(),
                    body: None,
                };
                eprintln!(
                    "connected {name} to {shown} ({} ms)",
                    c.handshake.duration.as_millis()
                );
                // Over a pipe the greeting is an exchange of its own: the first line waits for it.
                self.unsettled = true;
                self.remember(&name, &shown, opened_at, HandshakeRec { request, response });
                self.conns.push(Conn {
                    name,
                    ws: Some(c),
                    opened_at,
                    open: true,
                });
            }
            Err(ConnectError::Refused(r)) => {
                let body: String = r.body.chars().take(MAX_PAYLOAD).collect();
                eprintln!(
                    "refused {name} at {shown}: {} {}",
                    r.status_line,
                    if body.is_empty() {
                        "(empty body)".to_owned()
                    } else {
                        body.clone()
                    }
                );
                if let Some(h) = r.hint() {
                    eprintln!("  hint: {h}");
                }
                let response = ResponseRec {
                    status: r.status,
                    headers: kept_headers(&r.headers),
                    subprotocol: None,
                    body: Some(redact_text(&body, &self.opts.redactor, true)),
                };
                self.remember(&name, &shown, at, HandshakeRec { request, response });
                self.conns.push(Conn {
                    name,
                    ws: None,
                    opened_at: at,
                    open: false,
                });
            }
            Err(e) => eprintln!("cannot connect to {shown}: {e}"),
        }
    }

    fn remember(&mut self, name: &str, target: &str, at: Instant, hs: HandshakeRec) {
        if name == MAIN {
            self.header_main = Some((target.to_owned(), hs));
        } else {
            self.others
                .push((name.to_owned(), target.to_owned(), at, hs));
        }
    }

    async fn send(
        &mut self,
        msg: Message,
        kind: Kind,
        shown: Option<String>,
        bytes: Option<Vec<u8>>,
    ) {
        let Some(conn) = self.newest() else {
            eprintln!("not connected: `:connect` opens a connection");
            return;
        };
        let name = conn.name.clone();
        let opened_at = conn.opened_at;
        let text = match &msg {
            Message::Text(t) => Some(t.to_string()),
            _ => None,
        };
        let res = conn
            .ws
            .as_mut()
            .expect("an open connection has its socket")
            .send(msg)
            .await;
        let at = Instant::now();
        if let Err(e) = res {
            eprintln!("send on {name} failed: {e}");
            return;
        }
        let mut r = record(&name, Dir::Sent, kind);
        match kind {
            Kind::Text => r.text = text.map(|t| redact_text(&t, &self.opts.redactor, true)),
            _ => r.base64 = Some(B64.encode(bytes.unwrap_or_default())),
        }
        let shown = match kind {
            Kind::Text => r.text.clone().unwrap_or_default(),
            _ => shown.unwrap_or_default(),
        };
        self.print(&name, Dir::Sent, at, opened_at, &shown);
        self.records.push((at, r));
        self.unsettled = true;
    }

    async fn close_newest(&mut self, code: u16, reason: &str) {
        let Some(conn) = self.newest() else {
            eprintln!("not connected");
            return;
        };
        let name = conn.name.clone();
        let opened_at = conn.opened_at;
        let res = conn
            .ws
            .as_mut()
            .expect("open")
            .send_close(code, reason)
            .await;
        let at = Instant::now();
        if let Err(e) = res {
            eprintln!("close on {name} failed: {e}");
            return;
        }
        let mut r = record(&name, Dir::Sent, Kind::Close);
        r.close = Some(CloseRec {
            code: Some(code),
            reason: (!reason.is_empty()).then(|| reason.to_owned()),
        });
        self.print(
            &name,
            Dir::Sent,
            at,
            opened_at,
            &format!("close {code} {reason:?}"),
        );
        self.records.push((at, r));
        // The server's close, bounded.
        self.wait(super::repl_command::Wait::Close(None), 0).await;
        if let Some(c) = self.conns.iter_mut().find(|c| c.name == name) {
            c.open = false;
            if let Some(ws) = c.ws.as_mut() {
                ws.release();
            }
        }
    }

    async fn http(&mut self, method: &str, target: &str, body: Option<String>) {
        use crate::transport::http::{Body, HttpClient, HttpRequest};
        let url = if target.contains("://") {
            target.to_owned()
        } else {
            let base = crate::runner::derive_http_base(&self.opts.target);
            format!(
                "{}/{}",
                base.trim_end_matches('/'),
                target.trim_start_matches('/')
            )
        };
        if self.http.is_none() {
            match HttpClient::new(self.opts.tls.clone()) {
                Ok(c) => self.http = Some(c),
                Err(e) => {
                    eprintln!("cannot make an HTTP client: {e}");
                    return;
                }
            }
        }
        let body_value = body
            .as_ref()
            .map(|b| match serde_json::from_str::<Value>(b) {
                Ok(v) => Body::Json(v),
                Err(_) => Body::Text(b.clone()),
            });
        let req = HttpRequest {
            method: method.to_ascii_uppercase(),
            url: url.clone(),
            headers: self.opts.headers.clone(),
            query: Vec::new(),
            body: body_value,
            timeout: self.opts.timeout,
        };
        let at = Instant::now();
        let res = self.http.as_ref().expect("made above").execute(&req).await;
        match res {
            Ok(resp) => {
                println!(
                    "http {} {} → {} {}",
                    req.method,
                    redact_url(&url),
                    resp.status_line,
                    short(&resp.body)
                );
                let (path, query) = split_url(&url);
                let content_type = resp
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                    .map(|(_, v)| v.clone());
                let (rbody, truncated) = cut(&resp.body);
                let mut r = Record {
                    conn: None,
                    ..record(MAIN, Dir::Sent, Kind::Http)
                };
                r.http = Some(HttpRec {
                    request: HttpRequestRec {
                        method: req.method.clone(),
                        path,
                        query,
                        headers: self
                            .opts
                            .headers
                            .iter()
                            .map(|(k, v)| (k.clone(), redact_header(k, v)))
                            .collect(),
                        body: body.map(|b| redact_text(&b, &self.opts.redactor, true)),
                    },
                    response: HttpResponseRec {
                        status: resp.status,
                        content_type,
                        body: redact_text(&rbody, &self.opts.redactor, true),
                        truncated,
                    },
                    duration_ms: Some(resp.duration.as_secs_f64() * 1000.0),
                });
                self.records.push((at, r));
            }
            Err(e) => eprintln!("http {} {}: {e}", req.method, redact_url(&url)),
        }
    }

    /// Takes whatever arrived on any open connection; resolves once something did (for select).
    async fn pump_any(&mut self) {
        let idx: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.conns[i].open)
            .collect();
        if idx.is_empty() {
            std::future::pending::<()>().await;
        }
        // The newest open connection is awaited; others are drained without waiting.
        let newest = *idx.last().expect("not empty");
        for &i in &idx[..idx.len() - 1] {
            while let Some(inc) = self.conns[i].ws.as_mut().and_then(|w| w.rx.try_recv().ok()) {
                self.take(i, inc);
            }
        }
        let got = match self.conns[newest].ws.as_mut() {
            Some(w) => w.rx.recv().await,
            None => None,
        };
        match got {
            Some(inc) => {
                self.take(newest, inc);
            }
            None => self.conns[newest].open = false,
        }
    }

    /// Records and prints one incoming item of connection `i`; its discriminator value.
    fn take(&mut self, i: usize, inc: Incoming) -> Option<String> {
        let name = self.conns[i].name.clone();
        let opened_at = self.conns[i].opened_at;
        let mut r = record(&name, Dir::Received, Kind::Text);
        let mut ty = None;
        let shown = match inc.event {
            WsEvent::Text { text, json } => {
                ty = json.ok().and_then(|v| {
                    crate::json::pointer_get(&v, &self.opts.discriminator)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
                let (t, truncated) = cut(&text);
                r.text = Some(redact_text(&t, &self.opts.redactor, false));
                r.truncated = truncated;
                r.text.clone().unwrap_or_default()
            }
            WsEvent::Binary(b) => {
                r.kind = Kind::Binary;
                r.base64 = Some(B64.encode(&b[..b.len().min(MAX_PAYLOAD)]));
                format!("binary ({} bytes)", b.len())
            }
            WsEvent::Ping(p) => {
                r.kind = Kind::Ping;
                r.base64 = Some(B64.encode(&p));
                format!("ping {:?}", String::from_utf8_lossy(&p))
            }
            WsEvent::Pong(p) => {
                r.kind = Kind::Pong;
                r.base64 = Some(B64.encode(&p));
                ty = Some("$pong".into());
                format!("pong {:?}", String::from_utf8_lossy(&p))
            }
            WsEvent::Close(c) => {
                r.kind = Kind::Close;
                r.close = Some(match &c {
                    Some((code, reason)) => CloseRec {
                        code: Some(*code),
                        reason: (!reason.is_empty()).then(|| reason.clone()),
                    },
                    None => CloseRec::default(),
                });
                ty = Some("$close".into());
                match c {
                    Some((code, reason)) => format!("close {code} {reason:?}"),
                    None => "close (no status code)".into(),
                }
            }
            WsEvent::End(None) => {
                self.conns[i].open = false;
                return Some("$close".into());
            }
            WsEvent::End(Some(e)) => {
                self.conns[i].open = false;
                r.kind = Kind::End;
                r.error = Some(e.to_string());
                ty = Some("$close".into());
                format!("end ({e})")
            }
        };
        self.print(&name, Dir::Received, inc.at, opened_at, &shown);
        self.records.push((inc.at, r));
        ty
    }

    /// `:wait` (quiet), `:wait TYPE`, `:wait close`: bounded by `--timeout` or the given one.
    async fn wait(&mut self, w: super::repl_command::Wait, line: usize) {
        use super::repl_command::Wait;
        let Some(i) = (0..self.conns.len()).rev().find(|&i| self.conns[i].open) else {
            if matches!(w, Wait::Type(..)) {
                eprintln!("line {line}: no open connection to wait on");
            }
            return;
        };
        let bound = match &w {
            Wait::Quiet(t) | Wait::Type(_, t) | Wait::Close(t) => t.unwrap_or(self.opts.timeout),
        };
        let deadline = tokio::time::Instant::now() + bound;
        let mut last = tokio::time::Instant::now();
        loop {
            let until = match &w {
                Wait::Quiet(_) => (last + self.opts.settle).min(deadline),
                _ => deadline,
            };
            let got = match self.conns[i].ws.as_mut() {
                Some(ws) => tokio::time::timeout_at(until, ws.rx.recv()).await,
                None => return,
            };
            match got {
                Ok(Some(inc)) => {
                    let ty = self.take(i, inc);
                    last = tokio::time::Instant::now();
                    let done = match &w {
                        Wait::Quiet(_) => ty.as_deref() == Some("$close"),
                        Wait::Type(t, _) => ty.as_deref() == Some(t.as_str()),
                        Wait::Close(_) => ty.as_deref() == Some("$close"),
                    };
                    if done || !self.conns[i].open {
                        if !done && !matches!(w, Wait::Quiet(_)) {
                            eprintln!("line {line}: the connection ended before {}", w.label());
                        }
                        return;
                    }
                }
                Ok(None) => {
                    self.conns[i].open = false;
                    return;
                }
                Err(_) if until < deadline => return, // quiet
                Err(_) => {
                    if !matches!(w, Wait::Quiet(_)) || self.opts.settle_sends {
                        eprintln!(
                            "warning: line {line}: {} did not happen within {}",
                            w.label(),
                            humantime::format_duration(bound)
                        );
                    }
                    return;
                }
            }
        }
    }

    /// End of input: settle, close what is open, write the transcript.
    async fn finish(mut self) -> Result<u8, u8> {
        self.settle_if_needed().await;
        while let Some(i) = (0..self.conns.len()).rev().find(|&i| self.conns[i].open) {
            let name = self.conns[i].name.clone();
            self.close_newest(1000, "").await;
            if let Some(c) = self.conns.iter_mut().find(|c| c.name == name) {
                c.open = false;
            }
        }
        let Some((target, handshake)) = self.header_main.clone() else {
            if self.records.is_empty() {
                report_error(
                    "nothing to save: no connection was made and no HTTP request answered",
                );
                return Err(EXIT_ENV);
            }
            let target = redact_url(&self.opts.target);
            return self.write(target, None);
        };
        self.write(target, Some(handshake))
    }

    fn write(mut self, target: String, handshake: Option<HandshakeRec>) -> Result<u8, u8> {
        let mut connections = std::collections::BTreeMap::new();
        for (name, t, at, hs) in std::mem::take(&mut self.others) {
            connections.insert(
                name,
                ConnectionRec {
                    target: t,
                    t_ms: self.ms(at),
                    handshake: hs,
                },
            );
        }
        let mut records = std::mem::take(&mut self.records);
        records.sort_by_key(|(at, _)| *at);
        let mut last = f64::MIN;
        let records: Vec<Record> = records
            .into_iter()
            .enumerate()
            .map(|(seq, (at, mut r))| {
                r.seq = seq as u64;
                // Rounded to 0.1 ms, never decreasing.
                let t = (self.ms(at) * 10.0).round() / 10.0;
                last = last.max(t);
                r.t_ms = last;
                r
            })
            .collect();
        let frames = records.iter().filter(|r| r.kind != Kind::Http).count();
        let http = records.len() - frames;
        let file = TranscriptFile {
            path: self.opts.out.clone(),
            header: Header {
                wschat_transcript: 1,
                tool: format!("wschat-check {}", env!("CARGO_PKG_VERSION")),
                recorded_at: humantime::format_rfc3339_seconds(
                    std::time::SystemTime::now() - self.started.elapsed(),
                )
                .to_string(),
                scenario: Some(self.opts.name.clone()),
                target,
                discriminator: Some(self.opts.discriminator.clone()),
                handshake,
                connections,
                description: Some("recorded with record --interactive".into()),
                expect: None,
            },
            records,
        };
        file.write(&self.opts.out).map_err(|e| {
            report_error(e);
            EXIT_ENV
        })?;
        eprintln!(
            "saved {frames} frames ({} connections, {http} http) to {}",
            file.connection_order().len(),
            self.opts.out.display()
        );
        Ok(EXIT_OK)
    }
}

fn record(conn: &str, dir: Dir, kind: Kind) -> Record {
    Record {
        seq: 0,
        t_ms: 0.0,
        conn: (conn != MAIN).then(|| conn.to_owned()),
        dir,
        kind,
        text: None,
        base64: None,
        close: None,
        error: None,
        truncated: None,
        http: None,
    }
}

/// Response headers as a transcript keeps them (hop-by-hop and key headers left out, redacted).
fn kept_headers(h: &[(String, String)]) -> std::collections::BTreeMap<String, String> {
    h.iter()
        .filter(|(k, _)| {
            !matches!(
                k.to_ascii_lowercase().as_str(),
                "connection" | "upgrade" | "sec-websocket-accept" | "date"
            )
        })
        .map(|(k, v)| (k.clone(), redact_header(k, v)))
        .collect()
}

fn cut(s: &str) -> (String, Option<u64>) {
    if s.len() <= MAX_PAYLOAD {
        return (s.to_owned(), None);
    }
    let mut end = MAX_PAYLOAD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s[..end].to_owned(), Some(s.len() as u64))
}

fn short(s: &str) -> String {
    if s.chars().count() > SHOW {
        format!("{}…", s.chars().take(SHOW).collect::<String>())
    } else {
        s.to_owned()
    }
}
