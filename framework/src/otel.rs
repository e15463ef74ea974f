//! OpenTelemetry export of the framework's trace spans (cargo feature `otel`,
//! off by default). See `docs/observability.md`.
//!
//! Every handled frame runs in a `frame` span and every server-API request in an
//! `api` span ([`TRACE_TARGET`], level `DEBUG`).
//! With this module's [`layer`] installed, they are exported as OpenTelemetry
//! spans that **continue the wire trace**: the frame's `trace_id` is the span's
//! trace id, the client's `span_id` its (remote) parent, and the server's span id
//! in replies is the exported span's id. A `traceparent` header on `/api/*` is
//! continued the same way.
//!
//! The quickest way in, for an application with its own `main`:
//!
//! ```no_run
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Logs to stderr (RUST_LOG, default `info`) and spans to an OTLP/HTTP
//!     // collector; what is still batched is flushed when the guard drops.
//!     let _otel = framework::otel::init(Some("http://localhost:4318"))?;
//!     framework::App::new().run_service(8080).run().await?;
//!     Ok(())
//! }
//! ```
//!
//! To compose your own subscriber, build a provider with [`provider_builder`]
//! (it carries [`WireIds`]) and add [`layer`] with a filter that lets
//! `framework::trace=debug` through:
//!
//! ```
//! use framework::otel;
//! use tracing_subscriber::prelude::*;
//!
//! // Add your exporter: `.with_batch_exporter(exporter)`.
//! let provider = otel::provider_builder().build();
//! let filter = tracing_subscriber::EnvFilter::new("info,framework::trace=debug");
//! let subscriber = tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer().with_filter(tracing_subscriber::EnvFilter::new("info")))
//!     .with(otel::layer(&provider).with_filter(filter));
//! let _guard = tracing::subscriber::set_default(subscriber);
//! ```

use std::cell::Cell;

pub use opentelemetry;
pub use opentelemetry_otlp;
pub use opentelemetry_sdk;
pub use tracing_opentelemetry;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SdkTracerProvider, Tracer, TracerProviderBuilder,
};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer as _;
use uuid::Uuid;

use crate::dispatch::trace::Hex64;
use crate::dispatch::TRACE_TARGET;

thread_local! {
    /// The ids the span being started right now must get (see [`WireIds`]).
    static NEXT: Cell<(Option<TraceId>, Option<SpanId>)> = const { Cell::new((None, None)) };
}

/// An [`IdGenerator`] that gives the framework's spans their wire ids: a frame's
/// span gets the frame's `trace_id` (even when the client sent no span to be the
/// parent) and the span id the replies carry. Every other span gets random ids,
/// as with [`RandomIdGenerator`].
///
/// [`provider_builder`] and [`init`] install it. A provider built without it
/// still continues the client's trace when the frame carried a `span_id` (the
/// remote parent decides the trace), and replies then carry the exported span's
/// id; but a frame without one starts an unrelated OpenTelemetry trace (its wire
/// trace id stays in the span's `trace_id` attribute).
///
/// ```
/// use framework::otel::{opentelemetry_sdk::trace::SdkTracerProvider, WireIds};
/// let provider = SdkTracerProvider::builder()
///     .with_id_generator(WireIds::default())
///     .build();
/// # drop(provider);
/// ```
#[derive(Debug, Default, Clone)]
pub struct WireIds {
    random: RandomIdGenerator,
}

impl IdGenerator for WireIds {
    fn new_trace_id(&self) -> TraceId {
        let wire = NEXT.with(|next| {
            let (trace, span) = next.get();
            next.set((None, span));
            trace
        });
        wire.unwrap_or_else(|| self.random.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        let wire = NEXT.with(|next| {
            let (trace, span) = next.get();
            next.set((trace, None));
            span
        });
        wire.unwrap_or_else(|| self.random.new_span_id())
    }
}

/// A tracer-provider builder with [`WireIds`]: add an exporter (or processor),
/// sampler and resource, then `build()`.
///
/// ```
/// let provider = framework::otel::provider_builder().build();
/// # drop(provider);
/// ```
pub fn provider_builder() -> TracerProviderBuilder {
    SdkTracerProvider::builder().with_id_generator(WireIds::default())
}

/// The `tracing` layer that exports spans through `provider` (with a tracer
/// named `framework`). Give it a filter that lets
/// [`TRACE_TARGET`] at `debug` through (or none).
pub fn layer<S>(provider: &SdkTracerProvider) -> OpenTelemetryLayer<S, Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("framework"))
}

/// Why [`init`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The OTLP exporter could not be built (e.g. an invalid endpoint).
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global `tracing` subscriber was set already.
    #[error("cannot install the tracing subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the exporting provider alive; dropping it flushes the spans still
/// batched and shuts the provider down.
#[derive(Debug)]
#[must_use = "dropping the guard stops the export"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl OtelGuard {
    /// The tracer provider spans are exported through.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global `tracing` subscriber: logs to stderr filtered by
/// `RUST_LOG` (default `info`), as `main!` does, plus OTLP export over
/// HTTP/protobuf of the framework's spans (and of everything `RUST_LOG` lets
/// through) with [`WireIds`], batched on a background thread.
///
/// `endpoint` is the collector's base URL (`http://localhost:4318`, to which
/// `/v1/traces` is added) or the full traces URL; `None` reads the standard
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (default `http://localhost:4318/v1/traces`). The service name comes from
/// `OTEL_SERVICE_NAME`. Plain `http` only; for TLS or gRPC build your own
/// exporter and use [`provider_builder`] and [`layer`].
///
/// A `main!` binary needs none of this: built with the `otel` feature, it does
/// the same by itself when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Elsewhere call it before
/// anything else installs a subscriber: that is [`InitError::Subscriber`].
pub fn init(endpoint: Option<&str>) -> Result<OtelGuard, InitError> {
    let logs = crate::app::logging::stderr_layer(crate::config::LogFormat::Text);
    init_with(endpoint, logs)
}

/// [`init`] with `logs` as the stderr layer (`main!`'s `log_format`).
pub(crate) fn init_with(
    endpoint: Option<&str>,
    logs: Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>,
) -> Result<OtelGuard, InitError> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = endpoint {
        exporter = exporter.with_endpoint(traces_url(endpoint));
    }
    let provider = provider_builder()
        .with_batch_exporter(exporter.build()?)
        .build();
    let filter = crate::app::logging::env_filter;
    let spans = format!("{TRACE_TARGET}=debug")
        .parse()
        .expect("a valid directive");
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(filter()))
        .with(layer(&provider).with_filter(filter().add_directive(spans)))
        .try_init();
    if let Err(e) = installed {
        let _ = provider.shutdown();
        return Err(e.into());
    }
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(OtelGuard { provider })
}

/// Whether the environment names an OTLP endpoint (and `OTEL_SDK_DISABLED` is
/// not `true`): then `main!` exports.
pub(crate) fn configured_by_env() -> bool {
    let set = |name| std::env::var(name).is_ok_and(|v: String| !v.trim().is_empty());
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// `endpoint` with `/v1/traces` added when it names no path.
fn traces_url(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    if rest.trim_end_matches('/').contains('/') {
        endpoint.to_string()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    }
}

/// Makes `span` (already built, not yet started) the OpenTelemetry span of
/// trace `trace_id` with id `span_id`, child of the remote span
/// `parent_span_id` when non-zero. Starts it now, so that the ids are settled:
/// where the provider does not use [`WireIds`], `span_id` becomes the exported
/// span's id. A no-op without an OpenTelemetry layer.
pub(crate) fn attach(
    span: &tracing::Span,
    trace_id: Uuid,
    span_id: &mut u64,
    parent_span_id: u64,
    sampled: bool,
) {
    let trace = TraceId::from_bytes(trace_id.into_bytes());
    if parent_span_id != 0 {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let parent = SpanContext::new(
            trace,
            SpanId::from_bytes(parent_span_id.to_be_bytes()),
            flags,
            true,
            TraceState::default(),
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(parent);
        if span.set_parent(cx).is_err() {
            // No OpenTelemetry layer sees this span.
            return;
        }
    }
    NEXT.with(|next| next.set((Some(trace), Some(SpanId::from_bytes(span_id.to_be_bytes())))));
    let cx = span.context();
    NEXT.with(|next| next.set((None, None)));
    let started = cx.span().span_context().span_id();
    if started != SpanId::INVALID {
        let id = u64::from_be_bytes(started.to_bytes());
        if id != *span_id {
            *span_id = id;
            span.record("span_id", tracing::field::display(Hex64(id)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn a_base_url_gets_the_traces_path() {
        assert_eq!(
            traces_url("http://localhost:4318"),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://localhost:4318/"),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector/custom/path"),
            "http://collector/custom/path"
        );
    }
}
