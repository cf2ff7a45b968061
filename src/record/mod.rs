//! `wschat-check record`: runs scenarios and writes one transcript (`docs/TRANSCRIPT.md`) per scenario.
//!
//! The runner already keeps every connection's frames in [`crate::runner::ScenarioResult::transcripts`];
//! this module only converts them ([`transcript::from_result`]) and writes them, secrets redacted.

pub mod interactive;
pub mod repl_command;
pub mod transcript;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::check::{report_error, runtime};
use crate::cli::{glob_match, OutputArgs, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::report::{Redactor, Reporter};
use crate::runner::{self, RunEvent, RunOptions, ScenarioResult, Status};
use crate::scenario::{load_suite, LoadOptions};
use crate::transport::tls::TlsSettings;

pub use transcript::{read, TranscriptError, TranscriptFile};

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Scenario folders and files (none with --interactive).
    #[arg(required_unless_present = "interactive", value_name = "SCENARIO")]
    pub paths: Vec<PathBuf>,
    /// Record a conversation typed (or piped) line by line instead of running scenarios
    /// (docs/TRANSCRIPT.md, "Recording a conversation by hand").
    #[arg(long)]
    pub interactive: bool,
    /// With --interactive: a header of the upgrade and of `:http` requests (`Name: value`, repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE", requires = "interactive")]
    pub headers: Vec<String>,
    /// With --interactive: a subprotocol to offer (repeatable).
    #[arg(long = "subprotocol", value_name = "NAME", requires = "interactive")]
    pub subprotocols: Vec<String>,
    /// With --interactive: the transcript's scenario name.
    #[arg(
        long,
        default_value = "interactive",
        value_name = "NAME",
        requires = "interactive"
    )]
    pub name: String,
    /// With --interactive over a pipe: the silence after which the next line is sent.
    #[arg(long, value_name = "DURATION", value_parser = crate::scenario::load::parse_duration, requires = "interactive")]
    pub settle: Option<Duration>,
    /// With --interactive: the discriminator `:wait TYPE` looks at (member name or JSON pointer).
    #[arg(
        long,
        default_value = "type",
        value_name = "PTR",
        requires = "interactive"
    )]
    pub discriminator: String,
    /// WebSocket base URL of the server to record; absent: the embedded reference server.
    #[arg(long, env = "WSCHAT_TARGET", value_name = "URL")]
    pub target: Option<String>,
    /// Where to write: a `.jsonl` file (one scenario only) or a folder (one `NAME.jsonl` per scenario).
    #[arg(long, default_value = "recordings", value_name = "PATH")]
    pub out: PathBuf,
    /// Only scenarios whose name matches this glob; repeatable, any may match.
    #[arg(long, value_name = "GLOB")]
    pub filter: Vec<String>,
    /// Template variable (repeatable).
    #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Default timeout of `expect`, `collect` and other waits.
    #[arg(long, value_name = "DURATION", value_parser = crate::scenario::load::parse_duration)]
    pub timeout: Option<Duration>,
    /// Scenarios run at once (default: 16; scenarios mostly wait on the network, not the CPU).
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// PEM file with the CA certificate(s) to trust for wss:// and https://.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    #[arg(long)]
    pub insecure: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub(crate) fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got '{s}'")),
    }
}

/// Where the transcript of `name` goes.
fn out_path(out: &Path, name: &str, single: bool) -> PathBuf {
    if single && out.extension().is_some_and(|e| e == "jsonl") {
        out.to_owned()
    } else {
        out.join(format!("{}.jsonl", sanitize(name)))
    }
}

/// A scenario name as a file name (path separators and odd characters become `_`).
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs `record`; `Ok` or `Err`, the value is the exit code (errors are reported here).
pub fn cmd_record(a: RecordArgs) -> Result<u8, u8> {
    if a.interactive {
        return cmd_interactive(a);
    }
    let opts = LoadOptions {
        vars: a.vars.iter().cloned().collect(),
    };
    let mut suite = load_suite(&a.paths, &opts).map_err(|e| {
        crate::check::report_load_error(&e);
        EXIT_USAGE
    })?;
    suite
        .scenarios
        .retain(|s| a.filter.is_empty() || a.filter.iter().any(|g| glob_match(g, &s.name)));
    if suite.scenarios.is_empty() {
        report_error("no scenario to record (check the paths and --filter)");
        return Err(EXIT_USAGE);
    }
    let single = suite.scenarios.len() == 1;
    if !single && a.out.extension().is_some_and(|e| e == "jsonl") {
        report_error(format!(
            "--out {} names one file, but {} scenarios are selected: give a folder or --filter one scenario",
            a.out.display(),
            suite.scenarios.len()
        ));
        return Err(EXIT_USAGE);
    }
    let discriminator = suite.config.discriminator.clone();
    let secrets = a.output.secrets()?;
    let mut redactor = Redactor::new(secrets.iter().cloned());
    redactor.add_env_tokens();
    let mut reporters = a.output.reporters(a.target.clone(), secrets)?;
    let run_opts = RunOptions {
        target: a.target.clone(),
        vars: a.vars.iter().cloned().collect(),
        jobs: a.jobs.unwrap_or(0),
        expect_timeout: a.timeout,
        tls: TlsSettings {
            ca_cert: a.ca_cert.clone(),
            insecure: a.insecure,
        },
        ..Default::default()
    };
    let rt = runtime()?;
    let (results, started_at) = rt
        .block_on(async move {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let run = tokio::spawn(runner::run(suite, run_opts, tx));
            let mut results: Vec<ScenarioResult> = Vec::new();
            let mut started_at = String::new();
            while let Some(ev) = rx.recv().await {
                match &ev {
                    RunEvent::RunStarted(info) => started_at = info.started_at.clone(),
                    RunEvent::ScenarioFinished { result, .. } => results.push((**result).clone()),
                    _ => {}
                }
                reporters.on_event(&ev);
            }
            match run.await {
                Err(join) => {
                    report_error(format!("internal error: the run task failed: {join}"));
                    Err(crate::cli::EXIT_ENV)
                }
                Ok(Err(e)) => {
                    report_error(&e);
                    Err(e.exit_code())
                }
                Ok(Ok(_)) => Ok((results, started_at, reporters)),
            }
        })
        .and_then(|(r, s, mut rep)| {
            // The verdict of `record` is about what was recorded (below); the reports only need writing.
            crate::cli::finish_reporters(&mut rep)?;
            Ok((r, s))
        })?;
    let mut failed = false;
    for r in &results {
        if r.status == Status::Skipped {
            eprintln!(
                "record: {}: skipped ({}), nothing recorded",
                r.name,
                r.skip_reason.as_deref().unwrap_or("no reason given")
            );
            continue;
        }
        failed |= matches!(r.status, Status::Failed);
        let Some(t) = transcript::from_result(r, &discriminator, &started_at, &redactor) else {
            eprintln!(
                "record: {}: the scenario made no connection and no HTTP request, nothing recorded",
                r.name
            );
            continue;
        };
        let path = out_path(&a.out, &r.name, single);
        if let Err(e) = t.write(&path) {
            report_error(e);
            return Err(crate::cli::EXIT_ENV);
        }
        println!(
            "recorded {} ({} records, {} HTTP{}) → {}",
            r.name,
            t.records.len(),
            t.http_exchanges().count(),
            if r.status == Status::Failed {
                ", the scenario FAILED"
            } else {
                ""
            },
            path.display()
        );
    }
    Ok(if failed { EXIT_FAILED } else { EXIT_OK })
}

/// `record --interactive`.
fn cmd_interactive(a: RecordArgs) -> Result<u8, u8> {
    if !a.paths.is_empty() {
        report_error("--interactive records a conversation, not scenarios: give no scenario paths");
        return Err(EXIT_USAGE);
    }
    let Some(target) = a.target.clone() else {
        report_error("--interactive needs --target URL (or WSCHAT_TARGET): the server to talk to");
        return Err(EXIT_USAGE);
    };
    let target = interactive::parse_headers(&[format!("t: {target}")])?
        .remove(0)
        .1;
    let headers = interactive::parse_headers(&a.headers)?;
    let secrets = a.output.secrets()?;
    let mut redactor = Redactor::new(secrets);
    redactor.add_env_tokens();
    let tls = TlsSettings {
        ca_cert: a.ca_cert.clone(),
        insecure: a.insecure,
    }
    .client_config()
    .map_err(|e| {
        report_error(e);
        EXIT_USAGE
    })?;
    let out = if a.out.extension().is_some_and(|e| e == "jsonl") {
        a.out.clone()
    } else {
        a.out.join(format!("{}.jsonl", sanitize(&a.name)))
    };
    let terminal = interactive::stdin_is_terminal();
    let discriminator = if a.discriminator.starts_with('/') {
        a.discriminator.clone()
    } else {
        format!("/{}", a.discriminator)
    };
    let color = terminal
        && std::env::var_os("NO_COLOR").is_none()
        && !matches!(a.output.color, crate::cli::ColorArg::Never);
    if terminal {
        eprintln!(
            "recording to {} (:help for commands, Ctrl-D to save and quit)",
            out.display()
        );
    }
    let opts = interactive::SessionOptions {
        target,
        headers,
        subprotocols: a.subprotocols.clone(),
        out,
        name: a.name.clone(),
        settle: a.settle.unwrap_or(interactive::DEFAULT_SETTLE),
        timeout: a.timeout.unwrap_or(interactive::DEFAULT_TIMEOUT),
        discriminator,
        tls,
        redactor,
        settle_sends: !terminal,
        color,
    };
    interactive::run_session(opts, Box::new(std::io::BufReader::new(std::io::stdin())))
}
