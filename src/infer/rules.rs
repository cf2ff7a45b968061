//! Ordering rules the traffic supports, each with its evidence.
//!
//! Only what every recorded connection shows is proposed: the first event; the events that end a
//! turn (and what may start the next); ids that open and close a bracket (`messageId` from START
//! to END, `call_id` from call to result); a boolean that brackets a reply (`is_typing` on, reply,
//! off); deltas that concatenate into a final text, and a member holding the text so far. Each
//! candidate is then checked against the recordings with the real rule checker by the caller
//! ([`super::pack`]) and dropped when its own evidence breaks it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::emit::{comment, flow, quote};
use super::observe::{turn_replies, turns, Connection, Observed};
use super::values::id_name;
use crate::json::pointer_get;
use crate::record::transcript::Dir;

/// A proposed rule: its id and its YAML list item, comments included.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub kind: &'static str,
    /// What the rule says, in a sentence (the README lists it).
    pub summary: String,
    pub yaml: String,
    /// The event types the rule is about (`check --suggest` compares them with a pack's rules).
    pub core: BTreeSet<String>,
}

impl Candidate {
    fn about<I: IntoIterator<Item = String>>(mut self, types: I) -> Self {
        self.core.extend(types);
        self
    }
}

fn item(
    id: &str,
    kind: &'static str,
    summary: String,
    evidence: &str,
    body: &[(&str, String)],
) -> Candidate {
    let mut yaml = comment("  ", &format!("Evidence: {evidence}"));
    yaml.push_str(&format!(
        "  - id: {id}\n    description: {}\n    kind: {kind}\n",
        quote(&summary)
    ));
    for (k, v) in body {
        yaml.push_str(&format!("    {k}: {v}\n"));
    }
    Candidate {
        id: id.to_owned(),
        kind,
        summary,
        yaml,
        core: BTreeSet::new(),
    }
}

fn list(types: &BTreeSet<String>) -> String {
    flow(&Value::Array(
        types.iter().map(|t| Value::String(t.clone())).collect(),
    ))
}

/// Every candidate rule of the observation.
pub fn infer(obs: &Observed) -> Vec<Candidate> {
    let mut out = Vec::new();
    out.extend(first(obs));
    out.extend(terminal(obs));
    out.extend(pairs(obs));
    out.extend(brackets(obs));
    out.extend(concat(obs));
    out
}

/// Connections with their exchanges, accepted ones only.
fn conns(obs: &Observed) -> impl Iterator<Item = (&Connection, &Vec<super::observe::Exchange>)> {
    obs.exchanges
        .iter()
        .map(move |(&(r, c), xs)| (obs.conn(r, c), xs))
        .filter(|(c, _)| c.accepted())
}

fn first(obs: &Observed) -> Option<Candidate> {
    let mut types = BTreeSet::new();
    let mut n = 0;
    for (conn, _) in conns(obs) {
        if let Some(f) = conn
            .frames
            .iter()
            .find(|f| f.dir == Dir::Received && f.event.is_some())
        {
            types.insert(f.ty.clone()?);
            n += 1;
        }
    }
    if n == 0 || types.len() > 3 {
        return None;
    }
    Some(
        item(
            "first-event",
            "first",
            format!("The first event of a connection is {}.", names(&types)),
            &format!("the first event of each of {n} connection(s)"),
            &[("one_of", list(&types))],
        )
        .about(types.clone()),
    )
}

fn names(types: &BTreeSet<String>) -> String {
    let v: Vec<String> = types.iter().map(|t| format!("`{t}`")).collect();
    v.join(" or ")
}

/// Terminal events: the last reply of every complete turn of two or more replies; restarts: the
/// first replies of turns, single replies (an error answering a bad frame) and heartbeats.
fn terminal(obs: &Observed) -> Option<Candidate> {
    let mut terminal = BTreeSet::new();
    let mut restart: BTreeSet<String> = obs.heartbeats.clone();
    let mut n = 0;
    for (conn, xs) in conns(obs) {
        for t in turns(xs) {
            let complete = t.last().is_some_and(|&i| xs[i].complete);
            let replies = turn_replies(xs, &t);
            let tys: Vec<&str> = replies
                .iter()
                .filter_map(|&i| conn.frames[i].ty.as_deref())
                .collect();
            match tys.as_slice() {
                [] => {}
                [one] => {
                    restart.insert((*one).to_owned());
                }
                [head, .., last] => {
                    restart.insert((*head).to_owned());
                    if complete {
                        terminal.insert((*last).to_owned());
                        n += 1;
                    }
                }
            }
        }
    }
    if terminal.is_empty() || !terminal.is_disjoint(&restart) {
        return None;
    }
    Some(item(
        "turn-end",
        "terminal",
        format!(
            "A turn ends with one {}; after it only {} (a new turn, an answer to one frame, a heartbeat).",
            names(&terminal),
            names(&restart)
        ),
        &format!("{n} complete turn(s) of two or more events, each ended by one of these"),
        &[("terminal", list(&terminal)), ("restart", list(&restart))],
    )
    .about(terminal.clone()))
}

/// `open` … `close` per id: for a top-level id member carried by two or more types, every value's
/// first event has one type and its last another, each once.
fn pairs(obs: &Observed) -> Vec<Candidate> {
    // pointer → value → ordered types, per connection (values do not cross connections).
    let mut by_ptr: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for (conn, _) in conns(obs) {
        let mut seqs: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for f in conn
            .frames
            .iter()
            .filter(|f| f.dir == Dir::Received && f.is_json)
        {
            let (Some(Value::Object(m)), Some(ty)) = (&f.event, &f.ty) else {
                continue;
            };
            for (k, v) in m {
                if let (true, Some(s)) = (id_name(k), v.as_str()) {
                    seqs.entry((format!("/{k}"), s.to_owned()))
                        .or_default()
                        .push(ty.clone());
                }
            }
        }
        for ((p, _), s) in seqs {
            by_ptr.entry(p).or_default().push(s);
        }
    }
    let mut out = Vec::new();
    for (ptr, seqs) in by_ptr {
        let (Some(open), Some(close)) = (seqs[0].first().cloned(), seqs[0].last().cloned()) else {
            continue;
        };
        if open == close {
            continue;
        }
        let ok = seqs.iter().all(|s| {
            s.first() == Some(&open)
                && s.last() == Some(&close)
                && s.iter().filter(|t| **t == open).count() == 1
                && s.iter().filter(|t| **t == close).count() == 1
        });
        if !ok {
            continue;
        }
        let during: BTreeSet<String> = seqs
            .iter()
            .flat_map(|s| s.iter())
            .filter(|t| **t != open && **t != close)
            .cloned()
            .collect();
        let scope_end = turn_ends_without(obs, &ptr);
        let mut body = vec![
            ("key", ptr.clone()),
            ("open", quote(&open)),
            ("close", quote(&close)),
        ];
        if !during.is_empty() {
            body.push(("during", list(&during)));
        }
        if !scope_end.is_empty() {
            body.push(("scope_end", list(&scope_end)));
        }
        body.push(("require_on_close", "true".to_owned()));
        let name = ptr
            .trim_start_matches('/')
            .replace(['_', '.'], "-")
            .to_ascii_lowercase();
        out.push(item(
            &format!("{name}-pairs"),
            "pair",
            format!(
                "Each `{}` opens with `{open}` and closes with one `{close}`{}; not reopened while open{}.",
                ptr.trim_start_matches('/'),
                if during.is_empty() { String::new() } else { format!(", {} only while open", names(&during)) },
                if scope_end.is_empty() { String::new() } else { format!(", closed before {}", names(&scope_end)) }
            ),
            &format!("{} value(s) of {ptr}, each {open} first and {close} last", seqs.len()),
            &body,
        )
        .about([open.clone(), close.clone()]));
    }
    out
}

/// The end events of turns that do not carry `ptr` (the scope a keyed pair lives in).
fn turn_ends_without(obs: &Observed, ptr: &str) -> BTreeSet<String> {
    let mut ends = BTreeSet::new();
    for (conn, xs) in conns(obs) {
        for t in turns(xs) {
            if !t.last().is_some_and(|&i| xs[i].complete) {
                continue;
            }
            let replies = turn_replies(xs, &t);
            if replies.len() < 2 {
                continue;
            }
            let last = &conn.frames[*replies.last().unwrap()];
            if last
                .event
                .as_ref()
                .and_then(|e| pointer_get(e, ptr))
                .is_none()
            {
                if let Some(ty) = &last.ty {
                    ends.insert(ty.clone());
                }
            }
        }
    }
    ends
}

/// A boolean member that brackets replies: `typing {is_typing: true}` … `{is_typing: false}`,
/// alternating, starting on and ending off in every turn that has it.
fn brackets(obs: &Observed) -> Vec<Candidate> {
    // (type, member) → (turns seen, alternation held, during types)
    let mut seen: BTreeMap<(String, String), (usize, bool, BTreeSet<String>)> = BTreeMap::new();
    for (conn, xs) in conns(obs) {
        for t in turns(xs) {
            let replies = turn_replies(xs, &t);
            let mut per: BTreeMap<(String, String), (Vec<bool>, BTreeSet<String>)> =
                BTreeMap::new();
            for &i in &replies {
                let f = &conn.frames[i];
                let (Some(Value::Object(m)), Some(ty)) = (&f.event, &f.ty) else {
                    continue;
                };
                for (k, v) in m {
                    if let Some(b) = v.as_bool() {
                        per.entry((ty.clone(), k.clone())).or_default().0.push(b);
                    }
                }
            }
            for ((ty, k), (vals, _)) in per.iter_mut() {
                let ok = vals.len() >= 2
                    && vals.iter().enumerate().all(|(i, b)| *b == (i % 2 == 0))
                    && vals.len() % 2 == 0;
                let mut during = BTreeSet::new();
                let mut open = false;
                for &i in &replies {
                    let f = &conn.frames[i];
                    if f.ty.as_deref() == Some(ty.as_str()) {
                        if let Some(b) = f
                            .event
                            .as_ref()
                            .and_then(|e| e.get(k))
                            .and_then(Value::as_bool)
                        {
                            open = b;
                        }
                    } else if open {
                        if let Some(t) = &f.ty {
                            during.insert(t.clone());
                        }
                    }
                }
                let e = seen
                    .entry((ty.clone(), k.clone()))
                    .or_insert((0, true, BTreeSet::new()));
                e.0 += 1;
                e.1 &= ok;
                e.2.extend(during);
            }
        }
    }
    let mut out = Vec::new();
    for ((ty, k), (n, ok, during)) in seen {
        if !ok || n == 0 {
            continue;
        }
        let sel = |b: bool| format!("{{ type: {}, where: {{ /{k}: {b} }} }}", quote(&ty));
        let mut body = vec![("open", sel(true)), ("close", sel(false))];
        if !during.is_empty() {
            body.push(("during", list(&during)));
        }
        body.push(("require_on_close", "true".to_owned()));
        out.push(item(
            &format!("{}-{}-bracket", slug(&ty), slug(&k)),
            "pair",
            format!(
                "`{ty}` with `{k}: true` opens a bracket that `{ty}` with `{k}: false` closes{}.",
                if during.is_empty() { String::new() } else { format!("; {} only inside it", names(&during)) }
            ),
            &format!("{n} turn(s), each `{k}` true then false"),
            &body,
        )
        .about([ty.clone()]));
    }
    out
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_matches('-')
        .to_owned()
}

/// String members of an event, top level and one level down: pointer → value.
fn strings(e: &Value) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    if let Value::Object(m) = e {
        for (k, v) in m {
            match v {
                Value::String(s) => out.push((format!("/{k}"), s.as_str())),
                Value::Object(inner) => {
                    for (k2, v2) in inner {
                        if let Value::String(s) = v2 {
                            out.push((format!("/{k}/{k2}"), s.as_str()));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// A concatenation found in the turns: `items` type, its text member, the final event and its
/// member (when one holds the whole text), and a member holding the text so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ConcatFound {
    pub items: String,
    pub field: String,
    pub equals: Option<(String, String)>,
    pub running: Option<String>,
}

/// Deltas that concatenate: for an event type seen at least twice in some turn, a string member
/// whose values joined equal a member of one later event of the turn (in every complete turn that
/// has both), or that another member of every item accumulates.
pub fn find_concat(obs: &Observed) -> Vec<ConcatFound> {
    // Candidate (items type, field) with turns' data.
    struct TurnData<'a> {
        items: BTreeMap<String, Vec<&'a Value>>, // type → item events in order
        all: Vec<&'a Value>,
        complete: bool,
    }
    let mut data = Vec::new();
    for (conn, xs) in conns(obs) {
        for t in turns(xs) {
            let replies = turn_replies(xs, &t);
            let mut td = TurnData {
                items: BTreeMap::new(),
                all: Vec::new(),
                complete: t.last().is_some_and(|&i| xs[i].complete),
            };
            for &i in &replies {
                let f = &conn.frames[i];
                if let (Some(e), Some(ty)) = (&f.event, &f.ty) {
                    if f.is_json {
                        td.items.entry(ty.clone()).or_default().push(e);
                        td.all.push(e);
                    }
                }
            }
            data.push(td);
        }
    }
    let mut item_types: BTreeSet<String> = BTreeSet::new();
    for td in &data {
        for (ty, evs) in &td.items {
            if evs.len() >= 2 {
                item_types.insert(ty.clone());
            }
        }
    }
    let mut out = Vec::new();
    for ty in item_types {
        // Fields present as strings in every item of this type.
        let mut fields: Option<BTreeSet<String>> = None;
        for td in &data {
            for e in td.items.get(&ty).into_iter().flatten() {
                let here: BTreeSet<String> = strings(e).into_iter().map(|(p, _)| p).collect();
                fields = Some(match fields {
                    None => here,
                    Some(f) => f.intersection(&here).cloned().collect(),
                });
            }
        }
        let fields = fields.unwrap_or_default();
        for field in &fields {
            if field == &obs.discriminator {
                continue;
            }
            let joined = |td: &TurnData| -> String {
                td.items[&ty]
                    .iter()
                    .filter_map(|e| pointer_get(e, field).and_then(Value::as_str))
                    .collect()
            };
            // running: another field equal to the text so far in every item
            let mut running = None;
            for other in fields
                .iter()
                .filter(|o| *o != field && **o != obs.discriminator)
            {
                let holds = data
                    .iter()
                    .filter(|td| td.items.contains_key(&ty))
                    .all(|td| {
                        let mut so_far = String::new();
                        td.items[&ty].iter().all(|e| {
                            so_far.push_str(
                                pointer_get(e, field).and_then(Value::as_str).unwrap_or(""),
                            );
                            pointer_get(e, other).and_then(Value::as_str) == Some(so_far.as_str())
                        })
                    });
                let streamed = data
                    .iter()
                    .any(|td| td.items.get(&ty).is_some_and(|v| v.len() >= 2));
                if holds && streamed {
                    running = Some(other.clone());
                    break;
                }
            }
            // equals: an event of another type holding the joined text, in every complete turn
            let mut equals = None;
            let mut finals: BTreeSet<(String, String)> = BTreeSet::new();
            for td in data
                .iter()
                .filter(|td| td.complete && td.items.contains_key(&ty))
            {
                let text = joined(td);
                if text.is_empty() {
                    continue;
                }
                for e in &td.all {
                    let ety = pointer_get(e, &obs.discriminator)
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if ety == ty {
                        continue;
                    }
                    for (p, s) in strings(e) {
                        if s == text {
                            finals.insert((ety.to_owned(), p));
                        }
                    }
                }
            }
            for (fty, fptr) in finals {
                let holds = data
                    .iter()
                    .filter(|td| td.complete && td.items.contains_key(&ty))
                    .all(|td| {
                        let text = joined(td);
                        let with: Vec<&&Value> = td
                            .items
                            .get(&fty)
                            .map(|v| v.iter().collect())
                            .unwrap_or_default();
                        with.is_empty()
                            || with.len() == 1
                                && pointer_get(with[0], &fptr).and_then(Value::as_str)
                                    == Some(text.as_str())
                    });
                let present = data
                    .iter()
                    .filter(|td| td.complete && td.items.contains_key(&ty))
                    .any(|td| td.items.contains_key(&fty));
                if holds && present {
                    equals = Some((fty, fptr));
                    break;
                }
            }
            if equals.is_some() || running.is_some() {
                out.push(ConcatFound {
                    items: ty.clone(),
                    field: field.clone(),
                    equals,
                    running,
                });
            }
        }
    }
    // One finding per items type: prefer one with `equals`.
    let mut best: BTreeMap<String, ConcatFound> = BTreeMap::new();
    for c in out {
        let better = best
            .get(&c.items)
            .is_none_or(|b| b.equals.is_none() && c.equals.is_some());
        if better {
            best.insert(c.items.clone(), c);
        }
    }
    best.into_values().collect()
}

fn concat(obs: &Observed) -> Vec<Candidate> {
    let mut out = Vec::new();
    for c in find_concat(obs) {
        let mut body = vec![("items", quote(&c.items)), ("field", c.field.clone())];
        let mut says = format!(
            "The `{}` members of `{}` events",
            c.field.trim_start_matches('/'),
            c.items
        );
        if let Some((ety, eptr)) = &c.equals {
            body.push((
                "equals",
                format!("{{ event: {}, field: {} }}", quote(ety), eptr),
            ));
            says.push_str(&format!(
                " concatenate to `{ety}.{}`",
                eptr.trim_start_matches('/')
            ));
        }
        if let Some(r) = &c.running {
            body.push(("running", r.clone()));
            if c.equals.is_some() {
                says.push_str(", and");
            }
            says.push_str(&format!(
                " each item's `{}` holds the text so far",
                r.trim_start_matches('/')
            ));
        }
        says.push('.');
        let ends = turn_ends_for_items(obs, &c.items, c.equals.as_ref().map(|e| e.0.as_str()));
        if !ends.is_empty() {
            body.push(("scope_end", list(&ends)));
        }
        out.push(
            item(
                &format!("{}-concat", slug(&c.items)),
                "concat",
                says,
                "every complete turn with these events",
                &body,
            )
            .about([c.items.clone()]),
        );
    }
    out
}

/// The last events of complete turns that stream `items` without the `equals` event (a cancelled
/// or failed turn): they end a concatenation too.
fn turn_ends_for_items(obs: &Observed, items: &str, equals: Option<&str>) -> BTreeSet<String> {
    let mut ends = BTreeSet::new();
    for (conn, xs) in conns(obs) {
        for t in turns(xs) {
            if !t.last().is_some_and(|&i| xs[i].complete) {
                continue;
            }
            let replies = turn_replies(xs, &t);
            let tys: Vec<&str> = replies
                .iter()
                .filter_map(|&i| conn.frames[i].ty.as_deref())
                .collect();
            if tys.contains(&items) && equals.is_none_or(|e| !tys.contains(&e)) {
                if let Some(last) = tys.last() {
                    if *last != items {
                        ends.insert((*last).to_owned());
                    }
                }
            }
        }
    }
    ends
}
