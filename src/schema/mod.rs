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

use crate::runner::SchemaViolation;

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

/// Compiled schemas for both sides, keyed by discriminator value.
pub struct SchemaRegistry {
    origin: String,
    discriminator: String,
    server: HashMap<String, Arc<Validator>>,
    client: HashMap<String, Arc<Validator>>,
    server_known: String,
    client_known: String,
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
        let known = |m: &HashMap<String, Arc<Validator>>| {
            let mut k: Vec<&str> = m.keys().map(String::as_str).collect();
            k.sort_unstable();
            k.join(", ")
        };
        Ok(SchemaRegistry {
            server_known: known(&server),
            client_known: known(&client),
            origin,
            discriminator: discriminator.to_owned(),
            server,
            client,
        })
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
        event.pointer(&self.discriminator).and_then(Value::as_str)
    }

    /// Validates one event with its compiled schema.
    pub fn check(&self, side: Side, event: &Value) -> Result<(), SchemaFailure> {
        let event_type = match event.pointer(&self.discriminator) {
            Some(Value::String(s)) => s.as_str(),
            other => {
                let what = match other {
                    None => "is missing".to_owned(),
                    Some(v) => format!("is not a string ({v})"),
                };
                let message = format!("discriminator {} {what}", self.discriminator);
                return Err(SchemaFailure {
                    violations: vec![SchemaViolation {
                        event_type: None,
                        instance_path: self.discriminator.clone(),
                        keyword: "discriminator".into(),
                        schema_path: "index.json".into(),
                        message: message.clone(),
                    }],
                    message,
                });
            }
        };
        let Some(validator) = self.map(side).get(event_type) else {
            let known = match side {
                Side::Server => &self.server_known,
                Side::Client => &self.client_known,
            };
            let message = format!("unknown event type '{event_type}' (known: {known})");
            return Err(SchemaFailure {
                violations: vec![SchemaViolation {
                    event_type: Some(event_type.to_owned()),
                    instance_path: self.discriminator.clone(),
                    keyword: "discriminator".into(),
                    schema_path: "index.json".into(),
                    message: message.clone(),
                }],
                message,
            });
        };
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
    fn embedded_set_compiles_when_present() {
        if embedded_files().iter().any(|(n, _)| *n == "index.json") {
            let r = SchemaRegistry::embedded("/type").expect("built-in schemas compile");
            assert!(!r.known_types(Side::Server).is_empty());
        }
    }
}
