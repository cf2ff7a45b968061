//! The schema registry: `index.json` maps each discriminator value (event type) to a JSON Schema file;
//! every schema is compiled once at load, then each event is validated with the compiled validator.
//!
//! Schemas may `$ref` each other by relative path (`common.json#/$defs/turn_id`) or by `$id`. References
//! are served from the loaded files only: nothing is fetched from the network or from outside the folder.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;

use crate::json::pointer_get;

use crate::runner::SchemaViolation;

pub mod asyncapi;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_schemas.rs"));
}

/// The schema files compiled into the binary (path relative to `schemas/`, contents).
pub fn embedded_files() -> &'static [(&'static str, &'static str)] {
    embedded::EMBEDDED_SCHEMAS
}

/// Base of the virtual URIs given to schema files, so relative `$ref`s resolve among them.
const BASE: &str = "file:///wschat-schemas/";

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}/{file}:{line}:{column}: invalid JSON: {source}", line = source.line(), column = source.column())]
    Json {
        origin: String,
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{origin}: no index.json (it maps each event type to its schema file)")]
    NoIndex { origin: String },
    #[error("{origin}/index.json: {message}")]
    Index { origin: String, message: String },
    #[error("{origin}/index.json: type '{event_type}' names '{file}', which does not exist in the schemas folder")]
    MissingFile {
        origin: String,
        event_type: String,
        file: String,
    },
    #[error("{origin}/{file} (type '{event_type}'): schema does not compile: {message}")]
    Compile {
        origin: String,
        file: String,
        event_type: String,
        message: String,
    },
}

/// Which side of the protocol a message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Server → client events (`server` in index.json).
    Server,
    /// Client → server messages (`client` in index.json).
    Client,
}

/// Why an event did not pass its schema check.
#[derive(Debug, Clone)]
pub struct SchemaFailure {
    /// One line for people.
    pub message: String,
    /// Every violation found; the first is the headline.
    pub violations: Vec<SchemaViolation>,
}

/// The `index.json` key of the fallback schema of a side: frames of that side without the
/// discriminator, or with a value that has no schema of its own (examples/GAPS.md, G1).
pub const FALLBACK: &str = "*";

/// Compiled schemas for both sides, keyed by discriminator value.
pub struct SchemaRegistry {
    origin: String,
    discriminator: String,
    /// Per-side discriminator pointers; `None` for a side whose frames carry no discriminator
    /// (every frame of it is checked with the side's `*` schema).
    server_discriminator: Option<String>,
    client_discriminator: Option<String>,
    server: HashMap<String, Arc<Validator>>,
    client: HashMap<String, Arc<Validator>>,
    server_known: String,
    client_known: String,
    /// Check sent frames against the client schemas (as notes, never failures).
    check_sent: bool,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("origin", &self.origin)
            .field("discriminator", &self.discriminator)
            .field("server", &self.server_known)
            .field("client", &self.client_known)
            .finish()
    }
}

/// Serves `$ref` targets from the loaded files.
struct FileRetriever {
    files: Arc<BTreeMap<String, Value>>,
    by_id: Arc<HashMap<String, String>>,
}

impl Retrieve for FileRetriever {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let s = uri.as_str();
        let no_fragment = s.split('#').next().unwrap_or(s);
        if let Some(rel) = no_fragment.strip_prefix(BASE) {
            if let Some(v) = self.files.get(rel) {
                return Ok(v.clone());
            }
        }
        if let Some(rel) = self.by_id.get(no_fragment) {
            return Ok(self.files[rel].clone());
        }
        // A schema with an absolute `$id` resolves relative refs against it: match by path suffix.
        let path = uri.path().as_str();
        let best = self
            .files
            .keys()
            .filter(|rel| path.ends_with(&format!("/{rel}")) || path == rel.as_str())
            .max_by_key(|rel| rel.len());
        match best {
            Some(rel) => Ok(self.files[rel].clone()),
            None => Err(format!(
                "'{s}' is not one of the schema files (remote references are not fetched)"
            )
            .into()),
        }
    }
}

impl SchemaRegistry {
    /// Loads every `*.json` under `dir` and compiles the schemas `dir/index.json` names.
    pub fn load_dir(dir: &Path, discriminator: &str) -> Result<Self, SchemaError> {
        let mut raw = Vec::new();
        walk(dir, dir, &mut raw)?;
        let origin = dir.display().to_string();
        let mut texts = Vec::with_capacity(raw.len());
        for (rel, path) in raw {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| SchemaError::Io { path, source })?;
            texts.push((rel, text));
        }
        Self::from_texts(
            origin,
            texts.iter().map(|(r, t)| (r.as_str(), t.as_str())),
            discriminator,
        )
    }

    /// The protocol schemas compiled into the binary.
    pub fn embedded(discriminator: &str) -> Result<Self, SchemaError> {
        Self::from_texts(
            "schemas (built in)".to_owned(),
            embedded_files().iter().copied(),
            discriminator,
        )
    }

    /// The message payload schemas of an AsyncAPI 2.x/3.x document (see [`asyncapi`]).
    pub fn load_asyncapi(path: &Path, discriminator: &str) -> Result<Self, SchemaError> {
        asyncapi::load(path, discriminator)
    }

    /// The schemas a suite config names: its AsyncAPI document, else its folder, else the
    /// built-in set; sent-frame checks as the config says.
    pub fn for_suite(config: &crate::scenario::SuiteConfig) -> Result<Self, SchemaError> {
        let registry = match &config.asyncapi {
            Some(doc) => Self::load_asyncapi(doc, &config.discriminator)?,
            None => Self::load(config.schemas_dir.as_deref(), &config.discriminator)?,
        };
        Ok(registry.with_sent_checks(config.check_sent))
    }

    /// `dir` when given, else the embedded schemas.
    pub fn load(dir: Option<&Path>, discriminator: &str) -> Result<Self, SchemaError> {
        match dir {
            Some(d) => Self::load_dir(d, discriminator),
            None => Self::embedded(discriminator),
        }
    }

    fn from_texts<'a>(
        origin: String,
        texts: impl Iterator<Item = (&'a str, &'a str)>,
        discriminator: &str,
    ) -> Result<Self, SchemaError> {
        let mut files = BTreeMap::new();
        for (rel, text) in texts {
            let value: Value = serde_json::from_str(text).map_err(|source| SchemaError::Json {
                origin: origin.clone(),
                file: rel.to_owned(),
                source,
            })?;
            files.insert(rel.to_owned(), value);
        }
        let Some(index) = files.get("index.json").cloned() else {
            return Err(SchemaError::NoIndex { origin });
        };
        let mut by_id = HashMap::new();
        for (rel, v) in &files {
            if let Some(id) = v.get("$id").and_then(Value::as_str) {
                by_id.insert(id.split('#').next().unwrap_or(id).to_owned(), rel.clone());
            }
        }
        let files = Arc::new(files);
        let by_id = Arc::new(by_id);
        let index_err = |message: String| SchemaError::Index {
            origin: origin.clone(),
            message,
        };
        let Value::Object(index) = index else {
            return Err(index_err(
                "must be an object {\"server\": {type: file}, \"client\": {type: file}}".into(),
            ));
        };
        for key in index.keys() {
            if !matches!(
                key.as_str(),
                "server" | "client" | "discriminator" | "$schema" | "$comment" | "description"
            ) {
                return Err(index_err(format!(
                    "unknown key '{key}' (expected server, client, discriminator)"
                )));
            }
        }
        let (server_disc, client_disc) =
            side_discriminators(index.get("discriminator"), discriminator).map_err(index_err)?;
        let mut compiled: HashMap<String, Arc<Validator>> = HashMap::new();
        let mut side_map = |side: &str| -> Result<HashMap<String, Arc<Validator>>, SchemaError> {
            let mut out = HashMap::new();
            let Some(map) = index.get(side) else {
                return Ok(out);
            };
            let Value::Object(map) = map else {
                return Err(index_err(format!(
                    "'{side}' must map event types to schema files"
                )));
            };
            for (event_type, file) in map {
                let Some(file) = file.as_str() else {
                    return Err(index_err(format!(
                        "'{side}.{event_type}' must be a file name"
                    )));
                };
                let rel = file.trim_start_matches("./").to_owned();
                if let Some(v) = compiled.get(&rel) {
                    out.insert(event_type.clone(), v.clone());
                    continue;
                }
                let Some(schema) = files.get(&rel) else {
                    return Err(SchemaError::MissingFile {
                        origin: origin.clone(),
                        event_type: event_type.clone(),
                        file: file.to_owned(),
                    });
                };
                let validator = jsonschema::options()
                    .with_base_uri(format!("{BASE}{rel}"))
                    .with_retriever(FileRetriever {
                        files: files.clone(),
                        by_id: by_id.clone(),
                    })
                    .build(schema)
                    .map_err(|e| SchemaError::Compile {
                        origin: origin.clone(),
                        file: rel.clone(),
                        event_type: event_type.clone(),
                        message: e.to_string(),
                    })?;
                let v = Arc::new(validator);
                compiled.insert(rel, v.clone());
                out.insert(event_type.clone(), v);
            }
            Ok(out)
        };
        let server = side_map("server")?;
        let client = side_map("client")?;
        Self::assemble(
            origin,
            discriminator,
            (server_disc, client_disc),
            server,
            client,
        )
    }

    /// Builds the registry from compiled validators; checks that a side without a
    /// discriminator has its `*` schema.
    fn assemble(
        origin: String,
        discriminator: &str,
        (server_disc, client_disc): (Option<String>, Option<String>),
        server: HashMap<String, Arc<Validator>>,
        client: HashMap<String, Arc<Validator>>,
    ) -> Result<Self, SchemaError> {
        for (name, disc, map) in [
            ("server", &server_disc, &server),
            ("client", &client_disc, &client),
        ] {
            if disc.is_none() && !map.is_empty() && !map.contains_key(FALLBACK) {
                return Err(SchemaError::Index {
                    origin,
                    message: format!(
                        "the {name} side has no discriminator, so it needs a \"*\" schema for all its frames"
                    ),
                });
            }
        }
        let known = |m: &HashMap<String, Arc<Validator>>| {
            let mut k: Vec<&str> = m.keys().map(String::as_str).collect();
            k.sort_unstable();
            k.join(", ")
        };
        Ok(SchemaRegistry {
            server_known: known(&server),
            client_known: known(&client),
            origin,
            // As a pointer (`type` → `/type`): codec views are found with it.
            discriminator: if discriminator.starts_with('/') {
                discriminator.to_owned()
            } else {
                format!("/{discriminator}")
            },
            server_discriminator: server_disc,
            client_discriminator: client_disc,
            server,
            client,
            check_sent: true,
        })
    }

    /// Whether frames the scenarios send are checked against the client schemas (the suite's
    /// `check_sent`); such checks only ever add notes to the transcript.
    pub fn with_sent_checks(mut self, on: bool) -> Self {
        self.check_sent = on;
        self
    }

    /// The note for a sent frame that does not match its client schema, if checks are on.
    pub fn sent_note(&self, frame: &Value) -> Option<String> {
        if !self.check_sent || self.client.is_empty() {
            return None;
        }
        self.check(Side::Client, frame)
            .err()
            .map(|f| format!("{}{}", crate::runner::SENT_SCHEMA_NOTE, f.message))
    }

    /// Compiles schemas given as values (the AsyncAPI loader inlines every `$ref` first, so
    /// nothing needs retrieving). `entries` are (side, discriminator value or `*`, label, schema).
    pub(crate) fn from_values(
        origin: String,
        discriminator: &str,
        entries: Vec<(Side, String, String, Value)>,
    ) -> Result<Self, SchemaError> {
        let mut server = HashMap::new();
        let mut client = HashMap::new();
        for (side, event_type, label, schema) in entries {
            let validator = jsonschema::options()
                .with_retriever(FileRetriever {
                    files: Arc::new(BTreeMap::new()),
                    by_id: Arc::new(HashMap::new()),
                })
                .build(&schema)
                .map_err(|e| SchemaError::Compile {
                    origin: origin.clone(),
                    file: label,
                    event_type: event_type.clone(),
                    message: e.to_string(),
                })?;
            let map = match side {
                Side::Server => &mut server,
                Side::Client => &mut client,
            };
            map.insert(event_type, Arc::new(validator));
        }
        let disc = Some(discriminator.to_owned());
        Self::assemble(origin, discriminator, (disc.clone(), disc), server, client)
    }

    /// Where the schemas came from (a folder, or the built-in set).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The discriminator JSON pointer (`/type`).
    pub fn discriminator(&self) -> &str {
        &self.discriminator
    }

    /// The event types of one side, sorted.
    pub fn known_types(&self, side: Side) -> Vec<&str> {
        let mut k: Vec<&str> = self.map(side).keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    fn map(&self, side: Side) -> &HashMap<String, Arc<Validator>> {
        match side {
            Side::Server => &self.server,
            Side::Client => &self.client,
        }
    }

    /// The discriminator value of an event, when it is a string.
    pub fn event_type<'a>(&self, event: &'a Value) -> Option<&'a str> {
        pointer_get(event, &self.discriminator).and_then(Value::as_str)
    }

    /// The discriminator pointer of one side; `None` when that side's frames carry none.
    pub fn side_discriminator(&self, side: Side) -> Option<&str> {
        match side {
            Side::Server => self.server_discriminator.as_deref(),
            Side::Client => self.client_discriminator.as_deref(),
        }
    }

    /// Validates one event with its compiled schema: the one named by its discriminator value,
    /// else the side's `*` fallback schema when there is one.
    pub fn check(&self, side: Side, event: &Value) -> Result<(), SchemaFailure> {
        let map = self.map(side);
        // The view of a plain-text or binary frame (`crate::codec`): checked by its own schema
        // when `index.json` has one (`"$text"`, `"$binary"`), else not at all. The `*` fallback,
        // written for a side's JSON frames, never applies to it.
        if let Some(view) = self.view_type(event) {
            return match map.get(view) {
                Some(v) => Self::validate(view, v, event),
                None => Ok(()),
            };
        }
        let fallback = map.get(FALLBACK);
        let found = match self.side_discriminator(side) {
            None => Ok((FALLBACK, fallback)),
            Some(pointer) => match pointer_get(event, pointer) {
                Some(Value::String(s)) => match map.get(s.as_str()) {
                    Some(v) => Ok((s.as_str(), Some(v))),
                    None if fallback.is_some() => Ok((FALLBACK, fallback)),
                    None => Err(Some(s.as_str())),
                },
                _ if fallback.is_some() => Ok((FALLBACK, fallback)),
                other => {
                    let what = match other {
                        None => "is missing".to_owned(),
                        Some(v) => format!("is not a string ({v})"),
                    };
                    let message = format!("discriminator {pointer} {what}");
                    return Err(SchemaFailure {
                        violations: vec![SchemaViolation {
                            event_type: None,
                            instance_path: pointer.to_owned(),
                            keyword: "discriminator".into(),
                            schema_path: "index.json".into(),
                            message: message.clone(),
                        }],
                        message,
                    });
                }
            },
        };
        let (event_type, validator) = match found {
            Ok((t, Some(v))) => (t, v),
            Ok((_, None)) => return Ok(()),
            Err(t) => {
                let event_type = t.unwrap_or_default();
                let known = match side {
                    Side::Server => &self.server_known,
                    Side::Client => &self.client_known,
                };
                let message = format!("unknown event type '{event_type}' (known: {known})");
                return Err(SchemaFailure {
                    violations: vec![SchemaViolation {
                        event_type: Some(event_type.to_owned()),
                        instance_path: self
                            .side_discriminator(side)
                            .unwrap_or(&self.discriminator)
                            .to_owned(),
                        keyword: "discriminator".into(),
                        schema_path: "index.json".into(),
                        message: message.clone(),
                    }],
                    message,
                });
            }
        };
        Self::validate(event_type, validator, event)
    }

    /// The type of a codec view (`$text`, `$binary`) under the suite's discriminator.
    fn view_type<'a>(&self, event: &'a Value) -> Option<&'a str> {
        match pointer_get(event, &self.discriminator) {
            Some(Value::String(s))
                if s == crate::codec::TEXT_TYPE || s == crate::codec::BINARY_TYPE =>
            {
                Some(s.as_str())
            }
            _ => None,
        }
    }

    fn validate(
        event_type: &str,
        validator: &Validator,
        event: &Value,
    ) -> Result<(), SchemaFailure> {
        // The fast path allocates nothing; errors are collected only for invalid events.
        if validator.is_valid(event) {
            return Ok(());
        }
        let violations: Vec<SchemaViolation> = validator
            .iter_errors(event)
            .map(|e| {
                let instance_path = e.instance_path().as_str().to_owned();
                SchemaViolation {
                    event_type: Some(event_type.to_owned()),
                    keyword: e.kind().keyword().to_owned(),
                    schema_path: e.schema_path().as_str().to_owned(),
                    message: e.to_string(),
                    instance_path,
                }
            })
            .collect();
        let first = violations.first();
        let message = match first {
            Some(v) => format!(
                "'{event_type}' event violates its schema at {} ({}): {}",
                if v.instance_path.is_empty() {
                    "/"
                } else {
                    &v.instance_path
                },
                v.keyword,
                v.message
            ),
            None => format!("'{event_type}' event violates its schema"),
        };
        Err(SchemaFailure {
            message,
            violations,
        })
    }
}

/// The per-side discriminators from `index.json`'s `discriminator`: absent or a string means
/// the suite's discriminator for both sides; a map `{"server": "type", "client": null}` sets
/// each side (`null`: that side's frames have none and are all checked with `*`).
fn side_discriminators(
    declared: Option<&Value>,
    suite: &str,
) -> Result<(Option<String>, Option<String>), String> {
    let pointer = |s: &str| {
        if s.starts_with('/') {
            s.to_owned()
        } else {
            format!("/{s}")
        }
    };
    match declared {
        None | Some(Value::String(_)) => Ok((Some(suite.to_owned()), Some(suite.to_owned()))),
        Some(Value::Object(map)) => {
            if let Some(k) = map
                .keys()
                .find(|k| !matches!(k.as_str(), "server" | "client"))
            {
                return Err(format!(
                    "'discriminator.{k}': expected only the keys server and client"
                ));
            }
            let side = |name: &str| match map.get(name) {
                None => Ok(Some(suite.to_owned())),
                Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(pointer(s))),
                Some(other) => Err(format!(
                    "'discriminator.{name}' is a field name, a JSON pointer or null, got {other}"
                )),
            };
            Ok((side("server")?, side("client")?))
        }
        Some(other) => Err(format!(
            "'discriminator' is a field name or {{\"server\": …, \"client\": …}}, got {other}"
        )),
    }
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), SchemaError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SchemaError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| SchemaError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.is_dir() {
            walk(&path, root, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registry(files: &[(&str, Value)]) -> Result<SchemaRegistry, SchemaError> {
        let texts: Vec<(String, String)> = files
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        SchemaRegistry::from_texts(
            "test".into(),
            texts.iter().map(|(a, b)| (a.as_str(), b.as_str())),
            "/type",
        )
    }

    fn sample() -> SchemaRegistry {
        registry(&[
            (
                "index.json",
                json!({"discriminator": "type", "server": {"token": "token.json"}, "client": {"ping": "ping.json"}}),
            ),
            (
                "common.json",
                json!({"$defs": {"turn_id": {"type": "string", "minLength": 1}}}),
            ),
            (
                "token.json",
                json!({
                    "type": "object",
                    "required": ["type", "turn_id", "index", "content"],
                    "additionalProperties": false,
                    "properties": {
                        "type": {"const": "token"},
                        "turn_id": {"$ref": "common.json#/$defs/turn_id"},
                        "index": {"type": "integer", "minimum": 0},
                        "content": {"type": "string"}
                    }
                }),
            ),
            ("ping.json", json!({"type": "object"})),
        ])
        .expect("sample compiles")
    }

    #[test]
    fn valid_event_passes() {
        let r = sample();
        r.check(
            Side::Server,
            &json!({"type": "token", "turn_id": "t", "index": 0, "content": "x"}),
        )
        .unwrap();
    }

    #[test]
    fn violation_names_pointer_and_keyword() {
        let r = sample();
        let err = r
            .check(
                Side::Server,
                &json!({"type": "token", "turn_id": "t", "index": -1, "content": "x"}),
            )
            .unwrap_err();
        let v = &err.violations[0];
        assert_eq!(v.instance_path, "/index");
        assert_eq!(v.keyword, "minimum");
        assert_eq!(v.event_type.as_deref(), Some("token"));
        assert!(err.message.contains("/index (minimum)"), "{}", err.message);
    }

    #[test]
    fn cross_file_ref_is_enforced() {
        let r = sample();
        let err = r
            .check(
                Side::Server,
                &json!({"type": "token", "turn_id": "", "index": 0, "content": "x"}),
            )
            .unwrap_err();
        assert_eq!(err.violations[0].instance_path, "/turn_id");
        assert_eq!(err.violations[0].keyword, "minLength");
    }

    #[test]
    fn unknown_type_lists_known() {
        let r = sample();
        let err = r.check(Side::Server, &json!({"type": "nope"})).unwrap_err();
        assert_eq!(err.message, "unknown event type 'nope' (known: token)");
        let err = r.check(Side::Server, &json!({"kind": 1})).unwrap_err();
        assert!(err.message.contains("/type is missing"), "{}", err.message);
    }

    #[test]
    fn missing_file_and_remote_ref_are_errors() {
        let err = registry(&[("index.json", json!({"server": {"a": "a.json"}}))]).unwrap_err();
        assert!(matches!(err, SchemaError::MissingFile { .. }), "{err}");
        let err = registry(&[
            ("index.json", json!({"server": {"a": "a.json"}})),
            ("a.json", json!({"$ref": "https://example.com/remote.json"})),
        ])
        .unwrap_err();
        assert!(matches!(err, SchemaError::Compile { .. }), "{err}");
    }

    #[test]
    fn fallback_schema_per_side_g1() {
        let r = registry(&[
            (
                "index.json",
                json!({"server": {"reply": "reply.json"}, "client": {"*": "input.json", "ping": "ping.json"}}),
            ),
            ("reply.json", json!({"required": ["text"]})),
            ("ping.json", json!({"properties": {"type": {"const": "ping"}}, "additionalProperties": false})),
            ("input.json", json!({"type": "object", "required": ["message"]})),
        ])
        .unwrap();
        // No discriminator, or a value without a schema of its own: the `*` schema.
        r.check(Side::Client, &json!({"message": "hi"})).unwrap();
        r.check(Side::Client, &json!({"type": "other", "message": "hi"}))
            .unwrap();
        let e = r.check(Side::Client, &json!({"text": "hi"})).unwrap_err();
        assert_eq!(e.violations[0].event_type.as_deref(), Some("*"));
        assert_eq!(e.violations[0].keyword, "required");
        // A value with its own schema uses it.
        assert!(r
            .check(Side::Client, &json!({"type": "ping", "message": "x"}))
            .is_err());
        // The server side has no fallback: unknown types are still reported.
        let e = r.check(Side::Server, &json!({"type": "nope"})).unwrap_err();
        assert!(
            e.message.contains("unknown event type 'nope'"),
            "{}",
            e.message
        );
    }

    #[test]
    fn per_side_discriminator_g1() {
        let r = registry(&[
            (
                "index.json",
                json!({"discriminator": {"server": "event", "client": null},
                       "server": {"reply": "reply.json"}, "client": {"*": "input.json"}}),
            ),
            ("reply.json", json!({"required": ["text"]})),
            ("input.json", json!({"required": ["message"]})),
        ])
        .unwrap();
        assert_eq!(r.side_discriminator(Side::Server), Some("/event"));
        assert_eq!(r.side_discriminator(Side::Client), None);
        r.check(Side::Server, &json!({"event": "reply", "text": "x"}))
            .unwrap();
        assert!(r.check(Side::Server, &json!({"event": "reply"})).is_err());
        // The suite's discriminator (`/type`) does not apply to the server side any more.
        let e = r
            .check(Side::Server, &json!({"type": "reply"}))
            .unwrap_err();
        assert!(e.message.contains("/event is missing"), "{}", e.message);
        // A client frame with a `type` field still goes to `*`: that side has no discriminator.
        r.check(Side::Client, &json!({"type": "reply", "message": "m"}))
            .unwrap();
        // A side without a discriminator needs its `*` schema.
        let err = registry(&[
            (
                "index.json",
                json!({"discriminator": {"client": null}, "client": {"ping": "p.json"}}),
            ),
            ("p.json", json!({})),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("needs a \"*\" schema"), "{err}");
        let err = registry(&[("index.json", json!({"discriminator": {"server": 3}}))]).unwrap_err();
        assert!(err.to_string().contains("'discriminator.server'"), "{err}");
    }

    #[test]
    fn sent_notes_never_fail_and_can_be_turned_off() {
        let r = sample();
        assert_eq!(r.sent_note(&json!({"type": "ping"})), None);
        let note = r.sent_note(&json!({"type": "nope"})).expect("a note");
        assert!(
            note.starts_with("schema note (not a failure): unknown event type 'nope'"),
            "{note}"
        );
        let r = r.with_sent_checks(false);
        assert_eq!(r.sent_note(&json!({"type": "nope"})), None);
    }

    #[test]
    fn embedded_set_compiles_when_present() {
        if embedded_files().iter().any(|(n, _)| *n == "index.json") {
            let r = SchemaRegistry::embedded("/type").expect("built-in schemas compile");
            assert!(!r.known_types(Side::Server).is_empty());
        }
    }
}
