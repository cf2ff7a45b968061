//! The browser test page (`GET /`) in real headless Chromium: the page's self-test mode
//! (`/?selftest=1`) drives its own UI code (REST session, connect, authenticate, ping, a turn, cancel a
//! long stream, approve a confirmation, answer a question, disconnect) against a server on 127.0.0.1:0,
//! and writes a JSON verdict into `#selftest-result`, which these tests read back and check.
//!
//! Chromium is driven over the DevTools protocol rather than with `--virtual-time-budget --dump-dom`:
//! virtual time fast-forwards the page's timers while it waits for WebSocket traffic (which does not
//! hold virtual time back), so the page's own step timeouts fire at once and the DOM is dumped
//! before the self-test ends. Over DevTools the test waits, in real time and bounded, for the page's
//! `window.selfTest` promise, then reads the DOM and takes a screenshot into
//! `target/browser-artifacts/`.
//!
//! Without Chromium on PATH (or in `$CHROMIUM`) the tests print `SKIPPED: chromium not found` and
//! pass, unless `CI` is set: CI installs Chromium, so there a missing browser is a failure.

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reference_server::Config;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::{server, Srv};

/// Chromium's start until it prints its DevTools address (cold start on a loaded machine).
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
/// One DevTools call or awaited event.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The whole self-test (the page bounds each of its steps by 20 s of its own).
const SELFTEST_TIMEOUT: Duration = Duration::from_secs(180);
/// Browser exit after `Browser.close`, before it is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// One Chromium at a time: two cores are shared with the rest of the suite.
static BROWSER_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, thiserror::Error)]
enum BrowserError {
    #[error("cannot start {bin}: {source}")]
    Spawn { bin: String, source: std::io::Error },
    #[error("chromium printed no DevTools address within {timeout:?}; its stderr:\n{stderr}")]
    NoDevTools { timeout: Duration, stderr: String },
    #[error("cannot open the DevTools socket {url}: {source}")]
    Connect {
        url: String,
        source: tokio_tungstenite::tungstenite::Error,
    },
    #[error("DevTools: no answer to {what} within {timeout:?}")]
    Timeout { what: String, timeout: Duration },
    #[error("DevTools: {method} failed: {error}")]
    Call { method: String, error: Value },
    #[error("DevTools: the socket ended while waiting for {0}")]
    Closed(String),
    #[error("DevTools: {0}")]
    Protocol(String),
}

/// The browser binary: `$CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The browser to use, or `None` after printing the skip line (outside CI only).
fn chromium_or_skip() -> Option<PathBuf> {
    match find_chromium() {
        Some(p) => Some(p),
        None if in_ci() => panic!(
            "chromium not found on PATH and CI is set: .ci/run installs Debian's chromium package"
        ),
        None => {
            // Straight to stderr: the test harness captures print!/eprint! of passing tests, and this
            // line must be seen.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: chromium not found (install Debian's chromium package, or set CHROMIUM)"
            );
            None
        }
    }
}

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("browser-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/browser-artifacts");
    dir
}

/// A headless Chromium in its own process group, with a fresh profile folder. Dropping it kills the
/// whole group (the Debian launcher script, the browser and its helpers) if it has not exited.
struct Chromium {
    pgid: u32,
    exit: mpsc::Receiver<std::io::Result<ExitStatus>>,
    exited: bool,
    stderr: Arc<Mutex<String>>,
    profile: PathBuf,
    devtools_url: String,
}

impl Chromium {
    fn launch(bin: &std::path::Path) -> Result<Chromium, BrowserError> {
        use std::os::unix::process::CommandExt;
        let profile =
            std::env::temp_dir().join(format!("wschat-chromium-{}", uuid::Uuid::new_v4().simple()));
        let mut child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1200,900",
                // Port 0: the browser picks a free port and prints it on stderr.
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|source| BrowserError::Spawn {
                bin: bin.display().to_string(),
                source,
            })?;
        let pgid = child.id();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("stderr is piped");
        let buffer = stderr.clone();
        // Drains stderr to its end (a full pipe would stall the browser) and hands over the address.
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = url_tx.send(url.trim().to_owned());
                }
                let mut b = buffer.lock().unwrap_or_else(|p| p.into_inner());
                b.push_str(&line);
                b.push('\n');
            }
        });
        let (exit_tx, exit) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = exit_tx.send(child.wait());
        });
        let mut browser = Chromium {
            pgid,
            exit,
            exited: false,
            stderr,
            profile,
            devtools_url: String::new(),
        };
        match url_rx.recv_timeout(LAUNCH_TIMEOUT) {
            Ok(url) => browser.devtools_url = url,
            Err(_) => {
                return Err(BrowserError::NoDevTools {
                    timeout: LAUNCH_TIMEOUT,
                    stderr: browser.stderr_text(),
                })
            }
        }
        Ok(browser)
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits (bounded) for the browser to exit; true if it did.
    fn wait_exit(&mut self, limit: Duration) -> bool {
        if !self.exited {
            self.exited = self.exit.recv_timeout(limit).is_ok();
        }
        self.exited
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        if !self.wait_exit(Duration::ZERO) {
            // The group id is the browser's pid, and the group holds only what it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.pgid)])
                .status();
            self.wait_exit(EXIT_TIMEOUT);
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A minimal DevTools protocol client: numbered calls, and events kept until someone asks for them.
struct Cdp {
    ws: common::Ws,
    next_id: u64,
    backlog: VecDeque<Value>,
}

impl Cdp {
    async fn connect(url: &str) -> Result<Cdp, BrowserError> {
        let (ws, _) = tokio::time::timeout(CALL_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| BrowserError::Timeout {
                what: format!("the connection to {url}"),
                timeout: CALL_TIMEOUT,
            })?
            .map_err(|source| BrowserError::Connect {
                url: url.to_owned(),
                source,
            })?;
        Ok(Cdp {
            ws,
            next_id: 0,
            backlog: VecDeque::new(),
        })
    }

    async fn read(&mut self, what: &str, limit: Duration) -> Result<Value, BrowserError> {
        loop {
            let frame = tokio::time::timeout(limit, self.ws.next())
                .await
                .map_err(|_| BrowserError::Timeout {
                    what: what.to_owned(),
                    timeout: limit,
                })?;
            match frame {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(t.as_str()).map_err(|e| {
                        BrowserError::Protocol(format!("not JSON while waiting for {what}: {e}"))
                    })
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    return Err(BrowserError::Closed(what.to_owned()))
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn call_within(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
        limit: Duration,
    ) -> Result<Value, BrowserError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        tokio::time::timeout(CALL_TIMEOUT, self.ws.send(Message::text(msg.to_string())))
            .await
            .map_err(|_| BrowserError::Timeout {
                what: format!("sending {method}"),
                timeout: CALL_TIMEOUT,
            })?
            .map_err(|_| BrowserError::Closed(method.to_owned()))?;
        // One deadline for the whole call, however many events arrive before its answer.
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.read(method, left).await?;
            if v["id"] == id {
                if let Some(error) = v.get("error") {
                    return Err(BrowserError::Call {
                        method: method.to_owned(),
                        error: error.clone(),
                    });
                }
                return Ok(v["result"].clone());
            }
            if v.get("method").is_some() {
                self.backlog.push_back(v);
            }
        }
    }

    async fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, BrowserError> {
        self.call_within(session, method, params, CALL_TIMEOUT)
            .await
    }

    async fn event(&mut self, session: &str, method: &str) -> Result<Value, BrowserError> {
        let matches = |v: &Value| v["method"] == method && v["sessionId"] == session;
        if let Some(i) = self.backlog.iter().position(matches) {
            return Ok(self.backlog.remove(i).expect("index from position"));
        }
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.read(method, left).await?;
            if matches(&v) {
                return Ok(v);
            }
        }
    }
}

/// Standard base64 (the screenshot's encoding), strict enough for a test.
fn base64_decode(s: &str) -> Result<Vec<u8>, BrowserError> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => {
                return Err(BrowserError::Protocol(format!(
                    "screenshot is not base64 (byte {c})"
                )))
            }
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// What one page run produced.
struct PageRun {
    /// The parsed text of `#selftest-result`.
    result: Value,
    screenshot: PathBuf,
}

/// Opens `url` in a fresh headless Chromium, waits for the page's self-test to finish, reads the
/// verdict from the DOM, and saves a 1200x900 screenshot as `target/browser-artifacts/{name}.png`.
async fn run_page(bin: &std::path::Path, url: &str, name: &str) -> Result<PageRun, BrowserError> {
    let _one_at_a_time = BROWSER_LOCK.lock().await;
    let mut browser = tokio::task::block_in_place(|| Chromium::launch(bin))?;
    let outcome = drive(&browser.devtools_url, url, name).await;
    let outcome = match outcome {
        Ok(run) => Ok(run),
        Err(e) => Err(BrowserError::Protocol(format!(
            "{e}\nchromium stderr:\n{}",
            browser.stderr_text()
        ))),
    };
    // A clean exit is expected after Browser.close; Drop kills the group if it is not.
    tokio::task::block_in_place(|| browser.wait_exit(EXIT_TIMEOUT));
    outcome
}

async fn drive(devtools: &str, url: &str, name: &str) -> Result<PageRun, BrowserError> {
    let mut cdp = Cdp::connect(devtools).await?;
    let target = cdp
        .call(None, "Target.createTarget", json!({"url": "about:blank"}))
        .await?;
    let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
    let attached = cdp
        .call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )
        .await?;
    let session = attached["sessionId"]
        .as_str()
        .ok_or_else(|| BrowserError::Protocol(format!("attachToTarget answered {attached}")))?
        .to_owned();
    let s = Some(session.as_str());
    cdp.call(s, "Page.enable", json!({})).await?;
    cdp.call(
        s,
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await?;
    let nav = cdp.call(s, "Page.navigate", json!({"url": url})).await?;
    if let Some(err) = nav.get("errorText") {
        return Err(BrowserError::Protocol(format!(
            "navigation to {url}: {err}"
        )));
    }
    cdp.event(&session, "Page.loadEventFired").await?;
    // The page's promise settles once the verdict is in the DOM; the page never rejects it.
    let settled = cdp
        .call_within(
            s,
            "Runtime.evaluate",
            json!({"expression": "window.selfTest", "awaitPromise": true, "returnByValue": true}),
            SELFTEST_TIMEOUT,
        )
        .await?;
    if settled["result"]["type"] != "object" {
        return Err(BrowserError::Protocol(format!(
            "the page did not start its self-test (window.selfTest is {})",
            settled["result"]
        )));
    }
    let dom = cdp
        .call(
            s,
            "Runtime.evaluate",
            json!({"expression": "document.getElementById('selftest-result').textContent",
                   "returnByValue": true}),
        )
        .await?;
    let text = dom["result"]["value"].as_str().unwrap_or_default();
    let result: Value = serde_json::from_str(text).map_err(|e| {
        BrowserError::Protocol(format!("#selftest-result is not JSON ({e}): {text:?}"))
    })?;
    let shot = cdp
        .call(s, "Page.captureScreenshot", json!({"format": "png"}))
        .await?;
    let png = base64_decode(shot["data"].as_str().unwrap_or_default())?;
    let screenshot = artifacts_dir().join(format!("{name}.png"));
    std::fs::write(&screenshot, &png)
        .map_err(|e| BrowserError::Protocol(format!("write {}: {e}", screenshot.display())))?;
    // Closing may end the socket before an answer arrives; the exit wait covers the rest.
    let _ = cdp.call(None, "Browser.close", json!({})).await;
    Ok(PageRun { result, screenshot })
}

fn step<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step '{name}' in {result:#}"))
}

/// The verdict of a passing run, checked step by step, and the screenshot's sanity.
fn assert_passed(run: &PageRun, auth: &str) {
    let r = &run.result;
    assert_eq!(r["ok"], true, "self-test failed: {r:#}");
    let names: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "token",
            "create_session",
            "connect",
            "ping",
            "message",
            "cancel_long_stream",
            "confirmation",
            "ask_human",
            "disconnect"
        ]
    );
    assert_eq!(step(r, "connect")["auth"], auth);
    assert!(step(r, "message")["tokens"].as_u64().unwrap() > 0);
    let before_cancel = step(r, "cancel_long_stream")["tokens_before_cancel"]
        .as_u64()
        .unwrap();
    assert!((3..100_000).contains(&before_cancel), "{before_cancel}");
    assert!(step(r, "confirmation")["answer"]
        .as_str()
        .unwrap()
        .ends_with("[confirmed]"));
    assert_eq!(step(r, "disconnect")["close_code"], 1000);
    let png = std::fs::read(&run.screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a real screenshot ({} bytes)",
        run.screenshot.display(),
        png.len()
    );
}

/// The server recorded what the page did: four user messages in the session's history.
async fn assert_history(srv: &Srv, session: &str, user: &str) {
    let r = srv
        .http
        .get(srv.url(&format!("/api/v1/sessions/{session}")))
        .bearer_auth(srv.token(user))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let users: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["role"] == "user")
        .map(|e| e["content"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        users,
        [
            "hello #tool",
            "#long=100000 #pace=5",
            "deploy #confirm",
            "who #ask"
        ],
        "{v:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_self_test_with_dev_token_and_query_auth() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let srv = server(Config {
        dev: true,
        ..Config::default()
    })
    .await;
    let url = format!("{}/?selftest=1", srv.handle.http_url());
    let run = run_page(&bin, &url, "selftest-dev-token").await.unwrap();
    assert_passed(&run, "query");
    assert_eq!(step(&run.result, "token")["source"], "dev endpoint");
    let session = step(&run.result, "create_session")["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The page's user field defaults to "alice".
    assert_history(&srv, &session, "alice").await;
    srv.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_self_test_with_fragment_token_and_first_message_auth() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    // No dev endpoint: the token is minted here and passed in the fragment (never sent to a server).
    let srv = server(Config::default()).await;
    let token = srv.token("page-user");
    let url = format!(
        "{}/?selftest=1&auth=message#token={token}&user=page-user",
        srv.handle.http_url()
    );
    let run = run_page(&bin, &url, "selftest-first-message")
        .await
        .unwrap();
    assert_passed(&run, "first message");
    assert_eq!(step(&run.result, "token")["source"], "fragment");
    assert_eq!(step(&run.result, "connect")["user_id"], "page-user");
    let session = step(&run.result, "create_session")["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_history(&srv, &session, "page-user").await;
    srv.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_self_test_reports_a_failing_step() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    // A token signed with another secret: the page's REST call is refused, and the verdict must say
    // so (this is what keeps the passing tests above from passing vacuously).
    let srv = server(Config::default()).await;
    let forged =
        reference_server::mint_token("not-the-secret", "mallory", false, Duration::from_secs(600));
    let url = format!("{}/?selftest=1#token={forged}", srv.handle.http_url());
    let run = run_page(&bin, &url, "selftest-bad-token").await.unwrap();
    let r = &run.result;
    assert_eq!(r["ok"], false, "{r:#}");
    assert_eq!(r["failed_step"], "create_session", "{r:#}");
    let error = step(r, "create_session")["error"].as_str().unwrap();
    assert!(
        error.contains("401") && error.contains("AUTH_INVALID"),
        "{error}"
    );
    assert_eq!(srv.status().await["sessions"], 0);
    srv.handle.shutdown().await;
}
