//! The JSON report (`schemas/report.schema.json`) and its reader.

use std::io::Write;
use std::path::Path;

use super::{to_io, write_file_atomically, Report, ReportError, REPORT_VERSION};

/// Writes `report` as pretty JSON with a trailing newline.
pub fn write_json(report: &Report, mut w: impl Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut w, report)?;
    w.write_all(b"\n")
}

/// Reads a report written by [`write_json`], checking its version.
pub fn read_json_report(path: &Path) -> Result<Report, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
    parse_json_report(&text, path)
}

/// Parses report text; `origin` names it in errors.
pub fn parse_json_report(text: &str, origin: &Path) -> Result<Report, ReportError> {
    // Check the version first: a future format would otherwise fail with a confusing
    // message about some field.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|source| ReportError::Json {
            path: origin.to_path_buf(),
            source,
        })?;
    if let Some(v) = value.get("version").and_then(|v| v.as_u64()) {
        if v != u64::from(REPORT_VERSION) {
            return Err(ReportError::Version {
                path: origin.to_path_buf(),
                found: v.min(u64::from(u32::MAX)) as u32,
                expected: REPORT_VERSION,
            });
        }
    }
    serde_json::from_value(value).map_err(|source| ReportError::Json {
        path: origin.to_path_buf(),
        source,
    })
}

/// Writes the JSON report of a finished run to `path` (atomically).
pub fn write_file(path: &Path, report: &Report) -> std::io::Result<()> {
    write_file_atomically(path, |w| write_json(report, w)).map_err(to_io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("wschat-json-{}-{name}", std::process::id()))
    }

    #[test]
    fn report_shape_and_round_trip() {
        let path = tmp("round.json");
        let mut c = crate::report::Collector::default();
        for e in sample::events() {
            c.on_event(&e);
        }
        write_file(&path, &c.into_report()).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["tool"]["name"], "wschat-check");
        assert_eq!(v["summary"]["verdict"], "not conformant");
        assert_eq!(v["summary"]["by_level"]["must"]["failed"], 1);
        assert_eq!(v["summary"]["by_level"]["should"]["flaky"], 1);
        assert_eq!(v["summary"]["duration"], 1234.0);
        assert_eq!(v["scenarios"].as_array().unwrap().len(), 6);
        assert_eq!(v["scenarios"][1]["failures"][0]["kind"], "schema");

        let back = read_json_report(&path).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), v);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn reader_errors_name_the_file() {
        let p = Path::new("shard-1.json");
        let e = parse_json_report("{\"version\": 1}", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("shard-1.json: not a wschat-check JSON report"),
            "{e}"
        );
        let e = parse_json_report("{\"version\": 7}", p)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "shard-1.json: report version 7 is not supported (expected 1)"
        );
        let e = parse_json_report("nope", p).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = read_json_report(Path::new("/nonexistent/r.json"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/nonexistent/r.json: "), "{e}");
    }
}
