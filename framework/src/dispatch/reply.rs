use std::borrow::Cow;

use bytes::Bytes;
use uuid::Uuid;

use crate::broker::BrokerError;
use crate::protocol::{ErrorCode, FrameFields, IntoOpcode, Opcode};
use crate::session::Connection;

/// A handler's failure, answered with an `Error` frame carrying `code` and
/// `message` (and the failed frame's `transaction_id`). The message is shown to the
/// client: never put internals in it.
///
/// ```
/// use framework::{HandlerError, protocol::ErrorCode};
/// let e = HandlerError::new(ErrorCode::Forbidden, "not in this room");
/// assert_eq!(e.code(), ErrorCode::Forbidden);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct HandlerError {
    code: ErrorCode,
    message: Cow<'static, str>,
    retry_after_ms: u32,
}

impl HandlerError {
    /// An error with `code` and a client-visible `message`.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: 0,
        }
    }
    /// `Internal`, with a generic message (details belong in the server's logs).
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }
    /// `BadPayload`.
    pub fn bad_payload(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::BadPayload, message)
    }
    /// `InvalidArgument`.
    pub fn invalid_argument(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    /// `NotFound`.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    /// `RateLimited`, retry after `retry_after_ms`.
    pub fn rate_limited(retry_after_ms: u32) -> Self {
        Self {
            retry_after_ms,
            ..Self::new(ErrorCode::RateLimited, "rate limited")
        }
    }
    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
    /// The client-visible message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// For `RateLimited`: when to retry, in milliseconds (0 otherwise).
    pub fn retry_after_ms(&self) -> u32 {
        self.retry_after_ms
    }
}

impl From<BrokerError> for HandlerError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::NotFound(id) => Self::not_found(format!("no session {id}")),
            BrokerError::Unavailable(why) => {
                tracing::debug!(cause = %why, "answered Unavailable");
                Self::new(ErrorCode::Unavailable, "the cluster broker is unavailable")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum ReplyKind {
    Nothing,
    Ack,
    Respond(Option<u16>, Option<Bytes>),
    Frame(Bytes),
    Error(HandlerError),
}

/// What a handler answers. Application opcodes answer by default with an empty
/// response (same opcode and `transaction_id`); built-ins answer `Ack` only when
/// the frame asked for one.
///
/// ```
/// use framework::Reply;
/// let _ = Reply::empty();
/// let _ = Reply::payload(b"result".to_vec());
/// let _ = Reply::none();
/// ```
#[derive(Debug, Clone)]
pub struct Reply(pub(crate) ReplyKind);

impl Reply {
    /// No frame at all.
    pub fn none() -> Self {
        Reply(ReplyKind::Nothing)
    }
    /// An `Ack` if the frame had `requires_ack`, else nothing.
    pub fn ack() -> Self {
        Reply(ReplyKind::Ack)
    }
    /// A response with the request's opcode, `transaction_id` and trace id, no payload.
    pub fn empty() -> Self {
        Reply(ReplyKind::Respond(None, None))
    }
    /// A response with the request's opcode carrying `payload`.
    pub fn payload(payload: impl Into<Bytes>) -> Self {
        Reply(ReplyKind::Respond(None, Some(payload.into())))
    }
    /// A response with another opcode (e.g. `Pong` for `Ping`), same correlation.
    pub fn with_opcode(opcode: impl IntoOpcode, payload: Option<Bytes>) -> Self {
        Reply(ReplyKind::Respond(Some(opcode.into_opcode()), payload))
    }
    /// A complete pre-encoded frame, sent as is.
    pub fn frame(frame: Bytes) -> Self {
        Reply(ReplyKind::Frame(frame))
    }
    /// An `Error` frame.
    pub fn error(error: HandlerError) -> Self {
        Reply(ReplyKind::Error(error))
    }
}

/// What the reply needs to know of the request.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct ReplyMeta {
    pub(crate) opcode: u16,
    pub(crate) transaction_id: Option<Uuid>,
    pub(crate) trace_id: Uuid,
    pub(crate) span_id: u64,
    pub(crate) requires_ack: bool,
}

/// An encoded reply frame, with what the node's metrics count of it.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Encoded {
    pub(crate) bytes: Bytes,
    /// The error code when it is an `Error` frame.
    pub(crate) error: Option<ErrorCode>,
    /// The reply's opcode (a pre-encoded frame counts as the request's).
    pub(crate) opcode: u16,
}

impl ReplyMeta {
    /// A reply of `opcode` with the request's correlation and `payload`.
    fn frame(&self, opcode: u16, payload: Option<&[u8]>) -> Bytes {
        crate::protocol::reply_frame(
            opcode,
            self.transaction_id.as_ref(),
            Some(&self.trace_id),
            self.span_id,
            payload,
        )
    }

    fn fields(&self, opcode: u16) -> FrameFields<'static> {
        FrameFields::new(opcode)
            .transaction_id(self.transaction_id)
            .trace_id(Some(self.trace_id))
            .span_id(self.span_id)
    }

    /// The frame `reply` becomes, if any.
    pub(crate) fn encode(&self, reply: Reply) -> Option<Encoded> {
        let ok = |bytes: Bytes, opcode: u16| {
            Some(Encoded {
                bytes,
                error: None,
                opcode,
            })
        };
        match reply.0 {
            ReplyKind::Nothing => None,
            ReplyKind::Ack if !self.requires_ack => None,
            ReplyKind::Ack => ok(self.frame(Opcode::Ack.0, None), Opcode::Ack.0),
            ReplyKind::Respond(opcode, payload) => {
                let opcode = opcode.unwrap_or(self.opcode);
                ok(self.frame(opcode, payload.as_deref()), opcode)
            }
            ReplyKind::Frame(bytes) => ok(bytes, self.opcode),
            ReplyKind::Error(e) => self.encode_error(&e),
        }
    }

    pub(crate) fn encode_error(&self, e: &HandlerError) -> Option<Encoded> {
        let f = self
            .fields(Opcode::Error.0)
            .error(e.code, &e.message)
            .retry_after_ms(e.retry_after_ms);
        Some(Encoded {
            bytes: f.encode(),
            error: Some(e.code),
            opcode: Opcode::Error.0,
        })
    }

    /// A response with the request's opcode carrying `table`, written into
    /// the frame.
    fn encode_flat(&self, table: &crate::message::FlatTable) -> Option<Encoded> {
        let write = |out: &mut Vec<u8>| table.write(out);
        Some(Encoded {
            bytes: crate::protocol::reply_frame_with(
                self.opcode,
                self.transaction_id.as_ref(),
                Some(&self.trace_id),
                self.span_id,
                Some((table.len(), write)),
            ),
            error: None,
            opcode: self.opcode,
        })
    }

    /// A response with the request's opcode carrying `payload`.
    fn encode_payload(&self, payload: &[u8]) -> Option<Encoded> {
        Some(Encoded {
            bytes: self.frame(self.opcode, Some(payload)),
            error: None,
            opcode: self.opcode,
        })
    }
}

/// Where a reply is encoded: the request's correlation and the connection whose
/// builder typed replies reuse.
#[doc(hidden)]
#[derive(Debug)]
pub struct ReplyCtx<'a> {
    pub(crate) meta: ReplyMeta,
    pub(crate) conn: &'a Connection,
}

/// Conversion of a handler's return value into a [`Reply`].
///
/// ```
/// use framework::{HandlerError, IntoReply};
/// let ok: Result<Vec<u8>, HandlerError> = Ok(vec![1, 2]);
/// let _reply = ok.into_reply();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler's return type",
    note = "return `()`, `Reply`, `Vec<u8>`, `Bytes`, a derived message, `Option<T>` or `Result<T, E>` of those where `E: Into<HandlerError>`"
)]
pub trait IntoReply: Sized {
    /// The reply.
    fn into_reply(self) -> Reply;

    /// Encodes the reply frame; typed messages override it to encode straight
    /// into the connection's builder.
    #[doc(hidden)]
    fn encode_reply(self, ctx: &ReplyCtx<'_>) -> Option<Encoded> {
        ctx.meta.encode(self.into_reply())
    }
}

impl IntoReply for Reply {
    fn into_reply(self) -> Reply {
        self
    }
}
impl IntoReply for () {
    fn into_reply(self) -> Reply {
        Reply::empty()
    }
}
impl IntoReply for Bytes {
    fn into_reply(self) -> Reply {
        Reply::payload(self)
    }
}
impl IntoReply for Vec<u8> {
    fn into_reply(self) -> Reply {
        Reply::payload(self)
    }
}
impl IntoReply for HandlerError {
    fn into_reply(self) -> Reply {
        Reply::error(self)
    }
}
impl<T: IntoReply, E: Into<HandlerError>> IntoReply for Result<T, E> {
    fn into_reply(self) -> Reply {
        match self {
            Ok(v) => v.into_reply(),
            Err(e) => Reply::error(e.into()),
        }
    }
    fn encode_reply(self, ctx: &ReplyCtx<'_>) -> Option<Encoded> {
        match self {
            Ok(v) => v.encode_reply(ctx),
            Err(e) => ctx.meta.encode_error(&e.into()),
        }
    }
}

/// `None` is an empty response.
impl<T: IntoReply> IntoReply for Option<T> {
    fn into_reply(self) -> Reply {
        match self {
            Some(v) => v.into_reply(),
            None => Reply::empty(),
        }
    }
    fn encode_reply(self, ctx: &ReplyCtx<'_>) -> Option<Encoded> {
        match self {
            Some(v) => v.encode_reply(ctx),
            None => ctx.meta.encode(Reply::empty()),
        }
    }
}

impl<M: crate::message::Message> IntoReply for M {
    fn into_reply(self) -> Reply {
        Reply::payload(self.encode())
    }
    /// Encodes a table of scalars straight into the frame
    /// ([`FlatTable`](crate::message::FlatTable)); any other message once,
    /// into the connection's reused builder, copied once, into the frame.
    fn encode_reply(self, ctx: &ReplyCtx<'_>) -> Option<Encoded> {
        if let Some(table) = crate::message::FlatTable::of(&self) {
            return ctx.meta.encode_flat(&table);
        }
        let mut fbb = ctx.conn.take_builder();
        let root = self.build_table(&mut fbb);
        fbb.finish_minimal(root);
        let out = ctx.meta.encode_payload(fbb.finished_data());
        fbb.reset();
        ctx.conn.return_builder(fbb);
        out
    }
}

/// What a handler returns, sync (an [`IntoReply`]) or async (a future of one);
/// the marker `M` tells them apart and is never named by users.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler's return type",
    note = "return `()`, `Reply`, `Vec<u8>`, `Bytes`, a derived message, `Option<T>` or `Result<T, E>` of those where `E: Into<HandlerError>` (or a future of one, from an async fn)"
)]
pub trait Outcome<M>: Send + 'static {
    /// The reply type.
    type Reply: IntoReply + Send;
    /// The future of an async handler (`Ready` for sync ones).
    type Future: std::future::Future<Output = Self::Reply> + Send + 'static;
    /// The reply now, or the future of it.
    fn settle(self) -> Settled<Self::Reply, Self::Future>;
}

/// A reply now, or later.
#[doc(hidden)]
#[derive(Debug)]
pub enum Settled<R, F> {
    /// A sync handler's reply.
    Now(R),
    /// An async handler's future.
    Later(F),
}

/// Marks sync handlers' returns.
#[doc(hidden)]
#[derive(Debug)]
pub enum SyncReply {}
/// Marks async handlers' returns.
#[doc(hidden)]
#[derive(Debug)]
pub enum AsyncReply {}

impl<R: IntoReply + Send + 'static> Outcome<SyncReply> for R {
    type Reply = R;
    type Future = std::future::Ready<R>;
    fn settle(self) -> Settled<R, Self::Future> {
        Settled::Now(self)
    }
}

impl<F> Outcome<AsyncReply> for F
where
    F: std::future::Future + Send + 'static,
    F::Output: IntoReply + Send,
{
    type Reply = F::Output;
    type Future = F;
    fn settle(self) -> Settled<F::Output, F> {
        Settled::Later(self)
    }
}
