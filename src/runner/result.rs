//! What the runner emits: run events and per-scenario results.
//!
//! Events flow one way: connection reader task → transcript → matchers/rules → these
//! results → reporters. Reporters never reach back into the runner; everything they show
//! is in these types, which serialize as-is into the JSON report (`schemas/report.schema.json`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A run event, in the order the runner emits them. Scenario events of concurrent
/// scenarios interleave; each carries the scenario's index in the run.
#[derive(Debug, Clone)]
pub enum RunEvent {
    RunStarted(RunInfo),
    ScenarioStarted {
        index: usize,
        name: String,
    },
    ScenarioFinished {
        index: usize,
        result: Box<ScenarioResult>,
    },
    RunFinished(RunSummary),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// The WebSocket target (redacted), or `embedded reference server at ws://127.0.0.1:PORT`.
    pub target: String,
    pub total: usize,
    /// RFC 3339.
    pub started_at: String,
    pub jobs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    Skipped,
    /// Failed at least once, then passed on a retry.
    Flaky,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub name: String,
    pub description: Option<String>,
    /// `file:line:col` of the scenario's name.
    pub location: String,
    pub file: String,
    pub level: crate::scenario::Level,
    pub tags: Vec<String>,
    pub status: Status,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    #[serde(with = "duration_ms")]
    pub duration: Duration,
    pub attempts: u32,
    pub steps: Vec<StepResult>,
    /// Empty when passed. The first failure is the one that stopped the scenario;
    /// rule and schema failures found at the same time follow it.
    pub failures: Vec<Failure>,
    pub transcripts: Vec<Transcript>,
    /// Measured timings per connection (`conn` → metric → milliseconds).
    pub timings: Vec<ConnTimings>,
    /// The HTTP exchanges of `http` steps that got a response, in the order they were made
    /// (`record` writes them into the transcript so `replay` can answer them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpExchange>,
}

/// The prefix of the note a sent frame gets when it does not match its client schema.
pub const SENT_SCHEMA_NOTE: &str = "schema note (not a failure): ";

impl ScenarioResult {
    /// Notes on sent frames that do not match the client schemas (`check_sent`), as
    /// `(connection, seq, message)`: information for the scenario's author, never a failure.
    pub fn sent_schema_notes(&self) -> Vec<(&str, u64, &str)> {
        self.transcripts
            .iter()
            .flat_map(|t| {
                t.frames.iter().filter_map(move |f| {
                    let note = f.note.as_deref()?.strip_prefix(SENT_SCHEMA_NOTE)?;
                    (f.dir == Direction::Sent).then_some((t.conn.as_str(), f.seq, note))
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepResult {
    pub index: usize,
    pub keyword: String,
    pub name: Option<String>,
    /// `file:line:col`.
    pub location: String,
    pub outcome: StepOutcome,
    #[serde(with = "duration_ms")]
    pub duration: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepOutcome {
    Passed,
    Failed,
    /// Not run because an earlier step failed.
    NotRun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// An expect/collect/http match did not hold.
    Expectation,
    /// A wait ran out of time.
    Timeout,
    /// An event failed its JSON Schema, or its type is unknown.
    Schema,
    /// An ordering rule was violated.
    Rule,
    /// The server refused the WebSocket upgrade unexpectedly (or accepted one that should be refused).
    Handshake,
    /// The connection closed or broke unexpectedly, or a frame was unusable (not JSON, too large, binary).
    Transport,
    /// The server sent a close code RFC 6455 does not allow on the wire (1005, 1006, 1015, below
    /// 1000, or an unassigned range; §7.4.1, §7.4.2).
    CloseCode,
    /// An HTTP step failed (transport error or wrong status).
    Http,
    /// A timing assertion did not hold.
    Timing,
    /// A template could not be rendered at run time.
    Template,
    /// The harness itself failed (a bug): the scenario's verdict is unknown, so it counts as failed.
    Internal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// One line: what went wrong.
    pub message: String,
    /// The step that failed (absent for end-of-scenario rule checks).
    pub step: Option<StepRef>,
    /// What was expected (matcher, status, rule), rendered for people.
    pub expected: Option<String>,
    /// Why the closest candidate did not match, or other detail lines.
    pub detail: Vec<String>,
    pub schema: Option<SchemaViolation>,
    /// Rule id for `kind: rule`.
    pub rule: Option<String>,
    /// The offending frame, if any.
    pub frame: Option<FrameRef>,
    /// The connection the failure is about.
    pub conn: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRef {
    pub index: usize,
    pub keyword: String,
    pub name: Option<String>,
    pub location: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaViolation {
    /// The discriminator value (event type), if any.
    pub event_type: Option<String>,
    /// JSON pointer into the event.
    pub instance_path: String,
    /// The schema keyword that failed (`required`, `additionalProperties`, `type`, …).
    pub keyword: String,
    /// JSON pointer into the schema.
    pub schema_path: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrameRef {
    pub conn: String,
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Sent,
    Received,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameKind {
    Text,
    Binary,
    Ping,
    Pong,
    Close,
    /// Not a frame: the handshake (request and response) of a connection.
    Handshake,
    /// Not a frame: the transport ended (EOF, reset) or failed.
    End,
}

/// One entry of a connection's transcript.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrameRecord {
    /// Per-connection sequence number, from 0.
    pub seq: u64,
    /// Microseconds since the scenario started.
    pub at_us: u64,
    pub dir: Direction,
    pub kind: FrameKind,
    /// Payload length in bytes.
    pub len: usize,
    /// Text payload (redacted), or base64 for binary/ping/pong, truncated to 64 KiB.
    pub text: Option<String>,
    /// The parsed JSON of a text frame, when it parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// Close code and reason for close frames; status line for handshakes; error for `End`.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transcript {
    pub conn: String,
    /// The URL connected to (secrets and token query parameters redacted).
    pub url: String,
    pub frames: Vec<FrameRecord>,
    /// Frames dropped from the front to bound memory (the count).
    pub dropped: u64,
}

/// One HTTP request of an `http` step and its response. Tokens are masked (`***`) as in sent
/// frames; `record` redacts further (`docs/TRANSCRIPT.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpExchange {
    /// Microseconds since the scenario started, when the request was sent.
    pub at_us: u64,
    /// Upper-case method.
    pub method: String,
    /// The full URL with the query, secrets redacted.
    pub url: String,
    /// Request headers set by the step (values with tokens masked).
    pub request_headers: Vec<(String, String)>,
    /// The request body as sent, when there was one (tokens masked).
    pub request_body: Option<String>,
    pub status: u16,
    /// The response's `Content-Type`, when it had one.
    pub content_type: Option<String>,
    /// The response body (lossy UTF-8, tokens masked).
    pub response_body: String,
    /// Time from sending the request to the end of the response body (milliseconds, fractional).
    pub duration_ms: f64,
    /// Set when the exchange was a WebSocket upgrade the server refused: the connection's name
    /// (accepted upgrades are in `transcripts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_conn: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnTimings {
    pub conn: String,
    pub connect_ms: Option<f64>,
    pub first_event_ms: Option<f64>,
    pub first_token_ms: Option<f64>,
    pub max_token_gap_ms: Option<f64>,
    pub turn_ms: Option<f64>,
    pub cancel_ack_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunSummary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub flaky: usize,
    #[serde(with = "duration_ms")]
    pub duration: Duration,
}

impl RunSummary {
    /// Counts one finished scenario.
    pub fn count(&mut self, status: Status) {
        match status {
            Status::Passed => self.passed += 1,
            Status::Failed => self.failed += 1,
            Status::Skipped => self.skipped += 1,
            Status::Flaky => self.flaky += 1,
        }
    }
}

/// Durations serialize as fractional milliseconds.
pub mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Ok(Duration::from_secs_f64(ms.max(0.0) / 1000.0))
    }
}
