//! Executes scenarios over real connections and emits run events.
//!
//! [`run`] resolves the target (a `--target`, the suite's `target`, or the embedded reference server),
//! loads schemas and rules once, runs scenarios concurrently (`--jobs`), and sends a [`RunEvent`] for
//! each milestone to the caller's channel. Reporters consume those events; the runner never calls them.

mod conn;
mod exec;
pub mod resolver;
pub mod result;
pub mod select;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{mpsc, Semaphore};

pub use result::*;

use crate::rules::{RuleSet, RulesError};
use crate::scenario::{Level, Scenario, Suite, SuiteConfig};
use crate::schema::{SchemaError, SchemaRegistry};
use crate::transport::http::{HttpClient, HttpError};
use crate::transport::tls::{TlsSettings, TlsSetupError};
use resolver::{RunValues, VarsResolver};

/// Options of one run (from the command line).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--target` / `WSCHAT_TARGET`: overrides the suite's target.
    pub target: Option<String>,
    /// `--var name=value`.
    pub vars: BTreeMap<String, String>,
    /// Scenarios run at once; 0 means [`DEFAULT_JOBS`].
    pub jobs: usize,
    /// `--timeout`: overrides the suite's default `expect` timeout.
    pub expect_timeout: Option<Duration>,
    pub tls: TlsSettings,
    /// `--retries N`: a failed scenario runs up to N more times; a later pass makes it `flaky`.
    pub retries: u32,
    /// `--fail-fast`: after the first failure that counts, start no new scenario.
    pub fail_fast: Option<FailFast>,
    /// `WSCHAT_LIVE=1`: run scenarios tagged `live` (skipped otherwise).
    pub live: bool,
    /// `WSCHAT_TOKEN`: the value of `${token}`, overriding the suite's `auth.token`.
    pub token: Option<String>,
    /// HS256 secret of the embedded reference server (random when absent). The CLI picks it so
    /// it can redact it from every report before the run starts.
    pub embedded_jwt_secret: Option<String>,
}

/// When `--fail-fast` stops a run.
#[derive(Debug, Clone)]
pub struct FailFast {
    /// Only failures at this level or stricter stop the run (the run's fail level): a failure
    /// that cannot fail the run should not cut it short either.
    pub level: Level,
    /// Scenario names whose failure is tolerated (the baseline's known failures).
    pub tolerated: BTreeSet<String>,
}

impl FailFast {
    fn stops_on(&self, r: &ScenarioResult) -> bool {
        r.status == Status::Failed && r.level <= self.level && !self.tolerated.contains(&r.name)
    }
}

/// Scenarios run at once when `--jobs` is not given. Scenarios spend their time waiting on the
/// network and on protocol deadlines (the bundled suite needs ~0.15 s of CPU in all), so the core
/// count would leave the machine idle; 16 keeps the bundled suite's wall time near its longest
/// scenario while staying a modest number of concurrent sessions for a real deployment.
pub const DEFAULT_JOBS: usize = 16;

/// The tag that marks scenarios for a live deployment.
pub const LIVE_TAG: &str = "live";

/// Errors that stop a run before any scenario runs.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Schemas(#[from] SchemaError),
    #[error("{0}")]
    Rules(#[from] RulesError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("{0}")]
    Config(String),
    #[error("could not start the embedded reference server: {0}")]
    Server(String),
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl RunError {
    /// Exit code: 2 for configuration problems, 3 for the environment.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Schemas(_) | RunError::Rules(_) | RunError::Tls(_) | RunError::Config(_) => 2,
            RunError::Server(_) | RunError::Http(_) => 3,
        }
    }
}

/// What every scenario task shares.
pub(crate) struct RunShared {
    pub values: RunValues,
    pub schemas: Arc<SchemaRegistry>,
    pub rules: Arc<RuleSet>,
    pub config: SuiteConfig,
    pub http: HttpClient,
    pub ws_tls: Option<Arc<rustls::ClientConfig>>,
    /// Default `expect` timeout (`--timeout` > suite > built-in).
    pub expect_timeout: Duration,
    /// Validate one received event in this many against its schema (1: every event; load mode's
    /// `--schema-sample`).
    pub schema_sample: u32,
    /// Whether passed scenarios' transcripts get back the parsed JSON of their received frames
    /// (`Conn::into_transcript`); load mode only counts their frames.
    pub transcript_json: bool,
    /// WebSocket read buffer per connection (`transport::ws::READ_BUFFER`, or `READ_BUFFER_MANY`).
    pub read_buffer: usize,
    /// The suite's `timing:` names, shared by every scenario's checks.
    pub timing: Arc<crate::scenario::TimingNames>,
}

/// Loads the schema registry a suite names (its folder, else the built-in schemas).
pub fn load_schemas(config: &SuiteConfig) -> Result<SchemaRegistry, SchemaError> {
    // An AsyncAPI document (suite `asyncapi:` or `--asyncapi`) takes precedence over the folder.
    SchemaRegistry::for_suite(config)
}

/// Loads the suite's rules file (an empty set when it has none).
pub fn load_rules(suite: &Suite) -> Result<RuleSet, RulesError> {
    match &suite.rules_file {
        Some(p) => crate::rules::load_rules(p),
        None => Ok(RuleSet::default()),
    }
}

/// `ws://h:p/x` → `http://h:p` (path dropped), `wss` → `https`.
pub fn derive_http_base(target: &str) -> String {
    let (scheme, rest) = match target.split_once("://") {
        Some(("wss", rest)) => ("https", rest),
        Some(("ws", rest)) => ("http", rest),
        Some((s, rest)) => (s, rest),
        None => ("http", target),
    };
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

/// The current time as RFC 3339 UTC (seconds).
pub fn now_rfc3339() -> String {
    // Seconds since the epoch to a civil UTC date (days-from-civil inverse, proleptic Gregorian).
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// A resolved target with schemas, rules and clients loaded: what running a scenario needs.
///
/// [`run`] prepares once and runs every scenario; load mode (`crate::load`) prepares once and runs
/// one scenario many times through [`Prepared::run_scenario`], with the same checks.
pub struct Prepared {
    shared: Arc<RunShared>,
    server: Option<reference_server::ServerHandle>,
    target_label: String,
}

impl Prepared {
    /// Resolves the target and loads schemas and rules. Without a target the embedded reference server
    /// starts with `embedded` (its `jwt_secret` is replaced by a random one; token pacing is left as
    /// given: [`run`] uses zero pacing), then the suite's `embedded.server` settings when the loader
    /// applied the suite's `embedded:` section ([`crate::scenario::load_suite_for_run`]).
    pub async fn new(
        suite: &Suite,
        opts: &RunOptions,
        embedded: reference_server::Config,
    ) -> Result<Prepared, RunError> {
        let config = suite.config.clone();
        let schemas = Arc::new(load_schemas(&config)?);
        let rules = Arc::new(load_rules(suite)?);
        let tls = opts.tls.client_config()?;
        let http = HttpClient::new(tls.clone())?;

        let cli_vars = opts.vars.clone();
        let mut values = RunValues {
            cli_vars: cli_vars.clone(),
            ..Default::default()
        };
        let render = |t: &crate::scenario::Template, what: &str, values: &RunValues| {
            let empty = BTreeMap::new();
            t.render_string(&VarsResolver {
                run: values,
                vars: &empty,
            })
            .map_err(|e| RunError::Config(format!("{}: {what}: {e}", config_origin(&config))))
        };
        let target_from_suite = opts.target.is_none();
        let suite_target = match (&opts.target, &config.target) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(t)) => Some(render(t, "target", &values)?),
            (None, None) => None,
        };
        let mut server = None;
        let target_label;
        match suite_target {
            Some(t) => {
                values.http_base = match (&config.http_base, target_from_suite) {
                    (Some(h), true) => render(h, "http_base", &values)?,
                    _ => derive_http_base(&t),
                };
                target_label = crate::transport::ws::redact_url(&t);
                values.target = t;
                if let Some(s) = &config.auth.jwt_secret {
                    // An empty secret (`${env:WSCHAT_JWT_SECRET:-}` with the variable unset)
                    // means "none configured": `${jwt:…}` then fails to render, naming it.
                    values.jwt_secret =
                        Some(render(s, "auth.jwt_secret", &values)?).filter(|s| !s.is_empty());
                }
            }
            None if config.target_required => {
                return Err(RunError::Config(format!(
                    "{}: target_required: this suite describes another server; give its URL with --target or WSCHAT_TARGET (the embedded reference server speaks another protocol)",
                    config_origin(&config)
                )));
            }
            None => {
                let secret = opts
                    .embedded_jwt_secret
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(resolver::random_secret);
                // The suite's `embedded.server` settings (short protocol deadlines for a fast
                // suite) go with its `embedded.vars`, which the loader applied only if it knew
                // this run would use the embedded server; otherwise both stay as they are.
                let embedded = if config.embedded.applied {
                    config.embedded.server.apply(embedded)
                } else {
                    embedded
                };
                let handle = reference_server::start(reference_server::Config {
                    jwt_secret: secret.clone(),
                    ..embedded
                })
                .await
                .map_err(|e| RunError::Server(e.to_string()))?;
                values.target = handle.ws_url();
                values.http_base = handle.http_url();
                values.jwt_secret = Some(secret);
                target_label = format!("embedded reference server at {}", handle.ws_url());
                server = Some(handle);
            }
        }
        if let Some(c) = &config.auth.claims {
            let empty = BTreeMap::new();
            let rendered = c
                .render(&VarsResolver {
                    run: &values,
                    vars: &empty,
                })
                .map_err(|e| {
                    RunError::Config(format!("{}: auth.claims: {e}", config_origin(&config)))
                })?;
            if let serde_json::Value::Object(map) = rendered {
                values.claims = map;
            }
        }
        if let Some(t) = opts.token.clone().filter(|t| !t.is_empty()) {
            values.token = Some(t);
        } else if let Some(t) = &config.auth.token {
            values.token = Some(render(t, "auth.token", &values)?);
        }

        let expect_timeout = opts.expect_timeout.unwrap_or(config.timeouts.expect);
        let shared = Arc::new(RunShared {
            values,
            schemas,
            rules,
            config,
            http,
            ws_tls: tls,
            expect_timeout,
            schema_sample: 1,
            transcript_json: true,
            read_buffer: crate::transport::ws::READ_BUFFER,
            timing: Arc::new(suite.config.timing.clone()),
        });
        Ok(Prepared {
            shared,
            server,
            target_label,
        })
    }

    /// Validates only one received event in `n` against its schema (per connection, the first always;
    /// rules still see every event). 0 and 1 mean every event. Call before the first scenario runs.
    pub fn set_schema_sample(&mut self, n: u32) {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.schema_sample = n.max(1);
        }
    }

    /// Leaves out the parsed JSON of received frames in the transcripts of passed scenarios (their
    /// text stays): for load mode, which only counts their frames, so that re-parsing thousands of
    /// finished turns costs neither CPU nor a burst of memory. Call before the first scenario runs.
    pub fn set_transcript_json(&mut self, on: bool) {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.transcript_json = on;
        }
    }

    /// The WebSocket read buffer of every connection (see `transport::ws::READ_BUFFER_MANY`). Call
    /// before the first scenario runs.
    pub fn set_read_buffer(&mut self, bytes: usize) {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.read_buffer = bytes;
        }
    }

    /// The target for people: a redacted URL, or `embedded reference server at ...`.
    pub fn target_label(&self) -> &str {
        &self.target_label
    }

    /// Runs one scenario with every check on (schemas as sampled, rules) and returns its result.
    pub async fn run_scenario(&self, sc: &crate::scenario::Scenario) -> ScenarioResult {
        exec::run_scenario(self.shared.clone(), sc).await
    }

    /// Stops the embedded server, if one was started.
    pub async fn shutdown(self) {
        if let Some(s) = self.server {
            s.shutdown().await;
        }
    }
}

/// Runs every scenario of `suite` and reports through `events`. Returns the summary (also sent as
/// `RunFinished`).
pub async fn run(
    suite: Suite,
    opts: RunOptions,
    events: mpsc::UnboundedSender<RunEvent>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let prepared = Prepared::new(
        &suite,
        &opts,
        reference_server::Config {
            token_pace: Duration::ZERO,
            ..Default::default()
        },
    )
    .await?;
    let shared = prepared.shared.clone();
    let target_label = prepared.target_label.clone();
    let total = suite.scenarios.len();
    // More permits than scenarios change nothing; the header and reports show what really runs at once.
    // The suite's `jobs:` is the most its server allows at once: it caps `--jobs` as well.
    let jobs = if opts.jobs == 0 {
        DEFAULT_JOBS
    } else {
        opts.jobs
    }
    .min(suite.config.jobs.unwrap_or(usize::MAX))
    .min(total.max(1));
    let _ = events.send(RunEvent::RunStarted(RunInfo {
        target: target_label,
        total,
        started_at: now_rfc3339(),
        jobs,
    }));

    // Permits are taken here, in run order, before each task is spawned (spawned tasks are polled
    // in no particular order): scenarios start in run order, and with --fail-fast "the rest" is
    // exactly the scenarios after the first failure that had not started yet.
    let permits = Arc::new(Semaphore::new(jobs));
    let sched = Arc::new(Schedule {
        retries: opts.retries,
        fail_fast: opts.fail_fast.clone(),
        live: opts.live,
        stopped_by: Mutex::new(None),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (index, sc) in suite.scenarios.into_iter().enumerate() {
        let permits = permits.clone();
        let shared = shared.clone();
        let events = events.clone();
        let sched = sched.clone();
        let permit = permits
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        tasks.spawn(async move {
            let _permit = permit;
            let _ = events.send(RunEvent::ScenarioStarted {
                index,
                name: sc.name.clone(),
            });
            // A panic inside a scenario is a harness bug; it must still end as a failed result
            // (with the panic message) so reports and the exit code account for the scenario.
            let result = match AssertUnwindSafe(sched.run_one(shared, &sc))
                .catch_unwind()
                .await
            {
                Ok(result) => result,
                Err(panic) => exec::internal_failure(&sc, panic_message(panic.as_ref())),
            };
            let _ = events.send(RunEvent::ScenarioFinished {
                index,
                result: Box::new(result.clone()),
            });
            result.status
        });
    }
    let mut summary = RunSummary {
        passed: 0,
        failed: 0,
        skipped: 0,
        flaky: 0,
        duration: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Status::Passed) => summary.passed += 1,
            Ok(Status::Failed) => summary.failed += 1,
            Ok(Status::Skipped) => summary.skipped += 1,
            Ok(Status::Flaky) => summary.flaky += 1,
            // A panicking scenario is a bug in the harness; count it as failed rather than hide it.
            Err(e) => {
                eprintln!("internal error: a scenario task failed: {e}");
                summary.failed += 1;
            }
        }
    }
    drop(shared);
    prepared.shutdown().await;
    summary.duration = started.elapsed();
    let _ = events.send(RunEvent::RunFinished(summary.clone()));
    Ok(summary)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_owned(),
        (None, Some(s)) => s.clone(),
        (None, None) => "a panic without a message".to_owned(),
    }
}

/// Per-run scheduling policy shared by the scenario tasks: live gating, retries, fail-fast.
struct Schedule {
    retries: u32,
    fail_fast: Option<FailFast>,
    live: bool,
    /// The scenario whose failure stopped the run (`--fail-fast`), once one has.
    stopped_by: Mutex<Option<String>>,
}

impl Schedule {
    async fn run_one(&self, shared: Arc<RunShared>, sc: &Scenario) -> ScenarioResult {
        if !self.live && sc.tags.iter().any(|t| t == LIVE_TAG) {
            return exec::skipped_result(
                sc,
                "tagged live: runs only against a live deployment with WSCHAT_LIVE=1".to_owned(),
            );
        }
        if let Some(first) = self.stopped_by.lock().expect("not poisoned").clone() {
            return exec::skipped_result(
                sc,
                format!("not run: --fail-fast stopped the run after {first} failed"),
            );
        }
        let mut spent = Duration::ZERO;
        let mut attempt = 1;
        let mut result = loop {
            let r = exec::run_scenario(shared.clone(), sc).await;
            spent += r.duration;
            if r.status != Status::Failed || attempt > self.retries {
                break r;
            }
            attempt += 1;
        };
        if attempt > 1 {
            // The result shown is the last attempt's; a pass after failures is flaky. The
            // duration is the time all attempts took, which is what the run spent on it.
            result.attempts = attempt;
            result.duration = spent;
            if result.status == Status::Passed {
                result.status = Status::Flaky;
            }
        }
        if let Some(ff) = &self.fail_fast {
            if ff.stops_on(&result) {
                self.stopped_by
                    .lock()
                    .expect("not poisoned")
                    .get_or_insert_with(|| sc.name.clone());
            }
        }
        result
    }
}

fn config_origin(c: &SuiteConfig) -> String {
    c.file
        .as_ref()
        .map(|p: &PathBuf| p.display().to_string())
        .unwrap_or_else(|| "suite config".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, level: Level, status: Status) -> ScenarioResult {
        ScenarioResult {
            name: name.into(),
            description: None,
            location: "x.yaml:1:1".into(),
            file: "x.yaml".into(),
            level,
            tags: Vec::new(),
            status,
            skip_reason: None,
            duration: Duration::ZERO,
            attempts: 1,
            steps: Vec::new(),
            failures: Vec::new(),
            transcripts: Vec::new(),
            timings: Vec::new(),
            http: Vec::new(),
        }
    }

    #[test]
    fn fail_fast_stops_only_on_failures_that_fail_the_run() {
        let ff = FailFast {
            level: Level::Must,
            tolerated: ["known".to_owned()].into(),
        };
        assert!(ff.stops_on(&result("a", Level::Must, Status::Failed)));
        assert!(!ff.stops_on(&result("a", Level::Should, Status::Failed)));
        assert!(!ff.stops_on(&result("known", Level::Must, Status::Failed)));
        assert!(!ff.stops_on(&result("a", Level::Must, Status::Flaky)));
        assert!(!ff.stops_on(&result("a", Level::Must, Status::Passed)));
        let ff = FailFast {
            level: Level::Should,
            tolerated: Default::default(),
        };
        assert!(ff.stops_on(&result("a", Level::Should, Status::Failed)));
        assert!(!ff.stops_on(&result("a", Level::May, Status::Failed)));
    }

    #[test]
    fn http_base_derivation() {
        assert_eq!(
            derive_http_base("ws://127.0.0.1:8080/api/v1"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(derive_http_base("wss://example.com"), "https://example.com");
        assert_eq!(derive_http_base("ws://h:1?x=1"), "http://h:1");
    }

    #[test]
    fn rfc3339_shape() {
        let s = now_rfc3339();
        assert_eq!(s.len(), 20, "{s}");
        assert!(
            s.starts_with("20") && s.ends_with('Z') && s.as_bytes()[10] == b'T',
            "{s}"
        );
    }
}
