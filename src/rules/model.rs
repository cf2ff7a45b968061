//! The rules model: what the loader produces and the checker compiles.
//!
//! Every kind is documented in `docs/RULES.md`; the field names here follow the YAML keys.

use serde_json::Value;

use crate::json::pointer_get as lookup;
use crate::runner::Direction;
use crate::scenario::Loc;

/// One rule of a rules file.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub description: Option<String>,
    pub kind: RuleKind,
    /// Where the rule starts in its file.
    pub loc: Loc,
}

/// Which frames an entry of a rule refers to.
///
/// Written as a bare type name (`tool_call`, a received event) or as a map
/// `{ type, direction, where, present, key }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub direction: Direction,
    /// The discriminator value; `None` matches any type (and frames without one).
    pub event_type: Option<String>,
    /// JSON pointer → value the frame must hold (JSON equality).
    pub conditions: Vec<(String, Value)>,
    /// JSON pointers that must be present.
    pub present: Vec<String>,
    /// Overrides the rule's key for frames of this selector (e.g. `/response_id` where the
    /// opening event carries `/response/id`).
    pub key: Option<KeySpec>,
    /// Overrides the rule's scope pointer(s) for frames of this selector (e.g. `/response/id`
    /// on `response.done` where the items carry `/response_id`).
    pub scope: Option<KeySpec>,
}

impl Selector {
    pub fn received(event_type: &str) -> Self {
        Selector {
            direction: Direction::Received,
            event_type: Some(event_type.to_owned()),
            conditions: Vec::new(),
            present: Vec::new(),
            key: None,
            scope: None,
        }
    }

    /// Whether a frame matches; `ty` is the frame's discriminator value.
    pub fn matches(&self, dir: Direction, ty: Option<&str>, event: &Value) -> bool {
        if dir != self.direction {
            return false;
        }
        if let Some(want) = &self.event_type {
            if ty != Some(want.as_str()) {
                return false;
            }
        }
        self.conditions
            .iter()
            .all(|(p, v)| lookup(event, p).is_some_and(|got| json_eq(got, v)))
            && self.present.iter().all(|p| lookup(event, p).is_some())
    }

    /// A short human name: `tool_call`, `sent ping`, `error{/code=AUTH_REQUIRED}`.
    pub fn label(&self) -> String {
        let mut s = String::new();
        if self.direction == Direction::Sent {
            s.push_str("sent ");
        }
        s.push_str(self.event_type.as_deref().unwrap_or("*"));
        if !self.conditions.is_empty() || !self.present.is_empty() {
            let parts: Vec<String> = self
                .conditions
                .iter()
                .map(|(p, v)| match v {
                    Value::String(s) => format!("{p}={s}"),
                    other => format!("{p}={other}"),
                })
                .chain(self.present.iter().map(|p| format!("{p} present")))
                .collect();
            s.push('{');
            s.push_str(&parts.join(", "));
            s.push('}');
        }
        s
    }
}

/// `1` equals `1.0`, as in the scenario matchers.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Human label of a list of alternatives: `final_answer|cancelled|error`.
pub fn labels(sels: &[Selector]) -> String {
    sels.iter()
        .map(Selector::label)
        .collect::<Vec<_>>()
        .join("|")
}

/// A key: one JSON pointer, or several forming a composite key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub pointers: Vec<String>,
}

impl KeySpec {
    pub fn single(pointer: &str) -> Self {
        KeySpec {
            pointers: vec![pointer.to_owned()],
        }
    }

    /// No pointer at all: one entry for the whole connection (a keyless `pair`/`lifecycle`).
    pub fn keyless() -> Self {
        KeySpec {
            pointers: Vec::new(),
        }
    }

    pub fn is_keyless(&self) -> bool {
        self.pointers.is_empty()
    }

    /// The name used in messages: `turn_id`, `(team_id, expert)`.
    pub fn label(&self) -> String {
        if self.pointers.is_empty() {
            return "bracket".to_owned();
        }
        let names: Vec<&str> = self
            .pointers
            .iter()
            .map(|p| p.rsplit('/').next().unwrap_or(p))
            .collect();
        if names.len() == 1 {
            names[0].to_owned()
        } else {
            format!("({})", names.join(", "))
        }
    }
}

/// How a scoped rule learns that a scope (e.g. a turn) ended.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// JSON pointer of the scope value (e.g. `/turn_id`); `None`: the connection is the scope.
    pub pointer: Option<String>,
    /// Every pointer of a composite scope (`scope: [/item_id, /content_index]`); empty or one
    /// element when `pointer` alone says it.
    pub pointers: Vec<String>,
    /// Events that end a scope. When not written, they are taken from the `terminal` rule whose
    /// key is the scope pointer.
    pub end: Vec<Selector>,
    /// Ending events that excuse entries still open (`unless_terminal`).
    pub forgive: Vec<Selector>,
    /// `end` was written in the file (not inherited).
    pub end_explicit: bool,
}

/// A field of an event named by type (`{ event: final_answer, field: /content }`).
#[derive(Debug, Clone)]
pub struct FieldRef {
    pub event: Selector,
    pub field: String,
    /// A JSONPath (RFC 9535) used instead of `field`, where `{scope}` stands for the scope value
    /// as a string: `$.messages[?@.id == '{scope}'].content` finds the text in a snapshot.
    pub path: Option<String>,
}

// Rules are built once per suite; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum RuleKind {
    /// The first frame of `direction` must match one of `one_of`.
    First {
        one_of: Vec<Selector>,
        direction: Direction,
    },
    /// Per key value, the first frame carrying the key must match one of `one_of`.
    FirstPerKey {
        key: KeySpec,
        one_of: Vec<Selector>,
        direction: Direction,
    },
    /// Until the first `until` frame, every frame of `direction` matches `until` or `allowed`.
    OnlyBefore {
        until: Vec<Selector>,
        allowed: Vec<Selector>,
        direction: Direction,
    },
    /// The next frame of `direction` after an `event` frame matches one of `one_of`.
    FollowedBy {
        event: Vec<Selector>,
        one_of: Vec<Selector>,
        direction: Direction,
        /// Frames skipped as if absent (e.g. a `broadcast` pushed at any time).
        ignoring: Vec<Selector>,
    },
    /// The frame of `direction` just before an `event` frame matches one of `one_of`.
    PrecededBy {
        event: Vec<Selector>,
        one_of: Vec<Selector>,
        direction: Direction,
        /// Frames skipped as if absent.
        ignoring: Vec<Selector>,
    },
    /// Per key (or for the whole connection): at most one terminal event, nothing after it
    /// except a `restart` event, which begins a new cycle.
    Terminal {
        key: Option<KeySpec>,
        terminal: Vec<Selector>,
        restart: Vec<Selector>,
        direction: Direction,
        require_on_close: bool,
        /// A `restart` event is allowed only after a terminal event (not while running).
        restart_only_after_terminal: bool,
    },
    /// `open` … `close` per key: close needs an open, exactly once; a key is not reopened while
    /// open; `during` frames need an open pair; open pairs may not outlive their scope. A keyless
    /// pair ([`KeySpec::keyless`]) has one bracket per connection (scope) at a time.
    Pair {
        open: Vec<Selector>,
        close: Vec<Selector>,
        during: Vec<Selector>,
        key: KeySpec,
        scope: Scope,
        /// At most this many pairs open at once on the connection (e.g. one turn at a time).
        max_open: Option<u64>,
        require_on_close: bool,
    },
    /// Per key: `start`, any number of `middle`, then each `end` step in order.
    Lifecycle {
        key: KeySpec,
        start: Vec<Selector>,
        middle: Vec<Selector>,
        end: Vec<Vec<Selector>>,
        scope: Scope,
        require_on_close: bool,
    },
    /// Every `request` completes once each group of `parts` has been seen exactly once, matched
    /// by key (or in order without a key). `reply` is the one-group form.
    Completion {
        request: Vec<Selector>,
        parts: Vec<Vec<Selector>>,
        key: Option<KeySpec>,
        require_on_close: bool,
        /// `unsolicited: allow`: parts answering no pending request are ignored (they also occur
        /// unprompted), instead of being reported.
        allow_unsolicited: bool,
    },
    /// Every `event` frame follows at least one earlier `prior` frame with the same key.
    RequiresPrior {
        event: Vec<Selector>,
        prior: Vec<Selector>,
        key: KeySpec,
    },
    /// Per scope, the `field` of the `items` frames (in arrival order, `index` 0,1,2,…)
    /// concatenates to `equals` (when given); `count` equals the number of items; `running`
    /// names a field of every item that must hold the concatenation so far.
    Concat {
        items: Vec<Selector>,
        field: String,
        index: Option<String>,
        scope: Scope,
        equals: Option<FieldRef>,
        count: Option<FieldRef>,
        running: Option<String>,
    },
}

impl RuleKind {
    /// The YAML name of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::First { .. } => "first",
            RuleKind::FirstPerKey { .. } => "first_per_key",
            RuleKind::OnlyBefore { .. } => "only_before",
            RuleKind::FollowedBy { .. } => "followed_by",
            RuleKind::PrecededBy { .. } => "preceded_by",
            RuleKind::Terminal { .. } => "terminal",
            RuleKind::Pair { .. } => "pair",
            RuleKind::Lifecycle { .. } => "lifecycle",
            RuleKind::Completion { .. } => "completion",
            RuleKind::RequiresPrior { .. } => "requires_prior",
            RuleKind::Concat { .. } => "concat",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selector_matching() {
        let sel = Selector {
            conditions: vec![
                ("/code".into(), json!("AUTH_REQUIRED")),
                ("/n".into(), json!(1)),
            ],
            present: vec!["/message".into()],
            ..Selector::received("error")
        };
        let ok = json!({"type": "error", "code": "AUTH_REQUIRED", "n": 1.0, "message": "x"});
        assert!(sel.matches(Direction::Received, Some("error"), &ok));
        assert!(!sel.matches(Direction::Sent, Some("error"), &ok));
        assert!(!sel.matches(Direction::Received, Some("pong"), &ok));
        let other = json!({"type": "error", "code": "INVALID_JSON", "n": 1, "message": "x"});
        assert!(!sel.matches(Direction::Received, Some("error"), &other));
        let no_message = json!({"type": "error", "code": "AUTH_REQUIRED", "n": 1});
        assert!(!sel.matches(Direction::Received, Some("error"), &no_message));
        assert_eq!(
            sel.label(),
            "error{/code=AUTH_REQUIRED, /n=1, /message present}"
        );
    }
}
