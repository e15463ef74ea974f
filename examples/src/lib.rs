//! Shared bits of the examples: logging. Every example takes its ports (and any
//! other setting) the same way: from code, then the file named by
//! `FRAMEWORK_CONFIG`, then `FRAMEWORK_*` variables, e.g.
//! `FRAMEWORK_WEBSOCKET=9000` (see `framework::config::Settings`).

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
