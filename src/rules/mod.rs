//! Ordering rules as data: the rules file model, its loader, and the per-connection checker.
//!
//! The format and every rule kind are documented in `docs/RULES.md`. A [`RuleSet`] is loaded
//! once per suite; each connection gets its own [`RuleChecker`] from [`RuleSet::checker`], fed
//! every JSON frame in transcript order.

mod check;
mod load;
mod model;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use check::{selectors_of, RuleChecker};
pub use load::kinds;
pub use model::{FieldRef, KeySpec, Rule, RuleKind, Scope, Selector};

use crate::scenario::Loc;

/// A rules file that could not be loaded. `Display` starts with `file:line:col: ` (or `file: `
/// when the file could not be read at all).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RulesError {
    #[error("{}: cannot read rules file: {source}", file.display())]
    #[diagnostic(code(wschat::rules::io))]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, or not the shape of a rules file (unknown field, missing `id`, wrong type).
    #[error("{loc}: {message}")]
    #[diagnostic(
        code(wschat::rules::syntax),
        help("the rules file format is described in docs/RULES.md")
    )]
    Syntax { loc: Loc, message: String },
    /// Well-formed YAML with an invalid rule (unknown kind, a field the kind does not use, …).
    #[error("{loc}: {message}")]
    #[diagnostic(
        code(wschat::rules::invalid),
        help("the rules file format is described in docs/RULES.md")
    )]
    Invalid { loc: Loc, message: String },
}

impl RulesError {
    /// Where the error is, when known.
    pub fn loc(&self) -> Option<&Loc> {
        match self {
            RulesError::Io { .. } => None,
            RulesError::Syntax { loc, .. } | RulesError::Invalid { loc, .. } => Some(loc),
        }
    }
}

/// Reads and parses a rules file.
pub fn load_rules(path: &Path) -> Result<RuleSet, RulesError> {
    let text = match crate::text::read_utf8(path) {
        Ok(t) => t,
        Err(crate::text::ReadError::Io(source)) => {
            return Err(RulesError::Io {
                file: path.to_path_buf(),
                source,
            })
        }
        Err(crate::text::ReadError::Utf8(at)) => {
            return Err(RulesError::Syntax {
                loc: Loc {
                    file: Arc::new(path.to_path_buf()),
                    line: at.line,
                    col: at.col,
                },
                message: at.to_string(),
            })
        }
    };
    parse_rules(path, &text)
}

/// Parses rules file text; `file` names it in errors.
pub fn parse_rules(file: &Path, yaml: &str) -> Result<RuleSet, RulesError> {
    load::parse(file, yaml)
}

/// The loaded rules with their dispatch index (built once, shared by all checkers).
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    compiled: Arc<check::Compiled>,
}

impl RuleSet {
    pub(crate) fn from_rules(rules: Vec<Rule>) -> Self {
        RuleSet {
            compiled: Arc::new(check::Compiled::new(rules)),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.compiled.rules
    }

    pub fn is_empty(&self) -> bool {
        self.compiled.rules.is_empty()
    }

    /// A fresh checker for one connection. `discriminator` is a JSON pointer (`/type`); a bare
    /// field name (`type`) is accepted too.
    pub fn checker(&self, discriminator: &str) -> RuleChecker {
        RuleChecker::new(Arc::clone(&self.compiled), discriminator)
    }
}

/// A broken rule, found on one frame or at the end of a connection.
#[derive(Debug, Clone)]
pub struct RuleViolation {
    /// The rule id.
    pub rule: String,
    /// One line, starting with `rule <id>: `, naming keys, event types and what was expected.
    pub message: String,
    /// The frames involved (per-connection sequence numbers), earliest first.
    pub seqs: Vec<u64>,
}

impl std::fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests;
