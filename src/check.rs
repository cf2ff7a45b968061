//! `wschat-check check`: validates recorded transcripts offline against a suite's schemas and rules.
//!
//! Each file is reported like a scenario of `run` (same failure kinds, same reporters, exit 0/1/2), so
//! a CI job can check recordings with the same tooling it uses for live runs. The checks are the ones
//! the runner applies to live traffic (`docs/TRANSCRIPT.md`, "Offline check"); they reuse
//! [`SchemaRegistry`] and [`RuleChecker`](crate::rules::RuleChecker) directly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::Args;
use serde_json::Value;

use crate::codec::{self, Codecs, TextEvent};

use crate::cli::{finish_reporters, OutputArgs, EXIT_ENV, EXIT_USAGE};
use crate::record::transcript::{self, Dir, Expect, Kind, Record, TranscriptFile, Verdict};
use crate::report::Reporter;
use crate::rules::RuleSet;
use crate::runner::{
    Direction, Failure, FailureKind, FrameRef, RunEvent, RunInfo, RunSummary, ScenarioResult,
    Status,
};
use crate::scenario::{load_suite, Level, LoadError, LoadOptions};
use crate::schema::{SchemaRegistry, Side};

/// Prints an error through miette's renderer (as the rest of the CLI does).
pub(crate) fn report_error(msg: impl std::fmt::Display) {
    eprintln!("{:?}", miette::Report::msg(msg.to_string()));
}

pub(crate) fn report_load_error(e: &LoadError) {
    if e.problems.is_empty() {
        report_error(e);
    }
    for p in &e.problems {
        report_error(p);
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            report_error(format!("cannot start the async runtime: {e}"));
            EXIT_ENV
        })
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Transcript files (`.jsonl`) or folders of them.
    #[arg(required = true, value_name = "TRANSCRIPT")]
    pub paths: Vec<PathBuf>,
    /// The suite whose schemas and rules apply (a folder with `wschat-suite.yaml`). Default: the
    /// suite above a `fixtures/` folder holding the file, else the built-in schemas and no rules.
    #[arg(long, value_name = "DIR")]
    pub suite: Option<PathBuf>,
    /// Treat each file's `expect` header as the expected outcome: a `broken-*` fixture passes when it
    /// fails exactly as declared.
    #[arg(long)]
    pub expect: bool,
    /// After the check, print what the recordings show that the suite does not describe yet:
    /// event types without a schema, schemas some samples break, rules the traffic supports
    /// (the inference of `init`). Information only: the exit code is the check's.
    #[arg(long)]
    pub suggest: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// What a suite contributes to an offline check.
pub struct OfflineSuite {
    pub schemas: SchemaRegistry,
    pub rules: RuleSet,
    /// JSON pointer of the suite's discriminator.
    pub discriminator: String,
    /// How each side's frames become events (the suite's `codec:`).
    pub codec: Codecs,
    /// Where it came from, for the report.
    pub origin: String,
}

/// Loads the schemas and rules of the suite in `dir` (`None`: the built-in schemas, no rules).
pub fn load_offline_suite(dir: Option<&Path>) -> Result<OfflineSuite, String> {
    let Some(dir) = dir else {
        let schemas = SchemaRegistry::load(None, "/type").map_err(|e| e.to_string())?;
        return Ok(OfflineSuite {
            schemas,
            rules: RuleSet::default(),
            discriminator: "/type".into(),
            codec: Codecs::default(),
            origin: "built-in schemas".into(),
        });
    };
    let suite = load_suite(&[dir.to_owned()], &LoadOptions::default()).map_err(|e| {
        e.problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let schemas = crate::runner::load_schemas(&suite.config).map_err(|e| e.to_string())?;
    let rules = crate::runner::load_rules(&suite).map_err(|e| e.to_string())?;
    Ok(OfflineSuite {
        schemas,
        rules,
        discriminator: suite.config.discriminator.clone(),
        codec: suite.config.codec,
        origin: dir.display().to_string(),
    })
}

/// The outcome of checking one transcript.
#[derive(Debug, Clone)]
pub struct Checked {
    pub failures: Vec<Failure>,
    /// Information only (sent frames that do not match the client schemas).
    pub notes: Vec<String>,
}

/// Checks one transcript: schemas of received (and, as notes, sent) JSON frames, the rules per
/// connection, non-JSON and binary frames.
pub fn check_transcript(t: &TranscriptFile, suite: &OfflineSuite) -> Checked {
    let mut out = Checked {
        failures: Vec::new(),
        notes: Vec::new(),
    };
    let file = t.path.display().to_string();
    for conn in t.connection_order() {
        let mut rules = suite.rules.checker(&suite.discriminator);
        let mut closed = false;
        let mut last: Vec<u64> = Vec::new();
        for r in t.records_of(&conn) {
            last.push(r.seq);
            match (r.dir, r.kind) {
                (_, Kind::Close | Kind::End) => closed = true,
                (dir, Kind::Binary) => {
                    let codec = match dir {
                        Dir::Received => suite.codec.server,
                        Dir::Sent => suite.codec.client,
                    };
                    if codec.binary_events() {
                        let bytes = r
                            .base64
                            .as_deref()
                            .and_then(|b| B64.decode(b).ok())
                            .unwrap_or_default();
                        let v = codec::binary_view(&suite.discriminator, &bytes);
                        check_json(&mut out, suite, &mut rules, &file, &conn, r, dir, &v);
                    } else if dir == Dir::Received {
                        out.failures.push(failure(
                            FailureKind::Transport,
                            &file,
                            &conn,
                            r.seq,
                            "received a binary frame; the protocol is text-only".into(),
                        ));
                    }
                }
                (dir, Kind::Text) => {
                    let text = r.text.as_deref().unwrap_or("");
                    let codec = match dir {
                        Dir::Received => suite.codec.server,
                        Dir::Sent => suite.codec.client,
                    };
                    match codec::text_event(codec, &suite.discriminator, text, None) {
                        TextEvent::Json(v) | TextEvent::Text(v) => {
                            check_json(&mut out, suite, &mut rules, &file, &conn, r, dir, &v)
                        }
                        TextEvent::NotJson(e) if dir == Dir::Received => {
                            out.failures.push(failure(
                                FailureKind::Transport,
                                &file,
                                &conn,
                                r.seq,
                                format!(
                                    "received a text frame that is not JSON ({e}): {}",
                                    short(text)
                                ),
                            ))
                        }
                        // Scenarios send invalid JSON on purpose.
                        TextEvent::NotJson(_) => {}
                    }
                }
                _ => {}
            }
        }
        for v in rules.finish(closed) {
            let seq = v.seqs.last().copied();
            let mut f = failure(
                FailureKind::Rule,
                &file,
                &conn,
                seq.unwrap_or(0),
                v.message.clone(),
            );
            if seq.is_none() {
                f.frame = None;
            }
            f.rule = Some(v.rule);
            out.failures.push(f);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn check_json(
    out: &mut Checked,
    suite: &OfflineSuite,
    rules: &mut crate::rules::RuleChecker,
    file: &str,
    conn: &str,
    r: &Record,
    dir: Dir,
    v: &Value,
) {
    let (side, direction) = match dir {
        Dir::Received => (Side::Server, Direction::Received),
        Dir::Sent => (Side::Client, Direction::Sent),
    };
    if let Err(f) = suite.schemas.check(side, v) {
        if dir == Dir::Received {
            let mut fl = failure(FailureKind::Schema, file, conn, r.seq, f.message.clone());
            fl.expected = Some(format!("a valid event per {}", suite.schemas.origin()));
            fl.detail = f
                .violations
                .iter()
                .skip(1)
                .map(|x| format!("also at {} ({}): {}", x.instance_path, x.keyword, x.message))
                .collect();
            fl.detail.push(format!(
                "frame #{}: {}",
                r.seq,
                short(r.text.as_deref().unwrap_or(""))
            ));
            fl.schema = f.violations.into_iter().next();
            out.failures.push(fl);
        } else {
            out.notes.push(format!(
                "{file}: seq {} (connection '{conn}'): sent frame does not match the client schemas: {}",
                r.seq, f.message
            ));
        }
    }
    for viol in rules.observe(r.seq, direction, v) {
        let seq = viol.seqs.last().copied().unwrap_or(r.seq);
        let mut f = failure(FailureKind::Rule, file, conn, seq, viol.message.clone());
        f.rule = Some(viol.rule);
        out.failures.push(f);
    }
}

fn failure(kind: FailureKind, file: &str, conn: &str, seq: u64, message: String) -> Failure {
    Failure {
        kind,
        message: format!("{file}: seq {seq} (connection '{conn}'): {message}"),
        step: None,
        expected: None,
        detail: Vec::new(),
        schema: None,
        rule: None,
        frame: Some(FrameRef {
            conn: conn.to_owned(),
            seq,
        }),
        conn: Some(conn.to_owned()),
    }
}

fn short(s: &str) -> String {
    if s.chars().count() <= 200 {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(200).collect::<String>())
    }
}

fn kind_name(k: FailureKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Compares a check's failures with a fixture's `expect`. `Ok` when they agree; the error says how
/// they differ. A `fail` expectation holds when some failure has the kind (and rule, and seq, when
/// given). Other failures may come with it: one broken frame often breaks several rules at once
/// (a delta after `done` breaks both the lifecycle and the item pairing).
pub fn compare_expect(expect: &Expect, failures: &[Failure]) -> Result<(), String> {
    let describe = |f: &Failure| {
        let mut s = kind_name(f.kind);
        if let Some(r) = &f.rule {
            s.push_str(&format!(" {r}"));
        }
        if let Some(fr) = &f.frame {
            s.push_str(&format!(" at seq {}", fr.seq));
        }
        s
    };
    let got = || {
        if failures.is_empty() {
            "no failure".to_owned()
        } else {
            failures.iter().map(describe).collect::<Vec<_>>().join(", ")
        }
    };
    match expect.verdict {
        Verdict::Pass if failures.is_empty() => Ok(()),
        Verdict::Pass => Err(format!("expected the fixture to pass, got: {}", got())),
        Verdict::Fail => {
            let kind_ok = |f: &Failure| {
                expect
                    .kind
                    .as_deref()
                    .is_none_or(|k| kind_name(f.kind) == k)
            };
            let rule_ok =
                |f: &Failure| expect.rule.is_none() || f.rule.as_deref() == expect.rule.as_deref();
            let seq_ok = |f: &Failure| {
                expect
                    .seq
                    .is_none_or(|s| f.frame.as_ref().is_some_and(|fr| fr.seq == s))
            };
            let mut want = String::from("a failure");
            if let Some(k) = &expect.kind {
                want.push_str(&format!(" of kind {k}"));
            }
            if let Some(r) = &expect.rule {
                want.push_str(&format!(" of rule {r}"));
            }
            if let Some(s) = expect.seq {
                want.push_str(&format!(" at seq {s}"));
            }
            if !failures
                .iter()
                .any(|f| kind_ok(f) && rule_ok(f) && seq_ok(f))
            {
                return Err(format!("expected {want}, got: {}", got()));
            }
            Ok(())
        }
    }
}

/// Transcript files named by `paths` (folders: their `*.jsonl`, sorted).
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd =
                std::fs::read_dir(p).map_err(|e| format!("{}: cannot list: {e}", p.display()))?;
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            found.sort();
            files.extend(found);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(format!("{}: no such file or folder", p.display()));
        }
    }
    if files.is_empty() {
        return Err("no transcript (.jsonl) found in the given paths".into());
    }
    Ok(files)
}

/// The suite folder for a file without `--suite`: the folder above `fixtures/` when it has a config.
fn implied_suite(file: &Path) -> Option<PathBuf> {
    let dir = file.parent()?;
    if dir.file_name()? != "fixtures" {
        return None;
    }
    let suite = dir.parent()?;
    suite
        .join("wschat-suite.yaml")
        .is_file()
        .then(|| suite.to_owned())
}

/// Checks one file into a scenario result (`expect`: judge it by its header's `expect`).
pub fn result_for(
    path: &Path,
    suite: &OfflineSuite,
    expect: bool,
) -> (ScenarioResult, Vec<String>) {
    let started = Instant::now();
    let mut result = ScenarioResult {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        description: None,
        location: path.display().to_string(),
        file: path.display().to_string(),
        level: Level::Must,
        tags: vec!["transcript".into()],
        status: Status::Passed,
        skip_reason: None,
        duration: Duration::ZERO,
        attempts: 1,
        steps: Vec::new(),
        failures: Vec::new(),
        transcripts: Vec::new(),
        timings: Vec::new(),
        http: Vec::new(),
    };
    let t = match transcript::read(path) {
        Ok(t) => t,
        Err(e) => {
            // A structurally broken transcript is a failure of that file, not of the whole command.
            result.failures.push(Failure {
                kind: FailureKind::Transport,
                message: format!("invalid transcript: {e}"),
                step: None,
                expected: Some("a transcript per docs/TRANSCRIPT.md".into()),
                detail: Vec::new(),
                schema: None,
                rule: None,
                frame: None,
                conn: None,
            });
            result.status = Status::Failed;
            return (result, Vec::new());
        }
    };
    result.description = t.header.description.clone();
    if let Some(s) = &t.header.scenario {
        result.name = format!("{} ({s})", result.name);
    }
    let checked = check_transcript(&t, suite);
    match (&t.header.expect, expect) {
        (Some(e), true) => {
            if let Err(msg) = compare_expect(e, &checked.failures) {
                let mut f = Failure {
                    kind: FailureKind::Expectation,
                    message: format!("{}: {msg}", path.display()),
                    step: None,
                    expected: Some(serde_json::to_string(e).unwrap_or_default()),
                    detail: checked.failures.iter().map(|f| f.message.clone()).collect(),
                    schema: None,
                    rule: None,
                    frame: None,
                    conn: None,
                };
                f.detail.truncate(20);
                result.failures.push(f);
            }
        }
        _ => result.failures = checked.failures,
    }
    if !result.failures.is_empty() {
        result.status = Status::Failed;
    }
    result.duration = started.elapsed();
    (result, checked.notes)
}

/// Runs `check`; `Ok` or `Err`, the value is the exit code (errors are reported here).
pub fn cmd_check(a: CheckArgs) -> Result<u8, u8> {
    let files = collect_files(&a.paths).map_err(|e| {
        report_error(e);
        EXIT_USAGE
    })?;
    let secrets = a.output.secrets()?;
    let mut reporters = a.output.reporters(None, secrets)?;
    // Suites are loaded once per folder: a check of every pack's fixtures loads each pack once.
    let mut suites: Vec<(Option<PathBuf>, OfflineSuite)> = Vec::new();
    let started = Instant::now();
    reporters.on_event(&RunEvent::RunStarted(RunInfo {
        target: "offline check of recorded transcripts".into(),
        total: files.len(),
        started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        jobs: 1,
    }));
    let mut summary = RunSummary::default();
    // Files per suite, for --suggest.
    let mut checked: Vec<(usize, PathBuf)> = Vec::new();
    for (index, f) in files.iter().enumerate() {
        let dir = a.suite.clone().or_else(|| implied_suite(f));
        let pos = match suites.iter().position(|(d, _)| *d == dir) {
            Some(p) => p,
            None => {
                let s = load_offline_suite(dir.as_deref()).map_err(|e| {
                    report_error(format!(
                        "cannot load the suite {}: {e}",
                        dir.as_deref().unwrap_or(Path::new("(built-in)")).display()
                    ));
                    EXIT_USAGE
                })?;
                suites.push((dir, s));
                suites.len() - 1
            }
        };
        checked.push((pos, f.clone()));
        let (result, notes) = result_for(f, &suites[pos].1, a.expect);
        for n in notes {
            eprintln!("note: {n}");
        }
        summary.count(result.status);
        reporters.on_event(&RunEvent::ScenarioStarted {
            index,
            name: result.name.clone(),
        });
        reporters.on_event(&RunEvent::ScenarioFinished {
            index,
            result: Box::new(result),
        });
    }
    summary.duration = started.elapsed();
    reporters.on_event(&RunEvent::RunFinished(summary));
    let code = finish_reporters(&mut reporters);
    if a.suggest {
        print_suggestions(&suites, &checked);
    }
    code
}

/// `--suggest`: per suite, what its recordings show that it does not describe.
fn print_suggestions(suites: &[(Option<PathBuf>, OfflineSuite)], checked: &[(usize, PathBuf)]) {
    for (pos, (_, suite)) in suites.iter().enumerate() {
        // Files that do not parse were reported by the check already.
        let transcripts: Vec<TranscriptFile> = checked
            .iter()
            .filter(|(p, _)| *p == pos)
            .filter_map(|(_, f)| transcript::read(f).ok())
            .collect();
        if transcripts.is_empty() {
            continue;
        }
        let found = crate::infer::suggest::suggest(&transcripts, suite);
        println!();
        if found.is_empty() {
            println!(
                "suggest: {} describes everything {} recording(s) show",
                suite.origin,
                transcripts.len()
            );
            continue;
        }
        println!(
            "suggest: {} recording(s) show {} thing(s) {} does not describe:",
            transcripts.len(),
            found.len(),
            suite.origin
        );
        for s in found {
            println!("- {}", s.render().trim_end());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(kind: FailureKind, rule: Option<&str>, seq: u64) -> Failure {
        let mut f = failure(kind, "f", "main", seq, "m".into());
        f.rule = rule.map(str::to_owned);
        f
    }

    #[test]
    fn expectations() {
        let e = Expect {
            verdict: Verdict::Fail,
            kind: Some("rule".into()),
            rule: Some("r1".into()),
            seq: Some(3),
        };
        assert!(compare_expect(&e, &[fail(FailureKind::Rule, Some("r1"), 3)]).is_ok());
        let err = compare_expect(&e, &[fail(FailureKind::Rule, Some("r1"), 2)]).unwrap_err();
        assert!(err.contains("at seq 3"), "{err}");
        // A consequence of the same break may come with the declared failure.
        assert!(compare_expect(
            &e,
            &[
                fail(FailureKind::Schema, None, 1),
                fail(FailureKind::Rule, Some("r1"), 3),
            ],
        )
        .is_ok());
        let err = compare_expect(&e, &[fail(FailureKind::Rule, Some("r2"), 3)]).unwrap_err();
        assert!(
            err.contains("of rule r1") && err.contains("rule r2 at seq 3"),
            "{err}"
        );
        assert!(compare_expect(&e, &[]).unwrap_err().contains("no failure"));
        let pass = Expect {
            verdict: Verdict::Pass,
            kind: None,
            rule: None,
            seq: None,
        };
        assert!(compare_expect(&pass, &[]).is_ok());
        assert!(compare_expect(&pass, &[fail(FailureKind::Schema, None, 0)]).is_err());
    }
}
