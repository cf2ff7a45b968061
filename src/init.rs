//! `wschat-check init`: a starter pack learned from recorded traffic ([`crate::infer`]).
//!
//! `init PACK_DIR --from FILE.jsonl...` learns from transcripts (`record`, `record --interactive`);
//! `init PACK_DIR --target URL --send MSG...` records a session first (as `record --interactive`
//! would, over a pipe) into `PACK_DIR/recordings/session.jsonl`, then learns from it.

use std::path::PathBuf;

use clap::Args;

use crate::check::report_error;
use crate::cli::{EXIT_ENV, EXIT_OK, EXIT_USAGE};
use crate::infer::{write_pack, PackError, PackOptions};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The folder of the pack to write (created; must be empty unless --force).
    #[arg(value_name = "PACK_DIR")]
    pub dir: PathBuf,
    /// Transcripts to learn from (files or folders of `.jsonl`).
    #[arg(long, value_name = "TRANSCRIPT", num_args = 1.., conflicts_with = "target")]
    pub from: Vec<PathBuf>,
    /// Record a session against this server first (with --send).
    #[arg(long, value_name = "URL", requires = "send")]
    pub target: Option<String>,
    /// A message to send in the recorded session, one per exchange (repeatable; the same lines
    /// `record --interactive` reads: JSON, plain text or a `:command`).
    #[arg(long, value_name = "MSG")]
    pub send: Vec<String>,
    /// A header of the recorded session's upgrade (`Name: value`, repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Silence after which the recorded session sends the next message.
    #[arg(long, value_name = "DURATION", value_parser = crate::scenario::load::parse_duration)]
    pub settle: Option<std::time::Duration>,
    /// The discriminator (member name or JSON pointer) instead of the detected one.
    #[arg(long, value_name = "PTR")]
    pub discriminator: Option<String>,
    /// Overwrite the files init writes in a folder that is not empty.
    #[arg(long)]
    pub force: bool,
}

/// Runs `init`; the value is the exit code (errors are reported here).
pub fn cmd_init(a: InitArgs) -> Result<u8, u8> {
    let files = if let Some(target) = &a.target {
        vec![record_session(&a, target)?]
    } else {
        if a.from.is_empty() {
            report_error("init needs --from TRANSCRIPT... or --target URL --send MSG...");
            return Err(EXIT_USAGE);
        }
        crate::check::collect_files(&a.from).map_err(|e| {
            report_error(e);
            EXIT_USAGE
        })?
    };
    let mut transcripts = Vec::new();
    for f in &files {
        transcripts.push(crate::record::read(f).map_err(|e| {
            report_error(e);
            EXIT_USAGE
        })?);
    }
    let opts = PackOptions {
        force: a.force,
        discriminator: a.discriminator.clone(),
    };
    let w = write_pack(&transcripts, &a.dir, &opts).map_err(|e| {
        report_error(&e);
        match e {
            PackError::NotEmpty(_) | PackError::Nothing => EXIT_USAGE,
            PackError::Write { .. } | PackError::Invalid(_) => EXIT_ENV,
        }
    })?;
    println!(
        "wrote {}: {} scenario(s), {} server and {} client schema(s), {} rule(s)",
        w.dir.display(),
        w.scenarios.len(),
        w.server_types.len(),
        w.client_types.len(),
        w.rules.len()
    );
    println!(
        "learned from {} recording(s): discriminator {}, codec {}",
        transcripts.len(),
        w.discriminator,
        w.codec
    );
    for (id, why) in &w.dropped {
        println!("left out rule {id}: the recordings break it ({why})");
    }
    for r in &w.residual {
        println!("warning: {r}");
    }
    println!(
        "next: review {}/README.md, then run `wschat-check run {} --target URL`",
        w.dir.display(),
        w.dir.display()
    );
    Ok(EXIT_OK)
}

/// Records the `--send` session into `PACK_DIR/recordings/session.jsonl`.
fn record_session(a: &InitArgs, target: &str) -> Result<PathBuf, u8> {
    if a.dir.exists()
        && !a.force
        && std::fs::read_dir(&a.dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        report_error(PackError::NotEmpty(a.dir.clone()));
        return Err(EXIT_USAGE);
    }
    let out = a.dir.join("recordings").join("session.jsonl");
    let mut script = a.send.join("\n");
    script.push('\n');
    crate::record::interactive::record_script(crate::record::interactive::ScriptedSession {
        target: target.to_owned(),
        headers: a.headers.clone(),
        out: out.clone(),
        settle: a.settle,
        script,
    })?;
    Ok(out)
}
