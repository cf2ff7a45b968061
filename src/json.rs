//! JSON helpers shared by the schema registry, the runner and the rules.

use serde_json::Value;

/// RFC 6901 lookup like `Value::pointer`, without allocating for segments free of `~` escapes
/// (this runs for every received frame: the discriminator, rule keys and scopes).
pub fn pointer_get<'a>(ev: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(ev);
    }
    let rest = pointer.strip_prefix('/')?;
    let mut cur = ev;
    for seg in rest.split('/') {
        let unescaped;
        let seg = if seg.contains('~') {
            unescaped = seg.replace("~1", "/").replace("~0", "~");
            unescaped.as_str()
        } else {
            seg
        };
        cur = match cur {
            Value::Object(map) => map.get(seg)?,
            Value::Array(items) => {
                if seg.len() > 1 && seg.starts_with('0') {
                    return None;
                }
                items.get(seg.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointer_get_follows_rfc6901() {
        let v = json!({"a/b": 1, "m~n": 2, "list": [10, 20], "o": {"k": "v"}, "": 3, "type": "t"});
        for p in [
            "", "/a~1b", "/m~0n", "/list/1", "/o/k", "/", "/list/01", "/list/x", "/nope", "o",
            "/type",
        ] {
            assert_eq!(pointer_get(&v, p), v.pointer(p), "pointer {p:?}");
        }
        let arr = json!([5, 6]);
        assert_eq!(pointer_get(&arr, "/1"), arr.pointer("/1"));
    }
}
