//! The `tracing` spans of handled frames and server-API requests, carrying the
//! wire trace context (see `docs/observability.md`).
//!
//! Both are `DEBUG` spans with the target [`TRACE_TARGET`], roots of their own
//! trace (the wire's), so that a subscriber at the usual `info` level — `main!`'s
//! default — never builds them: `tracing`'s disabled fast path is one atomic load.

use std::fmt;

use tracing::Span;
use uuid::Uuid;

/// The target of the per-frame (`frame`) and server-API (`api`) spans: enable
/// it at `debug` to get them, e.g. `RUST_LOG=info,framework::trace=debug`.
///
/// ```
/// assert_eq!(framework::dispatch::TRACE_TARGET, "framework::trace");
/// ```
pub const TRACE_TARGET: &str = "framework::trace";

/// A fresh trace id for a frame or request that brought none: 16 random bytes
/// as a version 4 UUID (W3C trace ids are random bytes). They come from the
/// thread's fast generator (`fastrand`'s wyrand, seeded per thread), not the
/// cryptographic one: trace and span ids name spans and guard nothing, and two
/// ChaCha draws per frame showed in the rpc profile.
pub(crate) fn new_trace_id() -> Uuid {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid()
}

/// A fresh span id: 8 random bytes, never zero (zero means "none" on the wire
/// and in W3C `traceparent`); see [`new_trace_id`].
pub(crate) fn new_span_id() -> u64 {
    fastrand::u64(1..)
}

/// A 64-bit span id as 16 lowercase hex digits (as W3C `traceparent` and
/// OpenTelemetry write them).
#[derive(Clone, Copy)]
pub(crate) struct Hex64(pub(crate) u64);

impl fmt::Display for Hex64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Hex64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The span one frame is handled in: the handler, its extractors and
/// authorizers, and the deliveries it causes run inside it. `span_id` is the
/// server's span for the frame (the replies' `span_id`); under the `otel`
/// feature it may be replaced by the exported span's id, so that both agree.
#[inline]
pub(crate) fn frame_span(
    opcode: u16,
    session: Uuid,
    trace_id: Uuid,
    span_id: &mut u64,
    parent_span_id: u64,
) -> Span {
    let span = tracing::debug_span!(
        target: TRACE_TARGET,
        parent: None,
        "frame",
        opcode,
        session = %session,
        trace_id = %trace_id.simple(),
        span_id = %Hex64(*span_id),
        parent_span_id = tracing::field::Empty,
    );
    if !span.is_disabled() {
        if parent_span_id != 0 {
            span.record(
                "parent_span_id",
                tracing::field::display(Hex64(parent_span_id)),
            );
        }
        link(&span, trace_id, span_id, parent_span_id, true);
    }
    span
}

/// The span of one server-API request (`/api/*`), continuing the trace of its
/// `traceparent` header when it had a valid one.
pub(crate) fn api_span(path: &'static str, trace_id: Uuid, parent: Option<(u64, bool)>) -> Span {
    let span = tracing::debug_span!(
        target: TRACE_TARGET,
        parent: None,
        "api",
        path,
        trace_id = %trace_id.simple(),
        span_id = tracing::field::Empty,
        parent_span_id = tracing::field::Empty,
    );
    if !span.is_disabled() {
        let mut span_id = new_span_id();
        let (parent_span_id, sampled) = parent.unwrap_or((0, true));
        if parent_span_id != 0 {
            span.record(
                "parent_span_id",
                tracing::field::display(Hex64(parent_span_id)),
            );
        }
        link(&span, trace_id, &mut span_id, parent_span_id, sampled);
        span.record("span_id", tracing::field::display(Hex64(span_id)));
    }
    span
}

/// Hands the wire ids to OpenTelemetry (feature `otel`): the span becomes part
/// of trace `trace_id`, child of `parent_span_id` when non-zero.
#[inline]
#[allow(unused_variables)]
fn link(span: &Span, trace_id: Uuid, span_id: &mut u64, parent_span_id: u64, sampled: bool) {
    #[cfg(feature = "otel")]
    crate::otel::attach(span, trace_id, span_id, parent_span_id, sampled);
}
