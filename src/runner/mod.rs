//! Executes scenarios over real connections and emits run events.
//!
//! [`run`] resolves the target (a `--target`, the suite's `target`, or the embedded reference server),
//! loads schemas and rules once, runs scenarios concurrently (`--jobs`), and sends a [`RunEvent`] for
//! each milestone to the caller's channel. Reporters consume those events; the runner never calls them.

mod conn;
mod exec;
pub mod resolver;
pub mod result;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};

pub use result::*;

use crate::rules::{RuleSet, RulesError};
use crate::scenario::{Suite, SuiteConfig};
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
    /// Scenarios run at once; 0 means the number of cores.
    pub jobs: usize,
    /// `--timeout`: overrides the suite's default `expect` timeout.
    pub expect_timeout: Option<Duration>,
    pub tls: TlsSettings,
}

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
}

/// Loads the schema registry a suite names (its folder, else the built-in schemas).
pub fn load_schemas(config: &SuiteConfig) -> Result<SchemaRegistry, SchemaError> {
    SchemaRegistry::load(config.schemas_dir.as_deref(), &config.discriminator)
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

fn now_rfc3339() -> String {
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

/// Runs every scenario of `suite` and reports through `events`. Returns the summary (also sent as
/// `RunFinished`).
pub async fn run(
    suite: Suite,
    opts: RunOptions,
    events: mpsc::UnboundedSender<RunEvent>,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let config = suite.config.clone();
    let schemas = Arc::new(load_schemas(&config)?);
    let rules = Arc::new(load_rules(&suite)?);
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
                values.jwt_secret = Some(render(s, "auth.jwt_secret", &values)?);
            }
        }
        None => {
            let secret = resolver::random_secret();
            let handle = reference_server::start(reference_server::Config {
                jwt_secret: secret.clone(),
                token_pace: Duration::ZERO,
                ..Default::default()
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
    if let Some(t) = &config.auth.token {
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
    });
    let jobs = if opts.jobs == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        opts.jobs
    };
    let total = suite.scenarios.len();
    let _ = events.send(RunEvent::RunStarted(RunInfo {
        target: target_label,
        total,
        started_at: now_rfc3339(),
        jobs,
    }));

    let permits = Arc::new(Semaphore::new(jobs));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, sc) in suite.scenarios.into_iter().enumerate() {
        let permits = permits.clone();
        let shared = shared.clone();
        let events = events.clone();
        tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let _ = events.send(RunEvent::ScenarioStarted {
                index,
                name: sc.name.clone(),
            });
            let result = exec::run_scenario(shared, &sc).await;
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
    if let Some(s) = server {
        s.shutdown().await;
    }
    summary.duration = started.elapsed();
    let _ = events.send(RunEvent::RunFinished(summary.clone()));
    Ok(summary)
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
