//! The raw WebSocket session: the user's handler sees every message.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::raw::{DataCallbackCache, ErasedRawHandler, RawConnection, RawError, RawMessage};
use crate::session::writer::Closing;
use crate::session::{finish, next_message, reader_waits, Connection, Keepalive, Next};

/// Runs one raw session to its end. Not an `async fn`, for the reason given at
/// [`protocol::serve`](super::protocol::serve).
pub(crate) fn serve<R>(
    session: super::OpenSession<R>,
    node: Node,
    handler: Arc<dyn ErasedRawHandler>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    R: crate::session::SessionRead + Send + 'static,
{
    let super::OpenSession {
        conn,
        mut stream,
        outlet,
        slot,
    } = session;
    async move {
        // Only what the session needs, not a copy of the whole configuration.
        let (keepalive, closing) = (
            Keepalive::from_config(node.config()),
            Closing::from_config(node.config()),
        );
        let raw = RawConnection::new(conn.clone());
        // Raw sessions are not in the hub (no protocol traffic reaches them), but they
        // count in the node's session metrics.
        let metrics = node.metrics();
        metrics.sessions_opened.fetch_add(1, Relaxed);

        // An async handler runs as its own task: a panic there closes only this
        // connection. A sync handler runs inside `call` itself (no task), so that
        // call is guarded too.
        let mut handler_task =
            match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(raw.clone()))) {
                Ok(Some(fut)) => Some(tokio::spawn(fut)),
                Ok(None) => {
                    release_if_abandoned(&raw, &conn);
                    None
                }
                Err(_) => {
                    tracing::error!(session = %conn.id(), "raw handler panicked");
                    raw.internal_error();
                    None
                }
            };
        let mut handler_running = handler_task.is_some();
        let mut data_callback = DataCallbackCache::default();

        reader_waits!(waits, conn, &*outlet, shutdown, keepalive);
        let closed_by_server = loop {
            // Biased: an unbiased `select!` draws a random number on every poll,
            // two per echoed message. The socket first; a handler's end is
            // still seen whenever the socket has nothing, and by the wait for
            // room in its inbox when it stopped reading.
            let next = tokio::select! {
                biased;
                next = next_message(&mut stream, &conn, &mut waits) => next,
                joined = joined(&mut handler_task), if handler_running => {
                    handler_running = false;
                    if joined.is_err() {
                        tracing::error!(session = %conn.id(), "raw handler panicked");
                        raw.internal_error();
                        break true;
                    }
                    release_if_abandoned(&raw, &conn);
                    continue;
                }
            };
            let msg = match next {
                Next::Data(Message::Binary(b)) => RawMessage::Binary(b),
                Next::Data(Message::Text(t)) => RawMessage::Text(t),
                Next::Data(_) => continue,
                Next::Done(close) => {
                    if let Some((code, reason)) = close {
                        if code != crate::session::close_code::GOING_AWAY
                            && code != crate::session::close_code::NORMAL
                        {
                            raw.fire_error(&RawError {
                                close_code: code,
                                message: reason.to_string(),
                            });
                        }
                    }
                    break close.is_some();
                }
            };
            match raw.data_callback_cached(&mut data_callback) {
                Some(callback) => {
                    let called = std::panic::catch_unwind(AssertUnwindSafe(|| callback(&raw, msg)));
                    if called.is_err() {
                        tracing::error!(session = %conn.id(), "raw on_data callback panicked");
                        raw.internal_error();
                        break true;
                    }
                }
                None => {
                    // Bounded: a handler that stops reading holds the peer back
                    // via TCP. The wait for room is boxed: it is rare, and its
                    // future would make every raw session's larger.
                    if let Err(msg) = raw.try_deliver(msg) {
                        let room = Box::pin(async {
                            let mut deliver = std::pin::pin!(raw.deliver(msg));
                            loop {
                                tokio::select! {
                                    _ = &mut deliver => break,
                                    // The session is to end (closed, aborted,
                                    // failed): the message is not needed.
                                    _ = std::future::poll_fn(|cx| outlet.poll_write(&conn, cx)) => break,
                                    _ = shutdown.cancelled() => break,
                                    // A handler that ends without reading (and
                                    // keeps no handle) never makes room.
                                    joined = joined(&mut handler_task), if handler_running => {
                                        handler_running = false;
                                        if joined.is_err() {
                                            tracing::error!(session = %conn.id(), "raw handler panicked");
                                            raw.internal_error();
                                            break;
                                        }
                                        release_if_abandoned(&raw, &conn);
                                    }
                                }
                            }
                        });
                        conn.while_active(&*outlet, &closing, room).await;
                    }
                }
            }
        };
        // The callback may hold the connection: give it back with the others.
        drop(data_callback);
        finish(&conn, &*outlet, &mut stream, closed_by_server, closing).await;
        if let (true, Some(task)) = (handler_running, handler_task) {
            // A handler still looping on recv() sees `None` now; give it a moment to end.
            let _ = AssertUnwindSafe(tokio::time::timeout(closing.deadline(), task))
                .catch_unwind()
                .await;
        }
        raw.fire_close();
        node.metrics().sessions_closed.fetch_add(1, Relaxed);
        // The connection's place in the limits is given back last.
        drop(slot);
    }
}

/// The end of the handler's task (never, when there is none).
fn joined(
    task: &mut Option<tokio::task::JoinHandle<()>>,
) -> impl std::future::Future<Output = Result<(), tokio::task::JoinError>> + '_ {
    std::future::poll_fn(move |cx| match task {
        Some(task) => std::future::Future::poll(std::pin::Pin::new(task), cx),
        None => std::task::Poll::Pending,
    })
}

/// A handler that returned without `on_data` and kept no handle can never read:
/// close the connection instead of leaving it open forever.
fn release_if_abandoned(raw: &RawConnection, conn: &Connection) {
    if raw.data_callback().is_none() && Arc::strong_count(&raw.0) == 1 {
        conn.stop();
    }
}
