//! Command-line interface. Owned by the runner work; placeholder so the crate builds.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
