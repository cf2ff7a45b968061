//! Keeps `schemas/{rules,suite,scenario}.schema.json` in step with what the loaders accept
//! (examples/GAPS.md, G11): every rules file, suite config and scenario in the repository
//! (`scenarios/`, `examples/`, `fixtures/` except `fixtures/invalid`, which is invalid on
//! purpose) must load AND validate against its JSON Schema; and the rules schema must list, per
//! kind, exactly the fields the loader's table accepts.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema(name: &str) -> Value {
    let p = repo().join("schemas").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn validator(name: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&schema(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.ends_with("fixtures/invalid") {
                continue;
            }
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

#[derive(Debug, PartialEq)]
enum FileKind {
    Suite,
    Rules,
    Scenario,
    /// Not a harness file (an AsyncAPI document used as a schema source).
    Other,
}

fn kind_of(path: &Path, v: &Value) -> FileKind {
    if path.file_name().is_some_and(|n| n == "wschat-suite.yaml") {
        FileKind::Suite
    } else if v.get("asyncapi").is_some() {
        FileKind::Other
    } else if v.get("rules").is_some() && v.get("steps").is_none() {
        FileKind::Rules
    } else {
        FileKind::Scenario
    }
}

#[test]
fn every_repository_file_validates_against_its_schema() {
    let root = repo();
    let mut files = Vec::new();
    for d in ["scenarios", "examples", "fixtures"] {
        yaml_files(&root.join(d), &mut files);
    }
    assert!(files.len() > 100, "found only {} files", files.len());
    let (suite, rules, scenario) = (
        validator("suite.schema.json"),
        validator("rules.schema.json"),
        validator("scenario.schema.json"),
    );
    let mut problems = Vec::new();
    let mut counts = [0usize; 3];
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let rel = f.strip_prefix(&root).unwrap_or(f).display().to_string();
        let v: Value = match serde_saphyr::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{rel}: not YAML: {e}"));
                continue;
            }
        };
        let (validator, i) = match kind_of(f, &v) {
            FileKind::Suite => (&suite, 0),
            FileKind::Rules => {
                // The loader must accept it too, or the schema would be checking nothing real.
                if let Err(e) = crate::rules::parse_rules(f, &text) {
                    problems.push(format!("{rel}: the rules loader refuses it: {e}"));
                }
                (&rules, 1)
            }
            FileKind::Scenario => (&scenario, 2),
            FileKind::Other => continue,
        };
        counts[i] += 1;
        for e in validator.iter_errors(&v) {
            problems.push(format!("{rel}: {} at '{}'", e, e.instance_path().as_str()));
        }
    }
    assert!(
        problems.is_empty(),
        "{} schema problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(
        counts.iter().all(|c| *c > 0),
        "suites, rules, scenarios: {counts:?}"
    );
}

#[test]
fn rules_schema_lists_exactly_the_loader_fields() {
    let s = schema("rules.schema.json");
    let branches = s
        .pointer("/$defs/rule/allOf")
        .and_then(Value::as_array)
        .expect("rules.schema.json has $defs/rule/allOf");
    let kinds = crate::rules::kinds();
    let names: Vec<&str> = kinds.iter().map(|(k, _, _)| *k).collect();
    let enum_names: Vec<&str> = s
        .pointer("/$defs/rule/properties/kind/enum")
        .and_then(Value::as_array)
        .expect("kind enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(enum_names, names, "kind enum");
    for (kind, required, optional) in kinds {
        let branch = branches
            .iter()
            .find(|b| b.pointer("/if/properties/kind/const") == Some(&Value::from(*kind)))
            .unwrap_or_else(|| panic!("no branch for kind '{kind}'"));
        let mut want_req: Vec<&str> = required.to_vec();
        let mut got_req: Vec<&str> = branch
            .pointer("/then/required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        want_req.sort_unstable();
        got_req.sort_unstable();
        assert_eq!(got_req, want_req, "required fields of '{kind}'");
        let mut want: Vec<&str> = required.iter().chain(optional.iter()).copied().collect();
        want.extend(["id", "kind", "description"]);
        want.sort_unstable();
        let mut got: Vec<&str> = branch
            .pointer("/then/properties")
            .and_then(Value::as_object)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        got.sort_unstable();
        assert_eq!(got, want, "fields of '{kind}'");
    }
}

#[test]
fn suite_schema_lists_the_loader_fields() {
    let s = schema("suite.schema.json");
    let mut got: Vec<&str> = s
        .pointer("/properties")
        .and_then(Value::as_object)
        .expect("properties")
        .keys()
        .map(String::as_str)
        .collect();
    got.sort_unstable();
    let mut want: Vec<&str> = super::load::config_fields().to_vec();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn suite_schema_lists_the_embedded_server_settings() {
    let s = schema("suite.schema.json");
    let mut got: Vec<&str> = s
        .pointer("/properties/embedded/properties/server/properties")
        .and_then(Value::as_object)
        .expect("embedded.server properties")
        .keys()
        .map(String::as_str)
        .collect();
    got.sort_unstable();
    let mut want: Vec<&str> = crate::scenario::EmbeddedServer::FIELDS.to_vec();
    want.sort_unstable();
    assert_eq!(got, want);
}
