fn main() -> std::process::ExitCode {
    wschat_check::cli::main()
}
