//! Scenario model, suite config, loading (YAML → model), templates and matchers.

pub mod matcher;
pub mod model;
pub mod template;

pub use model::*;
