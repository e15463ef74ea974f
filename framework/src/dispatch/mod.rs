//! Layer 6: dispatch, the request pipeline. [`Dispatcher::dispatch`] takes a
//! connection and the bytes it received and yields the reply: verify → look up
//! the opcode's handler → build the [`Request`] → extract the handler's arguments
//! (sync or async) → call it → encode its reply. Services only move bytes; the
//! in-process [`TestNode`](crate::testing::TestNode) uses the same entry.
//!
//! Handlers are plain functions of extractors ([`Handler`]); built-ins are
//! ordinary handlers from one table ([`crate::builtins`]), which overrides replace.

pub mod authorize;
mod extract;
mod handler;
pub mod hooks;
mod reply;
mod request;
pub(crate) mod trace;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use uuid::Uuid;

pub use crate::node::QuotaResult;
pub use extract::{
    AsyncFromRequestParts, Body, Claims, Extension, FlatTable, FromRequest, FromRequestParts,
    State, StateNeed, Table, Trace, TransactionId, ViaAsync, ViaMessage, ViaOwnedTable, ViaParts,
    ViaRequest, ViaTable,
};
#[doc(hidden)]
pub use handler::typed as handler_typed;
pub use handler::{panicked, BoxedHandler, Call, Handler, Step};
pub(crate) use hooks::Hooks;
pub use reply::{
    AsyncReply, Encoded, HandlerError, IntoReply, Outcome, Reply, ReplyCtx, ReplyMeta, Settled,
    SyncReply,
};
pub use request::Request;
pub use trace::TRACE_TARGET;

use crate::node::{Action, Node};
use crate::protocol::{DecodeLimits, ErrorCode, Frame, Opcode, FIRST_APPLICATION_OPCODE};
use crate::session::Connection;

/// The opcode → handler table: built-ins in a dense array, application opcodes
/// in a map hashed with a multiply (FxHash): SipHash's code, run for every
/// frame, cost more instruction-cache misses than the lookup itself. The keys
/// are the app's opcodes, fixed at start, so a client has nothing to collide.
#[derive(Clone, Default)]
pub(crate) struct HandlerTable {
    builtins: Vec<Option<BoxedHandler>>,
    custom: rustc_hash::FxHashMap<u16, BoxedHandler>,
}

impl HandlerTable {
    pub(crate) fn new() -> Self {
        Self {
            builtins: vec![None; FIRST_APPLICATION_OPCODE as usize],
            custom: rustc_hash::FxHashMap::default(),
        }
    }

    pub(crate) fn insert(&mut self, opcode: u16, handler: BoxedHandler) {
        if opcode < FIRST_APPLICATION_OPCODE {
            self.builtins[opcode as usize] = Some(handler);
        } else {
            self.custom.insert(opcode, handler);
        }
    }

    pub(crate) fn get(&self, opcode: u16) -> Option<&BoxedHandler> {
        if opcode < FIRST_APPLICATION_OPCODE {
            self.builtins[opcode as usize].as_ref()
        } else {
            self.custom.get(&opcode)
        }
    }

    /// Every handler with its opcode.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u16, &BoxedHandler)> {
        let builtins = self
            .builtins
            .iter()
            .enumerate()
            .filter_map(|(op, h)| h.as_ref().map(|h| (op as u16, h)));
        builtins.chain(self.custom.iter().map(|(op, h)| (*op, h)))
    }
}

/// The protocol's request pipeline for one node: its handlers and the node they
/// act on. Cheap to share (`Arc`).
///
/// ```
/// use framework::{testing::TestNode, App, Request};
/// use framework::protocol::{DecodeLimits, Frame, FrameFields};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let app = App::new().register_custom_handler(200, |ctx: Request| ctx.body().to_vec());
/// let node = TestNode::new(app).await.unwrap();
/// let reply = node
///     .dispatcher()
///     .dispatch(node.connection(), FrameFields::new(200).payload(b"hi").encode())
///     .await
///     .unwrap();
/// let reply = Frame::decode(reply, &DecodeLimits::default()).unwrap();
/// assert_eq!(&reply.payload()[..], b"hi");
/// # });
/// ```
pub struct Dispatcher {
    node: Node,
    table: HandlerTable,
    limits: DecodeLimits,
    hooks: Hooks,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("node", &self.node.node_id())
            .field("handlers", &self.table.iter().count())
            .finish()
    }
}

impl Dispatcher {
    pub(crate) fn new(node: Node, table: HandlerTable, hooks: Hooks) -> Self {
        let limits = node.config().decode_limits();
        Self {
            node,
            table,
            limits,
            hooks,
        }
    }

    /// The session hooks.
    pub(crate) fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// The node the handlers act on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Handles one binary message received on `conn` and yields the reply frame,
    /// if any (the caller queues it; deliveries the handler caused are already
    /// queued). Never fails: undecodable input, unknown opcodes, extractor and
    /// handler errors and panics all become `Error` frames.
    ///
    /// A frame with a handler is handled in a `frame` span
    /// ([`TRACE_TARGET`], level `DEBUG`) carrying its opcode, session and wire
    /// trace ids; the handler (and whatever it publishes or sends) runs inside it.
    pub fn dispatch<'a>(&'a self, conn: &'a Connection, bytes: Bytes) -> Dispatch<'a> {
        let metrics = self.node.metrics();
        let size = bytes.len();
        metrics.frames_in.fetch_add(1, Relaxed);
        let frame = match Frame::decode(bytes, &self.limits) {
            Ok(f) => f,
            Err(e) => {
                let err = HandlerError::new(e.code(), e.to_string());
                return self.ready(Some(error_reply(&err, None, None)));
            }
        };
        let head = frame.head();
        let opcode = head.opcode;
        metrics.count_in(opcode, size);
        let trace_id = head.trace_id.unwrap_or_else(trace::new_trace_id);
        let Some(handler) = self.table.get(opcode) else {
            let err = HandlerError::new(
                ErrorCode::UnknownOpcode,
                format!("no handler for opcode {opcode}"),
            );
            return self.ready(Some(error_reply(&err, head.transaction_id, Some(trace_id))));
        };
        let mut span_id = trace::new_span_id();
        let span = trace::frame_span(opcode, conn.id(), trace_id, &mut span_id, head.span_id);
        let _entered = span.enter();
        // A frame's own token is checked for that frame only.
        let mut identity = None;
        if let (Some(verifier), Some(token)) = (self.node.verifier(), frame.token()) {
            if opcode != Opcode::Auth.0 {
                match verifier.verify_now(token) {
                    Ok(id) => identity = Some(id),
                    Err(e) => {
                        let err = HandlerError::new(ErrorCode::Unauthorized, e.to_string());
                        return self.ready(Some(error_reply(
                            &err,
                            head.transaction_id,
                            Some(trace_id),
                        )));
                    }
                }
            }
        }
        if let Some(action) = Action::of_lazy(opcode, || frame.channel()) {
            let access = self.node.access();
            if access.governs(action) {
                let who = identity
                    .clone()
                    .or_else(|| conn.extension::<crate::node::Identity>());
                if let Err(denied) = access.check(action, who.as_ref()) {
                    return self.ready(Some(error_reply(
                        &authorize::denied_error(denied),
                        head.transaction_id,
                        Some(trace_id),
                    )));
                }
            }
        }
        let quotas = self.node.quotas();
        let quota = if quotas.is_empty() {
            QuotaResult::Unlimited
        } else {
            let payload = head.payload.as_ref().map_or(0, |p| p.len());
            let user = || {
                identity
                    .as_ref()
                    .map(|i| i.user_id().to_string())
                    .or_else(|| {
                        conn.extension::<crate::node::Identity>()
                            .map(|i| i.user_id().to_string())
                    })
            };
            quotas.check(conn, opcode, frame.channel(), payload, user)
        };
        if let QuotaResult::Exceeded { retry_after_ms } = quota {
            if !handler.decides_quota() {
                let err = HandlerError::rate_limited(retry_after_ms);
                return self.ready(Some(error_reply(&err, head.transaction_id, Some(trace_id))));
            }
        }
        let request = Request {
            node: self.node.clone(),
            connection: conn.clone(),
            body: frame.payload_at(&head.payload),
            parent_span_id: head.span_id,
            frame,
            head,
            trace_id,
            span_id,
            quota,
            identity,
            builder: None,
        };
        let started = Instant::now();
        if !self.hooks.authorize.is_empty() && Action::of(opcode, request.frame.channel()).is_some()
        {
            let anonymous = request.identity().is_none();
            let (transaction_id, trace_id) = (request.transaction_id(), request.trace_id());
            let refused = move |r: authorize::Refused| {
                Some(error_reply(
                    &r.into_error(anonymous),
                    transaction_id,
                    Some(trace_id),
                ))
            };
            match authorize::check_all(&self.hooks.authorize, &request) {
                authorize::Check::Ready(Ok(())) => {}
                authorize::Check::Ready(Err(r)) => return self.ready(refused(r)),
                authorize::Check::Pending(check) => {
                    let (handler, conn) = (handler.clone(), conn.clone());
                    let future = Box::pin(async move {
                        if let Err(r) = check.await {
                            return refused(r);
                        }
                        match handler.call(request, &conn) {
                            Call::Ready(reply) => reply,
                            Call::Pending(f) => f.await,
                        }
                    });
                    return Dispatch {
                        state: DispatchState::Running {
                            future,
                            node: &self.node,
                            started,
                            opcode,
                            span: span.clone(),
                        },
                    };
                }
            }
        }
        match handler.call(request, conn) {
            Call::Ready(reply) => {
                metrics.observe_handler(opcode, started.elapsed().as_secs_f64());
                self.ready(reply)
            }
            Call::Pending(future) => Dispatch {
                state: DispatchState::Running {
                    future,
                    node: &self.node,
                    started,
                    opcode,
                    span: span.clone(),
                },
            },
        }
    }

    /// The answer to a text message: `Error`/`BadFrame` (the protocol is binary).
    pub fn reject_text(&self) -> Bytes {
        let err = HandlerError::new(
            ErrorCode::BadFrame,
            "text messages are not protocol frames; send binary FlatBuffers",
        );
        let reply = error_reply(&err, None, None);
        self.node
            .metrics()
            .count_sent(reply.opcode, reply.bytes.len(), reply.error);
        reply.bytes
    }

    fn ready(&self, reply: Option<Encoded>) -> Dispatch<'_> {
        if let Some(r) = &reply {
            self.node
                .metrics()
                .count_sent(r.opcode, r.bytes.len(), r.error);
        }
        Dispatch {
            state: DispatchState::Done(reply.map(|r| r.bytes)),
        }
    }
}

fn error_reply(err: &HandlerError, transaction_id: Option<Uuid>, trace: Option<Uuid>) -> Encoded {
    let frame = crate::protocol::FrameFields::error_frame(err.code(), err.message())
        .transaction_id(transaction_id)
        .trace_id(trace)
        .retry_after_ms(err.retry_after_ms())
        .encode();
    Encoded {
        bytes: frame,
        error: Some(err.code()),
        opcode: Opcode::Error.0,
    }
}

/// The reply to one message: ready at once for sync handlers (no allocation),
/// or the handler's future. See [`Dispatcher::dispatch`].
#[must_use = "a dispatch does nothing until awaited"]
pub struct Dispatch<'a> {
    state: DispatchState<'a>,
}

enum DispatchState<'a> {
    Done(Option<Bytes>),
    Running {
        future: BoxFuture<'static, Option<Encoded>>,
        node: &'a Node,
        started: Instant,
        opcode: u16,
        /// The frame's span, entered while the handler's future is polled.
        span: tracing::Span,
    },
    Finished,
}

impl std::fmt::Debug for Dispatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            DispatchState::Done(_) => "done",
            DispatchState::Running { .. } => "running",
            DispatchState::Finished => "finished",
        };
        f.debug_struct("Dispatch").field("state", &state).finish()
    }
}

impl Future for Dispatch<'_> {
    type Output = Option<Bytes>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match &mut self.state {
            DispatchState::Done(reply) => {
                let reply = reply.take();
                self.state = DispatchState::Finished;
                Poll::Ready(reply)
            }
            DispatchState::Running {
                future,
                node,
                started,
                opcode,
                span,
            } => match span.in_scope(|| future.as_mut().poll(cx)) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(reply) => {
                    let metrics = node.metrics();
                    metrics.observe_handler(*opcode, started.elapsed().as_secs_f64());
                    if let Some(r) = &reply {
                        metrics.count_sent(r.opcode, r.bytes.len(), r.error);
                    }
                    self.state = DispatchState::Finished;
                    Poll::Ready(reply.map(|r| r.bytes))
                }
            },
            DispatchState::Finished => Poll::Ready(None),
        }
    }
}
