//! Partial JSON matching with `$` operators. Owned by the loader work.
//!
//! A [`MatchSpec`] is what the scenario says (a template); [`MatchSpec::compile`] renders it
//! with the run's variables and builds a [`Matcher`] tree once (regexes compiled once), which
//! then checks any number of events. The same builder runs at load time in a "static" mode
//! ([`MatchSpec::validate`]) where arguments still holding placeholders are taken on trust, so
//! unknown operators and bad regexes are reported with `file:line:col` before anything runs.
use std::fmt;

use regex::Regex;
use serde_json::Value;

use super::template::{string_placeholders, Resolver, Template, TemplateError};

/// A match specification as written (a template, rendered at run time, then compiled).
#[derive(Debug, Clone)]
pub struct MatchSpec(pub Template);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// `pointer` is the JSON pointer of the offending place inside the match value
    /// (e.g. `/index/$gte`); the loader maps it back to a YAML location.
    #[error("{reason}")]
    Invalid { pointer: String, reason: String },
}

/// Why a value did not match: where (JSON pointer into the checked value) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "at the top level: {}", self.reason)
        } else {
            write!(f, "at {}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for Mismatch {}

/// A compiled match tree.
#[derive(Debug, Clone)]
pub struct Matcher {
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    /// Scalar equality (`1` equals `1.0`).
    Scalar(Value),
    /// Partial object: every listed key matches.
    Object(Vec<(String, Node)>),
    /// Element by element, same length.
    Array(Vec<Node>),
    /// All operators hold.
    Ops(Vec<Op>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
    Null,
}

impl JsonType {
    const NAMES: &'static str = "string, number, integer, boolean, object, array, null";

    fn parse(s: &str) -> Option<JsonType> {
        Some(match s {
            "string" => JsonType::String,
            "number" => JsonType::Number,
            "integer" => JsonType::Integer,
            "boolean" => JsonType::Boolean,
            "object" => JsonType::Object,
            "array" => JsonType::Array,
            "null" => JsonType::Null,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Integer => "integer",
            JsonType::Boolean => "boolean",
            JsonType::Object => "object",
            JsonType::Array => "array",
            JsonType::Null => "null",
        }
    }

    fn of(v: &Value) -> JsonType {
        match v {
            Value::String(_) => JsonType::String,
            Value::Number(n) if is_integer(n) => JsonType::Integer,
            Value::Number(_) => JsonType::Number,
            Value::Bool(_) => JsonType::Boolean,
            Value::Object(_) => JsonType::Object,
            Value::Array(_) => JsonType::Array,
            Value::Null => JsonType::Null,
        }
    }

    fn accepts(self, v: &Value) -> bool {
        let actual = JsonType::of(v);
        actual == self || (self == JsonType::Number && actual == JsonType::Integer)
    }
}

fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    fn key(self) -> &'static str {
        match self {
            Cmp::Gt => "$gt",
            Cmp::Gte => "$gte",
            Cmp::Lt => "$lt",
            Cmp::Lte => "$lte",
        }
    }
    fn symbol(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Gte => ">=",
            Cmp::Lt => "<",
            Cmp::Lte => "<=",
        }
    }
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Gt => a > b,
            Cmp::Gte => a >= b,
            Cmp::Lt => a < b,
            Cmp::Lte => a <= b,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Regex(Regex),
    Type(JsonType),
    /// `$any: true` (present) / `$absent: false`.
    Present,
    /// `$absent: true` / `$any: false`.
    Absent,
    Cmp(Cmp, serde_json::Number),
    Len(Box<Node>),
    In(Vec<Value>),
    Not(Box<Node>),
    Contains(Box<Node>),
    Eq(Value),
}

/// The operators, for messages and "did you mean".
pub const OPERATORS: &[&str] = &[
    "$regex",
    "$type",
    "$any",
    "$absent",
    "$gte",
    "$gt",
    "$lte",
    "$lt",
    "$len",
    "$in",
    "$not",
    "$contains",
    "$eq",
];

/// Equality where numbers compare by value (`1 == 1.0`), recursively.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_eq(x, y),
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

fn num_eq(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
        (Some(a), Some(b), _, _) => a == b,
        (_, _, Some(a), Some(b)) => a == b,
        _ => x.as_f64() == y.as_f64(),
    }
}

fn push_ptr(base: &str, token: &str) -> String {
    format!("{base}/{}", token.replace('~', "~0").replace('/', "~1"))
}

/// Short form of a value for messages (long strings and big values are cut).
fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// The regex crate's syntax errors draw a caret diagram over several lines; messages here
/// are one line, and the location is already given, so keep only the reason.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.lines().collect::<Vec<_>>().join(" "))
}

/// How the builder treats strings that still hold placeholders.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Values are final (already rendered).
    Run,
    /// Load-time check: a string with a placeholder may become anything.
    Static,
}

struct Builder {
    mode: Mode,
}

impl Builder {
    fn invalid(pointer: &str, reason: impl Into<String>) -> MatcherError {
        MatcherError::Invalid {
            pointer: pointer.to_string(),
            reason: reason.into(),
        }
    }

    fn deferred(&self, v: &Value) -> bool {
        self.mode == Mode::Static
            && matches!(v, Value::String(s) if !string_placeholders(s).is_empty())
    }

    fn node(&self, v: &Value, ptr: &str) -> Result<Node, MatcherError> {
        match v {
            Value::Object(map) if !map.is_empty() && map.keys().any(|k| k.starts_with('$')) => {
                if let Some(plain) = map.keys().find(|k| !k.starts_with('$')) {
                    let op = map
                        .keys()
                        .find(|k| k.starts_with('$'))
                        .map(String::as_str)
                        .unwrap_or("$");
                    return Err(Self::invalid(
                        ptr,
                        format!(
                            "an object mixes operator '{op}' with field '{plain}'; put operators alone in their own object \
                             (to match a field whose name starts with '$', use {{$eq: ...}})"
                        ),
                    ));
                }
                let mut ops = Vec::new();
                for (k, arg) in map {
                    ops.push(self.op(k, arg, &push_ptr(ptr, k))?);
                }
                Ok(Node::Ops(ops))
            }
            Value::Object(map) => Ok(Node::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.node(v, &push_ptr(ptr, k))?)))
                    .collect::<Result<_, MatcherError>>()?,
            )),
            Value::Array(items) => Ok(Node::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.node(v, &push_ptr(ptr, &i.to_string())))
                    .collect::<Result<_, _>>()?,
            )),
            scalar => Ok(Node::Scalar(scalar.clone())),
        }
    }

    fn bool_arg(&self, op: &str, arg: &Value, ptr: &str) -> Result<bool, MatcherError> {
        match arg {
            Value::Bool(b) => Ok(*b),
            _ if self.deferred(arg) => Ok(true),
            other => Err(Self::invalid(
                ptr,
                format!("{op} takes true or false, got {}", brief(other)),
            )),
        }
    }

    fn op(&self, key: &str, arg: &Value, ptr: &str) -> Result<Op, MatcherError> {
        Ok(match key {
            "$regex" => match arg {
                _ if self.deferred(arg) => Op::Present,
                Value::String(re) => Op::Regex(Regex::new(re).map_err(|e| {
                    Self::invalid(ptr, format!("invalid regex {re:?}: {}", regex_reason(&e)))
                })?),
                other => {
                    return Err(Self::invalid(
                        ptr,
                        format!("$regex takes a string, got {}", brief(other)),
                    ))
                }
            },
            "$type" => match arg {
                _ if self.deferred(arg) => Op::Present,
                Value::String(t) => Op::Type(JsonType::parse(t).ok_or_else(|| {
                    Self::invalid(
                        ptr,
                        format!(
                            "unknown JSON type '{t}' for $type (one of: {})",
                            JsonType::NAMES
                        ),
                    )
                })?),
                other => {
                    return Err(Self::invalid(
                        ptr,
                        format!("$type takes a type name, got {}", brief(other)),
                    ))
                }
            },
            "$any" => {
                if self.bool_arg(key, arg, ptr)? {
                    Op::Present
                } else {
                    Op::Absent
                }
            }
            "$absent" => {
                if self.bool_arg(key, arg, ptr)? {
                    Op::Absent
                } else {
                    Op::Present
                }
            }
            "$gt" | "$gte" | "$lt" | "$lte" => {
                let cmp = match key {
                    "$gt" => Cmp::Gt,
                    "$gte" => Cmp::Gte,
                    "$lt" => Cmp::Lt,
                    _ => Cmp::Lte,
                };
                match arg {
                    Value::Number(n) => Op::Cmp(cmp, n.clone()),
                    _ if self.deferred(arg) => Op::Present,
                    other => {
                        return Err(Self::invalid(
                            ptr,
                            format!("{key} takes a number, got {}", brief(other)),
                        ))
                    }
                }
            }
            "$len" => match arg {
                Value::Number(n) if n.as_u64().is_some() => {
                    Op::Len(Box::new(Node::Scalar(arg.clone())))
                }
                Value::Object(_) => {
                    let inner = self.node(arg, ptr)?;
                    if !matches!(inner, Node::Ops(_)) {
                        return Err(Self::invalid(
                            ptr,
                            "$len takes a length or operators on it, e.g. {$gte: 1}",
                        ));
                    }
                    Op::Len(Box::new(inner))
                }
                _ if self.deferred(arg) => Op::Present,
                other => {
                    return Err(Self::invalid(
                        ptr,
                        format!(
                        "$len takes a non-negative integer or operators like {{$gte: 1}}, got {}",
                        brief(other)
                    ),
                    ))
                }
            },
            "$in" => match arg {
                Value::Array(items) => Op::In(items.clone()),
                _ if self.deferred(arg) => Op::Present,
                other => {
                    return Err(Self::invalid(
                        ptr,
                        format!("$in takes a list of values, got {}", brief(other)),
                    ))
                }
            },
            "$not" => Op::Not(Box::new(self.node(arg, ptr)?)),
            "$contains" => Op::Contains(Box::new(self.node(arg, ptr)?)),
            "$eq" => Op::Eq(arg.clone()),
            other => {
                let hint = crate::scenario::suggest(other, OPERATORS.iter().copied())
                    .map(|s| format!("; did you mean '{s}'?"))
                    .unwrap_or_default();
                return Err(Self::invalid(
                    ptr,
                    format!(
                        "unknown operator '{other}'{hint} (operators: {})",
                        OPERATORS.join(", ")
                    ),
                ));
            }
        })
    }
}

impl MatchSpec {
    /// Renders the spec with `r` and compiles it.
    pub fn compile(&self, r: &dyn Resolver) -> Result<Matcher, MatcherError> {
        let v = self.0.render(r)?;
        Matcher::new(&v)
    }

    /// Load-time check of operators and their arguments; arguments that still hold
    /// placeholders are checked when compiled at run time.
    pub fn validate(&self) -> Result<(), MatcherError> {
        Builder { mode: Mode::Static }
            .node(&self.0 .0, "")
            .map(|_| ())
    }
}

impl fmt::Display for MatchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_value(&self.0 .0, f)
    }
}

fn fmt_key(k: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
        && !k.starts_with('-');
    if bare {
        f.write_str(k)
    } else {
        write!(f, "{}", Value::String(k.to_string()))
    }
}

/// Compact YAML-flow-like rendering: `{type: "token", index: {$gte: 0}}`.
fn fmt_value(v: &Value, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match v {
        Value::Object(map) => {
            f.write_str("{")?;
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                fmt_key(k, f)?;
                f.write_str(": ")?;
                fmt_value(v, f)?;
            }
            f.write_str("}")
        }
        Value::Array(items) => {
            f.write_str("[")?;
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                fmt_value(v, f)?;
            }
            f.write_str("]")
        }
        other => write!(f, "{other}"),
    }
}

fn fmt_node(n: &Node, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match n {
        Node::Scalar(v) => fmt_value(v, f),
        Node::Object(fields) => {
            f.write_str("{")?;
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                fmt_key(k, f)?;
                f.write_str(": ")?;
                fmt_node(v, f)?;
            }
            f.write_str("}")
        }
        Node::Array(items) => {
            f.write_str("[")?;
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                fmt_node(v, f)?;
            }
            f.write_str("]")
        }
        Node::Ops(ops) => {
            f.write_str("{")?;
            for (i, op) in ops.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                match op {
                    Op::Regex(r) => write!(f, "$regex: {}", Value::String(r.as_str().to_string()))?,
                    Op::Type(t) => write!(f, "$type: {}", t.name())?,
                    Op::Present => f.write_str("$any: true")?,
                    Op::Absent => f.write_str("$absent: true")?,
                    Op::Cmp(c, n) => write!(f, "{}: {n}", c.key())?,
                    Op::Len(inner) => {
                        f.write_str("$len: ")?;
                        fmt_node(inner, f)?
                    }
                    Op::In(items) => {
                        f.write_str("$in: ")?;
                        fmt_value(&Value::Array(items.clone()), f)?
                    }
                    Op::Not(inner) => {
                        f.write_str("$not: ")?;
                        fmt_node(inner, f)?
                    }
                    Op::Contains(inner) => {
                        f.write_str("$contains: ")?;
                        fmt_node(inner, f)?
                    }
                    Op::Eq(v) => {
                        f.write_str("$eq: ")?;
                        fmt_value(v, f)?
                    }
                }
            }
            f.write_str("}")
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_node(&self.root, f)
    }
}

fn mismatch(path: &str, reason: impl Into<String>) -> Result<(), Mismatch> {
    Err(Mismatch {
        path: path.to_string(),
        reason: reason.into(),
    })
}

fn got(v: Option<&Value>) -> String {
    match v {
        Some(v) => brief(v),
        None => "nothing (absent)".to_string(),
    }
}

impl Node {
    fn check(&self, v: Option<&Value>, path: &str) -> Result<(), Mismatch> {
        match self {
            Node::Scalar(want) => match v {
                Some(have) if json_eq(want, have) => Ok(()),
                _ => mismatch(path, format!("expected {}, got {}", brief(want), got(v))),
            },
            Node::Object(fields) => {
                let Some(Value::Object(obj)) = v else {
                    return mismatch(path, format!("expected an object, got {}", got(v)));
                };
                for (k, m) in fields {
                    m.check(obj.get(k), &push_ptr(path, k))?;
                }
                Ok(())
            }
            Node::Array(items) => {
                let Some(Value::Array(arr)) = v else {
                    return mismatch(path, format!("expected an array, got {}", got(v)));
                };
                if arr.len() != items.len() {
                    return mismatch(
                        path,
                        format!(
                            "expected an array of {} elements, got {}: {}",
                            items.len(),
                            arr.len(),
                            got(v)
                        ),
                    );
                }
                for (i, (m, x)) in items.iter().zip(arr).enumerate() {
                    m.check(Some(x), &push_ptr(path, &i.to_string()))?;
                }
                Ok(())
            }
            Node::Ops(ops) => ops.iter().try_for_each(|op| op.check(v, path)),
        }
    }
}

fn length(v: &Value) -> Option<usize> {
    match v {
        Value::String(s) => Some(s.chars().count()),
        Value::Array(a) => Some(a.len()),
        Value::Object(o) => Some(o.len()),
        _ => None,
    }
}

impl Op {
    fn check(&self, v: Option<&Value>, path: &str) -> Result<(), Mismatch> {
        match self {
            Op::Absent => match v {
                None => Ok(()),
                Some(x) => mismatch(
                    path,
                    format!("expected the key to be absent, got {}", brief(x)),
                ),
            },
            Op::Present => match v {
                Some(_) => Ok(()),
                None => mismatch(path, "expected a value, got nothing (absent)"),
            },
            Op::Not(inner) => match inner.check(v, path) {
                Ok(()) => mismatch(
                    path,
                    format!(
                        "expected not to match {}, got {}",
                        NodeDisplay(inner),
                        got(v)
                    ),
                ),
                Err(_) => Ok(()),
            },
            _ => {
                let Some(v) = v else {
                    return mismatch(
                        path,
                        format!(
                            "expected a value matching {}, got nothing (absent)",
                            OpDisplay(self)
                        ),
                    );
                };
                self.check_present(v, path)
            }
        }
    }

    fn check_present(&self, v: &Value, path: &str) -> Result<(), Mismatch> {
        match self {
            Op::Regex(re) => match v {
                Value::String(s) if re.is_match(s) => Ok(()),
                Value::String(_) => mismatch(
                    path,
                    format!(
                        "expected a string matching /{}/, got {}",
                        re.as_str(),
                        brief(v)
                    ),
                ),
                _ => mismatch(
                    path,
                    format!(
                        "expected a string (for $regex /{}/), got {}",
                        re.as_str(),
                        brief(v)
                    ),
                ),
            },
            Op::Type(t) => {
                if t.accepts(v) {
                    Ok(())
                } else {
                    mismatch(
                        path,
                        format!(
                            "expected type {}, got {} {}",
                            t.name(),
                            JsonType::of(v).name(),
                            brief(v)
                        ),
                    )
                }
            }
            Op::Cmp(cmp, bound) => {
                let Value::Number(n) = v else {
                    return mismatch(
                        path,
                        format!(
                            "expected a number {} {bound}, got {}",
                            cmp.symbol(),
                            brief(v)
                        ),
                    );
                };
                let (a, b) = (
                    n.as_f64().unwrap_or(f64::NAN),
                    bound.as_f64().unwrap_or(f64::NAN),
                );
                if cmp.holds(a, b) {
                    Ok(())
                } else {
                    mismatch(path, format!("expected {} {bound}, got {n}", cmp.symbol()))
                }
            }
            Op::Len(inner) => {
                let Some(len) = length(v) else {
                    return mismatch(
                        path,
                        format!(
                            "expected a string, array or object (for $len), got {}",
                            brief(v)
                        ),
                    );
                };
                let lv = Value::from(len);
                inner.check(Some(&lv), path).map_err(|m| Mismatch {
                    path: path.to_string(),
                    reason: format!("length {len}: {}", m.reason),
                })
            }
            Op::In(items) => {
                if items.iter().any(|x| json_eq(x, v)) {
                    Ok(())
                } else {
                    mismatch(
                        path,
                        format!(
                            "expected one of {}, got {}",
                            brief(&Value::Array(items.clone())),
                            brief(v)
                        ),
                    )
                }
            }
            Op::Contains(inner) => match v {
                Value::Array(arr) => {
                    if arr.iter().any(|x| inner.check(Some(x), path).is_ok()) {
                        Ok(())
                    } else {
                        mismatch(
                            path,
                            format!(
                                "expected an element matching {}, got {}",
                                NodeDisplay(inner),
                                brief(v)
                            ),
                        )
                    }
                }
                Value::String(s) => match inner.as_ref() {
                    Node::Scalar(Value::String(needle)) if s.contains(needle.as_str()) => Ok(()),
                    Node::Scalar(Value::String(needle)) => mismatch(
                        path,
                        format!(
                            "expected a string containing {:?}, got {}",
                            needle,
                            brief(v)
                        ),
                    ),
                    _ => mismatch(
                        path,
                        format!(
                            "expected an array (for $contains {}), got {}",
                            NodeDisplay(inner),
                            brief(v)
                        ),
                    ),
                },
                _ => mismatch(
                    path,
                    format!(
                        "expected an array or string (for $contains), got {}",
                        brief(v)
                    ),
                ),
            },
            Op::Eq(want) => {
                if json_eq(want, v) {
                    Ok(())
                } else {
                    mismatch(
                        path,
                        format!("expected exactly {}, got {}", brief(want), brief(v)),
                    )
                }
            }
            Op::Absent | Op::Present | Op::Not(_) => self.check(Some(v), path),
        }
    }
}

struct NodeDisplay<'a>(&'a Node);
impl fmt::Display for NodeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_node(self.0, f)
    }
}

struct OpDisplay<'a>(&'a Op);
impl fmt::Display for OpDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_node(&Node::Ops(vec![self.0.clone()]), f)
    }
}

impl Matcher {
    /// Compiles an already rendered match value.
    pub fn new(v: &Value) -> Result<Matcher, MatcherError> {
        Ok(Matcher {
            root: Builder { mode: Mode::Run }.node(v, "")?,
        })
    }

    pub fn check(&self, v: &Value) -> Result<(), Mismatch> {
        self.root.check(Some(v), "")
    }

    pub fn matches(&self, v: &Value) -> bool {
        self.check(v).is_ok()
    }

    /// For the discriminator fast path: if the matcher requires the field at `pointer`
    /// (e.g. `/type`) to equal a fixed string, that string.
    pub fn required_str(&self, pointer: &str) -> Option<&str> {
        let mut node = &self.root;
        if !pointer.is_empty() {
            let tokens = pointer.strip_prefix('/')?;
            for raw in tokens.split('/') {
                let token = raw.replace("~1", "/").replace("~0", "~");
                let Node::Object(fields) = node else {
                    return None;
                };
                node = &fields.iter().find(|(k, _)| *k == token)?.1;
            }
        }
        match node {
            Node::Scalar(Value::String(s)) => Some(s),
            Node::Ops(ops) => ops.iter().find_map(|op| match op {
                Op::Eq(Value::String(s)) => Some(s.as_str()),
                _ => None,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::template::FnResolver;
    use serde_json::json;

    fn m(v: Value) -> Matcher {
        Matcher::new(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    fn mis(matcher: Value, value: Value) -> Mismatch {
        m(matcher.clone())
            .check(&value)
            .expect_err(&format!("{matcher} should not match {value}"))
    }

    #[test]
    fn partial_objects_and_scalars() {
        let x = m(json!({"type": "token", "index": 0}));
        assert!(x.matches(&json!({"type": "token", "index": 0, "extra": true})));
        assert!(x.matches(&json!({"type": "token", "index": 0.0})));
        let e = x.check(&json!({"type": "token", "index": 1})).unwrap_err();
        assert_eq!(e.path, "/index");
        assert_eq!(e.reason, "expected 0, got 1");
        let e = x.check(&json!({"index": 0})).unwrap_err();
        assert_eq!(e.path, "/type");
        assert!(e.reason.contains("absent"), "{e}");
        let e = mis(json!({"a": {"b": 1}}), json!({"a": 5}));
        assert_eq!(
            (e.path.as_str(), e.reason.as_str()),
            ("/a", "expected an object, got 5")
        );
        assert!(m(json!({})).matches(&json!({"a": 1})));
        assert!(!m(json!({})).matches(&json!(1)));
        assert!(m(json!(null)).matches(&json!(null)));
        assert!(!m(json!("1")).matches(&json!(1)));
    }

    #[test]
    fn arrays_match_elementwise_with_same_length() {
        let x = m(json!({"a": [1, {"b": "x"}]}));
        assert!(x.matches(&json!({"a": [1, {"b": "x", "c": 2}]})));
        let e = x.check(&json!({"a": [1, {"b": "y"}]})).unwrap_err();
        assert_eq!(e.path, "/a/1/b");
        let e = x.check(&json!({"a": [1]})).unwrap_err();
        assert_eq!(e.path, "/a");
        assert!(e.reason.contains("2 elements, got 1"), "{e}");
    }

    #[test]
    fn pointer_escaping_in_paths() {
        let e = mis(json!({"a/b": {"c~d": 1}}), json!({"a/b": {"c~d": 2}}));
        assert_eq!(e.path, "/a~1b/c~0d");
    }

    #[test]
    fn regex() {
        let x = m(json!({"id": {"$regex": "^turn-[0-9]+$"}}));
        assert!(x.matches(&json!({"id": "turn-12"})));
        assert!(x
            .check(&json!({"id": "turn-x"}))
            .unwrap_err()
            .reason
            .contains("matching /^turn-[0-9]+$/"));
        assert!(x
            .check(&json!({"id": 12}))
            .unwrap_err()
            .reason
            .contains("expected a string"));
        assert!(!x.matches(&json!({})));
    }

    #[test]
    fn type_op() {
        for (t, yes, no) in [
            ("string", json!("a"), json!(1)),
            ("number", json!(1.5), json!("1")),
            ("number", json!(1), json!(null)),
            ("integer", json!(3), json!(3.5)),
            ("integer", json!(3.0), json!("3")),
            ("boolean", json!(false), json!(0)),
            ("object", json!({}), json!([])),
            ("array", json!([]), json!({})),
            ("null", json!(null), json!(false)),
        ] {
            let x = m(json!({"$type": t}));
            assert!(x.matches(&yes), "{t} should accept {yes}");
            let e = x.check(&no).unwrap_err();
            assert!(
                e.reason.starts_with(&format!("expected type {t}, got")),
                "{e}"
            );
        }
    }

    #[test]
    fn any_and_absent() {
        let any = m(json!({"a": {"$any": true}}));
        assert!(any.matches(&json!({"a": null})));
        assert_eq!(any.check(&json!({})).unwrap_err().path, "/a");
        let absent = m(json!({"a": {"$absent": true}}));
        assert!(absent.matches(&json!({"b": 1})));
        let e = absent.check(&json!({"a": 1})).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.reason.as_str()),
            ("/a", "expected the key to be absent, got 1")
        );
        assert!(m(json!({"a": {"$any": false}})).matches(&json!({})));
        assert!(!m(json!({"a": {"$absent": false}})).matches(&json!({})));
    }

    #[test]
    fn numeric_ranges_combine() {
        let x = m(json!({"$gte": 0, "$lt": 10}));
        assert!(x.matches(&json!(0)) && x.matches(&json!(9.5)));
        assert_eq!(
            x.check(&json!(10)).unwrap_err().reason,
            "expected < 10, got 10"
        );
        assert_eq!(
            x.check(&json!(-1)).unwrap_err().reason,
            "expected >= 0, got -1"
        );
        assert!(
            m(json!({"$gt": 1})).matches(&json!(2)) && !m(json!({"$gt": 1})).matches(&json!(1))
        );
        assert!(
            m(json!({"$lte": 1})).matches(&json!(1))
                && !m(json!({"$lte": 1})).matches(&json!(1.01))
        );
        assert!(x
            .check(&json!("5"))
            .unwrap_err()
            .reason
            .contains("expected a number"));
    }

    #[test]
    fn len() {
        assert!(m(json!({"$len": 3})).matches(&json!("héé")));
        assert!(m(json!({"$len": 2})).matches(&json!([1, 2])));
        assert!(m(json!({"$len": 1})).matches(&json!({"a": 1})));
        assert!(m(json!({"$len": {"$gte": 1}})).matches(&json!([0])));
        let e = mis(json!({"a": {"$len": {"$gte": 1}}}), json!({"a": []}));
        assert_eq!(
            (e.path.as_str(), e.reason.as_str()),
            ("/a", "length 0: expected >= 1, got 0")
        );
        assert!(mis(json!({"$len": 1}), json!(5))
            .reason
            .contains("string, array or object"));
    }

    #[test]
    fn in_op() {
        let x = m(json!({"type": {"$in": ["final_answer", "error"]}}));
        assert!(x.matches(&json!({"type": "error"})));
        let e = x.check(&json!({"type": "token"})).unwrap_err();
        assert_eq!(
            e.reason,
            "expected one of [\"final_answer\",\"error\"], got \"token\""
        );
        assert!(m(json!({"$in": [1, 2]})).matches(&json!(2.0)));
    }

    #[test]
    fn not_op() {
        let x = m(json!({"type": {"$not": "error"}}));
        assert!(x.matches(&json!({"type": "token"})));
        assert!(x.matches(&json!({})));
        let e = x.check(&json!({"type": "error"})).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.reason.as_str()),
            ("/type", "expected not to match \"error\", got \"error\"")
        );
        assert!(m(json!({"a": {"$not": {"$regex": "x"}}})).matches(&json!({"a": "y"})));
    }

    #[test]
    fn contains() {
        let x = m(json!({"items": {"$contains": {"id": 2}}}));
        assert!(x.matches(&json!({"items": [{"id": 1}, {"id": 2, "z": 0}]})));
        let e = x.check(&json!({"items": [{"id": 1}]})).unwrap_err();
        assert_eq!(e.path, "/items");
        let s = m(json!({"$contains": "lo w"}));
        assert!(s.matches(&json!("hello world")));
        assert!(s
            .check(&json!("hello"))
            .unwrap_err()
            .reason
            .contains("containing \"lo w\""));
        assert!(mis(json!({"$contains": 1}), json!(1))
            .reason
            .contains("array or string"));
    }

    #[test]
    fn eq_is_exact() {
        let x = m(json!({"o": {"$eq": {"a": 1}}}));
        assert!(x.matches(&json!({"o": {"a": 1.0}})));
        let e = x.check(&json!({"o": {"a": 1, "b": 2}})).unwrap_err();
        assert_eq!(e.path, "/o");
        assert!(e.reason.starts_with("expected exactly"));
        assert!(m(json!({"$eq": {"$x": 1}})).matches(&json!({"$x": 1})));
    }

    #[test]
    fn build_errors_name_the_place() {
        let err = |v: Value| match Matcher::new(&v).unwrap_err() {
            MatcherError::Invalid { pointer, reason } => (pointer, reason),
            other => panic!("{other}"),
        };
        let (p, r) = err(json!({"a": {"$regexp": "x"}}));
        assert_eq!(p, "/a/$regexp");
        assert!(
            r.contains("unknown operator '$regexp'; did you mean '$regex'?"),
            "{r}"
        );
        let (p, r) = err(json!({"a": [0, {"$regex": "("}]}));
        assert_eq!(p, "/a/1/$regex");
        assert_eq!(r, "invalid regex \"(\": unclosed group");
        assert!(err(json!({"$gte": "x"})).1.contains("$gte takes a number"));
        assert!(err(json!({"$type": "float"}))
            .1
            .contains("unknown JSON type 'float'"));
        assert!(err(json!({"$in": 1})).1.contains("$in takes a list"));
        assert!(err(json!({"$len": -1})).1.contains("$len takes"));
        assert!(err(json!({"$len": {"a": 1}})).1.contains("$len takes"));
        assert!(err(json!({"$any": "yes"}))
            .1
            .contains("$any takes true or false"));
        assert!(err(json!({"$gte": 1, "a": 2})).1.contains("mixes operator"));
        assert_eq!(err(json!({"x": {"$not": {"$bad": 1}}})).0, "/x/$not/$bad");
    }

    #[test]
    fn compile_renders_first_and_validate_defers_placeholders() {
        let spec = MatchSpec(
            Template::parse(json!({"turn_id": "${turn}", "id": {"$regex": "^${prefix}"}})).unwrap(),
        );
        spec.validate().unwrap();
        let r = FnResolver(|n: &str| match n {
            "turn" => Some(json!(7)),
            "prefix" => Some(json!("t-")),
            _ => None,
        });
        let x = spec.compile(&r).unwrap();
        assert!(x.matches(&json!({"turn_id": 7, "id": "t-1"})));
        assert!(!x.matches(&json!({"turn_id": "7", "id": "t-1"})));
        let bad = MatchSpec(Template::parse(json!({"id": {"$regex": "${p}("}})).unwrap());
        bad.validate().unwrap();
        let r = FnResolver(|_: &str| Some(json!("x")));
        assert!(matches!(bad.compile(&r), Err(MatcherError::Invalid { .. })));
        let r = FnResolver(|_: &str| None);
        assert!(matches!(
            spec.compile(&r),
            Err(MatcherError::Template(TemplateError::Unresolved { .. }))
        ));
        let invalid = MatchSpec(Template::parse(json!({"a": {"$nope": 1}})).unwrap());
        assert!(invalid.validate().is_err());
    }

    #[test]
    fn required_str_for_fast_path() {
        let x = m(json!({"type": "token", "meta": {"kind": "a"}, "n": 1}));
        assert_eq!(x.required_str("/type"), Some("token"));
        assert_eq!(x.required_str("/meta/kind"), Some("a"));
        assert_eq!(x.required_str("/n"), None);
        assert_eq!(x.required_str("/missing"), None);
        assert_eq!(
            m(json!({"type": {"$eq": "x"}})).required_str("/type"),
            Some("x")
        );
        assert_eq!(
            m(json!({"type": {"$in": ["x"]}})).required_str("/type"),
            None
        );
    }

    #[test]
    fn display_is_compact() {
        let x = m(json!({"type": "token", "index": {"$gte": 0}}));
        assert_eq!(x.to_string(), "{index: {$gte: 0}, type: \"token\"}");
        let x = m(json!({"a b": [1, {"$regex": "^x"}], "c": {"$not": {"$in": [1]}}}));
        assert_eq!(
            x.to_string(),
            "{\"a b\": [1, {$regex: \"^x\"}], c: {$not: {$in: [1]}}}"
        );
    }
}
