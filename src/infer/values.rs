//! What a single JSON value looks like: an id, a timestamp, free text, or a categorical word.
//!
//! These are the judgements behind "match the stable parts of a reply": a generated scenario matches
//! a field's recorded value only when the value looks like a member of a small closed set (`starting`,
//! `INVALID_JSON`, `assistant`), never when it looks volatile (an id, a time, the model's text).

use serde_json::Value;

/// Field names whose value is the model's text or a time, whatever it looks like (`token: "Hel"`
/// is a word, but a streamed one).
const VOLATILE_NAMES: &[&str] = &[
    "text",
    "content",
    "delta",
    "token",
    "chunk",
    "message",
    "response",
    "answer",
    "data",
    "body",
    "output",
    "input",
    "transcript",
    "partial_response",
    "partial",
    "snapshot",
    "detail",
    "details",
    "description",
    "title",
    "summary",
    "reasoning",
    "thought",
    "arguments",
    "args",
    "result",
    "value",
    "audio",
    "email",
    "name",
];

/// Whether a member name is one whose value is content or time, not a category.
pub fn volatile_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    VOLATILE_NAMES.contains(&n.as_str())
        || n.ends_with("_at")
        || n.contains("time")
        || n.contains("date")
        || n.ends_with("_ms")
        || n.contains("latency")
        || n.contains("duration")
        || n.contains("elapsed")
        || id_name(name)
}

/// Whether a member name names an identifier (`id`, `session_id`, `messageId`, `turnID`).
pub fn id_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "id"
        || n.ends_with("_id")
        || n.ends_with("id") && name.ends_with("Id")
        || name.ends_with("ID")
        || n.ends_with("-id")
}

/// Whether a string looks like an identifier: a UUID, a long hex run, or a token of letters with
/// digits (`call_8f2a`, `msg-1`, `turn-3`), 3..=128 characters without spaces.
pub fn id_like(s: &str) -> bool {
    let len = s.chars().count();
    if !(3..=128).contains(&len) || s.chars().any(char::is_whitespace) {
        return false;
    }
    if uuid::Uuid::parse_str(s).is_ok() {
        return true;
    }
    if len >= 12 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        return true;
    }
    let digits = s.chars().filter(char::is_ascii_digit).count();
    let alnum = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    alnum && digits >= 1 && s.chars().any(|c| c.is_ascii_alphabetic())
}

/// Whether a string looks like a time: RFC 3339 / ISO 8601 with a `T` or a date.
pub fn time_like(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
}

/// Whether a string looks like a member of a closed set: a short word or code without spaces
/// (`starting`, `INVALID_JSON`, `response.output_text.delta`, `assistant`), not an id or a time.
pub fn categorical(s: &str) -> bool {
    let len = s.chars().count();
    (1..=48).contains(&len)
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
        && !id_like_strict(s)
        && !time_like(s)
}

/// An id in the strict sense, for `categorical`: a UUID, a hex run, or a word ending in digits
/// after a separator (`call_1`, `msg-12`). `E401` and `v2` stay categorical.
fn id_like_strict(s: &str) -> bool {
    if uuid::Uuid::parse_str(s).is_ok() {
        return true;
    }
    if s.len() >= 12 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        return true;
    }
    let digits = s.chars().filter(char::is_ascii_digit).count();
    digits >= 4
        || s.rsplit_once(['-', '_', ':', '.'])
            .is_some_and(|(_, tail)| {
                tail.chars().any(|c| c.is_ascii_digit())
                    && (tail.chars().all(|c| c.is_ascii_digit()) || tail.len() >= 3)
            })
}

/// The JSON type name of a value, as JSON Schema spells it (integers apart from numbers).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Escapes one JSON Pointer token (RFC 6901).
pub fn pointer_token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_times_and_categories() {
        for s in [
            "3f2b9c1e-8a4d-4e1b-9c3a-1b2c3d4e5f60",
            "call_8f2a",
            "msg-1",
            "0123456789abcdef",
        ] {
            assert!(id_like(s), "{s}");
            assert!(!categorical(s), "{s}");
        }
        for s in [
            "starting",
            "INVALID_JSON",
            "response.output_text.delta",
            "assistant",
            "E401",
        ] {
            assert!(categorical(s), "{s}");
        }
        for s in ["Hello there", "2026-12-05T10:00:00Z", "", "a sentence."] {
            assert!(!categorical(s), "{s:?}");
        }
        assert!(time_like("2026-12-05T10:00:00Z"));
        assert!(!id_like("hello world 1"));
    }

    #[test]
    fn names() {
        for n in [
            "session_id",
            "messageId",
            "id",
            "turnID",
            "created_at",
            "timestamp",
            "token",
        ] {
            assert!(volatile_name(n), "{n}");
        }
        for n in ["code", "step", "status", "role", "is_typing", "type"] {
            assert!(!volatile_name(n), "{n}");
        }
        assert!(id_name("toolCallId"));
        assert!(!id_name("paid"));
    }
}
