//! `fw`: a command-line client of the framework's WebSocket protocol (see
//! `fw --help` and the crate's README).

fn main() -> std::process::ExitCode {
    framework_cli::cli::main()
}
