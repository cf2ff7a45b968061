//! Differential: the reference server's client-frame parser against the client JSON Schemas in
//! `schemas/client/` (as compiled into the harness). Both encode PROTOCOL.md section 4, so for every
//! text frame the server accepts exactly when the schema of its `type` accepts. A refusal also
//! becomes the connection-level `error` event the server sends; that event must pass the server-side
//! `error` schema.
//!
//! Invariants: no panic, no hang; parser and schemas agree on every input; the `error` event for a
//! refused frame is schema-valid.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use reference_server::protocol::{error_event, parse_client_message};
use serde_json::Value;
use wschat_check::schema::{SchemaRegistry, Side};

const MAX_INPUT: usize = 64 * 1024;

static SCHEMAS: LazyLock<SchemaRegistry> = LazyLock::new(|| {
    SchemaRegistry::embedded("/type")
        .unwrap_or_else(|e| panic!("the built-in schemas do not compile: {e}"))
});

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_client_message(text);
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        let schema = SCHEMAS.check(Side::Client, &value);
        match (&parsed, &schema) {
            (Ok(_), Ok(())) | (Err(_), Err(_)) => {}
            (Ok(m), Err(f)) => panic!(
                "server accepts {text:?} as {m:?}, the schema refuses it: {}",
                f.message
            ),
            (Err(e), Ok(())) => panic!("the schema accepts {text:?}, the server refuses it: {e}"),
        }
    }
    if let Err(e) = parsed {
        let event = error_event(e.code, &e.message);
        if let Err(f) = SCHEMAS.check(Side::Server, &event) {
            panic!(
                "the error event {event} for {text:?} breaks the schema: {}",
                f.message
            );
        }
    }
});
