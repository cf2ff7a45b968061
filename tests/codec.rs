//! Plain-text and binary frames as events (`codec:` in the suite config), through the real binary
//! against a small plain-text server on 127.0.0.1 (port 0): it answers each text line with the reply
//! streamed as several text frames and no end marker, the shape of a FastAPI handler doing
//! `await websocket.send_text(chunk)`. Its variants are the defects a plain-text pack must catch.
//! (The seed-shaped FastAPI server and its pack are proven in `tests/live_packs.rs`.)

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::{cmd, text};

/// Bound on one run of the binary; the scenarios' own waits are a few seconds.
const RUN_BOUND: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// "You said: <line>", one word per frame.
    Chunked,
    /// The whole reply in one frame.
    Single,
    /// A binary frame before the chunks.
    BinaryFirst,
}

/// Starts the server on its own thread and runtime (the binary under test runs meanwhile).
fn serve(mode: Mode) -> SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        let Message::Text(line) = msg else {
                            continue;
                        };
                        if mode == Mode::BinaryFirst {
                            let _ = ws.send(Message::binary(vec![1u8, 2, 3])).await;
                        }
                        let reply = format!("You said: {}", line.as_str());
                        if mode == Mode::Single {
                            let _ = ws.send(Message::text(reply)).await;
                            continue;
                        }
                        let words: Vec<&str> = reply.split(' ').collect();
                        for (i, w) in words.iter().enumerate() {
                            let chunk = if i + 1 < words.len() {
                                format!("{w} ")
                            } else {
                                (*w).to_owned()
                            };
                            let _ = ws.send(Message::text(chunk)).await;
                        }
                    }
                });
            }
        });
    });
    addr
}

/// Runs the binary with these arguments, bounded by `RUN_BOUND`: (exit code, stdout + stderr).
fn bin<I, S>(args: I) -> (i32, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = cmd()
        .args(args)
        .args(["--color", "never"])
        .timeout(RUN_BOUND)
        .output()
        .unwrap();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    (out.status.code().unwrap_or(-1), all)
}

/// `run` of the plain-text suite against `addr`.
fn run(addr: SocketAddr) -> (i32, String) {
    let target = format!("ws://{addr}");
    bin(["run", "fixtures/suites/plain-text", "--target", &target])
}

#[test]
fn a_streamed_plain_text_reply_passes() {
    let addr = serve(Mode::Chunked);
    let (code, out) = run(addr);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PASS  streamed-reply"), "{out}");
}

#[test]
fn a_reply_sent_as_one_frame_is_caught() {
    let addr = serve(Mode::Single);
    let (code, out) = run(addr);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("count of '$text' is 1"), "{out}");
}

#[test]
fn binary_frames_are_events_under_the_text_codec() {
    // The binary frame is a `$binary` event: not a failure, and not text (the first `$text`
    // expectation skips it; the collection counts only text).
    let addr = serve(Mode::BinaryFirst);
    let (code, out) = run(addr);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn the_json_codec_names_the_codec_setting_for_plain_text() {
    // The same suite read as JSON (a suite without `codec:`) fails on the first chunk, and says
    // which setting would read it.
    let dir = std::env::temp_dir().join(format!("wschat-codec-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = support::root().join("fixtures/suites/plain-text");
    let config = std::fs::read_to_string(src.join("wschat-suite.yaml"))
        .unwrap()
        .replace("codec: text\n", "")
        .replace("timing:\n  request: [$text]\n  chunk: [$text]\n", "");
    std::fs::write(dir.join("wschat-suite.yaml"), config).unwrap();
    std::fs::copy(
        src.join("streamed-reply.yaml"),
        dir.join("streamed-reply.yaml"),
    )
    .unwrap();
    let addr = serve(Mode::Chunked);
    let target = format!("ws://{addr}");
    let (code, all) = bin([
        "run".as_ref(),
        dir.as_os_str(),
        "--target".as_ref(),
        target.as_ref(),
    ]);
    assert_eq!(code, 1, "{all}");
    assert!(
        all.contains("received a text frame that is not JSON"),
        "{all}"
    );
    assert!(all.contains("codec: text"), "{all}");
}

#[test]
fn plain_text_recordings_round_trip_through_check_and_replay() {
    let addr = serve(Mode::Chunked);
    let dir = std::env::temp_dir().join(format!("wschat-codec-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let target = format!("ws://{addr}");
    let (code, all) = bin([
        "record".as_ref(),
        "fixtures/suites/plain-text".as_ref(),
        "--target".as_ref(),
        std::ffi::OsStr::new(&target),
        "--out".as_ref(),
        dir.as_os_str(),
    ]);
    assert_eq!(code, 0, "{all}");
    let rec = dir.join("streamed-reply.jsonl");
    let body = std::fs::read_to_string(&rec).unwrap();
    // The chunks are recorded as they came off the wire.
    assert!(body.contains(r#""text":"You "#), "{body}");
    assert!(body.contains(r#""text":"again""#), "{body}");
    let (code, all) = bin([
        "check".as_ref(),
        rec.as_os_str(),
        "--suite".as_ref(),
        "fixtures/suites/plain-text".as_ref(),
    ]);
    assert_eq!(code, 0, "{all}");
    let (code, all) = bin([
        "replay".as_ref(),
        dir.as_os_str(),
        "--run".as_ref(),
        "fixtures/suites/plain-text".as_ref(),
    ]);
    assert_eq!(code, 0, "{all}");
}
