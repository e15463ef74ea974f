//! Handler arguments. A handler's arguments are extracted by type: each argument
//! type says (through the traits here) how it is obtained from the [`Request`].
//!
//! Users implement [`FromRequestParts`] (sync) or [`AsyncFromRequestParts`] (may
//! await) for their own extractors; typed messages come from
//! [`Message`](crate::message::Message) (derived) or [`FlatTable`] (flatc tables).
//! The hidden umbrella trait [`FromRequest`] ties them together for the handler
//! impls; its marker types are uninhabited and never named by users.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::{HandlerError, QuotaResult, Request};
use crate::message::Message;
use crate::node::{Identity, Node};
use crate::protocol::ErrorCode;
use crate::protocol::Frame;
use crate::session::Connection;

/// `e`'s text on one line (flatbuffers' verifier errors end with a trace).
pub(crate) fn one_line(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    let mut words = text.split_whitespace();
    let mut out = String::with_capacity(text.len());
    if let Some(first) = words.next() {
        out.push_str(first);
        for w in words {
            out.push(' ');
            out.push_str(w);
        }
    }
    out
}

/// State a handler needs, checked when the app starts.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateNeed {
    /// The state's type.
    pub type_id: std::any::TypeId,
    /// Its name, for the error.
    pub type_name: &'static str,
}

/// An extractor that reads what it needs from the request without waiting.
///
/// ```
/// use framework::dispatch::FromRequestParts;
/// use framework::{HandlerError, Request};
///
/// /// The sender's session id.
/// struct SessionId(uuid::Uuid);
///
/// impl FromRequestParts for SessionId {
///     fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
///         Ok(SessionId(req.connection().id()))
///     }
/// }
///
/// fn whoami(SessionId(id): SessionId) -> Vec<u8> {
///     id.as_bytes().to_vec()
/// }
/// let _ = framework::App::new().register_custom_handler(200, whoami);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an extractor",
    note = "implement `FromRequestParts` (or `AsyncFromRequestParts`) for it to use it as a handler argument"
)]
pub trait FromRequestParts: Sized + Send + 'static {
    /// Extracts the argument; an error is answered instead of calling the handler.
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError>;

    /// Shared state this extractor cannot work without (checked at start-up).
    #[doc(hidden)]
    fn state_need() -> Option<StateNeed> {
        None
    }

    /// Whether a handler taking this decides itself what to do over quota (only
    /// `QuotaResult` does).
    #[doc(hidden)]
    fn decides_quota() -> bool {
        false
    }
}

/// An extractor that may await (a token check, a database lookup, a cluster query).
/// Handlers with an async extractor run as a future; sync ones never do.
///
/// ```
/// use framework::dispatch::AsyncFromRequestParts;
/// use framework::{HandlerError, Request};
///
/// struct Account(String);
///
/// impl AsyncFromRequestParts for Account {
///     async fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
///         let id = req.connection().id();
///         tokio::task::yield_now().await; // e.g. a database lookup
///         Ok(Account(format!("account of {id}")))
///     }
/// }
///
/// fn show(Account(name): Account) -> Vec<u8> {
///     name.into_bytes()
/// }
/// let _ = framework::App::new().register_custom_handler(200, show);
/// ```
pub trait AsyncFromRequestParts: Sized + Send + 'static {
    /// Extracts the argument; an error is answered instead of calling the handler.
    fn from_request_parts(req: &Request)
        -> impl Future<Output = Result<Self, HandlerError>> + Send;
}

/// A flatc-generated table usable as a handler argument, borrowed zero-copy from
/// the payload. Implement it with [`flatc_table!`](crate::flatc_table) (one line
/// per table); `framework::protocol::fbs::Message` has it already.
///
/// A handler taking a borrowed table must be sync (an `async fn`'s future would
/// borrow the payload); async handlers take [`Table<T>`] instead.
///
/// ```
/// # mod generated { pub use framework::protocol::fbs::Message as Greeting; }
/// // What `framework::flatc_table!(generated::Greeting);` writes:
/// # struct Local;
/// # /*
/// impl framework::dispatch::FlatTable for generated::Greeting<'static> {
///     type At<'b> = generated::Greeting<'b>;
/// }
/// # */
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a table the framework knows",
    note = "for a flatc-generated table, write `framework::flatc_table!(path::to::Table);` once"
)]
pub trait FlatTable: 'static {
    /// The table borrowing a payload of lifetime `'b`.
    type At<'b>: flatbuffers::Follow<'b, Inner = Self::At<'b>> + flatbuffers::Verifiable + Send;
}

/// Makes flatc-generated tables usable as handler arguments (see [`FlatTable`]).
///
/// ```
/// mod greeting_generated {
///     // flatc --rust output; here the protocol's own table stands in for it.
///     pub use framework::protocol::fbs::Message as Greeting;
/// }
/// mod mine {
///     pub struct Local<'a>(flatbuffers::Table<'a>);
///     impl<'a> flatbuffers::Follow<'a> for Local<'a> {
///         type Inner = Local<'a>;
///         unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
///             Local(unsafe { flatbuffers::Table::new(buf, loc) })
///         }
///     }
///     impl flatbuffers::Verifiable for Local<'_> {
///         fn run_verifier(v: &mut flatbuffers::Verifier<'_, '_>, pos: usize)
///             -> Result<(), flatbuffers::InvalidFlatbuffer> {
///             v.visit_table(pos)?.finish();
///             Ok(())
///         }
///     }
/// }
/// framework::flatc_table!(mine::Local);
///
/// fn handler(table: mine::Local<'_>) -> Vec<u8> {
///     let _ = table;
///     Vec::new()
/// }
/// let _ = framework::App::new().register_custom_handler(200, handler);
/// ```
#[macro_export]
macro_rules! flatc_table {
    ($($segment:ident)::+) => {
        impl $crate::dispatch::FlatTable for $($segment)::+<'static> {
            type At<'b> = $($segment)::+<'b>;
        }
    };
}

impl FlatTable for crate::protocol::fbs::Message<'static> {
    type At<'b> = crate::protocol::fbs::Message<'b>;
}

/// A flatc table owned with its payload, for async handlers (a borrowed table
/// cannot live in a handler's future). Verified at extraction; a payload that does
/// not verify is answered `Error`/`BadPayload` without calling the handler.
///
/// ```
/// use framework::dispatch::Table;
/// use framework::protocol::fbs;
///
/// async fn handler(msg: Table<fbs::Message<'static>>) -> Vec<u8> {
///     tokio::task::yield_now().await;
///     msg.get().channel().unwrap_or_default().as_bytes().to_vec()
/// }
/// let _ = framework::App::new().register_custom_handler(200, handler);
/// ```
pub struct Table<T: FlatTable> {
    bytes: Bytes,
    max_size: usize,
    _table: std::marker::PhantomData<fn() -> T>,
}

impl<T: FlatTable> std::fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("table", &std::any::type_name::<T>())
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl<T: FlatTable> Table<T> {
    fn verify(bytes: &[u8], max_size: usize) -> Result<T::At<'_>, HandlerError> {
        if bytes.len() > max_size {
            return Err(HandlerError::bad_payload(format!(
                "payload of {} bytes is over the limit",
                bytes.len()
            )));
        }
        let opts = crate::message::payload_options(max_size);
        flatbuffers::root_with_opts::<T::At<'_>>(&opts, bytes).map_err(|e| {
            HandlerError::bad_payload(format!("payload does not verify: {}", one_line(&e)))
        })
    }

    /// The table, borrowed from the payload.
    pub fn get(&self) -> T::At<'_> {
        // The same bytes verified with the same options at extraction; they are
        // immutable, so this verification cannot fail.
        match Self::verify(&self.bytes, self.max_size) {
            Ok(t) => t,
            Err(_) => unreachable!("the payload was verified at extraction"),
        }
    }

    /// The payload bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// Shared state registered with [`App::with_state`](crate::App::with_state). A
/// handler asking for state that was never registered makes `start` fail.
///
/// ```
/// use framework::dispatch::State;
/// struct Counter(std::sync::atomic::AtomicU64);
/// fn handler(State(counter): State<Counter>) -> Vec<u8> {
///     let n = counter.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///     n.to_be_bytes().to_vec()
/// }
/// let _ = framework::App::new()
///     .with_state(Counter(Default::default()))
///     .register_custom_handler(200, handler);
/// ```
#[derive(Debug)]
pub struct State<T>(pub Arc<T>);

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State(self.0.clone())
    }
}

impl<T> std::ops::Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Send + Sync + 'static> State<T> {
    pub(crate) fn from_node(node: &Node) -> Result<Self, HandlerError> {
        node.state().get::<T>().map(State).ok_or_else(|| {
            // Unreachable once `start` checked the handlers' needs; kept for
            // handlers called some other way.
            tracing::error!(
                state = std::any::type_name::<T>(),
                "state was never registered with App::with_state"
            );
            HandlerError::internal()
        })
    }
}

/// A value attached to the connection (see [`Connection::insert_extension`]),
/// cloned out. Missing: `Error`/`Internal` (take `Option<Extension<T>>` when it
/// may be absent).
///
/// ```
/// use framework::dispatch::Extension;
///
/// #[derive(Clone)]
/// struct User { name: String }
///
/// fn hello(Extension(user): Extension<User>) -> Vec<u8> {
///     format!("hello {}", user.name).into_bytes()
/// }
/// fn maybe(user: Option<Extension<User>>) -> Vec<u8> {
///     user.map(|Extension(u)| u.name.into_bytes()).unwrap_or_default()
/// }
/// let _ = framework::App::new()
///     .register_custom_handler(200, hello)
///     .register_custom_handler(201, maybe);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<T>(pub T);

impl<T: Clone + Send + Sync + 'static> Extension<T> {
    pub(crate) fn from_connection(conn: &Connection) -> Result<Self, HandlerError> {
        conn.extension::<T>().map(Extension).ok_or_else(|| {
            tracing::error!(
                extension = std::any::type_name::<T>(),
                session = %conn.id(),
                "handler asks for a connection extension that was never attached"
            );
            HandlerError::internal()
        })
    }
}

/// Who sent the frame (see [`Request::identity`]); anonymous senders are
/// answered `Unauthorized` without calling the handler (take `Option<Identity>`
/// to serve both).
impl FromRequestParts for Identity {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        req.identity()
            .ok_or_else(|| HandlerError::new(ErrorCode::Unauthorized, "authentication required"))
    }
}

/// The sender's token claims as `T` (any `serde::Deserialize` type): custom
/// claims for a handler. Anonymous: `Unauthorized`; claims that are not a `T`:
/// `Forbidden`.
///
/// ```
/// use framework::dispatch::Claims;
///
/// #[derive(serde::Deserialize)]
/// struct Staff { sub: String, role: String }
///
/// fn admin_only(Claims(staff): Claims<Staff>) -> Result<Vec<u8>, framework::HandlerError> {
///     if staff.role != "admin" {
///         return Err(framework::HandlerError::new(framework::protocol::ErrorCode::Forbidden, "admins only"));
///     }
///     Ok(staff.sub.into_bytes())
/// }
/// let _ = framework::App::new().register_custom_handler(200, admin_only);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send + 'static> FromRequestParts for Claims<T> {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        let identity = Identity::from_request_parts(req)?;
        identity.claims_as::<T>().map(Claims).map_err(|e| {
            HandlerError::new(
                ErrorCode::Forbidden,
                format!("the token does not carry the claims this action needs: {e}"),
            )
        })
    }
}

/// The request's trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trace {
    /// The trace id (the frame's, or one the server created).
    pub trace_id: Uuid,
    /// This request's span id.
    pub span_id: u64,
    /// The sender's span id.
    pub parent_span_id: u64,
}

/// The frame's payload, uninterpreted (zero-copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(pub Bytes);

/// The frame's `transaction_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionId(pub Option<Uuid>);

impl FromRequestParts for Trace {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        Ok(Trace {
            trace_id: req.trace_id(),
            span_id: req.span_id(),
            parent_span_id: req.parent_span_id(),
        })
    }
}

impl FromRequestParts for Body {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        Ok(Body(req.body().clone()))
    }
}

impl FromRequestParts for TransactionId {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        Ok(TransactionId(req.transaction_id()))
    }
}

impl FromRequestParts for Connection {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        Ok(req.connection().clone())
    }
}

impl FromRequestParts for Node {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        Ok(req.node().clone())
    }
}

/// Taking the quota result means deciding: a handler with this argument is
/// called even over quota (it sees `Exceeded`) instead of being answered
/// `RateLimited` for.
impl FromRequestParts for QuotaResult {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        Ok(req.quota_result())
    }
    fn decides_quota() -> bool {
        true
    }
}

impl FromRequestParts for Frame {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        Ok(req.frame().clone())
    }
}

impl<T: Send + Sync + 'static> FromRequestParts for State<T> {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        State::from_node(req.node())
    }
    fn state_need() -> Option<StateNeed> {
        Some(StateNeed {
            type_id: std::any::TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
        })
    }
}

impl<T: Clone + Send + Sync + 'static> FromRequestParts for Extension<T> {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        Extension::from_connection(req.connection())
    }
}

/// An optional extractor: `None` where the extractor would have failed.
impl<T: FromRequestParts> FromRequestParts for Option<T> {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        Ok(T::from_request_parts(req).ok())
    }
    fn decides_quota() -> bool {
        T::decides_quota()
    }
}

/// Marks [`FromRequestParts`] arguments.
#[doc(hidden)]
#[derive(Debug)]
pub enum ViaParts {}
/// Marks [`AsyncFromRequestParts`] arguments.
#[doc(hidden)]
#[derive(Debug)]
pub enum ViaAsync {}
/// Marks `#[derive(Message)]` payloads.
#[doc(hidden)]
#[derive(Debug)]
pub enum ViaMessage {}
/// Marks flatc-generated tables (zero-copy, borrowed from the payload).
#[doc(hidden)]
#[derive(Debug)]
pub enum ViaTable {}
/// Marks the [`Request`] itself, moved into the handler.
#[doc(hidden)]
#[derive(Debug)]
pub enum ViaRequest {}
/// Marks [`Table`], an owned flatc table.
#[doc(hidden)]
#[derive(Debug)]
pub enum ViaOwnedTable {}

/// How one handler argument is obtained; implemented for every kind of argument
/// through the marker `M`. Not implemented by users: implement
/// [`FromRequestParts`] or [`AsyncFromRequestParts`].
///
/// Extraction happens in two steps so that the `Request` itself can be an
/// argument: every argument is first extracted from `&Request` (typed messages
/// borrow the payload, never the request), then the `Request` is moved into the
/// argument that takes it.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler argument",
    label = "not an extractor or a typed message",
    note = "arguments are `Request` (by value), extractors (Connection, State<T>, Extension<T>, Trace, QuotaResult, Body, Node, TransactionId, Frame, or a type implementing FromRequestParts / AsyncFromRequestParts) or one typed message (a #[derive(Message)] type, a flatc table declared with framework::flatc_table!, or Table<T>)"
)]
pub trait FromRequest<M>: Sized + 'static {
    /// The value the handler receives, borrowing the payload for `'b`.
    type At<'b>: Send;
    /// What the first step yields.
    type Pending<'b>: Send;
    /// Whether extraction may await.
    const ASYNC: bool = false;
    /// Whether this argument is the `Request` itself (a handler takes it once).
    const IS_REQUEST: bool = false;

    /// The first step, without waiting (never called when `ASYNC`).
    fn extract<'b>(req: &Request, body: &'b Bytes) -> Result<Self::Pending<'b>, HandlerError>;

    /// The first step, awaiting where the extractor needs to.
    fn extract_async<'b>(
        req: &Request,
        body: &'b Bytes,
    ) -> impl Future<Output = Result<Self::Pending<'b>, HandlerError>> + Send {
        std::future::ready(Self::extract(req, body))
    }

    /// The second step: the argument, given the request when it is still unmoved.
    fn finish<'b>(pending: Self::Pending<'b>, request: &mut Option<Request>) -> Self::At<'b>;

    /// Shared state this argument cannot work without (checked at start-up).
    fn state_need() -> Option<StateNeed> {
        None
    }

    /// Whether this argument makes the handler decide over quota itself.
    fn decides_quota() -> bool {
        false
    }
}

impl<T: FromRequestParts> FromRequest<ViaParts> for T {
    type At<'b> = T;
    type Pending<'b> = T;
    fn extract<'b>(req: &Request, _: &'b Bytes) -> Result<Self::Pending<'b>, HandlerError> {
        T::from_request_parts(req)
    }
    fn finish<'b>(pending: Self::Pending<'b>, _: &mut Option<Request>) -> Self::At<'b> {
        pending
    }
    fn state_need() -> Option<StateNeed> {
        T::state_need()
    }
    fn decides_quota() -> bool {
        T::decides_quota()
    }
}

impl<T: AsyncFromRequestParts> FromRequest<ViaAsync> for T {
    type At<'b> = T;
    type Pending<'b> = T;
    const ASYNC: bool = true;
    fn extract<'b>(_: &Request, _: &'b Bytes) -> Result<Self::Pending<'b>, HandlerError> {
        // Never called: `ASYNC` routes every call through `extract_async`.
        Err(HandlerError::internal())
    }
    fn extract_async<'b>(
        req: &Request,
        _: &'b Bytes,
    ) -> impl Future<Output = Result<Self::Pending<'b>, HandlerError>> + Send {
        T::from_request_parts(req)
    }
    fn finish<'b>(pending: Self::Pending<'b>, _: &mut Option<Request>) -> Self::At<'b> {
        pending
    }
}

impl FromRequest<ViaRequest> for Request {
    type At<'b> = Request;
    type Pending<'b> = ();
    const IS_REQUEST: bool = true;
    fn extract<'b>(_: &Request, _: &'b Bytes) -> Result<Self::Pending<'b>, HandlerError> {
        Ok(())
    }
    fn finish<'b>(_: Self::Pending<'b>, request: &mut Option<Request>) -> Self::At<'b> {
        match request.take() {
            Some(r) => r,
            // A handler takes the `Request` at most once (asserted at compile time
            // where the handler is made).
            None => unreachable!("the Request is moved into one argument only"),
        }
    }
}

impl<T: Message> FromRequest<ViaMessage> for T {
    type At<'b> = T;
    type Pending<'b> = T;
    fn extract<'b>(req: &Request, body: &'b Bytes) -> Result<Self::Pending<'b>, HandlerError> {
        T::decode_limited(body, req.node().config().max_message_size).map_err(|e| {
            HandlerError::bad_payload(format!("payload is not a valid {}: {e}", T::TABLE))
        })
    }
    fn finish<'b>(pending: Self::Pending<'b>, _: &mut Option<Request>) -> Self::At<'b> {
        pending
    }
}

impl<T: FlatTable> FromRequest<ViaTable> for T {
    type At<'b> = T::At<'b>;
    type Pending<'b> = T::At<'b>;
    fn extract<'b>(req: &Request, body: &'b Bytes) -> Result<Self::Pending<'b>, HandlerError> {
        // Verified on its own: never through a `*_nested_flatbuffer()` accessor.
        Table::<T>::verify(body, req.node().config().max_message_size)
    }
    fn finish<'b>(pending: Self::Pending<'b>, _: &mut Option<Request>) -> Self::At<'b> {
        pending
    }
}

impl<T: FlatTable> FromRequest<ViaOwnedTable> for Table<T> {
    type At<'b> = Table<T>;
    type Pending<'b> = Table<T>;
    fn extract<'b>(req: &Request, body: &'b Bytes) -> Result<Self::Pending<'b>, HandlerError> {
        let max_size = req.node().config().max_message_size;
        Table::<T>::verify(body, max_size)?;
        Ok(Table {
            bytes: body.clone(),
            max_size,
            _table: std::marker::PhantomData,
        })
    }
    fn finish<'b>(pending: Self::Pending<'b>, _: &mut Option<Request>) -> Self::At<'b> {
        pending
    }
}
