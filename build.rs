//! Embeds the repository's `schemas/` folder into the binary, so `wschat-check` validates against the
//! protocol schemas from any working directory. Generates `$OUT_DIR/embedded_schemas.rs`:
//! `pub static EMBEDDED_SCHEMAS: &[(&str, &str)]` = (path relative to `schemas/`, file contents).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            let rel = path
                .strip_prefix(root)
                .expect("walked path lies under the root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
}

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("schemas");
    // A directory rerun-if-changed only tracks its direct entries' mtimes; list every file too.
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut f =
        fs::File::create(out_dir.join("embedded_schemas.rs")).expect("create embedded_schemas.rs");
    writeln!(f, "pub static EMBEDDED_SCHEMAS: &[(&str, &str)] = &[").unwrap();
    for (rel, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        if let Some(parent) = path.parent() {
            println!("cargo:rerun-if-changed={}", parent.display());
        }
        writeln!(
            f,
            "    ({rel:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    writeln!(f, "];").unwrap();
}
