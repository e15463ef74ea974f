//! Traces and the observability series, over real sockets: every handled frame
//! runs in a `frame` span carrying the wire `trace_id` / `span_id` /
//! `parent_span_id` (handlers' own events nest in it), the trace continues from
//! a client's frame to the deliveries it causes, the server API continues a W3C
//! `traceparent`, and `/metrics` has the per-opcode handler latency and the
//! queue-depth series. With `--features otel`, the spans are exported through
//! OpenTelemetry with the wire ids.
//!
//! Run: `cargo test -p framework-tests --test traces` (add `--features otel` for
//! the OpenTelemetry tests).
//!
//! Each test installs its capturing subscriber for its own thread
//! (`set_default`) and runs the server on the same current-thread runtime, so it
//! sees exactly its own server's spans.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use framework::client::Client;
use framework::dispatch::Request as Ctx;
use framework::protocol::{Frame, FrameFields, Opcode};
use framework::{App, AppHandle, Config};
use framework_tests::http::{self, metric, Request};
use framework_tests::{any_port, eventually, eventually_async, RawWs, DEADLINE};
use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;
use uuid::Uuid;

// --- a subscriber layer that keeps what it saw ------------------------------------

/// A span's or event's fields, as text (`Display` fields as displayed).
#[derive(Default, Clone, Debug)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// A closed span.
#[derive(Clone, Debug)]
struct SpanSeen {
    name: &'static str,
    target: String,
    fields: Fields,
}

/// An event, with the fields of the framework span it happened in, if any.
#[derive(Clone, Debug)]
struct EventSeen {
    fields: Fields,
    framework_span: Option<(&'static str, Fields)>,
}

#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<SpanSeen>>>,
    events: Arc<Mutex<Vec<EventSeen>>>,
}

impl Capture {
    /// Installs this capture for the current thread (the test's runtime).
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }

    fn spans(&self, name: &str) -> Vec<SpanSeen> {
        self.spans
            .lock()
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    /// The closed `frame` span of trace `trace_id`, once there is one.
    async fn frame_span(&self, trace_id: Uuid) -> SpanSeen {
        self.span_of("frame", trace_id).await
    }

    async fn span_of(&self, name: &str, trace_id: Uuid) -> SpanSeen {
        let hex = trace_id.simple().to_string();
        let mut found = None;
        eventually(&format!("a `{name}` span of trace {hex}"), DEADLINE, || {
            found = self
                .spans(name)
                .into_iter()
                .find(|s| s.fields.get("trace_id") == Some(hex.as_str()));
            found.is_some()
        })
        .await;
        found.expect("found")
    }

    fn events_with(&self, marker: &str) -> Vec<EventSeen> {
        self.events
            .lock()
            .iter()
            .filter(|e| e.fields.get("marker") == Some(marker))
            .cloned()
            .collect()
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let framework_span = ctx.event_scope(event).and_then(|scope| {
            scope
                .into_iter()
                .find(|s| s.metadata().target() == framework::dispatch::TRACE_TARGET)
                .map(|s| {
                    let f = s.extensions().get::<Fields>().cloned().unwrap_or_default();
                    (s.name(), f)
                })
        });
        self.events.lock().push(EventSeen {
            fields,
            framework_span,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span
                .extensions()
                .get::<Fields>()
                .cloned()
                .unwrap_or_default();
            self.spans.lock().push(SpanSeen {
                name: span.name(),
                target: span.metadata().target().to_string(),
                fields,
            });
        }
    }
}

// --- helpers ---------------------------------------------------------------------

/// Opcode 200 echoes its body, logging an event inside; 201 does the same after
/// an await (the asynchronous path).
fn app() -> App {
    App::new()
        .register_custom_handler(200, |ctx: Ctx| {
            tracing::info!(marker = "sync-handler", "handling");
            ctx.body().to_vec()
        })
        .register_custom_handler(201, |ctx: Ctx| async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            tracing::info!(marker = "async-handler", "handling after an await");
            ctx.body().to_vec()
        })
}

const KEY: &str = "traces-api-key";

/// Both services: the raw-WebSocket one for [`RawWs`], and `run_service` for HTTP.
async fn start(app: App, config: Config) -> AppHandle {
    app.config(config)
        .run_websocket_service(any_port())
        .run_service(any_port())
        .start()
        .await
        .expect("server starts")
}

fn with_key() -> Config {
    Config {
        api_key: Some(KEY.into()),
        ..Config::default()
    }
}

fn hex64(id: u64) -> String {
    format!("{id:016x}")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn next_delivery(ws: &mut RawWs) -> Frame {
    ws.next_frame().await.expect("a delivery")
}

/// A raw session subscribed to `channel`.
async fn subscriber(server: &AppHandle, channel: &str) -> (RawWs, Uuid) {
    let (mut ws, welcome) = RawWs::connect(server).await;
    let ack = ws
        .request(
            FrameFields::new(Opcode::Subscribe.0)
                .channel(channel)
                .requires_ack(true),
        )
        .await;
    assert_eq!(ack.opcode(), Opcode::Ack.0);
    (ws, welcome.receiver_id().expect("a session id"))
}

// --- spans -----------------------------------------------------------------------

#[tokio::test]
async fn a_frame_runs_in_a_span_carrying_its_wire_trace_ids() {
    let capture = Capture::default();
    let _guard = capture.install();
    let server = start(app(), Config::default()).await;
    let (mut ws, welcome) = RawWs::connect(&server).await;
    let session = welcome.receiver_id().expect("a session id");

    for opcode in [200u16, 201] {
        let trace = Uuid::new_v4();
        let parent = 0x0123_4567_89ab_cdefu64 + u64::from(opcode);
        let reply = ws
            .request(
                FrameFields::new(opcode)
                    .transaction_id(Some(Uuid::new_v4()))
                    .trace_id(Some(trace))
                    .span_id(parent)
                    .payload(b"hi"),
            )
            .await;
        assert_eq!(reply.opcode(), opcode);
        assert_eq!(reply.trace_id(), Some(trace), "the reply keeps the trace");
        assert_ne!(reply.span_id(), 0, "the reply names the server's span");

        let span = capture.frame_span(trace).await;
        assert_eq!(span.target, framework::dispatch::TRACE_TARGET);
        let f = &span.fields;
        assert_eq!(f.get("opcode"), Some(opcode.to_string().as_str()));
        assert_eq!(f.get("session"), Some(session.to_string().as_str()));
        assert_eq!(f.get("span_id"), Some(hex64(reply.span_id()).as_str()));
        assert_eq!(f.get("parent_span_id"), Some(hex64(parent).as_str()));
    }

    // The handlers' own events happened inside their frame's span.
    for marker in ["sync-handler", "async-handler"] {
        let events = capture.events_with(marker);
        assert_eq!(events.len(), 1, "{marker}: {events:?}");
        let (name, fields) = events[0]
            .framework_span
            .clone()
            .unwrap_or_else(|| panic!("{marker}: the event is in no framework span"));
        assert_eq!(name, "frame");
        assert_eq!(
            fields.get("opcode"),
            Some(if marker == "sync-handler" {
                "200"
            } else {
                "201"
            })
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_frame_without_a_trace_gets_the_servers_trace_id_in_its_span() {
    let capture = Capture::default();
    let _guard = capture.install();
    let server = start(app(), Config::default()).await;
    let (mut ws, _) = RawWs::connect(&server).await;
    let pong = ws
        .request(FrameFields::new(Opcode::Ping.0).transaction_id(Some(Uuid::new_v4())))
        .await;
    assert_eq!(pong.opcode(), Opcode::Pong.0);
    let trace = pong.trace_id().expect("the server created a trace id");
    let span = capture.frame_span(trace).await;
    assert_eq!(span.fields.get("opcode"), Some("2"));
    assert_eq!(
        span.fields.get("parent_span_id"),
        None,
        "no client span, no parent"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_trace_continues_from_a_clients_frame_to_the_deliveries_it_causes() {
    let capture = Capture::default();
    let _guard = capture.install();
    let server = start(app(), Config::default()).await;
    let (mut sub, sub_id) = subscriber(&server, "room").await;
    let (mut publisher, welcome) = RawWs::connect(&server).await;
    let publisher_id = welcome.receiver_id().expect("a session id");

    // Publish → the subscriber's delivery.
    let trace = Uuid::new_v4();
    let ack = publisher
        .request(
            FrameFields::new(Opcode::Publish.0)
                .channel("room")
                .payload(b"hello")
                .trace_id(Some(trace))
                .span_id(42)
                .requires_ack(true),
        )
        .await;
    assert_eq!(ack.opcode(), Opcode::Ack.0);
    assert_eq!(ack.trace_id(), Some(trace));
    let d = next_delivery(&mut sub).await;
    assert_eq!(d.opcode(), Opcode::Publish.0);
    assert_eq!(d.emitter_id(), Some(publisher_id));
    assert_eq!(
        d.trace_id(),
        Some(trace),
        "the delivery continues the trace"
    );
    let span = capture.frame_span(trace).await;
    assert_eq!(span.fields.get("opcode"), Some("6"));
    assert_eq!(
        span.fields.get("span_id"),
        Some(hex64(ack.span_id()).as_str())
    );

    // Send and Broadcast likewise.
    let trace = Uuid::new_v4();
    publisher
        .send_fields(
            FrameFields::new(Opcode::Send.0)
                .receiver_id(Some(sub_id))
                .payload(b"psst")
                .trace_id(Some(trace)),
        )
        .await;
    let d = next_delivery(&mut sub).await;
    assert_eq!(d.opcode(), Opcode::Send.0);
    assert_eq!(d.trace_id(), Some(trace));
    capture.frame_span(trace).await;

    let trace = Uuid::new_v4();
    publisher
        .send_fields(
            FrameFields::new(Opcode::Broadcast.0)
                .payload(b"all")
                .trace_id(Some(trace)),
        )
        .await;
    for ws in [&mut sub, &mut publisher] {
        // Every session gets it, the sender included.
        let d = next_delivery(ws).await;
        assert_eq!(d.opcode(), Opcode::Broadcast.0);
        assert_eq!(d.trace_id(), Some(trace));
    }

    // Without a client trace id, the delivery carries the one the server made,
    // which is also the span's and the Ack's.
    let ack = publisher
        .request(
            FrameFields::new(Opcode::Publish.0)
                .channel("room")
                .payload(b"untraced")
                .requires_ack(true),
        )
        .await;
    let made = ack.trace_id().expect("a server-made trace id");
    let d = next_delivery(&mut sub).await;
    assert_eq!(&d.payload()[..], b"untraced");
    assert_eq!(d.trace_id(), Some(made));
    capture.frame_span(made).await;
    server.shutdown().await;
}

// --- the server API and traceparent ----------------------------------------------

async fn api(server: &AppHandle, path: &str, body: &str, traceparent: Option<&str>) {
    let bearer = format!("Bearer {KEY}");
    let mut request = Request::post_json(path, body).header("Authorization", &bearer);
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let r = http::send(server.service_addr(), request).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
}

#[tokio::test]
async fn the_server_api_continues_a_w3c_traceparent() {
    let capture = Capture::default();
    let _guard = capture.install();
    let server = start(app(), with_key()).await;
    let (mut sub, sub_id) = subscriber(&server, "news").await;
    let publish = format!(r#"{{"channel":"news","payload":"{}"}}"#, b64(b"p"));
    let send = format!(r#"{{"receiver_id":"{sub_id}","payload":"{}"}}"#, b64(b"s"));
    let broadcast = format!(r#"{{"payload":"{}"}}"#, b64(b"b"));

    for (path, body) in [
        ("/api/publish", &publish),
        ("/api/send", &send),
        ("/api/broadcast", &broadcast),
    ] {
        let trace = Uuid::new_v4();
        let parent = 0x00f0_67aa_0ba9_02b7u64;
        let tp = format!("00-{}-{}-01", trace.simple(), hex64(parent));
        api(&server, path, body, Some(&tp)).await;
        let d = next_delivery(&mut sub).await;
        assert_eq!(d.trace_id(), Some(trace), "{path}: traceparent's trace id");
        assert_eq!(d.emitter_id(), Some(Uuid::nil()));
        let span = capture.span_of("api", trace).await;
        assert_eq!(span.fields.get("path"), Some(path));
        assert_eq!(
            span.fields.get("parent_span_id"),
            Some(hex64(parent).as_str())
        );
        assert!(span.fields.get("span_id").is_some_and(|s| s.len() == 16));
    }

    // The W3C example; a later version is read for its first fields.
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    api(&server, "/api/publish", &publish, Some(tp)).await;
    let d = next_delivery(&mut sub).await;
    assert_eq!(
        d.trace_id(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap())
    );
    let tp = "01-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01-future";
    api(&server, "/api/publish", &publish, Some(tp)).await;
    let d = next_delivery(&mut sub).await;
    assert_eq!(
        d.trace_id(),
        Some("4bf92f3577b34da6a3ce929d0e0e4737".parse().unwrap())
    );

    // Invalid headers are ignored: a new trace id every time.
    let zeros = "0".repeat(32);
    let invalid = [
        "not a traceparent".to_string(),
        format!("00-{zeros}-00f067aa0ba902b7-01"),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01".to_string(),
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".to_string(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra".to_string(),
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01".to_string(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x".to_string(),
    ];
    for tp in &invalid {
        api(&server, "/api/publish", &publish, Some(tp)).await;
        let d = next_delivery(&mut sub).await;
        let trace = d.trace_id().expect("a new trace id");
        assert_ne!(
            trace.simple().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "{tp:?} must be ignored"
        );
        assert!(!trace.is_nil(), "{tp:?}");
        let span = capture.span_of("api", trace).await;
        assert_eq!(span.fields.get("parent_span_id"), None, "{tp:?}");
    }
    // No header at all: a new trace id too.
    api(&server, "/api/publish", &publish, None).await;
    assert!(next_delivery(&mut sub).await.trace_id().is_some());
    server.shutdown().await;
}

// --- Prometheus --------------------------------------------------------------------

async fn sample(server: &AppHandle, name: &str) -> Option<f64> {
    let page = http::get(server.service_addr(), "/metrics").await;
    assert_eq!(page.status, 200);
    metric(&page.text(), name)
}

async fn wait_for(server: &AppHandle, name: &str, what: &str, ok: impl Fn(f64) -> bool) {
    eventually_async(&format!("{name} {what}"), DEADLINE, || {
        let value = sample(server, name);
        let ok = &ok;
        async move { value.await.is_some_and(ok) }
    })
    .await;
}

#[tokio::test]
async fn handler_latency_is_exported_by_opcode() {
    // Its own (empty) subscriber, not the global one `otel::init` may install.
    let _guard = Capture::default().install();
    let server = start(app(), Config::default()).await;
    let page = http::get(server.service_addr(), "/metrics").await.text();
    for family in [
        "framework_handler_duration_seconds",
        "framework_queued_bytes",
        "framework_session_queued_bytes_max",
        "framework_dropped_deliveries_total",
    ] {
        assert!(
            page.contains(&format!("# TYPE {family} ")),
            "/metrics lacks {family}:\n{page}"
        );
    }
    let ping = r#"framework_handler_duration_by_opcode_seconds_count{opcode="Ping"}"#;
    let app_op = r#"framework_handler_duration_by_opcode_seconds_count{opcode="application"}"#;
    let before = metric(&page, ping).unwrap_or(0.0);
    let client = Client::connect(&framework_tests::url(&server))
        .await
        .expect("connects");
    for _ in 0..3 {
        client.ping().await.expect("pong");
    }
    let (mut ws, _) = RawWs::connect(&server).await;
    ws.request(FrameFields::new(200).payload(b"x")).await;
    wait_for(&server, ping, "counts the pings", |v| v >= before + 3.0).await;
    wait_for(&server, app_op, "counts opcode 200", |v| v >= 1.0).await;
    // Only opcodes that were handled have a series.
    let page = http::get(server.service_addr(), "/metrics").await.text();
    assert!(page.contains("# TYPE framework_handler_duration_by_opcode_seconds histogram"));
    assert!(
        !page.contains(r#"framework_handler_duration_by_opcode_seconds_count{opcode="Welcome"}"#)
    );
    let bucket = r#"framework_handler_duration_by_opcode_seconds_bucket{opcode="Ping",le="+Inf"}"#;
    assert!(sample(&server, bucket).await.is_some_and(|v| v >= 3.0));
    // The unlabelled histogram counts every handled frame as before.
    let total = sample(&server, "framework_handler_duration_seconds_count")
        .await
        .expect("the unlabelled histogram");
    assert!(total >= 4.0, "{total}");
    server.shutdown().await;
}

#[tokio::test]
async fn queue_depth_and_dropped_deliveries_move_with_a_slow_consumer() {
    // Its own (empty) subscriber, not the global one `otel::init` may install.
    let _guard = Capture::default().install();
    const CHUNK: usize = 64 * 1024;
    const LIMIT: usize = 1024 * 1024;
    /// More than kernel buffers (several MiB on loopback) and the queue hold.
    const MAX_PUBLISHED: usize = (64 << 20) / CHUNK;
    let config = Config {
        max_queued_bytes: LIMIT,
        ..Config::default()
    };
    let server = start(App::new(), config).await;
    let node = server.node().clone();
    assert_eq!(sample(&server, "framework_queued_bytes").await, Some(0.0));
    assert_eq!(
        sample(&server, "framework_session_queued_bytes_max").await,
        Some(0.0)
    );
    const SLOW: &str = r#"framework_dropped_deliveries_total{reason="slow_consumer"}"#;
    const CLOSING: &str = r#"framework_dropped_deliveries_total{reason="closing"}"#;
    const OVER_BUDGET: &str = r#"framework_dropped_deliveries_total{reason="over_budget"}"#;
    for reason in [SLOW, CLOSING, OVER_BUDGET] {
        assert_eq!(sample(&server, reason).await, Some(0.0), "{reason}");
    }

    // A subscriber that never reads, through a tiny receive buffer.
    let (mut slow, welcome) = RawWs::connect_with_recv_buffer(&server, 4096).await;
    let slow_id = welcome.receiver_id().expect("a session id");
    let ack = slow
        .request(
            FrameFields::new(Opcode::Subscribe.0)
                .channel("firehose")
                .requires_ack(true),
        )
        .await;
    assert_eq!(ack.opcode(), Opcode::Ack.0);
    let payload = vec![7u8; CHUNK];
    // Publish until its queue backs up (what its writer took for the socket is
    // still counted until written), and see the gauges follow.
    let mut published = 0;
    loop {
        assert!(published < MAX_PUBLISHED, "the queue never backed up");
        node.publish("firehose", &payload, Uuid::nil(), None)
            .await
            .expect("published");
        published += 1;
        let queued = node.hub().session(&slow_id).map_or(0, |c| c.queued_bytes());
        // Several frames behind: its writer is stuck on the full socket.
        if queued > 4 * CHUNK {
            break;
        }
        tokio::task::yield_now().await;
    }
    wait_for(&server, "framework_queued_bytes", "above zero", |v| v > 0.0).await;
    let max = sample(&server, "framework_session_queued_bytes_max")
        .await
        .expect("max");
    let total = sample(&server, "framework_queued_bytes")
        .await
        .expect("total");
    assert!(max > 0.0 && max <= total, "max {max}, total {total}");

    // Past its limit it is closed: deliveries are dropped, the queue is gone.
    while node
        .hub()
        .session(&slow_id)
        .is_some_and(|c| !c.is_closing())
    {
        assert!(
            published < MAX_PUBLISHED,
            "the slow consumer was never closed"
        );
        node.publish("firehose", &payload, Uuid::nil(), None)
            .await
            .expect("published");
        published += 1;
    }
    // The frame that overflowed its queue was dropped as a slow consumer's.
    assert_eq!(sample(&server, SLOW).await, Some(1.0));
    // While it is closing, deliveries to it are dropped as to a closing session.
    let closing = node.hub().session(&slow_id).is_some();
    node.publish("firehose", &payload, Uuid::nil(), None)
        .await
        .expect("published");
    if closing {
        wait_for(
            &server,
            CLOSING,
            "counts a delivery to a closing session",
            |v| v >= 1.0,
        )
        .await;
    }
    assert_eq!(sample(&server, SLOW).await, Some(1.0), "evicted once");
    assert_eq!(sample(&server, OVER_BUDGET).await, Some(0.0));
    drop(slow);
    wait_for(&server, "framework_queued_bytes", "back to zero", |v| {
        v == 0.0
    })
    .await;
    server.shutdown().await;
}

// --- OpenTelemetry -----------------------------------------------------------------

#[cfg(feature = "otel")]
mod otel {
    use super::*;
    use framework::otel::opentelemetry::trace::{SpanId, TraceId};
    use framework::otel::opentelemetry_sdk::trace::{
        InMemorySpanExporter, SdkTracerProvider, SpanData,
    };

    fn trace_of(id: Uuid) -> TraceId {
        TraceId::from_bytes(id.into_bytes())
    }

    fn span_of(id: u64) -> SpanId {
        SpanId::from_bytes(id.to_be_bytes())
    }

    fn install(provider: &SdkTracerProvider) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(
            tracing_subscriber::registry().with(framework::otel::layer(provider)),
        )
    }

    async fn exported(
        exporter: &InMemorySpanExporter,
        what: &str,
        matches: impl Fn(&SpanData) -> bool,
    ) -> SpanData {
        let mut found = None;
        eventually(what, DEADLINE, || {
            found = exporter
                .get_finished_spans()
                .expect("the in-memory exporter")
                .into_iter()
                .find(|s| matches(s));
            found.is_some()
        })
        .await;
        found.expect("found")
    }

    /// Opcode 202 opens a span of its own inside the handler.
    fn app() -> App {
        super::app().register_custom_handler(202, |ctx: Ctx| {
            let _inner = tracing::info_span!("inner").entered();
            ctx.body().to_vec()
        })
    }

    #[tokio::test]
    async fn a_frame_is_exported_as_a_span_of_the_wire_trace() {
        let exporter = InMemorySpanExporter::default();
        let provider = framework::otel::provider_builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let _guard = install(&provider);
        let server = start(app(), with_key()).await;
        let (mut ws, _) = RawWs::connect(&server).await;

        // A client span: the exported span is its remote child, with the wire
        // trace id and the span id the reply names.
        let trace = Uuid::new_v4();
        let parent = 0xfeed_0000_0000_0001u64;
        let reply = ws
            .request(
                FrameFields::new(202)
                    .transaction_id(Some(Uuid::new_v4()))
                    .trace_id(Some(trace))
                    .span_id(parent)
                    .payload(b"otel"),
            )
            .await;
        let frame = exported(&exporter, "the frame span", |s| {
            s.name == "frame" && s.span_context.trace_id() == trace_of(trace)
        })
        .await;
        assert_eq!(frame.span_context.span_id(), span_of(reply.span_id()));
        assert_eq!(frame.parent_span_id, span_of(parent));
        assert!(frame.parent_span_is_remote);
        assert!(frame
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "opcode" && kv.value.as_str() == "202"));
        // The handler's span is the frame span's child, in the same trace.
        let inner = exported(&exporter, "the handler's span", |s| {
            s.name == "inner" && s.span_context.trace_id() == trace_of(trace)
        })
        .await;
        assert_eq!(inner.parent_span_id, span_of(reply.span_id()));

        // No client trace: the server's trace id is the exported one.
        let pong = ws
            .request(FrameFields::new(Opcode::Ping.0).transaction_id(Some(Uuid::new_v4())))
            .await;
        let made = pong.trace_id().expect("a server trace id");
        let frame = exported(&exporter, "the ping's span", |s| {
            s.name == "frame" && s.span_context.trace_id() == trace_of(made)
        })
        .await;
        assert_eq!(frame.parent_span_id, SpanId::INVALID, "a root span");
        assert_eq!(frame.span_context.span_id(), span_of(pong.span_id()));

        // The server API continues a traceparent.
        let (mut sub, _) = subscriber(&server, "news").await;
        let trace = Uuid::new_v4();
        let tp = format!("00-{}-00f067aa0ba902b7-01", trace.simple());
        let body = format!(r#"{{"channel":"news","payload":"{}"}}"#, b64(b"p"));
        api(&server, "/api/publish", &body, Some(&tp)).await;
        assert_eq!(next_delivery(&mut sub).await.trace_id(), Some(trace));
        let span = exported(&exporter, "the api span", |s| {
            s.name == "api" && s.span_context.trace_id() == trace_of(trace)
        })
        .await;
        assert_eq!(span.parent_span_id, span_of(0x00f0_67aa_0ba9_02b7));
        server.shutdown().await;
        let _ = provider.shutdown();
    }

    /// The documented composition: logs at `info` beside the OpenTelemetry layer
    /// filtered to `info,framework::trace=debug`. The frame span is exported with
    /// the wire ids, and the log layer never sees it.
    #[tokio::test]
    async fn a_filtered_layer_beside_info_logs_exports_the_frame_spans() {
        use tracing_subscriber::EnvFilter;
        let exporter = InMemorySpanExporter::default();
        let provider = framework::otel::provider_builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let logs = Capture::default();
        let subscriber = tracing_subscriber::registry()
            .with(logs.clone().with_filter(EnvFilter::new("info")))
            .with(
                framework::otel::layer(&provider)
                    .with_filter(EnvFilter::new("info,framework::trace=debug")),
            );
        let _guard = tracing::subscriber::set_default(subscriber);
        let server = start(app(), Config::default()).await;
        let (mut ws, _) = RawWs::connect(&server).await;
        let pong = ws
            .request(FrameFields::new(Opcode::Ping.0).transaction_id(Some(Uuid::new_v4())))
            .await;
        let made = pong.trace_id().expect("a server trace id");
        let frame = exported(&exporter, "the ping's span", |s| {
            s.name == "frame" && s.span_context.trace_id() == trace_of(made)
        })
        .await;
        assert_eq!(frame.span_context.span_id(), span_of(pong.span_id()));
        ws.request(FrameFields::new(200).payload(b"x")).await;
        eventually("the handler's event is logged", DEADLINE, || {
            !logs.events_with("sync-handler").is_empty()
        })
        .await;
        let event = &logs.events_with("sync-handler")[0];
        assert!(
            event.framework_span.is_none(),
            "the info-level log layer does not see the DEBUG frame span"
        );
        assert!(logs.spans("frame").is_empty());
        server.shutdown().await;
        let _ = provider.shutdown();
    }

    /// A stand-in OTLP/HTTP collector on loopback: the bodies posted to
    /// `/v1/traces`.
    async fn collector() -> (std::net::SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
        let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let kept = bodies.clone();
        let collector = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    kept.lock().push(body.to_vec());
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(any_port()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, collector).await });
        (addr, bodies)
    }

    /// `otel::init` end to end: the global subscriber it installs exports a
    /// frame's span over OTLP/HTTP to a collector (here a stand-in on loopback
    /// that keeps the request bodies), with the wire trace and span ids in the
    /// protobuf. The only test here with a global subscriber: the others set
    /// their own for their thread, which takes precedence.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn init_exports_spans_over_otlp_http() {
        let (addr, bodies) = collector().await;
        let guard = framework::otel::init(Some(&format!("http://{addr}"))).expect("init");
        assert!(
            matches!(
                framework::otel::init(None),
                Err(framework::otel::InitError::Subscriber(_))
            ),
            "a second init finds the subscriber installed"
        );
        let server = start(app(), Config::default()).await;
        let (mut ws, _) = RawWs::connect(&server).await;
        let trace = Uuid::new_v4();
        let reply = ws
            .request(
                FrameFields::new(200)
                    .transaction_id(Some(Uuid::new_v4()))
                    .trace_id(Some(trace))
                    .span_id(0xabcd)
                    .payload(b"x"),
            )
            .await;
        let span_id = reply.span_id().to_be_bytes();
        let provider = guard.provider().clone();
        eventually_async("the collector receives the frame span", DEADLINE, || {
            let provider = provider.clone();
            let bodies = bodies.clone();
            async move {
                // The batch goes out on a flush (or every 5 s).
                tokio::task::spawn_blocking(move || provider.force_flush())
                    .await
                    .expect("flush task")
                    .ok();
                let contains =
                    |body: &[u8], what: &[u8]| body.windows(what.len()).any(|w| w == what);
                bodies.lock().iter().any(|b| {
                    contains(b, trace.as_bytes()) && contains(b, &span_id) && contains(b, b"frame")
                })
            }
        })
        .await;
        server.shutdown().await;
        tokio::task::spawn_blocking(move || drop(guard))
            .await
            .expect("shutdown");
    }

    /// A provider without `WireIds` still continues a client's trace (through its
    /// remote parent), and the reply's span id is then the exported span's.
    #[tokio::test]
    async fn a_provider_without_wire_ids_still_continues_a_clients_trace() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let _guard = install(&provider);
        let server = start(app(), Config::default()).await;
        let (mut ws, _) = RawWs::connect(&server).await;
        let trace = Uuid::new_v4();
        let reply = ws
            .request(
                FrameFields::new(200)
                    .transaction_id(Some(Uuid::new_v4()))
                    .trace_id(Some(trace))
                    .span_id(7)
                    .payload(b"x"),
            )
            .await;
        let frame = exported(&exporter, "the frame span", |s| {
            s.name == "frame" && s.span_context.trace_id() == trace_of(trace)
        })
        .await;
        assert_eq!(frame.parent_span_id, span_of(7));
        assert_eq!(frame.span_context.span_id(), span_of(reply.span_id()));
        server.shutdown().await;
        let _ = provider.shutdown();
    }

    /// A `main!` binary built with the feature exports by itself when the
    /// standard OTLP endpoint variable is set, and flushes on SIGTERM.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_main_binary_exports_when_an_otlp_endpoint_is_set() {
        let (collector, bodies) = collector().await;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_main-app"));
        cmd.env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_SDK_DISABLED");
        for (k, _) in std::env::vars() {
            if k.starts_with("FRAMEWORK_") {
                cmd.env_remove(k);
            }
        }
        let (mut child, addr) = framework_tests::serve(&mut cmd);
        let client = Client::connect(&format!("ws://{addr}/")).await.unwrap();
        let trace = Uuid::new_v4();
        client
            .call(FrameFields::new(200).trace_id(Some(trace)))
            .await
            .expect("greeted");
        // SIGTERM: the batch still held is flushed on the way out.
        let pid = child.0.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = tokio::task::spawn_blocking(move || child.0.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "{status:?}");
        // Sent before the process exited: no waiting.
        let wire = trace.into_bytes();
        assert!(
            bodies
                .lock()
                .iter()
                .any(|b| b.windows(16).any(|w| w == wire)),
            "the frame's span, under the wire trace id"
        );
    }
}
