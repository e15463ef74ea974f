//! `main!`'s logging: events to stderr as text or JSON lines (`log_format`),
//! filtered by `RUST_LOG` (default `info`); with the `otel` feature and an OTLP
//! endpoint in the environment, spans exported through OpenTelemetry too.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;

/// `RUST_LOG`, or `info`.
pub(crate) fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The stderr layer of `format`. Text has colours only on a terminal (not in a
/// journal or a collector's file) and without `NO_COLOR`.
pub(crate) fn stderr_layer(format: LogFormat) -> Box<dyn Layer<Registry> + Send + Sync> {
    use std::io::IsTerminal;
    let colours = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colours);
    match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    }
}

/// What logging keeps until the process ends: with `otel`, the exporter, whose
/// last spans are flushed when this drops (after the runtime has stopped).
pub(super) struct Logging {
    #[cfg(feature = "otel")]
    _otel: Option<crate::otel::OtelGuard>,
}

/// Installs the global subscriber. Fails only when an OpenTelemetry export is
/// configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and cannot be built.
pub(super) fn init(format: LogFormat) -> Result<Logging, String> {
    #[cfg(feature = "otel")]
    if crate::otel::configured_by_env() {
        let guard =
            crate::otel::init_with(None, stderr_layer(format)).map_err(|e| e.to_string())?;
        return Ok(Logging { _otel: Some(guard) });
    }
    // A subscriber set already (a test, the application itself) stays.
    let _ = tracing_subscriber::registry()
        .with(stderr_layer(format).with_filter(env_filter()))
        .try_init();
    Ok(Logging {
        #[cfg(feature = "otel")]
        _otel: None,
    })
}
