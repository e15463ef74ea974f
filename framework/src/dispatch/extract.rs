use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use super::{HandlerError, QuotaResult, Request};
use crate::message::Message;
use crate::node::Node;
use crate::protocol::Frame;
use crate::session::Connection;

/// Extraction of one handler argument from a [`Request`] (and its payload, which
/// typed messages borrow from). Used by `#[opcode]`-generated code; implement it
/// for your own extractors with `M =` [`ViaParts`].
///
/// ```
/// use framework::dispatch::{FromRequest, ViaParts};
/// use framework::{HandlerError, Request};
///
/// /// The sender's session id.
/// struct SessionId(uuid::Uuid);
///
/// impl<'b> FromRequest<'b, ViaParts> for SessionId {
///     fn from_request(req: &Request, _body: &'b bytes::Bytes) -> Result<Self, HandlerError> {
///         Ok(SessionId(req.connection().id()))
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler argument",
    label = "not an extractor or a typed message",
    note = "arguments are extractors (Request, &Request, Connection, State<T>, Trace, QuotaResult, Body, Node, TransactionId, Frame) or one typed message (a #[derive(Message)] type or a flatc-generated table)"
)]
pub trait FromRequest<'b, M>: Sized {
    /// Whether this argument is the frame's typed message (a handler takes one).
    const IS_MESSAGE: bool = false;

    /// Extracts the argument; an error is answered instead of calling the handler.
    fn from_request(req: &Request, body: &'b Bytes) -> Result<Self, HandlerError>;
}

/// Marks extractors that read the request's parts.
#[derive(Debug)]
pub struct ViaParts;
/// Marks `#[derive(Message)]` payloads.
#[derive(Debug)]
pub struct ViaMessage;
/// Marks flatc-generated tables (zero-copy, borrowed from the payload).
#[derive(Debug)]
pub struct ViaTable;

/// Whether `T` extracts as a typed message (used by the macros' compile-time check).
#[doc(hidden)]
pub const fn is_message<'b, T: FromRequest<'b, M>, M>() -> bool {
    T::IS_MESSAGE
}

/// Shared state registered with [`App::with_state`](crate::App::with_state).
///
/// ```
/// use framework::dispatch::State;
/// struct Counter(std::sync::atomic::AtomicU64);
/// fn handler(State(counter): State<Counter>) -> Vec<u8> {
///     let n = counter.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///     n.to_be_bytes().to_vec()
/// }
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

impl<'b, T: Send + Sync + 'static> FromRequest<'b, ViaParts> for State<T> {
    fn from_request(req: &Request, _: &'b Bytes) -> Result<Self, HandlerError> {
        req.state_of::<T>().map(State).ok_or_else(|| {
            tracing::error!(
                state = std::any::type_name::<T>(),
                "handler asks for state that was never registered with App::with_state"
            );
            HandlerError::internal()
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

impl<'b> FromRequest<'b, ViaParts> for Trace {
    fn from_request(req: &Request, _: &'b Bytes) -> Result<Self, HandlerError> {
        Ok(Trace {
            trace_id: req.trace_id(),
            span_id: req.span_id(),
            parent_span_id: req.parent_span_id(),
        })
    }
}

/// The frame's payload, uninterpreted (zero-copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(pub Bytes);

impl<'b> FromRequest<'b, ViaParts> for Body {
    fn from_request(_: &Request, body: &'b Bytes) -> Result<Self, HandlerError> {
        Ok(Body(body.clone()))
    }
}

/// The frame's `transaction_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionId(pub Option<Uuid>);

impl<'b> FromRequest<'b, ViaParts> for TransactionId {
    fn from_request(req: &Request, _: &'b Bytes) -> Result<Self, HandlerError> {
        Ok(TransactionId(req.transaction_id()))
    }
}

impl<'b> FromRequest<'b, ViaParts> for Connection {
    fn from_request(req: &Request, _: &'b Bytes) -> Result<Self, HandlerError> {
        Ok(req.connection().clone())
    }
}

impl<'b> FromRequest<'b, ViaParts> for Node {
    fn from_request(req: &Request, _: &'b Bytes) -> Result<Self, HandlerError> {
        Ok(req.node().clone())
    }
}

impl<'b> FromRequest<'b, ViaParts> for QuotaResult {
    fn from_request(req: &Request, _: &'b Bytes) -> Result<Self, HandlerError> {
        Ok(req.quota_result())
    }
}

impl<'b> FromRequest<'b, ViaParts> for Frame {
    fn from_request(req: &Request, _: &'b Bytes) -> Result<Self, HandlerError> {
        Ok(req.frame().clone())
    }
}

impl<'b, T: Message> FromRequest<'b, ViaMessage> for T {
    const IS_MESSAGE: bool = true;
    fn from_request(req: &Request, body: &'b Bytes) -> Result<Self, HandlerError> {
        T::decode_limited(body, req.node().config().max_message_size).map_err(|e| {
            HandlerError::bad_payload(format!("payload is not a valid {}: {e}", T::TABLE))
        })
    }
}

impl<'b, T> FromRequest<'b, ViaTable> for T
where
    T: flatbuffers::Follow<'b, Inner = T> + flatbuffers::Verifiable + 'b,
{
    const IS_MESSAGE: bool = true;
    fn from_request(req: &Request, body: &'b Bytes) -> Result<Self, HandlerError> {
        // Verified on its own: never through a `*_nested_flatbuffer()` accessor.
        let opts = crate::message::payload_options(req.node().config().max_message_size);
        flatbuffers::root_with_opts::<T>(&opts, body)
            .map_err(|e| HandlerError::bad_payload(format!("payload does not verify: {e}")))
    }
}
