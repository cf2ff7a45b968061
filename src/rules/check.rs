//! The per-connection incremental checker.
//!
//! Frames arrive one at a time in transcript order. Each rule keeps only the state it needs
//! (open keys, pending requests, partial concatenations); state of a scope is dropped when the
//! scope ends, so a long connection does not accumulate finished turns' data beyond their ids.
//! Frames the client sent are never blamed: a stray `human_reply` is the scenario's doing, and
//! the server's answer to it is checked by the scenario.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use super::model::{labels, KeySpec, Rule, RuleKind, Scope, Selector};
use super::RuleViolation;
use crate::json::pointer_get as lookup;
use crate::runner::Direction;

/// Rules plus the dispatch index, built once per rule set and shared by every checker.
#[derive(Debug, Default)]
pub(crate) struct Compiled {
    pub(crate) rules: Vec<Rule>,
    /// Event type → rules that have a selector for that type.
    by_type: HashMap<String, Vec<usize>>,
    /// Rules that look at every frame (position rules, terminals, wildcard selectors).
    every: Vec<usize>,
}

impl Compiled {
    pub(crate) fn new(rules: Vec<Rule>) -> Self {
        let mut by_type: HashMap<String, Vec<usize>> = HashMap::new();
        let mut every = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let sels = selectors_of(&rule.kind);
            let global = matches!(
                rule.kind,
                RuleKind::First { .. }
                    | RuleKind::FirstPerKey { .. }
                    | RuleKind::OnlyBefore { .. }
                    | RuleKind::FollowedBy { .. }
                    | RuleKind::PrecededBy { .. }
                    | RuleKind::Terminal { .. }
            ) || sels.iter().any(|s| s.event_type.is_none());
            if global {
                every.push(i);
                continue;
            }
            for s in sels {
                if let Some(t) = &s.event_type {
                    let list = by_type.entry(t.clone()).or_default();
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
        }
        Compiled {
            rules,
            by_type,
            every,
        }
    }
}

pub fn selectors_of(kind: &RuleKind) -> Vec<&Selector> {
    fn scope(s: &Scope) -> impl Iterator<Item = &Selector> {
        s.end.iter().chain(s.forgive.iter())
    }
    match kind {
        RuleKind::First { one_of, .. } | RuleKind::FirstPerKey { one_of, .. } => {
            one_of.iter().collect()
        }
        RuleKind::OnlyBefore { until, allowed, .. } => until.iter().chain(allowed).collect(),
        RuleKind::FollowedBy {
            event,
            one_of,
            ignoring,
            ..
        }
        | RuleKind::PrecededBy {
            event,
            one_of,
            ignoring,
            ..
        } => event.iter().chain(one_of).chain(ignoring).collect(),
        RuleKind::Terminal {
            terminal, restart, ..
        } => terminal.iter().chain(restart).collect(),
        RuleKind::Pair {
            open,
            close,
            during,
            scope: sc,
            ..
        } => open
            .iter()
            .chain(close)
            .chain(during)
            .chain(scope(sc))
            .collect(),
        RuleKind::Lifecycle {
            start,
            middle,
            end,
            scope: sc,
            ..
        } => start
            .iter()
            .chain(middle)
            .chain(end.iter().flatten())
            .chain(scope(sc))
            .collect(),
        RuleKind::Completion { request, parts, .. } => {
            request.iter().chain(parts.iter().flatten()).collect()
        }
        RuleKind::RequiresPrior { event, prior, .. } => event.iter().chain(prior).collect(),
        RuleKind::Concat {
            items,
            scope: sc,
            equals,
            count,
            ..
        } => items
            .iter()
            .chain(scope(sc))
            .chain(equals.iter().map(|e| &e.event))
            .chain(count.iter().map(|c| &c.event))
            .collect(),
    }
}

/// Marks a key value that is not a plain string (JSON text follows).
const NON_STRING: char = '\u{1}';
/// The key value of a frame that lacks the key (only `reply`/`completion` match on it).
const ABSENT: &str = "\u{2}";
/// The scope value when the whole connection is the scope.
const CONNECTION: &str = "";
/// The key value of every frame of a keyless `pair`/`lifecycle`.
const KEYLESS: &str = "\u{3}";

/// The key of a frame: the string itself for a plain string key (no allocation), else JSON text.
fn key_value<'a>(spec: &KeySpec, ev: &'a Value) -> Option<Cow<'a, str>> {
    match spec.pointers.as_slice() {
        [] => return Some(Cow::Borrowed(KEYLESS)),
        [p] => return pointer_key(p, ev),
        _ => {}
    }
    let mut parts = Vec::with_capacity(spec.pointers.len());
    for p in &spec.pointers {
        parts.push(canonical(lookup(ev, p)?));
    }
    Some(Cow::Owned(format!("{NON_STRING}{}", Value::Array(parts))))
}

fn pointer_key<'a>(p: &str, ev: &'a Value) -> Option<Cow<'a, str>> {
    match lookup(ev, p)? {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        other => Some(Cow::Owned(format!("{NON_STRING}{}", canonical(other)))),
    }
}

/// `1.0` and `1` are the same key (as `1` equals `1.0` in matchers).
fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => v.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        _ => v.clone(),
    }
}

fn show_key(k: &str) -> String {
    if k == ABSENT {
        "(absent)".to_owned()
    } else if k == KEYLESS {
        "(keyless)".to_owned()
    } else if let Some(json) = k.strip_prefix(NON_STRING) {
        json.to_owned()
    } else {
        format!("{k:?}")
    }
}

/// The scope value of a frame: by the matched selector's own `scope` when it has one, else by
/// the rule's scope pointer(s).
fn scope_value<'a>(scope: &Scope, sel: Option<&Selector>, ev: &'a Value) -> Option<Cow<'a, str>> {
    if scope.pointer.is_none() {
        return Some(Cow::Borrowed(CONNECTION));
    }
    if let Some(spec) = sel.and_then(|s| s.scope.as_ref()) {
        return key_value(spec, ev);
    }
    if scope.pointers.len() > 1 {
        return key_value(
            &KeySpec {
                pointers: scope.pointers.clone(),
            },
            ev,
        );
    }
    match &scope.pointer {
        None => Some(Cow::Borrowed(CONNECTION)),
        Some(p) => pointer_key(p, ev),
    }
}

fn show_scope(scope: &Scope, value: &str) -> String {
    match &scope.pointer {
        None => "the connection".to_owned(),
        Some(_) if scope.pointers.len() > 1 => format!(
            "{} {}",
            KeySpec {
                pointers: scope.pointers.clone()
            }
            .label(),
            show_key(value)
        ),
        Some(p) => format!("{} {}", KeySpec::single(p).label(), show_key(value)),
    }
}

fn any_match(sels: &[Selector], dir: Direction, ty: Option<&str>, ev: &Value) -> Option<usize> {
    sels.iter().position(|s| s.matches(dir, ty, ev))
}

/// The key of a frame for a rule, honouring a selector's own `key`.
fn rule_key<'a>(key: &KeySpec, sel: &Selector, ev: &'a Value) -> Option<Cow<'a, str>> {
    key_value(sel.key.as_ref().unwrap_or(key), ev)
}

fn ty_name(ty: Option<&str>) -> &str {
    ty.unwrap_or("(no type)")
}

/// Does this frame end a scope? Returns the scope value and whether open entries are excused.
fn scope_end<'a>(
    scope: &Scope,
    dir: Direction,
    ty: Option<&str>,
    ev: &'a Value,
) -> Option<(Cow<'a, str>, bool)> {
    let i = any_match(&scope.end, dir, ty, ev)?;
    // A frame of an ending type without the scope field (e.g. a connection-level `error`)
    // ends nothing.
    let value = scope_value(scope, Some(&scope.end[i]), ev)?;
    let forgiven = any_match(&scope.forgive, dir, ty, ev).is_some();
    Some((value, forgiven))
}

#[derive(Debug)]
struct PairEntry {
    scope: String,
    open_seq: u64,
    open_type: String,
    closed_seq: Option<u64>,
}

#[derive(Debug)]
struct LifeEntry {
    scope: String,
    start_seq: u64,
    /// Number of `end` steps done.
    stage: usize,
    last_seq: u64,
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    request_type: String,
    key: String,
    /// Per part group: the frame that satisfied it.
    got: Vec<Option<u64>>,
}

#[derive(Debug, Default)]
struct ConcatState {
    text: String,
    next_index: u64,
    count: u64,
}

#[derive(Debug)]
struct Terminated {
    seq: u64,
    event_type: String,
}

#[derive(Debug)]
enum State {
    First {
        seen: bool,
    },
    FirstPerKey {
        seen: HashSet<String>,
    },
    OnlyBefore {
        done: bool,
    },
    FollowedBy {
        pending: Option<(u64, String)>,
    },
    PrecededBy {
        /// The previous frame of the direction: seq, type (buffer reused), matched `one_of`.
        prev: Option<(u64, bool)>,
        prev_type: String,
    },
    TerminalKeyed {
        keys: HashMap<String, (u64, Option<Terminated>)>,
    },
    TerminalConn {
        started: Option<u64>,
        ended: Option<Terminated>,
    },
    Pair {
        entries: HashMap<String, Vec<PairEntry>>,
    },
    Lifecycle {
        entries: HashMap<String, Vec<LifeEntry>>,
    },
    Completion {
        pending: VecDeque<Pending>,
    },
    RequiresPrior {
        seen: HashSet<String>,
    },
    Concat {
        scopes: HashMap<String, ConcatState>,
        /// Finished scopes' texts, kept for a later snapshot compared by JSONPath.
        done: HashMap<String, ConcatState>,
    },
}

impl State {
    fn new(kind: &RuleKind) -> Self {
        match kind {
            RuleKind::First { .. } => State::First { seen: false },
            RuleKind::FirstPerKey { .. } => State::FirstPerKey {
                seen: HashSet::new(),
            },
            RuleKind::OnlyBefore { .. } => State::OnlyBefore { done: false },
            RuleKind::FollowedBy { .. } => State::FollowedBy { pending: None },
            RuleKind::PrecededBy { .. } => State::PrecededBy {
                prev: None,
                prev_type: String::new(),
            },
            RuleKind::Terminal { key: Some(_), .. } => State::TerminalKeyed {
                keys: HashMap::new(),
            },
            RuleKind::Terminal { key: None, .. } => State::TerminalConn {
                started: None,
                ended: None,
            },
            RuleKind::Pair { .. } => State::Pair {
                entries: HashMap::new(),
            },
            RuleKind::Lifecycle { .. } => State::Lifecycle {
                entries: HashMap::new(),
            },
            RuleKind::Completion { .. } => State::Completion {
                pending: VecDeque::new(),
            },
            RuleKind::RequiresPrior { .. } => State::RequiresPrior {
                seen: HashSet::new(),
            },
            RuleKind::Concat { .. } => State::Concat {
                scopes: HashMap::new(),
                done: HashMap::new(),
            },
        }
    }
}

/// Checks one connection's frames against a rule set. One per connection; cheap per frame.
#[derive(Debug)]
pub struct RuleChecker {
    compiled: Arc<Compiled>,
    discriminator: String,
    states: Vec<State>,
}

/// Collects violations of one rule for one frame.
struct Out<'r> {
    rule: &'r Rule,
    found: Vec<RuleViolation>,
}

impl Out<'_> {
    fn push(&mut self, seqs: Vec<u64>, message: String) {
        self.found.push(RuleViolation {
            rule: self.rule.id.clone(),
            message: format!("rule {}: {message}", self.rule.id),
            seqs,
        });
    }
}

impl RuleChecker {
    pub(crate) fn new(compiled: Arc<Compiled>, discriminator: &str) -> Self {
        let states = compiled.rules.iter().map(|r| State::new(&r.kind)).collect();
        let discriminator = if discriminator.starts_with('/') || discriminator.is_empty() {
            discriminator.to_owned()
        } else {
            format!("/{discriminator}")
        };
        RuleChecker {
            compiled,
            discriminator,
            states,
        }
    }

    /// Feed every frame in transcript order: sent client messages and received server events
    /// (JSON objects only).
    pub fn observe(&mut self, seq: u64, dir: Direction, event: &Value) -> Vec<RuleViolation> {
        let ty = lookup(event, &self.discriminator).and_then(Value::as_str);
        let compiled = Arc::clone(&self.compiled);
        let typed: &[usize] = ty
            .and_then(|t| compiled.by_type.get(t))
            .map_or(&[], Vec::as_slice);
        let mut found = Vec::new();
        for &i in typed.iter().chain(compiled.every.iter()) {
            let rule = &compiled.rules[i];
            let mut out = Out {
                rule,
                found: std::mem::take(&mut found),
            };
            observe_rule(rule, &mut self.states[i], &mut out, seq, dir, ty, event);
            found = out.found;
        }
        found
    }

    /// The connection or scenario ended (`closed`: the connection is gone). Reports only
    /// conclusive violations; a turn still running when a scenario stops early is not one.
    pub fn finish(&mut self, closed: bool) -> Vec<RuleViolation> {
        let compiled = Arc::clone(&self.compiled);
        let mut found = Vec::new();
        if !closed {
            return found;
        }
        for (rule, state) in compiled.rules.iter().zip(self.states.iter_mut()) {
            let mut out = Out {
                rule,
                found: std::mem::take(&mut found),
            };
            finish_rule(rule, state, &mut out);
            found = out.found;
            // Reported once: a second finish (or frames after it) starts from a clean slate.
            *state = State::new(&rule.kind);
        }
        found
    }
}

fn finish_rule(rule: &Rule, state: &mut State, out: &mut Out<'_>) {
    match (&rule.kind, state) {
        (RuleKind::FollowedBy { one_of, .. }, State::FollowedBy { pending }) => {
            if let Some((seq, t)) = pending.take() {
                out.push(
                    vec![seq],
                    format!(
                        "\"{t}\" (frame #{seq}) must be followed immediately by {}, but the connection closed first",
                        labels(one_of)
                    ),
                );
            }
        }
        (
            RuleKind::Terminal {
                key: Some(key),
                terminal,
                require_on_close: true,
                ..
            },
            State::TerminalKeyed { keys },
        ) => {
            let mut open: Vec<(&String, u64)> = keys
                .iter()
                .filter(|(_, (_, t))| t.is_none())
                .map(|(k, (s, _))| (k, *s))
                .collect();
            open.sort_by_key(|(_, s)| *s);
            for (k, s) in open {
                out.push(
                    vec![s],
                    format!(
                        "{} {} (first frame #{s}) got no terminal event ({}) before the connection closed",
                        key.label(),
                        show_key(k),
                        labels(terminal)
                    ),
                );
            }
        }
        (
            RuleKind::Terminal {
                key: None,
                terminal,
                require_on_close: true,
                ..
            },
            State::TerminalConn {
                started: Some(s),
                ended: None,
            },
        ) => out.push(
            vec![*s],
            format!(
                "no terminal event ({}) before the connection closed",
                labels(terminal)
            ),
        ),
        (
            RuleKind::Pair {
                key,
                close,
                require_on_close: true,
                ..
            },
            State::Pair { entries },
        ) => {
            let mut open: Vec<(&String, &PairEntry)> = entries
                .iter()
                .flat_map(|(k, v)| v.iter().map(move |e| (k, e)))
                .filter(|(_, e)| e.closed_seq.is_none())
                .collect();
            open.sort_by_key(|(_, e)| e.open_seq);
            for (k, e) in open {
                out.push(
                    vec![e.open_seq],
                    format!(
                        "{} {} {} (frame #{}) was still open (no {}) when the connection closed",
                        e.open_type,
                        key.label(),
                        show_key(k),
                        e.open_seq,
                        labels(close)
                    ),
                );
            }
        }
        (
            RuleKind::Lifecycle {
                key,
                end,
                require_on_close: true,
                ..
            },
            State::Lifecycle { entries },
        ) => {
            let mut open: Vec<(&String, &LifeEntry)> = entries
                .iter()
                .flat_map(|(k, v)| v.iter().map(move |e| (k, e)))
                .filter(|(_, e)| e.stage < end.len())
                .collect();
            open.sort_by_key(|(_, e)| e.start_seq);
            for (k, e) in open {
                out.push(
                    vec![e.start_seq, e.last_seq],
                    format!(
                        "{} {} (started at frame #{}) had not finished (waiting for {}) when the connection closed",
                        key.label(),
                        show_key(k),
                        e.start_seq,
                        labels(&end[e.stage])
                    ),
                );
            }
        }
        (
            RuleKind::Completion {
                key,
                parts,
                require_on_close: true,
                ..
            },
            State::Completion { pending },
        ) => {
            for p in pending.drain(..) {
                let missing: Vec<String> = parts
                    .iter()
                    .zip(&p.got)
                    .filter(|(_, g)| g.is_none())
                    .map(|(grp, _)| labels(grp))
                    .collect();
                let which = match key {
                    Some(k) => format!(" {} {}", k.label(), show_key(&p.key)),
                    None => String::new(),
                };
                out.push(
                    vec![p.seq],
                    format!(
                        "{}{which} (frame #{}) got no {} before the connection closed",
                        p.request_type,
                        p.seq,
                        missing.join(" and ")
                    ),
                );
            }
        }
        _ => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn observe_rule(
    rule: &Rule,
    state: &mut State,
    out: &mut Out<'_>,
    seq: u64,
    dir: Direction,
    ty: Option<&str>,
    ev: &Value,
) {
    match (&rule.kind, state) {
        (RuleKind::First { one_of, direction }, State::First { seen }) => {
            if *seen || dir != *direction {
                return;
            }
            *seen = true;
            if any_match(one_of, dir, ty, ev).is_none() {
                out.push(
                    vec![seq],
                    format!(
                        "the first frame must be {}, got \"{}\" (frame #{seq})",
                        labels(one_of),
                        ty_name(ty)
                    ),
                );
            }
        }
        (
            RuleKind::FirstPerKey {
                key,
                one_of,
                direction,
            },
            State::FirstPerKey { seen },
        ) => {
            if dir != *direction {
                return;
            }
            let Some(k) = key_value(key, ev) else { return };
            if seen.contains(k.as_ref()) {
                return;
            }
            if any_match(one_of, dir, ty, ev).is_none() {
                out.push(
                    vec![seq],
                    format!(
                        "{} {} starts with \"{}\" (frame #{seq}); expected {} first",
                        key.label(),
                        show_key(&k),
                        ty_name(ty),
                        labels(one_of)
                    ),
                );
            }
            seen.insert(k.into_owned());
        }
        (
            RuleKind::OnlyBefore {
                until,
                allowed,
                direction,
            },
            State::OnlyBefore { done },
        ) => {
            if *done || dir != *direction {
                return;
            }
            if any_match(until, dir, ty, ev).is_some() {
                *done = true;
            } else if any_match(allowed, dir, ty, ev).is_none() {
                let may = if allowed.is_empty() {
                    "nothing may come before it".to_owned()
                } else {
                    format!("only {} may come before it", labels(allowed))
                };
                out.push(
                    vec![seq],
                    format!(
                        "\"{}\" (frame #{seq}) arrived before {}; {may}",
                        ty_name(ty),
                        labels(until)
                    ),
                );
                // One report is enough; every later frame would repeat it.
                *done = true;
            }
        }
        (
            RuleKind::FollowedBy {
                event,
                one_of,
                direction,
                ignoring,
            },
            State::FollowedBy { pending },
        ) => {
            if dir != *direction || any_match(ignoring, dir, ty, ev).is_some() {
                return;
            }
            if let Some((pseq, pty)) = pending.take() {
                if any_match(one_of, dir, ty, ev).is_none() {
                    out.push(
                        vec![pseq, seq],
                        format!(
                            "\"{pty}\" (frame #{pseq}) must be followed immediately by {}, got \"{}\" (frame #{seq})",
                            labels(one_of),
                            ty_name(ty)
                        ),
                    );
                }
            }
            if any_match(event, dir, ty, ev).is_some() {
                *pending = Some((seq, ty_name(ty).to_owned()));
            }
        }
        (
            RuleKind::PrecededBy {
                event,
                one_of,
                direction,
                ignoring,
            },
            State::PrecededBy { prev, prev_type },
        ) => {
            if dir != *direction || any_match(ignoring, dir, ty, ev).is_some() {
                return;
            }
            if any_match(event, dir, ty, ev).is_some() {
                match prev {
                    Some((_, true)) => {}
                    Some((pseq, false)) => out.push(
                        vec![*pseq, seq],
                        format!(
                            "\"{}\" (frame #{seq}) must come immediately after {}, but it follows \"{prev_type}\" (frame #{pseq})",
                            ty_name(ty),
                            labels(one_of)
                        ),
                    ),
                    None => out.push(
                        vec![seq],
                        format!(
                            "\"{}\" (frame #{seq}) must come immediately after {}, but it is the first frame",
                            ty_name(ty),
                            labels(one_of)
                        ),
                    ),
                }
            }
            *prev = Some((seq, any_match(one_of, dir, ty, ev).is_some()));
            prev_type.clear();
            prev_type.push_str(ty_name(ty));
        }
        (
            RuleKind::Terminal {
                key: Some(key),
                terminal,
                direction,
                ..
            },
            State::TerminalKeyed { keys },
        ) => {
            if dir != *direction {
                return;
            }
            let Some(k) = key_value(key, ev) else { return };
            let is_terminal = any_match(terminal, dir, ty, ev).is_some();
            match keys.get_mut(k.as_ref()) {
                Some((_, Some(first))) => {
                    let what = if is_terminal {
                        format!("a second terminal event \"{}\"", ty_name(ty))
                    } else {
                        format!("\"{}\" after its terminal event", ty_name(ty))
                    };
                    out.push(
                        vec![first.seq, seq],
                        format!(
                            "{} {} got {what} (frame #{seq}; terminal: \"{}\" at frame #{})",
                            key.label(),
                            show_key(&k),
                            first.event_type,
                            first.seq
                        ),
                    );
                }
                Some((_, t @ None)) => {
                    if is_terminal {
                        *t = Some(Terminated {
                            seq,
                            event_type: ty_name(ty).to_owned(),
                        });
                    }
                }
                None => {
                    let t = is_terminal.then(|| Terminated {
                        seq,
                        event_type: ty_name(ty).to_owned(),
                    });
                    keys.insert(k.into_owned(), (seq, t));
                }
            }
        }
        (
            RuleKind::Terminal {
                key: None,
                terminal,
                restart,
                direction,
                restart_only_after_terminal,
                ..
            },
            State::TerminalConn { started, ended },
        ) => {
            if dir != *direction {
                return;
            }
            if any_match(restart, dir, ty, ev).is_some() {
                if let (true, Some(s), None) = (*restart_only_after_terminal, *started, &*ended) {
                    out.push(
                        vec![s, seq],
                        format!(
                            "\"{}\" (frame #{seq}) restarts while the cycle begun at frame #{s} is still running; expected {} first",
                            ty_name(ty),
                            labels(terminal)
                        ),
                    );
                }
                *started = Some(seq);
                *ended = None;
                return;
            }
            let is_terminal = any_match(terminal, dir, ty, ev).is_some();
            if let Some(first) = ended {
                let what = if is_terminal {
                    "a second terminal event"
                } else {
                    "frame"
                };
                let allowed = if restart.is_empty() {
                    "nothing may follow it".to_owned()
                } else {
                    format!("only {} may follow it", labels(restart))
                };
                out.push(
                    vec![first.seq, seq],
                    format!(
                        "{what} \"{}\" (frame #{seq}) after the terminal event \"{}\" (frame #{}); {allowed}",
                        ty_name(ty),
                        first.event_type,
                        first.seq
                    ),
                );
                return;
            }
            started.get_or_insert(seq);
            if is_terminal {
                *ended = Some(Terminated {
                    seq,
                    event_type: ty_name(ty).to_owned(),
                });
            }
        }
        (
            RuleKind::Pair {
                open,
                close,
                during,
                key,
                scope,
                max_open,
                ..
            },
            State::Pair { entries },
        ) => {
            let received = dir == Direction::Received;
            if let Some(i) = any_match(open, dir, ty, ev) {
                if let Some(k) = rule_key(key, &open[i], ev) {
                    let sv =
                        scope_value(scope, Some(&open[i]), ev).unwrap_or(Cow::Borrowed(CONNECTION));
                    if let Some(max) = *max_open {
                        let mut open_now: Vec<(&String, &PairEntry)> = entries
                            .iter()
                            .flat_map(|(k, v)| v.iter().map(move |e| (k, e)))
                            .filter(|(ok, e)| {
                                e.closed_seq.is_none()
                                    && !(ok.as_str() == k.as_ref() && e.scope == sv.as_ref())
                            })
                            .collect();
                        if open_now.len() as u64 >= max && received {
                            open_now.sort_by_key(|(_, e)| e.open_seq);
                            let list: Vec<String> = open_now
                                .iter()
                                .map(|(ok, e)| format!("{} (frame #{})", show_key(ok), e.open_seq))
                                .collect();
                            let mut seqs: Vec<u64> =
                                open_now.iter().map(|(_, e)| e.open_seq).collect();
                            seqs.push(seq);
                            out.push(
                                seqs,
                                format!(
                                    "{} {} {} (frame #{seq}) opens while {} already open (at most {max}): {}",
                                    ty_name(ty),
                                    key.label(),
                                    show_key(&k),
                                    open_now.len(),
                                    list.join(", ")
                                ),
                            );
                        }
                    }
                    let list = entries.entry(k.to_string()).or_default();
                    match list.iter_mut().find(|e| e.scope == sv.as_ref()) {
                        Some(e) if e.closed_seq.is_none() => {
                            if received {
                                out.push(
                                    vec![e.open_seq, seq],
                                    format!(
                                        "{} {} {} (frame #{seq}) reuses a key still open since frame #{} (\"{}\")",
                                        ty_name(ty),
                                        key.label(),
                                        show_key(&k),
                                        e.open_seq,
                                        e.open_type
                                    ),
                                );
                            }
                        }
                        Some(e) => {
                            // Reuse after close starts a new pair.
                            e.open_seq = seq;
                            e.closed_seq = None;
                            ty_name(ty).clone_into(&mut e.open_type);
                        }
                        None => list.push(PairEntry {
                            scope: sv.into_owned(),
                            open_seq: seq,
                            open_type: ty_name(ty).to_owned(),
                            closed_seq: None,
                        }),
                    }
                }
            } else if let Some(i) = any_match(close, dir, ty, ev) {
                if let Some(k) = rule_key(key, &close[i], ev) {
                    let sv = scope_value(scope, Some(&close[i]), ev);
                    let entry = entries.get_mut(k.as_ref()).and_then(|list| {
                        // A close without the scope field (a client reply) matches the key in any scope.
                        list.iter_mut()
                            .filter(|e| sv.as_ref().is_none_or(|s| e.scope == s.as_ref()))
                            .min_by_key(|e| e.closed_seq.is_some())
                    });
                    match entry {
                        Some(e) if e.closed_seq.is_none() => e.closed_seq = Some(seq),
                        Some(e) if received => out.push(
                            vec![e.closed_seq.unwrap_or(e.open_seq), seq],
                            format!(
                                "{} {} {} (frame #{seq}) closes a {} that was already closed at frame #{}",
                                ty_name(ty),
                                key.label(),
                                show_key(&k),
                                e.open_type,
                                e.closed_seq.unwrap_or(e.open_seq)
                            ),
                        ),
                        None if received => out.push(
                            vec![seq],
                            format!(
                                "{} {} {} (frame #{seq}) answers no earlier {}",
                                ty_name(ty),
                                key.label(),
                                show_key(&k),
                                labels(open)
                            ),
                        ),
                        _ => {}
                    }
                }
            } else if let Some(i) = any_match(during, dir, ty, ev) {
                if let Some(k) = rule_key(key, &during[i], ev) {
                    let sv = scope_value(scope, Some(&during[i]), ev);
                    let is_open = entries.get(k.as_ref()).is_some_and(|list| {
                        list.iter().any(|e| {
                            e.closed_seq.is_none()
                                && sv.as_ref().is_none_or(|s| e.scope == s.as_ref())
                        })
                    });
                    if !is_open && received {
                        out.push(
                            vec![seq],
                            format!(
                                "{} {} {} (frame #{seq}) needs an open {}",
                                ty_name(ty),
                                key.label(),
                                show_key(&k),
                                labels(open)
                            ),
                        );
                    }
                }
            }
            if let Some((sv, forgiven)) = scope_end(scope, dir, ty, ev) {
                let mut open_now: Vec<(String, u64, String)> = Vec::new();
                entries.retain(|k, list| {
                    list.retain(|e| {
                        if e.scope != sv.as_ref() {
                            return true;
                        }
                        if e.closed_seq.is_none() {
                            open_now.push((k.clone(), e.open_seq, e.open_type.clone()));
                        }
                        false
                    });
                    !list.is_empty()
                });
                if !forgiven {
                    open_now.sort_by_key(|(_, s, _)| *s);
                    for (k, oseq, otype) in open_now {
                        out.push(
                            vec![oseq, seq],
                            format!(
                                "\"{}\" (frame #{seq}) ended {} while {otype} {} {} (frame #{oseq}) was still open; expected {} first",
                                ty_name(ty),
                                show_scope(scope, &sv),
                                key.label(),
                                show_key(&k),
                                labels(close)
                            ),
                        );
                    }
                }
            }
        }
        (
            RuleKind::Lifecycle {
                key,
                start,
                middle,
                end,
                scope,
                ..
            },
            State::Lifecycle { entries },
        ) => {
            let role = if let Some(i) = any_match(start, dir, ty, ev) {
                Some((Role::Start, &start[i]))
            } else if let Some((step, i)) = end
                .iter()
                .enumerate()
                .find_map(|(n, grp)| any_match(grp, dir, ty, ev).map(|i| (n, i)))
            {
                Some((Role::End(step), &end[step][i]))
            } else {
                any_match(middle, dir, ty, ev).map(|i| (Role::Middle, &middle[i]))
            };
            if let Some((role, sel)) = role {
                if let Some(k) = rule_key(key, sel, ev) {
                    let sv = scope_value(scope, Some(sel), ev).unwrap_or(Cow::Borrowed(CONNECTION));
                    let list = entries.entry(k.to_string()).or_default();
                    let entry = list.iter_mut().find(|e| e.scope == sv.as_ref());
                    let name = || format!("{} {}", key.label(), show_key(&k));
                    let t = ty_name(ty);
                    match (role, entry) {
                        (Role::Start, None) => list.push(LifeEntry {
                            scope: sv.into_owned(),
                            start_seq: seq,
                            stage: 0,
                            last_seq: seq,
                        }),
                        (Role::Start, Some(e)) => out.push(
                            vec![e.start_seq, seq],
                            format!(
                                "{}: \"{t}\" (frame #{seq}) starts it again (started at frame #{})",
                                name(),
                                e.start_seq
                            ),
                        ),
                        (_, None) => out.push(
                            vec![seq],
                            format!(
                                "{}: \"{t}\" (frame #{seq}) before {}",
                                name(),
                                labels(start)
                            ),
                        ),
                        (_, Some(e)) if e.stage == end.len() => out.push(
                            vec![e.last_seq, seq],
                            format!(
                                "{}: \"{t}\" (frame #{seq}) after the lifecycle ended (frame #{})",
                                name(),
                                e.last_seq
                            ),
                        ),
                        (Role::Middle, Some(e)) if e.stage > 0 => out.push(
                            vec![e.last_seq, seq],
                            format!(
                                "{}: \"{t}\" (frame #{seq}) after {} (frame #{})",
                                name(),
                                labels(&end[e.stage - 1]),
                                e.last_seq
                            ),
                        ),
                        (Role::Middle, Some(e)) => e.last_seq = seq,
                        (Role::End(step), Some(e)) if step == e.stage => {
                            e.stage += 1;
                            e.last_seq = seq;
                        }
                        (Role::End(_), Some(e)) => out.push(
                            vec![e.last_seq, seq],
                            format!(
                                "{}: \"{t}\" (frame #{seq}) out of order; expected {} next",
                                name(),
                                labels(&end[e.stage])
                            ),
                        ),
                    }
                }
            }
            if let Some((sv, forgiven)) = scope_end(scope, dir, ty, ev) {
                let mut unfinished: Vec<(String, u64, usize)> = Vec::new();
                entries.retain(|k, list| {
                    list.retain(|e| {
                        if e.scope != sv.as_ref() {
                            return true;
                        }
                        if e.stage < end.len() {
                            unfinished.push((k.clone(), e.start_seq, e.stage));
                        }
                        false
                    });
                    !list.is_empty()
                });
                if !forgiven {
                    unfinished.sort_by_key(|(_, s, _)| *s);
                    for (k, sseq, stage) in unfinished {
                        out.push(
                            vec![sseq, seq],
                            format!(
                                "\"{}\" (frame #{seq}) ended {} before {} {} (started at frame #{sseq}) finished; expected {} first",
                                ty_name(ty),
                                show_scope(scope, &sv),
                                key.label(),
                                show_key(&k),
                                labels(&end[stage])
                            ),
                        );
                    }
                }
            }
        }
        (
            RuleKind::Completion {
                request,
                parts,
                key,
                allow_unsolicited,
                ..
            },
            State::Completion { pending },
        ) => {
            let k_of = |sel: &Selector| -> Cow<'_, str> {
                match key {
                    None => Cow::Borrowed(ABSENT),
                    Some(k) => rule_key(k, sel, ev).unwrap_or(Cow::Borrowed(ABSENT)),
                }
            };
            if let Some(i) = any_match(request, dir, ty, ev) {
                pending.push_back(Pending {
                    seq,
                    request_type: ty_name(ty).to_owned(),
                    key: k_of(&request[i]).into_owned(),
                    got: vec![None; parts.len()],
                });
                return;
            }
            let Some((group, i)) = parts
                .iter()
                .enumerate()
                .find_map(|(n, grp)| any_match(grp, dir, ty, ev).map(|i| (n, i)))
            else {
                return;
            };
            let k = k_of(&parts[group][i]);
            let which = match key {
                Some(kk) => format!(" {} {}", kk.label(), show_key(&k)),
                None => String::new(),
            };
            let received = dir == Direction::Received;
            // Requests complete in order: a part belongs to the oldest incomplete request with its key.
            match pending.iter().position(|p| p.key == k.as_ref()) {
                None => {
                    if received && !*allow_unsolicited {
                        out.push(
                            vec![seq],
                            format!(
                                "\"{}\"{which} (frame #{seq}) answers no pending {}",
                                ty_name(ty),
                                labels(request)
                            ),
                        );
                    }
                }
                Some(pos) => {
                    let p = &mut pending[pos];
                    if let Some(first) = p.got[group] {
                        if received {
                            out.push(
                                vec![p.seq, first, seq],
                                format!(
                                    "\"{}\"{which} (frame #{seq}) is a second {} for {} at frame #{} (first: frame #{first})",
                                    ty_name(ty),
                                    labels(&parts[group]),
                                    p.request_type,
                                    p.seq
                                ),
                            );
                        }
                    } else {
                        p.got[group] = Some(seq);
                        if p.got.iter().all(Option::is_some) {
                            pending.remove(pos);
                        }
                    }
                }
            }
        }
        (RuleKind::RequiresPrior { event, prior, key }, State::RequiresPrior { seen }) => {
            if let Some(i) = any_match(prior, dir, ty, ev) {
                if let Some(k) = rule_key(key, &prior[i], ev) {
                    if !seen.contains(k.as_ref()) {
                        seen.insert(k.into_owned());
                    }
                }
            } else if let Some(i) = any_match(event, dir, ty, ev) {
                if let Some(k) = rule_key(key, &event[i], ev) {
                    if !seen.contains(k.as_ref()) && dir == Direction::Received {
                        out.push(
                            vec![seq],
                            format!(
                                "\"{}\" {} {} (frame #{seq}) has no earlier {} with the same {}",
                                ty_name(ty),
                                key.label(),
                                show_key(&k),
                                labels(prior),
                                key.label()
                            ),
                        );
                    }
                }
            }
        }
        (
            RuleKind::Concat {
                items,
                field,
                index,
                scope,
                equals,
                count,
                running,
            },
            State::Concat { scopes, done },
        ) => {
            let item = any_match(items, dir, ty, ev);
            let is_equals = equals
                .as_ref()
                .is_some_and(|e| e.event.matches(dir, ty, ev));
            let is_count = count.as_ref().is_some_and(|c| c.event.matches(dir, ty, ev));
            // A snapshot compared by JSONPath covers every finished scope at once: it carries
            // the texts of many scopes, and no scope value of its own. Scopes still streaming
            // are not compared (the snapshot may have been taken mid-stream).
            if let Some(eq) = equals.as_ref().filter(|e| is_equals && e.path.is_some()) {
                let path = eq.path.as_deref().unwrap_or_default();
                let mut open: Vec<(&String, &ConcatState)> = done.iter().collect();
                open.sort_by(|a, b| a.0.cmp(b.0));
                for (sv, st) in open {
                    let Some(want) = jsonpath_string(path, sv, ev) else {
                        continue;
                    };
                    if let Some(msg) = concat_mismatch(&st.text, &want) {
                        out.push(
                            vec![seq],
                            format!(
                                "{} {} (frame #{seq}) for {} differs from the {} concatenated {} {}: {msg}",
                                ty_name(ty),
                                path.replace("{scope}", sv),
                                show_scope(scope, sv),
                                st.count,
                                labels(items),
                                field
                            ),
                        );
                    }
                }
                if item.is_none() {
                    return;
                }
            }
            let sel = item.map(|i| &items[i]).or_else(|| {
                if is_equals {
                    equals.as_ref().map(|e| &e.event)
                } else {
                    count.as_ref().filter(|_| is_count).map(|c| &c.event)
                }
            });
            let Some(sv) = scope_value(scope, sel, ev) else {
                return;
            };
            if item.is_some() {
                let st = match scopes.get_mut(sv.as_ref()) {
                    Some(st) => st,
                    None => scopes.entry(sv.to_string()).or_default(),
                };
                if let Some(ip) = index {
                    if let Some(got) = lookup(ev, ip).and_then(Value::as_u64) {
                        if got != st.next_index {
                            out.push(
                                vec![seq],
                                format!(
                                    "{} {ip} is {got} (frame #{seq}) in {}; expected {}",
                                    ty_name(ty),
                                    show_scope(scope, &sv),
                                    st.next_index
                                ),
                            );
                        }
                        // Continue from what arrived so one gap is reported once.
                        st.next_index = got.saturating_add(1);
                    }
                }
                if let Some(s) = lookup(ev, field).and_then(Value::as_str) {
                    st.text.push_str(s);
                }
                st.count += 1;
                if let Some(rp) = running {
                    if let Some(got) = lookup(ev, rp).and_then(Value::as_str) {
                        if let Some(msg) = concat_mismatch(&st.text, got) {
                            out.push(
                                vec![seq],
                                format!(
                                    "{} {rp} (frame #{seq}) in {} is not the concatenation of the {} {} {} so far: {msg}",
                                    ty_name(ty),
                                    show_scope(scope, &sv),
                                    st.count,
                                    labels(items),
                                    field
                                ),
                            );
                            // Follow the server's running text so one divergence is reported once.
                            got.clone_into(&mut st.text);
                        }
                    }
                }
            }
            let by_field = equals.as_ref().filter(|e| is_equals && e.path.is_none());
            if by_field.is_some() || is_count {
                let empty = ConcatState::default();
                let st = scopes.get(sv.as_ref()).unwrap_or(&empty);
                if let Some(eq) = by_field {
                    if let Some(want) = lookup(ev, &eq.field).and_then(Value::as_str) {
                        if let Some(msg) = concat_mismatch(&st.text, want) {
                            out.push(
                                vec![seq],
                                format!(
                                    "{} {} (frame #{seq}) in {} differs from the {} concatenated {} {}: {msg}",
                                    ty_name(ty),
                                    eq.field,
                                    show_scope(scope, &sv),
                                    st.count,
                                    labels(items),
                                    field
                                ),
                            );
                        }
                    }
                }
                if let Some(c) = count.as_ref().filter(|_| is_count) {
                    if let Some(n) = lookup(ev, &c.field) {
                        if n.as_u64() != Some(st.count) {
                            out.push(
                                vec![seq],
                                format!(
                                    "{} {} is {n} (frame #{seq}) in {}, but {} {} events arrived",
                                    ty_name(ty),
                                    c.field,
                                    show_scope(scope, &sv),
                                    st.count,
                                    labels(items)
                                ),
                            );
                        }
                    }
                }
            }
            // The comparison event closes the scope's concatenation as well.
            if by_field.is_some() || scope_end(scope, dir, ty, ev).is_some() {
                if let Some(st) = scopes.remove(sv.as_ref()) {
                    if equals.as_ref().is_some_and(|e| e.path.is_some()) && by_field.is_none() {
                        done.insert(sv.into_owned(), st);
                    }
                }
            }
        }
        _ => unreachable!("each rule's state is built from its kind"),
    }
}

#[derive(Clone, Copy)]
enum Role {
    Start,
    Middle,
    End(usize),
}

/// Where two strings first differ, with short excerpts; `None` when equal.
fn concat_mismatch(got: &str, want: &str) -> Option<String> {
    if got == want {
        return None;
    }
    let at = got
        .chars()
        .zip(want.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let excerpt = |s: &str| -> String {
        let tail: String = s.chars().skip(at.saturating_sub(10)).take(40).collect();
        let more = s.chars().count() > at.saturating_sub(10) + 40;
        format!("{tail:?}{}", if more { "…" } else { "" })
    };
    Some(format!(
        "first difference at char {at}: expected {} (from the event), concatenation gives {} ({} vs {} chars)",
        excerpt(want),
        excerpt(got),
        want.chars().count(),
        got.chars().count()
    ))
}

/// The string a JSONPath (with `{scope}` replaced by the scope value) selects in `ev`, when it
/// selects exactly one string.
fn jsonpath_string(path: &str, scope: &str, ev: &Value) -> Option<String> {
    let escaped = scope.replace('\\', "\\\\").replace('\'', "\\'");
    let query = path.replace("{scope}", &escaped);
    let parsed = serde_json_path::JsonPath::parse(&query).ok()?;
    let found = parsed.query(ev).all();
    match found.as_slice() {
        [Value::String(s)] => Some(s.clone()),
        _ => None,
    }
}
