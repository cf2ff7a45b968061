//! The JSON report validates against `schemas/report.schema.json`, and a report read back
//! renders the same.

use std::path::{Path, PathBuf};

use wschat_check::report::json::{self, read_json_report};
use wschat_check::report::{sample, Collector};
use wschat_check::runner::RunEvent;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wschat-report-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write(events: &[RunEvent], path: &Path) -> serde_json::Value {
    let mut c = Collector::default();
    for e in events {
        c.on_event(e);
    }
    json::write_file(path, &c.into_report()).unwrap();
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/report.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schemas/report.schema.json"))
            .unwrap();
    jsonschema::validator_for(&schema).expect("report schema compiles")
}

fn errors(v: &jsonschema::Validator, instance: &serde_json::Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| {
            format!(
                "{} at {} (schema {})",
                e,
                e.instance_path(),
                e.schema_path()
            )
        })
        .collect()
}

#[test]
fn generated_report_validates_against_the_schema() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let v = validator();
    let report = write(&sample::events(), &tmp("full.json"));
    let errs = errors(&v, &report);
    assert!(
        errs.is_empty(),
        "report does not match its schema:\n{}",
        errs.join("\n")
    );
}

#[test]
fn schema_rejects_a_broken_report() {
    // The check above must be able to fail: a wrong verdict and an unknown field are caught.
    let v = validator();
    let mut report = write(&sample::events(), &tmp("broken.json"));
    report["summary"]["verdict"] = "mostly fine".into();
    report["extra"] = 1.into();
    let errs = errors(&v, &report);
    assert!(errs.len() >= 2, "{errs:?}");
}

#[test]
fn interrupted_run_report_still_validates() {
    let v = validator();
    let events: Vec<RunEvent> = sample::events()
        .into_iter()
        .filter(|e| !matches!(e, RunEvent::RunStarted(_) | RunEvent::RunFinished(_)))
        .collect();
    let report = write(&events, &tmp("partial.json"));
    let errs = errors(&v, &report);
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

#[test]
fn read_back_equals_written() {
    let path = tmp("roundtrip.json");
    let written = write(&sample::events(), &path);
    let back = read_json_report(&path).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), written);
    assert_eq!(back.scenarios.len(), 6);
}
