//! Rules file loading: YAML → raw (with spans) → checked [`Rule`]s.
//!
//! Each rule is read as a flat map of optional fields (so every value keeps its location),
//! then checked per kind: a field the kind does not use, a missing required field, or a
//! malformed selector is an error naming `file:line:col`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::model::{FieldRef, KeySpec, Rule, RuleKind, Scope, Selector};
use super::{RuleSet, RulesError};
use crate::runner::Direction;
use crate::scenario::Loc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    rules: Vec<Spanned<RawRule>>,
}

type V = Option<Spanned<Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    description: Option<String>,
    direction: V,
    one_of: V,
    key: V,
    scope: V,
    scope_end: V,
    unless_terminal: V,
    terminal: V,
    restart: V,
    open: V,
    close: V,
    during: V,
    start: V,
    middle: V,
    end: V,
    request: V,
    reply: V,
    complete_when: V,
    event: V,
    prior: V,
    until: V,
    allowed: V,
    items: V,
    field: V,
    index: V,
    equals: V,
    count: V,
    require_on_close: V,
    max_open: V,
    ignoring: V,
    restart_only_after_terminal: V,
    unsolicited: V,
    running: V,
}

/// Every kind with its required and optional fields (besides `id`, `kind`, `description`).
const KINDS: &[(&str, &[&str], &[&str])] = &[
    ("first", &["one_of"], &["direction"]),
    ("first_per_key", &["key", "one_of"], &["direction"]),
    ("only_before", &["until"], &["allowed", "direction"]),
    (
        "followed_by",
        &["event", "one_of"],
        &["direction", "ignoring"],
    ),
    (
        "preceded_by",
        &["event", "one_of"],
        &["direction", "ignoring"],
    ),
    (
        "terminal",
        &["terminal"],
        &[
            "key",
            "restart",
            "direction",
            "require_on_close",
            "restart_only_after_terminal",
        ],
    ),
    (
        "pair",
        &["open", "close"],
        &[
            "key",
            "during",
            "max_open",
            "scope",
            "scope_end",
            "unless_terminal",
            "require_on_close",
        ],
    ),
    (
        "lifecycle",
        &["start", "end"],
        &[
            "key",
            "middle",
            "scope",
            "scope_end",
            "unless_terminal",
            "require_on_close",
        ],
    ),
    (
        "reply",
        &["request", "reply"],
        &["key", "require_on_close", "unsolicited"],
    ),
    (
        "completion",
        &["request", "complete_when"],
        &["key", "require_on_close", "unsolicited"],
    ),
    ("requires_prior", &["event", "prior", "key"], &[]),
    (
        "concat",
        &["items", "field"],
        &["equals", "index", "scope", "scope_end", "count", "running"],
    ),
];

/// Every kind with its required and optional fields (besides `id`, `kind`, `description`):
/// the table the loader checks against (`schemas/rules.schema.json` is kept in step with it).
pub fn kinds() -> &'static [(
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
)] {
    KINDS
}

impl RawRule {
    /// The optional fields by YAML name, for the per-kind check.
    fn fields(&self) -> [(&'static str, &V); 33] {
        [
            ("direction", &self.direction),
            ("one_of", &self.one_of),
            ("key", &self.key),
            ("scope", &self.scope),
            ("scope_end", &self.scope_end),
            ("unless_terminal", &self.unless_terminal),
            ("terminal", &self.terminal),
            ("restart", &self.restart),
            ("open", &self.open),
            ("close", &self.close),
            ("during", &self.during),
            ("start", &self.start),
            ("middle", &self.middle),
            ("end", &self.end),
            ("request", &self.request),
            ("reply", &self.reply),
            ("complete_when", &self.complete_when),
            ("event", &self.event),
            ("prior", &self.prior),
            ("until", &self.until),
            ("allowed", &self.allowed),
            ("items", &self.items),
            ("field", &self.field),
            ("index", &self.index),
            ("equals", &self.equals),
            ("count", &self.count),
            ("require_on_close", &self.require_on_close),
            ("max_open", &self.max_open),
            ("ignoring", &self.ignoring),
            (
                "restart_only_after_terminal",
                &self.restart_only_after_terminal,
            ),
            ("unsolicited", &self.unsolicited),
            ("running", &self.running),
            ("description", &None),
        ]
    }
}

/// Converts raw values into the model, with the file for locations.
struct Ctx {
    file: Arc<PathBuf>,
}

impl Ctx {
    fn loc(&self, l: &serde_saphyr::Location) -> Loc {
        Loc {
            file: self.file.clone(),
            line: l.line() as u32,
            col: l.column() as u32,
        }
    }

    fn err(&self, l: &serde_saphyr::Location, message: impl Into<String>) -> RulesError {
        RulesError::Invalid {
            loc: self.loc(l),
            message: message.into(),
        }
    }

    fn rule(&self, raw: &Spanned<RawRule>, n: usize) -> Result<Rule, RulesError> {
        let r = &raw.value;
        let Some(id_field) = &r.id else {
            return Err(self.err(&raw.referenced, format!("rule #{n} has no 'id'")));
        };
        let Some(kind_field) = &r.kind else {
            return Err(self.err(
                &raw.referenced,
                format!("rule '{}' has no 'kind'", id_field.value),
            ));
        };
        let kind_name = kind_field.value.as_str();
        let Some((_, required, optional)) = KINDS.iter().find(|(k, _, _)| *k == kind_name) else {
            let known: Vec<&str> = KINDS.iter().map(|(k, _, _)| *k).collect();
            return Err(self.err(
                &kind_field.referenced,
                format!(
                    "rule '{}': unknown kind '{kind_name}' (known: {})",
                    id_field.value,
                    known.join(", ")
                ),
            ));
        };
        for (name, value) in r.fields() {
            if let Some(v) = value {
                if !required.contains(&name) && !optional.contains(&name) {
                    let mut fields: Vec<&str> =
                        required.iter().chain(optional.iter()).copied().collect();
                    fields.sort_unstable();
                    return Err(self.err(
                        &v.referenced,
                        format!(
                            "rule '{}': field '{name}' is not used by kind '{kind_name}' (its fields: {})",
                            id_field.value,
                            fields.join(", ")
                        ),
                    ));
                }
            }
        }
        for name in *required {
            let present = r.fields().iter().any(|(n, v)| n == name && v.is_some());
            if !present {
                return Err(self.err(
                    &raw.referenced,
                    format!(
                        "rule '{}': kind '{kind_name}' needs the field '{name}'",
                        id_field.value
                    ),
                ));
            }
        }
        if id_field.value.trim().is_empty() {
            return Err(self.err(&id_field.referenced, "rule id must not be empty"));
        }

        let id = &id_field.value;
        let direction = match &r.direction {
            Some(d) => self.direction(id, d)?,
            None => Direction::Received,
        };
        let flag = |v: &V, default: bool| -> Result<bool, RulesError> {
            match v {
                None => Ok(default),
                Some(s) => s.value.as_bool().ok_or_else(|| {
                    self.err(
                        &s.referenced,
                        format!("rule '{id}': expected true or false"),
                    )
                }),
            }
        };
        let opt_sels = |v: &V| -> Result<Vec<Selector>, RulesError> {
            match v {
                None => Ok(Vec::new()),
                Some(s) => self.selectors(id, s),
            }
        };

        let kind = match kind_name {
            "first" => RuleKind::First {
                one_of: self.selectors(id, req(&r.one_of))?,
                direction,
            },
            "first_per_key" => RuleKind::FirstPerKey {
                key: self.key(id, req(&r.key))?,
                one_of: self.selectors(id, req(&r.one_of))?,
                direction,
            },
            "only_before" => RuleKind::OnlyBefore {
                until: self.selectors(id, req(&r.until))?,
                allowed: opt_sels(&r.allowed)?,
                direction,
            },
            "followed_by" => RuleKind::FollowedBy {
                event: self.selectors(id, req(&r.event))?,
                one_of: self.selectors(id, req(&r.one_of))?,
                direction,
                ignoring: opt_sels(&r.ignoring)?,
            },
            "preceded_by" => RuleKind::PrecededBy {
                event: self.selectors(id, req(&r.event))?,
                one_of: self.selectors(id, req(&r.one_of))?,
                direction,
                ignoring: opt_sels(&r.ignoring)?,
            },
            "terminal" => RuleKind::Terminal {
                key: r.key.as_ref().map(|k| self.key(id, k)).transpose()?,
                terminal: self.selectors(id, req(&r.terminal))?,
                restart: opt_sels(&r.restart)?,
                direction,
                require_on_close: flag(&r.require_on_close, false)?,
                restart_only_after_terminal: flag(&r.restart_only_after_terminal, false)?,
            },
            "pair" => RuleKind::Pair {
                open: self.selectors(id, req(&r.open))?,
                close: self.selectors(id, req(&r.close))?,
                during: opt_sels(&r.during)?,
                key: self.opt_key(id, &r.key)?,
                scope: self.scope(id, r)?,
                max_open: match &r.max_open {
                    None => None,
                    Some(m) => Some(m.value.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                        self.err(
                            &m.referenced,
                            format!("rule '{id}': max_open is an integer >= 1"),
                        )
                    })?),
                },
                require_on_close: flag(&r.require_on_close, false)?,
            },
            "lifecycle" => {
                let end_raw = req(&r.end);
                let end = match &end_raw.value {
                    Value::Array(steps) if !steps.is_empty() => steps
                        .iter()
                        .map(|s| self.selector_list(id, s, &end_raw.referenced))
                        .collect::<Result<Vec<_>, _>>()?,
                    Value::Array(_) => {
                        return Err(self.err(
                            &end_raw.referenced,
                            format!("rule '{id}': 'end' needs at least one step"),
                        ))
                    }
                    _ => vec![self.selectors(id, end_raw)?],
                };
                RuleKind::Lifecycle {
                    key: self.opt_key(id, &r.key)?,
                    start: self.selectors(id, req(&r.start))?,
                    middle: opt_sels(&r.middle)?,
                    end,
                    scope: self.scope(id, r)?,
                    require_on_close: flag(&r.require_on_close, false)?,
                }
            }
            "reply" => RuleKind::Completion {
                request: self.selectors(id, req(&r.request))?,
                parts: vec![self.selectors(id, req(&r.reply))?],
                key: r.key.as_ref().map(|k| self.key(id, k)).transpose()?,
                require_on_close: flag(&r.require_on_close, true)?,
                allow_unsolicited: self.unsolicited(id, &r.unsolicited)?,
            },
            "completion" => {
                let raw = req(&r.complete_when);
                let parts = match &raw.value {
                    Value::Array(groups) if !groups.is_empty() => groups
                        .iter()
                        .map(|g| self.selector_list(id, g, &raw.referenced))
                        .collect::<Result<Vec<_>, _>>()?,
                    _ => {
                        return Err(self.err(
                            &raw.referenced,
                            format!(
                                "rule '{id}': 'complete_when' is a list of events (each a selector or a list of alternatives)"
                            ),
                        ))
                    }
                };
                RuleKind::Completion {
                    request: self.selectors(id, req(&r.request))?,
                    parts,
                    key: r.key.as_ref().map(|k| self.key(id, k)).transpose()?,
                    require_on_close: flag(&r.require_on_close, false)?,
                    allow_unsolicited: self.unsolicited(id, &r.unsolicited)?,
                }
            }
            "requires_prior" => RuleKind::RequiresPrior {
                event: self.selectors(id, req(&r.event))?,
                prior: self.selectors(id, req(&r.prior))?,
                key: self.key(id, req(&r.key))?,
            },
            "concat" => RuleKind::Concat {
                items: self.selectors(id, req(&r.items))?,
                field: self.pointer(id, req(&r.field))?,
                index: r.index.as_ref().map(|i| self.pointer(id, i)).transpose()?,
                scope: self.scope(id, r)?,
                equals: r
                    .equals
                    .as_ref()
                    .map(|e| self.field_ref(id, "equals", e))
                    .transpose()?,
                count: r
                    .count
                    .as_ref()
                    .map(|c| self.field_ref(id, "count", c))
                    .transpose()?,
                running: r
                    .running
                    .as_ref()
                    .map(|p| self.pointer(id, p))
                    .transpose()?,
            },
            _ => unreachable!("kind names come from KINDS"),
        };
        Ok(Rule {
            id: id.clone(),
            description: r.description.clone(),
            kind,
            loc: self.loc(&raw.referenced),
        })
    }

    fn direction(&self, id: &str, v: &Spanned<Value>) -> Result<Direction, RulesError> {
        direction_of(&v.value).ok_or_else(|| {
            self.err(
                &v.referenced,
                format!("rule '{id}': direction must be 'sent' or 'received'"),
            )
        })
    }

    fn pointer(&self, id: &str, v: &Spanned<Value>) -> Result<String, RulesError> {
        pointer_of(&v.value).map_err(|m| self.err(&v.referenced, format!("rule '{id}': {m}")))
    }

    /// A `pair`/`lifecycle` key; without one, one bracket per connection at a time.
    fn opt_key(&self, id: &str, v: &V) -> Result<KeySpec, RulesError> {
        match v {
            None => Ok(KeySpec::keyless()),
            Some(k) => self.key(id, k),
        }
    }

    /// `unsolicited: allow` (ignore parts answering no request) or `report` (the default).
    fn unsolicited(&self, id: &str, v: &V) -> Result<bool, RulesError> {
        match v.as_ref().map(|s| (s.value.as_str(), s)) {
            None | Some((Some("report"), _)) => Ok(false),
            Some((Some("allow"), _)) => Ok(true),
            Some((_, s)) => Err(self.err(
                &s.referenced,
                format!("rule '{id}': unsolicited is 'allow' or 'report'"),
            )),
        }
    }

    fn key(&self, id: &str, v: &Spanned<Value>) -> Result<KeySpec, RulesError> {
        key_of(&v.value).map_err(|m| self.err(&v.referenced, format!("rule '{id}': {m}")))
    }

    /// A selector, or a list of selectors (alternatives).
    fn selectors(&self, id: &str, v: &Spanned<Value>) -> Result<Vec<Selector>, RulesError> {
        self.selector_list(id, &v.value, &v.referenced)
    }

    fn selector_list(
        &self,
        id: &str,
        v: &Value,
        at: &serde_saphyr::Location,
    ) -> Result<Vec<Selector>, RulesError> {
        let items: Vec<&Value> = match v {
            Value::Array(items) if items.is_empty() => {
                return Err(self.err(at, format!("rule '{id}': the list must not be empty")))
            }
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        items
            .into_iter()
            .map(|i| selector_of(i).map_err(|m| self.err(at, format!("rule '{id}': {m}"))))
            .collect()
    }

    fn field_ref(&self, id: &str, name: &str, v: &Spanned<Value>) -> Result<FieldRef, RulesError> {
        let bad = || {
            self.err(
                &v.referenced,
                format!("rule '{id}': '{name}' is {{ event: <selector>, field: <JSON pointer> }} (equals may give path: <JSONPath> instead of field)"),
            )
        };
        let Value::Object(map) = &v.value else {
            return Err(bad());
        };
        if map.len() != 2 {
            return Err(bad());
        }
        let Some(event) = map.get("event") else {
            return Err(bad());
        };
        let event =
            selector_of(event).map_err(|m| self.err(&v.referenced, format!("rule '{id}': {m}")))?;
        if let (Some(Value::String(path)), "equals") = (map.get("path"), name) {
            // Checked now so a typo is a load error, not a silent "never matches".
            let probe = path.replace("{scope}", "x");
            serde_json_path::JsonPath::parse(&probe).map_err(|e| {
                self.err(
                    &v.referenced,
                    format!("rule '{id}': equals.path is not a valid JSONPath: {e}"),
                )
            })?;
            return Ok(FieldRef {
                event,
                field: String::new(),
                path: Some(path.clone()),
            });
        }
        let Some(field) = map.get("field") else {
            return Err(bad());
        };
        let field =
            pointer_of(field).map_err(|m| self.err(&v.referenced, format!("rule '{id}': {m}")))?;
        Ok(FieldRef {
            event,
            field,
            path: None,
        })
    }

    fn scope(&self, id: &str, r: &RawRule) -> Result<Scope, RulesError> {
        // One pointer, or a list forming a composite scope (like composite keys).
        let pointers = match &r.scope {
            None => Vec::new(),
            Some(s) => self.key(id, s)?.pointers,
        };
        let pointer = pointers.first().cloned();
        let mut end = match &r.scope_end {
            Some(s) => self.selectors(id, s)?,
            None => Vec::new(),
        };
        let end_explicit = r.scope_end.is_some();
        let forgive = match &r.unless_terminal {
            Some(s) => self.selectors(id, s)?,
            None => Vec::new(),
        };
        if end_explicit {
            // An excusing end event also ends the scope, whether listed twice or not.
            for f in &forgive {
                if !end.contains(f) {
                    end.push(f.clone());
                }
            }
        }
        Ok(Scope {
            pointer,
            pointers,
            end,
            forgive,
            end_explicit,
        })
    }
}

/// A field the kind requires (presence was checked before conversion).
fn req(v: &V) -> &Spanned<Value> {
    v.as_ref().expect("required fields were checked above")
}

fn direction_of(v: &Value) -> Option<Direction> {
    match v.as_str()? {
        "sent" => Some(Direction::Sent),
        "received" => Some(Direction::Received),
        _ => None,
    }
}

/// `/turn_id`, or `turn_id` (a top-level field, as the suite's `discriminator` allows).
fn pointer_of(v: &Value) -> Result<String, String> {
    match v.as_str() {
        Some("") => Err("a JSON pointer must not be empty".into()),
        Some(p) if p.starts_with('/') => Ok(p.to_owned()),
        Some(p) => Ok(format!("/{p}")),
        None => Err(format!("expected a JSON pointer (like /turn_id), got {v}")),
    }
}

fn key_of(v: &Value) -> Result<KeySpec, String> {
    match v {
        Value::Array(items) if !items.is_empty() => Ok(KeySpec {
            pointers: items.iter().map(pointer_of).collect::<Result<_, _>>()?,
        }),
        Value::Array(_) => Err("a key needs at least one JSON pointer".into()),
        other => Ok(KeySpec {
            pointers: vec![pointer_of(other)?],
        }),
    }
}

/// A bare type name, or `{ type, direction, where, present, key }`.
fn selector_of(v: &Value) -> Result<Selector, String> {
    match v {
        Value::String(t) if t.is_empty() => Err("an event type must not be empty".into()),
        Value::String(t) if t == "*" => Ok(Selector {
            event_type: None,
            ..Selector::received("*")
        }),
        Value::String(t) => Ok(Selector::received(t)),
        Value::Object(map) => {
            let mut sel = Selector {
                event_type: None,
                ..Selector::received("*")
            };
            for (k, val) in map {
                match k.as_str() {
                    "type" => match val.as_str() {
                        Some("*") => sel.event_type = None,
                        Some(t) if !t.is_empty() => sel.event_type = Some(t.to_owned()),
                        _ => return Err(format!("a selector's 'type' is a non-empty string, got {val}")),
                    },
                    "direction" => {
                        sel.direction = direction_of(val).ok_or_else(|| {
                            format!("a selector's 'direction' is 'sent' or 'received', got {val}")
                        })?
                    }
                    "where" => {
                        let Value::Object(conds) = val else {
                            return Err(format!(
                                "a selector's 'where' maps JSON pointers to values, got {val}"
                            ));
                        };
                        for (p, want) in conds {
                            sel.conditions
                                .push((pointer_of(&Value::String(p.clone()))?, want.clone()));
                        }
                    }
                    "present" => {
                        let list = match val {
                            Value::Array(items) => items.iter().collect(),
                            other => vec![other],
                        };
                        for p in list {
                            sel.present.push(pointer_of(p)?);
                        }
                    }
                    "key" => sel.key = Some(key_of(val)?),
                    "scope" => sel.scope = Some(key_of(val)?),
                    other => {
                        return Err(format!(
                            "unknown selector field '{other}' (known: type, direction, where, present, key, scope)"
                        ))
                    }
                }
            }
            Ok(sel)
        }
        other => Err(format!(
            "expected an event type or a selector map {{ type, direction, where, present, key }}, got {other}"
        )),
    }
}

/// Parses a rules file's text; `file` names it in errors.
pub fn parse(file: &Path, yaml: &str) -> Result<RuleSet, RulesError> {
    let options = serde_saphyr::options! { strict_booleans: true };
    let ctx = Ctx {
        file: Arc::new(file.to_path_buf()),
    };
    let raw: RawFile = serde_saphyr::from_str_with_options(yaml, options).map_err(|e| {
        let loc = e.location();
        let mut ro = serde_saphyr::RenderOptions::new(&serde_saphyr::DefaultMessageFormatter);
        ro.snippets = serde_saphyr::SnippetMode::Off;
        let mut message = e.render_with_options(ro);
        // The plain rendering appends the position, which the `file:line:col` prefix already gives.
        if let Some(cut) = message.rfind(" at line ") {
            message.truncate(cut);
        }
        RulesError::Syntax {
            loc: Loc {
                file: ctx.file.clone(),
                line: loc.map_or(1, |l| l.line() as u32),
                col: loc.map_or(1, |l| l.column() as u32),
            },
            message,
        }
    })?;
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
    for (n, r) in raw.rules.iter().enumerate() {
        let rule = ctx.rule(r, n + 1)?;
        if let Some(prev) = rules.iter().find(|p| p.id == rule.id) {
            let at = r.value.id.as_ref().map_or(&r.referenced, |i| &i.referenced);
            return Err(ctx.err(
                at,
                format!("duplicate rule id '{}' (first at {})", prev.id, prev.loc),
            ));
        }
        rules.push(rule);
    }
    inherit_scope_ends(&mut rules);
    Ok(RuleSet::from_rules(rules))
}

/// A scoped rule without `scope_end` ends its scopes where the `terminal` rule keyed by the
/// same pointer ends them, so `scope: /turn_id` alone means "before the turn's terminal event".
fn inherit_scope_ends(rules: &mut [Rule]) {
    let terminals: Vec<(String, Vec<Selector>)> = rules
        .iter()
        .filter_map(|r| match &r.kind {
            RuleKind::Terminal {
                key: Some(k),
                terminal,
                ..
            } if k.pointers.len() == 1 => Some((k.pointers[0].clone(), terminal.clone())),
            _ => None,
        })
        .collect();
    for rule in rules.iter_mut() {
        let scope = match &mut rule.kind {
            RuleKind::Pair { scope, .. }
            | RuleKind::Lifecycle { scope, .. }
            | RuleKind::Concat { scope, .. } => scope,
            _ => continue,
        };
        if scope.end_explicit {
            continue;
        }
        let Some(p) = &scope.pointer else {
            scope.end = scope.forgive.clone();
            continue;
        };
        if let Some((_, term)) = terminals.iter().find(|(k, _)| k == p) {
            scope.end = term.clone();
        }
        for f in &scope.forgive {
            if !scope.end.contains(f) {
                scope.end.push(f.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> String {
        match parse(Path::new("dir/rules.yaml"), yaml) {
            Ok(set) => panic!("expected an error, loaded {:?}", set.rules()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn documented_example_loads() {
        let yaml = r#"
rules:
  - id: connected-first
    kind: first
    one_of: [connected, auth_success, auth_error, error]
  - id: one-terminal
    kind: terminal
    key: /turn_id
    terminal: [final_answer, cancelled, error]
  - id: tool-pairs
    kind: pair
    open: tool_call
    close: tool_result
    key: /call_id
    scope: /turn_id
    unless_terminal: [cancelled, error]
  - id: ping-pong
    kind: reply
    request: { direction: sent, type: ping }
    reply: pong
    key: /nonce
"#;
        let set = parse(Path::new("rules.yaml"), yaml).unwrap();
        assert_eq!(set.rules().len(), 4);
        let tool = &set.rules()[2];
        assert_eq!((tool.loc.line, tool.loc.col), (10, 5));
        let RuleKind::Pair { scope, key, .. } = &tool.kind else {
            panic!("{:?}", tool.kind)
        };
        assert_eq!(key, &KeySpec::single("/call_id"));
        // The scope ends where the terminal rule keyed by /turn_id says turns end.
        let ends: Vec<_> = scope
            .end
            .iter()
            .filter_map(|s| s.event_type.as_deref())
            .collect();
        assert_eq!(ends, ["final_answer", "cancelled", "error"]);
        let RuleKind::Completion {
            request,
            require_on_close,
            ..
        } = &set.rules()[3].kind
        else {
            panic!()
        };
        assert_eq!(request[0].direction, Direction::Sent);
        assert!(
            *require_on_close,
            "reply defaults to require_on_close: true"
        );
    }

    #[test]
    fn unknown_kind() {
        let e = err("rules:\n  - id: a\n    kind: sequence\n    one_of: [x]\n");
        assert!(
            e.starts_with("dir/rules.yaml:3:11: rule 'a': unknown kind 'sequence' (known: first,"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field() {
        let e = err("rules:\n  - id: a\n    kind: first\n    one_of: [x]\n    oneof: [y]\n");
        assert!(
            e.starts_with("dir/rules.yaml:5:5: unknown field `oneof`"),
            "{e}"
        );
        assert!(!e.contains(" at line "), "{e}");
        let e = err("rules: []\nversion: 2\n");
        assert!(
            e.starts_with("dir/rules.yaml:2:1: unknown field `version`"),
            "{e}"
        );
    }

    #[test]
    fn field_not_used_by_kind() {
        let e = err("rules:\n  - id: a\n    kind: first\n    one_of: [x]\n    key: /turn_id\n");
        assert!(
            e.starts_with("dir/rules.yaml:5:10: rule 'a': field 'key' is not used by kind 'first' (its fields: direction, one_of)"),
            "{e}"
        );
    }

    #[test]
    fn missing_key() {
        // A pair may be keyless (G5), but it needs its close.
        let e = err("rules:\n  - id: tool-pairs\n    kind: pair\n    open: tool_call\n");
        assert!(
            e.starts_with(
                "dir/rules.yaml:2:5: rule 'tool-pairs': kind 'pair' needs the field 'close'"
            ),
            "{e}"
        );
        let e = err("rules:\n  - id: p\n    kind: requires_prior\n    event: a\n    prior: b\n");
        assert!(
            e.starts_with(
                "dir/rules.yaml:2:5: rule 'p': kind 'requires_prior' needs the field 'key'"
            ),
            "{e}"
        );
        let e = err("rules:\n  - kind: first\n    one_of: [x]\n");
        assert!(
            e.starts_with("dir/rules.yaml:2:5: rule #1 has no 'id'"),
            "{e}"
        );
        let e = err("rules:\n  - id: a\n    one_of: [x]\n");
        assert!(
            e.starts_with("dir/rules.yaml:2:5: rule 'a' has no 'kind'"),
            "{e}"
        );
    }

    #[test]
    fn bad_values() {
        let e = err("rules:\n  - id: a\n    kind: reply\n    request: { direction: upstream, type: ping }\n    reply: pong\n");
        assert!(
            e.starts_with("dir/rules.yaml:4:14: rule 'a': a selector's 'direction'"),
            "{e}"
        );
        let e = err("rules:\n  - id: a\n    kind: first\n    one_of: { typ: x }\n");
        assert!(e.contains("unknown selector field 'typ'"), "{e}");
        let e = err("rules:\n  - id: a\n    kind: first\n    one_of: []\n");
        assert!(e.contains("must not be empty"), "{e}");
        let e = err(
            "rules:\n  - id: a\n    kind: terminal\n    terminal: [x]\n    require_on_close: yes\n",
        );
        assert!(
            e.starts_with("dir/rules.yaml:5:23: rule 'a': expected true or false"),
            "{e}"
        );
        let e = err("rules:\n  - id: a\n    kind: first\n    one_of: [x]\n  - id: a\n    kind: first\n    one_of: [y]\n");
        assert!(
            e.starts_with(
                "dir/rules.yaml:5:9: duplicate rule id 'a' (first at dir/rules.yaml:2:5)"
            ),
            "{e}"
        );
        let e = err("rules:\n  - id: a\n    kind: first\n    one_of: [x\n");
        assert!(e.starts_with("dir/rules.yaml:"), "{e}");
    }

    #[test]
    fn keys_and_pointers() {
        let set = parse(
            Path::new("r.yaml"),
            "rules:\n  - id: a\n    kind: requires_prior\n    event: expert_result\n    prior: expert_step\n    key: [team_id, /expert]\n",
        )
        .unwrap();
        let RuleKind::RequiresPrior { key, .. } = &set.rules()[0].kind else {
            panic!()
        };
        assert_eq!(key.pointers, ["/team_id", "/expert"]);
        assert_eq!(key.label(), "(team_id, expert)");
    }
}
