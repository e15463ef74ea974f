//! Prometheus text exposition of a node's counters (served at `/metrics`).

use std::sync::atomic::Ordering::Relaxed;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::node::{opcode_bucket_label, Node, OPCODE_BUCKETS};
use crate::protocol::ErrorCode;

fn gauge(registry: &Registry, name: &str, help: &str, value: i64) -> prometheus::Result<()> {
    let g = IntGauge::new(name, help)?;
    g.set(value);
    registry.register(Box::new(g))
}

fn counter(registry: &Registry, name: &str, help: &str, value: u64) -> prometheus::Result<()> {
    let c = IntCounter::new(name, help)?;
    c.inc_by(value);
    registry.register(Box::new(c))
}

fn by_label(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'static str, u64)>,
) -> prometheus::Result<()> {
    let v = IntCounterVec::new(Opts::new(name, help), &[label])?;
    for (l, n) in values {
        v.with_label_values(&[l]).inc_by(n);
    }
    registry.register(Box::new(v))
}

/// Renders every metric of `node` in the Prometheus text format.
pub(crate) fn render(node: &Node) -> prometheus::Result<String> {
    let m = node.metrics();
    let hub = node.hub();
    let r = Registry::new();
    gauge(
        &r,
        "framework_sessions",
        "Sessions open now.",
        m.sessions_active() as i64,
    )?;
    gauge(
        &r,
        "framework_channels",
        "Channels with a subscriber on this node.",
        hub.channel_count() as i64,
    )?;
    counter(
        &r,
        "framework_sessions_opened_total",
        "Sessions opened.",
        m.sessions_opened.load(Relaxed),
    )?;
    counter(
        &r,
        "framework_slow_consumer_closes_total",
        "Sessions closed with 1008 because their queue overflowed.",
        m.slow_consumer_closes.load(Relaxed),
    )?;
    counter(
        &r,
        "framework_oversized_closes_total",
        "Sessions closed with 1009 for an oversized message.",
        m.oversized_closes.load(Relaxed),
    )?;
    counter(
        &r,
        "framework_handshakes_refused_total",
        "Upgrades refused (limits, origin, timeouts, bad requests).",
        m.handshakes_refused.load(Relaxed),
    )?;
    counter(
        &r,
        "framework_dropped_deliveries_total",
        "Deliveries not queued because the recipient was closing or too slow.",
        hub.stats().dropped.load(Relaxed),
    )?;
    let buckets = || (0..OPCODE_BUCKETS).map(opcode_bucket_label);
    let load =
        |a: &[std::sync::atomic::AtomicU64]| a.iter().map(|c| c.load(Relaxed)).collect::<Vec<_>>();
    by_label(
        &r,
        "framework_frames_in_total",
        "Protocol frames received, by opcode.",
        "opcode",
        buckets().zip(load(&m.frames_in_by_opcode)),
    )?;
    by_label(
        &r,
        "framework_bytes_in_total",
        "Bytes of protocol frames received, by opcode.",
        "opcode",
        buckets().zip(load(&m.bytes_in_by_opcode)),
    )?;
    // Frames out: replies by their opcode, plus deliveries (Publish, Send, Broadcast).
    let mut frames_out = load(&m.replies_by_opcode);
    let mut bytes_out = load(&m.reply_bytes_by_opcode);
    for (i, opcode) in [6usize, 7, 8].into_iter().enumerate() {
        frames_out[opcode] += hub.stats().frames[i].load(Relaxed);
        bytes_out[opcode] += hub.stats().bytes[i].load(Relaxed);
    }
    by_label(
        &r,
        "framework_frames_out_total",
        "Protocol frames queued to clients, by opcode.",
        "opcode",
        buckets().zip(frames_out),
    )?;
    by_label(
        &r,
        "framework_bytes_out_total",
        "Bytes of protocol frames queued to clients, by opcode.",
        "opcode",
        buckets().zip(bytes_out),
    )?;
    by_label(
        &r,
        "framework_errors_total",
        "Error frames sent, by error code.",
        "code",
        (1..m.errors.len()).map(|c| {
            let label = ErrorCode(c as u16).variant_name().unwrap_or("Unknown");
            (label, m.errors[c].load(Relaxed))
        }),
    )?;
    r.register(Box::new(m.handler_duration.clone()))?;
    let mut out = Vec::new();
    TextEncoder::new().encode(&r.gather(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
