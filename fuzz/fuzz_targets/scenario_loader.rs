//! Arbitrary bytes → UTF-8 → the scenario loader, with the default suite config and options.
//!
//! Invariants: no panic, no hang; a rejected file yields at least one problem, every problem's
//! `Display` starts with `fuzz.yaml:LINE:COL: ` (1-based), the error's `Display` starts with the
//! first problem, and every diagnostic renders through miette (labels inside the source).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};
use wschat_check::scenario::{load_scenario_str, LoadOptions, SuiteConfig};

/// Scenario files are small; larger inputs only slow the search down.
const MAX_INPUT: usize = 64 * 1024;
const FILE: &str = "fuzz.yaml";

/// `FILE:LINE:COL: ` with LINE and COL ≥ 1; returns the rest of the line.
fn strip_place(s: &str) -> Option<&str> {
    let rest = s.strip_prefix(FILE)?.strip_prefix(':')?;
    let mut parts = rest.splitn(3, ':');
    let line: u32 = parts.next()?.parse().ok()?;
    let col: u32 = parts.next()?.parse().ok()?;
    let tail = parts.next()?.strip_prefix(' ')?;
    (line >= 1 && col >= 1).then_some(tail)
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = SuiteConfig::default();
    let opts = LoadOptions::default();
    let Err(err) = load_scenario_str(Path::new(FILE), text, &config, &opts) else {
        return;
    };
    assert!(!err.problems.is_empty(), "a LoadError without problems");
    for p in &err.problems {
        let shown = p.to_string();
        assert!(
            strip_place(&shown).is_some(),
            "problem without a file:line:col place: {shown:?}"
        );
        assert!(
            !p.message.trim().is_empty(),
            "problem with an empty message: {shown:?}"
        );
        if let Some(labels) = p.labels() {
            for l in labels {
                assert!(
                    l.offset() <= text.len(),
                    "label {}+{} beyond the source ({} bytes): {shown:?}",
                    l.offset(),
                    l.len(),
                    text.len()
                );
            }
        }
        let mut out = String::new();
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .render_report(&mut out, p)
            .unwrap_or_else(|e| panic!("miette cannot render {shown:?}: {e}"));
    }
    let whole = err.to_string();
    let first = err.problems[0].to_string();
    assert!(
        whole.starts_with(&first),
        "LoadError display {whole:?} does not start with its first problem {first:?}"
    );
});
