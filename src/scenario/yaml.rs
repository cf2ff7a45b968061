//! A YAML document as a tree of nodes that each keep their source location.
//!
//! Serde derives stop at the first problem and lose spans through untagged enums, so the
//! loader reads every file into this tree (serde-saphyr does the parsing and gives each
//! node a [`serde_saphyr::Spanned`] location) and converts it into the model by hand,
//! collecting every problem it finds.
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

/// Where a node starts: 1-based line and column, and a byte range for source labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub col: u32,
    pub offset: usize,
    pub len: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short name of the node's type for "expected X, got Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::UInt(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a map",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }

    /// Scalars as text, the way a YAML author thinks of them (`5s`, `200`, `true`).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::UInt(u) => Some(u.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            Kind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The node as JSON; map keys become strings.
    pub fn to_json(&self) -> Result<Value, (Pos, String)> {
        Ok(match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::UInt(u) => Value::from(*u),
            Kind::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .ok_or_else(|| (self.pos, format!("{f} is not a valid JSON number")))?,
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => {
                Value::Array(items.iter().map(Node::to_json).collect::<Result<_, _>>()?)
            }
            Kind::Map(entries) => {
                let mut m = serde_json::Map::new();
                for (k, v) in entries {
                    let key = k.scalar_text().ok_or_else(|| {
                        (
                            k.pos,
                            format!("a map key must be a scalar, got {}", k.type_name()),
                        )
                    })?;
                    m.insert(key, v.to_json()?);
                }
                Value::Object(m)
            }
        })
    }

    /// The node at a JSON pointer below this one (as produced by [`Node::to_json`]); for
    /// a pointer into a map key that does not exist, the deepest node found. With `key`,
    /// the last step yields the map key rather than its value (where an unknown operator
    /// was written).
    pub fn at_pointer(&self, pointer: &str, key: bool) -> &Node {
        let mut node = self;
        let Some(rest) = pointer.strip_prefix('/') else {
            return node;
        };
        let count = rest.split('/').count();
        for (i, raw) in rest.split('/').enumerate() {
            let last = i + 1 == count;
            let token = raw.replace("~1", "/").replace("~0", "~");
            let next = match &node.kind {
                Kind::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.scalar_text().as_deref() == Some(&token))
                    .map(|(k, v)| {
                        // An operator key points at the key itself when its value is a collection
                        // (the key is where the author wrote the operator); otherwise at the value.
                        if (key && last)
                            || (token.starts_with('$')
                                && matches!(v.kind, Kind::Map(_) | Kind::Seq(_)))
                        {
                            k
                        } else {
                            v
                        }
                    }),
                Kind::Seq(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(KindVisitor)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Kind::Int(i),
            Err(_) => Kind::UInt(v),
        })
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
        i64::try_from(v)
            .map(Kind::Int)
            .or_else(|_| u64::try_from(v).map(Kind::UInt))
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        u64::try_from(v)
            .map(|u| self.visit_u64::<E>(u).expect("infallible"))
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Kind, E> {
        Ok(Kind::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let v = map.next_value::<Node>()?;
            entries.push((k, v));
        }
        Ok(Kind::Map(entries))
    }
}

struct AnyKind(Kind);

impl<'de> Deserialize<'de> for AnyKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor).map(AnyKind)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<AnyKind>::deserialize(d)?;
        let loc = s.referenced;
        let span = loc.span();
        Ok(Node {
            pos: Pos {
                line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
                col: u32::try_from(loc.column()).unwrap_or(u32::MAX),
                offset: span.byte_offset().unwrap_or(0) as usize,
                len: span.byte_len().unwrap_or(0) as usize,
            },
            kind: s.value.0,
        })
    }
}

/// Parses one YAML document. Booleans are strict (`yes` stays a string).
pub(crate) fn parse(text: &str) -> Result<Node, serde_saphyr::Error> {
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options::<Node>(text, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_positions() {
        let doc =
            parse("name: x\nsteps:\n  - sleep: 1s\n  - send: { json: { a: [1, yes] } }\n").unwrap();
        let Kind::Map(top) = &doc.kind else {
            panic!("{doc:?}")
        };
        assert_eq!((top[0].0.pos.line, top[0].0.pos.col), (1, 1));
        assert_eq!((top[0].1.pos.line, top[0].1.pos.col), (1, 7));
        let Kind::Seq(steps) = &top[1].1.kind else {
            panic!()
        };
        assert_eq!((steps[1].pos.line, steps[1].pos.col), (4, 5));
        let json = steps[1].at_pointer("/send/json/a/1", false);
        assert_eq!((json.pos.line, json.pos.col), (4, 28));
        assert_eq!(json.as_str(), Some("yes"));
        let text = "name: x\nsteps:\n  - sleep: 1s\n  - send: { json: { a: [1, yes] } }\n";
        assert_eq!(
            &text[json.pos.offset..json.pos.offset + json.pos.len],
            "yes"
        );
    }

    #[test]
    fn to_json_converts_keys() {
        let doc = parse("{1: a, b: [null, 2.5, true]}").unwrap();
        assert_eq!(
            doc.to_json().unwrap(),
            serde_json::json!({"1": "a", "b": [null, 2.5, true]})
        );
    }
}
