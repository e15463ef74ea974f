//! Shared bits of the examples: logging and the `PORT` override.

/// The port from the `PORT` environment variable, or `default`.
///
/// ```
/// assert_eq!(examples::port_or(8081), std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8081));
/// ```
pub fn port_or(default: u16) -> u16 {
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(default)
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
