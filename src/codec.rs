//! How frames become events: the suite's codec per side (`codec:` in `wschat-suite.yaml`).
//!
//! The checks (schemas, rules, matchers, collections, timing) all work on a JSON value per event.
//! A server that streams plain text (`send_text(chunk)`) or binary frames has no JSON, so under the
//! `text` and `mixed` codecs such a frame gets a JSON *view*: an object whose discriminator holds
//! [`TEXT_TYPE`] (or [`BINARY_TYPE`]) and whose other members carry the payload. Everything
//! downstream then treats it as one more event type (`count: {$text: ...}`, `items: $text`,
//! `ignore: [$text]`), with no special case per check. A leaf module: it imports nothing above it.
//!
//! The view is derived from the frame, never stored in place of it: transcripts and recordings keep
//! the frame's text as it came off the wire, and offline checks derive the view again from the same
//! codec.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{Map, Value};

/// The event type of a text frame that is not a JSON event (codecs `text` and `mixed`).
pub const TEXT_TYPE: &str = "$text";
/// The event type of a binary frame (codecs `text` and `mixed`).
pub const BINARY_TYPE: &str = "$binary";

/// How one side's text frames are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// Every text frame must be JSON (a frame that is not is a transport failure); binary frames
    /// fail unless the protocol is not text-only. The default, and the reference protocol.
    #[default]
    Json,
    /// Every text frame is a `$text` event `{type: "$text", text}`; binary frames are `$binary`.
    Text,
    /// A text frame that parses as a JSON object is a JSON event; any other text frame is `$text`.
    Mixed,
}

impl Codec {
    /// The names accepted in the suite config.
    pub const NAMES: &'static [&'static str] = &["json", "text", "mixed"];

    pub fn parse(s: &str) -> Option<Codec> {
        match s {
            "json" => Some(Codec::Json),
            "text" => Some(Codec::Text),
            "mixed" => Some(Codec::Mixed),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Text => "text",
            Codec::Mixed => "mixed",
        }
    }

    /// Whether binary frames are events of this side (else they are failures, as before codecs).
    pub fn binary_events(self) -> bool {
        self != Codec::Json
    }
}

/// The codec of each side (`codec: text` sets both; `codec: {server: text, client: json}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Codecs {
    /// What the server sends (received frames).
    pub server: Codec,
    /// What the client sends (sent frames: rules and timing see them through this codec).
    pub client: Codec,
}

/// The event a text frame is, under a codec.
#[derive(Debug, Clone, PartialEq)]
pub enum TextEvent {
    /// A JSON event: the parsed frame.
    Json(Value),
    /// A `$text` event: its JSON view.
    Text(Value),
    /// Not an event: the frame is not JSON and the codec is `json` (the parse error).
    NotJson(String),
}

impl TextEvent {
    pub fn value(&self) -> Option<&Value> {
        match self {
            TextEvent::Json(v) | TextEvent::Text(v) => Some(v),
            TextEvent::NotJson(_) => None,
        }
    }

    pub fn into_value(self) -> Option<Value> {
        match self {
            TextEvent::Json(v) | TextEvent::Text(v) => Some(v),
            TextEvent::NotJson(_) => None,
        }
    }
}

/// The event of a text frame. `parsed` is the frame's JSON parse when the caller already has it
/// (the reader task parses every frame); `None` parses here when the codec needs it.
pub fn text_event(
    codec: Codec,
    discriminator: &str,
    text: &str,
    parsed: Option<Result<Value, String>>,
) -> TextEvent {
    if codec == Codec::Text {
        return TextEvent::Text(text_view(discriminator, text));
    }
    let parsed =
        parsed.unwrap_or_else(|| serde_json::from_str::<Value>(text).map_err(|e| e.to_string()));
    match (codec, parsed) {
        (Codec::Json, Ok(v)) => TextEvent::Json(v),
        (Codec::Json, Err(e)) => TextEvent::NotJson(e),
        // Only an object is a JSON event: a chunk of a plain-text stream may well be `42`, `true`
        // or `"quoted"`, which parse as JSON but are text to this protocol.
        (_, Ok(v)) if v.is_object() => TextEvent::Json(v),
        _ => TextEvent::Text(text_view(discriminator, text)),
    }
}

/// The JSON view of a text frame: `{<discriminator>: "$text", text}`.
pub fn text_view(discriminator: &str, text: &str) -> Value {
    let mut v = typed(discriminator, TEXT_TYPE);
    if let Value::Object(o) = &mut v {
        o.insert("text".into(), Value::String(text.to_owned()));
    }
    v
}

/// The JSON view of a binary frame: `{<discriminator>: "$binary", length, base64}`.
pub fn binary_view(discriminator: &str, bytes: &[u8]) -> Value {
    let mut v = typed(discriminator, BINARY_TYPE);
    if let Value::Object(o) = &mut v {
        o.insert("length".into(), Value::from(bytes.len()));
        o.insert("base64".into(), Value::String(B64.encode(bytes)));
    }
    v
}

/// Whether `v` is a view made here (its discriminator is `$text` or `$binary`).
pub fn is_view(discriminator: &str, v: &Value) -> bool {
    matches!(
        crate::json::pointer_get(v, discriminator).and_then(Value::as_str),
        Some(TEXT_TYPE | BINARY_TYPE)
    )
}

/// An object holding `value` at the discriminator pointer (`/type`, or nested: `/header/msg_type`).
fn typed(discriminator: &str, value: &str) -> Value {
    let tokens: Vec<String> = discriminator
        .strip_prefix('/')
        .unwrap_or(discriminator)
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut inner = Value::String(value.to_owned());
    for t in tokens.iter().rev() {
        let mut o = Map::new();
        o.insert(t.clone(), inner);
        inner = Value::Object(o);
    }
    inner
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_codec_makes_every_frame_a_text_event() {
        for frame in ["hello", "{\"type\":\"token\"}", "42"] {
            assert_eq!(
                text_event(Codec::Text, "/type", frame, None),
                TextEvent::Text(json!({"type": "$text", "text": frame}))
            );
        }
    }

    #[test]
    fn mixed_codec_takes_only_objects_as_json() {
        assert_eq!(
            text_event(Codec::Mixed, "/type", "{\"type\":\"token\"}", None),
            TextEvent::Json(json!({"type": "token"}))
        );
        for frame in ["42", "true", "\"quoted\"", "[1]", "not json", ""] {
            assert_eq!(
                text_event(Codec::Mixed, "/type", frame, None),
                TextEvent::Text(json!({"type": "$text", "text": frame})),
                "{frame:?}"
            );
        }
    }

    #[test]
    fn json_codec_is_unchanged() {
        assert_eq!(
            text_event(Codec::Json, "/type", "[1]", None),
            TextEvent::Json(json!([1]))
        );
        assert!(matches!(
            text_event(Codec::Json, "/type", "hello", None),
            TextEvent::NotJson(_)
        ));
        // A parse the caller already made is used as is.
        assert_eq!(
            text_event(Codec::Json, "/type", "ignored", Some(Ok(json!({"a": 1})))),
            TextEvent::Json(json!({"a": 1}))
        );
    }

    #[test]
    fn views_follow_a_nested_discriminator() {
        let v = text_view("/header/msg_type", "hi");
        assert_eq!(v, json!({"header": {"msg_type": "$text"}, "text": "hi"}));
        assert!(is_view("/header/msg_type", &v));
        assert!(!is_view("/type", &json!({"type": "token"})));
        let b = binary_view("/type", &[0, 1, 2]);
        assert_eq!(b, json!({"type": "$binary", "length": 3, "base64": "AAEC"}));
        assert!(is_view("/type", &b));
        assert_eq!(typed("/a~1b", "x"), json!({"a/b": "x"}));
    }
}
