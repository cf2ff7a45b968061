//! `wschat-check replay`: a stand-in server that plays the server side of recorded transcripts.
//!
//! Two uses:
//! - `replay FILE... --bind ADDR`: serve recordings to any client (a scenario run, the team's own
//!   client code) until Ctrl-C;
//! - `replay FIXTURES --run SCENARIOS`: run each scenario against a replay of its fixture (matched by
//!   name), so a pack's scenarios run in CI without the live service.
//!
//! Matching of client frames follows `docs/TRANSCRIPT.md` ("Replay"): order, kind, and the
//! discriminator value of JSON frames; other members vary from run to run and are not compared. A
//! mismatch closes the connection with 1008 and a reason naming the seq, and is reported.

mod exchange;
mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use crate::check::{collect_files, report_error, runtime};
use crate::cli::{
    finish_reporters, glob_match, OutputArgs, EXIT_ENV, EXIT_FAILED, EXIT_OK, EXIT_USAGE,
};
use crate::record::transcript::{self, TranscriptFile, Verdict};
use crate::report::Reporter;
use crate::runner::{
    self, Failure, FailureKind, RunEvent, RunInfo, RunOptions, RunSummary, ScenarioResult, Status,
};
use crate::scenario::{load_suite, LoadOptions, Suite, Template};

pub use server::{ReplayHandle, ReplayOptions, ReplayServer};

/// How recorded gaps between server frames are played.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pace {
    /// Wait the recorded gap before each server frame.
    Recorded,
    /// Send server frames as soon as their turn comes.
    Fast,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Transcript files or folders of them (with `--run`: the fixtures folder).
    #[arg(required = true, value_name = "TRANSCRIPT")]
    pub paths: Vec<PathBuf>,
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// Play the recorded gaps, or send at once (default: recorded; with --run: fast).
    #[arg(long, value_enum)]
    pub pace: Option<Pace>,
    /// Extra time a client frame may take beyond its recorded gap.
    #[arg(long, default_value = "5s", value_parser = crate::scenario::load::parse_duration)]
    pub slack: Duration,
    /// Run these scenarios (folders or files), each against the fixture named like it.
    #[arg(long, value_name = "SCENARIOS", num_args = 1..)]
    pub run: Vec<PathBuf>,
    /// With --run: only scenarios whose name matches this glob; repeatable.
    #[arg(long, value_name = "GLOB")]
    pub filter: Vec<String>,
    /// With --run: template variable (repeatable).
    #[arg(long = "var", value_name = "K=V", value_parser = crate::record::parse_var)]
    pub vars: Vec<(String, String)>,
    /// With --run: default timeout of `expect` and other waits.
    #[arg(long, value_name = "DURATION", value_parser = crate::scenario::load::parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `replay`; `Ok` or `Err`, the value is the exit code (errors are reported here).
pub fn cmd_replay(a: ReplayArgs) -> Result<u8, u8> {
    let files = collect_files(&a.paths).map_err(|e| {
        report_error(e);
        EXIT_USAGE
    })?;
    let mut transcripts = Vec::new();
    for f in &files {
        transcripts.push(transcript::read(f).map_err(|e| {
            report_error(e);
            EXIT_USAGE
        })?);
    }
    if a.run.is_empty() {
        serve_forever(a, transcripts)
    } else {
        run_against_fixtures(a, transcripts)
    }
}

fn serve_forever(a: ReplayArgs, transcripts: Vec<TranscriptFile>) -> Result<u8, u8> {
    let rt = runtime()?;
    rt.block_on(async move {
        let opts = ReplayOptions {
            bind: a.bind,
            pace: a.pace.unwrap_or(Pace::Recorded),
            slack: a.slack,
        };
        let server = ReplayServer::start(transcripts, opts).await.map_err(|e| {
            report_error(format!("replay: cannot listen on {}: {e}", a.bind));
            EXIT_ENV
        })?;
        println!("replay listening on ws://{}", server.addr());
        if let Err(e) = tokio::signal::ctrl_c().await {
            report_error(format!("cannot wait for Ctrl-C: {e}"));
        }
        let problems = server.shutdown(Duration::from_secs(2)).await;
        for p in &problems {
            eprintln!("replay: {p}");
        }
        Ok(if problems.is_empty() {
            EXIT_OK
        } else {
            EXIT_FAILED
        })
    })
}

/// The fixture for a scenario: the file named like it, else a file whose header names it, preferring
/// one that is not broken on purpose (so `replay broken-x.jsonl --run PACK --filter x` replays the
/// broken one).
pub fn fixture_for<'a>(name: &str, all: &'a [TranscriptFile]) -> Option<&'a TranscriptFile> {
    let stem = |t: &TranscriptFile| {
        t.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let named = |t: &&TranscriptFile| t.header.scenario.as_deref() == Some(name);
    all.iter()
        .find(|t| stem(t) == name)
        .or_else(|| {
            all.iter().filter(named).find(|t| {
                t.header
                    .expect
                    .as_ref()
                    .is_none_or(|e| e.verdict == Verdict::Pass)
            })
        })
        .or_else(|| all.iter().find(named))
}

/// Makes a suite runnable against a replay: `requires` variables that are unset get a placeholder
/// (the replay does not check credentials), and a suite without a JWT secret gets a random one so
/// `${jwt:USER}` can mint.
fn prepare_for_replay(suite: &mut Suite) {
    let mut missing: Vec<String> = suite
        .scenarios
        .iter()
        .flat_map(|s| s.requires.iter().cloned())
        .filter(|v| std::env::var_os(v).is_none_or(|x| x.is_empty()))
        .collect();
    missing.sort();
    missing.dedup();
    for v in missing {
        // Single-threaded at this point (no runtime yet), so changing the environment is sound.
        std::env::set_var(&v, format!("replay-placeholder-{}", v.to_lowercase()));
    }
    // A secret that renders empty (`${env:WSCHAT_JWT_SECRET:-}` with the variable unset, as in the
    // bundled suite) counts as none.
    let renders_empty = suite.config.auth.jwt_secret.as_ref().is_none_or(|t| {
        let values = runner::resolver::RunValues::default();
        let empty = BTreeMap::new();
        t.render_string(&runner::resolver::VarsResolver {
            run: &values,
            vars: &empty,
        })
        .map_or(true, |s| s.is_empty())
    });
    if renders_empty {
        suite.config.auth.jwt_secret = Some(Template::literal(serde_json::Value::String(
            runner::resolver::random_secret(),
        )));
    }
}

fn run_against_fixtures(a: ReplayArgs, transcripts: Vec<TranscriptFile>) -> Result<u8, u8> {
    let opts = LoadOptions {
        vars: a.vars.iter().cloned().collect(),
    };
    let mut suite = load_suite(&a.run, &opts).map_err(|e| {
        crate::check::report_load_error(&e);
        EXIT_USAGE
    })?;
    suite
        .scenarios
        .retain(|s| a.filter.is_empty() || a.filter.iter().any(|g| glob_match(g, &s.name)));
    if suite.scenarios.is_empty() {
        report_error("no scenario to run (check the paths and --filter)");
        return Err(EXIT_USAGE);
    }
    prepare_for_replay(&mut suite);
    let secrets = a.output.secrets()?;
    let mut reporters = a.output.reporters(Some("replay".into()), secrets)?;
    let pace = a.pace.unwrap_or(Pace::Fast);
    let slack = a.slack;
    let vars: BTreeMap<String, String> = a.vars.iter().cloned().collect();
    let timeout = a.timeout;
    let rt = runtime()?;
    rt.block_on(async move {
        let started = Instant::now();
        let total = suite.scenarios.len();
        reporters.on_event(&RunEvent::RunStarted(RunInfo {
            target: format!("replay of {} fixture(s)", transcripts.len()),
            total,
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            jobs: 1,
        }));
        let mut summary = RunSummary::default();
        let scenarios = std::mem::take(&mut suite.scenarios);
        for (index, sc) in scenarios.into_iter().enumerate() {
            let name = sc.name.clone();
            reporters.on_event(&RunEvent::ScenarioStarted {
                index,
                name: name.clone(),
            });
            let result = match fixture_for(&name, &transcripts) {
                None => skipped(&sc, "no fixture named like this scenario"),
                Some(t) => {
                    let one = Suite {
                        config: suite.config.clone(),
                        rules_file: suite.rules_file.clone(),
                        scenarios: vec![sc.clone()],
                    };
                    replay_one(one, t.clone(), pace, slack, vars.clone(), timeout).await?
                }
            };
            summary.count(result.status);
            reporters.on_event(&RunEvent::ScenarioFinished {
                index,
                result: Box::new(result),
            });
        }
        summary.duration = started.elapsed();
        reporters.on_event(&RunEvent::RunFinished(summary));
        finish_reporters(&mut reporters)
    })
}

fn skipped(sc: &crate::scenario::Scenario, why: &str) -> ScenarioResult {
    ScenarioResult {
        name: sc.name.clone(),
        description: sc.description.clone(),
        location: sc.loc.to_string(),
        file: sc.loc.file.display().to_string(),
        level: sc.level,
        tags: sc.tags.clone(),
        status: Status::Skipped,
        skip_reason: Some(why.to_owned()),
        duration: Duration::ZERO,
        attempts: 0,
        steps: Vec::new(),
        failures: Vec::new(),
        transcripts: Vec::new(),
        timings: Vec::new(),
        http: Vec::new(),
    }
}

/// Runs one scenario against a replay of `fixture`; the replay's mismatches become transport
/// failures of the scenario.
async fn replay_one(
    suite: Suite,
    fixture: TranscriptFile,
    pace: Pace,
    slack: Duration,
    vars: BTreeMap<String, String>,
    timeout: Option<Duration>,
) -> Result<ScenarioResult, u8> {
    let fixture_path = fixture.path.clone();
    let server = ReplayServer::start(
        vec![fixture],
        ReplayOptions {
            bind: "127.0.0.1:0".parse().expect("static address"),
            pace,
            slack,
        },
    )
    .await
    .map_err(|e| {
        report_error(format!("replay: cannot listen on 127.0.0.1: {e}"));
        EXIT_ENV
    })?;
    let opts = RunOptions {
        target: Some(format!("ws://{}", server.addr())),
        vars,
        jobs: 1,
        expect_timeout: timeout,
        tls: Default::default(),
        ..Default::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let run = tokio::spawn(runner::run(suite, opts, tx));
    let mut result = None;
    while let Some(ev) = rx.recv().await {
        if let RunEvent::ScenarioFinished { result: r, .. } = ev {
            result = Some(*r);
        }
    }
    match run.await {
        Err(join) => {
            report_error(format!("internal error: the run task failed: {join}"));
            return Err(EXIT_ENV);
        }
        Ok(Err(e)) => {
            report_error(&e);
            return Err(e.exit_code());
        }
        Ok(Ok(_)) => {}
    }
    let mut result = result.ok_or_else(|| {
        report_error("internal error: the run reported no scenario result");
        EXIT_ENV
    })?;
    let problems = server.shutdown(Duration::from_secs(5)).await;
    if result.status != Status::Skipped {
        for p in problems {
            result.failures.push(replay_failure(&fixture_path, p));
        }
        if !result.failures.is_empty() {
            result.status = Status::Failed;
        }
    }
    Ok(result)
}

fn replay_failure(fixture: &Path, problem: String) -> Failure {
    Failure {
        kind: FailureKind::Transport,
        message: format!("replay of {}: {problem}", fixture.display()),
        step: None,
        expected: Some("the client frames recorded in the fixture".into()),
        detail: Vec::new(),
        schema: None,
        rule: None,
        frame: None,
        conn: None,
    }
}
