//! One connection as the runner sees it: the transcript it owns, the cursor of `expect`/`collect`,
//! the checks run on every received event (schema + rules), and the timing metrics.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::result::{
    ConnTimings, Direction, Failure, FailureKind, FrameKind, FrameRecord, FrameRef, Transcript,
};
use crate::codec::{self, Codecs, TextEvent};
use crate::rules::{RuleChecker, RuleSet};
use crate::scenario::TimingNames;
use crate::schema::{SchemaRegistry, Side};
use crate::transport::ws::{EndError, Incoming, WsConnection, WsEvent};

/// Longest text kept per transcript entry.
const MAX_TEXT: usize = 64 * 1024;
/// Entries kept per transcript; older ones are dropped (and counted) to bound memory. A kept JSON
/// entry costs about 600 bytes even when tiny (text + parsed map), and the reporters keep two copies
/// of each transcript (the run collected for the report files, and the terminal's): at 20,000 entries
/// a frame flood stays well under 100 MB.
pub(crate) const MAX_FRAMES: usize = 20_000;
/// Bound on writing one frame: a server that stops reading must not hang the run.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames handled per wake-up of the channel, so a fast stream is processed in batches.
const BATCH: usize = 4096;
/// After the closing handshake, how long the server gets to end the TCP connection first (RFC
/// 6455 §7.1.1: the server closes first) before the harness closes its side anyway.
const CLOSE_SETTLE: Duration = Duration::from_secs(1);

/// What the checks on each event need; shared by all connections of a scenario.
pub(crate) struct Checks {
    pub schemas: Arc<SchemaRegistry>,
    pub rules: Arc<RuleSet>,
    pub discriminator: String,
    pub ignore: HashSet<String>,
    /// The scenario's start: transcript times are relative to it.
    pub start: Instant,
    /// Validate one received event in this many against its schema (1: all). Load mode samples to
    /// measure the server rather than the validator; conformance runs always use 1.
    pub schema_sample: u32,
    /// How each side's frames become events.
    pub codec: Codecs,
    /// The event types the timing metrics are measured between.
    pub timing: Arc<TimingNames>,
}

impl Checks {
    pub fn event_type<'a>(&self, v: &'a Value) -> Option<&'a str> {
        // Hot: several times per received event; see `pointer_get`.
        crate::json::pointer_get(v, &self.discriminator).and_then(Value::as_str)
    }

    pub fn is_ignored(&self, v: &Value) -> bool {
        !self.ignore.is_empty() && self.event_type(v).is_some_and(|t| self.ignore.contains(t))
    }
}

/// The outcome of waiting for the next batch of frames.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pump {
    /// At least one frame was processed.
    Got,
    /// The deadline passed first.
    Timeout,
    /// The read side has ended; nothing more will come.
    Ended,
}

#[derive(Debug, Default)]
pub(crate) struct TimingState {
    pub connect: Option<Duration>,
    connected_at: Option<Instant>,
    pub first_event: Option<Duration>,
    message_sent_at: Option<Instant>,
    pub first_token: Option<Duration>,
    last_token_at: Option<Instant>,
    pub max_token_gap: Option<Duration>,
    pub turn: Option<Duration>,
    cancel_sent_at: Option<Instant>,
    pub cancel_ack: Option<Duration>,
}

impl TimingState {
    fn on_sent(&mut self, names: &TimingNames, event_type: Option<&str>, at: Instant) {
        let Some(t) = event_type else {
            return;
        };
        if names.request.iter().any(|n| n == t) {
            self.message_sent_at = Some(at);
            self.first_token = None;
            self.last_token_at = None;
            self.max_token_gap = None;
            self.turn = None;
        }
        if names.cancel.iter().any(|n| n == t) {
            self.cancel_sent_at = Some(at);
            self.cancel_ack = None;
        }
    }

    fn on_received(
        &mut self,
        names: &TimingNames,
        v: &Value,
        event_type: Option<&str>,
        at: Instant,
    ) {
        if self.first_event.is_none() {
            if let Some(c) = self.connected_at {
                self.first_event = Some(at.saturating_duration_since(c));
            }
        }
        let Some(sent) = self.message_sent_at else {
            return;
        };
        let Some(t) = event_type else {
            return;
        };
        if names.chunk.iter().any(|n| n == t) {
            if self.first_token.is_none() {
                self.first_token = Some(at.saturating_duration_since(sent));
            }
            if let Some(last) = self.last_token_at {
                let gap = at.saturating_duration_since(last);
                if self.max_token_gap.is_none_or(|m| gap > m) {
                    self.max_token_gap = Some(gap);
                }
            }
            self.last_token_at = Some(at);
        }
        let terminal = names.terminal.iter().any(|n| n == t)
            && (!names.terminal_needs_turn_id || v.get("turn_id").is_some());
        if terminal && self.turn.is_none() {
            self.turn = Some(at.saturating_duration_since(sent));
        }
        if names.cancel_ack.iter().any(|n| n == t) && self.cancel_ack.is_none() {
            if let Some(c) = self.cancel_sent_at {
                if !names.terminal_needs_turn_id || v.get("turn_id").is_some() {
                    self.cancel_ack = Some(at.saturating_duration_since(c));
                }
            }
        }
    }

    pub fn report(&self, conn: &str) -> ConnTimings {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        ConnTimings {
            conn: conn.to_owned(),
            connect_ms: ms(self.connect),
            first_event_ms: ms(self.first_event),
            first_token_ms: ms(self.first_token),
            max_token_gap_ms: ms(self.max_token_gap),
            turn_ms: ms(self.turn),
            cancel_ack_ms: ms(self.cancel_ack),
        }
    }
}

pub(crate) struct Conn {
    pub name: String,
    /// The URL, redacted.
    pub url: String,
    ws: WsConnection,
    frames: VecDeque<FrameRecord>,
    /// Seq of `frames[0]`.
    base_seq: u64,
    next_seq: u64,
    dropped: u64,
    /// Seq of the next event `expect`/`collect` may consume.
    pub cursor: u64,
    /// Seq from which `expect_pong` looks for Pong frames.
    pub pong_cursor: u64,
    /// The close frame received (code, reason), if any.
    pub close_frame: Option<Option<(u16, String)>>,
    /// The read side ended: `Some(None)` cleanly after a close handshake.
    pub ended: Option<Option<EndError>>,
    /// We sent a close frame.
    pub close_sent: bool,
    rules: RuleChecker,
    /// Failures found by the per-event checks, not yet reported.
    pending: Vec<Failure>,
    /// JSON events received so far (drives `Checks::schema_sample`).
    received_events: u64,
    pub timing: TimingState,
}

static JWT: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*").expect("valid regex")
});

/// Hides JWTs in text we sent (auth messages, headers).
pub(crate) fn redact_text(s: &str) -> String {
    if s.contains("eyJ") {
        JWT.replace_all(s, "***").into_owned()
    } else {
        s.to_owned()
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("…(truncated)");
    }
    s
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(&bytes[..bytes.len().min(MAX_TEXT)])
}

impl Conn {
    pub fn new(
        name: String,
        url: String,
        ws: WsConnection,
        checks: &Checks,
        connected_at: Instant,
    ) -> Conn {
        let mut timing = TimingState {
            connect: Some(ws.handshake.duration),
            connected_at: Some(connected_at),
            ..Default::default()
        };
        timing.first_event = None;
        let note = match &ws.handshake.subprotocol {
            Some(p) => format!(
                "{} Switching Protocols (subprotocol {p})",
                ws.handshake.status
            ),
            None => format!("{} Switching Protocols", ws.handshake.status),
        };
        let mut conn = Conn {
            name,
            url: url.clone(),
            ws,
            frames: VecDeque::new(),
            base_seq: 0,
            next_seq: 0,
            dropped: 0,
            cursor: 0,
            pong_cursor: 0,
            close_frame: None,
            ended: None,
            close_sent: false,
            rules: checks.rules.checker(&checks.discriminator),
            pending: Vec::new(),
            received_events: 0,
            timing,
        };
        conn.push(FrameRecord {
            seq: 0,
            at_us: micros(checks.start, connected_at),
            dir: Direction::Received,
            kind: FrameKind::Handshake,
            len: 0,
            text: Some(format!("GET {url}")),
            json: None,
            note: Some(note),
        });
        conn
    }

    /// Seq the next frame will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn subprotocol(&self) -> Option<&str> {
        self.ws.handshake.subprotocol.as_deref()
    }

    fn push(&mut self, mut rec: FrameRecord) -> u64 {
        let seq = self.next_seq;
        rec.seq = seq;
        self.next_seq += 1;
        if self.frames.len() == self.frames.capacity() {
            // Grow by half rather than doubling: an entry is ~110 bytes and a session in load mode
            // holds its whole transcript, so doubling left a third of the slots empty on average
            // (~2 KiB of a 40-frame turn). Still amortized O(1).
            let extra = (self.frames.len() / 2).max(4);
            self.frames.reserve_exact(extra);
        }
        self.frames.push_back(rec);
        if self.frames.len() > MAX_FRAMES {
            self.frames.pop_front();
            self.base_seq += 1;
            self.dropped += 1;
            self.cursor = self.cursor.max(self.base_seq);
            self.pong_cursor = self.pong_cursor.max(self.base_seq);
        }
        seq
    }

    pub fn frame(&self, seq: u64) -> Option<&FrameRecord> {
        seq.checked_sub(self.base_seq)
            .and_then(|i| self.frames.get(i as usize))
    }

    /// Drops the parsed JSON of received frame `seq`, which no step will examine again: an
    /// `expect` or `collect` looked at it and moved past (a wait that fails ends the scenario, one
    /// that succeeds moves the cursor past it). The parsed `Value` is by far the largest part of an
    /// entry (a `serde_json` map allocates a B-tree node of ~600 bytes even for 4 keys, against
    /// ~100 bytes of text for a token event), and a session in load mode holds its whole turn, so
    /// this halves what a concurrent session costs. The text stays; [`Conn::into_transcript`]
    /// parses it again for the reports. A frame whose text was truncated keeps its `Value`, the
    /// only complete copy.
    pub fn release_json(&mut self, seq: u64) {
        let Some(f) = seq
            .checked_sub(self.base_seq)
            .and_then(|i| self.frames.get_mut(i as usize))
        else {
            return;
        };
        if f.dir == Direction::Received && f.kind == FrameKind::Text && f.len <= MAX_TEXT {
            f.json = None;
        }
    }

    /// The next visible event (received JSON, not ignored) at or after `from`.
    pub fn event_from(&self, from: u64, checks: &Checks) -> Option<(u64, &Value)> {
        let start = from.max(self.base_seq) - self.base_seq;
        self.frames
            .range(start as usize..)
            .find_map(|f| match (&f.dir, &f.kind, &f.json) {
                (Direction::Received, FrameKind::Text | FrameKind::Binary, Some(v))
                    if !checks.is_ignored(v) =>
                {
                    Some((f.seq, v))
                }
                _ => None,
            })
    }

    /// The next Pong frame at or after `from`: (seq, payload).
    pub fn pong_from(&self, from: u64) -> Option<(u64, Vec<u8>)> {
        let start = from.max(self.base_seq) - self.base_seq;
        self.frames
            .range(start as usize..)
            .find_map(|f| match (&f.dir, &f.kind) {
                (Direction::Received, FrameKind::Pong) => {
                    let payload = f
                        .text
                        .as_deref()
                        .and_then(|t| B64.decode(t).ok())
                        .unwrap_or_default();
                    Some((f.seq, payload))
                }
                _ => None,
            })
    }

    /// The last `n` received frames, rendered one per line, for failure details.
    pub fn last_frames(&self, n: usize) -> Vec<String> {
        let mut out: Vec<String> = self
            .frames
            .iter()
            .rev()
            .filter(|f| f.dir == Direction::Received && f.kind != FrameKind::Handshake)
            .take(n)
            .map(render_frame)
            .collect();
        out.reverse();
        out
    }

    /// Takes the failures found by the per-event checks.
    pub fn take_pending(&mut self) -> Vec<Failure> {
        std::mem::take(&mut self.pending)
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Waits until `deadline` for frames and processes every frame that has arrived.
    pub async fn pump(&mut self, deadline: tokio::time::Instant, checks: &Checks) -> Pump {
        if self.ended.is_some() {
            return Pump::Ended;
        }
        if tokio::time::Instant::now() >= deadline {
            // Past the deadline only frames that arrived before it still count. `timeout_at` would
            // not do: it polls the channel before the timer, so a server that floods keeps the
            // channel ready and would keep a wait alive long after its timeout.
            return if self.drain_until(deadline.into_std(), checks) {
                Pump::Got
            } else {
                Pump::Timeout
            };
        }
        let first = match tokio::time::timeout_at(deadline, self.ws.rx.recv()).await {
            Err(_) => return Pump::Timeout,
            Ok(None) => {
                self.on_incoming_end(
                    Instant::now(),
                    Some(EndError::Io("the reader task stopped".into())),
                    checks,
                );
                return Pump::Got;
            }
            Ok(Some(i)) => i,
        };
        self.on_incoming(first, checks);
        self.drain(checks);
        Pump::Got
    }

    /// Processes what has already arrived, without waiting, until (and including) the first frame
    /// stamped after `deadline`; `true` if a frame stamped before it was processed.
    fn drain_until(&mut self, deadline: Instant, checks: &Checks) -> bool {
        let mut in_time = false;
        for _ in 0..BATCH {
            if self.ended.is_some() {
                break;
            }
            let Ok(i) = self.ws.rx.try_recv() else {
                break;
            };
            let late = i.at > deadline;
            self.on_incoming(i, checks);
            if late {
                break;
            }
            in_time = true;
        }
        in_time
    }

    /// Processes what has already arrived, without waiting.
    pub fn drain(&mut self, checks: &Checks) {
        for _ in 0..BATCH {
            if self.ended.is_some() {
                return;
            }
            match self.ws.rx.try_recv() {
                Ok(i) => self.on_incoming(i, checks),
                Err(_) => return,
            }
        }
    }

    fn on_incoming(&mut self, inc: Incoming, checks: &Checks) {
        let at_us = micros(checks.start, inc.at);
        match inc.event {
            WsEvent::Text { text, json } => {
                let len = text.len();
                let event = codec::text_event(
                    checks.codec.server,
                    &checks.discriminator,
                    &text,
                    Some(json),
                );
                match event {
                    TextEvent::Json(v) => {
                        self.on_event(v, FrameKind::Text, len, Some(text), at_us, inc.at, checks)
                    }
                    TextEvent::Text(v) => {
                        // The view holds the text: the record keeps it once, as `text`.
                        self.on_event(v, FrameKind::Text, len, Some(text), at_us, inc.at, checks)
                    }
                    TextEvent::NotJson(e) => {
                        let seq = self.next_seq;
                        let msg = format!(
                            "received a text frame that is not JSON ({e}): {}",
                            shorten(&text, 200)
                        );
                        let mut failure = self.failure(FailureKind::Transport, msg, seq);
                        failure.detail.push(
                            "a protocol of plain-text frames sets `codec: text` (or `mixed`) in wschat-suite.yaml".into(),
                        );
                        self.pending.push(failure);
                        self.push(FrameRecord {
                            seq,
                            at_us,
                            dir: Direction::Received,
                            kind: FrameKind::Text,
                            len,
                            text: Some(truncate(text)),
                            json: None,
                            note: Some(format!("not JSON: {e}")),
                        });
                    }
                }
            }
            WsEvent::Binary(b) => {
                if checks.codec.server.binary_events() {
                    let v = codec::binary_view(&checks.discriminator, &b);
                    let text = b64(&b);
                    self.on_event(
                        v,
                        FrameKind::Binary,
                        b.len(),
                        Some(text),
                        at_us,
                        inc.at,
                        checks,
                    );
                } else {
                    let seq = self.next_seq;
                    let msg = format!(
                        "received a binary frame ({} bytes); the protocol is text-only",
                        b.len()
                    );
                    let mut failure = self.failure(FailureKind::Transport, msg, seq);
                    failure.detail.push(
                        "a protocol with binary frames sets `codec: text` (or `mixed`) in wschat-suite.yaml: they are `$binary` events there".into(),
                    );
                    self.pending.push(failure);
                    self.push(raw(at_us, FrameKind::Binary, &b, None));
                }
            }
            WsEvent::Ping(b) => {
                self.push(raw(at_us, FrameKind::Ping, &b, None));
            }
            WsEvent::Pong(b) => {
                self.push(raw(at_us, FrameKind::Pong, &b, None));
            }
            WsEvent::Close(frame) => {
                let note = match &frame {
                    Some((code, reason)) if reason.is_empty() => format!("close {code}"),
                    Some((code, reason)) => format!("close {code} {reason}"),
                    None => "close (no status code)".to_owned(),
                };
                // A code RFC 6455 forbids on the wire fails the scenario on its own.
                if let Some((code, _)) = &frame {
                    if let Some(why) = crate::transport::ws::close_code_problem(*code) {
                        let msg =
                            format!("the server closed '{}' with code {code}: {why}", self.name);
                        let seq = self.next_seq;
                        self.pending
                            .push(self.failure(FailureKind::CloseCode, msg, seq));
                    }
                }
                self.close_frame = Some(frame);
                self.push(FrameRecord {
                    seq: 0,
                    at_us,
                    dir: Direction::Received,
                    kind: FrameKind::Close,
                    len: 0,
                    text: None,
                    json: None,
                    note: Some(note),
                });
            }
            WsEvent::End(e) => self.on_incoming_end(inc.at, e, checks),
        }
    }

    /// One received event (a JSON frame, or the view of a text or binary frame): timing, schema,
    /// rules, then the transcript entry.
    #[allow(clippy::too_many_arguments)]
    fn on_event(
        &mut self,
        v: Value,
        kind: FrameKind,
        len: usize,
        text: Option<String>,
        at_us: u64,
        at: Instant,
        checks: &Checks,
    ) {
        let seq = self.next_seq;
        let event_type = checks.event_type(&v);
        self.timing.on_received(&checks.timing, &v, event_type, at);
        // The first event of a connection is always validated, then 1 in `schema_sample`.
        let sampled = checks.schema_sample <= 1
            || self.received_events % u64::from(checks.schema_sample) == 0;
        self.received_events += 1;
        let verdict = if sampled {
            checks.schemas.check(Side::Server, &v)
        } else {
            Ok(())
        };
        if let Err(f) = verdict {
            let mut failure = self.failure(FailureKind::Schema, f.message.clone(), seq);
            failure.expected = Some(format!("a valid event per {}", checks.schemas.origin()));
            failure.detail = f
                .violations
                .iter()
                .skip(1)
                .map(|v| {
                    format!(
                        "also at {} ({}): {}",
                        if v.instance_path.is_empty() {
                            "/"
                        } else {
                            &v.instance_path
                        },
                        v.keyword,
                        v.message
                    )
                })
                .collect();
            let shown = text
                .as_deref()
                .map_or_else(|| v.to_string(), |t| shorten(t, 300));
            failure.detail.push(format!("frame #{seq}: {shown}"));
            failure.schema = f.violations.into_iter().next();
            self.pending.push(failure);
        }
        for viol in self.rules.observe(seq, Direction::Received, &v) {
            self.pending.push(self.rule_failure(viol));
        }
        self.push(FrameRecord {
            seq,
            at_us,
            dir: Direction::Received,
            kind,
            len,
            text: text.map(truncate),
            json: Some(v),
            note: None,
        });
    }

    fn on_incoming_end(&mut self, at: Instant, e: Option<EndError>, checks: &Checks) {
        let note = match &e {
            None => "connection closed".to_owned(),
            Some(e) => e.to_string(),
        };
        if let Some(
            err @ (EndError::TooLarge { .. } | EndError::InvalidUtf8(_) | EndError::Protocol(_)),
        ) = &e
        {
            let seq = self.next_seq;
            self.pending
                .push(self.failure(FailureKind::Transport, err.to_string(), seq));
        }
        self.ended = Some(e);
        // Nothing more can be read: let the socket go, so our side of TCP closes now.
        self.ws.release();
        self.push(FrameRecord {
            seq: 0,
            at_us: micros(checks.start, at),
            dir: Direction::Received,
            kind: FrameKind::End,
            len: 0,
            text: None,
            json: None,
            note: Some(note),
        });
    }

    fn failure(&self, kind: FailureKind, message: String, seq: u64) -> Failure {
        Failure {
            kind,
            message,
            step: None,
            expected: None,
            detail: Vec::new(),
            schema: None,
            rule: None,
            frame: Some(FrameRef {
                conn: self.name.clone(),
                seq,
            }),
            conn: Some(self.name.clone()),
        }
    }

    fn rule_failure(&self, v: crate::rules::RuleViolation) -> Failure {
        let message = if v.message.starts_with(&format!("rule {}", v.rule)) {
            format!("{} (connection '{}')", v.message, self.name)
        } else {
            format!(
                "rule {} violated on connection '{}': {}",
                v.rule, self.name, v.message
            )
        };
        let mut f = self.failure(
            FailureKind::Rule,
            message,
            v.seqs.last().copied().unwrap_or(self.next_seq),
        );
        if v.seqs.is_empty() {
            f.frame = None;
        }
        f.rule = Some(v.rule.clone());
        f.detail = v
            .seqs
            .iter()
            .filter_map(|s| {
                self.frame(*s)
                    .map(|fr| format!("frame #{s}: {}", render_frame(fr)))
            })
            .collect();
        f
    }

    /// Sends a message and records it (rules see sent JSON too).
    pub async fn send(&mut self, msg: Message, checks: &Checks) -> Result<(), String> {
        let at = Instant::now();
        let rec = match &msg {
            Message::Text(t) => {
                let text = t.as_str();
                // The client codec decides what a sent frame is to the rules and timing: under
                // `text`/`mixed` a plain-text message is a `$text` event. Invalid JSON sent under
                // `json` stays a frame without an event (error scenarios send it on purpose).
                let event =
                    codec::text_event(checks.codec.client, &checks.discriminator, text, None);
                let is_view = matches!(event, TextEvent::Text(_));
                let json = event.into_value();
                // Sent frames are checked against the client schemas as information only.
                let note = json
                    .as_ref()
                    .filter(|_| !is_view)
                    .and_then(|v| checks.schemas.sent_note(v));
                if let Some(v) = &json {
                    let seq = self.next_seq;
                    self.timing
                        .on_sent(&checks.timing, checks.event_type(v), at);
                    for viol in self.rules.observe(seq, Direction::Sent, v) {
                        self.pending.push(self.rule_failure(viol));
                    }
                }
                FrameRecord {
                    seq: 0,
                    at_us: micros(checks.start, at),
                    dir: Direction::Sent,
                    kind: FrameKind::Text,
                    len: text.len(),
                    text: Some(truncate(redact_text(text))),
                    json: json.map(|v| redact_json(&v)),
                    note,
                }
            }
            Message::Binary(b) if checks.codec.client.binary_events() => {
                let v = codec::binary_view(&checks.discriminator, b);
                let seq = self.next_seq;
                self.timing
                    .on_sent(&checks.timing, checks.event_type(&v), at);
                for viol in self.rules.observe(seq, Direction::Sent, &v) {
                    self.pending.push(self.rule_failure(viol));
                }
                let mut r = sent_raw(micros(checks.start, at), FrameKind::Binary, b);
                r.json = Some(v);
                r
            }
            Message::Binary(b) => sent_raw(micros(checks.start, at), FrameKind::Binary, b),
            Message::Ping(b) => sent_raw(micros(checks.start, at), FrameKind::Ping, b),
            Message::Pong(b) => sent_raw(micros(checks.start, at), FrameKind::Pong, b),
            Message::Close(c) => {
                self.close_sent = true;
                let mut r = sent_raw(micros(checks.start, at), FrameKind::Close, &[]);
                r.note = c
                    .as_ref()
                    .map(|c| format!("close {} {}", u16::from(c.code), c.reason.as_str()));
                r
            }
            Message::Frame(_) => return Err("raw frames are not sent".into()),
        };
        self.push(rec);
        match tokio::time::timeout(SEND_TIMEOUT, self.ws.send(msg)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the frame could not be written within {} (the server is not reading)",
                humantime::format_duration(SEND_TIMEOUT)
            )),
        }
    }

    /// Ends a connection whose closing handshake is over (close frames sent and received): waits at
    /// most [`CLOSE_SETTLE`] for the server to end TCP, then closes our side. Without this the
    /// socket stayed half-open (CLOSE-WAIT) until the scenario ended, and a server that reports the
    /// disconnect only once TCP closes still counted the user as connected.
    pub async fn settle_close(&mut self, checks: &Checks) {
        let deadline = tokio::time::Instant::now() + CLOSE_SETTLE;
        while self.ended.is_none() {
            if self.pump(deadline, checks).await == Pump::Timeout {
                break;
            }
        }
        self.ws.release();
    }

    /// Sends a close frame without waiting for the answer (cleanup; errors are irrelevant here).
    pub async fn close_quietly(&mut self, checks: &Checks) {
        // After the server's close frame, tungstenite has already answered it.
        if self.ended.is_none() && !self.close_sent && self.close_frame.is_none() {
            let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: 1000u16.into(),
                reason: "".into(),
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                self.send(Message::Close(Some(frame)), checks),
            )
            .await;
        }
    }

    /// End-of-scenario rule checks.
    pub fn finish_rules(&mut self) -> Vec<Failure> {
        let closed = self.ended.is_some() || self.close_frame.is_some();
        let violations = self.rules.finish(closed);
        violations
            .into_iter()
            .map(|v| self.rule_failure(v))
            .collect()
    }

    /// The transcript for the result; `restore_json`: parse the text of frames whose `Value` was
    /// released again (what the reports show; load mode skips it for passed sessions).
    pub fn into_transcript(self, restore_json: bool, checks: &Checks) -> Transcript {
        let mut frames: Vec<FrameRecord> = self.frames.into();
        // A received text entry without JSON and without a note had its `Value` released
        // (`release_json`): its text is complete and parsed before, so it parses again to the same
        // `Value`. (A text that is not JSON carries a `not JSON` note.)
        let released = |f: &FrameRecord| {
            f.dir == Direction::Received
                && f.kind == FrameKind::Text
                && f.json.is_none()
                && f.note.is_none()
        };
        if restore_json {
            for f in frames.iter_mut().filter(|f| released(f)) {
                f.json = f.text.as_deref().and_then(|t| {
                    codec::text_event(checks.codec.server, &checks.discriminator, t, None)
                        .into_value()
                });
            }
        }
        Transcript {
            conn: self.name,
            url: self.url,
            frames,
            dropped: self.dropped,
        }
    }

    /// Why the connection can give no more events, for failure messages.
    pub fn end_description(&self) -> String {
        let close = match &self.close_frame {
            Some(Some((code, reason))) if reason.is_empty() => {
                format!("the server closed the connection with {code}")
            }
            Some(Some((code, reason))) => {
                format!("the server closed the connection with {code} ({reason})")
            }
            Some(None) => {
                "the server closed the connection (close frame without a code)".to_owned()
            }
            None => String::new(),
        };
        match (&self.ended, close.is_empty()) {
            (Some(Some(e)), true) => e.to_string(),
            (Some(Some(e)), false) => format!("{close}, then {e}"),
            (_, false) => close,
            (_, true) => "the connection ended".to_owned(),
        }
    }
}

fn micros(start: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(start).as_micros() as u64
}

fn raw(at_us: u64, kind: FrameKind, b: &[u8], note: Option<String>) -> FrameRecord {
    FrameRecord {
        seq: 0,
        at_us,
        dir: Direction::Received,
        kind,
        len: b.len(),
        text: Some(b64(b)),
        json: None,
        note,
    }
}

fn sent_raw(at_us: u64, kind: FrameKind, b: &[u8]) -> FrameRecord {
    FrameRecord {
        dir: Direction::Sent,
        ..raw(at_us, kind, b, None)
    }
}

fn redact_json(v: &Value) -> Value {
    match v {
        Value::String(s) if s.contains("eyJ") => Value::String(redact_text(s)),
        Value::Array(a) => Value::Array(a.iter().map(redact_json).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), redact_json(v))).collect())
        }
        other => other.clone(),
    }
}

/// Cuts a string for one-line messages.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// One transcript entry on one line.
pub(crate) fn render_frame(f: &FrameRecord) -> String {
    let dir = match f.dir {
        Direction::Sent => "→",
        Direction::Received => "←",
    };
    let body = match (&f.kind, &f.text, &f.note) {
        (FrameKind::Text, Some(t), _) => shorten(t, 300),
        (FrameKind::Close | FrameKind::End | FrameKind::Handshake, _, Some(n)) => n.clone(),
        (k, Some(t), _) => format!("{k:?} {}", shorten(t, 100)).to_lowercase(),
        (k, None, _) => format!("{k:?}").to_lowercase(),
    };
    format!("#{} {dir} {body}", f.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in schemas, no rules, every event validated.
    fn test_checks() -> Checks {
        Checks {
            schemas: Arc::new(SchemaRegistry::embedded("type").unwrap()),
            rules: Arc::new(RuleSet::default()),
            discriminator: "/type".into(),
            ignore: HashSet::new(),
            start: Instant::now(),
            schema_sample: 1,
            codec: Codecs::default(),
            timing: Arc::new(TimingNames::default()),
        }
    }

    /// A connection named `main` to the test server at `addr`.
    async fn test_conn(addr: std::net::SocketAddr, checks: &Checks) -> Conn {
        let req = crate::transport::ws::ConnectRequest {
            url: format!("ws://{addr}/"),
            headers: Vec::new(),
            subprotocols: Vec::new(),
            timeout: Duration::from_secs(10),
            max_frame_bytes: 1 << 20,
            tls: None,
            read_buffer: crate::transport::ws::READ_BUFFER,
        };
        let ws = crate::transport::ws::connect(&req).await.unwrap();
        Conn::new("main".into(), req.url.clone(), ws, checks, Instant::now())
    }

    #[test]
    fn redacts_jwts() {
        let s = r#"{"type":"auth","token":"Bearer eyJhbGciOi.eyJzdWIi.sig-_x"}"#;
        assert_eq!(redact_text(s), r#"{"type":"auth","token":"Bearer ***"}"#);
        assert_eq!(redact_text("plain"), "plain");
    }

    #[test]
    fn timing_tracks_the_last_turn() {
        let n = TimingNames::default();
        let mut t = TimingState::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        t.on_sent(&n, Some("message"), ms(0));
        let tok = serde_json::json!({"type": "token", "turn_id": "t1"});
        t.on_received(&n, &tok, Some("token"), ms(10));
        t.on_received(&n, &tok, Some("token"), ms(15));
        t.on_received(&n, &tok, Some("token"), ms(40));
        let fin = serde_json::json!({"type": "final_answer", "turn_id": "t1"});
        t.on_received(&n, &fin, Some("final_answer"), ms(50));
        assert_eq!(t.first_token, Some(Duration::from_millis(10)));
        assert_eq!(t.max_token_gap, Some(Duration::from_millis(25)));
        assert_eq!(t.turn, Some(Duration::from_millis(50)));
        // A new message starts a new turn's measurements.
        t.on_sent(&n, Some("message"), ms(100));
        assert_eq!(t.first_token, None);
        t.on_sent(&n, Some("cancel"), ms(105));
        let c = serde_json::json!({"type": "cancelled", "turn_id": "t2"});
        t.on_received(&n, &c, Some("cancelled"), ms(110));
        assert_eq!(t.cancel_ack, Some(Duration::from_millis(5)));
        assert_eq!(t.turn, Some(Duration::from_millis(10)));
        // A connection-level error (no turn_id) ends no turn.
        let mut t = TimingState::default();
        t.on_sent(&n, Some("message"), ms(0));
        t.on_received(
            &n,
            &serde_json::json!({"type": "error", "code": "X"}),
            Some("error"),
            ms(5),
        );
        assert_eq!(t.turn, None);
    }

    #[test]
    fn timing_follows_the_suite_names() {
        // A plain-text protocol: the sent text starts the turn, text chunks are its tokens.
        let n = TimingNames {
            request: vec!["$text".into()],
            chunk: vec!["$text".into()],
            terminal: vec!["done".into()],
            terminal_needs_turn_id: false,
            ..TimingNames::default()
        };
        let mut t = TimingState::default();
        let t0 = Instant::now();
        let ms = |k| t0 + Duration::from_millis(k);
        let chunk = crate::codec::text_view("/type", "hi");
        t.on_sent(&n, Some("$text"), ms(0));
        t.on_received(&n, &chunk, Some("$text"), ms(7));
        t.on_received(&n, &chunk, Some("$text"), ms(9));
        t.on_received(&n, &chunk, Some("$text"), ms(30));
        t.on_received(
            &n,
            &serde_json::json!({"type": "done"}),
            Some("done"),
            ms(31),
        );
        assert_eq!(t.first_token, Some(Duration::from_millis(7)));
        assert_eq!(t.max_token_gap, Some(Duration::from_millis(21)));
        assert_eq!(t.turn, Some(Duration::from_millis(31)));
        // The reference names do not apply any more.
        let mut t = TimingState::default();
        t.on_sent(&n, Some("message"), ms(0));
        t.on_received(&n, &chunk, Some("$text"), ms(5));
        assert_eq!(t.first_token, None);
    }

    /// Released `Value`s come back in the transcript the reports get, parsed from the kept text;
    /// a frame whose text was truncated keeps its `Value`. Real sockets on 127.0.0.1.
    #[tokio::test]
    async fn released_json_is_restored_in_the_transcript() {
        use futures_util::SinkExt;
        use tokio::net::TcpListener;

        let big = format!(
            r#"{{"type":"token","text":"{}"}}"#,
            "x".repeat(MAX_TEXT + 10)
        );
        let sent = vec![
            r#"{"type":"connected","n":1.5e3,"s":"é\u00e9"}"#.to_owned(),
            "{not json".to_owned(),
            big.clone(),
        ];
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let frames = sent.clone();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            for f in frames {
                ws.send(Message::text(f)).await.unwrap();
            }
            let _ = done_rx.await;
        });
        let checks = test_checks();
        let mut conn = test_conn(addr, &checks).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // The handshake entry, then the three frames.
        while conn.next_seq() < 4 {
            assert_eq!(
                conn.pump(deadline, &checks).await,
                Pump::Got,
                "frames in time"
            );
        }
        for seq in 0..4 {
            conn.release_json(seq);
        }
        assert!(conn.frame(1).unwrap().json.is_none(), "released");
        assert!(
            conn.frame(3).unwrap().json.is_some(),
            "truncated text: kept"
        );
        let t = conn.into_transcript(true, &checks);
        let want: Value = serde_json::from_str(&sent[0]).unwrap();
        assert_eq!(t.frames[1].json.as_ref(), Some(&want));
        assert_eq!(t.frames[2].json, None, "not JSON stays without JSON");
        assert!(t.frames[2].note.as_deref().unwrap().starts_with("not JSON"));
        let big_v: Value = serde_json::from_str(&big).unwrap();
        assert_eq!(t.frames[3].json.as_ref(), Some(&big_v));
        let _ = done_tx.send(());
    }

    /// A flood keeps the reader's channel always ready; a wait past its deadline must still end
    /// (`timeout_at` alone would keep returning frames). Real sockets on 127.0.0.1.
    #[tokio::test]
    async fn pump_past_the_deadline_times_out_even_while_frames_keep_coming() {
        use futures_util::SinkExt;
        use tokio::net::TcpListener;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            for n in 0..1000 {
                let text = format!(r#"{{"type":"pong","nonce":{n}}}"#);
                if ws.feed(Message::text(text)).await.is_err() {
                    return;
                }
            }
            let _ = ws.flush().await;
            // Holds the connection open until the test is done.
            let _ = done_rx.await;
        });
        let checks = test_checks();
        // Every frame arrives after this deadline.
        let deadline = tokio::time::Instant::now();
        let mut conn = test_conn(addr, &checks).await;
        // Waits (bounded) until frames are queued, so the channel is ready when `pump` runs.
        tokio::time::timeout(Duration::from_secs(10), async {
            while conn.ws.rx.len() < 100 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("frames queued in time");
        assert_eq!(conn.pump(deadline, &checks).await, Pump::Timeout);
        // At most the one late frame that told it so was processed (after the handshake entry).
        assert!(conn.next_seq() <= 2, "{}", conn.next_seq());
        // Before a deadline, queued frames are processed as usual.
        let later = tokio::time::Instant::now() + Duration::from_secs(10);
        assert_eq!(conn.pump(later, &checks).await, Pump::Got);
        assert!(conn.next_seq() > 2);
        let _ = done_tx.send(());
    }
}
