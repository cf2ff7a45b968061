//! The conformance verdict and per-level counts: one pure computation shared by the terminal
//! summary, every file report and the exit decision, so they can never disagree.

use serde::{Deserialize, Serialize};

use crate::runner::{ScenarioResult, Status};
use crate::scenario::Level;

/// The outcome of a run for the people reading it.
/// Serialized with the same words people read (`"conformant with warnings"`), as
/// `schemas/report.schema.json` specifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// No scenario failed.
    #[serde(rename = "conformant")]
    Conformant,
    /// Only `should`/`may` scenarios failed.
    #[serde(rename = "conformant with warnings")]
    ConformantWithWarnings,
    /// At least one `must` scenario failed.
    #[serde(rename = "not conformant")]
    NotConformant,
}

impl Verdict {
    /// The words used in human-facing output.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Conformant => "conformant",
            Verdict::ConformantWithWarnings => "conformant with warnings",
            Verdict::NotConformant => "not conformant",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scenario counts of one conformance level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelCounts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub flaky: usize,
}

impl LevelCounts {
    pub fn total(&self) -> usize {
        self.passed + self.failed + self.skipped + self.flaky
    }

    fn add(&mut self, status: Status) {
        match status {
            Status::Passed => self.passed += 1,
            Status::Failed => self.failed += 1,
            Status::Skipped => self.skipped += 1,
            Status::Flaky => self.flaky += 1,
        }
    }
}

/// Counts for every level; all three are always present so consumers need no defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByLevel {
    pub must: LevelCounts,
    pub should: LevelCounts,
    pub may: LevelCounts,
}

impl ByLevel {
    pub fn from_results<'a>(results: impl IntoIterator<Item = &'a ScenarioResult>) -> Self {
        Self::from_statuses(results.into_iter().map(|r| (r.level, r.status)))
    }

    pub fn from_statuses(statuses: impl IntoIterator<Item = (Level, Status)>) -> Self {
        let mut by = ByLevel::default();
        for (level, status) in statuses {
            by.get_mut(level).add(status);
        }
        by
    }

    pub fn get(&self, level: Level) -> &LevelCounts {
        match level {
            Level::Must => &self.must,
            Level::Should => &self.should,
            Level::May => &self.may,
        }
    }

    fn get_mut(&mut self, level: Level) -> &mut LevelCounts {
        match level {
            Level::Must => &mut self.must,
            Level::Should => &mut self.should,
            Level::May => &mut self.may,
        }
    }

    /// Levels in report order.
    pub fn iter(&self) -> impl Iterator<Item = (Level, &LevelCounts)> {
        [Level::Must, Level::Should, Level::May]
            .into_iter()
            .map(move |l| (l, self.get(l)))
    }

    pub fn total(&self) -> LevelCounts {
        let mut t = LevelCounts::default();
        for (_, c) in self.iter() {
            t.passed += c.passed;
            t.failed += c.failed;
            t.skipped += c.skipped;
            t.flaky += c.flaky;
        }
        t
    }

    /// A flaky scenario passed in the end, so it does not affect the verdict; skipped ones
    /// say nothing about conformance either.
    pub fn verdict(&self) -> Verdict {
        self.verdict_at(Level::Must)
    }

    /// The verdict when failures at `fail_level` and above fail the run (`--fail-level`): such a
    /// failure makes the server not conformant at the level the run asked for, so the verdict
    /// agrees with the exit code; failures below it are warnings.
    pub fn verdict_at(&self, fail_level: Level) -> Verdict {
        let failing = self
            .iter()
            .any(|(level, c)| c.failed > 0 && level_fails_run(level, fail_level));
        if failing {
            Verdict::NotConformant
        } else if self.iter().any(|(_, c)| c.failed > 0) {
            Verdict::ConformantWithWarnings
        } else {
            Verdict::Conformant
        }
    }
}

/// The verdict of a set of results.
pub fn verdict_of<'a>(results: impl IntoIterator<Item = &'a ScenarioResult>) -> Verdict {
    ByLevel::from_results(results).verdict()
}

/// The exit policy: whether a failure at `level` fails the run when the threshold is
/// `fail_level` (`Must`: only must failures fail; `May`: every failure fails).
pub fn level_fails_run(level: Level, fail_level: Level) -> bool {
    level <= fail_level
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by(items: &[(Level, Status)]) -> ByLevel {
        ByLevel::from_statuses(items.iter().copied())
    }

    #[test]
    fn empty_run_is_conformant() {
        assert_eq!(by(&[]).verdict(), Verdict::Conformant);
    }

    #[test]
    fn must_failure_is_not_conformant_even_with_other_failures() {
        let b = by(&[
            (Level::Should, Status::Failed),
            (Level::Must, Status::Failed),
            (Level::May, Status::Passed),
        ]);
        assert_eq!(b.verdict(), Verdict::NotConformant);
        assert_eq!(b.must.failed, 1);
        assert_eq!(b.should.failed, 1);
        assert_eq!(b.may.passed, 1);
    }

    #[test]
    fn should_or_may_failure_is_a_warning() {
        assert_eq!(
            by(&[
                (Level::Should, Status::Failed),
                (Level::Must, Status::Passed)
            ])
            .verdict(),
            Verdict::ConformantWithWarnings
        );
        assert_eq!(
            by(&[(Level::May, Status::Failed)]).verdict(),
            Verdict::ConformantWithWarnings
        );
    }

    #[test]
    fn flaky_and_skipped_do_not_fail() {
        let b = by(&[(Level::Must, Status::Flaky), (Level::Must, Status::Skipped)]);
        assert_eq!(b.verdict(), Verdict::Conformant);
        assert_eq!(b.must.flaky, 1);
        assert_eq!(b.must.skipped, 1);
        assert_eq!(b.total().total(), 2);
    }

    #[test]
    fn verdict_serializes_and_displays_the_same_words() {
        for v in [
            Verdict::Conformant,
            Verdict::ConformantWithWarnings,
            Verdict::NotConformant,
        ] {
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                format!("{:?}", v.as_str())
            );
        }
        assert_eq!(
            serde_json::to_string(&Verdict::ConformantWithWarnings).unwrap(),
            "\"conformant with warnings\""
        );
        assert_eq!(Verdict::NotConformant.to_string(), "not conformant");
    }

    #[test]
    fn the_verdict_follows_the_fail_level() {
        let b = by(&[
            (Level::Should, Status::Failed),
            (Level::May, Status::Failed),
        ]);
        assert_eq!(b.verdict_at(Level::Must), Verdict::ConformantWithWarnings);
        assert_eq!(b.verdict_at(Level::Should), Verdict::NotConformant);
        assert_eq!(b.verdict_at(Level::May), Verdict::NotConformant);
        let b = by(&[(Level::May, Status::Failed)]);
        assert_eq!(b.verdict_at(Level::Should), Verdict::ConformantWithWarnings);
        assert_eq!(b.verdict_at(Level::May), Verdict::NotConformant);
        assert_eq!(by(&[]).verdict_at(Level::May), Verdict::Conformant);
    }

    #[test]
    fn fail_level_threshold() {
        assert!(level_fails_run(Level::Must, Level::Must));
        assert!(!level_fails_run(Level::Should, Level::Must));
        assert!(level_fails_run(Level::Should, Level::Should));
        assert!(level_fails_run(Level::May, Level::May));
        assert!(!level_fails_run(Level::May, Level::Should));
    }
}
