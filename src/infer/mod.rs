//! Learning a protocol from recorded traffic: the library behind `wschat-check init` and
//! `wschat-check check --suggest`.
//!
//! Recordings (the transcript format, `docs/TRANSCRIPT.md`) go in; out come the discriminator and
//! codecs ([`detect`], [`observe`]), a JSON Schema per event type ([`schema`]), the ordering rules
//! the traffic supports ([`rules`]), a scenario per exchange ([`scenario`]), and a pack on disk that
//! passes against the server it was learned from ([`pack`]); [`suggest`] compares recordings with
//! an existing pack. Nothing here touches the network.

pub mod detect;
pub mod emit;
pub mod observe;
pub mod pack;
pub mod rules;
pub mod scenario;
pub mod schema;
pub mod suggest;
pub mod values;

pub use observe::{observe, Observed};
pub use pack::{write_pack, PackError, PackOptions, Written};
