//! Prometheus text exposition of a node's counters (served at `/metrics`).

use std::sync::atomic::Ordering::Relaxed;

use crate::hub::DropReason;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::node::Node;
use crate::protocol::ErrorCode;

fn gauge(registry: &Registry, name: &str, help: &str, value: i64) -> prometheus::Result<()> {
    let g = IntGauge::new(name, help)?;
    g.set(value);
    registry.register(Box::new(g))
}

fn gauge_f64(registry: &Registry, name: &str, help: &str, value: f64) -> prometheus::Result<()> {
    let g = prometheus::Gauge::new(name, help)?;
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
    if let Some(cluster) = node.broker().cluster_stats() {
        gauge(
            &r,
            "framework_cluster_engine_up",
            "1 when the cluster engine answered the last operation, else 0.",
            i64::from(cluster.connected()),
        )?;
        gauge(
            &r,
            "framework_cluster_nodes",
            "Other cluster nodes alive at the last heartbeat.",
            cluster.other_nodes() as i64,
        )?;
        gauge_f64(
            &r,
            "framework_cluster_engine_lag_seconds",
            "How long this node's last heartbeat took to come back through the engine.",
            cluster.engine_lag().as_secs_f64(),
        )?;
        counter(
            &r,
            "framework_cluster_engine_errors_total",
            "Cluster engine operations that failed or timed out.",
            cluster.engine_errors.load(Relaxed),
        )?;
        counter(
            &r,
            "framework_cluster_undelivered_total",
            "Publishes and broadcasts delivered on this node but not carried to the others (engine unreachable).",
            cluster.undelivered.load(Relaxed),
        )?;
        counter(
            &r,
            "framework_cluster_received_total",
            "Publishes, broadcasts and sends received from other nodes.",
            cluster.received.load(Relaxed),
        )?;
    }
    gauge(
        &r,
        "framework_held_bytes",
        "Bytes held for peers: messages still arriving and unshared outgoing frames (max_held_bytes).",
        node.held_bytes() as i64,
    )?;
    counter(
        &r,
        "framework_memory_budget_closes_total",
        "Sessions closed because they would have gone over max_held_bytes or max_held_bytes_per_ip.",
        node.memory_budget().closes(),
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
    by_label(
        &r,
        "framework_dropped_deliveries_total",
        "Deliveries not queued, by reason: the recipient was closing, a slow consumer \
         (its queue overflowed), or over the node's memory budget.",
        "reason",
        DropReason::ALL
            .into_iter()
            .map(|reason| (reason.label(), hub.stats().dropped(reason))),
    )?;
    // Queue depth, read off every session at scrape time (one atomic load each).
    let (mut queued, mut deepest) = (0usize, 0usize);
    for conn in hub.sessions() {
        let q = conn.queued_bytes();
        queued += q;
        deepest = deepest.max(q);
    }
    gauge(
        &r,
        "framework_queued_bytes",
        "Bytes waiting in the sessions' outgoing queues, all sessions together.",
        queued as i64,
    )?;
    gauge(
        &r,
        "framework_session_queued_bytes_max",
        "Bytes waiting in the longest outgoing queue of one session (past max_queued_bytes it is closed as a slow consumer).",
        deepest as i64,
    )?;
    by_label(
        &r,
        "framework_recoveries_total",
        "Recovering Subscribes, by whether every missed publication was replayed.",
        "recovered",
        [
            ("true", m.recovered.load(Relaxed)),
            ("false", m.not_recovered.load(Relaxed)),
        ]
        .into_iter(),
    )?;
    counter(
        &r,
        "framework_history_publications_total",
        "Publications kept in a channel's history (given an offset).",
        m.history_appends.load(Relaxed),
    )?;
    counter(
        &r,
        "framework_accept_errors_total",
        "Failed accepts (e.g. out of file descriptors); the listener backs off.",
        m.accept_errors.load(Relaxed),
    )?;
    if node.config().tls.is_some() {
        counter(
            &r,
            "framework_tls_handshake_failures_total",
            "TLS handshakes that failed or timed out.",
            m.tls_handshake_failures.load(Relaxed),
        )?;
        by_label(
            &r,
            "framework_tls_reloads_total",
            "Certificate reloads, by outcome (a failed one keeps the certificate in use).",
            "outcome",
            [
                ("ok", m.tls_reloads.load(Relaxed)),
                ("failed", m.tls_reload_failures.load(Relaxed)),
            ]
            .into_iter(),
        )?;
    }
    let received: Vec<_> = m.received.slots().collect();
    by_label(
        &r,
        "framework_frames_in_total",
        "Protocol frames received, by opcode.",
        "opcode",
        received.iter().map(|(l, frames, _)| (*l, *frames)),
    )?;
    by_label(
        &r,
        "framework_bytes_in_total",
        "Bytes of protocol frames received, by opcode.",
        "opcode",
        received.iter().map(|(l, _, bytes)| (*l, *bytes)),
    )?;
    // Frames out: what the node sent itself (replies, errors, Welcome) plus what
    // the hub delivered (Publish, Send, Broadcast), slot by slot.
    let sent: Vec<_> = m
        .sent
        .slots()
        .zip(hub.stats().queued.slots())
        .map(|((l, f1, b1), (_, f2, b2))| (l, f1 + f2, b1 + b2))
        .collect();
    by_label(
        &r,
        "framework_frames_out_total",
        "Protocol frames queued to clients, by opcode.",
        "opcode",
        sent.iter().map(|(l, frames, _)| (*l, *frames)),
    )?;
    by_label(
        &r,
        "framework_bytes_out_total",
        "Bytes of protocol frames queued to clients, by opcode.",
        "opcode",
        sent.iter().map(|(l, _, bytes)| (*l, *bytes)),
    )?;
    by_label(
        &r,
        "framework_errors_total",
        "Error frames sent, by error code.",
        "code",
        ErrorCode::ENUM_VALUES
            .iter()
            .filter(|c| **c != ErrorCode::None)
            .map(|c| (c.variant_name().unwrap_or("Unknown"), m.errors_sent(*c))),
    )?;
    r.register(Box::new(m.handler_duration.clone()))?;
    // By opcode: the slots that handled a frame already.
    for h in m.handler_durations() {
        if h.get_sample_count() > 0 {
            r.register(Box::new(h.clone()))?;
        }
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&r.gather(), &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use crate::session::{opcode_slot_label, OPCODE_SLOTS};

    /// Each slot's handler histogram is registered under its own label: two
    /// slots with one label would make `/metrics` fail.
    #[test]
    fn every_opcode_slot_has_its_own_label() {
        let labels: std::collections::HashSet<_> =
            (0..OPCODE_SLOTS).map(opcode_slot_label).collect();
        assert_eq!(labels.len(), OPCODE_SLOTS);
    }

    #[tokio::test]
    async fn every_series_renders_once_every_opcode_was_handled() {
        let node = crate::testing::TestNode::new(crate::App::new())
            .await
            .unwrap();
        let m = node.node().metrics();
        for opcode in (0..=crate::protocol::Opcode::ENUM_MAX).chain([150, 200, 60_000]) {
            m.observe_handler(opcode, 0.001);
        }
        let text = super::render(node.node()).expect("renders");
        for series in [
            r#"framework_handler_duration_by_opcode_seconds_count{opcode="Publish"} 1"#,
            r#"framework_handler_duration_by_opcode_seconds_count{opcode="reserved"} 1"#,
            r#"framework_handler_duration_by_opcode_seconds_count{opcode="application"} 2"#,
            "framework_handler_duration_seconds_count 19",
            "framework_queued_bytes ",
            "framework_session_queued_bytes_max ",
        ] {
            assert!(text.contains(series), "{series}:\n{text}");
        }
    }
}
