//! Writing a starter pack from an observation, and holding it to its own evidence.
//!
//! The pack is a suite folder like `examples/*/`: `wschat-suite.yaml`, `schemas/` (an `index.json`
//! and one schema per event type and side), `rules.yaml`, `scenarios/` and a `README.md` saying
//! what was inferred and what to review. Before it is final, the recordings it was learned from
//! are checked against it offline (the same check as `wschat-check check`): a rule that its own
//! evidence breaks is dropped and named in the README, and the scenarios are loaded with the real
//! loader, so a pack that `init` writes always loads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::observe::{observe, Observed};
use super::rules::{self, Candidate};
use super::scenario::{slug, Builder, Generated, Settings};
use super::schema;
use crate::codec::Codec;
use crate::record::transcript::{Dir, TranscriptFile};

/// Why a pack could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{0} exists and is not empty (give --force to overwrite the files init writes)")]
    NotEmpty(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the recordings hold no WebSocket connection to learn from")]
    Nothing,
    #[error("the generated pack does not load (a bug of init, please report it):\n{0}")]
    Invalid(String),
}

/// What `init` wrote and concluded.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub dir: PathBuf,
    pub scenarios: Vec<String>,
    pub server_types: Vec<String>,
    pub client_types: Vec<String>,
    pub rules: Vec<String>,
    /// Rules dropped because a recording breaks them: (id, why).
    pub dropped: Vec<(String, String)>,
    /// Problems the recordings still have against the pack (should be none).
    pub residual: Vec<String>,
    pub discriminator: String,
    pub codec: String,
}

/// Options of [`write_pack`].
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    pub force: bool,
    /// Force the discriminator (a member name or JSON pointer) instead of detecting it.
    pub discriminator: Option<String>,
}

fn write(path: &Path, text: &str) -> Result<(), PackError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| PackError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| PackError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The discriminator as the suite config spells it (`type`, or a pointer when nested).
fn disc_name(ptr: &str) -> String {
    let bare = ptr.trim_start_matches('/');
    if bare.contains('/') || bare.contains('~') {
        ptr.to_owned()
    } else {
        bare.to_owned()
    }
}

fn file_name(ty: &str) -> String {
    let s: String = ty
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

/// Learns a pack from `transcripts` and writes it to `dir`.
pub fn write_pack(
    transcripts: &[TranscriptFile],
    dir: &Path,
    opts: &PackOptions,
) -> Result<Written, PackError> {
    if dir.exists()
        && !opts.force
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        return Err(PackError::NotEmpty(dir.to_owned()));
    }
    let obs = observe(transcripts, opts.discriminator.as_deref());
    if obs.recordings.iter().all(|r| r.connections.is_empty()) {
        return Err(PackError::Nothing);
    }
    let pack_name = slug(
        &dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pack".into()),
    );
    let mut written = Written {
        dir: dir.to_owned(),
        discriminator: obs.discriminator.clone(),
        codec: codec_label(&obs),
        ..Written::default()
    };
    if opts.force {
        for sub in ["scenarios", "schemas"] {
            let _ = std::fs::remove_dir_all(dir.join(sub));
        }
    }

    // Schemas.
    let (index, files, server_types, client_types) = schemas(&obs, &pack_name);
    for (rel, v) in &files {
        write(
            &dir.join("schemas").join(rel),
            &(serde_json::to_string_pretty(v).unwrap() + "\n"),
        )?;
    }
    write(
        &dir.join("schemas/index.json"),
        &(serde_json::to_string_pretty(&index).unwrap() + "\n"),
    )?;
    written.server_types = server_types;
    written.client_types = client_types;

    // Scenarios.
    let concat = rules::find_concat(&obs);
    let settings = Settings {
        quiet_ms: quiet_ms(&obs),
    };
    let scenarios = Builder::new(&obs, &concat, settings.clone()).build();
    for g in &scenarios {
        write(
            &dir.join("scenarios").join(format!("{}.yaml", g.name)),
            &g.yaml(),
        )?;
    }
    written.scenarios = scenarios.iter().map(|g| g.name.clone()).collect();
    let uses_token = scenarios.iter().any(|g| g.uses_token);
    write(
        &dir.join("wschat-suite.yaml"),
        &suite_config(&obs, &settings, uses_token, timeout_ms(&obs)),
    )?;

    // Rules, held to their evidence.
    let mut candidates = rules::infer(&obs);
    for _round in 0..4 {
        write(&dir.join("rules.yaml"), &rules_file(&candidates))?;
        let suite = crate::check::load_offline_suite(Some(dir)).map_err(PackError::Invalid)?;
        let mut broken: BTreeMap<String, String> = BTreeMap::new();
        let mut residual = Vec::new();
        for t in transcripts {
            for f in crate::check::check_transcript(t, &suite).failures {
                match &f.rule {
                    Some(id) if candidates.iter().any(|c| &c.id == id) => {
                        broken
                            .entry(id.clone())
                            .or_insert_with(|| format!("{}: {}", t.path.display(), f.message));
                    }
                    _ => residual.push(format!("{}: {}", t.path.display(), f.message)),
                }
            }
        }
        if broken.is_empty() {
            written.residual = residual;
            break;
        }
        candidates.retain(|c| !broken.contains_key(&c.id));
        written.dropped.extend(broken);
    }
    written.rules = candidates.iter().map(|c| c.id.clone()).collect();

    // The scenarios must load (with a token set when they need one).
    let mut vars = BTreeMap::new();
    vars.insert("token".to_owned(), "placeholder".to_owned());
    if let Err(e) =
        crate::scenario::load_suite(&[dir.to_owned()], &crate::scenario::LoadOptions { vars })
    {
        let problems: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
        return Err(PackError::Invalid(if problems.is_empty() {
            e.to_string()
        } else {
            problems.join("\n")
        }));
    }

    write(
        &dir.join("README.md"),
        &readme(&obs, &written, &scenarios, &candidates, transcripts),
    )?;
    Ok(written)
}

fn codec_label(obs: &Observed) -> String {
    if obs.codecs.server == obs.codecs.client {
        obs.codecs.server.name().to_owned()
    } else {
        format!(
            "server {}, client {}",
            obs.codecs.server.name(),
            obs.codecs.client.name()
        )
    }
}

/// The silence that ends a stream: three times the longest gap between two replies of one
/// exchange, 300 ms at least, 2 s at most.
fn quiet_ms(obs: &Observed) -> u64 {
    let mut max_gap: f64 = 0.0;
    for (&(r, c), xs) in &obs.exchanges {
        let conn = obs.conn(r, c);
        for x in xs {
            for w in x.replies.windows(2) {
                max_gap = max_gap.max(conn.frames[w[1]].t_ms - conn.frames[w[0]].t_ms);
            }
        }
    }
    ((max_gap * 3.0) as u64).clamp(300, 2000)
}

/// The default wait: five times the longest exchange (send → last reply), 5 s at least, 60 s at
/// most.
fn timeout_ms(obs: &Observed) -> u64 {
    let mut longest: f64 = 0.0;
    for (&(r, c), xs) in &obs.exchanges {
        let conn = obs.conn(r, c);
        for x in xs {
            let start = x.sent.map(|i| conn.frames[i].t_ms).unwrap_or(0.0);
            if let Some(&last) = x.replies.last() {
                longest = longest.max(conn.frames[last].t_ms - start);
            }
        }
    }
    ((longest * 5.0) as u64).clamp(5000, 60_000)
}

/// index.json and the schema files: (index, rel path → schema, server types, client types).
fn schemas(
    obs: &Observed,
    pack: &str,
) -> (Value, BTreeMap<String, Value>, Vec<String>, Vec<String>) {
    let mut files = BTreeMap::new();
    let mut index = Map::new();
    let mut types_of = |dir: Dir, side: &str, disc: Option<&str>| -> Vec<String> {
        let mut by_type: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        let frames = obs
            .recordings
            .iter()
            .flat_map(|r| r.connections.iter())
            .flat_map(|c| c.frames.iter())
            .filter(|f| f.dir == dir && f.is_json);
        for f in frames {
            let key = match (disc, &f.ty) {
                (Some(_), Some(t)) => t.clone(),
                _ => "*".to_owned(),
            };
            by_type
                .entry(key)
                .or_default()
                .push(f.event.as_ref().expect("a JSON frame has its event"));
        }
        let mut map = Map::new();
        for (ty, samples) in &by_type {
            let rel = format!(
                "{side}/{}.schema.json",
                if ty == "*" {
                    "_any".to_owned()
                } else {
                    file_name(ty)
                }
            );
            let id = format!("urn:wschat-check:init:{pack}:{side}:{}", file_name(ty));
            let title = format!(
                "{ty} ({side} {})",
                if side == "server" { "event" } else { "message" }
            );
            let s = schema::infer(samples, disc.filter(|_| ty != "*"), Some(ty), &id, &title);
            files.insert(rel.clone(), s);
            map.insert(ty.clone(), json!(rel));
        }
        if !map.is_empty() {
            index.insert(side.to_owned(), Value::Object(map));
        }
        by_type.into_keys().collect()
    };
    let server = types_of(Dir::Received, "server", Some(&obs.discriminator));
    let client = types_of(Dir::Sent, "client", obs.client_discriminator.as_deref());
    if obs.client_discriminator.is_none() {
        index.insert(
            "discriminator".into(),
            json!({"server": disc_name(&obs.discriminator), "client": null}),
        );
    }
    (Value::Object(index), files, server, client)
}

fn suite_config(obs: &Observed, s: &Settings, uses_token: bool, timeout_ms: u64) -> String {
    let mut out = String::new();
    out.push_str("# yaml-language-server: $schema=../schemas/suite.schema.json\n");
    out.push_str("# Generated by `wschat-check init` from recorded traffic (README.md says what was inferred).\n");
    out.push_str("# Run it against the server it was learned from:\n");
    out.push_str(&format!(
        "#   {}wschat-check run {} --target ws://HOST:PORT\n",
        if uses_token {
            "WSCHAT_TOKEN=<a valid token> "
        } else {
            ""
        },
        "THIS_FOLDER/"
    ));
    out.push_str("target_required: true\nschemas: schemas\nrules: rules.yaml\n");
    out.push_str(&format!(
        "discriminator: {}\n",
        super::emit::quote(&disc_name(&obs.discriminator))
    ));
    if obs.codecs.server != Codec::Json || obs.codecs.client != Codec::Json {
        if obs.codecs.server == obs.codecs.client {
            out.push_str(&format!("codec: {}\n", obs.codecs.server.name()));
        } else {
            out.push_str(&format!(
                "codec: {{ server: {}, client: {} }}\n",
                obs.codecs.server.name(),
                obs.codecs.client.name()
            ));
        }
    }
    out.push_str(
        "# The scenarios share one credential and the server may limit connections per user:\n",
    );
    out.push_str("# one scenario at a time. Raise it when the server allows more.\njobs: 1\n");
    out.push_str(&format!(
        "timeouts:\n  connect: 5s\n  expect: {timeout_ms}ms   # five times the longest recorded exchange, 5 s at least\n  http: 10s\n"
    ));
    if uses_token {
        out.push_str(
            "auth:\n  token: ${env:WSCHAT_TOKEN:-}   # the credential the recording redacted\n",
        );
    }
    out.push_str(&format!(
        "vars:\n  # The silence that ends a reply with no end marker, and the wait for stragglers after one.\n  quiet: {}ms\n",
        s.quiet_ms
    ));
    out
}

fn rules_file(candidates: &[Candidate]) -> String {
    let mut out = String::from("# yaml-language-server: $schema=../schemas/rules.schema.json\n");
    out.push_str("# Generated by `wschat-check init`: each rule says what it saw. Rules the recordings broke\n");
    out.push_str("# were left out (README.md lists them).\n");
    if candidates.is_empty() {
        out.push_str("rules: []\n");
        return out;
    }
    out.push_str("rules:\n");
    for c in candidates {
        out.push_str(&c.yaml);
        out.push('\n');
    }
    out
}

fn readme(
    obs: &Observed,
    w: &Written,
    scenarios: &[Generated],
    rules: &[Candidate],
    transcripts: &[TranscriptFile],
) -> String {
    let mut out = String::new();
    let name = w
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.push_str(&format!(
        "# {name}: a pack learned from recorded traffic\n\n"
    ));
    out.push_str("Written by `wschat-check init`. It passes against the server it was learned from; what it\n");
    out.push_str("asserts is what the recordings showed, so review it before you rely on it.\n\n");
    out.push_str("## Learned from\n\n");
    for t in transcripts {
        let conns = t.connection_order().len();
        let frames = t
            .records
            .iter()
            .filter(|r| r.kind != crate::record::transcript::Kind::Http)
            .count();
        out.push_str(&format!(
            "- `{}`: {conns} connection(s), {frames} frame(s)\n",
            t.path.display()
        ));
    }
    let received = obs.received().count();
    let sent = obs.sent().count();
    out.push_str(&format!(
        "\n{received} server event(s) and {sent} client message(s) on {} accepted connection(s).\n\n",
        obs.accepted_connections()
    ));
    out.push_str("## What was inferred\n\n");
    out.push_str(&format!(
        "- **Discriminator** `{}` (the member present in nearly every frame with few distinct values); client messages: {}.\n",
        w.discriminator,
        obs.client_discriminator.as_deref().map(|d| format!("`{d}`")).unwrap_or_else(|| "none (one `*` schema)".into())
    ));
    out.push_str(&format!("- **Codec** {}.\n", w.codec));
    if !obs.heartbeats.is_empty() {
        let hb: Vec<String> = obs.heartbeats.iter().map(|h| format!("`{h}`")).collect();
        out.push_str(&format!(
            "- **Heartbeats** {}: not part of any exchange; scenarios skip over them (they are not `ignore`d, so the `heartbeat` scenario can wait for one).\n",
            hb.join(", ")
        ));
    }
    out.push_str("\n### Schemas (`schemas/`)\n\n");
    out.push_str("One per event type and side: required = present in every sample; types merged; `enum` for a\n");
    out.push_str("closed set of short words seen at least 3 times; `additionalProperties: false`; samples kept\n");
    out.push_str("as `examples`.\n\n| side | type | samples |\n|---|---|---|\n");
    let mut counts: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for f in obs.received().filter(|f| f.is_json) {
        *counts
            .entry(("server", f.ty.clone().unwrap_or_else(|| "*".into())))
            .or_default() += 1;
    }
    for f in obs.sent().filter(|f| f.is_json) {
        let t = if obs.client_discriminator.is_some() {
            f.ty.clone()
        } else {
            None
        };
        *counts
            .entry(("client", t.unwrap_or_else(|| "*".into())))
            .or_default() += 1;
    }
    for ((side, ty), n) in &counts {
        out.push_str(&format!("| {side} | `{ty}` | {n} |\n"));
    }
    out.push_str("\n### Rules (`rules.yaml`)\n\n");
    if rules.is_empty() {
        out.push_str("None the traffic supports.\n");
    }
    for c in rules {
        out.push_str(&format!("- `{}` ({}): {}\n", c.id, c.kind, c.summary));
    }
    if !w.dropped.is_empty() {
        out.push_str("\nLeft out because a recording breaks them:\n\n");
        for (id, why) in &w.dropped {
            out.push_str(&format!("- `{id}`: {why}\n"));
        }
    }
    out.push_str("\n### Scenarios (`scenarios/`)\n\n");
    out.push_str("One per recorded exchange: it replays what its connection did before (each earlier message\n");
    out.push_str("awaited as recorded, ids the server handed out captured and sent back), sends the message,\n");
    out.push_str("and asserts the reply's stable parts: types, counts (`1`, or `>= 2` for a stream), order,\n");
    out.push_str(
        "categorical members, concatenations, the close; then that nothing else arrives within\n",
    );
    out.push_str("`${quiet}`. Never the model's text.\n\n");
    for g in scenarios {
        out.push_str(&format!("- `{}`: {}\n", g.name, g.description));
    }
    out.push_str("\n## Review\n\n");
    out.push_str("- Enums and required members come from few samples: a server may send values or members the\n");
    out.push_str("  recordings did not show. Widen the schema where the protocol allows more.\n");
    out.push_str("- A credential the recording redacted is `${token}` (`WSCHAT_TOKEN`). An exchange recorded\n");
    out.push_str("  with a deliberately wrong credential now uses the good one: edit it back.\n");
    out.push_str("- Each scenario replays one connection; what ties connections together (a session resumed\n");
    out.push_str("  after a reconnect, a broadcast to another client) is not inferred.\n");
    out.push_str("- Timing is not asserted; add `timing` steps for latency budgets.\n");
    if !w.residual.is_empty() {
        out.push_str("\nThe recordings still break the pack here (please report it):\n\n");
        for r in &w.residual {
            out.push_str(&format!("- {r}\n"));
        }
    }
    out
}
