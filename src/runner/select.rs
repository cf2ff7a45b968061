//! Scenario selection for CI: sharding (`--shard K/N`) and levels (`--level`).
//!
//! Sharding is by sorted name: the selected scenarios are sorted by name and the one at sorted
//! position `i` (from 0) belongs to shard `i % N + 1`. Names are unique within a suite, so every
//! scenario lands in exactly one shard, shard sizes differ by at most one, and the split depends
//! only on the selected names, not on file order or the machine. All shards of a CI matrix must
//! therefore use the same paths and the same `--filter`/`--tag`/`--level` flags.

use std::fmt;
use std::str::FromStr;

use crate::scenario::{Level, Scenario};

/// One shard of a run: `index` of `count`, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// A `--shard` value that is not `K/N` with `1 <= K <= N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--shard {given:?}: {reason} (expected K/N with 1 <= K <= N, e.g. 2/4)")]
pub struct ShardParseError {
    pub given: String,
    pub reason: &'static str,
}

impl FromStr for Shard {
    type Err = ShardParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ShardParseError {
            given: s.to_owned(),
            reason,
        };
        let (k, n) = s.split_once('/').ok_or_else(|| err("no '/'"))?;
        let index: usize = k.trim().parse().map_err(|_| err("K is not a number"))?;
        let count: usize = n.trim().parse().map_err(|_| err("N is not a number"))?;
        if count == 0 {
            return Err(err("N must be at least 1"));
        }
        if index == 0 || index > count {
            return Err(err("K must be between 1 and N"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Keeps the scenarios of this shard, in their original (run) order.
    pub fn select(&self, scenarios: Vec<Scenario>) -> Vec<Scenario> {
        let mut names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        let mine: std::collections::BTreeSet<String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| i % self.count + 1 == self.index)
            .map(|(_, n)| (*n).to_owned())
            .collect();
        scenarios
            .into_iter()
            .filter(|s| mine.contains(&s.name))
            .collect()
    }
}

/// Keeps the scenarios whose level is one of `levels` (all when `levels` is empty).
pub fn by_level(scenarios: Vec<Scenario>, levels: &[Level]) -> Vec<Scenario> {
    if levels.is_empty() {
        return scenarios;
    }
    scenarios
        .into_iter()
        .filter(|s| levels.contains(&s.level))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Loc;

    fn sc(name: &str, level: Level) -> Scenario {
        Scenario {
            name: name.to_owned(),
            description: None,
            tags: Vec::new(),
            level,
            requires: Vec::new(),
            vars: Default::default(),
            steps: Vec::new(),
            loc: Loc {
                file: std::sync::Arc::new("t.yaml".into()),
                line: 1,
                col: 1,
            },
        }
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
        assert_eq!("1/1".parse::<Shard>().unwrap().to_string(), "1/1");
        for bad in ["0/4", "5/4", "1/0", "x/2", "2", "1/y", ""] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.to_string().contains("K/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn every_scenario_in_exactly_one_shard_and_balanced() {
        // Names in an order unlike their sorted order, so the split cannot depend on input order.
        let names: Vec<String> = (0..23).map(|i| format!("s-{:02}", (i * 7) % 23)).collect();
        let all: Vec<Scenario> = names.iter().map(|n| sc(n, Level::Must)).collect();
        for count in 1..=6 {
            let mut seen = std::collections::BTreeMap::new();
            let mut sizes = Vec::new();
            for index in 1..=count {
                let part = Shard { index, count }.select(all.clone());
                sizes.push(part.len());
                // Run order is kept inside a shard.
                let pos: Vec<usize> = part
                    .iter()
                    .map(|s| names.iter().position(|n| *n == s.name).unwrap())
                    .collect();
                assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
                for s in part {
                    assert!(seen.insert(s.name, index).is_none());
                }
            }
            assert_eq!(seen.len(), all.len(), "count {count}");
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "count {count}: {sizes:?}");
        }
        // Independent of input order.
        let mut reversed = all.clone();
        reversed.reverse();
        let a: Vec<String> = Shard { index: 2, count: 3 }
            .select(all)
            .into_iter()
            .map(|s| s.name)
            .collect();
        let mut b: Vec<String> = Shard { index: 2, count: 3 }
            .select(reversed)
            .into_iter()
            .map(|s| s.name)
            .collect();
        b.reverse();
        assert_eq!(a, b);
    }

    #[test]
    fn level_filter() {
        let all = vec![
            sc("a", Level::Must),
            sc("b", Level::Should),
            sc("c", Level::May),
        ];
        let names = |v: Vec<Scenario>| v.into_iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(names(by_level(all.clone(), &[])), ["a", "b", "c"]);
        assert_eq!(
            names(by_level(all.clone(), &[Level::Must, Level::May])),
            ["a", "c"]
        );
        assert_eq!(names(by_level(all, &[Level::Should])), ["b"]);
    }
}
