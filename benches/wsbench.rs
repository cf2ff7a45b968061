//! Benchmarks of the harness (not run in CI; see docs/PERFORMANCE.md for the commands and figures).
//!
//! `cargo bench --bench wsbench -- stream [--events N]`
//!   One connection, `#long=N` at zero pacing. Readers of the same stream:
//!   the harness (runner, every event schema-validated and rule-checked) and a minimal raw
//!   tokio-tungstenite client (the ceiling), each against the reference server and against a trivial
//!   raw server that replays the reference server's frames pre-serialized (separating server cost
//!   from harness cost). The reference server runs twice: in the bench's runtime (as the harness
//!   embeds it) and on a thread and runtime of its own (`own runtime`, as a separate process).
//!
//! `cargo bench --bench wsbench -- sessions [--workers W] [--sessions S] [--messages M] [--only raw|harness]`
//!   Sessions of connect + `connected` + M JSON `ping`/`pong` round trips + close,
//!   W workers; sessions/s and latency percentiles, raw client and harness runner (`--only`: one of them).
//!
//! `cargo bench --bench wsbench -- capacity [--conns N]`
//!   RSS of the reference server per idle connection (server in this process, the idle clients in a
//!   child process so the two are measured apart), and RSS of the harness per concurrent session.
//!
//! Every wait has a timeout; the servers listen on 127.0.0.1 port 0.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use wschat_check::runner::{Prepared, RunOptions, ScenarioResult, Status};
use wschat_check::scenario::{load_scenario_str, load_suite, LoadOptions, Suite};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Upper bound on any single measured run.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let which = args.first().cloned().unwrap_or_default();
    // The idle-client child of `capacity` runs on a single-threaded runtime of its own.
    if which == "idle-clients" {
        return idle_clients(&args);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let r = rt.block_on(async {
        match which.as_str() {
            "stream" => stream(&args).await,
            "sessions" => sessions(&args).await,
            "capacity" => capacity(&args).await,
            _ => {
                eprintln!(
                    "usage: wsbench stream|sessions|capacity [options] (see the file header)"
                );
                Ok(())
            }
        }
    });
    if let Err(e) = r {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}

/// The bundled suite (config, schemas, rules) the harness runs with.
fn bundled_suite() -> Result<Suite, BoxError> {
    load_suite(&[root().join("scenarios")], &LoadOptions::default())
        .map_err(|e| format!("loading scenarios/: {e}").into())
}

async fn start_server(
    max_conns_per_user: usize,
) -> Result<reference_server::ServerHandle, BoxError> {
    Ok(reference_server::start(reference_server::Config {
        token_pace: Duration::ZERO,
        max_connections_per_user: max_conns_per_user,
        rate_limit_per_sec: 1_000_000,
        rate_burst: 1_000_000,
        ..Default::default()
    })
    .await?)
}

/// Creates a session over REST and returns (ws url of the session, bearer token).
async fn new_session(
    server: &reference_server::ServerHandle,
    user: &str,
) -> Result<(String, String), BoxError> {
    let at = ServerAt {
        ws_url: server.ws_url(),
        http_url: server.http_url(),
        secret: server.jwt_secret().to_owned(),
    };
    new_session_at(&at, user).await
}

/// Where a reference server listens and the secret its tokens are signed with.
#[derive(Clone)]
struct ServerAt {
    ws_url: String,
    http_url: String,
    secret: String,
}

/// The reference server on a thread and runtime of its own (as a separate process would run it):
/// its tasks are not scheduled among the harness's, so a figure is not an artefact of sharing one
/// scheduler. Stops when the returned sender is dropped or sent to.
fn start_server_own_runtime() -> Result<(ServerAt, tokio::sync::oneshot::Sender<()>), BoxError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<ServerAt, String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(format!("server runtime: {e}")));
                return;
            }
        };
        rt.block_on(async move {
            match start_server(64).await {
                Ok(h) => {
                    let at = ServerAt {
                        ws_url: h.ws_url(),
                        http_url: h.http_url(),
                        secret: h.jwt_secret().to_owned(),
                    };
                    let _ = ready_tx.send(Ok(at));
                    let _ = stop_rx.await;
                    h.shutdown().await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                }
            }
        });
    });
    let at = ready_rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| "the server thread did not start within 30 s")??;
    Ok((at, stop_tx))
}

/// [`new_session`] for a server known by its address.
async fn new_session_at(server: &ServerAt, user: &str) -> Result<(String, String), BoxError> {
    let token =
        reference_server::mint_token(&server.secret, user, false, Duration::from_secs(3600));
    let http = reqwest::Client::new();
    let v: serde_json::Value = http
        .post(format!("{}/api/v1/sessions", server.http_url))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = v["session_id"].as_str().ok_or("no session_id")?.to_owned();
    Ok((format!("{}/api/v1/chat/ws/{id}", server.ws_url), token))
}

type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn raw_connect(url: &str, token: Option<&str>) -> Result<RawWs, BoxError> {
    let mut req = url.into_client_request()?;
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse()?);
    }
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .map_err(|_| "connect timed out")??;
    if let tokio_tungstenite::MaybeTlsStream::Plain(s) = ws.get_ref() {
        let _ = s.set_nodelay(true);
    }
    Ok(ws)
}

/// Reads text frames until one contains `"final_answer"`; returns the frames read (parsed or not).
async fn raw_read_turn(
    ws: &mut RawWs,
    parse: bool,
    keep: Option<&mut Vec<String>>,
) -> Result<u64, BoxError> {
    let mut n = 0u64;
    let mut keep = keep;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .map_err(|_| "no frame within 60 s")?
            .ok_or("stream ended")??;
        if let Message::Text(t) = msg {
            n += 1;
            let done = if parse {
                let v: serde_json::Value = serde_json::from_str(&t)?;
                v["type"] == "final_answer"
            } else {
                t.contains("\"final_answer\"")
            };
            if let Some(k) = keep.as_deref_mut() {
                k.push(t.to_string());
            }
            if done {
                return Ok(n);
            }
        }
    }
}

/// A raw reader of one `#long=N` turn: (events, seconds from send to final_answer).
async fn raw_stream(
    url: &str,
    token: Option<&str>,
    n: u64,
    parse: bool,
) -> Result<(u64, f64), BoxError> {
    let mut ws = raw_connect(url, token).await?;
    // `connected` first.
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .map_err(|_| "no connected")?;
    drop(first);
    let t0 = Instant::now();
    ws.send(Message::text(format!(
        r##"{{"type":"message","content":"#long={n}"}}"##
    )))
    .await?;
    let events = raw_read_turn(&mut ws, parse, None).await?;
    let secs = t0.elapsed().as_secs_f64();
    let _ = ws.close(None).await;
    Ok((events, secs))
}

/// A trivial server replaying pre-serialized frames: `connected` on connect, the whole turn on the
/// first text message. Serves connections until the bench process ends.
async fn blast_server(frames: Arc<Vec<String>>) -> Result<String, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let frames = frames.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let msgs: Vec<Message> = frames.iter().map(|f| Message::text(f.as_str())).collect();
                if ws.send(msgs[0].clone()).await.is_err() {
                    return;
                }
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() {
                        for f in &msgs[1..] {
                            if ws.feed(f.clone()).await.is_err() {
                                return;
                            }
                        }
                        let _ = ws.flush().await;
                    } else if m.is_close() {
                        break;
                    }
                }
            });
        }
    });
    Ok(format!("ws://{addr}"))
}

/// The harness reading one `#long=N` turn: (events, seconds from the send step to the end of the
/// expect step, i.e. until the harness has processed every event).
async fn harness_stream(
    suite: &Suite,
    target: Option<String>,
    n: u64,
    schema_sample: u32,
) -> Result<(u64, f64), BoxError> {
    let with_http = target.is_none();
    let yaml = format!(
        r##"name: bench-stream
steps:
{http}  - connect: {{ path: "{path}"{auth} }}
  - expect: {{ match: {{ type: connected }} }}
  - send: {{ json: {{ type: message, content: "#long={n}" }} }}
  - expect: {{ match: {{ type: final_answer }}, timeout: 300s }}
"##,
        http = if with_http {
            "  - http: { method: POST, path: \"${sessions}\", headers: { Authorization: \"Bearer ${jwt:bench-stream}\" }, status: 201, capture: { session_id: /session_id } }\n"
        } else {
            ""
        },
        path = if with_http {
            "${chat}/${session_id}"
        } else {
            "/bench"
        },
        auth = if with_http {
            ", headers: { Authorization: \"Bearer ${jwt:bench-stream}\" }"
        } else {
            ""
        },
    );
    let sc = load_scenario_str(
        Path::new("bench-stream.yaml"),
        &yaml,
        &suite.config,
        &LoadOptions::default(),
    )
    .map_err(|e| format!("bench scenario: {e}"))?;
    let opts = RunOptions {
        target,
        ..Default::default()
    };
    let mut prepared = Prepared::new(
        suite,
        &opts,
        reference_server::Config {
            token_pace: Duration::ZERO,
            ..Default::default()
        },
    )
    .await?;
    prepared.set_schema_sample(schema_sample);
    let r = tokio::time::timeout(RUN_TIMEOUT, prepared.run_scenario(&sc))
        .await
        .map_err(|_| "harness stream timed out")?;
    prepared.shutdown().await;
    check_passed(&r)?;
    let k = r.steps.len();
    let secs = (r.steps[k - 2].duration + r.steps[k - 1].duration).as_secs_f64();
    Ok((n + 3, secs))
}

/// The harness reading one `#long=N` turn from a reference server it did not start (`ws_url` is the
/// session's socket, `token` its owner's): (events, seconds from the send step to the end of the
/// expect step).
async fn harness_stream_at(
    suite: &Suite,
    ws_url: &str,
    token: &str,
    n: u64,
) -> Result<(u64, f64), BoxError> {
    let (target, path) = ws_url
        .split_once("/api/")
        .map(|(t, p)| (t.to_owned(), format!("/api/{p}")))
        .ok_or("not a session url")?;
    let yaml = format!(
        r##"name: bench-stream-at
steps:
  - connect: {{ path: "{path}", headers: {{ Authorization: "Bearer {token}" }} }}
  - expect: {{ match: {{ type: connected }} }}
  - send: {{ json: {{ type: message, content: "#long={n}" }} }}
  - expect: {{ match: {{ type: final_answer }}, timeout: 300s }}
"##
    );
    let sc = load_scenario_str(
        Path::new("bench-stream-at.yaml"),
        &yaml,
        &suite.config,
        &LoadOptions::default(),
    )
    .map_err(|e| format!("bench scenario: {e}"))?;
    let opts = RunOptions {
        target: Some(target),
        ..Default::default()
    };
    let prepared = Prepared::new(suite, &opts, reference_server::Config::default()).await?;
    let r = tokio::time::timeout(RUN_TIMEOUT, prepared.run_scenario(&sc))
        .await
        .map_err(|_| "harness stream timed out")?;
    prepared.shutdown().await;
    check_passed(&r)?;
    let k = r.steps.len();
    let secs = (r.steps[k - 2].duration + r.steps[k - 1].duration).as_secs_f64();
    Ok((n + 3, secs))
}

fn check_passed(r: &ScenarioResult) -> Result<(), BoxError> {
    if r.status != Status::Passed {
        return Err(format!(
            "scenario failed: {}",
            r.failures
                .first()
                .map(|f| f.message.clone())
                .unwrap_or_default()
        )
        .into());
    }
    Ok(())
}

fn line(name: &str, events: u64, secs: f64) -> f64 {
    let rate = events as f64 / secs;
    println!("{name:<52} {events:>9} events {secs:>8.3} s {rate:>12.0} events/s");
    rate
}

async fn stream(args: &[String]) -> Result<(), BoxError> {
    let n: u64 = arg(args, "--events", 200_000);
    let reps: usize = arg(args, "--reps", 3);
    // `--only harness,replay`: run only the variants whose key contains every listed word (profiling).
    let only: String = arg(args, "--only", String::new());
    let wanted = |key: &str| {
        only.split(',')
            .filter(|w| !w.is_empty())
            .all(|w| key.contains(w))
    };
    let suite = bundled_suite()?;
    println!(
        "stream bench: #long={n}, best of {reps}, load average {}",
        load_avg()
    );
    let server = start_server(64).await?;

    // Record the reference server's whole stream once, for the replay server.
    let (url, token) = new_session(&server, "bench-record").await?;
    let mut ws = raw_connect(&url, Some(&token)).await?;
    let mut frames = Vec::new();
    let connected = ws.next().await.ok_or("no connected")??;
    frames.push(connected.into_text()?.to_string());
    ws.send(Message::text(format!(
        r##"{{"type":"message","content":"#long={n}"}}"##
    )))
    .await?;
    raw_read_turn(&mut ws, false, Some(&mut frames)).await?;
    let _ = ws.close(None).await;
    let blast = blast_server(Arc::new(frames)).await?;
    // The same server code on a thread and runtime of its own.
    let (own, _stop_own) = start_server_own_runtime()?;

    let mut best: BTreeMap<&str, f64> = BTreeMap::new();
    let mut keep = |k: &'static str, v: f64| {
        let e = best.entry(k).or_insert(0.0);
        *e = e.max(v);
    };
    for rep in 0..reps {
        println!("-- rep {}", rep + 1);
        if wanted("raw client, reference server") {
            let (url, token) = new_session(&server, "bench-raw").await?;
            let (e, s) = raw_stream(&url, Some(&token), n, false).await?;
            keep(
                "raw client, reference server",
                line("raw client (no parse), reference server", e, s),
            );
        }
        if wanted("raw+parse, reference server") {
            let (url, token) = new_session(&server, "bench-raw").await?;
            let (e, s) = raw_stream(&url, Some(&token), n, true).await?;
            keep(
                "raw+parse, reference server",
                line("raw client (serde_json parse), reference server", e, s),
            );
        }
        if wanted("raw client, reference server, own runtime") {
            let (url, token) = new_session_at(&own, "bench-raw").await?;
            let (e, s) = raw_stream(&url, Some(&token), n, false).await?;
            keep(
                "raw client, reference server, own runtime",
                line("raw client (no parse), reference server own runtime", e, s),
            );
        }
        if wanted("raw client, replay server") {
            let (e, s) = raw_stream(&format!("{blast}/bench"), None, n, false).await?;
            keep(
                "raw client, replay server",
                line("raw client (no parse), replay server", e, s),
            );
        }
        if wanted("raw+parse, replay server") {
            let (e, s) = raw_stream(&format!("{blast}/bench"), None, n, true).await?;
            keep(
                "raw+parse, replay server",
                line("raw client (serde_json parse), replay server", e, s),
            );
        }
        if wanted("harness, reference server") {
            let (e, s) = harness_stream(&suite, None, n, 1).await?;
            keep(
                "harness, reference server",
                line("harness (all checks), embedded reference server", e, s),
            );
        }
        if wanted("harness, reference server, own runtime") {
            let (url, token) = new_session_at(&own, "bench-harness").await?;
            let (e, s) = harness_stream_at(&suite, &url, &token, n).await?;
            keep(
                "harness, reference server, own runtime",
                line("harness (all checks), reference server own runtime", e, s),
            );
        }
        if wanted("harness, replay server") {
            let (e, s) = harness_stream(&suite, Some(blast.clone()), n, 1).await?;
            keep(
                "harness, replay server",
                line("harness (all checks), replay server", e, s),
            );
        }
        if wanted("harness sampled, replay server") {
            let (e, s) = harness_stream(&suite, Some(blast.clone()), n, 1000).await?;
            keep(
                "harness sampled, replay server",
                line("harness (schema 1 in 1000), replay server", e, s),
            );
        }
    }
    println!("-- best of {reps} (events/s)");
    for (k, v) in &best {
        println!("{k:<40} {v:>12.0}");
    }
    let ratio = |a: &str, b: &str| match (best.get(a), best.get(b)) {
        (Some(x), Some(y)) => x / y,
        _ => f64::NAN,
    };
    println!(
        "harness / raw+parse (replay server): {:.2}; harness / raw (replay): {:.2}; harness on reference / on replay: {:.2}; on reference own runtime / on replay: {:.2}",
        ratio("harness, replay server", "raw+parse, replay server"),
        ratio("harness, replay server", "raw client, replay server"),
        ratio("harness, reference server", "harness, replay server"),
        ratio("harness, reference server, own runtime", "harness, replay server"),
    );
    server.shutdown().await;
    Ok(())
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// Waits (bounded) for every worker and merges their latency histograms and error counts.
async fn join_workers(
    mut tasks: tokio::task::JoinSet<(Histogram<u64>, u64)>,
    what: &str,
) -> Result<(Histogram<u64>, u64), BoxError> {
    let mut h = hist();
    let mut errors = 0;
    let done = tokio::time::timeout(RUN_TIMEOUT, async {
        while let Some(r) = tasks.join_next().await {
            if let Ok((wh, we)) = r {
                h.add(&wh).expect("same bounds");
                errors += we;
            }
        }
    })
    .await;
    if done.is_err() {
        return Err(format!("{what} timed out").into());
    }
    Ok((h, errors))
}

fn print_hist(name: &str, total: u64, secs: f64, h: &Histogram<u64>, errors: u64) -> f64 {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let rate = total as f64 / secs;
    println!(
        "{name:<36} {total:>7} sessions in {secs:>6.2} s = {rate:>8.0} sessions/s; p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; errors {errors}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
    rate
}

/// The next text frame, within 10 s.
async fn next_text(ws: &mut RawWs) -> Result<String, BoxError> {
    let fut = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok::<_, BoxError>(t.to_string()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => return Err("connection ended".into()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| "no text frame within 10 s")?
}

/// One raw session: connect (token in the header), wait for `connected`, M `ping`/`pong` round trips
/// (JSON, each `ping` carrying a nonce), close.
async fn raw_session(url: &str, token: &str, messages: usize) -> Result<(), BoxError> {
    let mut ws = raw_connect(url, Some(token)).await?;
    let first = next_text(&mut ws).await?;
    let v: serde_json::Value = serde_json::from_str(&first)?;
    if v["type"] != "connected" {
        return Err(format!("expected connected, got {first}").into());
    }
    for i in 0..messages {
        ws.send(Message::text(format!(r#"{{"type":"ping","nonce":{i}}}"#)))
            .await?;
        let t = next_text(&mut ws).await?;
        let v: serde_json::Value = serde_json::from_str(&t)?;
        if v["type"] != "pong" || v["nonce"] != i {
            return Err(format!("expected pong {i}, got {t}").into());
        }
    }
    ws.close(None).await?;
    // Wait for the server's close frame (as the harness's `close` step does); the TCP end may lag it.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    Ok(())
}

async fn sessions(args: &[String]) -> Result<(), BoxError> {
    let workers: usize = arg(args, "--workers", 64);
    let total: usize = arg(args, "--sessions", 5000);
    let messages: usize = arg(args, "--messages", 10);
    // `--only raw` or `--only harness`: one of the two clients (profiling one side).
    let only: String = arg(args, "--only", String::new());
    // `--ws-url URL --token T`: an external server (e.g. `wschat-check serve`, as Artillery uses).
    let external: Option<(String, String)> = {
        let u: String = arg(args, "--ws-url", String::new());
        let t: String = arg(args, "--token", String::new());
        (!u.is_empty()).then_some((u, t))
    };
    println!(
        "sessions bench: {total} sessions of connect + {messages} ping/pong round trips + close, {workers} workers, load average {}",
        load_avg()
    );
    let mut server = None;
    let urls: Vec<(String, String)> = match &external {
        Some(u) => vec![u.clone(); workers],
        None => {
            let s = start_server(usize::MAX / 2).await?;
            let mut v = Vec::new();
            for w in 0..workers {
                v.push(new_session(&s, &format!("bench-{w}")).await?);
            }
            server = Some(s);
            v
        }
    };
    let target = urls[0]
        .0
        .split("/api/")
        .next()
        .unwrap_or_default()
        .to_owned();
    let urls = Arc::new(urls);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(if only == "harness" {
        total
    } else {
        0
    }));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (urls, next) = (urls.clone(), next.clone());
        tasks.spawn(async move {
            let mut h = hist();
            let mut errors = 0u64;
            let (url, token) = &urls[w];
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let s = Instant::now();
                match raw_session(url, token, messages).await {
                    Ok(()) => h.saturating_record(s.elapsed().as_micros() as u64),
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("worker {w}: {e}");
                        }
                        errors += 1;
                    }
                }
            }
            (h, errors)
        });
    }
    let (h, errors) = join_workers(tasks, "sessions bench").await?;
    let secs = t0.elapsed().as_secs_f64();
    if only != "harness" {
        print_hist("raw tokio-tungstenite client", h.len(), secs, &h, errors);
    }
    if only == "raw" {
        if let Some(s) = server {
            s.shutdown().await;
        }
        return Ok(());
    }

    // The harness: the same flow as a scenario through load mode's executor, checks on.
    let suite = bundled_suite()?;
    let mut steps = String::from(
        "name: bench-session\nsteps:\n  - connect: { path: \"${chat}/${sid}\", headers: { Authorization: \"Bearer ${tok}\" } }\n  - expect: { match: { type: connected } }\n",
    );
    for i in 0..messages {
        steps.push_str(&format!(
            "  - send: {{ json: {{ type: ping, nonce: {i} }} }}\n  - expect: {{ match: {{ type: pong, nonce: {i} }}, skip: false }}\n"
        ));
    }
    steps.push_str("  - close: {}\n");
    let opts = RunOptions {
        target: Some(target),
        ..Default::default()
    };
    let mut prepared = Prepared::new(&suite, &opts, reference_server::Config::default()).await?;
    // As `wschat-check load` runs sessions: passed sessions' transcripts are only counted.
    prepared.set_transcript_json(false);
    prepared.set_read_buffer(wschat_check::transport::ws::READ_BUFFER_MANY);
    let prepared = Arc::new(prepared);
    let mut scenarios = Vec::new();
    for (url, token) in urls.iter() {
        let sid = url.rsplit('/').next().unwrap_or_default();
        let yaml = steps.replace("${sid}", sid).replace("${tok}", token);
        scenarios.push(Arc::new(
            load_scenario_str(
                Path::new("bench-session.yaml"),
                &yaml,
                &suite.config,
                &LoadOptions::default(),
            )
            .map_err(|e| format!("bench scenario: {e}"))?,
        ));
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for sc in scenarios {
        let (prepared, next) = (prepared.clone(), next.clone());
        tasks.spawn(async move {
            let mut h = hist();
            let mut errors = 0u64;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let r = prepared.run_scenario(&sc).await;
                if r.status == Status::Passed {
                    h.saturating_record(r.duration.as_micros() as u64);
                } else {
                    if errors == 0 {
                        eprintln!(
                            "harness session failed: {:?}",
                            r.failures.first().map(|f| &f.message)
                        );
                    }
                    errors += 1;
                }
            }
            (h, errors)
        });
    }
    let (h, errors) = join_workers(tasks, "harness sessions bench").await?;
    let secs = t0.elapsed().as_secs_f64();
    print_hist("harness (all checks)", h.len(), secs, &h, errors);
    if let Some(s) = server {
        s.shutdown().await;
    }
    Ok(())
}

/// Child process of `capacity`: opens N idle authenticated connections to the URL, prints `ready`,
/// then holds them until stdin closes (bounded by 10 minutes).
fn idle_clients(args: &[String]) {
    let url: String = arg(args, "--url", String::new());
    let token: String = arg(args, "--token", String::new());
    let n: usize = arg(args, "--conns", 1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut conns = Vec::with_capacity(n);
        for i in 0..n {
            match raw_connect(&url, Some(&token)).await {
                Ok(ws) => conns.push(ws),
                Err(e) => {
                    println!("failed after {i}: {e}");
                    return;
                }
            }
        }
        println!("ready {}", conns.len());
        let _ = tokio::time::timeout(
            Duration::from_secs(600),
            tokio::task::spawn_blocking(|| {
                let mut s = String::new();
                let _ = std::io::stdin().read_line(&mut s);
            }),
        )
        .await;
        drop(conns);
    });
}

async fn capacity(args: &[String]) -> Result<(), BoxError> {
    use std::io::{BufRead, BufReader, Write};
    let counts: Vec<usize> = arg(args, "--conns", "1000,10000".to_string())
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    println!("capacity bench, load average {}", load_avg());
    let me = std::process::id();
    for n in counts {
        let server = start_server(usize::MAX / 2).await?;
        let (url, token) = new_session(&server, "bench-idle").await?;
        // The baseline: the server running with one session and no sockets.
        let base = rss_kib(me);
        let exe = std::env::current_exe()?;
        let mut child = std::process::Command::new(exe)
            .args([
                "idle-clients",
                "--url",
                &url,
                "--token",
                &token,
                "--conns",
                &n.to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let ready = tokio::task::spawn_blocking(move || {
            let mut l = String::new();
            let _ = out.read_line(&mut l);
            l
        });
        let l = tokio::time::timeout(RUN_TIMEOUT, ready)
            .await
            .map_err(|_| "idle clients timed out")??;
        // Let the server finish the handshakes it has accepted (each sends `connected`).
        let settle = Instant::now();
        let mut last = rss_kib(me);
        while settle.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = rss_kib(me);
            if now == last {
                break;
            }
            last = now;
        }
        let server_rss = rss_kib(me);
        let client_rss = rss_kib(child.id());
        println!(
            "{n:>6} idle connections ({}): server RSS {} KiB -> {} KiB = {:.1} KiB per connection; idle raw clients process {} KiB = {:.1} KiB per connection",
            l.trim(),
            base,
            server_rss,
            server_rss.saturating_sub(base) as f64 / n as f64,
            client_rss,
            client_rss as f64 / n as f64
        );
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = child.wait();
        server.shutdown().await;
    }
    Ok(())
}
