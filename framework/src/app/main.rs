//! What `framework::main!` runs: the command line (`--config`, `--export-schema`,
//! `--help`), the configuration layers, logging, the runtime, and the app until
//! SIGINT/SIGTERM.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{App, ListenAddr};
use crate::config::Settings;

/// The command line of a `main!` binary.
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    config: Option<PathBuf>,
    export_schema: Option<String>,
    help: bool,
}

const USAGE: &str = "\
usage: <binary> [--config <file.toml>] [--export-schema <file.fbs | ->] [--help]

  --config <file>         layer a TOML configuration file over the code's settings
                          (FRAMEWORK_CONFIG names one too; FRAMEWORK_* variables
                          override both; every key: framework::config::Settings)
  --export-schema <file>  write the .fbs schema of every #[derive(Message)] type
                          linked into this binary (`-`: standard output) and exit
  --help                  this text";

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    let mut out = Args::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next().map(|v| v.to_string_lossy().into_owned()))
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match key.as_str() {
            "--config" => out.config = Some(PathBuf::from(value("--config")?)),
            "--export-schema" => out.export_schema = Some(value("--export-schema")?),
            "--help" | "-h" => out.help = true,
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    Ok(out)
}

/// An address `main!` validated at compile time (`websocket = "127.0.0.1:8081"`).
#[doc(hidden)]
pub fn listen_addr(text: &str) -> ListenAddr {
    match text.parse::<crate::config::ListenSpec>() {
        Ok(spec) => ListenAddr(spec.0),
        // `main!` checks string addresses when it expands.
        Err(e) => unreachable!("main! checked this address: {e}"),
    }
}

/// Runs `build()`'s app as `main!` does: reads the command line, layers the
/// configuration file and the environment over the code's settings, initialises
/// logging (`RUST_LOG`, default `info`, as `log_format` says; with the `otel`
/// feature, OpenTelemetry export when an OTLP endpoint is set), and serves on a
/// multi-threaded runtime until SIGINT/SIGTERM, then shuts down gracefully.
#[doc(hidden)]
pub fn run_main(build: impl FnOnce() -> App) -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if let Some(target) = &args.export_schema {
        return crate::registry::write_schema(target);
    }
    let file = args.config.or_else(Settings::file_from_env);
    let app = match build().configure(file.as_deref()) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // After the configuration, which chooses the format; dropped last, after
    // the runtime (an exporter flushes its last spans then).
    let _logging = match super::logging::init(app.config.log_format) {
        Ok(logging) => logging,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(OsString::from))
    }

    #[test]
    fn the_command_line() {
        assert_eq!(args(&[]).unwrap(), Args::default());
        let a = args(&["--config", "app.toml", "--export-schema=-"]).unwrap();
        assert_eq!(a.config.as_deref(), Some(std::path::Path::new("app.toml")));
        assert_eq!(a.export_schema.as_deref(), Some("-"));
        assert!(args(&["--help"]).unwrap().help);
        assert!(args(&["--config"]).is_err());
        assert!(args(&["--port", "1"]).is_err());
    }
}
