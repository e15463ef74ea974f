//! The HTTP side of every listener: `run_service`'s routes (landing page, health,
//! metrics, the server API, the user's routes) and the WebSocket upgrade shared
//! by all services, which runs admission and hands the upgraded stream to the
//! session engine.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::FutureExt as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::Instrument;
use uuid::Uuid;

use super::accept::ConnInfo;
use super::admission::{Admitted, Refused};
use super::limits::ConnSlot;
use super::plain::PlainIo;
use super::{ProtocolSession, RawSession, Service, SessionKind, Shared};
use crate::node::Node;
use crate::session::FrameReader;

/// The emitter id of deliveries caused by the server API (`/api/*`): the nil
/// UUID, which no session ever has.
///
/// ```
/// assert!(framework::SERVER_EMITTER.is_nil());
/// ```
pub const SERVER_EMITTER: Uuid = Uuid::nil();

/// What a listener's routes share: the app's [`Shared`] and the service its
/// upgrades run.
#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) shared: Arc<Shared>,
    pub(crate) service: Service,
}

/// `run_service`'s routes: the built-ins, the protocol upgrade on the WebSocket
/// path, the user's routes merged in.
pub(crate) fn router(state: HttpState, user: Option<Router>) -> Router {
    let ws_path = state.shared.node.config().websocket_path.clone();
    let builtin = Router::new()
        .route("/", get(landing))
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/publish", post(api_publish))
        .route("/api/send", post(api_send))
        .route("/api/broadcast", post(api_broadcast))
        .route("/api/history", post(api_history))
        .route("/api/presence", post(api_presence))
        // GET: the HTTP/1.1 upgrade; CONNECT: HTTP/2's extended CONNECT.
        .route(&ws_path, get(upgrade).connect(upgrade))
        .with_state(state);
    match user {
        Some(user) => builtin.merge(user),
        None => builtin,
    }
}

/// A WebSocket-only listener (`run_websocket_service`, raw services): every path
/// upgrades.
pub(crate) fn upgrade_only(state: HttpState) -> Routes {
    Routes::Upgrade(state)
}

/// What answers the requests of a listener.
#[derive(Clone)]
pub(crate) enum Routes {
    /// `run_service`'s routes ([`router`]).
    Router(Router),
    /// A WebSocket-only listener: every request, whatever its method and path,
    /// goes to the upgrade handler, which answers it with the upgrade or its
    /// refusal. Called directly: a router whose only route is a fallback to it
    /// would do the same through its path lookup and three layers of futures,
    /// ~3,000 of the ~47,700 instructions a connection's opening cost.
    Upgrade(HttpState),
}

impl Routes {
    /// The response to `req`.
    pub(crate) fn answer(&self, req: Request) -> impl Future<Output = Response> + Send + 'static {
        use tower::ServiceExt as _;
        match self {
            Routes::Router(router) => Either::Left(router.clone().oneshot(req).map(
                |answered: Result<Response, std::convert::Infallible>| match answered {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
            )),
            Routes::Upgrade(state) => Either::Right(upgrade(State(state.clone()), req)),
        }
    }
}

async fn landing(State(HttpState { shared: s, .. }): State<HttpState>) -> Html<String> {
    let path = &s.node.config().websocket_path;
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>framework</title></head><body>\
         <h1>framework real-time server</h1>\
         <p>Protocol v1 (binary FlatBuffers, file identifier <code>FWK1</code>) over WebSocket at \
         <code>{path}</code>.</p>\
         <p>Node <code>{}</code>. <a href=\"/healthz\">health</a> · <a href=\"/readyz\">ready</a> · <a href=\"/metrics\">metrics</a></p>\
         </body></html>",
        s.node.node_id()
    ))
}

/// Liveness: 200 while the process serves, draining included (restarting a
/// draining node would only cut its sessions short); the body says how it is.
async fn health(State(HttpState { shared: s, .. }): State<HttpState>) -> Response {
    let draining = s.admission.draining.is_cancelled();
    let body = serde_json::json!({
        "status": if draining { "shutting_down" } else { "ok" },
        "node_id": s.node.node_id(),
        "sessions": s.node.metrics().sessions_active(),
        "uptime_seconds": s.node.uptime().as_secs_f64(),
    });
    Json(body).into_response()
}

/// Readiness: 503 while the node drains (shutdown began: `drain_grace`) or while
/// its broker cannot carry traffic (a cluster engine out of reach), so that a
/// load balancer sends new clients elsewhere; 200 otherwise.
async fn ready(State(HttpState { shared: s, .. }): State<HttpState>) -> Response {
    let (status, reason) = if s.admission.draining.is_cancelled() {
        (
            "shutting_down",
            Some("the node is shutting down".to_string()),
        )
    } else if let Err(e) = s.node.broker().ready() {
        ("unavailable", Some(e.to_string()))
    } else {
        ("ready", None)
    };
    let code = if reason.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = serde_json::json!({
        "status": status,
        "reason": reason,
        "node_id": s.node.node_id(),
    });
    (code, Json(body)).into_response()
}

async fn metrics(State(HttpState { shared: s, .. }): State<HttpState>) -> Response {
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
        .and_then(|v| {
            // RFC 7235: the scheme is case-insensitive.
            let (scheme, credentials) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credentials.trim())
        })
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

/// An API request's JSON body, read only once its key was checked, and read within
/// `max_api_body` bytes and `body_timeout`: a client that is not allowed in, or
/// that trickles, never gets a buffer held for it.
async fn api_body<T: serde::de::DeserializeOwned>(
    node: &Node,
    request: Request,
) -> Result<T, ApiError> {
    let (parts, body) = request.into_parts();
    authorize(node, &parts.headers)?;
    let config = node.config();
    let limit = config.max_api_body;
    let read = axum::body::to_bytes(body, limit);
    let bytes = match tokio::time::timeout(config.body_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return Err(api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is over {limit} bytes (max_api_body)"),
            ))
        }
        Err(_) => {
            return Err(api_error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive within body_timeout",
            ))
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| api_error(StatusCode::BAD_REQUEST, &e.to_string()))
}

/// A W3C `traceparent` (Trace Context level 1): its trace id, parent span id and
/// whether the caller sampled it. `None` for anything the specification says to
/// ignore: a malformed value, version `ff`, an all-zero trace or parent id,
/// upper-case hex, or a version `00` header with more after the flags. A later
/// version is read for these four fields.
fn parse_traceparent(value: &str) -> Option<(Uuid, u64, bool)> {
    fn hex(s: &str) -> Option<u128> {
        let lower = s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !lower || s.is_empty() {
            return None;
        }
        u128::from_str_radix(s, 16).ok()
    }
    let b = value.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let version = hex(value.get(0..2)?)?;
    if version == 0xff || (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
        return None;
    }
    let trace = hex(value.get(3..35)?)?;
    let parent = hex(value.get(36..52)?)? as u64;
    let flags = hex(value.get(53..55)?)?;
    (trace != 0 && parent != 0).then(|| (Uuid::from_u128(trace), parent, flags & 1 == 1))
}

/// The trace of a server-API request: the trace id of its `traceparent` header
/// when it has exactly one valid one, else a new one; and the request's `api`
/// span (see [`crate::dispatch::TRACE_TARGET`]), continuing that trace.
fn api_trace(path: &'static str, headers: &HeaderMap) -> (Uuid, tracing::Span) {
    let mut values = headers.get_all("traceparent").iter();
    let parent = match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok().and_then(|v| parse_traceparent(v.trim())),
        _ => None,
    };
    let trace_id = parent.map_or_else(crate::dispatch::trace::new_trace_id, |(trace, _, _)| trace);
    let span = crate::dispatch::trace::api_span(
        path,
        trace_id,
        parent.map(|(_, parent, sampled)| (parent, sampled)),
    );
    (trace_id, span)
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
    State(HttpState { shared: s, .. }): State<HttpState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (trace, span) = api_trace("/api/publish", request.headers());
    async move {
        let req: ApiPublish = api_body(&s.node, request).await?;
        crate::builtins::validate_channel(&req.channel)
            .map_err(|e| api_error(StatusCode::BAD_REQUEST, e.message()))?;
        let payload = decode_payload(&req.payload)?;
        let position = s
            .node
            .publish(&req.channel, &payload, SERVER_EMITTER, Some(trace))
            .await;
        match position {
            Ok(Some(p)) => Ok(Json(serde_json::json!({
                "ok": true,
                "offset": p.offset,
                "epoch": p.epoch,
            }))
            .into_response()),
            other => delivered(other.map(|_| ())),
        }
    }
    .instrument(span)
    .await
}

#[derive(serde::Deserialize)]
struct ApiHistory {
    channel: String,
    #[serde(default)]
    since: u64,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(serde::Deserialize)]
struct ApiPresence {
    channel: String,
}

fn channel_failed(e: crate::node::ChannelError) -> ApiError {
    match e {
        crate::node::ChannelError::Broker(b) => match delivered(Err(b)) {
            Err(e) => e,
            Ok(_) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "unexpected"),
        },
        other => api_error(StatusCode::BAD_REQUEST, &other.to_string()),
    }
}

async fn api_history(
    State(HttpState { shared: s, .. }): State<HttpState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (_, span) = api_trace("/api/history", request.headers());
    history(s, request).instrument(span).await
}

async fn history(s: Arc<Shared>, request: Request) -> Result<Response, ApiError> {
    let req: ApiHistory = api_body(&s.node, request).await?;
    crate::builtins::validate_channel(&req.channel)
        .map_err(|e| api_error(StatusCode::BAD_REQUEST, e.message()))?;
    let limit = req
        .limit
        .filter(|l| *l > 0)
        .unwrap_or(crate::node::MAX_HISTORY_PAGE);
    let slice = s
        .node
        .history(&req.channel, req.since, limit)
        .await
        .map_err(channel_failed)?;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let publications: Vec<serde_json::Value> = slice
        .publications
        .iter()
        .filter_map(|bytes| {
            let f = crate::protocol::Frame::decode(bytes.clone(), &Default::default()).ok()?;
            Some(serde_json::json!({
                "offset": f.offset(),
                "payload": b64.encode(f.payload()),
                "emitter_id": f.emitter_id(),
                "user_id": f.user_id().unwrap_or_default(),
                "trace_id": f.trace_id(),
            }))
        })
        .collect();
    Ok(Json(serde_json::json!({
        "epoch": slice.position.epoch,
        "offset": slice.position.offset,
        "publications": publications,
    }))
    .into_response())
}

async fn api_presence(
    State(HttpState { shared: s, .. }): State<HttpState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (_, span) = api_trace("/api/presence", request.headers());
    presence(s, request).instrument(span).await
}

async fn presence(s: Arc<Shared>, request: Request) -> Result<Response, ApiError> {
    let req: ApiPresence = api_body(&s.node, request).await?;
    crate::builtins::validate_channel(&req.channel)
        .map_err(|e| api_error(StatusCode::BAD_REQUEST, e.message()))?;
    let entries = s
        .node
        .presence(&req.channel)
        .await
        .map_err(channel_failed)?;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let users: std::collections::HashSet<&str> = entries
        .iter()
        .map(|e| e.user_id.as_str())
        .filter(|u| !u.is_empty())
        .collect();
    let clients: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "session_id": e.session,
                "user_id": e.user_id,
                "node_id": e.node,
                "info": b64.encode(&e.info),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "num_clients": entries.len(),
        "num_users": users.len(),
        "clients": clients,
    }))
    .into_response())
}

async fn api_send(
    State(HttpState { shared: s, .. }): State<HttpState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (trace, span) = api_trace("/api/send", request.headers());
    async move {
        let req: ApiSend = api_body(&s.node, request).await?;
        let payload = decode_payload(&req.payload)?;
        delivered(
            s.node
                .send(req.receiver_id, &payload, SERVER_EMITTER, Some(trace))
                .await,
        )
    }
    .instrument(span)
    .await
}

async fn api_broadcast(
    State(HttpState { shared: s, .. }): State<HttpState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (trace, span) = api_trace("/api/broadcast", request.headers());
    async move {
        let req: ApiBroadcast = api_body(&s.node, request).await?;
        let payload = decode_payload(&req.payload)?;
        delivered(
            s.node
                .broadcast(&payload, SERVER_EMITTER, Some(trace))
                .await,
        )
    }
    .instrument(span)
    .await
}

pub(crate) fn refused(r: Refused) -> Response {
    let mut response = (r.status, r.message).into_response();
    for (name, value) in r.headers {
        response.headers_mut().insert(name, value);
    }
    response
}

/// The WebSocket handshake over hyper's upgrade, after admission: RFC 6455 on
/// HTTP/1.1 (`101 Switching Protocols`), RFC 8441 on HTTP/2 (an extended
/// `CONNECT` answered `200`, the WebSocket then running on that stream).
async fn upgrade(State(state): State<HttpState>, mut req: Request) -> Response {
    let Some(info) = req.extensions().get::<ConnInfo>().cloned() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let shared = state.shared;
    let peer = info.peer;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _) = req.into_parts();
    let h2 = parts.version == http::Version::HTTP_2;
    let admitted = shared
        .admission
        .admit(parts, peer, state.service.runs_hooks())
        .await;
    let Admitted { key, extensions } = match admitted {
        Ok(a) => a,
        Err(r) => return refused(r),
    };
    let slot = if h2 {
        // One HTTP/2 connection carries many streams: each WebSocket on it counts
        // against the connection limits as a connection of its own.
        match shared.admission.slot(peer.ip()) {
            Ok(slot) => match Arc::try_unwrap(slot) {
                Ok(slot) => slot,
                Err(slot) => slot.duplicate(),
            },
            Err(r) => return refused(r),
        }
    } else {
        // The session's own per-IP slot (the connection's goes with hyper's task).
        info.slot.duplicate()
    };
    match state.service {
        Service::Protocol(d) => {
            let kind = ProtocolSession(d);
            spawn_session(&shared, on_upgrade, peer, slot, kind, extensions)
        }
        Service::Raw(h) => {
            spawn_session(&shared, on_upgrade, peer, slot, RawSession(h), extensions)
        }
    }
    let Some(key) = key else {
        // RFC 8441 §5: the extended CONNECT is answered 200, no key is derived.
        return StatusCode::OK.into_response();
    };
    if let Some(hold) = &info.hold {
        // Plain HTTP/1: the 101 goes out with the session's first write.
        hold.set();
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key(key.as_bytes()));
    response
}

/// RFC 6455 §4.2.2: `Sec-WebSocket-Accept` is the base64 of the SHA-1 of the
/// client's key followed by the protocol's GUID; encoded on the stack, so the
/// header value is the upgrade's only allocation for it.
fn accept_key(key: &[u8]) -> HeaderValue {
    use sha1::Digest as _;
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha1 = sha1::Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    let digest = sha1.finalize();
    let mut encoded = [0u8; 28];
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(digest, &mut encoded)
        .expect("20 bytes are 28 in base64");
    HeaderValue::from_bytes(&encoded[..n]).expect("base64 is a valid header value")
}

/// The session of an upgrade that is not a plain TCP stream: TLS over TCP
/// (HTTP/1.1), or hyper's stream of an HTTP/2 connection. Either is split with
/// `tokio::io::split`: the session reads one half, its writer writes the other.
/// Spawns the session of a connection being upgraded. The task is the session
/// itself once the upgrade completes: what waits for the upgrade is replaced by
/// the session in place (no async block keeps its captures beside the session
/// for the session's lifetime).
fn spawn_session<K: SessionKind>(
    shared: &Arc<Shared>,
    on_upgrade: hyper::upgrade::OnUpgrade,
    peer: SocketAddr,
    slot: ConnSlot,
    kind: K,
    extensions: http::Extensions,
) {
    let session_shared = shared.clone();
    shared.tracker.spawn(
        on_upgrade.then(move |upgraded| {
            session_of(upgraded, peer, slot, kind, session_shared, extensions)
        }),
    );
}

/// The session of an upgraded connection, to run as its task. A plain TCP
/// session's future is the session itself; TLS and HTTP/2 sessions (and a
/// failed upgrade) are boxed, so a plain session's task stays its own size.
fn session_of(
    upgraded: hyper::Result<hyper::upgrade::Upgraded>,
    peer: SocketAddr,
    slot: ConnSlot,
    kind: impl SessionKind,
    shared: Arc<Shared>,
    extensions: http::Extensions,
) -> impl Future<Output = ()> + Send + 'static {
    type Tls = tokio_rustls::server::TlsStream<TcpStream>;
    let upgraded = match upgraded {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return Either::Left(Box::pin(std::future::ready(())) as BoxedSession);
        }
    };
    // The per-IP slot lives as long as the session.
    let conn = super::new_connection(&shared.node, peer, slot.charge());
    let opening = Opening {
        conn,
        slot,
        kind,
        shared,
        extensions,
    };
    let upgraded = match upgraded.downcast::<TokioIo<PlainIo>>() {
        // Back to the plain TCP stream: the session then reads the socket
        // without hyper in between, replaying what hyper read ahead (if any),
        // and its first write leads with the 101 hyper wrote (held back).
        Ok(parts) => {
            let (tcp, response) = parts.io.into_inner().into_parts();
            let (read, write) = tcp.into_split();
            opening.conn.hint_socket(write.as_ref());
            let (read, write) = (
                super::plain::TcpReader::new(read),
                super::plain::TcpWriter::new(write),
            );
            return Either::Right(opening.start(read, write, parts.read_buf, response));
        }
        Err(upgraded) => upgraded,
    };
    let session: BoxedSession = match upgraded.downcast::<TokioIo<Tls>>() {
        Ok(parts) => {
            let (read, write) = tokio::io::split(parts.io.into_inner());
            Box::pin(opening.start(read, write, parts.read_buf, None))
        }
        Err(upgraded) => {
            // HTTP/2: hyper reads the stream's DATA frames; nothing was read ahead.
            let (read, write) = tokio::io::split(TokioIo::new(upgraded));
            Box::pin(opening.start(read, write, Bytes::new(), None))
        }
    };
    Either::Left(session)
}

/// A session's future behind a box (see [`session_of`]).
type BoxedSession = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a session opens with, whatever its transport.
struct Opening<K> {
    conn: crate::session::Connection,
    slot: ConnSlot,
    kind: K,
    shared: Arc<Shared>,
    extensions: http::Extensions,
}

impl<K: SessionKind> Opening<K> {
    /// Opens the session of an upgraded stream split into `read` and `write`,
    /// after `read_ahead` (what hyper read past the request head), and returns
    /// its future; `response` (the 101, when it was held back) is written first.
    fn start<R, W>(
        self,
        read: R,
        write: W,
        read_ahead: Bytes,
        response: Option<bytes::BytesMut>,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        R: crate::session::SessionRead + Send + 'static,
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let config = self.shared.node.config();
        let stream = FrameReader::new(
            read,
            &read_ahead,
            self.conn.clone(),
            config.read_buffer_size,
            config.max_message_size,
        );
        if let Some(response) = response {
            self.conn.queue_preface(response);
        }
        let session = super::open_session(stream, write, self.conn, self.slot, self.extensions);
        self.kind.run(session, self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::{accept_key, parse_traceparent};

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // RFC 6455 §1.3's example.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ==").as_bytes(),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        // The same as tungstenite's derivation (what clients check against).
        for key in ["x3JJHMbDL1EzLkh9GBhXDw==", "AQIDBAUGBwgJCgsMDQ4PEA==", ""] {
            assert_eq!(
                accept_key(key.as_bytes()).as_bytes(),
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
                    .as_bytes(),
                "{key:?}"
            );
        }
    }

    #[test]
    fn traceparent_is_read_as_w3c_trace_context_says() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (trace, parent, sampled) = parse_traceparent(tp).expect("valid");
        assert_eq!(
            trace.simple().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent, 0x00f0_67aa_0ba9_02b7);
        assert!(sampled);
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(parse_traceparent(unsampled).map(|t| t.2), Some(false));
        // A later version: the first four fields, whatever follows.
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert!(parse_traceparent(later).is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
    }
}
