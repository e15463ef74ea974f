use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;
use uuid::Uuid;

use crate::node::{AppState, Identity, Node, QuotaResult};
use crate::protocol::{fbs, Frame, Head};
use crate::session::Connection;

use super::{Reply, ReplyMeta};

/// One incoming protocol frame and everything a handler may use to answer it (the
/// C++ guide's `websocket_request`): the application state, the sending
/// connection, the parsed message, its payload ("body"), a FlatBuffers builder
/// reused per connection, the trace and span ids, and the quota result.
///
/// A handler takes it by value (declare it `mut` to use its builder); it can be
/// any argument of the handler, beside extractors and the typed message.
///
/// ```
/// use framework::{dispatch::Request, helpers, Reply};
/// fn handler(mut ctx: Request) -> Reply {
///     assert!(ctx.body().len() <= ctx.message().payload().map_or(0, |p| p.len()));
///     helpers::make_empty_response(&mut ctx, 200)
/// }
/// ```
pub struct Request {
    pub(crate) node: Node,
    pub(crate) connection: Connection,
    pub(crate) frame: Frame,
    /// The envelope fields, read once from `frame`.
    pub(crate) head: Head,
    pub(crate) body: Bytes,
    pub(crate) trace_id: Uuid,
    pub(crate) span_id: u64,
    pub(crate) parent_span_id: u64,
    pub(crate) quota: QuotaResult,
    /// The identity of this frame's own token, when it had one.
    pub(crate) identity: Option<Identity>,
    pub(crate) builder: Option<Box<FlatBufferBuilder<'static>>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("opcode", &self.head.opcode)
            .field("session", &self.connection.id())
            .field("trace_id", &self.trace_id)
            .finish()
    }
}

impl Request {
    /// The application state (C++ `state_`).
    pub fn state(&self) -> &AppState {
        self.node.state()
    }

    /// Shared state of type `T`, registered with [`App::with_state`](crate::App::with_state).
    pub fn state_of<T: Send + Sync + 'static>(&self) -> Option<std::sync::Arc<T>> {
        self.node.state().get::<T>()
    }

    /// The running node: publish, send, broadcast, subscribe from a handler.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The sending connection (C++ `websocket_connection_`).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The parsed, verified message (C++ `message_`).
    pub fn message(&self) -> fbs::Message<'_> {
        self.frame.message()
    }

    /// The verified frame.
    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    /// The message's payload, zero-copy (C++ `body_`).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// A copy for an authorizer (no builder; the rest is reference-counted).
    pub(crate) fn duplicate(&self) -> Request {
        Request {
            node: self.node.clone(),
            connection: self.connection.clone(),
            frame: self.frame.clone(),
            head: self.head.clone(),
            body: self.body.clone(),
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            quota: self.quota,
            identity: self.identity.clone(),
            builder: None,
        }
    }

    /// What the reply needs of this request (correlation, trace, span).
    pub(crate) fn reply_meta(&self) -> ReplyMeta {
        ReplyMeta {
            opcode: self.head.opcode,
            transaction_id: self.head.transaction_id,
            trace_id: self.trace_id,
            span_id: self.span_id,
            requires_ack: self.head.requires_ack,
        }
    }

    /// The frame's opcode.
    pub fn opcode(&self) -> u16 {
        self.head.opcode
    }

    /// The frame's transaction id.
    pub fn transaction_id(&self) -> Option<Uuid> {
        self.head.transaction_id
    }

    /// The trace id: the frame's, or a new one the server created (C++ `trace_id_`).
    pub fn trace_id(&self) -> Uuid {
        self.trace_id
    }

    /// The span id of this request's handling (C++ `span_id_`).
    pub fn span_id(&self) -> u64 {
        self.span_id
    }

    /// The sender's span id (C++ `parent_span_id_`).
    pub fn parent_span_id(&self) -> u64 {
        self.parent_span_id
    }

    /// Who sent this frame: the identity of its own token when it carried one,
    /// else the connection's (from the upgrade or the last `Auth`); `None` when
    /// anonymous.
    pub fn identity(&self) -> Option<Identity> {
        self.identity
            .clone()
            .or_else(|| self.connection.extension::<Identity>())
    }

    /// The quota evaluation for this frame (C++ `quota_result_`).
    pub fn quota_result(&self) -> QuotaResult {
        self.quota
    }

    /// The connection's FlatBuffers builder (C++ `builder_`), reset and ready. It is
    /// reused across the connection's requests rather than allocated per frame.
    pub fn builder(&mut self) -> &mut FlatBufferBuilder<'static> {
        let conn = &self.connection;
        self.builder.get_or_insert_with(|| conn.take_builder())
    }

    /// Finishes a `Message` built with [`builder`](Self::builder) into a reply frame.
    pub fn finish(&mut self, root: flatbuffers::WIPOffset<fbs::Message<'static>>) -> Reply {
        let bytes = crate::protocol::finish(self.builder(), root);
        Reply::frame(bytes)
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(mut b) = self.builder.take() {
            b.reset();
            self.connection.return_builder(b);
        }
    }
}
