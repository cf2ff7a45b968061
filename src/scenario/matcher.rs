//! Partial JSON matching with `$` operators. Owned by the loader work.
use super::template::Template;

/// A match specification as written (a template, rendered at run time, then compiled).
#[derive(Debug, Clone)]
pub struct MatchSpec(pub Template);
