//! Known failures (`--baseline FILE`) and the run's exit decision.
//!
//! A baseline lets a team adopt the harness against a server that does not pass everything
//! yet: a baselined failure does not fail the run, a new failure does, and a baselined
//! scenario that now passes is "stale" and fails the run too, so the baseline shrinks as the
//! server improves instead of hiding regressions forever.
//!
//! File format (YAML or JSON, chosen by the `.json` extension): a list whose items are either
//! a scenario name or `{name, reason}`:
//!
//! ```yaml
//! - cancel is acknowledged quickly
//! - name: binary frames are refused
//!   reason: server answers 1003 instead of 1007 (tracked upstream)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::runner::{ScenarioResult, Status};
use crate::scenario::Level;

use super::verdict::{level_fails_run, ByLevel, Verdict};
use super::ReportError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baseline {
    /// Where it was read from, for messages.
    pub source: Option<PathBuf>,
    pub entries: Vec<BaselineEntry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawEntry {
    Name(String),
    Full {
        name: String,
        #[serde(default)]
        reason: Option<String>,
    },
}

impl Baseline {
    pub fn load(path: &Path) -> Result<Self, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let mut b = Baseline::parse(&text, is_json, path)?;
        b.source = Some(path.to_path_buf());
        Ok(b)
    }

    /// Parses baseline text; `origin` names the source in errors.
    pub fn parse(text: &str, is_json: bool, origin: &Path) -> Result<Self, ReportError> {
        let bad = |message: String| ReportError::Baseline {
            path: origin.to_path_buf(),
            message,
        };
        let raw: Vec<RawEntry> = if is_json {
            serde_json::from_str(text).map_err(|e| {
                bad(format!(
                    "line {} column {}: {e} (expected a list of scenario names or {{name, reason}} objects)",
                    e.line(),
                    e.column()
                ))
            })?
        } else if text.trim().is_empty() {
            Vec::new()
        } else {
            let mut opts = serde_saphyr::Options::default();
            opts.strict_booleans = true;
            serde_saphyr::from_str_with_options(text, opts).map_err(|e| {
                bad(format!(
                    "{e} (expected a list of scenario names or {{name, reason}} maps)"
                ))
            })?
        };
        let mut seen = BTreeMap::new();
        let mut entries = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let e = match r {
                RawEntry::Name(name) => BaselineEntry { name, reason: None },
                RawEntry::Full { name, reason } => BaselineEntry { name, reason },
            };
            if e.name.trim().is_empty() {
                return Err(bad(format!("entry {}: empty scenario name", i + 1)));
            }
            if let Some(first) = seen.insert(e.name.clone(), i + 1) {
                return Err(bad(format!(
                    "entry {}: scenario {:?} is already listed as entry {first}",
                    i + 1,
                    e.name
                )));
            }
            entries.push(e);
        }
        Ok(Baseline {
            source: None,
            entries,
        })
    }

    pub fn get(&self, name: &str) -> Option<&BaselineEntry> {
        self.entries.iter().find(|e| e.name == name)
    }
}

/// A baselined scenario that failed as expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnownFailure {
    pub name: String,
    pub level: Level,
    pub reason: Option<String>,
}

/// The outcome of a run for the exit code, and the lists that explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub by_level: ByLevel,
    /// Whether the run succeeds (exit 0).
    pub success: bool,
    /// Failures that fail the run: not baselined, at a failing level.
    pub new_failures: Vec<String>,
    /// Failures that do not fail the run because their level is below the threshold
    /// (e.g. `should` failures when only `must` fails the run).
    pub warnings: Vec<String>,
    /// Baselined scenarios that failed (tolerated).
    pub known_failures: Vec<KnownFailure>,
    /// Baselined scenarios that passed: the baseline is out of date (fails the run).
    pub stale: Vec<String>,
    /// Baselined names that no scenario of this run has (filtered out or renamed); reported,
    /// not fatal, because filtered runs are normal.
    pub unmatched: Vec<String>,
}

/// Decides the run from its results: pure, so every output agrees with the exit code.
///
/// Flaky scenarios passed in the end: never a failure, and a baselined flaky scenario is not
/// stale (it still fails sometimes). Skipped scenarios prove nothing either way.
pub fn decide<'a>(
    results: impl IntoIterator<Item = &'a ScenarioResult>,
    baseline: Option<&Baseline>,
    fail_level: Level,
) -> Decision {
    let results: Vec<&ScenarioResult> = results.into_iter().collect();
    let by_level = ByLevel::from_results(results.iter().copied());
    let mut d = Decision {
        verdict: by_level.verdict_at(fail_level),
        by_level,
        success: true,
        new_failures: Vec::new(),
        warnings: Vec::new(),
        known_failures: Vec::new(),
        stale: Vec::new(),
        unmatched: Vec::new(),
    };
    for r in &results {
        let entry = baseline.and_then(|b| b.get(&r.name));
        match (r.status, entry) {
            (Status::Failed, Some(e)) => d.known_failures.push(KnownFailure {
                name: r.name.clone(),
                level: r.level,
                reason: e.reason.clone(),
            }),
            (Status::Failed, None) if level_fails_run(r.level, fail_level) => {
                d.new_failures.push(r.name.clone())
            }
            (Status::Failed, None) => d.warnings.push(r.name.clone()),
            (Status::Passed, Some(_)) => d.stale.push(r.name.clone()),
            _ => {}
        }
    }
    if let Some(b) = baseline {
        for e in &b.entries {
            if !results.iter().any(|r| r.name == e.name) {
                d.unmatched.push(e.name.clone());
            }
        }
    }
    d.success = d.new_failures.is_empty() && d.stale.is_empty();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    fn origin() -> &'static Path {
        Path::new("baseline.yaml")
    }

    #[test]
    fn parses_yaml_names_and_reasons() {
        let b = Baseline::parse(
            "- cancel is acknowledged quickly\n- name: 'no'\n  reason: tracked upstream\n",
            false,
            origin(),
        )
        .unwrap();
        assert_eq!(
            b.entries,
            vec![
                BaselineEntry {
                    name: "cancel is acknowledged quickly".into(),
                    reason: None
                },
                // strict booleans: `no` stays a string.
                BaselineEntry {
                    name: "no".into(),
                    reason: Some("tracked upstream".into())
                },
            ]
        );
    }

    #[test]
    fn strict_booleans_keep_bare_words_as_names() {
        let b = Baseline::parse("- yes\n- off\n", false, origin()).unwrap();
        assert_eq!(b.entries[0].name, "yes");
        assert_eq!(b.entries[1].name, "off");
    }

    #[test]
    fn parses_json_and_empty() {
        let b = Baseline::parse(r#"["a", {"name": "b", "reason": "r"}]"#, true, origin()).unwrap();
        assert_eq!(b.entries.len(), 2);
        assert!(Baseline::parse("", false, origin())
            .unwrap()
            .entries
            .is_empty());
    }

    #[test]
    fn errors_name_the_file_and_entry() {
        let e = Baseline::parse("- a\n- a\n", false, origin())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("baseline.yaml: entry 2"), "{e}");
        let e = Baseline::parse("{not: a list}", false, origin())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("baseline.yaml: "), "{e}");
        let e = Baseline::parse("[1,", true, Path::new("b.json"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("b.json: line 1"), "{e}");
        let e = Baseline::load(Path::new("/nonexistent/baseline.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/nonexistent/baseline.yaml: "), "{e}");
    }

    fn baseline(names: &[&str]) -> Baseline {
        Baseline {
            source: None,
            entries: names
                .iter()
                .map(|n| BaselineEntry {
                    name: n.to_string(),
                    reason: Some("why".into()),
                })
                .collect(),
        }
    }

    #[test]
    fn without_baseline_must_failure_fails_and_should_failure_warns() {
        let results = sample::results();
        let d = decide(&results, None, Level::Must);
        assert!(!d.success);
        assert_eq!(d.verdict, Verdict::NotConformant);
        assert_eq!(d.new_failures, vec!["tokens arrive in order"]);
        assert_eq!(d.warnings, vec!["cancel is acknowledged quickly"]);
        // A stricter threshold turns the warning into a failure.
        let d = decide(&results, None, Level::Should);
        assert_eq!(d.new_failures.len(), 2);
    }

    #[test]
    fn known_failure_does_not_fail_the_run() {
        let results = sample::results();
        let b = baseline(&["tokens arrive in order"]);
        let d = decide(&results, Some(&b), Level::Must);
        assert!(d.success, "{d:?}");
        // The verdict still tells the truth about conformance.
        assert_eq!(d.verdict, Verdict::NotConformant);
        assert_eq!(d.known_failures[0].name, "tokens arrive in order");
        assert_eq!(d.known_failures[0].reason.as_deref(), Some("why"));
    }

    #[test]
    fn baselined_pass_is_stale_and_fails() {
        let results = vec![sample::passed("fixed now", Level::May)];
        let d = decide(&results, Some(&baseline(&["fixed now"])), Level::Must);
        assert!(!d.success);
        assert_eq!(d.stale, vec!["fixed now"]);
    }

    #[test]
    fn flaky_skipped_and_unmatched_entries_are_not_fatal() {
        let results = vec![
            sample::flaky("sometimes", Level::Must),
            sample::skipped("not here", Level::Must, "requires x"),
        ];
        let d = decide(
            &results,
            Some(&baseline(&["sometimes", "not here", "renamed"])),
            Level::Must,
        );
        assert!(d.success, "{d:?}");
        assert!(d.stale.is_empty());
        assert_eq!(d.unmatched, vec!["renamed"]);
    }
}
