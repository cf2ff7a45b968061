//! Which field says what an event is: the discriminator.
//!
//! Candidates are the string members of the recorded JSON objects, top level and nested (objects
//! only, three levels at most: `/type`, `/header/msg_type`). A candidate must be present in nearly
//! every object (90%), hold short words (no free text, no ids) and take few distinct values; among
//! those the most present wins, then a conventional name (`type`, `event`, `kind`, ...), then the
//! shallower, then the one with more distinct values (it tells more events apart).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::values::{categorical, pointer_token};

/// Names that protocols use for their discriminator, most common first.
const CONVENTIONAL: &[&str] = &[
    "type",
    "event",
    "kind",
    "msg_type",
    "message_type",
    "event_type",
    "op",
    "action",
    "method",
    "t",
    "cmd",
    "command",
];

/// The detected discriminator pointer of `objects`, or `None` when no field qualifies.
pub fn discriminator(objects: &[Value]) -> Option<String> {
    if objects.is_empty() {
        return None;
    }
    let mut seen: BTreeMap<String, (usize, BTreeSet<String>, bool)> = BTreeMap::new();
    for o in objects {
        let mut here = BTreeSet::new();
        walk(o, "", 0, &mut here, &mut seen);
    }
    let n = objects.len();
    let mut best: Option<(String, (usize, usize, usize, usize))> = None;
    for (ptr, (count, values, all_categorical)) in seen {
        if !all_categorical || count * 10 < n * 9 {
            continue;
        }
        let distinct = values.len();
        if distinct > 64.max(n / 2) && distinct > 1 {
            continue;
        }
        let last = ptr.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
        let name_rank = CONVENTIONAL
            .iter()
            .position(|c| *c == last)
            .unwrap_or(CONVENTIONAL.len());
        // A single-valued field that is not conventionally named tells nothing apart.
        if distinct == 1 && name_rank == CONVENTIONAL.len() && n > 1 {
            continue;
        }
        let depth = ptr.matches('/').count();
        // Higher is better: presence, then name, then shallower, then more values.
        let key = (
            count,
            CONVENTIONAL.len() - name_rank,
            10 - depth.min(10),
            distinct,
        );
        if best.as_ref().is_none_or(|(_, k)| key > *k) {
            best = Some((ptr, key));
        }
    }
    best.map(|(p, _)| p)
}

/// Whether `pointer` holds a string in at least 90% of `objects` (the client's messages carry the
/// server's discriminator too, or carry none).
pub fn present_in_most(objects: &[Value], pointer: &str) -> bool {
    if objects.is_empty() {
        return true;
    }
    let with = objects
        .iter()
        .filter(|o| crate::json::pointer_get(o, pointer).is_some_and(Value::is_string))
        .count();
    with * 10 >= objects.len() * 9
}

fn walk(
    v: &Value,
    prefix: &str,
    depth: usize,
    here: &mut BTreeSet<String>,
    seen: &mut BTreeMap<String, (usize, BTreeSet<String>, bool)>,
) {
    let Value::Object(m) = v else { return };
    for (k, v) in m {
        let ptr = format!("{prefix}/{}", pointer_token(k));
        match v {
            Value::String(s) if here.insert(ptr.clone()) => {
                let e = seen.entry(ptr).or_insert((0, BTreeSet::new(), true));
                e.0 += 1;
                e.2 &= categorical(s);
                if e.1.len() <= 256 {
                    e.1.insert(s.clone());
                }
            }
            Value::Object(_) if depth < 2 => walk(v, &ptr, depth + 1, here, seen),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn top_level_type_wins_over_role() {
        let objs = vec![
            json!({"type": "token", "role": "assistant", "token": "Hel"}),
            json!({"type": "complete", "role": "assistant", "response": "Hello"}),
            json!({"type": "token", "role": "assistant", "token": "lo"}),
        ];
        assert_eq!(discriminator(&objs).as_deref(), Some("/type"));
    }

    #[test]
    fn nested_discriminator() {
        let objs = vec![
            json!({"header": {"msg_type": "execute_reply", "msg_id": "a1b2c3d4e5f6"}, "content": {}}),
            json!({"header": {"msg_type": "stream", "msg_id": "a1b2c3d4e5f7"}, "content": {"text": "hi there"}}),
            json!({"header": {"msg_type": "status", "msg_id": "a1b2c3d4e5f8"}, "content": {}}),
        ];
        assert_eq!(discriminator(&objs).as_deref(), Some("/header/msg_type"));
    }

    #[test]
    fn other_names_and_free_text() {
        let objs = vec![
            json!({"event": "text_chunk", "text": "Hello there"}),
            json!({"event": "done", "text": "All done now"}),
        ];
        assert_eq!(discriminator(&objs).as_deref(), Some("/event"));
        assert_eq!(discriminator(&[json!({"text": "a b"})]), None);
        assert!(present_in_most(&objs, "/event"));
        assert!(!present_in_most(&[json!({"message": "x"})], "/event"));
    }
}
