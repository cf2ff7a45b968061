//! Client messages (section 4), parsed strictly, and the connection-level events of section 5.

use serde_json::{json, Map, Value};

pub const PROTOCOL: &str = "wschat.v1";

#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Auth {
        token: String,
    },
    Message {
        content: String,
        client_id: Option<String>,
    },
    Cancel {
        turn_id: Option<String>,
    },
    ConfirmationReply {
        request_id: String,
        approved: bool,
    },
    HumanReply {
        request_id: String,
        content: String,
    },
    Ping {
        nonce: Option<Value>,
    },
}

/// A refused client frame: the code of section 7 and a message naming the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ParseError {
    pub code: &'static str,
    pub message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> ParseError {
    ParseError {
        code,
        message: message.into(),
    }
}

/// Field checks for one message type: which keys exist and what they hold.
struct Fields<'a> {
    ty: &'static str,
    obj: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn only(&self, allowed: &[&str]) -> Result<(), ParseError> {
        if let Some(extra) = self
            .obj
            .keys()
            .find(|k| *k != "type" && !allowed.contains(&k.as_str()))
        {
            return Err(err(
                "INVALID_MESSAGE",
                format!(
                    "'{}' has no field '{extra}' (allowed: {})",
                    self.ty,
                    allowed.join(", ")
                ),
            ));
        }
        Ok(())
    }

    fn opt_str(&self, name: &str) -> Result<Option<String>, ParseError> {
        match self.obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(err(
                "INVALID_MESSAGE",
                format!("'{}.{name}' must be a string, got {}", self.ty, kind(other)),
            )),
        }
    }

    fn str(&self, name: &str) -> Result<String, ParseError> {
        self.opt_str(name)?.ok_or_else(|| {
            err(
                "INVALID_MESSAGE",
                format!("'{}' needs the string field '{name}'", self.ty),
            )
        })
    }

    fn bool(&self, name: &str) -> Result<bool, ParseError> {
        match self.obj.get(name) {
            Some(Value::Bool(b)) => Ok(*b),
            None => Err(err(
                "INVALID_MESSAGE",
                format!("'{}' needs the boolean field '{name}'", self.ty),
            )),
            Some(other) => Err(err(
                "INVALID_MESSAGE",
                format!(
                    "'{}.{name}' must be a boolean, got {}",
                    self.ty,
                    kind(other)
                ),
            )),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one text frame. Order of checks: JSON object, `type`, then the fields of that type.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ParseError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| err("INVALID_JSON", format!("not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(err(
            "INVALID_JSON",
            format!("expected a JSON object, got {}", kind(&value)),
        ));
    };
    let ty = match obj.get("type") {
        None => return Err(err("UNKNOWN_TYPE", "the field 'type' is missing")),
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            return Err(err(
                "UNKNOWN_TYPE",
                format!("'type' must be a string, got {}", kind(other)),
            ))
        }
    };
    let ty: &'static str = match ty {
        "auth" => "auth",
        "message" => "message",
        "cancel" => "cancel",
        "confirmation_reply" => "confirmation_reply",
        "human_reply" => "human_reply",
        "ping" => "ping",
        other => {
            return Err(err(
                "UNKNOWN_TYPE",
                format!("unknown type '{other}' (known: auth, message, cancel, confirmation_reply, human_reply, ping)"),
            ))
        }
    };
    let f = Fields { ty, obj: &obj };
    match ty {
        "auth" => {
            f.only(&["token"])?;
            Ok(ClientMessage::Auth {
                token: f.str("token")?,
            })
        }
        "message" => {
            f.only(&["content", "client_id"])?;
            let content = f.str("content")?;
            let client_id = f.opt_str("client_id")?;
            if client_id.as_ref().is_some_and(|c| c.chars().count() > 128) {
                return Err(err(
                    "INVALID_MESSAGE",
                    "'message.client_id' must be at most 128 characters",
                ));
            }
            Ok(ClientMessage::Message { content, client_id })
        }
        "cancel" => {
            f.only(&["turn_id"])?;
            Ok(ClientMessage::Cancel {
                turn_id: f.opt_str("turn_id")?,
            })
        }
        "confirmation_reply" => {
            f.only(&["request_id", "approved"])?;
            Ok(ClientMessage::ConfirmationReply {
                request_id: f.str("request_id")?,
                approved: f.bool("approved")?,
            })
        }
        "human_reply" => {
            f.only(&["request_id", "content"])?;
            Ok(ClientMessage::HumanReply {
                request_id: f.str("request_id")?,
                content: f.str("content")?,
            })
        }
        "ping" => {
            f.only(&["nonce"])?;
            match obj.get("nonce") {
                None => Ok(ClientMessage::Ping { nonce: None }),
                Some(n @ Value::String(_)) => Ok(ClientMessage::Ping {
                    nonce: Some(n.clone()),
                }),
                // JSON Schema's `integer` is any number without a fractional part (`1.0`, `1e2`,
                // 2^64 included), and the schema is the protocol's truth: accept exactly that.
                Some(n @ Value::Number(num))
                    if num.is_i64()
                        || num.is_u64()
                        || num
                            .as_f64()
                            .is_some_and(|f| f.is_finite() && f.fract() == 0.0) =>
                {
                    Ok(ClientMessage::Ping {
                        nonce: Some(n.clone()),
                    })
                }
                Some(other) => Err(err(
                    "INVALID_MESSAGE",
                    format!(
                        "'ping.nonce' must be a string or an integer, got {}",
                        kind(other)
                    ),
                )),
            }
        }
        _ => unreachable!("type was matched above"),
    }
}

/// A connection-level `error` (no `turn_id`).
pub fn error_event(code: &str, message: &str) -> Value {
    json!({"type": "error", "code": code, "message": message})
}

pub fn closing_event(reason: &str) -> Value {
    json!({"type": "closing", "reason": reason})
}

/// The `pong` for a `ping` parsed from `frame`: its nonce is the ping's nonce exactly as the
/// client wrote it (section 5: the same JSON value). Re-serializing the parsed number would not
/// do: `18446744073709551616` is beyond 64 bits, parses as a float and would come back as
/// `1.8446744073709552e19`.
pub fn pong_text(frame: &str, nonce: Option<&Value>) -> String {
    #[derive(serde::Deserialize)]
    struct RawPing<'a> {
        #[serde(borrow)]
        nonce: Option<&'a serde_json::value::RawValue>,
    }
    match serde_json::from_str::<RawPing<'_>>(frame) {
        Ok(RawPing { nonce: Some(raw) }) if nonce.is_some() => {
            // Keys in the order serde_json writes every other event's (sorted).
            format!(r#"{{"nonce":{},"type":"pong"}}"#, raw.get())
        }
        // No nonce, or a frame the struct cannot read (a duplicate key: the parser kept the last
        // value, and so does this).
        _ => pong_event(nonce.cloned()).to_string(),
    }
}

pub fn pong_event(nonce: Option<Value>) -> Value {
    match nonce {
        Some(n) => json!({"type": "pong", "nonce": n}),
        None => json!({"type": "pong"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> &'static str {
        parse_client_message(text).unwrap_err().code
    }

    #[test]
    fn valid_messages_parse() {
        assert_eq!(
            parse_client_message(r#"{"type":"message","content":"hi","client_id":"c1"}"#).unwrap(),
            ClientMessage::Message {
                content: "hi".into(),
                client_id: Some("c1".into())
            }
        );
        assert_eq!(
            parse_client_message(r#"{"type":"cancel"}"#).unwrap(),
            ClientMessage::Cancel { turn_id: None }
        );
        assert_eq!(
            parse_client_message(
                r#"{"type":"confirmation_reply","request_id":"req-1","approved":false}"#
            )
            .unwrap(),
            ClientMessage::ConfirmationReply {
                request_id: "req-1".into(),
                approved: false
            }
        );
        assert_eq!(
            parse_client_message(r#"{"type":"ping","nonce":7}"#).unwrap(),
            ClientMessage::Ping {
                nonce: Some(json!(7))
            }
        );
        assert_eq!(
            parse_client_message(r#"{"type":"ping"}"#).unwrap(),
            ClientMessage::Ping { nonce: None }
        );
        assert_eq!(
            parse_client_message(r#"{"type":"auth","token":"x"}"#).unwrap(),
            ClientMessage::Auth { token: "x".into() }
        );
    }

    #[test]
    fn invalid_frames_get_the_right_code() {
        assert_eq!(code("{nope"), "INVALID_JSON");
        assert_eq!(code("[1,2]"), "INVALID_JSON");
        assert_eq!(code("\"str\""), "INVALID_JSON");
        assert_eq!(code("{}"), "UNKNOWN_TYPE");
        assert_eq!(code(r#"{"type":5}"#), "UNKNOWN_TYPE");
        assert_eq!(code(r#"{"type":"dance"}"#), "UNKNOWN_TYPE");
        assert_eq!(code(r#"{"type":"message"}"#), "INVALID_MESSAGE");
        assert_eq!(code(r#"{"type":"message","content":3}"#), "INVALID_MESSAGE");
        assert_eq!(
            code(r#"{"type":"message","content":"x","extra":1}"#),
            "INVALID_MESSAGE"
        );
        assert_eq!(
            code(r#"{"type":"message","content":"x","client_id":null}"#),
            "INVALID_MESSAGE"
        );
        let long = "c".repeat(129);
        assert_eq!(
            code(&format!(
                r#"{{"type":"message","content":"x","client_id":"{long}"}}"#
            )),
            "INVALID_MESSAGE"
        );
        assert_eq!(
            code(r#"{"type":"confirmation_reply","request_id":"r","approved":"yes"}"#),
            "INVALID_MESSAGE"
        );
        assert_eq!(
            code(r#"{"type":"human_reply","request_id":"r"}"#),
            "INVALID_MESSAGE"
        );
        assert_eq!(code(r#"{"type":"ping","nonce":1.5}"#), "INVALID_MESSAGE");
        for whole in ["1.0", "1e2", "18446744073709551616"] {
            let frame = format!(r#"{{"type":"ping","nonce":{whole}}}"#);
            assert!(
                matches!(
                    parse_client_message(&frame),
                    Ok(ClientMessage::Ping { nonce: Some(_) })
                ),
                "{frame} is an integer for the schema, so the server must accept it"
            );
        }
        assert_eq!(code(r#"{"type":"ping","nonce":null}"#), "INVALID_MESSAGE");
        assert_eq!(code(r#"{"type":"auth"}"#), "INVALID_MESSAGE");
    }

    #[test]
    fn pong_echoes_the_nonce_text_exactly() {
        for nonce in [
            "18446744073709551616",
            "7",
            "7.0",
            "1e2",
            "-0",
            "\"a\\u0041\"",
            "123456789012345678901234567890",
        ] {
            let frame = format!(r#"{{"type":"ping","nonce":{nonce}}}"#);
            let Ok(ClientMessage::Ping { nonce: parsed }) = parse_client_message(&frame) else {
                panic!("{frame} is a ping");
            };
            let pong = pong_text(&frame, parsed.as_ref());
            assert_eq!(pong, format!(r#"{{"nonce":{nonce},"type":"pong"}}"#));
            let v: Value = serde_json::from_str(&pong).unwrap();
            assert_eq!(v["type"], "pong");
        }
        assert_eq!(pong_text(r#"{"type":"ping"}"#, None), r#"{"type":"pong"}"#);
        // Whitespace around the value is not part of it.
        assert_eq!(
            pong_text(r#"{"type":"ping","nonce" :  42 }"#, Some(&json!(42))),
            r#"{"nonce":42,"type":"pong"}"#
        );
        // A duplicate key: the value the parser kept.
        let dup = r#"{"type":"ping","nonce":1,"nonce":2}"#;
        let Ok(ClientMessage::Ping { nonce }) = parse_client_message(dup) else {
            panic!()
        };
        let pong: Value = serde_json::from_str(&pong_text(dup, nonce.as_ref())).unwrap();
        assert_eq!(pong, json!({"type": "pong", "nonce": 2}));
    }

    #[test]
    fn pong_echoes_nonce_only_when_present() {
        assert_eq!(pong_event(None), json!({"type": "pong"}));
        assert_eq!(
            pong_event(Some(json!("a"))),
            json!({"type": "pong", "nonce": "a"})
        );
    }
}
