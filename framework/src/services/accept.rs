//! The one accept loop of every listener. Each TCP connection, in a task of its
//! own, learns who its client is (a trusted proxy's PROXY header, see
//! [`proxy`](super::proxy)), takes a per-IP slot and is served as HTTP/1 by
//! hyper, with a deadline on the request head;
//! WebSocket upgrades go to the listener's service, other requests to its routes.
//! Accept failures (out of file descriptors, above all) back off exponentially
//! instead of spinning, and the loop serves again once descriptors are free.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::limits::ConnSlot;
use super::Shared;

/// What every request of a connection carries in its extensions.
#[derive(Clone)]
pub(crate) struct ConnInfo {
    /// The client: the TCP peer, or whom a trusted proxy named.
    pub(crate) peer: SocketAddr,
    /// The connection's place in the connection limits.
    pub(crate) slot: Arc<ConnSlot>,
}

/// The first backoff after a failed accept, doubled per failure up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Errors that mean the process or system is out of a resource: waiting helps.
fn is_exhaustion(e: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 (Linux values).
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Accepts connections until shutdown, serving each with `router`.
pub(crate) async fn serve(listener: TcpListener, router: Router, shared: Arc<Shared>) {
    let mut backoff = BACKOFF_MIN;
    let mut failures: u64 = 0;
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                shared.node.metrics().accept_errors.fetch_add(1, Relaxed);
                if !is_exhaustion(&e) {
                    // A connection reset before it was accepted: nothing to wait for.
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
                failures += 1;
                // Loud once per streak, then quiet: a log line per retry would
                // flood the logs exactly when the machine is struggling.
                if failures == 1 {
                    tracing::warn!(error = %e, "accept failed; backing off until descriptors are free");
                } else {
                    tracing::debug!(error = %e, ?backoff, "accept still failing");
                }
                tokio::select! {
                    _ = shared.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if failures > 0 {
            tracing::info!(failures, "accepting again");
            failures = 0;
            backoff = BACKOFF_MIN;
        }
        let _ = tcp.set_nodelay(true);
        let shutdown = shared.shutdown.clone();
        let config = shared.node.config();
        let (header_timeout, drain) = (config.handshake_timeout, config.shutdown_timeout);
        let router = router.clone();
        let conn_shared = shared.clone();
        shared.tracker.spawn(async move {
            let mut tcp = tcp;
            // The client: the peer, or whom its PROXY header names. Over a
            // connection limit, every request on the connection is answered
            // with the refusal and the connection closed: never left hanging.
            let admitted = tokio::select! {
                _ = shutdown.cancelled() => None,
                peer = super::proxy::admit(&conn_shared, &mut tcp, peer) => peer,
            };
            let Some(peer) = admitted else { return };
            drop(conn_shared);
            let keep_alive = peer.keep_alive();
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let answer = match peer.request(req.headers()) {
                        Ok(info) => {
                            let slot = info.slot.clone();
                            req.extensions_mut().insert(info);
                            Ok((router.clone().oneshot(req.map(Body::new)), slot))
                        }
                        Err(refused) => Err(super::http::refused(refused)),
                    };
                    async move {
                        match answer {
                            // The request's slot is held until it is answered.
                            Ok((routed, _slot)) => routed.await,
                            Err(response) => Ok(response),
                        }
                    }
                },
            );
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(keep_alive);
            let conn = builder
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "http connection ended");
                    }
                }
                _ = shutdown.cancelled() => {
                    // Requests in flight finish (bounded); idle connections close.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(drain, conn).await;
                }
            }
        });
    }
}
