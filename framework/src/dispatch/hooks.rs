//! Session lifecycle hooks: `on_connect` runs on the upgrade request before the
//! WebSocket exists (it may refuse the connection with an HTTP status or attach
//! data to it), `on_disconnect` after the session ended. Both are plain functions
//! of extractors, sync or async, like handlers. This is where custom
//! authentication lives.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::{HeaderMap, StatusCode, Uri};

use super::extract::StateNeed;
use super::reply::{AsyncReply, SyncReply};
use super::{Extension, HandlerError, State};
use crate::node::{Identity, Node};
use crate::protocol::ErrorCode;
use crate::session::Connection;

/// The upgrade request an `on_connect` hook sees, and the values attached to the
/// coming connection so far (by earlier hooks).
///
/// ```
/// use framework::dispatch::hooks::Handshake;
/// fn log(handshake: &Handshake) {
///     println!("{} asks for {}", handshake.peer_addr(), handshake.uri());
/// }
/// ```
pub struct Handshake {
    pub(crate) parts: http::request::Parts,
    pub(crate) peer: SocketAddr,
    pub(crate) node: Node,
    pub(crate) extensions: http::Extensions,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("uri", &self.parts.uri)
            .field("peer", &self.peer)
            .finish()
    }
}

impl Handshake {
    pub(crate) fn new(parts: http::request::Parts, peer: SocketAddr, node: Node) -> Self {
        Self {
            parts,
            peer,
            node,
            extensions: http::Extensions::new(),
        }
    }

    /// The request's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    /// The request's URI (path and query).
    pub fn uri(&self) -> &Uri {
        &self.parts.uri
    }

    /// The raw query string, if any (browsers pass tokens there: `?token=...`).
    pub fn query(&self) -> Option<&str> {
        self.parts.uri.query()
    }

    /// The client's address: the TCP peer, or, behind a trusted proxy
    /// (`trusted_proxies`), the client it names (port 0 when it gives none).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The node the connection will belong to.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// A clone of a value attached by an earlier hook.
    pub fn extension<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.extensions.get::<T>().cloned()
    }

    /// Attaches `value` to the coming connection.
    pub fn insert_extension<T: Clone + Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        self.extensions.insert(value)
    }
}

/// An `on_connect` hook's refusal: the HTTP status (and a short body) the upgrade
/// is answered with; the WebSocket never exists.
///
/// ```
/// use framework::dispatch::hooks::Refusal;
/// let r = Refusal::unauthorized("a token is required");
/// assert_eq!(r.status(), http::StatusCode::UNAUTHORIZED);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Refusal {
    status: StatusCode,
    message: Cow<'static, str>,
}

impl Refusal {
    /// A refusal with `status` and a client-visible `message`.
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    /// 401.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    /// 403.
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    /// 400.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 500, with a generic message (details belong in the server's logs).
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The body sent with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StatusCode> for Refusal {
    fn from(status: StatusCode) -> Self {
        let message = status.canonical_reason().unwrap_or("refused");
        Self::new(status, message)
    }
}

/// A handler error at the upgrade: `Unauthorized` → 401, `Forbidden` → 403,
/// `RateLimited` → 429, `InvalidArgument`/`BadPayload` → 400, `Unavailable` →
/// 503, anything else → 500.
impl From<HandlerError> for Refusal {
    fn from(e: HandlerError) -> Self {
        let status = match e.code() {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::InvalidArgument | ErrorCode::BadPayload => StatusCode::BAD_REQUEST,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.message().to_string())
    }
}

/// An `on_connect` hook argument, extracted from the [`Handshake`]; an error
/// refuses the connection.
///
/// ```
/// use framework::dispatch::hooks::{FromHandshake, Handshake, Refusal};
///
/// struct ApiVersion(u32);
///
/// impl FromHandshake for ApiVersion {
///     async fn from_handshake(h: &Handshake) -> Result<Self, Refusal> {
///         h.headers()
///             .get("x-api-version")
///             .and_then(|v| v.to_str().ok()?.parse().ok())
///             .map(ApiVersion)
///             .ok_or_else(|| Refusal::bad_request("x-api-version is required"))
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an `on_connect` hook argument",
    note = "on_connect arguments are HeaderMap, Uri, PeerAddr, Query<T>, Node, State<T>, Extension<T> (attached by an earlier hook), Option<T> of those, or types implementing FromHandshake"
)]
pub trait FromHandshake: Sized + Send + 'static {
    /// Extracts the argument.
    fn from_handshake(handshake: &Handshake) -> impl Future<Output = Result<Self, Refusal>> + Send;

    /// Shared state this extractor cannot work without (checked at start-up).
    #[doc(hidden)]
    fn state_need() -> Option<StateNeed> {
        None
    }
}

/// The client's address: the TCP peer, or, behind a trusted proxy
/// (`trusted_proxies`), the client it names (port 0 when it gives none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The query string's parameters, deserialized (`?token=abc&room=1`); a query
/// that does not deserialize refuses the connection with 400.
///
/// ```
/// use framework::dispatch::hooks::{Query, Refusal};
///
/// #[derive(serde::Deserialize)]
/// struct Params { token: String }
///
/// fn check(Query(p): Query<Params>) -> Result<(), Refusal> {
///     if p.token == "secret" { Ok(()) } else { Err(Refusal::unauthorized("bad token")) }
/// }
/// let _ = framework::App::new().on_connect(check);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<T>(pub T);

impl FromHandshake for HeaderMap {
    async fn from_handshake(h: &Handshake) -> Result<Self, Refusal> {
        Ok(h.headers().clone())
    }
}

impl FromHandshake for Uri {
    async fn from_handshake(h: &Handshake) -> Result<Self, Refusal> {
        Ok(h.uri().clone())
    }
}

impl FromHandshake for PeerAddr {
    async fn from_handshake(h: &Handshake) -> Result<Self, Refusal> {
        Ok(PeerAddr(h.peer))
    }
}

/// The identity of the upgrade's token (verified before the hooks run); 401 when
/// the connection is anonymous (take `Option<Identity>` to allow both).
impl FromHandshake for Identity {
    async fn from_handshake(h: &Handshake) -> Result<Self, Refusal> {
        h.extension::<Identity>()
            .ok_or_else(|| Refusal::unauthorized("authentication required"))
    }
}

impl FromHandshake for Node {
    async fn from_handshake(h: &Handshake) -> Result<Self, Refusal> {
        Ok(h.node.clone())
    }
}

impl<T: serde::de::DeserializeOwned + Send + 'static> FromHandshake for Query<T> {
    async fn from_handshake(h: &Handshake) -> Result<Self, Refusal> {
        serde_urlencoded::from_str(h.query().unwrap_or(""))
            .map(Query)
            .map_err(|e| Refusal::bad_request(format!("bad query string: {e}")))
    }
}

impl<T: Send + Sync + 'static> FromHandshake for State<T> {
    async fn from_handshake(h: &Handshake) -> Result<Self, Refusal> {
        State::from_node(&h.node).map_err(Refusal::from)
    }
    fn state_need() -> Option<StateNeed> {
        Some(StateNeed {
            type_id: std::any::TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
        })
    }
}

impl<T: Clone + Send + Sync + 'static> FromHandshake for Extension<T> {
    async fn from_handshake(h: &Handshake) -> Result<Self, Refusal> {
        h.extension::<T>().map(Extension).ok_or_else(|| {
            tracing::error!(
                extension = std::any::type_name::<T>(),
                "on_connect hook asks for an extension no earlier hook attached"
            );
            Refusal::internal()
        })
    }
}

/// `None` where the extractor would have refused.
impl<T: FromHandshake> FromHandshake for Option<T> {
    async fn from_handshake(h: &Handshake) -> Result<Self, Refusal> {
        Ok(T::from_handshake(h).await.ok())
    }
}

/// What an `on_connect` hook returns: `()` accepts, [`Extension<T>`] accepts and
/// attaches the value, a [`Refusal`] (or `Err(e)` with `e: Into<Refusal>`) refuses.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an `on_connect` hook's return type",
    note = "return `()`, `Extension<T>` (attaches T), `Refusal`, or `Result<T, E>` of those where `E: Into<Refusal>`"
)]
pub trait ConnectResult: Send + 'static {
    /// Applies the outcome to the coming connection.
    fn apply(self, handshake: &mut Handshake) -> Result<(), Refusal>;
}

impl ConnectResult for () {
    fn apply(self, _: &mut Handshake) -> Result<(), Refusal> {
        Ok(())
    }
}

impl<T: Clone + Send + Sync + 'static> ConnectResult for Extension<T> {
    fn apply(self, handshake: &mut Handshake) -> Result<(), Refusal> {
        handshake.insert_extension(self.0);
        Ok(())
    }
}

impl ConnectResult for Refusal {
    fn apply(self, _: &mut Handshake) -> Result<(), Refusal> {
        Err(self)
    }
}

impl<T: ConnectResult, E: Into<Refusal> + Send + 'static> ConnectResult for Result<T, E> {
    fn apply(self, handshake: &mut Handshake) -> Result<(), Refusal> {
        self.map_err(Into::into)?.apply(handshake)
    }
}

/// A disconnect hook argument: what is left of the session when it ended.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an `on_disconnect` hook argument",
    note = "on_disconnect arguments are Connection, Node, State<T>, Extension<T>, Option<T> of those, or types implementing FromSession"
)]
pub trait FromSession: Sized + Send + 'static {
    /// Extracts the argument; `None` skips the hook (logged).
    fn from_session(conn: &Connection, node: &Node) -> Option<Self>;

    /// Shared state this extractor cannot work without (checked at start-up).
    #[doc(hidden)]
    fn state_need() -> Option<StateNeed> {
        None
    }
}

impl FromSession for Connection {
    fn from_session(conn: &Connection, _: &Node) -> Option<Self> {
        Some(conn.clone())
    }
}

impl FromSession for Identity {
    fn from_session(conn: &Connection, _: &Node) -> Option<Self> {
        conn.extension::<Identity>()
    }
}

impl FromSession for Node {
    fn from_session(_: &Connection, node: &Node) -> Option<Self> {
        Some(node.clone())
    }
}

impl<T: Send + Sync + 'static> FromSession for State<T> {
    fn from_session(_: &Connection, node: &Node) -> Option<Self> {
        State::from_node(node).ok()
    }
    fn state_need() -> Option<StateNeed> {
        Some(StateNeed {
            type_id: std::any::TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
        })
    }
}

impl<T: Clone + Send + Sync + 'static> FromSession for Extension<T> {
    fn from_session(conn: &Connection, _: &Node) -> Option<Self> {
        conn.extension::<T>().map(Extension)
    }
}

impl<T: FromSession> FromSession for Option<T> {
    fn from_session(conn: &Connection, node: &Node) -> Option<Self> {
        Some(T::from_session(conn, node))
    }
}

/// What an `on_connect` hook function returns, sync or async.
#[doc(hidden)]
pub trait ConnectOutcome<M>: Send + 'static {
    fn into_future(self) -> BoxFuture<'static, Result<Box<dyn ApplyConnect>, Refusal>>;
}

/// A type-erased [`ConnectResult`].
#[doc(hidden)]
pub trait ApplyConnect: Send {
    fn apply_boxed(self: Box<Self>, handshake: &mut Handshake) -> Result<(), Refusal>;
}

impl<R: ConnectResult> ApplyConnect for R {
    fn apply_boxed(self: Box<Self>, handshake: &mut Handshake) -> Result<(), Refusal> {
        (*self).apply(handshake)
    }
}

impl<R: ConnectResult> ConnectOutcome<SyncReply> for R {
    fn into_future(self) -> BoxFuture<'static, Result<Box<dyn ApplyConnect>, Refusal>> {
        Box::pin(std::future::ready(Ok(
            Box::new(self) as Box<dyn ApplyConnect>
        )))
    }
}

impl<F> ConnectOutcome<AsyncReply> for F
where
    F: Future + Send + 'static,
    F::Output: ConnectResult,
{
    fn into_future(self) -> BoxFuture<'static, Result<Box<dyn ApplyConnect>, Refusal>> {
        Box::pin(async move { Ok(Box::new(self.await) as Box<dyn ApplyConnect>) })
    }
}

/// What an `on_disconnect` hook function returns: `()`, or a future of `()`.
#[doc(hidden)]
pub trait DisconnectOutcome<M>: Send + 'static {
    fn into_future(self) -> BoxFuture<'static, ()>;
}

impl DisconnectOutcome<SyncReply> for () {
    fn into_future(self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }
}

impl<F: Future<Output = ()> + Send + 'static> DisconnectOutcome<AsyncReply> for F {
    fn into_future(self) -> BoxFuture<'static, ()> {
        Box::pin(self)
    }
}

/// A function that runs when a connection asks to upgrade: its arguments are
/// [`FromHandshake`] extractors, it returns a [`ConnectResult`] (or a future of
/// one). Hooks run in order; the first refusal answers the upgrade.
///
/// ```
/// use framework::dispatch::{hooks::Refusal, Extension};
/// use http::HeaderMap;
///
/// #[derive(Clone)]
/// struct User(String);
///
/// async fn authenticate(headers: HeaderMap) -> Result<Extension<User>, Refusal> {
///     match headers.get("x-user").and_then(|v| v.to_str().ok()) {
///         Some(name) => Ok(Extension(User(name.to_string()))),
///         None => Err(Refusal::unauthorized("who are you?")),
///     }
/// }
/// let _ = framework::App::new().on_connect(authenticate);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an `on_connect` hook",
    note = "an on_connect hook is a sync or async function of FromHandshake extractors (HeaderMap, Uri, PeerAddr, Query<T>, Node, State<T>, Extension<T>) returning (), Extension<T>, Refusal or Result of those"
)]
pub trait ConnectHook<T>: Clone + Send + Sync + Sized + 'static {
    /// Runs the hook on `handshake`.
    #[doc(hidden)]
    fn run(self, handshake: Handshake) -> BoxFuture<'static, (Handshake, Result<(), Refusal>)>;

    /// Shared state the hook's arguments cannot work without.
    #[doc(hidden)]
    fn state_needs() -> Vec<StateNeed>;
}

/// A function that runs when a protocol session has ended, before it leaves its
/// channels: its arguments are [`FromSession`] extractors (the [`Connection`],
/// still listing its channels and extensions, the [`Node`], state), it returns
/// `()` or a future of `()`.
///
/// ```
/// use framework::{node::Node, session::Connection};
///
/// async fn goodbye(conn: Connection, node: Node) {
///     for room in conn.channels() {
///         let _ = node.publish(&room, b"someone left", conn.id(), None).await;
///     }
/// }
/// let _ = framework::App::new().on_disconnect(goodbye);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an `on_disconnect` hook",
    note = "an on_disconnect hook is a sync or async function of FromSession extractors (Connection, Node, State<T>, Extension<T>) returning ()"
)]
pub trait DisconnectHook<T>: Clone + Send + Sync + Sized + 'static {
    /// Runs the hook for the ended session `conn`.
    #[doc(hidden)]
    fn run(self, conn: Connection, node: Node) -> BoxFuture<'static, ()>;

    /// Shared state the hook's arguments cannot work without.
    #[doc(hidden)]
    fn state_needs() -> Vec<StateNeed>;
}

macro_rules! impl_hooks {
    ($($T:ident $v:ident),*) => {
        #[allow(non_snake_case, unused_variables)]
        impl<F, R, MR, $($T,)*> ConnectHook<(MR, $($T,)*)> for F
        where
            F: Fn($($T),*) -> R + Clone + Send + Sync + 'static,
            R: ConnectOutcome<MR>,
            MR: 'static,
            $($T: FromHandshake,)*
        {
            fn run(self, mut handshake: Handshake) -> BoxFuture<'static, (Handshake, Result<(), Refusal>)> {
                Box::pin(async move {
                    let outcome = async {
                        $(let $v = $T::from_handshake(&handshake).await?;)*
                        self($($v),*).into_future().await
                    };
                    let result = match AssertUnwindSafe(outcome).catch_unwind().await {
                        Ok(Ok(apply)) => apply.apply_boxed(&mut handshake),
                        Ok(Err(refusal)) => Err(refusal),
                        Err(_) => {
                            tracing::error!(hook = std::any::type_name::<F>(), "on_connect hook panicked");
                            Err(Refusal::internal())
                        }
                    };
                    (handshake, result)
                })
            }
            fn state_needs() -> Vec<StateNeed> {
                let all: &[Option<StateNeed>] = &[$($T::state_need()),*];
                all.iter().flatten().copied().collect()
            }
        }

        #[allow(non_snake_case, unused_variables)]
        impl<F, R, MR, $($T,)*> DisconnectHook<(MR, $($T,)*)> for F
        where
            F: Fn($($T),*) -> R + Clone + Send + Sync + 'static,
            R: DisconnectOutcome<MR>,
            MR: 'static,
            $($T: FromSession,)*
        {
            fn run(self, conn: Connection, node: Node) -> BoxFuture<'static, ()> {
                Box::pin(async move {
                    let hook = std::any::type_name::<F>();
                    let run = async {
                        $(
                            let Some($v) = $T::from_session(&conn, &node) else {
                                tracing::warn!(hook, argument = std::any::type_name::<$T>(), "on_disconnect hook skipped: its argument is not available");
                                return;
                            };
                        )*
                        self($($v),*).into_future().await
                    };
                    if AssertUnwindSafe(run).catch_unwind().await.is_err() {
                        tracing::error!(hook, session = %conn.id(), "on_disconnect hook panicked");
                    }
                })
            }
            fn state_needs() -> Vec<StateNeed> {
                let all: &[Option<StateNeed>] = &[$($T::state_need()),*];
                all.iter().flatten().copied().collect()
            }
        }
    };
}

impl_hooks!();
impl_hooks!(T1 a1);
impl_hooks!(T1 a1, T2 a2);
impl_hooks!(T1 a1, T2 a2, T3 a3);
impl_hooks!(T1 a1, T2 a2, T3 a3, T4 a4);
impl_hooks!(T1 a1, T2 a2, T3 a3, T4 a4, T5 a5);
impl_hooks!(T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6);
impl_hooks!(T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6, T7 a7);
impl_hooks!(T1 a1, T2 a2, T3 a3, T4 a4, T5 a5, T6 a6, T7 a7, T8 a8);

type ConnectFn =
    dyn Fn(Handshake) -> BoxFuture<'static, (Handshake, Result<(), Refusal>)> + Send + Sync;
type DisconnectFn = dyn Fn(Connection, Node) -> BoxFuture<'static, ()> + Send + Sync;

/// A type-erased hook: its function, its name (the Rust path, for logs and
/// errors) and the state it needs.
pub struct BoxedHook<F: ?Sized> {
    run: Arc<F>,
    name: &'static str,
    needs: Arc<[StateNeed]>,
}

/// A type-erased `on_connect` hook.
pub type BoxedConnectHook = BoxedHook<ConnectFn>;
/// A type-erased `on_disconnect` hook.
pub type BoxedDisconnectHook = BoxedHook<DisconnectFn>;

impl<F: ?Sized> Clone for BoxedHook<F> {
    fn clone(&self) -> Self {
        Self {
            run: self.run.clone(),
            name: self.name,
            needs: self.needs.clone(),
        }
    }
}

impl<F: ?Sized> std::fmt::Debug for BoxedHook<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BoxedHook").field(&self.name).finish()
    }
}

impl<F: ?Sized> BoxedHook<F> {
    /// The hook's name (its Rust path).
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn state_needs(&self) -> &[StateNeed] {
        &self.needs
    }
}

impl BoxedConnectHook {
    /// Erases an `on_connect` hook.
    pub fn new<T, H: ConnectHook<T>>(hook: H) -> Self {
        Self {
            run: Arc::new(move |h| hook.clone().run(h)),
            name: std::any::type_name::<H>(),
            needs: H::state_needs().into(),
        }
    }

    pub(crate) fn run(
        &self,
        handshake: Handshake,
    ) -> BoxFuture<'static, (Handshake, Result<(), Refusal>)> {
        (self.run)(handshake)
    }
}

impl BoxedDisconnectHook {
    /// Erases an `on_disconnect` hook.
    pub fn new<T, H: DisconnectHook<T>>(hook: H) -> Self {
        Self {
            run: Arc::new(move |c, n| hook.clone().run(c, n)),
            name: std::any::type_name::<H>(),
            needs: H::state_needs().into(),
        }
    }

    pub(crate) fn run(&self, conn: Connection, node: Node) -> BoxFuture<'static, ()> {
        (self.run)(conn, node)
    }
}

/// Erases an `on_connect` hook (what `#[on_connect]` registers).
#[doc(hidden)]
pub fn connect_hook<T, H: ConnectHook<T>>(hook: H) -> BoxedConnectHook {
    BoxedConnectHook::new(hook)
}

/// Erases an `on_disconnect` hook (what `#[on_disconnect]` registers).
#[doc(hidden)]
pub fn disconnect_hook<T, H: DisconnectHook<T>>(hook: H) -> BoxedDisconnectHook {
    BoxedDisconnectHook::new(hook)
}

/// The hooks of an app, in the order they run.
#[derive(Clone, Default, Debug)]
pub(crate) struct Hooks {
    pub(crate) connect: Arc<[BoxedConnectHook]>,
    pub(crate) disconnect: Arc<[BoxedDisconnectHook]>,
    /// The authorizers, in order.
    pub(crate) authorize: Arc<[super::authorize::BoxedAuthorizer]>,
}

impl Hooks {
    /// Runs every `on_connect` hook in order; the first refusal wins.
    pub(crate) async fn connect(
        &self,
        mut handshake: Handshake,
    ) -> Result<http::Extensions, Refusal> {
        for hook in self.connect.iter() {
            let (h, result) = hook.run(handshake).await;
            handshake = h;
            result?;
        }
        Ok(handshake.extensions)
    }

    /// Runs every `on_disconnect` hook in order.
    pub(crate) async fn disconnect(&self, conn: &Connection, node: &Node) {
        for hook in self.disconnect.iter() {
            hook.run(conn.clone(), node.clone()).await;
        }
    }
}
