//! The protocol session: reads frames in arrival order, verifies and dispatches
//! them, and queues the replies. Shared by every service that speaks the protocol.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dispatch::{Dispatcher, HandlerError, QuotaResult, Reply, ReplyMeta, Request};
use crate::node::Node;
use crate::protocol::{ErrorCode, Frame, FrameFields, Opcode};
use crate::session::{close_code, finish, next_message, reader_waits, Connection, Next};

/// Runs one protocol session to its end.
pub(crate) async fn serve<S>(
    session: super::OpenSession<S>,
    node: Node,
    dispatcher: Arc<Dispatcher>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let super::OpenSession {
        conn,
        mut stream,
        writer,
    } = session;
    // Only what the session needs, not a copy of the whole configuration.
    let (idle_timeout, drain) = (node.config().idle_timeout, node.config().shutdown_timeout);

    if node.session_opened(&conn).await.is_err() {
        conn.close(close_code::INTERNAL, "cluster broker unavailable");
        let _ = Box::pin(tokio::time::timeout(drain, writer)).await;
        return;
    }
    let welcome = FrameFields::new(Opcode::Welcome.0)
        .receiver_id(Some(conn.id()))
        .node_id(Some(node.node_id()))
        .encode();
    let _ = conn.send(welcome);

    let limits = node.config().decode_limits();
    reader_waits!(waits, conn, shutdown, idle_timeout);
    let closed_by_server = loop {
        let msg = match next_message(&mut stream, &conn, &mut waits).await {
            Next::Data(msg) => msg,
            Next::Done(close) => {
                if let Some((close_code::TOO_BIG, _)) = close {
                    node.metrics().oversized_closes.fetch_add(1, Relaxed);
                }
                break close.is_some();
            }
        };
        match msg {
            Message::Binary(bytes) => {
                // Boxed: the dispatch state exists only while a frame is handled,
                // so an idle session's task stays small.
                Box::pin(handle_frame(&node, &dispatcher, &conn, bytes, &limits)).await;
            }
            _ => {
                let err = HandlerError::new(
                    ErrorCode::BadFrame,
                    "text messages are not protocol frames; send binary FlatBuffers",
                );
                reply_error(&node, &conn, err, None, None);
            }
        }
    };
    finish(&conn, writer, closed_by_server, drain).await;
    node.session_closed(&conn).await;
}

fn reply_error(
    node: &Node,
    conn: &Connection,
    err: HandlerError,
    transaction_id: Option<Uuid>,
    trace_id: Option<Uuid>,
) {
    node.metrics().count_error(err.code());
    let frame = FrameFields::error_frame(err.code(), err.message())
        .transaction_id(transaction_id)
        .trace_id(trace_id)
        .encode();
    node.metrics().count_reply(Opcode::Error.0, frame.len());
    let _ = conn.send(frame);
}

pub(crate) async fn handle_frame(
    node: &Node,
    dispatcher: &Dispatcher,
    conn: &Connection,
    bytes: Bytes,
    limits: &crate::protocol::DecodeLimits,
) {
    let size = bytes.len();
    node.metrics().frames_in.fetch_add(1, Relaxed);
    let frame = match Frame::decode(bytes, limits) {
        Ok(f) => f,
        Err(e) => {
            let err = HandlerError::new(e.code(), e.to_string());
            return reply_error(node, conn, err, None, None);
        }
    };
    let opcode = frame.opcode();
    node.metrics().count_in(opcode, size);
    let transaction_id = frame.transaction_id();
    let trace_id = frame.trace_id().unwrap_or_else(Uuid::new_v4);
    let Some(handler) = dispatcher.get(opcode) else {
        let err = HandlerError::new(
            ErrorCode::UnknownOpcode,
            format!("no handler for opcode {opcode}"),
        );
        return reply_error(node, conn, err, transaction_id, Some(trace_id));
    };
    let meta = ReplyMeta {
        opcode,
        transaction_id,
        trace_id,
        span_id: Uuid::new_v4().as_u64_pair().0,
        requires_ack: frame.requires_ack(),
    };
    let request = Request {
        node: node.clone(),
        connection: conn.clone(),
        body: frame.payload(),
        parent_span_id: frame.span_id(),
        frame,
        trace_id,
        span_id: meta.span_id,
        quota: QuotaResult::Unlimited,
        builder: None,
    };
    let started = Instant::now();
    let reply: Reply = handler.0.call(request).reply().await;
    let metrics = node.metrics();
    metrics
        .handler_duration
        .observe(started.elapsed().as_secs_f64());
    if let Some((bytes, error, reply_opcode)) = meta.encode(reply) {
        if let Some(code) = error {
            metrics.count_error(code);
        }
        metrics.count_reply(reply_opcode, bytes.len());
        let _ = conn.send(bytes);
    }
}
