//! The protocol session: greets with `Welcome`, reads messages in arrival order
//! and hands each to the [`Dispatcher`], queueing its reply. It only moves bytes;
//! the pipeline lives in dispatch.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatcher;
use crate::node::Identity;
use crate::session::writer::Closing;
use crate::session::{close_code, finish, next_message, reader_waits, Keepalive, Next};

/// Runs one protocol session to its end. Not an `async fn`: the session's
/// parts are taken apart before the future is made, so the future holds each
/// once (an `async fn` keeps its arguments beside the locals made from them).
pub(crate) fn serve<R>(
    session: super::OpenSession<R>,
    dispatcher: Arc<Dispatcher>,
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
        let node = dispatcher.node();
        // Only what the session needs, not a copy of the whole configuration.
        let (keepalive, closing) = (
            Keepalive::from_config(node.config()),
            Closing::from_config(node.config()),
        );

        if node.session_opened(&conn).await.is_err() {
            conn.close(close_code::INTERNAL, "cluster broker unavailable");
            closing.write(&conn, &*outlet).await;
            conn.end();
            return;
        }
        if let Some(identity) = conn.extension::<Identity>() {
            // Authenticated at the upgrade: the session ends when the token does.
            // Its user's slot was taken at the upgrade: this cannot be refused.
            let _ = node.set_identity(&conn, identity);
        }
        node.welcome(&conn);

        reader_waits!(waits, conn, &*outlet, shutdown, keepalive);
        if conn.take_deadline_changed() {
            // The upgrade's token expires: the timer must know from the start.
            waits.recheck_now();
        }
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
            let reply = match msg {
                Message::Binary(bytes) => {
                    conn.while_active(&*outlet, &closing, dispatcher.dispatch(&conn, bytes))
                        .await
                }
                _ => Some(dispatcher.reject_text()),
            };
            if let Some(reply) = reply {
                let _ = conn.send(reply);
            }
            if conn.take_deadline_changed() {
                // A frame changed when the session must end (a fresh token).
                waits.recheck_now();
            }
        };
        finish(&conn, &*outlet, &mut stream, closed_by_server, closing).await;
        let hooks = dispatcher.hooks();
        if !hooks.disconnect.is_empty() {
            // The hooks still see the session's channels and extensions.
            Box::pin(hooks.disconnect(&conn, node)).await;
        }
        // Boxed: the largest step of a session, and its last.
        Box::pin(node.session_closed(&conn)).await;
        // The connection's place in the limits is given back last.
        drop(slot);
    }
}
