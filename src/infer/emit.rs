//! Writing YAML for generated files: flow-style values that read like the hand-written packs.
//!
//! Strings are always double-quoted with JSON escapes (valid YAML, never mistaken for a number,
//! a boolean or a tag); keys stay bare when they are plain names. Text that is not a template but
//! holds `${` is escaped (`$${`), so a recorded message is sent as recorded.

use serde_json::Value;

/// A key, bare when that is unambiguous.
pub fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '_' | '$' | '/'))
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '/' | '.' | '-'))
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~"
        );
    if plain {
        k.to_owned()
    } else {
        quote(k)
    }
}

/// A double-quoted scalar.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// A value in flow style on one line: `{ type: token, index: 0 }`.
pub fn flow(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "{}".to_owned(),
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", key(k), flow(v)))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(flow).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::String(s) => quote(s),
        other => other.to_string(),
    }
}

/// A recorded string as literal template text: `${` becomes `$${`.
pub fn literal(s: &str) -> String {
    s.replace("${", "$${")
}

/// Every string of a recorded value made literal (see [`literal`]).
pub fn literal_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(literal(s)),
        Value::Array(a) => Value::Array(a.iter().map(literal_value).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), literal_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A comment block: every line prefixed with `indent` and `# `.
pub fn comment(indent: &str, text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(indent);
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flow_values_parse_back() {
        let v = json!({"type": "message", "on": true, "n": 1.5, "a": [1, "x"], "weird key": "a\"b\n${x}"});
        let text = flow(&literal_value(&v));
        assert_eq!(
            text,
            r#"{ a: [1, "x"], "n": 1.5, "on": true, type: "message", "weird key": "a\"b\n$${x}" }"#
        );
        let back: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back["weird key"], json!("a\"b\n$${x}"));
        assert_eq!(back["on"], json!(true));
    }
}
