//! The scenario model: what the loader produces and the runner consumes.
//!
//! These types carry no serde concerns: the loader deserializes YAML into its own raw
//! types (with spans), checks them, and converts them into this model. Every step keeps
//! its source location so any failure can name `file:line:col`.
//! The language itself is documented in `docs/SCENARIOS.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::matcher::MatchSpec;
use super::template::Template;

/// A place in a source file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loc {
    #[serde(serialize_with = "serialize_path")]
    pub file: Arc<PathBuf>,
    pub line: u32,
    pub col: u32,
}

fn serialize_path<S: serde::Serializer>(p: &Arc<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&p.display())
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// Everything `run` needs: the suite configs, rules and scenarios of all PATH arguments.
#[derive(Debug, Clone)]
pub struct Suite {
    pub config: SuiteConfig,
    /// The ordering rules file named by the config (or `rules.yaml` beside it); loaded by [`crate::rules`].
    pub rules_file: Option<PathBuf>,
    pub scenarios: Vec<Scenario>,
}

#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// Where the config was read from (None: defaults).
    pub file: Option<PathBuf>,
    pub target: Option<Template>,
    pub http_base: Option<Template>,
    /// Resolved folder holding `index.json`; default: the repository's `schemas/` next to the suite,
    /// else the schemas compiled into the binary.
    pub schemas_dir: Option<PathBuf>,
    /// JSON pointer to the discriminator (`type` becomes `/type`).
    pub discriminator: String,
    /// Event types invisible to expect/collect (still validated and recorded).
    pub ignore: Vec<String>,
    pub timeouts: Timeouts,
    pub max_frame_bytes: usize,
    pub auth: AuthConfig,
    pub vars: BTreeMap<String, Template>,
    /// Env vars every scenario of the suite requires (merged into each scenario's `requires`,
    /// so a scenario is skipped with the reason when one is unset).
    pub requires: Vec<String>,
    /// The suite describes another server: with no target from any source (`--target`,
    /// `WSCHAT_TARGET`, the suite's `target`) the run is refused (exit 2) instead of starting
    /// the embedded reference server.
    pub target_required: bool,
    /// Message schemas from an AsyncAPI 2.x/3.x document instead of a schemas folder
    /// (`asyncapi:` in the suite; `--asyncapi` overrides).
    pub asyncapi: Option<PathBuf>,
    /// Check the frames the scenarios send against the client schemas, reported as notes
    /// (never failures: error scenarios send invalid frames on purpose). Default true.
    pub check_sent: bool,
    /// `embedded:`: how the embedded reference server runs and which vars change with it.
    pub embedded: EmbeddedConfig,
    /// How each side's frames become events (`codec:`; default JSON both ways).
    pub codec: crate::codec::Codecs,
    /// `jobs:`: at most this many scenarios of the suite at once (caps `--jobs`), for a server
    /// whose state is shared between connections (one socket per user, a shared room).
    pub jobs: Option<usize>,
    /// `timing:`: which event types the `timing` step's metrics are measured between.
    pub timing: TimingNames,
}

/// The event types behind the `timing` step's metrics (`timing:` in the suite config). The defaults
/// are the reference protocol's; a suite for another protocol names its own (`request: [$text]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingNames {
    /// Sent types that start a turn (`first_token`, `max_token_gap` and `turn` count from the last).
    pub request: Vec<String>,
    /// Received types that are chunks of the answer (`first_token`, `max_token_gap`).
    pub chunk: Vec<String>,
    /// Received types that end a turn (`turn`).
    pub terminal: Vec<String>,
    /// Sent types that cancel (`cancel_ack` counts from the last).
    pub cancel: Vec<String>,
    /// Received types that acknowledge a cancel (`cancel_ack`).
    pub cancel_ack: Vec<String>,
    /// Whether a terminal event must carry `turn_id` (the reference protocol's `error` also answers
    /// bad frames outside a turn); true only for the defaults.
    pub terminal_needs_turn_id: bool,
}

impl Default for TimingNames {
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        TimingNames {
            request: v(&["message"]),
            chunk: v(&["token"]),
            terminal: v(&["final_answer", "cancelled", "error"]),
            cancel: v(&["cancel"]),
            cancel_ack: v(&["cancelled"]),
            terminal_needs_turn_id: true,
        }
    }
}

impl TimingNames {
    /// The YAML keys of `timing:`.
    pub const FIELDS: &'static [&'static str] =
        &["request", "chunk", "terminal", "cancel", "cancel_ack"];
}

/// The suite's `embedded:` section. Against the embedded reference server the harness controls the
/// server, so it can shorten the protocol deadlines the slow scenarios wait for (auth deadline, rate
/// limit refill) and the vars that size those waits, while the same scenarios keep generous values
/// against any other server.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedConfig {
    /// Reference server settings for the embedded run (`embedded.server`).
    pub server: EmbeddedServer,
    /// `embedded.vars`: replacements for suite `vars` (each must exist there).
    pub vars: BTreeMap<String, Template>,
    /// Whether `vars` were applied to [`SuiteConfig::vars`] (the run will use the embedded server:
    /// no `--target`, no `WSCHAT_TARGET`, no suite `target`). The server settings are applied only
    /// then, so the server and the waits sized for it always go together.
    pub applied: bool,
    /// The suite's own values of the vars that `vars` replaced (kept to check both variants).
    pub replaced: BTreeMap<String, Template>,
}

/// Reference server settings the suite may set for the embedded run; `None` keeps the run's default
/// (`reference_server::Config::default()`, zero token pacing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmbeddedServer {
    pub auth_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub reply_timeout: Option<Duration>,
    pub token_pace: Option<Duration>,
    pub rate_limit_per_sec: Option<u32>,
    pub rate_burst: Option<u32>,
    pub max_connections_per_user: Option<usize>,
    pub max_message_bytes: Option<usize>,
    pub hard_max_message_bytes: Option<usize>,
}

impl EmbeddedServer {
    /// The YAML keys of `embedded.server` (kept in step with `schemas/suite.schema.json` by a test).
    pub const FIELDS: &'static [&'static str] = &[
        "auth_timeout",
        "idle_timeout",
        "reply_timeout",
        "token_pace",
        "rate_limit_per_sec",
        "rate_burst",
        "max_connections_per_user",
        "max_message_bytes",
        "hard_max_message_bytes",
    ];

    /// `base` with every setting given here replacing its value.
    pub fn apply(&self, mut base: reference_server::Config) -> reference_server::Config {
        if let Some(d) = self.auth_timeout {
            base.auth_timeout = d;
        }
        if let Some(d) = self.idle_timeout {
            base.idle_timeout = d;
        }
        if let Some(d) = self.reply_timeout {
            base.reply_timeout = d;
        }
        if let Some(d) = self.token_pace {
            base.token_pace = d;
        }
        if let Some(n) = self.rate_limit_per_sec {
            base.rate_limit_per_sec = n;
        }
        if let Some(n) = self.rate_burst {
            base.rate_burst = n;
        }
        if let Some(n) = self.max_connections_per_user {
            base.max_connections_per_user = n;
        }
        if let Some(n) = self.max_message_bytes {
            base.max_message_bytes = n;
        }
        if let Some(n) = self.hard_max_message_bytes {
            base.hard_max_message_bytes = n;
        }
        base
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub expect: Duration,
    pub http: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            expect: Duration::from_secs(5),
            http: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub jwt_secret: Option<Template>,
    pub token: Option<Template>,
    /// Extra claims of the `${jwt*:USER}` tokens (a JSON object whose strings are templates).
    pub claims: Option<Template>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Must,
    Should,
    May,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub level: Level,
    pub requires: Vec<String>,
    pub vars: BTreeMap<String, Template>,
    pub steps: Vec<Step>,
    /// Location of the scenario's `name` key.
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub loc: Loc,
    pub name: Option<String>,
    pub kind: StepKind,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Http(HttpStep),
    Connect(ConnectStep),
    Send(SendStep),
    Expect(ExpectStep),
    ExpectPong(ExpectPongStep),
    Collect(CollectStep),
    ExpectNone(ExpectNoneStep),
    ExpectClose(ExpectCloseStep),
    Close(CloseStep),
    Sleep(Duration),
    Timing(TimingStep),
}

impl StepKind {
    /// The YAML key of the step, for messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            StepKind::Http(_) => "http",
            StepKind::Connect(_) => "connect",
            StepKind::Send(_) => "send",
            StepKind::Expect(_) => "expect",
            StepKind::ExpectPong(_) => "expect_pong",
            StepKind::Collect(_) => "collect",
            StepKind::ExpectNone(_) => "expect_none",
            StepKind::ExpectClose(_) => "expect_close",
            StepKind::Close(_) => "close",
            StepKind::Sleep(_) => "sleep",
            StepKind::Timing(_) => "timing",
        }
    }
}

/// Where a capture reads from.
#[derive(Debug, Clone)]
pub enum CapturePath {
    /// RFC 6901 JSON pointer (`/session_id`).
    Pointer(String),
    /// JSONPath (`$.history[0].role`), compiled at load time.
    JsonPath(String),
}

pub type Captures = BTreeMap<String, CapturePath>;

#[derive(Debug, Clone)]
pub enum Url {
    /// Relative to the target (WebSocket) or http_base (HTTP).
    Path(Template),
    /// Absolute URL.
    Absolute(Template),
}

#[derive(Debug, Clone)]
pub enum HttpBody {
    Json(Template),
    Text(Template),
}

#[derive(Debug, Clone)]
pub struct HttpStep {
    pub method: String,
    pub url: Url,
    pub headers: BTreeMap<String, Template>,
    pub query: BTreeMap<String, Template>,
    pub body: Option<HttpBody>,
    /// Expected statuses; empty means any 2xx.
    pub status: Vec<u16>,
    pub matcher: Option<MatchSpec>,
    pub capture: Captures,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct ConnectStep {
    pub conn: String,
    pub url: Url,
    pub query: BTreeMap<String, Template>,
    pub headers: BTreeMap<String, Template>,
    pub subprotocols: Vec<String>,
    /// `Some(None)`: expect that no subprotocol is selected.
    pub expect_subprotocol: Option<Option<String>>,
    pub expect_refusal: Option<Refusal>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: u16,
    pub body: Option<MatchSpec>,
}

#[derive(Debug, Clone)]
pub enum SendPayload {
    Json(Template),
    Text(Template),
    /// Already decoded from base64 at load time.
    Binary(Vec<u8>),
    Ping(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct SendStep {
    pub conn: String,
    pub payload: SendPayload,
}

#[derive(Debug, Clone)]
pub struct ExpectStep {
    pub conn: String,
    pub matcher: MatchSpec,
    /// true: skip non-matching events; false: the strictly next event must match.
    pub skip: bool,
    pub timeout: Option<Duration>,
    pub capture: Captures,
}

#[derive(Debug, Clone)]
pub struct ExpectPongStep {
    pub conn: String,
    pub payload: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct CollectStep {
    pub conn: String,
    /// The event that ends the collection (inclusive); optional when `quiet` is given.
    pub until: Option<MatchSpec>,
    /// The collection also ends when no visible event arrives for this long (a stream with no end
    /// marker, such as plain-text chunks). Whichever of `until` and `quiet` comes first ends it.
    pub quiet: Option<Duration>,
    pub timeout: Option<Duration>,
    pub capture: Captures,
    pub assert: CollectAssert,
}

#[derive(Debug, Clone, Default)]
pub struct CollectAssert {
    /// type → count matcher (`1`, `{ $gte: 1 }`).
    pub count: BTreeMap<String, MatchSpec>,
    pub present: Vec<String>,
    pub absent: Vec<String>,
    /// First occurrences appear in this relative order.
    pub order: Vec<String>,
    /// Every event of the key type comes before the first event of the value type.
    pub all_before: BTreeMap<String, String>,
    pub concat: Option<ConcatAssert>,
    pub each: Vec<EachAssert>,
}

#[derive(Debug, Clone)]
pub struct ConcatAssert {
    /// Event type whose field is concatenated.
    pub items: String,
    /// JSON pointer of the field.
    pub field: String,
    /// What the concatenation must be.
    pub target: ConcatTarget,
}

#[derive(Debug, Clone)]
pub enum ConcatTarget {
    /// Equal to this field of the first event of this type in the collection.
    Event { event: String, field: String },
    /// Matching this matcher (`match: { $regex: "^You said" }`, or a plain string for equality).
    Match(MatchSpec),
}

#[derive(Debug, Clone)]
pub struct EachAssert {
    pub event_type: String,
    pub matcher: MatchSpec,
}

#[derive(Debug, Clone)]
pub struct ExpectNoneStep {
    pub conn: String,
    pub matcher: MatchSpec,
    pub within: Duration,
}

#[derive(Debug, Clone)]
pub enum CloseCodeExpect {
    /// Any close frame.
    Any,
    Code(u16),
    /// The transport ends without a close frame.
    NoFrame,
}

#[derive(Debug, Clone)]
pub struct ExpectCloseStep {
    pub conn: String,
    pub code: CloseCodeExpect,
    pub reason: Option<MatchSpec>,
    pub strict: bool,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct CloseStep {
    pub conn: String,
    pub code: u16,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimingMetric {
    Connect,
    FirstEvent,
    FirstToken,
    MaxTokenGap,
    Turn,
    CancelAck,
}

#[derive(Debug, Clone, Copy)]
pub struct DurationBound {
    pub min: Option<Duration>,
    pub max: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct TimingStep {
    pub conn: String,
    pub bounds: BTreeMap<TimingMetric, DurationBound>,
}

/// Values a template may read at run time (besides builtins resolved by the runner).
pub type Vars = BTreeMap<String, Value>;
