//! Helpers shared by the integration tests that run the real `wschat-check` binary.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;

use assert_cmd::Command;

/// The repository root (the root crate's manifest folder).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary, run from the repository root with a clean environment: no target, token, JWT
/// secret, live flag or colour inherited from the caller, so a developer's shell cannot change
/// what a test sees.
pub fn cmd() -> Command {
    let mut c = Command::cargo_bin("wschat-check").expect("the binary is built");
    c.current_dir(root())
        .env_remove("WSCHAT_TARGET")
        .env_remove("WSCHAT_TOKEN")
        .env_remove("WSCHAT_LIVE")
        .env_remove("WSCHAT_JWT_SECRET")
        .env("NO_COLOR", "1");
    c
}

/// Captured output as text, for messages and assertions.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
