//! `${...}` templates inside JSON values. Owned by the loader work.
//!
//! Placeholders live only in string values (object keys are never templated, so a JSON
//! body's field names stay what they say). `$${` is an escape for a literal `${`.
use serde_json::Value;

/// A JSON value whose strings may contain `${NAME}` placeholders (see docs/SCENARIOS.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Template(pub Value);

/// Supplies values for placeholder names at run time (`session_id`, `env:HOME`, `jwt:alice`, ...).
pub trait Resolver {
    fn resolve(&self, name: &str) -> Option<Value>;
}

/// A resolver that knows nothing: rendering with it fails on the first placeholder.
pub struct NoVars;

impl Resolver for NoVars {
    fn resolve(&self, _name: &str) -> Option<Value> {
        None
    }
}

/// Adapts a closure to [`Resolver`] (a wrapper rather than a blanket impl, so other modules
/// stay free to implement the trait for their own types).
pub struct FnResolver<F>(pub F);

impl<F: Fn(&str) -> Option<Value>> Resolver for FnResolver<F> {
    fn resolve(&self, name: &str) -> Option<Value> {
        (self.0)(name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed placeholder '${{' in {text:?} (write '$${{' for a literal '${{')")]
    Unclosed { text: String },
    #[error("empty placeholder '${{}}' in {text:?}")]
    EmptyName { text: String },
    #[error("invalid placeholder name '{name}' (letters, digits, '_', '-', '.', and one 'prefix:' allowed)")]
    InvalidName { name: String },
    #[error("unknown variable '{name}'")]
    Unresolved { name: String },
    #[error("'${{{name}}}': a variable's name cannot be a template; only the argument of a prefix can (`${{jwt:${{user}}}}`, `${{env:${{name}}}}`)")]
    NestedName { name: String },
}

/// The largest text `${repeat:N:TEXT}` may build (N × TEXT bytes): large enough to exceed any
/// sane frame limit, small enough not to exhaust memory by a typo.
pub const MAX_REPEAT_BYTES: usize = 256 * 1024 * 1024;

/// `N:TEXT` of `${repeat:N:TEXT}` → (N, TEXT). TEXT is non-empty and free of `{`, `}`, `$`.
pub fn parse_repeat(arg: &str) -> Result<(usize, &str), String> {
    let (n, text) = arg
        .split_once(':')
        .ok_or_else(|| "expected repeat:COUNT:TEXT (e.g. ${repeat:1100000:a})".to_owned())?;
    let n: usize = n
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("repeat count '{n}' is not a whole number"))?;
    if text.is_empty() {
        return Err("repeat needs a non-empty TEXT after the count".into());
    }
    if n.saturating_mul(text.len()) > MAX_REPEAT_BYTES {
        return Err(format!(
            "repeat builds {n} × {} bytes, more than the {} MiB limit",
            text.len(),
            MAX_REPEAT_BYTES / (1024 * 1024)
        ));
    }
    Ok((n, text))
}

/// `${env:NAME}` or `${env:NAME:-default}` (the default applies when NAME is unset or empty,
/// as in the shell); `lookup` reads the environment.
pub fn env_with_default(arg: &str, lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    match arg.split_once(":-") {
        Some((name, default)) => Some(
            lookup(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned()),
        ),
        None => lookup(arg),
    }
}

/// One piece of a templated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    Text(std::borrow::Cow<'a, str>),
    Var(&'a str),
}

fn valid_name(name: &str) -> bool {
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    match name.split_once(':') {
        // The argument of a prefix (`env:HOME`, `jwt:alice@example.com`) is free text
        // except for the characters that would make the template ambiguous.
        // `${env:NAME:-}` (an empty default) ends in `-`: allowed.
        Some((prefix, arg)) if arg.contains("${") => {
            // A nested placeholder (`${jwt:${user}}`): the argument is itself a template, rendered
            // first; its text parts follow the same rule.
            plain(prefix)
                && segments(arg).is_ok_and(|segs| {
                    segs.iter().all(|seg| match seg {
                        Segment::Text(t) => !t.contains(['{', '}', '$']),
                        Segment::Var(_) => true,
                    })
                })
        }
        Some((prefix, arg)) => plain(prefix) && !arg.is_empty() && !arg.contains(['{', '}', '$']),
        None => plain(name),
    }
}

/// The placeholder names a placeholder uses: itself, then those nested in its argument
/// (`jwt:${user}` → `jwt:${user}`, `user`).
pub(crate) fn nested_names(name: &str) -> Vec<&str> {
    let mut out = vec![name];
    if let Some((_, arg)) = name.split_once(':') {
        if arg.contains("${") {
            if let Ok(segs) = segments(arg) {
                for seg in segs {
                    if let Segment::Var(v) = seg {
                        out.extend(nested_names(v));
                    }
                }
            }
        }
    }
    out
}

/// The end (`}`) of a placeholder whose body starts `body`, skipping nested `${...}`.
fn placeholder_end(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 2;
                continue;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Splits a string into text and placeholders, checking the syntax.
pub(crate) fn segments(s: &str) -> Result<Vec<Segment<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        let after = &rest[i..];
        if after.starts_with("$${") {
            text.push_str(&rest[..i]);
            text.push_str("${");
            rest = &rest[i + 3..];
        } else if after.starts_with("${") {
            text.push_str(&rest[..i]);
            let body = &rest[i + 2..];
            let end = placeholder_end(body).ok_or_else(|| TemplateError::Unclosed {
                text: s.to_string(),
            })?;
            let name = &body[..end];
            if name.is_empty() {
                return Err(TemplateError::EmptyName {
                    text: s.to_string(),
                });
            }
            if name.starts_with("${") {
                return Err(TemplateError::NestedName {
                    name: name.to_string(),
                });
            }
            if !valid_name(name) {
                return Err(TemplateError::InvalidName {
                    name: name.to_string(),
                });
            }
            if !text.is_empty() {
                out.push(Segment::Text(std::mem::take(&mut text).into()));
            }
            out.push(Segment::Var(name));
            rest = &body[end + 1..];
        } else {
            text.push_str(&rest[..=i]);
            rest = &rest[i + 1..];
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Segment::Text(text.into()));
    }
    Ok(out)
}

/// Placeholder names in one string, in order of appearance (syntax assumed valid).
pub(crate) fn string_placeholders(s: &str) -> Vec<String> {
    segments(s)
        .map(|segs| {
            segs.into_iter()
                .flat_map(|seg| match seg {
                    Segment::Var(v) => nested_names(v).into_iter().map(str::to_string).collect(),
                    Segment::Text(_) => Vec::new(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn stringify(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn render_str(s: &str, r: &dyn Resolver) -> Result<Value, TemplateError> {
    let segs = segments(s)?;
    let lookup = |name: &str| {
        // A nested placeholder's argument is rendered first: `jwt:${user}` → `jwt:alice`.
        let rendered;
        let name = match name.split_once(':') {
            Some((prefix, arg)) if arg.contains("${") => {
                rendered = format!("{prefix}:{}", stringify(&render_str(arg, r)?));
                rendered.as_str()
            }
            _ => name,
        };
        r.resolve(name).ok_or_else(|| TemplateError::Unresolved {
            name: name.to_string(),
        })
    };
    if let [Segment::Var(name)] = segs.as_slice() {
        return lookup(name);
    }
    let mut out = String::with_capacity(s.len());
    for seg in segs {
        match seg {
            Segment::Text(t) => out.push_str(&t),
            Segment::Var(name) => out.push_str(&stringify(&lookup(name)?)),
        }
    }
    Ok(Value::String(out))
}

fn walk_strings<'a>(v: &'a Value, f: &mut dyn FnMut(&'a str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|x| walk_strings(x, f)),
        Value::Object(o) => o.values().for_each(|x| walk_strings(x, f)),
        _ => {}
    }
}

fn map_strings(
    v: &Value,
    f: &mut dyn FnMut(&str) -> Result<Value, TemplateError>,
) -> Result<Value, TemplateError> {
    Ok(match v {
        Value::String(s) => f(s)?,
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| map_strings(x, f))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), map_strings(x, f)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

impl Template {
    /// Checks the `${...}` syntax of every string in `v`.
    pub fn parse(v: Value) -> Result<Template, TemplateError> {
        let mut err = None;
        walk_strings(&v, &mut |s| {
            if err.is_none() {
                if let Err(e) = segments(s) {
                    err = Some(e);
                }
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(Template(v)),
        }
    }

    /// A template that renders to `v` exactly: any `${` in it is escaped.
    pub fn literal(v: Value) -> Template {
        let escaped = map_strings(&v, &mut |s| Ok(Value::String(s.replace("${", "$${"))))
            .expect("escaping cannot fail");
        Template(escaped)
    }

    /// A string template (syntax-checked).
    pub fn string(s: impl Into<String>) -> Result<Template, TemplateError> {
        Template::parse(Value::String(s.into()))
    }

    /// Placeholder names used, in order of first appearance, without duplicates.
    pub fn placeholders(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        walk_strings(&self.0, &mut |s| {
            for name in string_placeholders(s) {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        });
        out
    }

    /// True if rendering needs no resolver.
    pub fn is_constant(&self) -> bool {
        self.placeholders().is_empty()
    }

    /// Replaces placeholders. A string that is exactly one placeholder takes the value's
    /// JSON type; otherwise values are spliced into the string (strings as-is, other
    /// values as compact JSON).
    pub fn render(&self, r: &dyn Resolver) -> Result<Value, TemplateError> {
        map_strings(&self.0, &mut |s| render_str(s, r))
    }

    /// Renders, then turns the result into text: strings as-is, other values as compact JSON.
    pub fn render_string(&self, r: &dyn Resolver) -> Result<String, TemplateError> {
        self.render(r).map(|v| stringify(&v))
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Value::String(s) => f.write_str(s),
            other => write!(f, "{other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nested_placeholders_render_their_argument_first() {
        use super::*;
        let r = FnResolver(|name: &str| match name {
            "user" => Some(Value::from("alice")),
            "jwt:alice" => Some(Value::from("token-of-alice")),
            "env:HOME_alice" => Some(Value::from("/home/alice")),
            _ => None,
        });
        let t = Template::string("Bearer ${jwt:${user}}").unwrap();
        assert_eq!(t.render(&r).unwrap(), Value::from("Bearer token-of-alice"));
        let t = Template::string("${env:HOME_${user}}").unwrap();
        assert_eq!(t.render(&r).unwrap(), Value::from("/home/alice"));
        assert_eq!(
            t.placeholders(),
            vec!["env:HOME_${user}".to_string(), "user".to_string()]
        );
        // A name that is itself a template is refused, saying why.
        let e = Template::string("${${user}}").unwrap_err().to_string();
        assert!(e.contains("cannot be a template"), "{e}");
        // Unbalanced nesting is an unclosed placeholder.
        assert!(matches!(
            Template::string("${jwt:${user}"),
            Err(TemplateError::Unclosed { .. })
        ));
        // An unknown inner name fails as unknown, by its own name.
        let t = Template::string("${jwt:${nobody}}").unwrap();
        assert_eq!(
            t.render(&r).unwrap_err(),
            TemplateError::Unresolved {
                name: "nobody".into()
            }
        );
    }

    #[test]
    fn repeat_argument() {
        assert_eq!(super::parse_repeat("3:ab"), Ok((3, "ab")));
        assert_eq!(super::parse_repeat("1_100_000:a"), Ok((1_100_000, "a")));
        // The text may itself contain ':'.
        assert_eq!(super::parse_repeat("2:a:b"), Ok((2, "a:b")));
        assert!(super::parse_repeat("x:a")
            .unwrap_err()
            .contains("not a whole number"));
        assert!(super::parse_repeat("3")
            .unwrap_err()
            .contains("repeat:COUNT:TEXT"));
        assert!(super::parse_repeat("3:").unwrap_err().contains("non-empty"));
        assert!(super::parse_repeat("999999999999:ab")
            .unwrap_err()
            .contains("MiB limit"));
    }

    #[test]
    fn env_defaults_follow_the_shell() {
        let env = |n: &str| match n {
            "SET" => Some("v".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(super::env_with_default("SET", env), Some("v".into()));
        assert_eq!(super::env_with_default("UNSET", env), None);
        assert_eq!(super::env_with_default("SET:-d", env), Some("v".into()));
        assert_eq!(super::env_with_default("UNSET:-d", env), Some("d".into()));
        assert_eq!(super::env_with_default("EMPTY:-d", env), Some("d".into()));
        assert_eq!(super::env_with_default("UNSET:-", env), Some(String::new()));
        assert!(Template::string("${env:WSCHAT_X:-}").is_ok());
        assert!(Template::string("${env:WSCHAT_X:-a b/c}").is_ok());
    }
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn vars() -> FnResolver<impl Fn(&str) -> Option<Value>> {
        let mut m = BTreeMap::new();
        m.insert("n".to_string(), json!(42));
        m.insert("s".to_string(), json!("abc"));
        m.insert("o".to_string(), json!({"a": [1, 2]}));
        m.insert("jwt:alice".to_string(), json!("tok"));
        FnResolver(move |name: &str| m.get(name).cloned())
    }

    #[test]
    fn whole_string_placeholder_keeps_type() {
        let t = Template::parse(json!({"x": "${n}", "y": ["${o}"], "z": "${s}"})).unwrap();
        assert_eq!(
            t.render(&vars()).unwrap(),
            json!({"x": 42, "y": [{"a": [1, 2]}], "z": "abc"})
        );
    }

    #[test]
    fn embedded_placeholders_are_stringified() {
        let t = Template::string("n=${n} s=${s} o=${o} t=${jwt:alice}").unwrap();
        assert_eq!(
            t.render(&vars()).unwrap(),
            json!("n=42 s=abc o={\"a\":[1,2]} t=tok")
        );
    }

    #[test]
    fn escape_gives_literal() {
        let t = Template::string("cost $${n} and ${n}$").unwrap();
        assert_eq!(t.placeholders(), vec!["n"]);
        assert_eq!(t.render(&vars()).unwrap(), json!("cost ${n} and 42$"));
    }

    #[test]
    fn literal_is_never_interpreted() {
        let t = Template::literal(json!({"a": "${nope}", "b": ["x${y}"]}));
        assert!(t.placeholders().is_empty());
        assert_eq!(
            t.render(&NoVars).unwrap(),
            json!({"a": "${nope}", "b": ["x${y}"]})
        );
    }

    #[test]
    fn placeholders_in_order_without_duplicates() {
        let t =
            Template::parse(json!({"a": "${b} ${env:HOME}", "c": ["${b}", "${jwt_admin:bob}"]}))
                .unwrap();
        assert_eq!(t.placeholders(), vec!["b", "env:HOME", "jwt_admin:bob"]);
    }

    #[test]
    fn syntax_errors() {
        assert!(matches!(
            Template::string("a ${b"),
            Err(TemplateError::Unclosed { .. })
        ));
        assert!(matches!(
            Template::string("a ${}"),
            Err(TemplateError::EmptyName { .. })
        ));
        assert!(matches!(
            Template::string("${a b}"),
            Err(TemplateError::InvalidName { .. })
        ));
        assert!(matches!(
            Template::string("${env:}"),
            Err(TemplateError::InvalidName { .. })
        ));
        // Keys are not templated, so a `${` in a key is no error.
        assert!(Template::parse(json!({"${": 1})).is_ok());
        // A lone `$` is text.
        assert_eq!(
            Template::string("$5 $").unwrap().render(&NoVars).unwrap(),
            json!("$5 $")
        );
    }

    #[test]
    fn unresolved_names_the_variable() {
        let t = Template::string("x ${missing}").unwrap();
        assert_eq!(
            t.render(&vars()).unwrap_err(),
            TemplateError::Unresolved {
                name: "missing".into()
            }
        );
    }

    #[test]
    fn render_string_uses_compact_json() {
        assert_eq!(
            Template::string("${o}")
                .unwrap()
                .render_string(&vars())
                .unwrap(),
            "{\"a\":[1,2]}"
        );
        assert_eq!(
            Template::string("${s}")
                .unwrap()
                .render_string(&vars())
                .unwrap(),
            "abc"
        );
        assert_eq!(Template(json!(7)).render_string(&NoVars).unwrap(), "7");
    }

    #[test]
    fn non_string_values_pass_through() {
        let t = Template::parse(json!([1, true, null, 2.5])).unwrap();
        assert_eq!(t.render(&NoVars).unwrap(), json!([1, true, null, 2.5]));
    }
}
