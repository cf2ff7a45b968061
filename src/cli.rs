//! Command-line interface.
//!
//! Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every scenario passed (skipped scenarios are allowed), or the command succeeded |
//! | 1 | at least one scenario failed (at the failing level, `must` by default, and not baselined) |
//! | 2 | usage, configuration or load error: bad flags, a bad scenario, rules or schemas file, no scenario selected |
//! | 3 | environment error: the embedded reference server could not start, a report could not be written |
//!
//! Errors are rendered with miette at this edge; everything inside uses typed errors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::report::{Baseline, ColorChoice, ReportOptions, ReportSet, Reporter, Secret};
use crate::runner::{self, RunOptions};
use crate::scenario::{load_suite_for_run, Level, LoadError, LoadOptions, Suite};
use crate::transport::tls::TlsSettings;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_ENV: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "wschat-check",
    version,
    about = "Conformance harness for WebSocket chat and agent APIs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run scenarios against a target (default: the embedded reference server).
    Run(RunArgs),
    /// Load scenarios, rules and schemas without running anything.
    Validate(PathsArgs),
    /// List the scenarios: name, level, tags, file (`--json`: a JSON array).
    List(ListArgs),
    /// Run the bundled reference server in the foreground.
    Serve(ServeArgs),
    /// Mint an HS256 token for a user.
    Token(TokenArgs),
    /// Load test: virtual users running one scenario with every check on (latency, throughput, errors).
    Load(crate::load::LoadArgs),
    /// Work with JSON reports (`report merge` for sharded runs).
    #[command(subcommand)]
    Report(ReportCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Run scenarios and write one transcript (JSONL) per scenario, secrets redacted.
    Record(crate::record::RecordArgs),
    /// Validate recorded transcripts offline against a suite's schemas and rules.
    Check(crate::check::CheckArgs),
    /// Serve recorded transcripts as a stand-in server, or run a suite against its fixtures.
    Replay(crate::replay::ReplayArgs),
    /// Write a starter pack (schemas, rules, scenarios) learned from recorded traffic.
    Init(crate::init::InitArgs),
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Merge the JSON reports of shards into one run: prints it, writes reports, exits with its verdict.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// JSON reports (`run --report-json`) of disjoint shards.
    #[arg(required = true, value_name = "JSON")]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub out: ReportFileArgs,
}

/// Report flags of every command that runs or judges scenarios: `run`, `report merge`, `check`,
/// `record` and `replay --run`.
#[derive(Debug, Args)]
pub struct OutputArgs {
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorArg,
    /// Write a JSON report.
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    pub report_junit: Option<PathBuf>,
    /// Write a TAP 13 report.
    #[arg(long, value_name = "FILE")]
    pub report_tap: Option<PathBuf>,
    /// Write an HTML report.
    #[arg(long, value_name = "FILE")]
    pub report_html: Option<PathBuf>,
    /// A secret to redact from every output, NAME=VALUE (repeatable).
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    pub secrets: Vec<String>,
    /// Received frames shown per failure.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub frames: usize,
}

impl OutputArgs {
    /// The `--secret` values, parsed.
    pub fn secrets(&self) -> Result<Vec<Secret>, u8> {
        self.secrets
            .iter()
            .map(|s| {
                Secret::parse_arg(s).map_err(|e| {
                    report_error(e);
                    EXIT_USAGE
                })
            })
            .collect()
    }

    /// Reporting options with every `must` failure failing the run and no baseline.
    pub fn options(&self, target: Option<String>, secrets: Vec<Secret>) -> ReportOptions {
        ReportOptions {
            json: self.report_json.clone(),
            junit: self.report_junit.clone(),
            tap: self.report_tap.clone(),
            html: self.report_html.clone(),
            color: match self.color {
                ColorArg::Auto => ColorChoice::Auto,
                ColorArg::Always => ColorChoice::Always,
                ColorArg::Never => ColorChoice::Never,
            },
            secrets,
            target,
            fail_level: Level::Must,
            frames: self.frames,
            ..Default::default()
        }
    }

    /// The reporters of [`OutputArgs::options`].
    pub fn reporters(&self, target: Option<String>, secrets: Vec<Secret>) -> Result<ReportSet, u8> {
        build_reporters(self.options(target, secrets))
    }
}

/// [`OutputArgs`] plus the verdict options of `run` and `report merge`.
#[derive(Debug, Args)]
pub struct ReportFileArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// Known failures: listed scenarios may fail without failing the run.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Failures at this level or stricter fail the run.
    #[arg(long, value_enum, default_value = "must")]
    pub fail_level: LevelArg,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub paths: PathsArgs,
    /// Print a JSON array (name, description, level, tags, requires, location, file).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct PathsArgs {
    /// Scenario folders and files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Template variable (repeatable).
    #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LevelArg {
    Must,
    Should,
    May,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario folders and files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// WebSocket base URL of the server under test; absent: the embedded reference server.
    #[arg(long, env = "WSCHAT_TARGET", value_name = "URL")]
    pub target: Option<String>,
    /// Template variable (repeatable).
    #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Scenarios run at once (default: 16; scenarios mostly wait on the network, not the CPU).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Default timeout of `expect`, `collect` and other waits (overrides the suite's).
    #[arg(long, value_name = "DURATION", value_parser = crate::scenario::load::parse_duration)]
    pub timeout: Option<Duration>,
    /// Only scenarios whose name matches this glob (`*`, `?`); repeatable, any may match.
    #[arg(long, value_name = "GLOB")]
    pub filter: Vec<String>,
    /// Only scenarios with this tag; repeatable, any may match.
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// PEM file with the CA certificate(s) to trust for wss:// and https://.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    #[arg(long)]
    pub insecure: bool,
    /// Only scenarios of this level; repeatable, any may match.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub level: Vec<LevelArg>,
    /// Run shard K of N (1-based) of the selected scenarios, split by sorted name (docs/REPORTS.md).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<runner::select::Shard>,
    /// After the first failure that fails the run, start no new scenario; the rest are skipped.
    #[arg(long)]
    pub fail_fast: bool,
    /// Re-run a failed scenario up to N more times; a later pass is reported as flaky.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub retries: u32,
    /// Take message schemas from this AsyncAPI 2.x/3.x document instead of a schemas folder
    /// (overrides the suite's `asyncapi:` and `schemas:`).
    #[arg(long, value_name = "FILE")]
    pub asyncapi: Option<PathBuf>,
    #[command(flatten)]
    pub out: ReportFileArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// HS256 secret for tokens (default: random, printed at start).
    #[arg(long, env = "WSCHAT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Pause between tokens.
    #[arg(long, default_value = "30ms", value_parser = crate::scenario::load::parse_duration)]
    pub token_pace: Duration,
    /// Deadline of first-message authentication.
    #[arg(long, default_value = "5s", value_parser = crate::scenario::load::parse_duration)]
    pub auth_timeout: Duration,
    /// Idle time after which a socket is closed with 4000.
    #[arg(long, default_value = "300s", value_parser = crate::scenario::load::parse_duration)]
    pub idle_timeout: Duration,
    /// How long a turn waits for a confirmation or human reply.
    #[arg(long, default_value = "60s", value_parser = crate::scenario::load::parse_duration)]
    pub reply_timeout: Duration,
    /// Soft frame limit (MESSAGE_TOO_LARGE).
    #[arg(long, default_value_t = 65_536)]
    pub max_message_bytes: usize,
    /// Messages per second per connection.
    #[arg(long, default_value_t = 20)]
    pub rate_limit: u32,
    /// Open sockets per user.
    #[arg(long, default_value_t = 16)]
    pub max_connections_per_user: usize,
    /// Persist sessions, history and skills in this folder.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Enable POST /api/v1/dev/token.
    #[arg(long)]
    pub dev: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The `sub` claim.
    #[arg(long)]
    pub user: String,
    /// Add `admin: true`.
    #[arg(long)]
    pub admin: bool,
    /// HS256 secret.
    #[arg(long, env = "WSCHAT_JWT_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Lifetime.
    #[arg(long, default_value = "1h", value_parser = crate::scenario::load::parse_duration)]
    pub ttl: Duration,
    /// An extra claim, repeatable: `--claim tenant=acme --claim scope='["chat"]'`. A VALUE that
    /// parses as JSON is used as JSON (numbers, booleans, arrays, objects), anything else as a string.
    /// `sub`, `exp` and `iat` come from --user and --ttl and cannot be replaced.
    #[arg(long = "claim", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub claims: Vec<(String, String)>,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got '{s}'")),
    }
}

/// Glob match with `*` (any run) and `?` (one char).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Prints an error through miette's renderer.
fn report_error(msg: impl std::fmt::Display) {
    eprintln!("{:?}", miette::Report::msg(msg.to_string()));
}

fn report_load_error(e: &LoadError) {
    if e.problems.is_empty() {
        report_error(e);
    }
    for p in &e.problems {
        report_error(p);
    }
    if e.problems.len() > 1 {
        eprintln!("{} problems", e.problems.len());
    }
}

/// `cli_target`: `--target`/`WSCHAT_TARGET` given (else the suite's `embedded:` section applies
/// when the suite names no target either).
fn load(paths: &[PathBuf], vars: &[(String, String)], cli_target: bool) -> Result<Suite, u8> {
    let opts = LoadOptions {
        vars: vars.iter().cloned().collect::<BTreeMap<_, _>>(),
    };
    load_suite_for_run(paths, &opts, cli_target).map_err(|e| {
        report_load_error(&e);
        EXIT_USAGE
    })
}

pub fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Unwrapped lines keep every `file:line:col` whole, so editors and scripts can pick it up.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .wrap_lines(false)
                .terminal_links(false)
                .build(),
        )
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    ExitCode::from(dispatch(cli))
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            report_error(format!("cannot start the async runtime: {e}"));
            EXIT_ENV
        })
}

fn dispatch(cli: Cli) -> u8 {
    let r = match cli.command {
        Command::Run(a) => cmd_run(a),
        Command::Validate(a) => cmd_validate(a),
        Command::List(a) => cmd_list(a),
        Command::Report(ReportCommand::Merge(a)) => cmd_report_merge(a),
        Command::Completions(a) => cmd_completions(a),
        Command::Serve(a) => cmd_serve(a),
        Command::Token(a) => cmd_token(a),
        Command::Load(a) => crate::load::cmd_load(a),
        Command::Record(a) => crate::record::cmd_record(a),
        Command::Check(a) => crate::check::cmd_check(a),
        Command::Replay(a) => crate::replay::cmd_replay(a),
        Command::Init(a) => crate::init::cmd_init(a),
    };
    r.unwrap_or_else(|code| code)
}

fn cmd_validate(a: PathsArgs) -> Result<u8, u8> {
    let suite = load(&a.paths, &a.vars, false)?;
    let schemas = runner::load_schemas(&suite.config).map_err(|e| {
        report_error(e);
        EXIT_USAGE
    })?;
    let rules = runner::load_rules(&suite).map_err(|e| {
        report_error(e);
        EXIT_USAGE
    })?;
    println!(
        "ok: {} scenario(s), {} rule(s), schemas from {} ({} event types)",
        suite.scenarios.len(),
        rules.rules().len(),
        schemas.origin(),
        schemas.known_types(crate::schema::Side::Server).len()
    );
    Ok(EXIT_OK)
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Must => "must",
        Level::Should => "should",
        Level::May => "may",
    }
}

fn cmd_list(a: ListArgs) -> Result<u8, u8> {
    let suite = load(&a.paths.paths, &a.paths.vars, false)?;
    if a.json {
        let items: Vec<serde_json::Value> = suite
            .scenarios
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "description": s.description,
                    "level": level_name(s.level),
                    "tags": s.tags,
                    "requires": s.requires,
                    "location": s.loc.to_string(),
                    "file": s.loc.file.display().to_string(),
                })
            })
            .collect();
        let text = serde_json::to_string_pretty(&items).expect("JSON values serialize");
        println!("{text}");
        return Ok(EXIT_OK);
    }
    let width = suite
        .scenarios
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for s in &suite.scenarios {
        let tags = if s.tags.is_empty() {
            "-".to_owned()
        } else {
            s.tags.join(",")
        };
        println!(
            "{:<width$}  {:<6}  {:<24}  {}",
            s.name,
            level_name(s.level),
            tags,
            s.loc.file.display()
        );
    }
    Ok(EXIT_OK)
}

fn cmd_token(a: TokenArgs) -> Result<u8, u8> {
    if a.secret.is_empty() {
        report_error("--secret must not be empty");
        return Err(EXIT_USAGE);
    }
    let mut extra = serde_json::Map::new();
    for (name, value) in a.claims {
        if matches!(name.as_str(), "sub" | "exp" | "iat") {
            report_error(format!(
                "--claim {name}: `{name}` is set by --user/--ttl and cannot be replaced"
            ));
            return Err(EXIT_USAGE);
        }
        let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
        extra.insert(name, value);
    }
    let kind = if a.admin {
        runner::resolver::TokenKind::Admin
    } else {
        runner::resolver::TokenKind::Valid
    };
    match runner::resolver::mint_with_claims(kind, &a.user, Some(&a.secret), a.ttl, &extra) {
        Some(token) => {
            println!("{token}");
            Ok(EXIT_OK)
        }
        None => {
            report_error("could not sign the token");
            Err(EXIT_ENV)
        }
    }
}

fn cmd_serve(a: ServeArgs) -> Result<u8, u8> {
    let rt = runtime()?;
    rt.block_on(async move {
        let secret_given = a.jwt_secret.is_some();
        let config = reference_server::Config {
            bind: a.bind,
            jwt_secret: a.jwt_secret.unwrap_or_default(),
            token_pace: a.token_pace,
            auth_timeout: a.auth_timeout,
            idle_timeout: a.idle_timeout,
            reply_timeout: a.reply_timeout,
            max_message_bytes: a.max_message_bytes,
            rate_limit_per_sec: a.rate_limit,
            rate_burst: a.rate_limit.saturating_mul(2),
            max_connections_per_user: a.max_connections_per_user,
            data_dir: a.data_dir,
            dev: a.dev,
            ..Default::default()
        };
        let handle = reference_server::start(config).await.map_err(|e| {
            report_error(format!("could not start the reference server: {e}"));
            EXIT_ENV
        })?;
        println!(
            "reference server listening on {} (HTTP {})",
            handle.ws_url(),
            handle.http_url()
        );
        if !secret_given {
            println!("jwt secret (random for this run): {}", handle.jwt_secret());
        }
        if let Err(e) = tokio::signal::ctrl_c().await {
            report_error(format!("cannot wait for Ctrl-C: {e}"));
        }
        handle.shutdown().await;
        Ok(EXIT_OK)
    })
}

/// Whether a `--var` name looks like a credential; such values are redacted like `--secret`s.
fn is_credential_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["token", "secret", "password", "passwd", "api_key", "apikey"]
        .iter()
        .any(|w| n.contains(w))
}

/// The suite's own HS256 secret (`auth.jwt_secret`, usually `${env:NAME}`), rendered the way the
/// runner renders it, so reports can redact it. `None` when the suite has none or it refers to
/// run values (target, ...) the CLI does not know yet; the runner then reports the problem.
fn suite_jwt_secret(suite: &Suite, vars: &[(String, String)]) -> Option<String> {
    let template = suite.config.auth.jwt_secret.as_ref()?;
    let run = runner::resolver::RunValues {
        cli_vars: vars.iter().cloned().collect(),
        ..Default::default()
    };
    let empty = BTreeMap::new();
    template
        .render_string(&runner::resolver::VarsResolver {
            run: &run,
            vars: &empty,
        })
        .ok()
        .filter(|s| !s.is_empty())
}

fn level_of(l: LevelArg) -> Level {
    match l {
        LevelArg::Must => Level::Must,
        LevelArg::Should => Level::Should,
        LevelArg::May => Level::May,
    }
}

/// The reporting options of `run` and `report merge`, with extra secrets to redact.
fn report_options(
    a: &ReportFileArgs,
    target: Option<String>,
    mut secrets: Vec<Secret>,
) -> Result<ReportOptions, u8> {
    secrets.extend(a.output.secrets()?);
    Ok(ReportOptions {
        baseline: a.baseline.clone(),
        fail_level: level_of(a.fail_level),
        ..a.output.options(target, secrets)
    })
}

fn build_reporters(opts: ReportOptions) -> Result<ReportSet, u8> {
    opts.build().map_err(|e| {
        report_error(e);
        EXIT_USAGE
    })
}

/// Writes the report files and turns the verdict into the exit code: 0 conformant, 1 failed, 3 when
/// a report could not be written.
pub(crate) fn finish_reporters(reporters: &mut ReportSet) -> Result<u8, u8> {
    if let Err(e) = reporters.finish() {
        report_error(format!("could not write the report: {e}"));
        return Err(EXIT_ENV);
    }
    Ok(verdict_code(reporters))
}

fn verdict_code(reporters: &ReportSet) -> u8 {
    if reporters.decision().success {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

fn cmd_run(a: RunArgs) -> Result<u8, u8> {
    let mut suite = load(&a.paths, &a.vars, a.target.is_some())?;
    if let Some(doc) = &a.asyncapi {
        if !doc.is_file() {
            report_error(format!("--asyncapi {}: no such file", doc.display()));
            return Err(EXIT_USAGE);
        }
        suite.config.asyncapi = Some(doc.clone());
    }
    let total = suite.scenarios.len();
    suite.scenarios.retain(|s| {
        (a.filter.is_empty() || a.filter.iter().any(|g| glob_match(g, &s.name)))
            && (a.tag.is_empty() || a.tag.iter().any(|t| s.tags.contains(t)))
    });
    let levels: Vec<Level> = a.level.iter().copied().map(level_of).collect();
    suite.scenarios = runner::select::by_level(std::mem::take(&mut suite.scenarios), &levels);
    let selected = suite.scenarios.len();
    if let Some(shard) = a.shard {
        suite.scenarios = shard.select(std::mem::take(&mut suite.scenarios));
    }
    // An empty shard is normal when a small selection is split many ways: it still runs (and
    // writes its reports, which `report merge` expects), with nothing in it.
    if selected == 0 {
        report_error(if total == 0 {
            "no scenario found in the given paths".to_owned()
        } else {
            format!("none of the {total} scenario(s) matches --filter/--tag/--level")
        });
        return Err(EXIT_USAGE);
    }
    // The embedded server's secret is chosen here so every report can redact it.
    let jwt_secret = runner::resolver::random_secret();
    let mut secrets = vec![Secret::new("JWT_SECRET", jwt_secret.clone())];
    for (k, v) in &a.vars {
        if is_credential_name(k) {
            secrets.push(Secret::new(k.to_ascii_uppercase(), v.clone()));
        }
    }
    if let Some(s) = suite_jwt_secret(&suite, &a.vars) {
        secrets.push(Secret::new("JWT_SECRET", s));
    }
    let report_opts = report_options(&a.out, a.target.clone(), secrets)?;
    let fail_level = report_opts.fail_level;
    let mut reporters = build_reporters(report_opts)?;
    let fail_fast = if a.fail_fast {
        let tolerated = match &a.out.baseline {
            Some(p) => Baseline::load(p)
                .map_err(|e| {
                    report_error(e);
                    EXIT_USAGE
                })?
                .entries
                .into_iter()
                .map(|e| e.name)
                .collect(),
            None => Default::default(),
        };
        Some(runner::FailFast {
            level: fail_level,
            tolerated,
        })
    } else {
        None
    };
    let opts = RunOptions {
        target: a.target.clone(),
        vars: a.vars.iter().cloned().collect(),
        jobs: a.jobs.unwrap_or(0),
        expect_timeout: a.timeout,
        tls: TlsSettings {
            ca_cert: a.ca_cert.clone(),
            insecure: a.insecure,
        },
        retries: a.retries,
        fail_fast,
        live: std::env::var("WSCHAT_LIVE").is_ok_and(|v| v == "1"),
        token: std::env::var("WSCHAT_TOKEN").ok().filter(|t| !t.is_empty()),
        embedded_jwt_secret: Some(jwt_secret),
    };
    let rt = runtime()?;
    let outcome = rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let run = tokio::spawn(runner::run(suite, opts, tx));
        while let Some(ev) = rx.recv().await {
            reporters.on_event(&ev);
        }
        let result = run.await;
        (result, reporters)
    });
    let (result, mut reporters) = outcome;
    match result {
        Err(join) => {
            report_error(format!("internal error: the run task failed: {join}"));
            return Err(EXIT_ENV);
        }
        Ok(Err(e)) => {
            report_error(&e);
            return Err(e.exit_code());
        }
        Ok(Ok(_summary)) => {}
    }
    finish_reporters(&mut reporters)
}

/// `report merge`: the shards' reports become one run, rendered and judged like a single run.
fn cmd_report_merge(a: MergeArgs) -> Result<u8, u8> {
    let report = crate::report::merge::merge_files(&a.inputs).map_err(|e| {
        report_error(e);
        EXIT_USAGE
    })?;
    let mut reporters = build_reporters(report_options(&a.out, None, Vec::new())?)?;
    if let Err(e) = reporters.replay(&report) {
        report_error(format!("could not write the report: {e}"));
        return Err(EXIT_ENV);
    }
    Ok(verdict_code(&reporters))
}

fn cmd_completions(a: CompletionsArgs) -> Result<u8, u8> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "wschat-check", &mut std::io::stdout());
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("stream-*", "stream-single-message"));
        assert!(glob_match("*cancel*", "turn-cancel-ack"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "abbc"));
        assert!(!glob_match("stream-*", "auth-header"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn vars_parse() {
        assert_eq!(parse_var("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_var("=x").is_err());
        assert!(parse_var("novalue").is_err());
    }

    #[test]
    fn credential_named_vars_are_secrets() {
        for n in [
            "token",
            "api_key",
            "ADMIN_TOKEN",
            "db_password",
            "apiKey",
            "client_secret",
        ] {
            assert!(is_credential_name(n), "{n}");
        }
        for n in ["user", "session", "chat", "nonce"] {
            assert!(!is_credential_name(n), "{n}");
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
