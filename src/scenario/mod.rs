//! Scenario model, suite config, loading (YAML → model), templates and matchers.

pub mod load;
pub mod matcher;
pub mod model;
pub mod template;
mod yaml;

pub use load::{
    load_scenario_str, load_suite, load_suite_for_run, LoadError, LoadOptions, Problem,
};
pub use matcher::{MatchSpec, Matcher, MatcherError, Mismatch};
pub use model::*;
pub use template::{Resolver, Template, TemplateError};

/// Edit distance (optimal string alignment: Levenshtein plus adjacent transpositions, on
/// chars), for "did you mean" hints; `jtw` is one edit from `jwt`.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
#[path = "schema_drift_tests.rs"]
mod schema_drift_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("jtw", "jwt"), 1);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(
            suggest("sesion_id", ["session_id", "text"]),
            Some("session_id")
        );
        assert_eq!(suggest("$regexp", ["$regex", "$eq"]), Some("$regex"));
        assert_eq!(suggest("zzz", ["session_id", "text"]), None);
    }
}
