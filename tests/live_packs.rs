//! Every example pack against a live server of its shape (tests/live/): for each manifest
//! `tests/live/<pack>.json`, the pack must pass its clean server unchanged (`run examples/<pack>/
//! --target ... --fail-level may` at the default --jobs, exit 0: every scenario of every level passes),
//! and fail every bug variant of that server (exit 1, with the manifest's substrings in the output, so
//! the failure names the problem). The servers are
//! FastAPI + uvicorn programs run with the venv python (`WSCHAT_LIVE_PYTHON`, else
//! `target/live-venv/bin/python`; `.ci/run` creates it from tests/live/requirements.txt).
//!
//! Manifest (see tests/live/README.md):
//! `{"server": "servers/x.py", "env": {..}, "claims": {..}, "bugs": {"name": ["substring", ..]}}`.
//! `WSCHAT_LIVE_PACKS=a,b` limits the run to those packs (for local work).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

mod support;
use support::{cmd, root, text};

/// How long a server may take to print `LISTENING <port>` (importing FastAPI on a busy 2-core box).
const LISTEN_LIMIT: Duration = Duration::from_secs(30);
/// Upper bound of one harness run; a run that needs it is a hang, not a slow server.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// Harness runs at once (each one runs its scenarios at the default --jobs). They mostly wait on
/// the servers' streams and the scenarios' timeouts, so a few more than the cores is fine.
const PARALLEL: usize = 8;

struct Manifest {
    pack: String,
    server: PathBuf,
    /// Extra environment of the harness run.
    env: Vec<(String, String)>,
    /// Extra environment of the server (`server_env`: e.g. a short heartbeat interval).
    server_env: Vec<(String, String)>,
    claims: Vec<(String, String)>,
    bugs: BTreeMap<String, Vec<String>>,
}

fn live_dir() -> PathBuf {
    root().join("tests").join("live")
}

fn string_map(v: &Value, key: &str, file: &Path) -> Vec<(String, String)> {
    match v.get(key) {
        None => Vec::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: {key}.{k} must be a string", file.display()));
                (k.clone(), v.to_string())
            })
            .collect(),
        Some(_) => panic!("{}: {key} must be an object", file.display()),
    }
}

fn manifests() -> Vec<Manifest> {
    let only: Option<Vec<String>> = std::env::var("WSCHAT_LIVE_PACKS")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split(',').map(|p| p.trim().to_string()).collect());
    let mut files: Vec<PathBuf> = std::fs::read_dir(live_dir())
        .expect("tests/live exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let pack = file.file_stem().unwrap().to_string_lossy().into_owned();
        if only.as_ref().is_some_and(|o| !o.contains(&pack)) {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let server = live_dir().join(
            v["server"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no \"server\"", file.display())),
        );
        assert!(
            server.is_file(),
            "{}: no server {}",
            file.display(),
            server.display()
        );
        assert!(
            root()
                .join("examples")
                .join(&pack)
                .join("wschat-suite.yaml")
                .is_file(),
            "{}: no pack examples/{pack}/",
            file.display()
        );
        let mut bugs = BTreeMap::new();
        for (name, subs) in v["bugs"].as_object().cloned().unwrap_or_default() {
            let subs: Vec<String> = subs
                .as_array()
                .unwrap_or_else(|| panic!("{}: bugs.{name} must be a list", file.display()))
                .iter()
                .map(|s| s.as_str().expect("substrings are strings").to_string())
                .collect();
            assert!(
                !subs.is_empty(),
                "{}: bugs.{name} names no substring",
                file.display()
            );
            bugs.insert(name, subs);
        }
        out.push(Manifest {
            env: string_map(&v, "env", &file),
            server_env: string_map(&v, "server_env", &file),
            claims: string_map(&v, "claims", &file),
            pack,
            server,
            bugs,
        });
    }
    out
}

/// The venv python, or None (with the reason printed) when there is none and CI is not set.
fn python() -> Option<PathBuf> {
    let p = match std::env::var_os("WSCHAT_LIVE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => root()
            .join("target")
            .join("live-venv")
            .join("bin")
            .join("python"),
    };
    if p.exists() {
        return Some(p);
    }
    let why = format!(
        "no python for the live pack servers at {} (set WSCHAT_LIVE_PYTHON, or run .ci/run, which \
         creates target/live-venv from tests/live/requirements.txt)",
        p.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("skipping the live packs: {why}");
    None
}

fn random_secret() -> String {
    format!("live-{}", uuid::Uuid::new_v4().simple())
}

/// A running pack server; killed (and reaped) on drop, so a failed assert leaves nothing behind.
struct Server {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(py: &Path, m: &Manifest, bug: Option<&str>, secret: &str) -> Result<Server, String> {
        let mut c = Command::new(py);
        c.arg(&m.server);
        if let Some(b) = bug {
            c.args(["--bug", b]);
        }
        let mut child = c
            .current_dir(live_dir().join("servers"))
            .envs(m.server_env.iter().map(|(k, v)| (k, v)))
            .env("LIVE_JWT_SECRET", secret)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {} {}: {e}", py.display(), m.server.display()))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let first = lines.next();
            let _ = tx.send(first);
            for _ in lines {} // keep draining: the server must never block on a full pipe
        });
        let mut server = Server {
            child,
            port: 0,
            stderr,
        };
        let what = format!(
            "{} {}",
            m.server.display(),
            bug.map(|b| format!("--bug {b}")).unwrap_or_default()
        );
        match rx.recv_timeout(LISTEN_LIMIT) {
            Ok(Some(Ok(line))) => match line
                .strip_prefix("LISTENING ")
                .and_then(|p| p.trim().parse().ok())
            {
                Some(port) => server.port = port,
                None => {
                    return Err(format!(
                        "{what}: first line {line:?} is not `LISTENING <port>`{}",
                        server.log()
                    ))
                }
            },
            Ok(_) => return Err(format!("{what}: exited before listening{}", server.log())),
            Err(_) => {
                return Err(format!(
                    "{what}: not listening within {LISTEN_LIMIT:?}{}",
                    server.log()
                ))
            }
        }
        Ok(server)
    }

    fn log(&self) -> String {
        let s = self.stderr.lock().unwrap();
        if s.trim().is_empty() {
            String::new()
        } else {
            format!("\nserver stderr:\n{s}")
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wschat-check token` for the manifest's user and claims.
fn mint_token(m: &Manifest, secret: &str) -> String {
    let user = m
        .env
        .iter()
        .find(|(k, _)| k == "WSCHAT_USER_ID")
        .map(|(_, v)| v.as_str())
        .unwrap_or("user-1");
    let mut c = cmd();
    c.args(["token", "--user", user, "--secret", secret]);
    for (k, v) in &m.claims {
        c.args(["--claim", &format!("{k}={v}")]);
    }
    let out = c.timeout(Duration::from_secs(30)).output().unwrap();
    assert!(
        out.status.success(),
        "token: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

/// One harness run of the pack against `port`: (exit code, stdout + stderr).
fn run_pack(m: &Manifest, port: u16, secret: &str, token: &str) -> (Option<i32>, String) {
    let out = cmd()
        .arg("run")
        .arg(format!("examples/{}/", m.pack))
        .args([
            "--target",
            &format!("ws://127.0.0.1:{port}"),
            "--color",
            "never",
        ])
        // Every level counts: the clean server must pass the should/may scenarios too, and a bug
        // caught only by a should scenario must still fail the run.
        .args(["--fail-level", "may"])
        .envs(m.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("WSCHAT_JWT_SECRET", secret)
        .env("WSCHAT_TOKEN", token)
        .timeout(RUN_LIMIT)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// One job: the pack against its clean server (bug None) or one bug variant. Err: why it failed.
fn job(py: &Path, m: &Manifest, bug: Option<&str>) -> Result<(), String> {
    let secret = random_secret();
    let token = mint_token(m, &secret);
    let server = Server::start(py, m, bug, &secret)?;
    let (code, output) = run_pack(m, server.port, &secret, &token);
    let what = match bug {
        None => format!("{} against its clean server", m.pack),
        Some(b) => format!("{} against --bug {b}", m.pack),
    };
    match bug {
        None if code == Some(0) => Ok(()),
        None => Err(format!(
            "{what}: exit {code:?}, expected 0\n{output}{}",
            server.log()
        )),
        Some(b) => {
            let missing: Vec<&String> = m.bugs[b]
                .iter()
                .filter(|s| !output.contains(s.as_str()))
                .collect();
            if code == Some(1) && missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{what}: exit {code:?} (expected 1), missing from the output: {missing:?}\n{output}{}",
                    server.log()
                ))
            }
        }
    }
}

/// Runs `jobs` on `PARALLEL` threads; returns the failures.
fn run_all(py: &Path, ms: &[Manifest], jobs: Vec<(usize, Option<String>)>) -> Vec<String> {
    let queue = Arc::new(Mutex::new(jobs));
    let failures = Arc::new(Mutex::new(Vec::new()));
    thread::scope(|s| {
        for _ in 0..PARALLEL {
            let queue = queue.clone();
            let failures = failures.clone();
            s.spawn(move || loop {
                let Some((i, bug)) = queue.lock().unwrap().pop() else {
                    break;
                };
                if let Err(e) = job(py, &ms[i], bug.as_deref()) {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    Arc::try_unwrap(failures).unwrap().into_inner().unwrap()
}

/// Every example pack is proven against a live server: it has a manifest here.
#[test]
fn every_pack_has_a_live_server() {
    let mut missing = Vec::new();
    for e in std::fs::read_dir(root().join("examples")).unwrap() {
        let dir = e.unwrap().path();
        if dir.join("wschat-suite.yaml").is_file() {
            let pack = dir.file_name().unwrap().to_string_lossy().into_owned();
            if !live_dir().join(format!("{pack}.json")).is_file() {
                missing.push(pack);
            }
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "packs without a live server manifest in tests/live/: {missing:?}"
    );
}

/// Every bug a server lists is in its manifest, and every manifest bug is one the server knows.
#[test]
fn manifests_list_every_bug() {
    let Some(py) = python() else { return };
    let mut problems = Vec::new();
    for m in manifests() {
        let out = Command::new(&py)
            .arg(&m.server)
            .arg("--list-bugs")
            .current_dir(live_dir().join("servers"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} --list-bugs: {}",
            m.server.display(),
            text(&out.stderr)
        );
        let listed: BTreeMap<String, Value> =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "{} --list-bugs: {e}: {}",
                    m.server.display(),
                    text(&out.stdout)
                )
            });
        assert!(
            listed.len() >= 4,
            "{}: at least 4 bug variants, found {}",
            m.pack,
            listed.len()
        );
        for b in listed.keys().filter(|b| !m.bugs.contains_key(*b)) {
            problems.push(format!(
                "{}: the server's bug {b} is not in tests/live/{}.json",
                m.pack, m.pack
            ));
        }
        for b in m.bugs.keys().filter(|b| !listed.contains_key(*b)) {
            problems.push(format!(
                "{}: tests/live/{}.json lists {b}, which the server does not know",
                m.pack, m.pack
            ));
        }
        // An unknown bug name is refused (exit 2), never served as the clean server.
        let out = Command::new(&py)
            .arg(&m.server)
            .args(["--bug", "surely-no-such-bug"])
            .current_dir(live_dir().join("servers"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: an unknown --bug must exit 2",
            m.pack
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Each pack passes its clean server and fails every bug variant, naming the problem.
#[test]
fn packs_against_live_servers() {
    let Some(py) = python() else { return };
    let ms = manifests();
    let mut jobs = Vec::new();
    for (i, m) in ms.iter().enumerate() {
        jobs.push((i, None));
        jobs.extend(m.bugs.keys().map(|b| (i, Some(b.clone()))));
    }
    jobs.reverse(); // the pool pops from the end: take them in order
    let failures = run_all(&py, &ms, jobs);
    assert!(
        failures.is_empty(),
        "{} live run(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// `record --interactive` (a scripted session, tests/live/sessions/<pack>.txt) then `init`, with
/// no hand edits: the generated pack passes its clean server and fails at least half of the bug
/// variants. Only the packs with a session script are covered so far.
#[test]
fn init_learns_a_pack_from_a_recorded_session() {
    let Some(py) = python() else { return };
    let mut report = Vec::new();
    for m in manifests() {
        let script = live_dir().join("sessions").join(format!("{}.txt", m.pack));
        let Some(target) = (match m.pack.as_str() {
            "progress-token-complete" => Some("/ws/chat?token=${env:WSCHAT_TOKEN}"),
            _ => None,
        }) else {
            continue;
        };
        let secret = random_secret();
        let token = mint_token(&m, &secret);
        let dir =
            std::env::temp_dir().join(format!("wschat-init-{}-{}", std::process::id(), m.pack));
        let _ = std::fs::remove_dir_all(&dir);
        let server = Server::start(&py, &m, None, &secret).unwrap();
        let base = format!("ws://127.0.0.1:{}", server.port);
        let rec = dir.join("session.jsonl");
        let out = cmd()
            .args([
                "record",
                "--interactive",
                "--target",
                &format!("{base}{target}"),
                "--out",
            ])
            .arg(&rec)
            .env("WSCHAT_TOKEN", &token)
            .env("LIVE_BASE", &base)
            .write_stdin(std::fs::read(&script).unwrap())
            .timeout(RUN_LIMIT)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "record --interactive: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        drop(server);
        let recorded = std::fs::read_to_string(&rec).unwrap();
        assert!(
            !recorded.contains(&token),
            "the token is redacted from the recording"
        );
        let pack = dir.join("pack");
        let out = cmd()
            .arg("init")
            .arg(&pack)
            .arg("--from")
            .arg(&rec)
            .timeout(RUN_LIMIT)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "init: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let run = |bug: Option<&str>| -> (Option<i32>, String) {
            let server = Server::start(&py, &m, bug, &secret).unwrap();
            let out = cmd()
                .arg("run")
                .arg(&pack)
                .args([
                    "--target",
                    &format!("ws://127.0.0.1:{}", server.port),
                    "--color",
                    "never",
                    "--fail-level",
                    "may",
                ])
                .env("WSCHAT_TOKEN", &token)
                .timeout(RUN_LIMIT)
                .output()
                .unwrap();
            (
                out.status.code(),
                format!("{}{}", text(&out.stdout), text(&out.stderr)),
            )
        };
        let (code, output) = run(None);
        assert_eq!(
            code,
            Some(0),
            "{}: the generated pack fails its clean server\n{output}",
            m.pack
        );
        let mut caught = Vec::new();
        for b in m.bugs.keys() {
            let (code, _) = run(Some(b));
            if code == Some(1) {
                caught.push(b.clone());
            }
        }
        report.push(format!(
            "{}: caught {} of {} ({:?})",
            m.pack,
            caught.len(),
            m.bugs.len(),
            caught
        ));
        assert!(
            caught.len() * 2 >= m.bugs.len(),
            "{}: the generated pack caught only {caught:?}",
            m.pack
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!("{}", report.join("\n"));
}
