//! Fault injection: named, deliberate protocol violations, for proving that a conformance suite
//! catches broken servers (`docs/FAULTS.md`). Off by default; enabled with `Config.fault` (the
//! binary's `--fault NAME`). Never enable one in production: each fault breaks the protocol on purpose.
//!
//! The server reads the configured name once per connection into an `Option<Fault>`; every hook is a
//! single `Option` check, so a server without a fault pays nothing else.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::model::{Action, Script};

/// Tokens a turn sends before `stall-mid-stream` stops and `tcp-reset` drops the connection.
pub const TOKENS_BEFORE_BREAK: u64 = 2;
/// The token pace `slow-drip` forces: far below any `expect` timeout, far above any timing bound.
pub const SLOW_DRIP_PACE: Duration = Duration::from_millis(300);
/// How long `cancel-late` waits before acting on a `cancel`.
pub const CANCEL_LATE_DELAY: Duration = Duration::from_millis(1500);

/// One deliberate violation of `docs/PROTOCOL.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    NoConnected,
    WrongFirstEvent,
    MissingPong,
    PongWrongNonce,
    TokensMismatch,
    SecondTerminal,
    TokenAfterTerminal,
    ToolResultWithoutCall,
    DuplicateToolResult,
    MissingToolResult,
    ConfirmationIgnored,
    GuardedToolAfterDeny,
    TeamOutOfOrder,
    CancelIgnored,
    CancelLate,
    SchemaMissingField,
    SchemaWrongType,
    SchemaExtraField,
    UnknownEventType,
    AuthAcceptsBadToken,
    AcceptsOtherUsersSession,
    BadJsonCloses,
    WrongCloseCode,
    StallMidStream,
    SlowDrip,
    TcpReset,
}

/// A fault name the server does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault '{name}' (known: {})", Fault::names().join(", "))]
pub struct UnknownFault {
    pub name: String,
}

impl Fault {
    /// Every fault, in the order of `docs/FAULTS.md`.
    pub const ALL: [Fault; 26] = [
        Fault::NoConnected,
        Fault::WrongFirstEvent,
        Fault::MissingPong,
        Fault::PongWrongNonce,
        Fault::TokensMismatch,
        Fault::SecondTerminal,
        Fault::TokenAfterTerminal,
        Fault::ToolResultWithoutCall,
        Fault::DuplicateToolResult,
        Fault::MissingToolResult,
        Fault::ConfirmationIgnored,
        Fault::GuardedToolAfterDeny,
        Fault::TeamOutOfOrder,
        Fault::CancelIgnored,
        Fault::CancelLate,
        Fault::SchemaMissingField,
        Fault::SchemaWrongType,
        Fault::SchemaExtraField,
        Fault::UnknownEventType,
        Fault::AuthAcceptsBadToken,
        Fault::AcceptsOtherUsersSession,
        Fault::BadJsonCloses,
        Fault::WrongCloseCode,
        Fault::StallMidStream,
        Fault::SlowDrip,
        Fault::TcpReset,
    ];

    /// The kebab-case name used by `--fault` and `Config.fault`.
    pub const fn name(self) -> &'static str {
        match self {
            Fault::NoConnected => "no-connected",
            Fault::WrongFirstEvent => "wrong-first-event",
            Fault::MissingPong => "missing-pong",
            Fault::PongWrongNonce => "pong-wrong-nonce",
            Fault::TokensMismatch => "tokens-mismatch",
            Fault::SecondTerminal => "second-terminal",
            Fault::TokenAfterTerminal => "token-after-terminal",
            Fault::ToolResultWithoutCall => "tool-result-without-call",
            Fault::DuplicateToolResult => "duplicate-tool-result",
            Fault::MissingToolResult => "missing-tool-result",
            Fault::ConfirmationIgnored => "confirmation-ignored",
            Fault::GuardedToolAfterDeny => "guarded-tool-after-deny",
            Fault::TeamOutOfOrder => "team-out-of-order",
            Fault::CancelIgnored => "cancel-ignored",
            Fault::CancelLate => "cancel-late",
            Fault::SchemaMissingField => "schema-missing-field",
            Fault::SchemaWrongType => "schema-wrong-type",
            Fault::SchemaExtraField => "schema-extra-field",
            Fault::UnknownEventType => "unknown-event-type",
            Fault::AuthAcceptsBadToken => "auth-accepts-bad-token",
            Fault::AcceptsOtherUsersSession => "accepts-other-users-session",
            Fault::BadJsonCloses => "bad-json-closes",
            Fault::WrongCloseCode => "wrong-close-code",
            Fault::StallMidStream => "stall-mid-stream",
            Fault::SlowDrip => "slow-drip",
            Fault::TcpReset => "tcp-reset",
        }
    }

    /// What the server does wrong, in one line.
    pub const fn description(self) -> &'static str {
        match self {
            Fault::NoConnected => "never sends `connected` (handshake or first-message authentication)",
            Fault::WrongFirstEvent => "sends a `broadcast` welcome banner before `connected`",
            Fault::MissingPong => "ignores application `ping`",
            Fault::PongWrongNonce => "echoes the `ping` nonce double-encoded (7 becomes \"7\", \"a\" becomes \"\\\"a\\\"\")",
            Fault::TokensMismatch => "loses the last token of every answer; `final_answer.content` still has it",
            Fault::SecondTerminal => "sends every terminal event of a turn twice",
            Fault::TokenAfterTerminal => "sends one more `token` after `final_answer`",
            Fault::ToolResultWithoutCall => "sends `tool_result` without the `tool_call` before it",
            Fault::DuplicateToolResult => "sends every `tool_result` twice",
            Fault::MissingToolResult => "never sends `tool_result`",
            Fault::ConfirmationIgnored => "sends `confirmation_request`, then finishes the turn without waiting for the reply",
            Fault::GuardedToolAfterDeny => "runs the guarded tool (`tool_call`, `tool_result`) although the client denied it",
            Fault::TeamOutOfOrder => "sends `team_dissolved` before `team_synthesis`",
            Fault::CancelIgnored => "ignores `cancel` for a running turn: the stream goes on",
            Fault::CancelLate => "acts on `cancel` only after 1.5 s (the stream goes on meanwhile)",
            Fault::SchemaMissingField => "`thinking` lacks its required `content`",
            Fault::SchemaWrongType => "`thinking.content` is an array of strings instead of a string",
            Fault::SchemaExtraField => "`thinking` carries an undeclared field `model`",
            Fault::UnknownEventType => "sends an undeclared `usage` event in every turn",
            Fault::AuthAcceptsBadToken => "accepts any token, valid or not, as the session owner's (fails open)",
            Fault::AcceptsOtherUsersSession => "lets any authenticated user into any session",
            Fault::BadJsonCloses => "closes the connection (1003) on a frame that is not JSON instead of sending `error INVALID_JSON`",
            Fault::WrongCloseCode => "closes with 1008 where the protocol names a 4xxx code",
            Fault::StallMidStream => "stops sending after 2 tokens of every answer; the socket stays open",
            Fault::SlowDrip => "sends tokens every 300 ms, whatever the pace",
            Fault::TcpReset => "drops the TCP connection (reset, no close frame) after 2 tokens",
        }
    }

    pub fn names() -> Vec<&'static str> {
        Fault::ALL.iter().map(|f| f.name()).collect()
    }

    /// `config.fault` parsed; `None` for no fault or an unknown name (`Config::validate` refuses
    /// unknown names before the server starts, so the latter does not happen in a running server).
    pub fn from_config(fault: &Option<String>) -> Option<Fault> {
        fault.as_deref().and_then(|n| n.parse().ok())
    }

    /// Applies the faults that are a change of the scripted events (tools, team, schema).
    pub fn rewrite_script(self, script: &mut Script) {
        let is = |a: &Action, ty: &str| matches!(a, Action::Emit(v) if v["type"] == ty);
        match self {
            Fault::ToolResultWithoutCall => {
                script.actions.retain(|a| !is(a, "tool_call"));
                for_on_approve(script, |evs| evs.retain(|v| v["type"] != "tool_call"));
            }
            Fault::MissingToolResult => {
                script.actions.retain(|a| !is(a, "tool_result"));
                for_on_approve(script, |evs| evs.retain(|v| v["type"] != "tool_result"));
            }
            Fault::DuplicateToolResult => {
                script.actions = std::mem::take(&mut script.actions)
                    .into_iter()
                    .flat_map(|a| {
                        let n = if is(&a, "tool_result") { 2 } else { 1 };
                        std::iter::repeat_n(a, n)
                    })
                    .collect();
                for_on_approve(script, |evs| {
                    *evs = std::mem::take(evs)
                        .into_iter()
                        .flat_map(|v| {
                            let n = if v["type"] == "tool_result" { 2 } else { 1 };
                            std::iter::repeat_n(v, n)
                        })
                        .collect();
                });
            }
            Fault::TeamOutOfOrder => {
                let synth = script.actions.iter().position(|a| is(a, "team_synthesis"));
                let dissolved = script.actions.iter().position(|a| is(a, "team_dissolved"));
                if let (Some(s), Some(d)) = (synth, dissolved) {
                    script.actions.swap(s, d);
                }
            }
            Fault::SchemaMissingField | Fault::SchemaWrongType | Fault::SchemaExtraField => {
                for a in &mut script.actions {
                    if let Action::Emit(v) = a {
                        if v["type"] == "thinking" {
                            schema_break(self, v);
                        }
                    }
                }
            }
            Fault::UnknownEventType => {
                if let Some(i) = script.actions.iter().position(|a| is(a, "thinking")) {
                    script.actions.insert(
                        i + 1,
                        Action::Emit(
                            json!({"type": "usage", "prompt_tokens": 3, "completion_tokens": 7}),
                        ),
                    );
                }
            }
            _ => {}
        }
    }
}

fn for_on_approve(script: &mut Script, mut f: impl FnMut(&mut Vec<Value>)) {
    for a in &mut script.actions {
        if let Action::Confirm { on_approve, .. } = a {
            f(on_approve);
        }
    }
}

fn schema_break(fault: Fault, thinking: &mut Value) {
    let Some(o) = thinking.as_object_mut() else {
        return;
    };
    match fault {
        Fault::SchemaMissingField => {
            o.remove("content");
        }
        Fault::SchemaWrongType => {
            let content = o.remove("content").unwrap_or(Value::Null);
            o.insert("content".into(), json!([content]));
        }
        Fault::SchemaExtraField => {
            o.insert("model".into(), json!("scripted-v0"));
        }
        _ => {}
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Fault, UnknownFault> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFault { name: s.to_owned() })
    }
}

/// `7` → `"7"`, `"a"` → `"\"a\""`: the nonce's JSON text sent back as a string (`pong-wrong-nonce`).
pub fn double_encoded(nonce: Option<Value>) -> Option<Value> {
    nonce.map(|n| Value::String(n.to_string()))
}

/// The close code a faulty server sends instead of `code` (`wrong-close-code`): the generic 1008
/// policy violation in place of the protocol's specific 4xxx codes.
pub fn close_code(fault: Option<Fault>, code: u16) -> u16 {
    match fault {
        Some(Fault::WrongCloseCode) if (4000..5000).contains(&code) => 1008,
        _ => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::script;

    fn types(s: &Script) -> Vec<String> {
        s.actions
            .iter()
            .map(|a| match a {
                Action::Emit(v) => v["type"].as_str().unwrap_or("?").to_owned(),
                Action::Confirm { on_approve, .. } => format!(
                    "CONFIRM[{}]",
                    on_approve
                        .iter()
                        .map(|v| v["type"].as_str().unwrap_or("?"))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Action::AskHuman { .. } => "ASK".into(),
                Action::Fail { .. } => "FAIL".into(),
                Action::Answer(_) => "ANSWER".into(),
            })
            .collect()
    }

    fn rewritten(f: Fault, content: &str) -> Vec<String> {
        let mut s = script(content, &[]);
        f.rewrite_script(&mut s);
        types(&s)
    }

    #[test]
    fn names_round_trip_and_are_unique_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for f in Fault::ALL {
            assert_eq!(f.name().parse::<Fault>(), Ok(f));
            assert!(seen.insert(f.name()), "duplicate name {}", f.name());
            assert!(f.name().chars().all(|c| c.is_ascii_lowercase() || c == '-'));
            assert!(!f.description().is_empty());
        }
        let e = "nope".parse::<Fault>().unwrap_err();
        assert!(e.to_string().contains("unknown fault 'nope'"));
        assert!(e.to_string().contains("tcp-reset"));
        assert_eq!(Fault::from_config(&None), None);
        assert_eq!(
            Fault::from_config(&Some("slow-drip".into())),
            Some(Fault::SlowDrip)
        );
    }

    #[test]
    fn tool_faults_change_plain_and_guarded_tools() {
        assert_eq!(
            rewritten(Fault::ToolResultWithoutCall, "x #tool #confirm"),
            [
                "thinking",
                "step",
                "tool_result",
                "step",
                "CONFIRM[tool_result]",
                "ANSWER"
            ]
        );
        assert_eq!(
            rewritten(Fault::MissingToolResult, "x #tool #confirm"),
            [
                "thinking",
                "step",
                "tool_call",
                "step",
                "CONFIRM[tool_call]",
                "ANSWER"
            ]
        );
        assert_eq!(
            rewritten(Fault::DuplicateToolResult, "x #tool #confirm"),
            [
                "thinking",
                "step",
                "tool_call",
                "tool_result",
                "tool_result",
                "step",
                "CONFIRM[tool_call,tool_result,tool_result]",
                "ANSWER"
            ]
        );
    }

    #[test]
    fn team_fault_dissolves_before_synthesis() {
        let t = rewritten(Fault::TeamOutOfOrder, "#team x");
        let d = t.iter().position(|t| t == "team_dissolved").unwrap();
        let s = t.iter().position(|t| t == "team_synthesis").unwrap();
        assert!(d < s);
    }

    #[test]
    fn schema_faults_break_thinking_only() {
        let thinking = |f: Fault| {
            let mut s = script("hi", &[]);
            f.rewrite_script(&mut s);
            match &s.actions[0] {
                Action::Emit(v) => v.clone(),
                other => panic!("{other:?}"),
            }
        };
        assert!(thinking(Fault::SchemaMissingField).get("content").is_none());
        assert!(thinking(Fault::SchemaWrongType)["content"].is_array());
        assert_eq!(thinking(Fault::SchemaExtraField)["model"], "scripted-v0");
        assert_eq!(
            rewritten(Fault::UnknownEventType, "hi"),
            ["thinking", "usage", "ANSWER"]
        );
        // Faults that are not script changes leave the script alone.
        assert_eq!(
            rewritten(Fault::SlowDrip, "hi #tool"),
            types(&script("hi #tool", &[]))
        );
    }

    #[test]
    fn nonce_and_close_code_helpers() {
        assert_eq!(double_encoded(Some(json!(7))), Some(json!("7")));
        assert_eq!(double_encoded(Some(json!("a"))), Some(json!("\"a\"")));
        assert_eq!(double_encoded(None), None);
        assert_eq!(close_code(Some(Fault::WrongCloseCode), 4401), 1008);
        assert_eq!(close_code(Some(Fault::WrongCloseCode), 1001), 1001);
        assert_eq!(close_code(None, 4401), 4401);
        assert_eq!(close_code(Some(Fault::SlowDrip), 4401), 4401);
    }
}
