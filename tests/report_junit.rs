//! The JUnit report is checked by a real consumer: `xmllint --schema` against the JUnit XSD
//! in `tests/data/junit.xsd`. Without xmllint (package libxml2-utils) the check is skipped
//! with a printed reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use wschat_check::report::{junit, sample, Collector};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wschat-report-junit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn xsd() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/junit.xsd")
}

fn xmllint_available() -> bool {
    match Command::new("xmllint").arg("--version").output() {
        Ok(o) => o.status.success(),
        Err(_) => {
            eprintln!(
                "SKIPPED: xmllint not found (install libxml2-utils); JUnit XSD validation not run"
            );
            false
        }
    }
}

fn validate(path: &Path) -> (bool, String) {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(xsd())
        .arg(path)
        .output()
        .expect("run xmllint");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn xpath(path: &Path, expr: &str) -> String {
    let out = Command::new("xmllint")
        .arg("--xpath")
        .arg(expr)
        .arg(path)
        .output()
        .expect("run xmllint");
    assert!(
        out.status.success(),
        "xpath {expr}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write_report() -> PathBuf {
    let path = tmp("junit.xml");
    let mut c = Collector::default();
    for e in sample::events() {
        c.on_event(&e);
    }
    junit::write_file(&path, &c.into_report()).unwrap();
    path
}

#[test]
fn junit_report_validates_against_the_xsd() {
    if !xmllint_available() {
        return;
    }
    let path = write_report();
    let (ok, msg) = validate(&path);
    assert!(ok, "JUnit report does not validate:\n{msg}");

    // What a consumer reads from it.
    assert_eq!(xpath(&path, "string(/testsuites/@tests)"), "6");
    assert_eq!(xpath(&path, "string(/testsuites/@failures)"), "2");
    assert_eq!(xpath(&path, "string(/testsuites/@skipped)"), "1");
    assert_eq!(xpath(&path, "count(/testsuites/testsuite)"), "3");
    assert_eq!(
        xpath(
            &path,
            "string(//testcase[@name='tokens arrive in order']/failure/@type)"
        ),
        "schema"
    );
    assert_eq!(
        xpath(
            &path,
            "string(//testcase[@name='binary frames']/skipped/@message)"
        ),
        "requires: binary"
    );
    assert_eq!(
        xpath(&path, "count(//testcase[@name='ping pong']/flakyFailure)"),
        "1"
    );
    assert_eq!(
        xpath(&path, "count(//testcase[@name='ping pong']/failure)"),
        "0"
    );
    let body = xpath(
        &path,
        "string(//testcase[@name='tokens arrive in order']/failure)",
    );
    assert!(
        body.contains(">> "),
        "transcript excerpt with the offending frame: {body}"
    );
    assert!(body.contains("re-run: wschat-check run"), "{body}");
}

#[test]
fn xsd_rejects_an_invalid_document() {
    if !xmllint_available() {
        return;
    }
    // The validation above must be able to fail.
    let path = tmp("bad.xml");
    std::fs::write(
        &path,
        r#"<?xml version="1.0"?><testsuites tests="1" failures="0" errors="0"><testsuite name="x" tests="many" failures="0" errors="0"><testcase classname="no name"/></testsuite></testsuites>"#,
    )
    .unwrap();
    let (ok, msg) = validate(&path);
    assert!(!ok, "an invalid document validated: {msg}");
}
