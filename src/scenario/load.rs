//! Loading: suite config + scenario files → the model, with every problem located.
//!
//! Each file is parsed into a spanned node tree ([`super::yaml`]) and converted by hand, so
//! one pass reports every problem of a file (unknown fields, wrong types, bad matchers,
//! unknown variables…), each with `file:line:col` and a source snippet.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode, SourceSpan};
use serde_json::Value;

use super::matcher::{MatchSpec, MatcherError};
use super::model::*;
use super::template::{segments, Segment, Template};
use super::yaml::{self, Kind, Node, Pos};
use crate::codec::{Codec, Codecs};

/// The suite config file looked for in the first folder.
pub const SUITE_FILE: &str = "wschat-suite.yaml";
/// The rules file used when the config names none.
pub const DEFAULT_RULES_FILE: &str = "rules.yaml";
/// The default largest accepted frame.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Builtin variable names.
pub const BUILTIN_VARS: &[&str] = &["target", "http_base", "token", "uuid"];
/// Prefixes of parameterized builtins (`${env:HOME}`, `${env:HOME:-/tmp}`, `${jwt:alice}`,
/// `${repeat:1100000:a}`).
pub const VAR_PREFIXES: &[&str] = &[
    "env",
    "repeat",
    "jwt",
    "jwt_admin",
    "jwt_expired",
    "jwt_not_yet_valid",
    "jwt_bad_signature",
    "jwt_none",
];

const STEP_KINDS: &[&str] = &[
    "http",
    "connect",
    "send",
    "expect",
    "expect_pong",
    "collect",
    "expect_none",
    "expect_close",
    "close",
    "sleep",
    "timing",
];

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--var name=value`.
    pub vars: BTreeMap<String, String>,
}

/// One problem found while loading, with its place in the source.
#[derive(Debug, Clone)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; 0 when the problem concerns the whole file (e.g. it cannot be read).
    pub line: u32,
    pub col: u32,
    pub message: String,
    /// Short text under the snippet's caret.
    pub label: String,
    source: Option<Arc<NamedSource<String>>>,
    offset: usize,
    len: usize,
}

impl Problem {
    fn whole_file(file: &Path, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            message: message.into(),
            label: String::new(),
            source: None,
            offset: 0,
            len: 0,
        }
    }

    /// `file:line:col` (or just the file).
    pub fn place(&self) -> String {
        if self.line == 0 {
            self.file.display().to_string()
        } else {
            format!("{}:{}:{}", self.file.display(), self.line, self.col)
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place(), self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        None
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_deref().map(|s| s as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.source.as_ref()?;
        let label = (!self.label.is_empty()).then(|| self.label.clone());
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            label,
            SourceSpan::new(self.offset.into(), self.len.max(1)),
        ))))
    }
}

/// Every problem found while loading a suite (never empty).
#[derive(Debug, Clone, thiserror::Error)]
pub struct LoadError {
    pub problems: Vec<Problem>,
}

impl LoadError {
    /// All problems, one `file:line:col: message` per line.
    pub fn render_plain(&self) -> String {
        self.problems.iter().map(|p| format!("{p}\n")).collect()
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.split_first() {
            None => f.write_str("failed to load the suite"),
            Some((first, [])) => write!(f, "{first}"),
            Some((first, rest)) => write!(
                f,
                "{first}\n(and {} more problem{})",
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
        }
    }
}

impl Diagnostic for LoadError {
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.problems.first()?.source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.problems.first()?.labels()
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.problems.len() < 2 {
            return None;
        }
        Some(Box::new(
            self.problems[1..].iter().map(|p| p as &dyn Diagnostic),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Small parsers shared with other modules.

/// The longest duration a suite, a scenario or a command-line option may give: 365 days. Every
/// wait becomes a deadline (now + duration), and far larger values cannot be represented as one.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// `200ms`, `5s`, `1m 30s` (humantime), at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (write e.g. 200ms, 5s, 1m)"))?;
    if d > MAX_DURATION {
        return Err(format!(
            "duration {s:?} exceeds the maximum of 365 days (365d)"
        ));
    }
    Ok(d)
}

/// `16MiB`, `512KiB`, `1MB`, `4096`, `4096B`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("invalid size {s:?} (write e.g. 4096, 64KiB, 16MiB, 1GB)");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1000 * 1000,
        "MiB" => 1 << 20,
        "GB" => 1000 * 1000 * 1000,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(bad)
}

fn valid_var_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn valid_scenario_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

// ---------------------------------------------------------------------------------------------
// Conversion context.

/// What a template may refer to at a given point of a file.
#[derive(Debug, Clone, Default)]
struct Known {
    /// Names defined by the user (vars, --var, captures so far).
    names: BTreeSet<String>,
    /// Env vars that may be unset (the scenario's `requires`).
    requires: BTreeSet<String>,
    /// Whether `${env:X}` must be set at load time.
    check_env: bool,
}

struct Cx {
    file: Arc<PathBuf>,
    source: Arc<NamedSource<String>>,
    problems: Vec<Problem>,
    /// Placeholders met in the current templates (checked against [`Known`] per step).
    placeholders: Vec<(String, Pos)>,
    /// What a duration written as a template may use; empty where durations take no template
    /// (the suite config). The first set gives the value; every set is checked, so a variant the
    /// run does not use (the suite's own vars when the embedded server's replace them) still gets
    /// its mistakes reported.
    duration_vars: Vec<DurationVars>,
    /// The suite's discriminator pointer (the `text:` short form of `expect` builds a `$text` match).
    discriminator: String,
}

/// The variables a duration written as a template (`within: ${quiet}`) may use. Durations are
/// resolved when loading (the runner takes them as plain values), so only what is known then
/// counts: `--var`, scenario and suite vars, `${env:NAME}`; not captures, tokens or `${uuid}`.
#[derive(Debug, Clone, Default)]
struct DurationVars {
    /// Names the variant in messages (empty for the vars the run uses).
    label: &'static str,
    cli: BTreeMap<String, String>,
    suite: BTreeMap<String, Template>,
    scenario: BTreeMap<String, Template>,
    /// The scenario's `requires`: when one of them is unset the scenario is skipped, so a duration
    /// that needs it has no value to check.
    requires: Vec<String>,
}

/// Renders load-time templates over [`DurationVars`]; a var may refer to another (to a limited
/// depth, which also stops a cycle).
struct DurationResolver<'a> {
    vars: &'a DurationVars,
    depth: std::cell::Cell<u8>,
}

impl super::template::Resolver for DurationResolver<'_> {
    fn resolve(&self, name: &str) -> Option<Value> {
        if let Some(v) = self.vars.cli.get(name) {
            return Some(Value::String(v.clone()));
        }
        if let Some(arg) = name.strip_prefix("env:") {
            return super::template::env_with_default(arg, |n| std::env::var(n).ok())
                .map(Value::String);
        }
        let t = self
            .vars
            .scenario
            .get(name)
            .or_else(|| self.vars.suite.get(name))?;
        if self.depth.get() >= 16 {
            return None;
        }
        self.depth.set(self.depth.get() + 1);
        let v = t.render(self).ok();
        self.depth.set(self.depth.get() - 1);
        v
    }
}

impl Cx {
    fn new(file: &Path, text: &str) -> Cx {
        Cx {
            file: Arc::new(file.to_path_buf()),
            source: Arc::new(
                NamedSource::new(file.display().to_string(), text.to_string())
                    .with_language("yaml"),
            ),
            problems: Vec::new(),
            placeholders: Vec::new(),
            duration_vars: Vec::new(),
            discriminator: "/type".to_owned(),
        }
    }

    fn err_label(&mut self, pos: Pos, label: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
            label: label.to_string(),
            source: Some(self.source.clone()),
            offset: pos.offset,
            len: pos.len,
        });
    }

    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.err_label(pos, "here", message);
    }

    fn loc(&self, pos: Pos) -> Loc {
        Loc {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
        }
    }

    fn yaml_error(&mut self, e: &serde_saphyr::Error) {
        let mut message = e.without_snippet().to_string();
        // The location goes in front, as everywhere else; library advice about its own
        // options means nothing to a scenario author.
        if let Some(i) = message.rfind(" at line ") {
            if message[i..].contains(", column ") {
                message.truncate(i);
            }
        }
        let message = message.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        let (pos, label) = match e.location() {
            Some(l) => (
                Pos {
                    line: l.line() as u32,
                    col: l.column() as u32,
                    offset: l.span().byte_offset().unwrap_or(0) as usize,
                    len: l.span().byte_len().unwrap_or(0) as usize,
                },
                "YAML error",
            ),
            None => (
                Pos {
                    line: 1,
                    col: 1,
                    offset: 0,
                    len: 0,
                },
                "YAML error",
            ),
        };
        self.err_label(pos, label, format!("invalid YAML: {message}"));
    }

    // -- typed readers: each reports its own problem and returns None on failure --

    /// A map's entries, reporting non-string keys and keys not in `allowed`.
    fn map<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.err_label(
                node.pos,
                "expected a map",
                format!("{what} must be a map, got {}", node.type_name()),
            );
            return None;
        };
        let mut fields = Vec::new();
        for (k, v) in entries {
            let Some(key) = k.as_str() else {
                self.err(
                    k.pos,
                    format!("keys in {what} must be strings, got {}", k.type_name()),
                );
                continue;
            };
            if !allowed.is_empty() && !allowed.contains(&key) {
                let hint = super::suggest(key, allowed.iter().copied())
                    .map(|s| format!("; did you mean '{s}'?"))
                    .unwrap_or_default();
                self.err_label(
                    k.pos,
                    "unknown field",
                    format!(
                        "unknown field '{key}' in {what}{hint} (expected one of: {})",
                        allowed.join(", ")
                    ),
                );
                continue;
            }
            fields.push((key, k, v));
        }
        Some(Fields { node, fields })
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s) => Some(s.clone()),
            _ => {
                self.err(
                    node.pos,
                    format!("{what} must be a string, got {}", node.type_name()),
                );
                None
            }
        }
    }

    /// A string that is used as-is (no `${...}` rendering).
    fn plain(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = self.string(node, what)?;
        if s.contains("${") {
            self.err(
                node.pos,
                format!("{what} is not templated: '${{...}}' is not supported here"),
            );
            return None;
        }
        Some(s)
    }

    fn name_like(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = self.plain(node, what)?;
        if s.is_empty() {
            self.err(node.pos, format!("{what} must not be empty"));
            return None;
        }
        Some(s)
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.err(
                    node.pos,
                    format!("{what} must be true or false, got {}", node.type_name()),
                );
                None
            }
        }
    }

    fn u16(&mut self, node: &Node, what: &str) -> Option<u16> {
        match node.kind {
            Kind::Int(i) if (0..=i64::from(u16::MAX)).contains(&i) => Some(i as u16),
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "{what} must be an integer from 0 to 65535, got {}",
                        describe(node)
                    ),
                );
                None
            }
        }
    }

    /// A whole number of at least 1 that fits `T`.
    fn count<T: TryFrom<u64>>(&mut self, node: &Node, what: &str) -> Option<T> {
        let n = match node.kind {
            Kind::Int(i) if i >= 1 => u64::try_from(i).ok(),
            Kind::UInt(u) if u >= 1 => Some(u),
            _ => None,
        };
        match n.and_then(|n| T::try_from(n).ok()) {
            Some(v) => Some(v),
            None => {
                self.err(
                    node.pos,
                    format!(
                        "{what} must be a whole number of at least 1, got {}",
                        describe(node)
                    ),
                );
                None
            }
        }
    }

    /// A size in bytes: a number or a string with a unit (`64KiB`).
    fn size(&mut self, node: &Node, what: &str) -> Option<usize> {
        let parsed = match &node.kind {
            Kind::Int(i) if *i > 0 => Ok(*i as usize),
            Kind::UInt(u) => usize::try_from(*u).map_err(|_| format!("{u} is too large")),
            Kind::Str(s) => parse_size(s),
            _ => Err(format!(
                "expected a size like 64KiB or 65536, got {}",
                describe(node)
            )),
        };
        match parsed {
            Ok(0) => {
                self.err(node.pos, format!("{what} must be more than 0"));
                None
            }
            Ok(n) => Some(n),
            Err(e) => {
                self.err(node.pos, format!("{what}: {e}"));
                None
            }
        }
    }

    fn status(&mut self, node: &Node, what: &str) -> Option<u16> {
        let code = self.u16(node, what)?;
        if !(100..=599).contains(&code) {
            self.err(
                node.pos,
                format!("{what} must be an HTTP status from 100 to 599, got {code}"),
            );
            return None;
        }
        Some(code)
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        match &node.kind {
            Kind::Str(s) if s.contains("${") => self.duration_template(node, s, what),
            Kind::Str(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err_label(node.pos, "bad duration", format!("{what}: {e}"));
                    None
                }
            },
            _ => {
                self.err_label(
                    node.pos,
                    "bad duration",
                    format!(
                        "{what} must be a duration with a unit like 200ms or 5s, got {}",
                        describe(node)
                    ),
                );
                None
            }
        }
    }

    /// A duration given as a template (`${quiet}`, `${env:WAIT:-2s}`), resolved now: see
    /// [`DurationVars`].
    fn duration_template(&mut self, node: &Node, s: &str, what: &str) -> Option<Duration> {
        let template = match Template::string(s) {
            Ok(t) => t,
            Err(e) => {
                self.err_label(node.pos, "bad placeholder", e.to_string());
                return None;
            }
        };
        if self.duration_vars.is_empty() {
            self.err_label(
                node.pos,
                "bad duration",
                format!("{what}: a duration here cannot use variables, got {s:?}"),
            );
            return None;
        }
        let mut first = None;
        for (i, vars) in self.duration_vars.clone().iter().enumerate() {
            let resolver = DurationResolver {
                vars,
                depth: std::cell::Cell::new(0),
            };
            let variant = if vars.label.is_empty() {
                String::new()
            } else {
                format!(" ({})", vars.label)
            };
            let parsed = match template.render_string(&resolver) {
                Ok(text) => parse_duration(&text).map_err(|e| format!("{what}: {s:?} gives {e}")),
                Err(super::template::TemplateError::Unresolved { name })
                    if name.strip_prefix("env:").is_some_and(|n| {
                        vars.requires.iter().any(|r| r == n) && std::env::var_os(n).is_none()
                    }) =>
                {
                    // Skipped at run time for the unset variable; the value is never used.
                    Ok(Duration::ZERO)
                }
                Err(e) => Err(format!(
                    "{what}: {e} in {s:?} (a duration can use --var, suite and scenario vars and ${{env:NAME}}, resolved when loading)"
                )),
            };
            match parsed {
                Ok(d) if i == 0 => first = Some(d),
                Ok(_) => {}
                Err(e) => {
                    self.err_label(node.pos, "bad duration", format!("{e}{variant}"));
                    return None;
                }
            }
        }
        first
    }

    fn str_list(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        let Kind::Seq(items) = &node.kind else {
            self.err(
                node.pos,
                format!("{what} must be a list of strings, got {}", node.type_name()),
            );
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            out.push(self.name_like(item, &format!("an entry of {what}"))?);
        }
        Some(out)
    }

    /// A template; syntax errors point at the exact string, placeholders are recorded
    /// for the variable check.
    fn template(&mut self, node: &Node) -> Option<Template> {
        let ok = self.scan_templates(node);
        let json = match node.to_json() {
            Ok(v) => v,
            Err((pos, msg)) => {
                self.err(pos, msg);
                return None;
            }
        };
        if !ok {
            return None;
        }
        Template::parse(json).ok()
    }

    fn scan_templates(&mut self, node: &Node) -> bool {
        match &node.kind {
            Kind::Str(s) => match segments(s) {
                Ok(segs) => {
                    for seg in segs {
                        if let Segment::Var(name) = seg {
                            for n in super::template::nested_names(name) {
                                self.placeholders.push((n.to_string(), node.pos));
                            }
                        }
                    }
                    true
                }
                Err(e) => {
                    self.err_label(node.pos, "bad placeholder", e.to_string());
                    false
                }
            },
            // Every string is scanned (no short-circuit) so all problems get reported.
            Kind::Seq(items) => items
                .iter()
                .map(|n| self.scan_templates(n))
                .fold(true, |a, b| a & b),
            Kind::Map(entries) => entries
                .iter()
                .map(|(_, v)| self.scan_templates(v))
                .fold(true, |a, b| a & b),
            _ => true,
        }
    }

    fn string_template(&mut self, node: &Node, what: &str) -> Option<Template> {
        match node.kind {
            Kind::Str(_) => self.template(node),
            _ => {
                self.err(
                    node.pos,
                    format!("{what} must be a string, got {}", node.type_name()),
                );
                None
            }
        }
    }

    /// A map of scalar templates (headers, query).
    fn template_map(&mut self, node: &Node, what: &str) -> Option<BTreeMap<String, Template>> {
        let fields = self.map(node, what, &[])?;
        let mut out = BTreeMap::new();
        for (k, _, v) in fields.fields {
            if matches!(v.kind, Kind::Map(_) | Kind::Seq(_) | Kind::Null) {
                self.err(
                    v.pos,
                    format!(
                        "{what}: the value of '{k}' must be a scalar, got {}",
                        v.type_name()
                    ),
                );
                continue;
            }
            if let Some(t) = self.template(v) {
                out.insert(k.to_string(), t);
            }
        }
        Some(out)
    }

    fn match_spec(&mut self, node: &Node) -> Option<MatchSpec> {
        let spec = MatchSpec(self.template(node)?);
        match spec.validate() {
            Ok(()) => Some(spec),
            Err(MatcherError::Invalid { pointer, reason }) => {
                // An unknown operator is pointed at by its key; a bad argument by its value.
                let at_key =
                    reason.starts_with("unknown operator") || reason.starts_with("an object mixes");
                let at = node.at_pointer(&pointer, at_key);
                self.err_label(at.pos, "bad matcher", reason);
                None
            }
            Err(MatcherError::Template(e)) => {
                self.err(node.pos, e.to_string());
                None
            }
        }
    }

    fn captures(&mut self, node: &Node) -> Captures {
        let mut out = Captures::new();
        let Some(fields) = self.map(node, "capture", &[]) else {
            return out;
        };
        for (name, k, v) in fields.fields {
            if !valid_var_name(name) {
                self.err(
                    k.pos,
                    format!("capture name '{name}' must use letters, digits, '_', '-' or '.'"),
                );
                continue;
            }
            let Some(path) = self.plain(v, &format!("capture '{name}'")) else {
                continue;
            };
            let parsed = if path.starts_with('$') {
                match serde_json_path::JsonPath::parse(&path) {
                    Ok(_) => Some(CapturePath::JsonPath(path)),
                    Err(e) => {
                        self.err_label(
                            v.pos,
                            "bad JSONPath",
                            format!("invalid JSONPath {path:?}: {e}"),
                        );
                        None
                    }
                }
            } else if path.is_empty() || path.starts_with('/') {
                Some(CapturePath::Pointer(path))
            } else {
                self.err(
                    v.pos,
                    format!(
                        "capture '{name}': {path:?} is neither a JSON pointer (starts with '/') nor a JSONPath (starts with '$'); did you mean '/{path}'?"
                    ),
                );
                None
            };
            if let Some(p) = parsed {
                out.insert(name.to_string(), p);
            }
        }
        out
    }

    /// Checks the recorded placeholders against what is known; clears them.
    fn check_vars(&mut self, known: &Known) {
        for (name, pos) in std::mem::take(&mut self.placeholders) {
            if let Some((prefix, arg)) = name.split_once(':') {
                if !VAR_PREFIXES.contains(&prefix) {
                    let hint = super::suggest(prefix, VAR_PREFIXES.iter().copied())
                        .map(|s| format!("; did you mean '{s}:'?"))
                        .unwrap_or_default();
                    self.err_label(
                        pos,
                        "unknown variable",
                        format!(
                            "unknown variable prefix '{prefix}:' in '${{{name}}}'{hint} (prefixes: {})",
                            VAR_PREFIXES.iter().map(|p| format!("{p}:")).collect::<Vec<_>>().join(", ")
                        ),
                    );
                } else if arg.contains("${") {
                    // Known only once its nested placeholders are rendered (they are checked
                    // as names of their own).
                } else if prefix == "repeat" {
                    if let Err(e) = crate::scenario::template::parse_repeat(arg) {
                        self.err_label(pos, "bad repeat", format!("'${{{name}}}': {e}"));
                    }
                } else if prefix == "env"
                    && !arg.contains(":-")
                    && known.check_env
                    && !known.requires.contains(arg)
                    && std::env::var_os(arg).is_none()
                {
                    self.err_label(
                        pos,
                        "unset variable",
                        format!(
                            "environment variable '{arg}' is not set (list it in the scenario's `requires:` to skip the scenario when it is unset)"
                        ),
                    );
                }
                continue;
            }
            if BUILTIN_VARS.contains(&name.as_str()) || known.names.contains(&name) {
                continue;
            }
            let candidates: Vec<&str> = known
                .names
                .iter()
                .map(String::as_str)
                .chain(BUILTIN_VARS.iter().copied())
                .collect();
            let hint = super::suggest(&name, candidates.iter().copied())
                .map(|s| format!("; did you mean '{s}'?"))
                .unwrap_or_default();
            self.err_label(
                pos,
                "unknown variable",
                format!(
                    "unknown variable '{name}'{hint} (known: {})",
                    candidates.join(", ")
                ),
            );
        }
    }
}

fn describe(node: &Node) -> String {
    match node.scalar_text() {
        Some(t) if matches!(node.kind, Kind::Str(_)) => format!("{t:?}"),
        Some(t) => t,
        None => node.type_name().to_string(),
    }
}

/// The checked entries of a map.
struct Fields<'n> {
    node: &'n Node,
    fields: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.fields
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }

    fn key_pos(&self, key: &str) -> Option<Pos> {
        self.fields
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, k, _)| k.pos)
    }

    fn require(&self, cx: &mut Cx, key: &str, what: &str) -> Option<&'n Node> {
        let v = self.get(key);
        if v.is_none() {
            cx.err_label(
                self.node.pos,
                "missing field",
                format!("{what} needs '{key}'"),
            );
        }
        v
    }

    /// Exactly one of `keys` (or at most one when `optional`).
    fn one_of(
        &self,
        cx: &mut Cx,
        keys: &[&str],
        what: &str,
        optional: bool,
    ) -> Option<(&'n str, &'n Node)> {
        let present: Vec<_> = self
            .fields
            .iter()
            .filter(|(k, _, _)| keys.contains(k))
            .collect();
        match present.as_slice() {
            [] if optional => None,
            [] => {
                cx.err_label(
                    self.node.pos,
                    "missing field",
                    format!("{what} needs one of: {}", keys.join(", ")),
                );
                None
            }
            [(k, _, v)] => Some((k, v)),
            [_, (k2, kn, _), ..] => {
                let given: Vec<&str> = present.iter().map(|(k, _, _)| *k).collect();
                cx.err(
                    kn.pos,
                    format!(
                        "{what} takes only one of {} (got {}); remove '{k2}'",
                        keys.join(", "),
                        given.join(" and ")
                    ),
                );
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Suite config.

impl Default for SuiteConfig {
    fn default() -> Self {
        SuiteConfig {
            file: None,
            target: None,
            http_base: None,
            schemas_dir: None,
            discriminator: "/type".to_string(),
            ignore: Vec::new(),
            timeouts: Timeouts::default(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            auth: AuthConfig::default(),
            vars: BTreeMap::new(),
            requires: Vec::new(),
            target_required: false,
            asyncapi: None,
            check_sent: true,
            embedded: EmbeddedConfig::default(),
            codec: Codecs::default(),
            jobs: None,
            timing: TimingNames::default(),
        }
    }
}

/// The suite config's top-level fields (kept in step with `schemas/suite.schema.json` by a test).
#[cfg(test)]
pub(crate) fn config_fields() -> &'static [&'static str] {
    CONFIG_FIELDS
}

const CONFIG_FIELDS: &[&str] = &[
    "requires",
    "target_required",
    "asyncapi",
    "check_sent",
    "target",
    "http_base",
    "schemas",
    "rules",
    "discriminator",
    "ignore",
    "timeouts",
    "max_frame_bytes",
    "auth",
    "vars",
    "embedded",
    "codec",
    "jobs",
    "timing",
];

/// Returns the config and the rules file it names (if any; checked to exist).
fn convert_config(
    cx: &mut Cx,
    root: &Node,
    dir: &Path,
    opts: &LoadOptions,
) -> (SuiteConfig, Option<PathBuf>) {
    let mut config = SuiteConfig {
        file: Some(cx.file.to_path_buf()),
        ..SuiteConfig::default()
    };
    let mut rules = None;
    if root.is_null() {
        return (config, rules);
    }
    let Some(f) = cx.map(root, "the suite config", CONFIG_FIELDS) else {
        return (config, rules);
    };
    // Vars first: the other fields may use them.
    if let Some(v) = f.get("vars") {
        config.vars = convert_vars(cx, v);
    }
    if let Some(v) = f.get("target") {
        config.target = cx.string_template(v, "target");
    }
    if let Some(v) = f.get("http_base") {
        config.http_base = cx.string_template(v, "http_base");
    }
    if let Some(v) = f.get("schemas") {
        if let Some(s) = cx.plain(v, "schemas") {
            let p = dir.join(s);
            if p.is_dir() {
                config.schemas_dir = Some(p);
            } else {
                cx.err(
                    v.pos,
                    format!("schemas folder {} does not exist", p.display()),
                );
            }
        }
    }
    if let Some(v) = f.get("requires") {
        config.requires = cx.str_list(v, "requires").unwrap_or_default();
    }
    if let Some(v) = f.get("target_required") {
        config.target_required = cx.bool(v, "target_required").unwrap_or(false);
    }
    if let Some(v) = f.get("check_sent") {
        config.check_sent = cx.bool(v, "check_sent").unwrap_or(true);
    }
    if let Some(v) = f.get("asyncapi") {
        if let Some(s) = cx.plain(v, "asyncapi") {
            let p = dir.join(s);
            if p.is_file() {
                config.asyncapi = Some(p);
            } else {
                cx.err(
                    v.pos,
                    format!("AsyncAPI document {} does not exist", p.display()),
                );
            }
        }
    }
    if let Some(v) = f.get("rules") {
        if let Some(s) = cx.plain(v, "rules") {
            let p = dir.join(s);
            if p.is_file() {
                rules = Some(p);
            } else {
                cx.err(v.pos, format!("rules file {} does not exist", p.display()));
            }
        }
    }
    if let Some(v) = f.get("discriminator") {
        if let Some(s) = cx.name_like(v, "discriminator") {
            config.discriminator = if s.starts_with('/') {
                s
            } else {
                format!("/{s}")
            };
        }
    }
    if let Some(v) = f.get("ignore") {
        config.ignore = cx.str_list(v, "ignore").unwrap_or_default();
    }
    if let Some(v) = f.get("timeouts") {
        if let Some(t) = cx.map(v, "timeouts", &["connect", "expect", "http"]) {
            for (key, slot) in [
                ("connect", &mut config.timeouts.connect),
                ("expect", &mut config.timeouts.expect),
                ("http", &mut config.timeouts.http),
            ] {
                if let Some(n) = t.get(key) {
                    if let Some(d) = cx.duration(n, &format!("timeouts.{key}")) {
                        *slot = d;
                    }
                }
            }
        }
    }
    if let Some(v) = f.get("max_frame_bytes") {
        let parsed = match &v.kind {
            Kind::Int(i) if *i > 0 => Ok(*i as usize),
            Kind::Str(s) => parse_size(s),
            _ => Err(format!(
                "expected a size like 16MiB or 65536, got {}",
                describe(v)
            )),
        };
        match parsed {
            Ok(0) => cx.err(v.pos, "max_frame_bytes must be more than 0"),
            Ok(n) => config.max_frame_bytes = n,
            Err(e) => cx.err(v.pos, format!("max_frame_bytes: {e}")),
        }
    }
    if let Some(v) = f.get("auth") {
        if let Some(a) = cx.map(v, "auth", &["jwt_secret", "token", "claims"]) {
            if let Some(n) = a.get("jwt_secret") {
                config.auth.jwt_secret = cx.string_template(n, "auth.jwt_secret");
            }
            if let Some(n) = a.get("claims") {
                if matches!(n.kind, Kind::Map(_)) {
                    config.auth.claims = cx.template(n);
                } else {
                    cx.err(
                        n.pos,
                        format!(
                            "auth.claims must map claim names to values, got {}",
                            n.type_name()
                        ),
                    );
                }
            }
            if let Some(n) = a.get("token") {
                config.auth.token = cx.string_template(n, "auth.token");
            }
        }
    }
    if let Some(v) = f.get("embedded") {
        config.embedded = convert_embedded(cx, v, &config.vars);
    }
    if let Some(v) = f.get("codec") {
        if let Some(c) = convert_codec(cx, v) {
            config.codec = c;
        }
    }
    if let Some(v) = f.get("jobs") {
        config.jobs = cx.count::<usize>(v, "jobs");
    }
    if let Some(v) = f.get("timing") {
        if let Some(t) = convert_timing_names(cx, v) {
            config.timing = t;
        }
    }
    // The config is read before any target is known; env vars there may be unset (that
    // simply leaves the feature unconfigured), so only names are checked.
    let mut known = Known::default();
    known.names.extend(config.vars.keys().cloned());
    known.names.extend(opts.vars.keys().cloned());
    cx.check_vars(&known);
    (config, rules)
}

/// `codec: text` (both sides) or `codec: { server: text, client: json }`.
fn convert_codec(cx: &mut Cx, v: &Node) -> Option<Codecs> {
    let one = |cx: &mut Cx, n: &Node, what: &str| -> Option<Codec> {
        let s = cx.plain(n, what)?;
        match Codec::parse(&s) {
            Some(c) => Some(c),
            None => {
                let hint = super::suggest(&s, Codec::NAMES.iter().copied())
                    .map(|h| format!("; did you mean '{h}'?"))
                    .unwrap_or_default();
                cx.err(
                    n.pos,
                    format!(
                        "{what} must be one of {}, got '{s}'{hint}",
                        Codec::NAMES.join(", ")
                    ),
                );
                None
            }
        }
    };
    match &v.kind {
        Kind::Str(_) => one(cx, v, "codec").map(|c| Codecs {
            server: c,
            client: c,
        }),
        Kind::Map(_) => {
            let f = cx.map(v, "codec", &["server", "client"])?;
            let mut out = Codecs::default();
            if let Some(n) = f.get("server") {
                out.server = one(cx, n, "codec.server")?;
            }
            if let Some(n) = f.get("client") {
                out.client = one(cx, n, "codec.client")?;
            }
            Some(out)
        }
        _ => {
            cx.err(
                v.pos,
                format!(
                    "codec must be json, text or mixed, or a map {{server: ..., client: ...}}; got {}",
                    v.type_name()
                ),
            );
            None
        }
    }
}

/// `timing: { request: [message], chunk: [token], terminal: [...], cancel: [...], cancel_ack: [...] }`.
fn convert_timing_names(cx: &mut Cx, v: &Node) -> Option<TimingNames> {
    let f = cx.map(v, "timing", TimingNames::FIELDS)?;
    let mut t = TimingNames::default();
    let mut custom = false;
    for (key, slot) in [
        ("request", &mut t.request),
        ("chunk", &mut t.chunk),
        ("terminal", &mut t.terminal),
        ("cancel", &mut t.cancel),
        ("cancel_ack", &mut t.cancel_ack),
    ] {
        if let Some(n) = f.get(key) {
            *slot = cx.str_list(n, &format!("timing.{key}"))?;
            custom = true;
        }
    }
    // The reference protocol's `turn_id` condition only goes with its own names.
    if custom {
        t.terminal_needs_turn_id = false;
    }
    Some(t)
}

/// `embedded: { server: {...}, vars: {...} }` (not yet applied: see [`load_suite_for_run`]).
fn convert_embedded(
    cx: &mut Cx,
    node: &Node,
    suite_vars: &BTreeMap<String, Template>,
) -> EmbeddedConfig {
    let mut out = EmbeddedConfig::default();
    let Some(f) = cx.map(node, "embedded", &["server", "vars"]) else {
        return out;
    };
    if let Some(n) = f.get("server") {
        if let Some(s) = cx.map(n, "embedded.server", EmbeddedServer::FIELDS) {
            let srv = &mut out.server;
            for (key, _, v) in &s.fields {
                let what = format!("embedded.server.{key}");
                match *key {
                    "auth_timeout" => srv.auth_timeout = cx.duration(v, &what),
                    "idle_timeout" => srv.idle_timeout = cx.duration(v, &what),
                    "reply_timeout" => srv.reply_timeout = cx.duration(v, &what),
                    "token_pace" => srv.token_pace = cx.duration(v, &what),
                    "rate_limit_per_sec" => srv.rate_limit_per_sec = cx.count(v, &what),
                    "rate_burst" => srv.rate_burst = cx.count(v, &what),
                    "max_connections_per_user" => srv.max_connections_per_user = cx.count(v, &what),
                    "max_message_bytes" => srv.max_message_bytes = cx.size(v, &what),
                    "hard_max_message_bytes" => srv.hard_max_message_bytes = cx.size(v, &what),
                    _ => unreachable!("cx.map allows only EmbeddedServer::FIELDS"),
                }
            }
            // Combinations the server would refuse at start (exit 3) are a mistake in this file.
            if let Err(e) = out
                .server
                .apply(reference_server::Config::default())
                .validate()
            {
                cx.err_label(
                    n.pos,
                    "bad server settings",
                    format!("embedded.server: {e}"),
                );
            }
        }
    }
    if let Some(n) = f.get("vars") {
        out.vars = convert_vars(cx, n);
        // Only replacements: a var that exists only for the embedded server would leave the same
        // scenarios unloadable against any other server.
        if let Kind::Map(entries) = &n.kind {
            for (k, _) in entries {
                if let Some(name) = k.as_str() {
                    if out.vars.contains_key(name) && !suite_vars.contains_key(name) {
                        let hint = super::suggest(name, suite_vars.keys().map(String::as_str))
                            .map(|s| format!("; did you mean '{s}'?"))
                            .unwrap_or_default();
                        cx.err_label(
                            k.pos,
                            "unknown variable",
                            format!(
                                "embedded.vars.{name} replaces nothing: define '{name}' in `vars` (the value for other servers) first{hint}"
                            ),
                        );
                    }
                }
            }
        }
    }
    out
}

fn convert_vars(cx: &mut Cx, node: &Node) -> BTreeMap<String, Template> {
    let mut out = BTreeMap::new();
    let Some(f) = cx.map(node, "vars", &[]) else {
        return out;
    };
    for (name, k, v) in f.fields {
        if !valid_var_name(name) {
            cx.err(
                k.pos,
                format!("variable name '{name}' must use letters, digits, '_', '-' or '.'"),
            );
            continue;
        }
        if BUILTIN_VARS.contains(&name) {
            cx.err(
                k.pos,
                format!("'{name}' is a builtin variable and cannot be redefined"),
            );
            continue;
        }
        if let Some(t) = cx.template(v) {
            out.insert(name.to_string(), t);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

const SCENARIO_FIELDS: &[&str] = &[
    "name",
    "description",
    "tags",
    "level",
    "requires",
    "vars",
    "steps",
];

fn convert_scenario(
    cx: &mut Cx,
    root: &Node,
    config: &SuiteConfig,
    opts: &LoadOptions,
) -> Option<Scenario> {
    let f = cx.map(root, "a scenario", SCENARIO_FIELDS)?;
    let name_node = f.require(cx, "name", "a scenario");
    let name = name_node.and_then(|n| {
        let s = cx.plain(n, "name")?;
        if !valid_scenario_name(&s) {
            cx.err(
                n.pos,
                format!("scenario name {s:?} must match [a-z0-9._-]+"),
            );
            return None;
        }
        Some(s)
    });
    let loc = cx.loc(f.key_pos("name").unwrap_or(root.pos));
    let description = f
        .get("description")
        .and_then(|n| cx.string(n, "description"));
    let tags = f
        .get("tags")
        .and_then(|n| cx.str_list(n, "tags"))
        .unwrap_or_default();
    let level = match f.get("level") {
        None => Level::Must,
        Some(n) => match n.as_str() {
            Some("must") => Level::Must,
            Some("should") => Level::Should,
            Some("may") => Level::May,
            _ => {
                cx.err(
                    n.pos,
                    format!(
                        "level must be one of must, should, may; got {}",
                        describe(n)
                    ),
                );
                Level::Must
            }
        },
    };
    let mut requires = f
        .get("requires")
        .and_then(|n| cx.str_list(n, "requires"))
        .unwrap_or_default();
    // The suite's `requires` apply to every scenario (listed first, without repeats).
    let mut all = config.requires.clone();
    all.extend(
        requires
            .into_iter()
            .filter(|r| !config.requires.contains(r)),
    );
    requires = all;
    let vars = f
        .get("vars")
        .map(|n| convert_vars(cx, n))
        .unwrap_or_default();
    for d in &mut cx.duration_vars {
        d.scenario = vars.clone();
        d.requires = requires.clone();
    }

    let mut known = Known {
        check_env: true,
        requires: requires.iter().cloned().collect(),
        ..Known::default()
    };
    known.names.extend(config.vars.keys().cloned());
    known.names.extend(opts.vars.keys().cloned());
    known.names.extend(vars.keys().cloned());
    cx.check_vars(&known);
    check_var_cycles(cx, f.get("vars"), &vars, &config.vars);

    let mut steps = Vec::new();
    if let Some(list) = f.require(cx, "steps", "a scenario") {
        match &list.kind {
            Kind::Seq(items) if items.is_empty() => cx.err(list.pos, "steps must not be empty"),
            Kind::Seq(items) => {
                for item in items {
                    let step = convert_step(cx, item);
                    cx.check_vars(&known);
                    if let Some(step) = step {
                        // Captures become known to the steps after this one.
                        if let Some(c) = step_captures(&step.kind) {
                            known.names.extend(c.keys().cloned());
                        }
                        steps.push(step);
                    }
                }
            }
            _ => cx.err(
                list.pos,
                format!("steps must be a list, got {}", list.type_name()),
            ),
        }
    }
    Some(Scenario {
        name: name?,
        description,
        tags,
        level,
        requires,
        vars,
        steps,
        loc,
    })
}

/// Reports a variable that refers to itself through other vars (it could never render).
fn check_var_cycles(
    cx: &mut Cx,
    node: Option<&Node>,
    vars: &BTreeMap<String, Template>,
    suite: &BTreeMap<String, Template>,
) {
    let lookup = |n: &str| vars.get(n).or_else(|| suite.get(n));
    for (name, t) in vars {
        let mut stack: Vec<String> = t.placeholders();
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if n == *name {
                let pos = node
                    .and_then(|v| match &v.kind {
                        Kind::Map(e) => e
                            .iter()
                            .find(|(k, _)| k.as_str() == Some(name))
                            .map(|(k, _)| k.pos),
                        _ => None,
                    })
                    .unwrap_or_default();
                cx.err(
                    pos,
                    format!("variable '{name}' refers to itself (through ${{...}} in vars)"),
                );
                break;
            }
            if seen.insert(n.clone()) {
                if let Some(t) = lookup(&n) {
                    stack.extend(t.placeholders());
                }
            }
        }
    }
}

fn step_captures(kind: &StepKind) -> Option<&Captures> {
    match kind {
        StepKind::Http(s) => Some(&s.capture),
        StepKind::Expect(s) => Some(&s.capture),
        StepKind::Collect(s) => Some(&s.capture),
        _ => None,
    }
}

fn convert_step(cx: &mut Cx, node: &Node) -> Option<Step> {
    let Kind::Map(entries) = &node.kind else {
        let hint = match node.as_str() {
            Some(s) if STEP_KINDS.contains(&s) => format!(" (write `- {s}: {{...}}`)"),
            _ => String::new(),
        };
        cx.err(
            node.pos,
            format!(
                "a step must be a map with one key, the step kind, got {}{hint}",
                node.type_name()
            ),
        );
        return None;
    };
    let kinds: Vec<&(Node, Node)> = entries
        .iter()
        .filter(|(k, _)| k.as_str().is_some_and(|s| STEP_KINDS.contains(&s)))
        .collect();
    if entries.len() != 1 {
        let keys: Vec<String> = entries
            .iter()
            .filter_map(|(k, _)| k.scalar_text())
            .collect();
        let msg = if kinds.len() == 1 {
            let kind = kinds[0].0.as_str().unwrap_or_default();
            let extra: Vec<&str> = keys
                .iter()
                .map(String::as_str)
                .filter(|k| *k != kind)
                .collect();
            format!(
                "a step is a map with exactly one key, the step kind; move {} inside the '{kind}' step (`- {kind}: {{ {}: ..., ... }}`)",
                extra.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", "),
                extra.first().unwrap_or(&"name"),
            )
        } else {
            format!(
                "a step is a map with exactly one key, the step kind; got {} keys: {}",
                keys.len(),
                keys.join(", ")
            )
        };
        let pos = entries.get(1).map(|(k, _)| k.pos).unwrap_or(node.pos);
        cx.err(pos, msg);
        return None;
    }
    let (key, body) = &entries[0];
    let Some(kind) = key.as_str() else {
        cx.err(
            key.pos,
            format!("a step kind must be a string, got {}", key.type_name()),
        );
        return None;
    };
    let pos = key.pos;
    let mut name = None;
    let step = match kind {
        "http" => convert_http(cx, body, &mut name).map(StepKind::Http),
        "connect" => convert_connect(cx, body, &mut name).map(StepKind::Connect),
        "send" => convert_send(cx, body, &mut name).map(StepKind::Send),
        "expect" => convert_expect(cx, body, &mut name).map(StepKind::Expect),
        "expect_pong" => convert_expect_pong(cx, body, &mut name).map(StepKind::ExpectPong),
        "collect" => convert_collect(cx, body, &mut name).map(StepKind::Collect),
        "expect_none" => convert_expect_none(cx, body, &mut name).map(StepKind::ExpectNone),
        "expect_close" => convert_expect_close(cx, body, &mut name).map(StepKind::ExpectClose),
        "close" => convert_close(cx, body, &mut name).map(StepKind::Close),
        "sleep" => convert_sleep(cx, body, &mut name).map(StepKind::Sleep),
        "timing" => convert_timing(cx, body, &mut name).map(StepKind::Timing),
        other => {
            let hint = super::suggest(other, STEP_KINDS.iter().copied())
                .map(|s| format!("; did you mean '{s}'?"))
                .unwrap_or_default();
            cx.err_label(
                pos,
                "unknown step",
                format!(
                    "unknown step kind '{other}'{hint} (step kinds: {})",
                    STEP_KINDS.join(", ")
                ),
            );
            None
        }
    }?;
    Some(Step {
        loc: cx.loc(pos),
        name,
        kind: step,
    })
}

/// Reads the common `name` and `conn` fields of a step body.
fn common(cx: &mut Cx, f: &Fields<'_>, name: &mut Option<String>) -> Option<String> {
    if let Some(n) = f.get("name") {
        *name = cx.plain(n, "step name");
    }
    match f.get("conn") {
        Some(n) => cx.name_like(n, "conn"),
        None => Some("main".to_string()),
    }
}

fn timeout(cx: &mut Cx, f: &Fields<'_>) -> Option<Duration> {
    f.get("timeout").and_then(|n| cx.duration(n, "timeout"))
}

fn url(cx: &mut Cx, f: &Fields<'_>, what: &str, required: bool) -> Option<Url> {
    match f.one_of(cx, &["path", "url"], what, !required) {
        Some(("path", n)) => cx.string_template(n, "path").map(Url::Path),
        Some((_, n)) => cx.string_template(n, "url").map(Url::Absolute),
        None if required => None,
        // The target (or base URL) itself.
        None => Some(Url::Path(Template::literal(Value::String(String::new())))),
    }
}

/// Reports a problem found after a body's fields were read, and fails the step.
fn failed<T>(cx: &mut Cx, before: usize, value: T) -> Option<T> {
    (cx.problems.len() == before).then_some(value)
}

const HTTP_FIELDS: &[&str] = &[
    "name", "method", "path", "url", "headers", "query", "json", "body", "status", "match",
    "capture", "timeout",
];

fn convert_http(cx: &mut Cx, node: &Node, name: &mut Option<String>) -> Option<HttpStep> {
    let before = cx.problems.len();
    let f = cx.map(node, "an http step", HTTP_FIELDS)?;
    if let Some(n) = f.get("name") {
        *name = cx.plain(n, "step name");
    }
    let method = match f.get("method") {
        None => "GET".to_string(),
        Some(n) => {
            let m = cx.name_like(n, "method").unwrap_or_default();
            if !m.is_empty() && !m.chars().all(|c| c.is_ascii_alphabetic()) {
                cx.err(n.pos, format!("method {m:?} is not an HTTP method"));
            }
            m.to_ascii_uppercase()
        }
    };
    let url = url(cx, &f, "an http step", true);
    let headers = f
        .get("headers")
        .and_then(|n| cx.template_map(n, "headers"))
        .unwrap_or_default();
    let query = f
        .get("query")
        .and_then(|n| cx.template_map(n, "query"))
        .unwrap_or_default();
    let body = match f.one_of(cx, &["json", "body"], "an http step", true) {
        Some(("json", n)) => cx.template(n).map(HttpBody::Json),
        Some((_, n)) => cx.string_template(n, "body").map(HttpBody::Text),
        None => None,
    };
    let status = match f.get("status") {
        None => Vec::new(),
        Some(n) => match &n.kind {
            Kind::Seq(items) if !items.is_empty() => items
                .iter()
                .filter_map(|i| cx.status(i, "status"))
                .collect(),
            Kind::Seq(_) => {
                cx.err(n.pos, "status must not be an empty list");
                Vec::new()
            }
            _ => cx.status(n, "status").into_iter().collect(),
        },
    };
    let matcher = f.get("match").and_then(|n| cx.match_spec(n));
    let capture = f.get("capture").map(|n| cx.captures(n)).unwrap_or_default();
    let timeout = timeout(cx, &f);
    let step = HttpStep {
        method,
        url: url?,
        headers,
        query,
        body,
        status,
        matcher,
        capture,
        timeout,
    };
    failed(cx, before, step)
}

const CONNECT_FIELDS: &[&str] = &[
    "name",
    "conn",
    "path",
    "url",
    "query",
    "headers",
    "subprotocols",
    "expect_subprotocol",
    "expect_refusal",
    "timeout",
];

fn convert_connect(cx: &mut Cx, node: &Node, name: &mut Option<String>) -> Option<ConnectStep> {
    let before = cx.problems.len();
    let f = cx.map(node, "a connect step", CONNECT_FIELDS)?;
    let conn = common(cx, &f, name);
    let url = url(cx, &f, "a connect step", false);
    let query = f
        .get("query")
        .and_then(|n| cx.template_map(n, "query"))
        .unwrap_or_default();
    let headers = f
        .get("headers")
        .and_then(|n| cx.template_map(n, "headers"))
        .unwrap_or_default();
    let subprotocols = f
        .get("subprotocols")
        .and_then(|n| cx.str_list(n, "subprotocols"))
        .unwrap_or_default();
    let expect_subprotocol = f.get("expect_subprotocol").map(|n| {
        if n.is_null() {
            None
        } else {
            cx.name_like(n, "expect_subprotocol")
        }
    });
    let expect_refusal = f.get("expect_refusal").and_then(|n| {
        let r = cx.map(n, "expect_refusal", &["status", "body"])?;
        let status = r
            .require(cx, "status", "expect_refusal")
            .and_then(|s| cx.status(s, "expect_refusal.status"));
        let body = r.get("body").and_then(|b| cx.match_spec(b));
        Some(Refusal {
            status: status?,
            body,
        })
    });
    let timeout = timeout(cx, &f);
    let step = ConnectStep {
        conn: conn?,
        url: url?,
        query,
        headers,
        subprotocols,
        expect_subprotocol,
        expect_refusal,
        timeout,
    };
    failed(cx, before, step)
}

fn convert_send(cx: &mut Cx, node: &Node, name: &mut Option<String>) -> Option<SendStep> {
    let before = cx.problems.len();
    let f = cx.map(
        node,
        "a send step",
        &["name", "conn", "json", "text", "binary", "ping"],
    )?;
    let conn = common(cx, &f, name);
    let payload = match f.one_of(
        cx,
        &["json", "text", "binary", "ping"],
        "a send step",
        false,
    )? {
        ("json", n) => cx.template(n).map(SendPayload::Json),
        ("text", n) => cx.string_template(n, "text").map(SendPayload::Text),
        ("binary", n) => cx.plain(n, "binary").and_then(|s| {
            match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
                Ok(bytes) => Some(SendPayload::Binary(bytes)),
                Err(e) => {
                    cx.err(n.pos, format!("binary must be base64: {e}"));
                    None
                }
            }
        }),
        (_, n) => ping_payload(cx, n, "ping").map(SendPayload::Ping),
    };
    let step = SendStep {
        conn: conn?,
        payload: payload?,
    };
    failed(cx, before, step)
}

fn ping_payload(cx: &mut Cx, n: &Node, what: &str) -> Option<Vec<u8>> {
    let bytes = match n.kind {
        Kind::Null => Vec::new(),
        _ => cx.plain(n, what)?.into_bytes(),
    };
    // RFC 6455 §5.5: control frame payloads are at most 125 bytes.
    if bytes.len() > 125 {
        cx.err(
            n.pos,
            format!(
                "{what} payload is {} bytes; control frames carry at most 125",
                bytes.len()
            ),
        );
        return None;
    }
    Some(bytes)
}

fn convert_expect(cx: &mut Cx, node: &Node, name: &mut Option<String>) -> Option<ExpectStep> {
    let before = cx.problems.len();
    let f = cx.map(
        node,
        "an expect step",
        &[
            "name", "conn", "match", "text", "skip", "timeout", "capture",
        ],
    )?;
    let conn = common(cx, &f, name);
    let matcher = match (f.get("match"), f.get("text")) {
        (Some(_), Some(t)) => {
            cx.err(
                t.pos,
                "an expect step takes `match` or `text` (short for a `$text` event's text), not both",
            );
            None
        }
        (None, Some(t)) => cx.match_spec(t).map(|m| text_matcher(&cx.discriminator, m)),
        _ => f
            .require(cx, "match", "an expect step")
            .and_then(|n| cx.match_spec(n)),
    };
    let skip = f
        .get("skip")
        .map(|n| cx.bool(n, "skip").unwrap_or(true))
        .unwrap_or(true);
    let timeout = timeout(cx, &f);
    let capture = f.get("capture").map(|n| cx.captures(n)).unwrap_or_default();
    let step = ExpectStep {
        conn: conn?,
        matcher: matcher?,
        skip,
        timeout,
        capture,
    };
    failed(cx, before, step)
}

/// `text: <matcher>` → `match: {<discriminator>: $text, text: <matcher>}`.
fn text_matcher(discriminator: &str, m: MatchSpec) -> MatchSpec {
    let mut v = crate::codec::text_view(discriminator, "");
    if let Value::Object(o) = &mut v {
        o.insert("text".into(), m.0 .0);
    }
    MatchSpec(Template(v))
}

fn convert_expect_pong(
    cx: &mut Cx,
    node: &Node,
    name: &mut Option<String>,
) -> Option<ExpectPongStep> {
    let before = cx.problems.len();
    if node.is_null() {
        return Some(ExpectPongStep {
            conn: "main".into(),
            payload: None,
            timeout: None,
        });
    }
    let f = cx.map(
        node,
        "an expect_pong step",
        &["name", "conn", "payload", "timeout"],
    )?;
    let conn = common(cx, &f, name);
    let payload = f
        .get("payload")
        .and_then(|n| ping_payload(cx, n, "payload"));
    let timeout = timeout(cx, &f);
    failed(
        cx,
        before,
        ExpectPongStep {
            conn: conn?,
            payload,
            timeout,
        },
    )
}

const ASSERT_FIELDS: &[&str] = &[
    "count",
    "present",
    "absent",
    "order",
    "all_before",
    "concat",
    "each",
];

fn convert_collect(cx: &mut Cx, node: &Node, name: &mut Option<String>) -> Option<CollectStep> {
    let before = cx.problems.len();
    let f = cx.map(
        node,
        "a collect step",
        &[
            "name", "conn", "until", "quiet", "timeout", "capture", "assert",
        ],
    )?;
    let conn = common(cx, &f, name);
    let quiet = f.get("quiet").and_then(|n| cx.duration(n, "quiet"));
    let until = match f.get("until") {
        Some(n) => cx.match_spec(n).map(Some),
        None if f.get("quiet").is_some() => Some(None),
        None => {
            cx.err(
                node.pos,
                "a collect step needs `until` (the event that ends it) or `quiet` (the silence that ends it)",
            );
            None
        }
    };
    let timeout = timeout(cx, &f);
    let capture = f.get("capture").map(|n| cx.captures(n)).unwrap_or_default();
    let mut assert = CollectAssert::default();
    if let Some(a) = f
        .get("assert")
        .and_then(|n| cx.map(n, "assert", ASSERT_FIELDS))
    {
        if let Some(c) = a.get("count").and_then(|n| cx.map(n, "assert.count", &[])) {
            for (ty, _, v) in c.fields {
                if let Some(m) = cx.match_spec(v) {
                    assert.count.insert(ty.to_string(), m);
                }
            }
        }
        for (key, slot) in [
            ("present", &mut assert.present),
            ("absent", &mut assert.absent),
            ("order", &mut assert.order),
        ] {
            if let Some(n) = a.get(key) {
                *slot = cx.str_list(n, &format!("assert.{key}")).unwrap_or_default();
            }
        }
        if let Some(b) = a
            .get("all_before")
            .and_then(|n| cx.map(n, "assert.all_before", &[]))
        {
            for (ty, _, v) in b.fields {
                if let Some(other) = cx.name_like(v, &format!("assert.all_before.{ty}")) {
                    assert.all_before.insert(ty.to_string(), other);
                }
            }
        }
        if let Some(n) = a.get("concat") {
            assert.concat = convert_concat(cx, n);
        }
        if let Some(n) = a.get("each") {
            let items: Vec<&Node> = match &n.kind {
                Kind::Seq(items) => items.iter().collect(),
                _ => vec![n],
            };
            for item in items {
                let Some(e) = cx.map(item, "assert.each", &["type", "match"]) else {
                    continue;
                };
                let ty = e
                    .require(cx, "type", "assert.each")
                    .and_then(|t| cx.name_like(t, "assert.each.type"));
                let m = e
                    .require(cx, "match", "assert.each")
                    .and_then(|m| cx.match_spec(m));
                if let (Some(event_type), Some(matcher)) = (ty, m) {
                    assert.each.push(EachAssert {
                        event_type,
                        matcher,
                    });
                }
            }
        }
    }
    let step = CollectStep {
        conn: conn?,
        until: until?,
        quiet,
        timeout,
        capture,
        assert,
    };
    failed(cx, before, step)
}

fn pointer(cx: &mut Cx, n: &Node, what: &str) -> Option<String> {
    let s = cx.plain(n, what)?;
    if !s.is_empty() && !s.starts_with('/') {
        cx.err(
            n.pos,
            format!("{what} must be a JSON pointer like /content; did you mean '/{s}'?"),
        );
        return None;
    }
    Some(s)
}

fn convert_concat(cx: &mut Cx, n: &Node) -> Option<ConcatAssert> {
    let c = cx.map(n, "assert.concat", &["items", "field", "equals", "match"])?;
    let items = c
        .require(cx, "items", "assert.concat")
        .and_then(|v| cx.name_like(v, "concat.items"));
    let field = c
        .require(cx, "field", "assert.concat")
        .and_then(|v| pointer(cx, v, "concat.field"));
    let target = match (c.get("equals"), c.get("match")) {
        (Some(_), Some(m)) => {
            cx.err(
                m.pos,
                "assert.concat takes `equals` (another event's field) or `match` (a matcher), not both",
            );
            None
        }
        (None, Some(m)) => cx.match_spec(m).map(ConcatTarget::Match),
        (Some(e), None) => match cx.map(e, "concat.equals", &["event", "field"]) {
            Some(eq) => {
                let ev = eq
                    .require(cx, "event", "concat.equals")
                    .and_then(|v| cx.name_like(v, "concat.equals.event"));
                let ef = eq
                    .require(cx, "field", "concat.equals")
                    .and_then(|v| pointer(cx, v, "concat.equals.field"));
                match (ev, ef) {
                    (Some(event), Some(field)) => Some(ConcatTarget::Event { event, field }),
                    _ => None,
                }
            }
            None => None,
        },
        (None, None) => {
            cx.err(
                n.pos,
                "assert.concat needs `equals: {event, field}` or `match: <matcher>`",
            );
            None
        }
    };
    Some(ConcatAssert {
        items: items?,
        field: field?,
        target: target?,
    })
}

fn convert_expect_none(
    cx: &mut Cx,
    node: &Node,
    name: &mut Option<String>,
) -> Option<ExpectNoneStep> {
    let before = cx.problems.len();
    let f = cx.map(
        node,
        "an expect_none step",
        &["name", "conn", "match", "within"],
    )?;
    let conn = common(cx, &f, name);
    let matcher = f
        .require(cx, "match", "an expect_none step")
        .and_then(|n| cx.match_spec(n));
    let within = f
        .require(cx, "within", "an expect_none step")
        .and_then(|n| cx.duration(n, "within"));
    let step = ExpectNoneStep {
        conn: conn?,
        matcher: matcher?,
        within: within?,
    };
    failed(cx, before, step)
}

fn convert_expect_close(
    cx: &mut Cx,
    node: &Node,
    name: &mut Option<String>,
) -> Option<ExpectCloseStep> {
    let before = cx.problems.len();
    if node.is_null() {
        return Some(ExpectCloseStep {
            conn: "main".into(),
            code: CloseCodeExpect::Any,
            reason: None,
            strict: false,
            timeout: None,
        });
    }
    let f = cx.map(
        node,
        "an expect_close step",
        &["name", "conn", "code", "reason", "strict", "timeout"],
    )?;
    let conn = common(cx, &f, name);
    let code = match f.get("code") {
        None => Some(CloseCodeExpect::Any),
        Some(n) if n.as_str() == Some("none") => Some(CloseCodeExpect::NoFrame),
        Some(n) if n.as_str().is_some() => {
            cx.err(
                n.pos,
                format!(
                    "code must be a close code (e.g. 1000) or `none`, got {}",
                    describe(n)
                ),
            );
            None
        }
        Some(n) => cx.u16(n, "code").map(CloseCodeExpect::Code),
    };
    let reason = f.get("reason").and_then(|n| cx.match_spec(n));
    let strict = f
        .get("strict")
        .map(|n| cx.bool(n, "strict").unwrap_or(false))
        .unwrap_or(false);
    let timeout = timeout(cx, &f);
    let step = ExpectCloseStep {
        conn: conn?,
        code: code?,
        reason,
        strict,
        timeout,
    };
    failed(cx, before, step)
}

fn convert_close(cx: &mut Cx, node: &Node, name: &mut Option<String>) -> Option<CloseStep> {
    let before = cx.problems.len();
    if node.is_null() {
        return Some(CloseStep {
            conn: "main".into(),
            code: 1000,
            reason: String::new(),
        });
    }
    let f = cx.map(node, "a close step", &["name", "conn", "code", "reason"])?;
    let conn = common(cx, &f, name);
    let code = f
        .get("code")
        .map(|n| cx.u16(n, "code"))
        .unwrap_or(Some(1000));
    let reason = f
        .get("reason")
        .map(|n| cx.plain(n, "reason"))
        .unwrap_or(Some(String::new()));
    if let (Some(r), Some(n)) = (&reason, f.get("reason")) {
        // RFC 6455 §5.5: the close payload (2-byte code + reason) fits in 125 bytes.
        if r.len() > 123 {
            cx.err(
                n.pos,
                format!(
                    "close reason is {} bytes; at most 123 fit in a close frame",
                    r.len()
                ),
            );
        }
    }
    let step = CloseStep {
        conn: conn?,
        code: code?,
        reason: reason?,
    };
    failed(cx, before, step)
}

fn convert_sleep(cx: &mut Cx, node: &Node, name: &mut Option<String>) -> Option<Duration> {
    match &node.kind {
        Kind::Map(_) => {
            let f = cx.map(node, "a sleep step", &["name", "duration"])?;
            if let Some(n) = f.get("name") {
                *name = cx.plain(n, "step name");
            }
            let d = f.require(cx, "duration", "a sleep step")?;
            cx.duration(d, "sleep")
        }
        _ => cx.duration(node, "sleep"),
    }
}

const TIMING_METRICS: &[(&str, TimingMetric)] = &[
    ("connect", TimingMetric::Connect),
    ("first_event", TimingMetric::FirstEvent),
    ("first_token", TimingMetric::FirstToken),
    ("max_token_gap", TimingMetric::MaxTokenGap),
    ("turn", TimingMetric::Turn),
    ("cancel_ack", TimingMetric::CancelAck),
];

fn convert_timing(cx: &mut Cx, node: &Node, name: &mut Option<String>) -> Option<TimingStep> {
    let before = cx.problems.len();
    let mut allowed = vec!["name", "conn"];
    allowed.extend(TIMING_METRICS.iter().map(|(k, _)| *k));
    let f = cx.map(node, "a timing step", &allowed)?;
    let conn = common(cx, &f, name);
    let mut bounds = BTreeMap::new();
    for (key, metric) in TIMING_METRICS {
        let Some(n) = f.get(key) else { continue };
        let mut b = DurationBound {
            min: None,
            max: None,
        };
        match &n.kind {
            // A bare duration is an upper bound.
            Kind::Str(_) => b.max = cx.duration(n, key),
            _ => {
                let Some(ops) =
                    cx.map(n, &format!("timing.{key}"), &["$lte", "$lt", "$gte", "$gt"])
                else {
                    continue;
                };
                for (op, _, v) in &ops.fields {
                    let d = cx.duration(v, &format!("timing.{key}.{op}"));
                    match *op {
                        "$lte" | "$lt" => b.max = d,
                        _ => b.min = d,
                    }
                }
            }
        }
        if b.min.is_none() && b.max.is_none() {
            continue;
        }
        bounds.insert(*metric, b);
    }
    if bounds.is_empty() && cx.problems.len() == before {
        cx.err(
            node.pos,
            format!(
                "a timing step needs at least one of: {}",
                TIMING_METRICS
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    failed(
        cx,
        before,
        TimingStep {
            conn: conn?,
            bounds,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Entry points.

/// Loads one scenario from text (`file` names it in messages).
pub fn load_scenario_str(
    file: &Path,
    yaml: &str,
    config: &SuiteConfig,
    opts: &LoadOptions,
) -> Result<Scenario, LoadError> {
    let mut cx = Cx::new(file, yaml);
    cx.duration_vars = duration_vars(config, opts);
    cx.discriminator = config.discriminator.clone();
    let scenario = match yaml::parse(yaml) {
        Ok(root) => convert_scenario(&mut cx, &root, config, opts),
        Err(e) => {
            cx.yaml_error(&e);
            None
        }
    };
    match scenario {
        Some(s) if cx.problems.is_empty() => Ok(s),
        _ => {
            if cx.problems.is_empty() {
                cx.problems
                    .push(Problem::whole_file(file, "the file holds no scenario"));
            }
            Err(LoadError {
                problems: cx.problems,
            })
        }
    }
}

/// The variants of the vars a scenario's durations are resolved with: the ones the run uses first,
/// then the suite's other variant (with or without `embedded.vars`), only to report its mistakes.
fn duration_vars(config: &SuiteConfig, opts: &LoadOptions) -> Vec<DurationVars> {
    let active = DurationVars {
        label: "",
        cli: opts.vars.clone(),
        suite: config.vars.clone(),
        scenario: BTreeMap::new(),
        requires: Vec::new(),
    };
    let e = &config.embedded;
    let other = if e.applied {
        (!e.replaced.is_empty()).then(|| {
            let mut suite = config.vars.clone();
            suite.extend(e.replaced.clone());
            ("with the suite's vars for other servers", suite)
        })
    } else {
        (!e.vars.is_empty()).then(|| {
            let mut suite = config.vars.clone();
            suite.extend(e.vars.clone());
            ("with embedded.vars", suite)
        })
    };
    let mut out = vec![active.clone()];
    if let Some((label, suite)) = other {
        out.push(DurationVars {
            label,
            suite,
            ..active
        });
    }
    out
}

/// Loads a suite config from text; `dir` resolves its relative paths.
pub fn load_config_str(
    file: &Path,
    yaml: &str,
    opts: &LoadOptions,
) -> Result<(SuiteConfig, Option<PathBuf>), LoadError> {
    let mut cx = Cx::new(file, yaml);
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let out = match yaml::parse(yaml) {
        Ok(root) => Some(convert_config(&mut cx, &root, &dir, opts)),
        Err(e) => {
            cx.yaml_error(&e);
            None
        }
    };
    match out {
        Some(o) if cx.problems.is_empty() => Ok(o),
        _ => Err(LoadError {
            problems: cx.problems,
        }),
    }
}

fn read(path: &Path, problems: &mut Vec<Problem>) -> Option<String> {
    match crate::text::read_utf8(path) {
        Ok(t) => Some(t),
        Err(crate::text::ReadError::Utf8(at)) => {
            let mut p = Problem::whole_file(path, at.to_string());
            (p.line, p.col) = (at.line, at.col);
            problems.push(p);
            None
        }
        Err(crate::text::ReadError::Io(e)) => {
            problems.push(Problem::whole_file(path, format!("cannot read: {e}")));
            None
        }
    }
}

fn is_yaml(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Scenario files below `dir`, sorted; skips the suite config, the files it names (`skip`: the
/// rules file, an AsyncAPI document) and any folder named `fixtures` (test inputs, often
/// invalid on purpose).
fn scan_dir(dir: &Path, skip: &[&Path], out: &mut Vec<PathBuf>, problems: &mut Vec<Problem>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem::whole_file(dir, format!("cannot read folder: {e}")));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "fixtures") {
                continue;
            }
            scan_dir(&p, skip, out, problems);
        } else if is_yaml(&p)
            && p.file_name().is_none_or(|n| n != SUITE_FILE)
            && !skip.iter().any(|r| same_file(r, &p))
        {
            out.push(p);
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Default schemas: `schemas/index.json` beside the suite folder or one level up (the
/// repository layout); None means "the schemas compiled into the binary".
fn default_schemas(dir: &Path) -> Option<PathBuf> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    [
        dir.join("schemas"),
        dir.parent().map(|p| p.join("schemas")).unwrap_or_default(),
    ]
    .into_iter()
    .find(|p| p.join("index.json").is_file())
}

/// Loads the suite: PATH arguments (folders or files) → config, rules file and scenarios. The
/// suite's `embedded:` section is not applied (see [`load_suite_for_run`]).
pub fn load_suite(paths: &[PathBuf], opts: &LoadOptions) -> Result<Suite, LoadError> {
    load_suite_for_run(paths, opts, true)
}

/// [`load_suite`] for a `run`: when neither the command line (`cli_target`: `--target` or
/// `WSCHAT_TARGET`) nor the suite names a target, the run uses the embedded reference server, so the
/// suite's `embedded.vars` replace its `vars` (durations written as `${var}` are resolved with them)
/// and [`crate::runner::Prepared`] starts the server with `embedded.server`.
pub fn load_suite_for_run(
    paths: &[PathBuf],
    opts: &LoadOptions,
    cli_target: bool,
) -> Result<Suite, LoadError> {
    let mut problems = Vec::new();
    if paths.is_empty() {
        return Err(LoadError {
            problems: vec![Problem::whole_file(
                Path::new("."),
                "no scenario path given",
            )],
        });
    }
    let first = &paths[0];
    let base = if first.is_dir() {
        first.clone()
    } else {
        first.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };

    let config_path = base.join(SUITE_FILE);
    let (mut config, mut rules_file) = (SuiteConfig::default(), None);
    if config_path.is_file() {
        if let Some(text) = read(&config_path, &mut problems) {
            match load_config_str(&config_path, &text, opts) {
                Ok((c, r)) => (config, rules_file) = (c, r),
                Err(e) => problems.extend(e.problems),
            }
        }
    }
    if !cli_target && config.target.is_none() && !config.target_required {
        let e = &mut config.embedded;
        for (name, t) in &e.vars {
            if let Some(old) = config.vars.insert(name.clone(), t.clone()) {
                e.replaced.insert(name.clone(), old);
            }
        }
        e.applied = true;
    }
    if rules_file.is_none() {
        let p = base.join(DEFAULT_RULES_FILE);
        if p.is_file() {
            rules_file = Some(p);
        }
    }
    if config.schemas_dir.is_none() {
        config.schemas_dir = default_schemas(&base);
    }

    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let skip: Vec<&Path> = rules_file
                .as_deref()
                .into_iter()
                .chain(config.asyncapi.as_deref())
                .collect();
            scan_dir(p, &skip, &mut files, &mut problems);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            problems.push(Problem::whole_file(p, "no such file or folder"));
        }
    }
    // The same file named twice (a folder and a file in it) runs once.
    let mut seen = BTreeSet::new();
    files.retain(|f| seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())));

    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut names: BTreeMap<String, Loc> = BTreeMap::new();
    for file in &files {
        let Some(text) = read(file, &mut problems) else {
            continue;
        };
        match load_scenario_str(file, &text, &config, opts) {
            Ok(s) => {
                if let Some(first) = names.get(&s.name) {
                    let mut cx = Cx::new(file, &text);
                    let pos = yaml::parse(&text)
                        .ok()
                        .and_then(|root| match &root.kind {
                            Kind::Map(e) => e
                                .iter()
                                .find(|(k, _)| k.as_str() == Some("name"))
                                .map(|(_, v)| v.pos),
                            _ => None,
                        })
                        .unwrap_or(Pos {
                            line: s.loc.line,
                            col: s.loc.col,
                            offset: 0,
                            len: 0,
                        });
                    cx.err_label(
                        pos,
                        "duplicate name",
                        format!(
                            "duplicate scenario name '{}' (first defined at {first})",
                            s.name
                        ),
                    );
                    problems.extend(cx.problems);
                } else {
                    names.insert(s.name.clone(), s.loc.clone());
                    scenarios.push(s);
                }
            }
            Err(e) => problems.extend(e.problems),
        }
    }
    if problems.is_empty() && scenarios.is_empty() {
        problems.push(Problem::whole_file(
            first,
            "no scenario files found (*.yaml, *.yml)",
        ));
    }
    if problems.is_empty() {
        Ok(Suite {
            config,
            rules_file,
            scenarios,
        })
    } else {
        Err(LoadError { problems })
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
