//! Executes scenarios over real connections and emits run events.

pub mod result;

pub use result::*;
