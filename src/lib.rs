//! wschat-check: a conformance harness for WebSocket chat and agent APIs.
//!
//! Layout (one place per concern):
//! - [`scenario`]: the scenario model, suite config, loading (YAML → model), templates and matchers.
//! - [`rules`]: ordering rules (the model is loaded with the suite; the checker runs over transcripts).
//! - [`codec`]: how frames become events (JSON, plain text, binary), per side of the suite.
//! - [`infer`]: learning a pack from recordings (`init`, `check --suggest`); [`init`] is its command.
//! - [`schema`]: the schema registry (discriminator → compiled JSON Schema).
//! - [`transport`]: WebSocket connections (reader task + transcript) and HTTP steps.
//! - [`runner`]: executes scenarios, emits [`runner::RunEvent`]s, produces [`runner::ScenarioResult`]s.
//! - [`report`]: reporters that consume run events (terminal, JSON, JUnit, TAP, HTML).
//! - [`cli`]: argument parsing and the exit codes.

pub mod check;
pub mod cli;
pub mod codec;
pub mod infer;
pub mod init;
pub mod json;
pub mod load;
pub mod record;
pub mod replay;
pub mod report;
pub mod rules;
pub mod runner;
pub mod scenario;
pub mod schema;
pub mod text;
pub mod transport;
