//! A JSON Schema from samples: the strictest schema every sample satisfies, within reason.
//!
//! Types are merged (`integer` widens to `number`; several types become a list); an object's
//! `required` is what every sample holds and `additionalProperties` is `false`; arrays get the merge
//! of all their items; a string member with a small closed set of short words (`role`, `status`)
//! seen often enough gets an `enum`. An object whose member names look like ids (a map keyed by
//! id) is described as a map, not as fixed properties. The samples stay in `examples`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::values::{categorical, id_like, type_name, volatile_name};

/// An `enum` needs at least this many samples of the member...
const ENUM_MIN_SAMPLES: usize = 3;
/// ...and at most this many distinct values.
const ENUM_MAX_VALUES: usize = 8;
/// Samples kept as `examples`.
const EXAMPLES: usize = 3;

/// What the samples of one location showed.
#[derive(Debug, Default, Clone)]
struct Shape {
    samples: usize,
    types: BTreeSet<&'static str>,
    /// Member name → (how many object samples held it, its shape).
    members: BTreeMap<String, Shape>,
    objects: usize,
    items: Option<Box<Shape>>,
    strings: BTreeSet<String>,
    strings_all_categorical: bool,
    min_len: Option<usize>,
}

impl Shape {
    fn add(&mut self, v: &Value) {
        if self.samples == 0 {
            self.strings_all_categorical = true;
        }
        self.samples += 1;
        self.types.insert(type_name(v));
        match v {
            Value::Object(m) => {
                self.objects += 1;
                for (k, v) in m {
                    self.members.entry(k.clone()).or_default().add(v);
                }
            }
            Value::Array(a) => {
                let items = self.items.get_or_insert_with(Box::default);
                for x in a {
                    items.add(x);
                }
            }
            Value::String(s) => {
                self.strings_all_categorical &= categorical(s);
                if self.strings.len() <= ENUM_MAX_VALUES {
                    self.strings.insert(s.clone());
                }
                let n = s.chars().count();
                self.min_len = Some(self.min_len.map_or(n, |m| m.min(n)));
            }
            _ => {}
        }
    }

    fn schema(&self, name: Option<&str>) -> Value {
        let mut out = Map::new();
        let mut types: Vec<&str> = self.types.iter().copied().collect();
        if types.contains(&"number") {
            types.retain(|t| *t != "integer");
        }
        if types.len() == 1 {
            out.insert("type".into(), json!(types[0]));
        } else if !types.is_empty() {
            out.insert("type".into(), json!(types));
        }
        if self.types.contains("object") {
            let map_like = self.members.keys().any(|k| id_like(k));
            if map_like {
                let mut merged = Shape::default();
                for s in self.members.values() {
                    merged.merge(s);
                }
                out.insert("additionalProperties".into(), merged.schema(None));
            } else {
                let required: Vec<&String> = self
                    .members
                    .iter()
                    .filter(|(_, s)| s.samples == self.objects)
                    .map(|(k, _)| k)
                    .collect();
                if !required.is_empty() {
                    out.insert("required".into(), json!(required));
                }
                let props: Map<String, Value> = self
                    .members
                    .iter()
                    .map(|(k, s)| (k.clone(), s.schema(Some(k))))
                    .collect();
                out.insert("properties".into(), Value::Object(props));
                out.insert("additionalProperties".into(), json!(false));
            }
        }
        if self.types.contains("array") {
            if let Some(items) = &self.items {
                if items.samples > 0 {
                    out.insert("items".into(), items.schema(None));
                }
            }
        }
        if types == ["string"] {
            let enum_ok = self.strings_all_categorical
                && self.samples >= ENUM_MIN_SAMPLES
                && self.strings.len() <= ENUM_MAX_VALUES
                && self.strings.len() * 2 <= self.samples
                && !name.is_some_and(volatile_name);
            if enum_ok {
                out.insert("enum".into(), json!(self.strings));
            } else if self.min_len.is_some_and(|m| m > 0) {
                out.insert("minLength".into(), json!(1));
            }
        }
        Value::Object(out)
    }

    fn merge(&mut self, other: &Shape) {
        if self.samples == 0 {
            self.strings_all_categorical = true;
        }
        self.samples += other.samples;
        self.objects += other.objects;
        self.types.extend(other.types.iter().copied());
        for (k, s) in &other.members {
            self.members.entry(k.clone()).or_default().merge(s);
        }
        if let Some(i) = &other.items {
            self.items.get_or_insert_with(Box::default).merge(i);
        }
        self.strings.extend(other.strings.iter().cloned());
        self.strings_all_categorical &= other.strings_all_categorical;
        self.min_len = match (self.min_len, other.min_len) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// The schema of one event type from its samples. `discriminator` (a pointer) gets `const: ty`.
pub fn infer(
    samples: &[&Value],
    discriminator: Option<&str>,
    ty: Option<&str>,
    id: &str,
    title: &str,
) -> Value {
    let mut shape = Shape::default();
    for s in samples {
        shape.add(s);
    }
    let mut schema = shape.schema(None);
    if let (Some(d), Some(ty)) = (discriminator, ty) {
        pin_const(&mut schema, d, ty);
    }
    let mut out = Map::new();
    out.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    out.insert("$id".into(), json!(id));
    out.insert("title".into(), json!(title));
    out.insert(
        "description".into(),
        json!(format!(
            "Inferred by `wschat-check init` from {} sample(s); review it.",
            samples.len()
        )),
    );
    if let Value::Object(m) = schema {
        out.extend(m);
    }
    let examples: Vec<Value> = samples
        .iter()
        .take(EXAMPLES)
        .map(|v| (*v).clone())
        .collect();
    out.insert("examples".into(), Value::Array(examples));
    Value::Object(out)
}

/// Replaces the schema of the member at `pointer` by `{const: value}`.
fn pin_const(schema: &mut Value, pointer: &str, value: &str) {
    let mut cur = schema;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        let name = p.replace("~1", "/").replace("~0", "~");
        let Some(props) = cur.get_mut("properties").and_then(Value::as_object_mut) else {
            return;
        };
        let Some(next) = props.get_mut(&name) else {
            return;
        };
        if i + 1 == parts.len() {
            *next = json!({ "const": value });
            return;
        }
        cur = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonschema::Validator;

    fn check(schema: &Value, v: &Value) -> bool {
        Validator::new(schema).unwrap().is_valid(v)
    }

    #[test]
    fn merges_samples_and_is_strict() {
        let a = json!({"type": "token", "token": "Hel", "index": 0, "meta": {"role": "assistant"}});
        let b = json!({"type": "token", "token": "lo", "index": 1, "meta": {"role": "assistant"}, "extra": null});
        let c = json!({"type": "token", "token": "!", "index": 2.5, "meta": {"role": "assistant"}});
        let s = infer(
            &[&a, &b, &c],
            Some("/type"),
            Some("token"),
            "urn:x",
            "token",
        );
        for v in [&a, &b, &c] {
            assert!(check(&s, v), "{s:#}\n{v}");
        }
        assert_eq!(s["properties"]["type"], json!({"const": "token"}));
        assert_eq!(s["required"], json!(["index", "meta", "token", "type"]));
        assert_eq!(s["properties"]["index"]["type"], json!("number"));
        assert_eq!(
            s["properties"]["meta"]["properties"]["role"]["enum"],
            json!(["assistant"])
        );
        // token is content: no enum however few its values
        assert!(s["properties"]["token"].get("enum").is_none());
        assert!(!check(
            &s,
            &json!({"type": "token", "token": "x", "index": 0, "meta": {"role": "assistant"}, "new": 1})
        ));
        assert!(!check(
            &s,
            &json!({"type": "other", "token": "x", "index": 0, "meta": {"role": "assistant"}})
        ));
        assert_eq!(s["examples"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn id_keyed_objects_are_maps() {
        let a = json!({"type": "state", "users": {"user-1": {"online": true}}});
        let b = json!({"type": "state", "users": {"user-2": {"online": false}, "user-3": {"online": true}}});
        let s = infer(&[&a, &b], Some("/type"), Some("state"), "urn:x", "state");
        assert!(check(&s, &a) && check(&s, &b), "{s:#}");
        assert!(check(
            &s,
            &json!({"type": "state", "users": {"user-9": {"online": true}}})
        ));
    }
}
