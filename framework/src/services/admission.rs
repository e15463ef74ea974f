//! The one admission policy of every service: a connection slot (per IP and per
//! node) taken for the client when the TCP connection is accepted (for each
//! request, behind a trusted proxy: see [`proxy`](super::proxy)), then, on the
//! upgrade request, the handshake
//! headers, the Origin allowlist, draining, and (protocol services) the
//! application's `on_connect` hooks. Every refusal is an HTTP status before the
//! WebSocket exists, and is counted.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use base64::Engine;
use tokio_util::sync::CancellationToken;

use super::limits::{ConnLimiter, ConnSlot, OverLimit};
use crate::dispatch::hooks::{Handshake, Refusal};
use crate::dispatch::Hooks;
use crate::node::Node;

/// What a connection was admitted with: its `Sec-WebSocket-Key` (none on
/// HTTP/2, RFC 8441) and the values the `on_connect` hooks attached.
pub(crate) struct Admitted {
    pub(crate) key: Option<HeaderValue>,
    pub(crate) extensions: http::Extensions,
}

/// Why an upgrade is refused: the status, a short body, and extra headers.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Refused {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    fn with_header(mut self, name: header::HeaderName, value: &'static str) -> Self {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }
}

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Self {
        Self::new(r.status(), r.message())
    }
}

/// The admission policy shared by every listener of an app.
pub(crate) struct Admission {
    pub(crate) node: Node,
    limiter: Arc<ConnLimiter>,
    /// Set when shutdown begins: upgrades are refused with 503.
    pub(crate) draining: CancellationToken,
    hooks: Hooks,
    /// Who may name the client of a connection or request.
    pub(crate) proxies: super::proxy::Proxies,
}

impl Admission {
    pub(crate) fn new(node: Node, draining: CancellationToken, hooks: Hooks) -> Self {
        let config = node.config();
        let limiter = ConnLimiter::new(
            config.max_connections_per_ip,
            config.max_connections,
            node.memory_budget().clone(),
        );
        Self {
            proxies: super::proxy::Proxies::new(config),
            node,
            limiter,
            draining,
            hooks,
        }
    }

    /// A slot for a new TCP connection, or the refusal every request on it gets:
    /// 429 over the per-IP limit, 503 over the node's. Refusals are counted here,
    /// once per connection.
    pub(crate) fn slot(&self, ip: IpAddr) -> Result<Arc<ConnSlot>, Refused> {
        self.limiter.acquire(ip).map(Arc::new).map_err(|over| {
            self.count_refusal();
            match over {
                OverLimit::PerIp => Refused::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from this address",
                ),
                OverLimit::Total => {
                    Refused::new(StatusCode::SERVICE_UNAVAILABLE, "the server is full")
                }
            }
        })
    }

    /// Counts a refused connection.
    pub(crate) fn count_refusal(&self) {
        self.node.metrics().handshakes_refused.fetch_add(1, Relaxed);
    }

    /// Checks an upgrade request; runs the `on_connect` hooks when `hooks` is set
    /// (protocol services). `parts` is moved into the hooks' [`Handshake`].
    pub(crate) async fn admit(
        &self,
        parts: http::request::Parts,
        peer: SocketAddr,
        hooks: bool,
    ) -> Result<Admitted, Refused> {
        let result = self.check(parts, peer, hooks).await;
        if result.is_err() {
            self.count_refusal();
        }
        result
    }

    async fn check(
        &self,
        parts: http::request::Parts,
        peer: SocketAddr,
        hooks: bool,
    ) -> Result<Admitted, Refused> {
        let key = if parts.version == http::Version::HTTP_2 {
            extended_connect(&parts)?;
            None
        } else if parts.method != http::Method::GET {
            // RFC 6455 §4.2.1: the opening handshake is a GET.
            return Err(Refused::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "a WebSocket upgrade is a GET request",
            )
            .with_header(header::ALLOW, "GET"));
        } else {
            Some(websocket_key(&parts.headers)?)
        };
        if !self.origin_allowed(&parts.headers) {
            return Err(Refused::new(StatusCode::FORBIDDEN, "origin not allowed"));
        }
        if self.draining.is_cancelled() {
            return Err(Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server shutting down",
            ));
        }
        let deadline = self.node.config().handshake_timeout;
        let mut extensions = http::Extensions::new();
        if let (true, Some(verifier)) = (hooks, self.node.verifier()) {
            match upgrade_token(&parts) {
                Some(token) => {
                    match tokio::time::timeout(deadline, verifier.verify(&token)).await {
                        Ok(Ok(identity)) => {
                            let slot = self.node.user_slot(identity.user_id()).map_err(|e| {
                                Refused::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
                            })?;
                            extensions.insert(slot);
                            extensions.insert(identity);
                        }
                        // A client that presented credentials is never silently anonymous.
                        Ok(Err(e)) => {
                            return Err(Refused::new(StatusCode::UNAUTHORIZED, e.to_string()))
                        }
                        Err(_) => {
                            return Err(Refused::new(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "handshake timed out",
                            ))
                        }
                    }
                }
                None if verifier.required() => {
                    return Err(Refused::new(
                        StatusCode::UNAUTHORIZED,
                        "a token is required (Authorization: Bearer, or ?token=)",
                    ))
                }
                None => {}
            }
        }
        let extensions = if hooks && !self.hooks.connect.is_empty() {
            let mut handshake = Handshake::new(parts, peer, self.node.clone());
            handshake.extensions = extensions;
            match tokio::time::timeout(deadline, self.hooks.connect(handshake)).await {
                Ok(result) => result?,
                Err(_) => {
                    tracing::warn!(%peer, "on_connect hooks did not finish within the handshake timeout");
                    return Err(Refused::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "handshake timed out",
                    ));
                }
            }
        } else {
            extensions
        };
        Ok(Admitted { key, extensions })
    }

    /// Every `Origin` header must be allowed (a request with two is judged by
    /// both, so a second header cannot smuggle a refused origin in).
    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let config = self.node.config();
        let mut origins = headers.get_all(header::ORIGIN).iter().peekable();
        if origins.peek().is_none() {
            return config.origin_allowed(None);
        }
        origins.all(|o| config.origin_allowed(Some(o.as_bytes())))
    }
}

/// The token of an upgrade request: `Authorization: Bearer <jwt>` (scheme in any
/// case), else the `token` query parameter (browsers cannot set headers on
/// WebSocket requests).
fn upgrade_token(parts: &http::request::Parts) -> Option<String> {
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    bearer.or_else(|| {
        let query = parts.uri.query()?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
        pairs
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
    })
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// An HTTP/2 WebSocket (RFC 8441 §4, §5): an extended `CONNECT` with the
/// `:protocol` pseudo-header `websocket`, and version 13.
fn extended_connect(parts: &http::request::Parts) -> Result<(), Refused> {
    let protocol = parts.extensions.get::<hyper::ext::Protocol>();
    if parts.method != http::Method::CONNECT
        || !protocol.is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
    {
        return Err(Refused::new(
            StatusCode::BAD_REQUEST,
            "expected an extended CONNECT with :protocol websocket (RFC 8441)",
        ));
    }
    if parts
        .headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(
            Refused::new(StatusCode::BAD_REQUEST, "unsupported WebSocket version")
                .with_header(header::SEC_WEBSOCKET_VERSION, "13"),
        );
    }
    Ok(())
}

/// RFC 6455 §4.2.1: the key is 16 bytes, base64-encoded: 24 characters, the
/// last two `=`. Decoded on the stack (no allocation per upgrade).
fn is_websocket_key(key: &[u8]) -> bool {
    let mut decoded = [0u8; 18];
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode_slice(key, &mut decoded)
            .is_ok_and(|n| n == 16)
}

/// The RFC 6455 handshake headers: an upgrade to `websocket`, version 13, and a
/// 16-byte base64 key (returned).
fn websocket_key(headers: &HeaderMap) -> Result<HeaderValue, Refused> {
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(
            Refused::new(StatusCode::UPGRADE_REQUIRED, "expected a WebSocket upgrade")
                .with_header(header::UPGRADE, "websocket"),
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        // RFC 6455 §4.2.2: answer with the versions this server speaks.
        return Err(Refused::new(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported WebSocket version",
        )
        .with_header(header::SEC_WEBSOCKET_VERSION, "13"));
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(k) if is_websocket_key(k.as_bytes()) => Ok(k.clone()),
        _ => Err(Refused::new(
            StatusCode::BAD_REQUEST,
            "missing or malformed Sec-WebSocket-Key",
        )),
    }
}
