//! The harness against hostile servers: small raw-TCP servers (127.0.0.1, port 0) that refuse,
//! stall, lie, flood or break the WebSocket protocol. Each case runs the real `wschat-check`
//! binary on a scenario of `fixtures/hostile/` with `--target`, and asserts that it finishes
//! within a bound set by the test, exits 1 (a failed scenario, not a panic), keeps its memory
//! bounded (peak RSS from GNU `/usr/bin/time`, else sampled from /proc), and says what went wrong
//! in words a user understands.
//!
//! The servers are written against raw sockets on purpose: tungstenite and axum cannot emit
//! malformed frames, never-finished messages or refused upgrades with arbitrary bodies.

use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest a run of the binary may take; every hostile case must end well before (the scenario
/// timeouts are 2-3 s), so exceeding it means the harness hangs.
const RUN_BOUND: Duration = Duration::from_secs(30);
/// Generous bound on the binary's peak resident memory: the harness must not buffer a 64 MiB
/// frame, a never-finished message or a flood's worth of frames.
const RSS_BOUND_KB: u64 = 300 * 1024;
/// Bound on every server-side wait, so that a server task never outlives its test for long.
const SERVER_WAIT: Duration = Duration::from_secs(40);

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

struct Run {
    code: Option<i32>,
    /// stdout and stderr together: the terminal report and any diagnostics.
    output: String,
    stderr: String,
    /// Peak resident set size in KiB: exact from `/usr/bin/time` (wait4's rusage) when it is
    /// installed, else the highest VmHWM sampled from /proc before exit.
    peak_rss_kb: u64,
    elapsed: Duration,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const TIME: &str = "/usr/bin/time";

/// Runs `wschat-check run fixtures/hostile/SCENARIO --target ws://ADDR`, bounded by `RUN_BOUND`
/// (the child is killed and the test fails if it is exceeded), measuring its peak RSS.
fn run_scenario(scenario: &str, addr: SocketAddr) -> Run {
    let bin = assert_cmd::cargo::cargo_bin!("wschat-check");
    // GNU time writes the child's exact max RSS to a file and passes its exit status through.
    let rss_file = std::path::Path::new(TIME).exists().then(|| {
        let dir = std::env::temp_dir().join(format!("wschat-check-hostile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join(format!("{scenario}-{}.rss", addr.port()))
    });
    let mut command = match &rss_file {
        Some(f) => {
            let mut c = Command::new(TIME);
            c.arg("-f").arg("%M").arg("-o").arg(f).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = command
        .current_dir(root())
        .env_remove("WSCHAT_TARGET")
        .env_remove("WSCHAT_TOKEN")
        .env_remove("WSCHAT_JWT_SECRET")
        .env("NO_COLOR", "1")
        .args(["run", "--color", "never", "--jobs", "1", "--target"])
        .arg(format!("ws://{addr}"))
        .arg(format!("fixtures/hostile/{scenario}.yaml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // Pipes are drained on their own threads so a chatty child never blocks on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let mut peak_rss_kb = 0;
    // Without `time`, sampling VmHWM (a high-water mark: a missed instant loses only the last
    // few ms) is what this loop is for; it also notices the exit.
    let status = loop {
        if rss_file.is_none() {
            if let Some(kb) = vm_hwm_kb(child.id()) {
                peak_rss_kb = peak_rss_kb.max(kb);
            }
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > RUN_BOUND {
            // Under `time` the harness is a grandchild: end it first, then its parent.
            for pid in children_of(child.id()) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "wschat-check did not finish {scenario} within {RUN_BOUND:?} against {addr}\nstdout:\n{}\nstderr:\n{}",
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    if let Some(f) = rss_file {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        // The last line is the number; a line before it may say "Command exited with non-zero status".
        peak_rss_kb = text
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("{TIME} wrote no max RSS to {}: {text:?}", f.display()));
        let _ = std::fs::remove_file(f);
    }
    Run {
        code: status.code(),
        output: format!("{stdout}\n{stderr}"),
        stderr,
        peak_rss_kb,
        elapsed,
    }
}

/// The direct children of a process (Linux).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Run {
    /// Exit 1 (a failed scenario), not a panic (101) or a signal, memory bounded, and each of
    /// `words` in the output.
    fn assert_failed_with(&self, case: &str, words: &[&str]) {
        eprintln!(
            "{case}: exit {:?} in {:?}, peak RSS {} KiB",
            self.code, self.elapsed, self.peak_rss_kb
        );
        // Visible with --nocapture: what a user would have seen.
        eprintln!("{}", self.output.chars().take(3000).collect::<String>());
        assert!(
            !self.stderr.contains("panicked"),
            "{case}: the harness panicked:\n{}",
            self.output
        );
        assert_eq!(self.code, Some(1), "{case}: exit code\n{}", self.output);
        assert!(
            self.peak_rss_kb < RSS_BOUND_KB,
            "{case}: peak RSS {} KiB exceeds {RSS_BOUND_KB} KiB",
            self.peak_rss_kb
        );
        for w in words {
            assert!(
                self.output.contains(w),
                "{case}: the output lacks {w:?}:\n{}",
                self.output
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile servers
// ---------------------------------------------------------------------------------------------

/// Listens on 127.0.0.1:0 and runs `behaviour` on every accepted connection until the test ends.
async fn serve<F, Fut>(behaviour: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let behaviour = Arc::new(behaviour);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let b = behaviour.clone();
            tokio::spawn(async move {
                // A bound on every connection: nothing here may keep the runtime busy forever.
                let _ = tokio::time::timeout(SERVER_WAIT, b(tcp)).await;
            });
        }
    });
    addr
}

/// Reads the HTTP request head (bounded); `None` if the client went away first.
async fn read_request(tcp: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 64 * 1024 {
            return None;
        }
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Completes a valid WebSocket upgrade; `false` if the request was not one.
async fn upgrade(tcp: &mut TcpStream) -> bool {
    let Some(req) = read_request(tcp).await else {
        return false;
    };
    let Some(key) = req.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| v.trim().to_owned())
    }) else {
        return false;
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(resp.as_bytes()).await.is_ok()
}

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;

/// The header of an unmasked server frame.
fn header(fin: bool, opcode: u8, len: u64) -> Vec<u8> {
    let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
    if len < 126 {
        h.push(len as u8);
    } else if len <= u64::from(u16::MAX) {
        h.push(126);
        h.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        h.push(127);
        h.extend_from_slice(&len.to_be_bytes());
    }
    h
}

fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = header(fin, opcode, payload.len() as u64);
    f.extend_from_slice(payload);
    f
}

/// Reads and discards until the client goes away: keeps the connection open without ever
/// answering anything (a close frame included).
async fn swallow(tcp: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = tcp.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// A server that answers the upgrade request with this raw HTTP response, then closes.
async fn http_responder(response: String) -> SocketAddr {
    serve(move |mut tcp| {
        let response = response.clone();
        async move {
            if read_request(&mut tcp).await.is_some() {
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.shutdown().await;
            }
        }
    })
    .await
}

/// A server that upgrades, writes `bytes`, then keeps the connection open (reading) until the
/// client goes away.
async fn upgrade_then_send(bytes: Vec<u8>) -> SocketAddr {
    serve(move |mut tcp| {
        let bytes = bytes.clone();
        async move {
            if upgrade(&mut tcp).await && tcp.write_all(&bytes).await.is_ok() {
                swallow(&mut tcp).await;
            }
        }
    })
    .await
}

/// Runs the scenario on a blocking thread while the runtime keeps serving.
async fn run(scenario: &'static str, addr: SocketAddr) -> Run {
    tokio::task::spawn_blocking(move || run_scenario(scenario, addr))
        .await
        .expect("the runner thread")
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upgrades_show_status_and_body() {
    let cases = [
        (
            401,
            "Unauthorized",
            r#"{"error":{"code":"AUTH_INVALID","message":"token rejected"}}"#,
        ),
        (403, "Forbidden", "you shall not pass"),
        (404, "Not Found", "no such endpoint: /ws"),
        (500, "Internal Server Error", "database on fire"),
    ];
    for (status, reason, body) in cases {
        let addr = http_responder(format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ))
        .await;
        let r = run("connect-expect", addr).await;
        r.assert_failed_with(
            &format!("refusal {status}"),
            &[
                &format!("expected 101 Switching Protocols, got {status} {reason}"),
                body,
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_200_is_not_an_upgrade() {
    let body = "<html><body>Welcome to the chat</body></html>";
    let addr = http_responder(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ))
    .await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with(
        "http 200",
        &[
            "expected 101 Switching Protocols, got 200 OK",
            "Welcome to the chat",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_that_never_answers_the_upgrade_times_out() {
    let addr = serve(|mut tcp| async move {
        // Reads the request, answers nothing, holds the connection open.
        swallow(&mut tcp).await;
    })
    .await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with(
        "silent before upgrade",
        &[
            "timed out after 3s",
            "waiting for the answer to the upgrade request",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_whose_body_never_ends_times_out() {
    let addr = serve(|mut tcp| async move {
        if read_request(&mut tcp).await.is_some() {
            // Announces 1000 bytes, sends 16, then stalls with the connection open.
            let head =
                "HTTP/1.1 401 Unauthorized\r\ncontent-length: 1000\r\n\r\n{\"error\":{\"code\"";
            if tcp.write_all(head.as_bytes()).await.is_ok() {
                swallow(&mut tcp).await;
            }
        }
    })
    .await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with(
        "refusal body never ends",
        &[
            "timed out after 3s",
            "while reading the body of the 401 Unauthorized refusal",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_that_never_speaks_after_the_upgrade_times_out() {
    let addr = upgrade_then_send(Vec::new()).await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with("silent after upgrade", &["timed out"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_text_is_reported() {
    let addr = upgrade_then_send(frame(true, TEXT, b"hello, this is not json")).await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with("non-JSON", &["not JSON", "hello, this is not json"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_reported() {
    // `{"type":"connected"` followed by a lone continuation byte and an overlong encoding.
    let mut payload = br#"{"type":"connected","x":""#.to_vec();
    payload.extend_from_slice(&[0x80, 0xC0, 0xAF]);
    payload.extend_from_slice(br#""}"#);
    let addr = upgrade_then_send(frame(true, TEXT, &payload)).await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with("invalid UTF-8", &["invalid UTF-8"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frame_is_reported() {
    let addr = upgrade_then_send(frame(true, BINARY, br#"{"type":"connected"}"#)).await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with("binary", &["binary frame", "text-only"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_frame_is_refused_without_buffering_it() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let addr = serve(|mut tcp| async move {
        if !upgrade(&mut tcp).await || tcp.write_all(&header(true, TEXT, SIZE)).await.is_err() {
            return;
        }
        // Actually streams the declared payload, until the client hangs up.
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = 0;
        while sent < SIZE {
            if tcp.write_all(&chunk).await.is_err() {
                return;
            }
            sent += chunk.len() as u64;
        }
        swallow(&mut tcp).await;
    })
    .await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with(
        "64 MiB frame",
        &["67108864 bytes", "exceeds max_frame_bytes (1048576 bytes)"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_finished_fragmented_message_is_bounded() {
    let addr = serve(|mut tcp| async move {
        if !upgrade(&mut tcp).await {
            return;
        }
        // A text message whose fragments never end (FIN is never set). Bounded in count so the
        // server stops on its own if the client keeps reading (it must not: 1 MiB is the limit).
        let piece = vec![b'x'; 4096];
        if tcp.write_all(&frame(false, TEXT, &piece)).await.is_err() {
            return;
        }
        let cont = frame(false, CONTINUATION, &piece);
        for _ in 0..64 * 1024 {
            if tcp.write_all(&cont).await.is_err() {
                return;
            }
        }
        swallow(&mut tcp).await;
    })
    .await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with(
        "fragments forever",
        &["exceeds max_frame_bytes (1048576 bytes)"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_flood_is_bounded() {
    let addr = serve(|mut tcp| async move {
        if !upgrade(&mut tcp).await {
            return;
        }
        // Many small valid events (never `connected`) as fast as possible until the client hangs
        // up, bounded in count and in time. The time bound exceeds RUN_BOUND on purpose: a wait
        // that a flood keeps alive past its timeout makes the run exceed RUN_BOUND.
        let started = Instant::now();
        let mut batch = Vec::new();
        let mut n = 0u64;
        while n < 100_000_000 && started.elapsed() < RUN_BOUND + Duration::from_secs(5) {
            batch.clear();
            for _ in 0..256 {
                let text = format!(r#"{{"type":"pong","nonce":{n}}}"#);
                batch.extend_from_slice(&frame(true, TEXT, text.as_bytes()));
                n += 1;
            }
            if tcp.write_all(&batch).await.is_err() {
                return;
            }
        }
        swallow(&mut tcp).await;
    })
    .await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with("flood", &["timed out"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_close_is_bounded() {
    let addr = upgrade_then_send(Vec::new()).await;
    let r = run("close-unanswered", addr).await;
    r.assert_failed_with("close never answered", &["did not answer the close"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_fin_without_close_frame_is_reported() {
    let addr = serve(|mut tcp| async move {
        if upgrade(&mut tcp).await {
            // FIN, no close frame; then waits for the client to go away.
            let _ = tcp.shutdown().await;
            swallow(&mut tcp).await;
        }
    })
    .await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with("TCP FIN", &["without a close frame"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_reset_is_reported() {
    let addr = serve(|mut tcp| async move {
        if upgrade(&mut tcp).await {
            // SO_LINGER 0: dropping the socket sends RST instead of FIN.
            let _ = tcp.set_zero_linger();
            drop(tcp);
        }
    })
    .await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with("TCP reset", &["reset"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_after_a_near_miss_reports_the_timeout() {
    // The `connected` event is the expect's nearest candidate; the flood then pushes it out of the
    // capped transcript before the timeout, which must still be reported (not a panic).
    let addr = serve(|mut tcp| async move {
        if !upgrade(&mut tcp).await {
            return;
        }
        let connected = r#"{"type":"connected","session_id":"s-other","user_id":"u","protocol":"wschat.v1","resumed":false,"history_length":0}"#;
        let mut bytes = frame(true, TEXT, connected.as_bytes());
        for n in 0..60_000 {
            bytes.extend_from_slice(&frame(true, TEXT, format!(r#"{{"type":"pong","nonce":{n}}}"#).as_bytes()));
        }
        if tcp.write_all(&bytes).await.is_ok() {
            swallow(&mut tcp).await;
        }
    })
    .await;
    let r = run("expect-session", addr).await;
    r.assert_failed_with("near miss then flood", &["timed out"]);
}

// ---------------------------------------------------------------------------------------------
// Close codes (RFC 6455 §7.4.1, §7.4.2)

/// A close frame's payload: the code, then the reason.
fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// A server that upgrades, waits for the client's first frame (the close of `close-unanswered`),
/// answers it with a close frame of `code`, then reads until the client goes away.
async fn answers_close_with(code: u16) -> SocketAddr {
    serve(move |mut tcp| async move {
        if !upgrade(&mut tcp).await {
            return;
        }
        let mut buf = [0u8; 256];
        if !matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {
            return;
        }
        if tcp
            .write_all(&frame(true, CLOSE, &close_payload(code, "bye")))
            .await
            .is_ok()
        {
            swallow(&mut tcp).await;
        }
    })
    .await
}

const CLOSE: u8 = 0x8;

impl Run {
    /// Exit 0: the scenario passed (a control case: the server did nothing wrong).
    fn assert_passed(&self, case: &str) {
        assert!(
            !self.stderr.contains("panicked"),
            "{case}: the harness panicked:\n{}",
            self.output
        );
        assert_eq!(self.code, Some(0), "{case}: exit code\n{}", self.output);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_codes_rfc_6455_forbids_fail_with_their_own_kind() {
    // 1005, 1006, 1015: reserved for reporting, never sent (§7.4.1); 1004 reserved; below 1000,
    // unassigned 1016-2999 and 5000+ are invalid (§7.4.2).
    for (code, section) in [
        (1005, "§7.4.1"),
        (1006, "§7.4.1"),
        (1015, "§7.4.1"),
        (1004, "§7.4.1"),
        (999, "§7.4.2"),
        (0, "§7.4.2"),
        (2000, "§7.4.2"),
        (5999, "§7.4.2"),
    ] {
        let addr = answers_close_with(code).await;
        let r = run("close-unanswered", addr).await;
        r.assert_failed_with(
            &format!("close answered with {code}"),
            &[
                "[close_code]",
                &format!("with code {code}: RFC 6455 {section}"),
            ],
        );
    }
    // Valid codes pass the same scenario: the check is not a blanket refusal.
    for code in [1000, 1001, 1011, 1014, 3000, 4999] {
        let addr = answers_close_with(code).await;
        run("close-unanswered", addr)
            .await
            .assert_passed(&format!("close answered with {code}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_substituted_close_code_is_never_reported_as_the_servers() {
    // The server closes first with 1006: the library answers 1002 "Protocol violation" and hands
    // that over as if the server had sent it, so `expect_close: {code: 1002}` used to pass.
    let addr = upgrade_then_send(frame(true, CLOSE, &close_payload(1006, "gone"))).await;
    let r = run("expect-close-1002", addr).await;
    r.assert_failed_with(
        "server closes with 1006",
        &["[close_code]", "with code 1006: RFC 6455 §7.4.1"],
    );
    assert!(
        !r.output.contains("Protocol violation"),
        "the library's substitute is reported as the server's:\n{}",
        r.output
    );
    // A server that really closes with 1002 passes it.
    let addr = upgrade_then_send(frame(true, CLOSE, &close_payload(1002, "bad frame"))).await;
    run("expect-close-1002", addr)
        .await
        .assert_passed("server closes with 1002");
}

// ---------------------------------------------------------------------------------------------
// Diagnoses: refusals and a TLS port named for what they likely are

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_seen_in_the_field_name_their_likely_cause() {
    let cases = [
        // uvicorn's answer when no WebSocket route matches, or the handler closed before accept().
        (
            "HTTP/1.1 403 Forbidden\r\nserver: uvicorn\r\ncontent-length: 0\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n\r\n",
            "hint: the server is uvicorn, and an empty-body 403 is what Starlette/FastAPI answers a WebSocket upgrade with when no WebSocket route matches the path, or when the handler closed the socket before calling accept()",
        ),
        (
            "HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            "hint: an empty-body 403 is what Starlette/FastAPI answers",
        ),
        // An auth middleware or dependency (FastAPI's HTTPException body).
        (
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 30\r\nconnection: close\r\n\r\n{\"detail\":\"Not authenticated\"}",
            "hint: a {\"detail\": ...} body is what a FastAPI/Starlette HTTPException sends: an auth dependency or middleware likely refused the upgrade",
        ),
        (
            "HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nNot Found",
            "hint: nothing answers WebSocket upgrades at this path",
        ),
        (
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 21\r\nconnection: close\r\n\r\nInternal Server Error",
            "hint: the server failed before accepting the WebSocket (an exception in the handler",
        ),
    ];
    for (response, hint) in cases {
        let addr = http_responder(response.to_owned()).await;
        let r = run("connect-expect", addr).await;
        r.assert_failed_with(&format!("refusal: {hint}"), &["[handshake]", hint]);
    }
    // A refusal in the protocol's error shape explains itself: no guess is added to it.
    let addr = http_responder(
        "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 58\r\nconnection: close\r\n\r\n{\"error\":{\"code\":\"SESSION_NOT_FOUND\",\"message\":\"no such\"}}".to_owned(),
    )
    .await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with("404 in the error shape", &["SESSION_NOT_FOUND"]);
    assert!(!r.output.contains("hint:"), "{}", r.output);
    // A 403 with a body of its own is the server's word: no guess is added to it.
    let addr = http_responder(
        "HTTP/1.1 403 Forbidden\r\ncontent-length: 13\r\nconnection: close\r\n\r\norigin denied"
            .to_owned(),
    )
    .await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with("403 with a body", &["origin denied"]);
    assert!(!r.output.contains("hint:"), "{}", r.output);
}

/// A certificate resolver with no certificate: enough for a real TLS stack to refuse what is not
/// TLS at all, with the alert it sends for that.
#[derive(Debug)]
struct NoCertificate;

impl rustls::server::ResolvesServerCert for NoCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_port_answering_ws_is_named_as_such() {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCertificate)),
    );
    let addr = serve(move |mut tcp| {
        let config = config.clone();
        async move {
            // rustls reads the plain-text upgrade request as TLS, fails, and queues its alert.
            let mut conn = rustls::ServerConnection::new(config).expect("server connection");
            let mut buf = vec![0u8; 4096];
            let Ok(n) = tcp.read(&mut buf).await else {
                return;
            };
            let _ = conn.read_tls(&mut &buf[..n]);
            assert!(conn.process_new_packets().is_err(), "HTTP is not TLS");
            let mut alert = Vec::new();
            while conn.wants_write() {
                if conn.write_tls(&mut alert).is_err() {
                    break;
                }
            }
            assert_eq!(
                alert.first(),
                Some(&0x15),
                "a TLS alert record: {alert:02x?}"
            );
            let _ = tcp.write_all(&alert).await;
            let _ = tcp.shutdown().await;
        }
    })
    .await;
    let r = run("connect-expect", addr).await;
    r.assert_failed_with(
        "TLS alert",
        &[
            "the server answered with a TLS alert record (15 03 0",
            "this port speaks TLS, use wss:// instead of ws://",
        ],
    );
    assert!(!r.output.contains("\\u{15}"), "{}", r.output);
}
