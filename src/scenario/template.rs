//! `${...}` templates inside JSON values. Owned by the loader work.
use serde_json::Value;

/// A JSON value whose strings may contain `${NAME}` placeholders (see docs/SCENARIOS.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Template(pub Value);

/// Supplies values for placeholder names at run time (`session_id`, `env:HOME`, `jwt:alice`, ...).
pub trait Resolver {
    fn resolve(&self, name: &str) -> Option<Value>;
}
