//! The protocol session: reads frames in arrival order, verifies and dispatches
//! them, and queues the replies. Shared by every service that speaks the protocol.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::{error::CapacityError, Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dispatch::{Dispatcher, HandlerError, QuotaResult, Reply, ReplyMeta, Request};
use crate::node::Node;
use crate::protocol::{ErrorCode, Frame, FrameFields, Opcode};
use crate::session::{close_code, writer, Connection};

/// Runs one protocol session to its end.
pub(crate) async fn serve<S>(
    ws: WebSocketStream<S>,
    peer: std::net::SocketAddr,
    node: Node,
    dispatcher: Arc<Dispatcher>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = node.config().clone();
    let (conn, queue) = Connection::new(node.node_id(), peer, config.max_queued_bytes);
    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(writer::run(
        sink,
        conn.clone(),
        queue,
        config.max_batch_frames,
    ));

    if node.session_opened(&conn).await.is_err() {
        conn.close(close_code::INTERNAL, "cluster broker unavailable");
        let _ = tokio::time::timeout(config.shutdown_timeout, writer).await;
        return;
    }
    let welcome = FrameFields::new(Opcode::Welcome.0)
        .receiver_id(Some(conn.id()))
        .node_id(Some(node.node_id()))
        .encode();
    let _ = conn.send(welcome);

    let limits = config.decode_limits();
    let ended = conn.0.ended.clone();
    // Whether the server queued a close (then the writer ends the session after it).
    let mut closing = false;
    loop {
        let next = tokio::select! {
            biased;
            _ = ended.cancelled() => break,
            _ = shutdown.cancelled() => {
                conn.close(close_code::GOING_AWAY, "server shutting down");
                closing = true;
                break;
            }
            next = tokio::time::timeout(config.idle_timeout, stream.next()) => next,
        };
        let msg = match next {
            Err(_) => {
                conn.close(close_code::NORMAL, "idle timeout");
                closing = true;
                break;
            }
            Ok(None) => break,
            Ok(Some(Ok(msg))) => msg,
            Ok(Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. })))) => {
                node.metrics().oversized_closes.fetch_add(1, Relaxed);
                conn.close(close_code::TOO_BIG, "message too big");
                closing = true;
                break;
            }
            Ok(Some(Err(e))) => {
                tracing::debug!(session = %conn.id(), error = %e, "read failed");
                break;
            }
        };
        match msg {
            Message::Binary(bytes) => {
                conn.metrics().record_in(bytes.len());
                node.metrics().frames_in.fetch_add(1, Relaxed);
                handle_frame(&node, &dispatcher, &conn, bytes, &limits).await;
            }
            Message::Text(text) => {
                conn.metrics().record_in(text.len());
                let err = HandlerError::new(
                    ErrorCode::BadFrame,
                    "text messages are not protocol frames; send binary FlatBuffers",
                );
                reply_error(&node, &conn, err, None, None);
            }
            Message::Ping(_) | Message::Pong(_) => conn.metrics().touch(),
            Message::Close(_) => break,
            Message::Frame(_) => {}
        }
    }
    // Peer gone or a close queued: let the writer finish (bounded), then clean up.
    if !closing {
        // The peer closed or failed: the writer flushes the close reply and stops.
        ended.cancel();
    }
    if tokio::time::timeout(config.shutdown_timeout, writer)
        .await
        .is_err()
    {
        tracing::debug!(session = %conn.id(), "writer did not finish in time");
    }
    ended.cancel();
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
    let _ = conn.send(frame);
}

async fn handle_frame(
    node: &Node,
    dispatcher: &Dispatcher,
    conn: &Connection,
    bytes: Bytes,
    limits: &crate::protocol::DecodeLimits,
) {
    let frame = match Frame::decode(bytes, limits) {
        Ok(f) => f,
        Err(e) => {
            let err = HandlerError::new(e.code(), e.to_string());
            return reply_error(node, conn, err, None, None);
        }
    };
    let opcode = frame.opcode();
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
    let reply: Reply = handler.0.call(request).reply().await;
    if let Some((bytes, error)) = meta.encode(reply) {
        if let Some(code) = error {
            node.metrics().count_error(code);
        }
        let _ = conn.send(bytes);
    }
}
