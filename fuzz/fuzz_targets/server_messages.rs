//! Arbitrary bytes → UTF-8 → the reference server's client-frame parser
//! (`reference_server::protocol::parse_client_message`, the first thing it does with a text frame).
//!
//! Invariants: no panic, no hang; a refusal carries one of the three codes of PROTOCOL.md section 7
//! for bad frames, chosen in the documented order (not JSON or not an object → `INVALID_JSON`; no
//! known string `type` → `UNKNOWN_TYPE`; otherwise `INVALID_MESSAGE`) with a non-empty message; an
//! accepted frame, written back as JSON, is exactly the input value (the parser is strict: nothing
//! is dropped, renamed or defaulted) and parses again to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reference_server::protocol::{parse_client_message, ClientMessage};
use serde_json::{json, Map, Value};

/// Larger than any frame the server accepts in its default configuration is not needed to reach
/// every branch of the parser.
const MAX_INPUT: usize = 64 * 1024;
const KNOWN_TYPES: &[&str] = &[
    "auth",
    "message",
    "cancel",
    "confirmation_reply",
    "human_reply",
    "ping",
];

fn encode(m: &ClientMessage) -> Value {
    fn put(o: &mut Map<String, Value>, k: &str, v: Option<Value>) {
        if let Some(v) = v {
            o.insert(k.to_owned(), v);
        }
    }
    let mut o = Map::new();
    match m {
        ClientMessage::Auth { token } => {
            o.insert("type".into(), json!("auth"));
            o.insert("token".into(), json!(token));
        }
        ClientMessage::Message { content, client_id } => {
            o.insert("type".into(), json!("message"));
            o.insert("content".into(), json!(content));
            put(&mut o, "client_id", client_id.as_ref().map(|c| json!(c)));
        }
        ClientMessage::Cancel { turn_id } => {
            o.insert("type".into(), json!("cancel"));
            put(&mut o, "turn_id", turn_id.as_ref().map(|t| json!(t)));
        }
        ClientMessage::ConfirmationReply {
            request_id,
            approved,
        } => {
            o.insert("type".into(), json!("confirmation_reply"));
            o.insert("request_id".into(), json!(request_id));
            o.insert("approved".into(), json!(approved));
        }
        ClientMessage::HumanReply {
            request_id,
            content,
        } => {
            o.insert("type".into(), json!("human_reply"));
            o.insert("request_id".into(), json!(request_id));
            o.insert("content".into(), json!(content));
        }
        ClientMessage::Ping { nonce } => {
            o.insert("type".into(), json!("ping"));
            put(&mut o, "nonce", nonce.clone());
        }
    }
    Value::Object(o)
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_client_message(text);
    // What the code must be, decided independently of the parser.
    let expected_code = match serde_json::from_str::<Value>(text) {
        Err(_) => Some("INVALID_JSON"),
        Ok(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some(t) if KNOWN_TYPES.contains(&t) => None,
            _ => Some("UNKNOWN_TYPE"),
        },
        Ok(_) => Some("INVALID_JSON"),
    };
    match parsed {
        Err(e) => {
            let want = expected_code.unwrap_or("INVALID_MESSAGE");
            assert_eq!(e.code, want, "wrong code for {text:?}: {e}");
            assert!(!e.message.trim().is_empty(), "empty message for {text:?}");
            assert_eq!(e.to_string(), format!("{}: {}", e.code, e.message));
        }
        Ok(m) => {
            assert_eq!(
                expected_code, None,
                "accepted a frame that should be refused: {text:?} → {m:?}"
            );
            let input: Value = serde_json::from_str(text).expect("the parser accepted it as JSON");
            let back = encode(&m);
            assert_eq!(
                back, input,
                "the parsed message {m:?} is not the input {text:?}"
            );
            let again = parse_client_message(&back.to_string())
                .unwrap_or_else(|e| panic!("re-encoded {back} is refused: {e}"));
            assert_eq!(again, m, "re-parsing {back} changed the message");
        }
    }
});
