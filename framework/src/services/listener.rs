//! The standalone protocol WebSocket service (`run_websocket_service`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::limits::IpLimiter;
use super::Service;
use crate::node::Node;

#[allow(clippy::result_large_err)]
fn refuse(status: StatusCode, why: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(why.to_string()));
    *r.status_mut() = status;
    r
}

/// Accepts connections until `shutdown`, each upgraded to a session of `service`.
pub(crate) async fn serve(
    listener: TcpListener,
    node: Node,
    service: Service,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    limiter: Arc<IpLimiter>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors or a reset before accept: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (node, service, shutdown) = (node.clone(), service.clone(), shutdown.clone());
        let slot = limiter.acquire(peer.ip());
        tracker.spawn(async move {
            let over_limit = slot.is_none();
            let session = match handshake(tcp, &node, over_limit, &shutdown).await {
                Some(ws) => service.serve(ws, peer, node, shutdown),
                None => return,
            };
            session.await;
            drop(slot);
        });
    }
}

/// The server handshake, bounded by `handshake_timeout` and abandoned on shutdown.
/// Its own future (and nothing it holds) stays out of the session's idle state.
async fn handshake(
    tcp: TcpStream,
    node: &Node,
    over_limit: bool,
    shutdown: &CancellationToken,
) -> Option<WebSocketStream<TcpStream>> {
    let config = node.config();
    // The error type is tungstenite's, sized by its API.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &Request, resp: Response| {
        let origin = req.headers().get("origin").map(|o| o.as_bytes());
        if !config.origin_allowed(origin) {
            Err(refuse(StatusCode::FORBIDDEN, "origin not allowed"))
        } else if over_limit {
            Err(refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from this address",
            ))
        } else {
            Ok(resp)
        }
    };
    let accept = tokio_tungstenite::accept_hdr_async_with_config(
        tcp,
        callback,
        Some(config.websocket_config()),
    );
    // Boxed: the handshake's state is large and needed only until the upgrade.
    let accept = Box::pin(tokio::time::timeout(config.handshake_timeout, accept));
    let result = tokio::select! {
        // A connection still handshaking must not hold shutdown up.
        _ = shutdown.cancelled() => return None,
        r = accept => r,
    };
    match result {
        Ok(Ok(ws)) if !over_limit => Some(ws),
        _ => {
            node.metrics().handshakes_refused.fetch_add(1, Relaxed);
            None
        }
    }
}
