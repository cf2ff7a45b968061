//! `wschat-check record`: runs scenarios and writes one transcript (`docs/TRANSCRIPT.md`) per scenario.
//!
//! The runner already keeps every connection's frames in [`crate::runner::ScenarioResult::transcripts`];
//! this module only converts them ([`transcript::from_result`]) and writes them, secrets redacted.

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
    /// Scenario folders and files.
    #[arg(required = true, value_name = "SCENARIO")]
    pub paths: Vec<PathBuf>,
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
