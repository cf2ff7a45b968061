//! Arbitrary bytes → UTF-8 → the rules file parser; a rules file that loads is then run over a
//! fixed, protocol-conforming transcript (one full turn, a ping/pong) to exercise the checker.
//!
//! Invariants: no panic, no hang; every error's `Display` starts with `rules.yaml:LINE:COL: `
//! (1-based) and carries that place in `loc()`; every violation message starts with `rule <id>: `.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use wschat_check::rules::parse_rules;
use wschat_check::runner::Direction;

const MAX_INPUT: usize = 64 * 1024;
const FILE: &str = "rules.yaml";

fn transcript() -> Vec<(Direction, Value)> {
    use Direction::{Received as R, Sent as S};
    vec![
        (
            R,
            json!({"type":"connected","session_id":"s1","user_id":"u1","protocol":"wschat.v1","resumed":false,"history_length":0}),
        ),
        (S, json!({"type":"ping","nonce":7})),
        (R, json!({"type":"pong","nonce":7})),
        (S, json!({"type":"message","content":"hi","client_id":"c1"})),
        (
            R,
            json!({"type":"turn_started","turn_id":"t1","client_id":"c1"}),
        ),
        (R, json!({"type":"thinking","turn_id":"t1","content":"hm"})),
        (
            R,
            json!({"type":"token","turn_id":"t1","index":0,"content":"Hel"}),
        ),
        (
            R,
            json!({"type":"token","turn_id":"t1","index":1,"content":"lo"}),
        ),
        (
            R,
            json!({"type":"final_answer","turn_id":"t1","content":"Hello","token_count":2}),
        ),
        (S, json!({"type":"cancel"})),
        (
            R,
            json!({"type":"error","code":"NO_ACTIVE_TURN","message":"nothing to cancel"}),
        ),
        (R, json!({"type":"closing","reason":"shutdown"})),
    ]
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_rules(Path::new(FILE), text) {
        Err(e) => {
            let shown = e.to_string();
            let loc = e
                .loc()
                .unwrap_or_else(|| panic!("a parse error without a location: {shown:?}"));
            assert!(
                loc.line >= 1 && loc.col >= 1,
                "location {loc} is not 1-based: {shown:?}"
            );
            assert!(
                shown.starts_with(&format!("{FILE}:{}:{}: ", loc.line, loc.col)),
                "error display does not start with file:line:col: {shown:?}"
            );
        }
        Ok(set) => {
            let ids: Vec<String> = set.rules().iter().map(|r| r.id.clone()).collect();
            for discriminator in ["/type", "type"] {
                let mut checker = set.checker(discriminator);
                let mut violations = Vec::new();
                for (seq, (dir, event)) in transcript().into_iter().enumerate() {
                    violations.extend(checker.observe(seq as u64 + 1, dir, &event));
                }
                violations.extend(checker.finish(true));
                for v in violations {
                    assert!(ids.contains(&v.rule), "violation of an unknown rule: {v:?}");
                    assert!(
                        v.message.starts_with(&format!("rule {}: ", v.rule)),
                        "violation message without its rule id: {:?}",
                        v.message
                    );
                }
            }
        }
    }
});
