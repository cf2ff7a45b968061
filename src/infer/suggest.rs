//! `check --suggest`: what recordings show that a pack does not describe yet.
//!
//! The same inference as `init`, compared with the pack: event types without a schema (with the
//! schema `init` would write), schemas that some samples break (with the first violation), and
//! rules the traffic supports whose kind and event types no rule of the pack covers (as YAML to
//! paste into the rules file).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::observe::observe;
use super::rules;
use crate::check::OfflineSuite;
use crate::record::transcript::{Dir, TranscriptFile};
use crate::schema::Side;

/// One suggestion, rendered for people.
#[derive(Debug, Clone, PartialEq)]
pub enum Suggestion {
    /// An event type with no schema of its own in the pack.
    MissingSchema {
        side: &'static str,
        ty: String,
        samples: usize,
        schema: String,
    },
    /// Samples of a type its schema does not describe.
    SchemaTooNarrow {
        side: &'static str,
        ty: String,
        failing: usize,
        samples: usize,
        first: String,
    },
    /// A rule the traffic supports that the pack lacks.
    Rule {
        id: String,
        summary: String,
        yaml: String,
    },
}

impl Suggestion {
    pub fn render(&self) -> String {
        match self {
            Suggestion::MissingSchema { side, ty, samples, schema } => format!(
                "{side} type `{ty}` has no schema ({samples} sample(s)); inferred:\n{}",
                indent(schema)
            ),
            Suggestion::SchemaTooNarrow { side, ty, failing, samples, first } => format!(
                "{side} schema of `{ty}` does not describe {failing} of {samples} sample(s): {first}"
            ),
            Suggestion::Rule { summary, yaml, .. } => {
                format!("a rule the traffic supports: {summary}\n{}", indent(yaml.trim_end()))
            }
        }
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// What `transcripts` show that `suite` does not describe.
pub fn suggest(transcripts: &[TranscriptFile], suite: &OfflineSuite) -> Vec<Suggestion> {
    let obs = observe(transcripts, Some(&suite.discriminator));
    let mut out = Vec::new();
    for (dir, side, side_name) in [
        (Dir::Received, Side::Server, "server"),
        (Dir::Sent, Side::Client, "client"),
    ] {
        let known: BTreeSet<String> = suite
            .schemas
            .known_types(side)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut by_type: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        let frames = obs
            .recordings
            .iter()
            .flat_map(|r| r.connections.iter())
            .flat_map(|c| c.frames.iter())
            .filter(|f| f.dir == dir && f.is_json);
        for f in frames {
            let ty = f.ty.clone().unwrap_or_else(|| "*".to_owned());
            by_type
                .entry(ty)
                .or_default()
                .push(f.event.as_ref().expect("JSON frames have events"));
        }
        for (ty, samples) in by_type {
            if !known.contains(&ty) && !known.contains("*") {
                let disc = (ty != "*").then_some(suite.discriminator.as_str());
                let id = format!("urn:wschat-check:suggest:{side_name}:{ty}");
                let schema = super::schema::infer(&samples, disc, Some(&ty), &id, &ty);
                out.push(Suggestion::MissingSchema {
                    side: side_name,
                    ty,
                    samples: samples.len(),
                    schema: serde_json::to_string_pretty(&schema).expect("a schema serializes"),
                });
                continue;
            }
            let failures: Vec<String> = samples
                .iter()
                .filter_map(|s| suite.schemas.check(side, s).err().map(|e| e.message))
                .collect();
            if let Some(first) = failures.first() {
                out.push(Suggestion::SchemaTooNarrow {
                    side: side_name,
                    ty,
                    failing: failures.len(),
                    samples: samples.len(),
                    first: first.clone(),
                });
            }
        }
    }
    // Rules: a candidate is covered when a pack rule of its kind names all its event types.
    let pack_rules: Vec<(&'static str, BTreeSet<String>)> = suite
        .rules
        .rules()
        .iter()
        .map(|r| {
            let types = crate::rules::selectors_of(&r.kind)
                .into_iter()
                .filter_map(|s| s.event_type.clone())
                .collect();
            (r.kind.name(), types)
        })
        .collect();
    for c in rules::infer(&obs) {
        let covered = pack_rules
            .iter()
            .any(|(kind, types)| *kind == c.kind && c.core.is_subset(types));
        if !covered {
            out.push(Suggestion::Rule {
                id: c.id,
                summary: c.summary,
                yaml: c.yaml,
            });
        }
    }
    out
}
