//! Message schemas from a user's AsyncAPI document (2.6 or 3.0) instead of a schemas folder.
//!
//! Every message's payload schema is extracted, with all `$ref`s inlined at load time: local
//! ones (`#/components/schemas/x`) and relative file ones (`./client/auth.schema.json#/$defs/y`,
//! JSON or YAML, resolved against the file that holds the reference). The payload's
//! `properties.<discriminator>.const` (or `enum`) gives the discriminator value(s) it is
//! registered under; a payload without one becomes the side's `*` fallback schema.
//!
//! Sides: in 3.0 the operations say it (`action: send` = the client sends, `receive` = the
//! server sends, an operation's `reply` messages go the other way); in 2.x `publish` = the
//! client sends, `subscribe` = the server sends. A message no operation names is registered for
//! both sides. Nothing is fetched from the network.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{SchemaError, SchemaRegistry, Side, FALLBACK};

/// How deep `$ref` chains may nest before the document is taken to be recursive.
const MAX_DEPTH: usize = 64;

/// Loads the document and compiles one validator per (side, discriminator value).
pub fn load(path: &Path, discriminator: &str) -> Result<SchemaRegistry, SchemaError> {
    let origin = path.display().to_string();
    let mut docs = Docs::default();
    let root_path = canonical(path);
    let root = docs.get(&root_path, &origin)?.clone();
    let err = |message: String| SchemaError::Index {
        origin: origin.clone(),
        message,
    };
    let version = root
        .get("asyncapi")
        .and_then(Value::as_str)
        .ok_or_else(|| err("not an AsyncAPI document (no 'asyncapi' version field)".into()))?
        .to_owned();
    // (message JSON pointer in the root document, the message object, sides)
    let messages = if version.starts_with("3.") {
        messages_v3(&root)
    } else if version.starts_with("2.") {
        messages_v2(&root)
    } else {
        return Err(err(format!(
            "AsyncAPI {version} is not supported (2.x and 3.x are)"
        )));
    };
    let disc_path: Vec<String> = discriminator
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut entries: Vec<(Side, String, String, Value)> = Vec::new();
    let mut seen: HashMap<(bool, String), String> = HashMap::new();
    for (label, message, sides) in messages {
        let mut resolver = Resolver {
            docs: &mut docs,
            origin: &origin,
            stack: Vec::new(),
        };
        let message = resolver.resolve(&message, &root_path, 0)?;
        let Some(payload) = message.get("payload") else {
            continue;
        };
        // A 3.0 multi-format schema object wraps the schema.
        let mut payload = match (payload.get("schemaFormat"), payload.get("schema")) {
            (Some(_), Some(schema)) => schema.clone(),
            _ => payload.clone(),
        };
        strip_ids(&mut payload, true);
        let values = discriminator_values(&payload, &disc_path);
        let values = if values.is_empty() {
            vec![FALLBACK.to_owned()]
        } else {
            values
        };
        for side in sides {
            for value in &values {
                let key = (side == Side::Server, value.clone());
                if let Some(first) = seen.get(&key) {
                    if first != &label {
                        return Err(err(format!(
                            "messages {first} and {label} both describe {} '{value}' frames",
                            side_name(side)
                        )));
                    }
                    continue;
                }
                seen.insert(key, label.clone());
                entries.push((side, value.clone(), label.clone(), payload.clone()));
            }
        }
    }
    if entries.is_empty() {
        return Err(err("no message with a payload schema was found".into()));
    }
    SchemaRegistry::from_values(origin, discriminator, entries)
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Server => "server",
        Side::Client => "client",
    }
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// Parsed documents by path (the root and every file a `$ref` names).
#[derive(Default)]
struct Docs {
    by_path: HashMap<PathBuf, Value>,
}

impl Docs {
    fn get(&mut self, path: &Path, origin: &str) -> Result<&Value, SchemaError> {
        if !self.by_path.contains_key(path) {
            let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let is_json = path.extension().is_some_and(|e| e == "json");
            let value: Value = if is_json {
                serde_json::from_str(&text).map_err(|source| SchemaError::Json {
                    origin: origin.to_owned(),
                    file: path.display().to_string(),
                    source,
                })?
            } else {
                serde_saphyr::from_str(&text).map_err(|e| SchemaError::Index {
                    origin: origin.to_owned(),
                    message: format!("{}: invalid YAML: {e}", path.display()),
                })?
            };
            self.by_path.insert(path.to_path_buf(), value);
        }
        Ok(&self.by_path[path])
    }
}

/// Inlines `$ref`s, remembering the chain to report recursion instead of looping.
struct Resolver<'d> {
    docs: &'d mut Docs,
    origin: &'d str,
    stack: Vec<String>,
}

impl Resolver<'_> {
    fn err(&self, message: String) -> SchemaError {
        SchemaError::Index {
            origin: self.origin.to_owned(),
            message,
        }
    }

    /// `v` lies in the document at `base`; returns it with every reference replaced.
    fn resolve(&mut self, v: &Value, base: &Path, depth: usize) -> Result<Value, SchemaError> {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let target = self.follow(r, base, depth)?;
                    if map.len() == 1 {
                        return Ok(target);
                    }
                    // Keywords beside `$ref` apply as well: keep both through allOf.
                    let mut rest = Map::new();
                    for (k, val) in map {
                        if k != "$ref" {
                            rest.insert(k.clone(), self.resolve(val, base, depth)?);
                        }
                    }
                    rest.insert("allOf".into(), Value::Array(vec![target]));
                    return Ok(Value::Object(rest));
                }
                let mut out = Map::with_capacity(map.len());
                for (k, val) in map {
                    // Examples are data, not schemas: a `$ref` key inside them is not followed.
                    let resolved = if matches!(
                        k.as_str(),
                        "examples" | "example" | "const" | "enum" | "default"
                    ) {
                        val.clone()
                    } else {
                        self.resolve(val, base, depth)?
                    };
                    out.insert(k.clone(), resolved);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .iter()
                .map(|i| self.resolve(i, base, depth))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }

    fn follow(&mut self, r: &str, base: &Path, depth: usize) -> Result<Value, SchemaError> {
        let (file, fragment) = r.split_once('#').unwrap_or((r, ""));
        if file.contains("://") && !file.starts_with("file://") {
            return Err(self.err(format!(
                "$ref '{r}' is remote; only references within the document or to files beside it are resolved"
            )));
        }
        let target_path = if file.is_empty() {
            base.to_path_buf()
        } else {
            let file = file.trim_start_matches("file://");
            let dir = base.parent().unwrap_or(Path::new("."));
            canonical(&dir.join(file))
        };
        let key = format!("{}#{fragment}", target_path.display());
        if depth >= MAX_DEPTH || self.stack.contains(&key) {
            return Err(self.err(format!(
                "$ref '{r}' is recursive ({}); recursive schemas cannot be inlined",
                self.stack.join(" → ")
            )));
        }
        let doc = self.docs.get(&target_path, self.origin)?;
        let pointer = percent_decode(fragment);
        let Some(target) = (if pointer.is_empty() {
            Some(doc)
        } else {
            doc.pointer(&pointer)
        }) else {
            return Err(self.err(format!(
                "$ref '{r}': {} has nothing at '{pointer}'",
                target_path.display()
            )));
        };
        let mut target = target.clone();
        if !file.is_empty() {
            // A file's own `$id` would re-base the references inside it; they are inlined here.
            strip_ids(&mut target, false);
        }
        self.stack.push(key);
        let out = self.resolve(&target, &target_path, depth + 1);
        self.stack.pop();
        out
    }
}

/// `%25`-style escapes in a URI fragment (JSON pointers in `$ref`s may use them).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() && s.is_char_boundary(i + 3) {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Drops `$id` (and at the root of an inlined file `$schema` too when not `keep_schema`), so
/// the inlined schema has one base and no stale identifiers.
fn strip_ids(v: &mut Value, keep_schema: bool) {
    if let Value::Object(map) = v {
        map.remove("$id");
        if !keep_schema {
            map.remove("$schema");
        }
    }
}

/// The discriminator values a payload declares: `properties.<d>.const`, or its `enum`; also
/// looks into `allOf` branches (where a `$ref` with siblings was merged).
fn discriminator_values(schema: &Value, path: &[String]) -> Vec<String> {
    let mut cur = schema;
    for (n, seg) in path.iter().enumerate() {
        match cur.get("properties").and_then(|p| p.get(seg)) {
            Some(next) => cur = next,
            None => {
                // Try allOf branches at this level.
                if let Some(Value::Array(branches)) = cur.get("allOf") {
                    for b in branches {
                        let found = discriminator_values(b, &path[n..]);
                        if !found.is_empty() {
                            return found;
                        }
                    }
                }
                return Vec::new();
            }
        }
    }
    if let Some(Value::String(c)) = cur.get("const") {
        return vec![c.clone()];
    }
    if let Some(Value::Array(values)) = cur.get("enum") {
        return values
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
    }
    Vec::new()
}

/// The `$ref` target of a `{$ref: '#/…'}` object within the root document, else the object.
fn local<'a>(root: &'a Value, v: &'a Value) -> (&'a Value, Option<String>) {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) if r.starts_with('#') => {
            let p = percent_decode(&r[1..]);
            match root.pointer(&p) {
                Some(t) => (t, Some(p)),
                None => (v, None),
            }
        }
        _ => (v, None),
    }
}

type Found = Vec<(String, Value, Vec<Side>)>;

/// Adds a message under its label, merging sides when it is seen again.
fn add(
    out: &mut BTreeMap<String, (Value, Vec<Side>)>,
    label: String,
    msg: &Value,
    side: Option<Side>,
) {
    let entry = out
        .entry(label)
        .or_insert_with(|| (msg.clone(), Vec::new()));
    if let Some(s) = side {
        if !entry.1.contains(&s) {
            entry.1.push(s);
        }
    }
}

fn finish(out: BTreeMap<String, (Value, Vec<Side>)>) -> Found {
    out.into_iter()
        .map(|(label, (msg, sides))| {
            let sides = if sides.is_empty() {
                vec![Side::Server, Side::Client]
            } else {
                sides
            };
            (label, msg, sides)
        })
        .collect()
}

/// AsyncAPI 3.x: messages of the channels and components, sides from the operations.
fn messages_v3(root: &Value) -> Found {
    // Canonical label of a message: the pointer of its definition (after one local `$ref`).
    let canon = |v: &Value, at: String| -> (String, Value) {
        let (target, p) = local(root, v);
        (p.unwrap_or(at), target.clone())
    };
    let mut out = BTreeMap::new();
    let mut sided: HashMap<String, Vec<Side>> = HashMap::new();
    if let Some(Value::Object(ops)) = root.get("operations") {
        for op in ops.values() {
            let side = match op.get("action").and_then(Value::as_str) {
                Some("send") => Side::Client,
                Some("receive") => Side::Server,
                _ => continue,
            };
            let other = match side {
                Side::Client => Side::Server,
                Side::Server => Side::Client,
            };
            let reply = op.get("reply").map(|r| local(root, r).0);
            for (list, s) in [
                (op.get("messages"), side),
                (reply.and_then(|r| r.get("messages")), other),
            ] {
                let Some(Value::Array(list)) = list else {
                    continue;
                };
                for m in list {
                    // `#/channels/chat/messages/x` → itself a `$ref` to components: follow both.
                    let (first, p1) = local(root, m);
                    let (_, p2) = local(root, first);
                    if let Some(p) = p2.or(p1) {
                        sided.entry(p).or_default().push(s);
                    }
                }
            }
        }
    }
    let mut all: Vec<(String, Value)> = Vec::new();
    if let Some(Value::Object(chans)) = root.get("channels") {
        for (cname, ch) in chans {
            if let Some(Value::Object(msgs)) = ch.get("messages") {
                for (mname, m) in msgs {
                    let at = format!("/channels/{}/messages/{}", esc(cname), esc(mname));
                    all.push(canon(m, at));
                }
            }
        }
    }
    if let Some(Value::Object(msgs)) = root.pointer("/components/messages") {
        for (mname, m) in msgs {
            all.push(canon(m, format!("/components/messages/{}", esc(mname))));
        }
    }
    for (label, msg) in all {
        let sides = sided.get(&label).cloned().unwrap_or_default();
        if sides.is_empty() {
            add(&mut out, label.clone(), &msg, None);
        }
        for s in sides {
            add(&mut out, label.clone(), &msg, Some(s));
        }
    }
    finish(out)
}

/// AsyncAPI 2.x: `publish` (the client sends) and `subscribe` (the server sends) operations,
/// each with a message or `oneOf` messages; plus unused component messages.
fn messages_v2(root: &Value) -> Found {
    let mut out = BTreeMap::new();
    if let Some(Value::Object(chans)) = root.get("channels") {
        for (cname, ch) in chans {
            for (op, side) in [("publish", Side::Client), ("subscribe", Side::Server)] {
                let Some(msg) = ch.get(op).and_then(|o| o.get("message")) else {
                    continue;
                };
                let (msg, _) = local(root, msg);
                let list: Vec<(String, &Value)> = match msg.get("oneOf") {
                    Some(Value::Array(items)) => items
                        .iter()
                        .enumerate()
                        .map(|(i, m)| {
                            (
                                format!("/channels/{}/{op}/message/oneOf/{i}", esc(cname)),
                                m,
                            )
                        })
                        .collect(),
                    _ => vec![(format!("/channels/{}/{op}/message", esc(cname)), msg)],
                };
                for (at, m) in list {
                    let (target, p) = local(root, m);
                    add(&mut out, p.unwrap_or(at), target, Some(side));
                }
            }
        }
    }
    if let Some(Value::Object(msgs)) = root.pointer("/components/messages") {
        for (mname, m) in msgs {
            let label = format!("/components/messages/{}", esc(mname));
            if !out.contains_key(&label) {
                add(&mut out, label, m, None);
            }
        }
    }
    finish(out)
}

fn esc(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn repo(p: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
    }

    #[test]
    fn bundled_asyncapi_3_matches_the_schemas_folder() {
        let r = load(&repo("schemas/asyncapi.yaml"), "/type").expect("asyncapi.yaml loads");
        let folder = SchemaRegistry::load_dir(&repo("schemas"), "/type").unwrap();
        assert_eq!(
            r.known_types(Side::Server),
            folder.known_types(Side::Server)
        );
        assert_eq!(
            r.known_types(Side::Client),
            folder.known_types(Side::Client)
        );
        // File refs were inlined, with their own nested refs and constraints.
        r.check(
            Side::Server,
            &json!({"type": "token", "turn_id": "t", "index": 0, "content": "x"}),
        )
        .unwrap();
        let e = r
            .check(
                Side::Server,
                &json!({"type": "token", "turn_id": "", "index": 0, "content": "x"}),
            )
            .unwrap_err();
        assert_eq!(e.violations[0].instance_path, "/turn_id");
        r.check(Side::Client, &json!({"type": "ping", "nonce": 1}))
            .unwrap();
        assert!(r
            .check(Side::Client, &json!({"type": "ping", "nonce": 1, "x": 2}))
            .is_err());
        // A server event is not a client message.
        assert!(r.check(Side::Client, &json!({"type": "pong"})).is_err());
    }

    #[test]
    fn asyncapi_2_6_fixture() {
        let r = load(&repo("fixtures/asyncapi/chat-2.6.yaml"), "/kind").expect("fixture loads");
        assert_eq!(r.known_types(Side::Client), ["*", "hello"]);
        assert_eq!(r.known_types(Side::Server), ["done", "error", "text"]);
        r.check(
            Side::Server,
            &json!({"kind": "text", "delta": "hi", "seq": 0}),
        )
        .unwrap();
        let e = r
            .check(
                Side::Server,
                &json!({"kind": "text", "delta": "hi", "seq": -1}),
            )
            .unwrap_err();
        assert_eq!(e.violations[0].instance_path, "/seq");
        // The local `$ref` to components/schemas (Reason, an enum) was inlined.
        r.check(Side::Server, &json!({"kind": "done", "reason": "stop"}))
            .unwrap();
        assert!(r
            .check(Side::Server, &json!({"kind": "done", "reason": "bored"}))
            .is_err());
        // The relative file `$ref` (common.json) was inlined.
        assert!(r
            .check(Side::Server, &json!({"kind": "error", "code": ""}))
            .is_err());
        r.check(Side::Server, &json!({"kind": "error", "code": "E1"}))
            .unwrap();
        // Client frames without `kind` use the `*` fallback (a payload with no discriminator).
        r.check(Side::Client, &json!({"input": "hi"})).unwrap();
        assert!(r.check(Side::Client, &json!({"input": 3})).is_err());
        r.check(Side::Client, &json!({"kind": "hello", "version": 1}))
            .unwrap();
    }

    #[test]
    fn recursive_and_remote_refs_are_errors() {
        let dir = std::env::temp_dir().join(format!("wschat-asyncapi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let doc = dir.join("api.yaml");
        std::fs::write(
            &doc,
            "asyncapi: 2.6.0\nchannels:\n  c:\n    subscribe:\n      message:\n        payload:\n          $ref: '#/components/schemas/A'\ncomponents:\n  schemas:\n    A:\n      properties:\n        next:\n          $ref: '#/components/schemas/A'\n",
        )
        .unwrap();
        let e = load(&doc, "/type").unwrap_err().to_string();
        assert!(e.contains("recursive"), "{e}");
        std::fs::write(
            &doc,
            "asyncapi: 2.6.0\nchannels:\n  c:\n    subscribe:\n      message:\n        payload:\n          $ref: 'https://example.com/a.json'\n",
        )
        .unwrap();
        let e = load(&doc, "/type").unwrap_err().to_string();
        assert!(e.contains("remote"), "{e}");
        std::fs::write(&doc, "openapi: 3.0.0\n").unwrap();
        let e = load(&doc, "/type").unwrap_err().to_string();
        assert!(e.contains("not an AsyncAPI document"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn percent_escapes_in_fragments() {
        assert_eq!(percent_decode("/a%20b/c"), "/a b/c");
        assert_eq!(percent_decode("/x%"), "/x%");
    }
}
