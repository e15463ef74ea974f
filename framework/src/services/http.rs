//! `run_service`: HTTP (axum) and the protocol WebSocket on one port. The upgrade
//! goes through hyper and the upgraded stream runs on the same session engine as
//! `run_websocket_service`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use uuid::Uuid;

use super::limits::IpLimiter;
use super::Service;
use crate::node::Node;

/// The emitter id of deliveries caused by the server API (`/api/*`): the nil
/// UUID, which no session ever has.
///
/// ```
/// assert!(framework::SERVER_EMITTER.is_nil());
/// ```
pub const SERVER_EMITTER: Uuid = Uuid::nil();

#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) node: Node,
    pub(crate) service: Service,
    pub(crate) shutdown: CancellationToken,
    /// Set when shutdown begins: health turns 503, upgrades are refused.
    pub(crate) draining: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) limiter: Arc<IpLimiter>,
}

/// The built-in routes, the user's routes merged in.
pub(crate) fn router(state: HttpState, user: Option<Router>) -> Router {
    let ws_path = state.node.config().websocket_path.clone();
    let builtin = Router::new()
        .route("/", get(landing))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .route("/api/publish", post(api_publish))
        .route("/api/send", post(api_send))
        .route("/api/broadcast", post(api_broadcast))
        .route(&ws_path, get(upgrade))
        .with_state(state);
    match user {
        Some(user) => builtin.merge(user),
        None => builtin,
    }
}

async fn landing(State(s): State<HttpState>) -> Html<String> {
    let path = &s.node.config().websocket_path;
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>framework</title></head><body>\
         <h1>framework real-time server</h1>\
         <p>Protocol v1 (binary FlatBuffers, file identifier <code>FWK1</code>) over WebSocket at \
         <code>{path}</code>.</p>\
         <p>Node <code>{}</code>. <a href=\"/healthz\">health</a> · <a href=\"/metrics\">metrics</a></p>\
         </body></html>",
        s.node.node_id()
    ))
}

async fn health(State(s): State<HttpState>) -> Response {
    let draining = s.draining.is_cancelled();
    let body = serde_json::json!({
        "status": if draining { "shutting_down" } else { "ok" },
        "node_id": s.node.node_id(),
        "sessions": s.node.metrics().sessions_active(),
        "uptime_seconds": s.node.uptime().as_secs_f64(),
    });
    let status = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(s): State<HttpState>) -> Response {
    match super::metrics::render(&s.node) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics encoding failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A server-API failure: a status and a JSON `{"error": ...}` body.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn api_error(status: StatusCode, message: &str) -> ApiError {
    ApiError(status, message.to_string())
}

/// Checks the API key; `Err` is the response to send.
fn authorize(node: &Node, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = node.config().api_key.as_deref() else {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            "the server API is disabled",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    match given {
        Some(g) if constant_time_eq::constant_time_eq(g.as_bytes(), key.as_bytes()) => Ok(()),
        _ => Err(api_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API key",
        )),
    }
}

#[derive(serde::Deserialize)]
struct ApiPublish {
    channel: String,
    #[serde(default)]
    payload: String,
}

#[derive(serde::Deserialize)]
struct ApiSend {
    receiver_id: Uuid,
    #[serde(default)]
    payload: String,
}

#[derive(serde::Deserialize)]
struct ApiBroadcast {
    #[serde(default)]
    payload: String,
}

fn decode_payload(b64: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| api_error(StatusCode::BAD_REQUEST, "payload is not valid base64"))
}

fn api_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| api_error(StatusCode::BAD_REQUEST, &e.to_string()))
}

fn delivered(result: Result<(), crate::broker::BrokerError>) -> Result<Response, ApiError> {
    match result {
        Ok(()) => Ok(Json(serde_json::json!({ "ok": true })).into_response()),
        Err(crate::broker::BrokerError::NotFound(_)) => {
            Err(api_error(StatusCode::NOT_FOUND, "no such session"))
        }
        Err(crate::broker::BrokerError::Unavailable(_)) => Err(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster broker is unavailable",
        )),
    }
}

async fn api_publish(
    State(s): State<HttpState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    authorize(&s.node, &headers)?;
    let req: ApiPublish = api_json(&body)?;
    crate::builtins::validate_channel(&req.channel)
        .map_err(|e| api_error(StatusCode::BAD_REQUEST, e.message()))?;
    let payload = decode_payload(&req.payload)?;
    let trace = Some(Uuid::new_v4());
    delivered(
        s.node
            .publish(&req.channel, &payload, SERVER_EMITTER, trace)
            .await,
    )
}

async fn api_send(
    State(s): State<HttpState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    authorize(&s.node, &headers)?;
    let req: ApiSend = api_json(&body)?;
    let payload = decode_payload(&req.payload)?;
    let trace = Some(Uuid::new_v4());
    delivered(
        s.node
            .send(req.receiver_id, &payload, SERVER_EMITTER, trace)
            .await,
    )
}

async fn api_broadcast(
    State(s): State<HttpState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    authorize(&s.node, &headers)?;
    let req: ApiBroadcast = api_json(&body)?;
    let payload = decode_payload(&req.payload)?;
    let trace = Some(Uuid::new_v4());
    delivered(s.node.broadcast(&payload, SERVER_EMITTER, trace).await)
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn refused(node: &Node, status: StatusCode, message: &'static str) -> Response {
    node.metrics().handshakes_refused.fetch_add(1, Relaxed);
    (status, message).into_response()
}

/// The RFC 6455 server handshake over hyper's upgrade.
async fn upgrade(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    let headers = req.headers();
    let config = s.node.config();
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        let mut r = refused(
            &s.node,
            StatusCode::UPGRADE_REQUIRED,
            "expected a WebSocket upgrade",
        );
        r.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return r;
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        // RFC 6455 §4.2.2: answer with the versions this server speaks.
        let mut r = refused(
            &s.node,
            StatusCode::UPGRADE_REQUIRED,
            "unsupported WebSocket version",
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    }
    let key = match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(k)
            if base64::engine::general_purpose::STANDARD
                .decode(k.as_bytes())
                .is_ok_and(|d| d.len() == 16) =>
        {
            k.clone()
        }
        _ => {
            return refused(
                &s.node,
                StatusCode::BAD_REQUEST,
                "missing or malformed Sec-WebSocket-Key",
            )
        }
    };
    if !config.origin_allowed(headers.get(header::ORIGIN).map(|o| o.as_bytes())) {
        return refused(&s.node, StatusCode::FORBIDDEN, "origin not allowed");
    }
    if s.draining.is_cancelled() {
        return refused(
            &s.node,
            StatusCode::SERVICE_UNAVAILABLE,
            "server shutting down",
        );
    }
    let Some(slot) = s.limiter.acquire(peer.ip()) else {
        return refused(
            &s.node,
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address",
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let ws_config = config.websocket_config();
    let (node, service, shutdown) = (s.node.clone(), s.service.clone(), s.shutdown.clone());
    s.tracker.spawn(async move {
        let session = match on_upgrade.await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config)).await;
                service.serve(ws, peer, node, shutdown)
            }
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        session.await;
        drop(slot);
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept = derive_accept_key(key.as_bytes());
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}

/// Accepts HTTP connections until `shutdown`, with a deadline on the request head.
pub(crate) async fn serve(listener: TcpListener, router: Router, state: HttpState) {
    let header_timeout = state.node.config().handshake_timeout;
    loop {
        let accepted = tokio::select! {
            _ = state.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let shutdown = state.shutdown.clone();
        let drain = state.node.config().shutdown_timeout;
        state.tracker.spawn(async move {
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    router.clone().oneshot(req.map(Body::new))
                },
            );
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
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
