//! The reading half of a session: data messages in arrival order, with control
//! frames, idle timeout, shutdown and read failures handled the same way for
//! every service.

use std::time::Duration;

use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::{close_code, Connection};

/// What the reader got next.
pub(crate) enum Next {
    /// A binary or text message (already counted in the session's metrics).
    Data(Message),
    /// The session is over. `Some` when the server queued a close frame (code,
    /// reason); `None` when the peer closed or the transport failed.
    Done(Option<(u16, &'static str)>),
}

/// The close code a read failure ends the session with; `None` when the transport
/// itself is gone (nothing can be sent).
fn read_failure(error: &WsError) -> Option<(u16, &'static str)> {
    match error {
        WsError::Capacity(_) => Some((close_code::TOO_BIG, "message too big")),
        WsError::Utf8(_) => Some((
            close_code::INVALID_PAYLOAD,
            "invalid UTF-8 in a text message",
        )),
        WsError::Protocol(_) => Some((close_code::PROTOCOL, "protocol error")),
        _ => None,
    }
}

/// Reads until the next data message or the end of the session.
pub(crate) async fn next_message<S>(
    stream: &mut SplitStream<WebSocketStream<S>>,
    conn: &Connection,
    shutdown: &CancellationToken,
    idle_timeout: Duration,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let close = |code: u16, reason: &'static str| {
        conn.close(code, reason);
        Next::Done(Some((code, reason)))
    };
    loop {
        let next = tokio::select! {
            biased;
            _ = conn.ended() => return Next::Done(None),
            _ = shutdown.cancelled() => return close(close_code::GOING_AWAY, "server shutting down"),
            next = tokio::time::timeout(idle_timeout, stream.next()) => next,
        };
        match next {
            Err(_) => return close(close_code::NORMAL, "idle timeout"),
            Ok(None) => return Next::Done(None),
            Ok(Some(Ok(msg))) => match &msg {
                Message::Binary(b) => {
                    conn.metrics().record_in(b.len());
                    return Next::Data(msg);
                }
                Message::Text(t) => {
                    conn.metrics().record_in(t.len());
                    return Next::Data(msg);
                }
                Message::Ping(_) | Message::Pong(_) => conn.metrics().touch(),
                Message::Close(_) => return Next::Done(None),
                Message::Frame(_) => {}
            },
            Ok(Some(Err(e))) => {
                tracing::debug!(session = %conn.id(), error = %e, "read failed");
                return match read_failure(&e) {
                    Some((code, reason)) => close(code, reason),
                    None => Next::Done(None),
                };
            }
        }
    }
}

/// Ends a session: when the peer closed, the writer flushes the close reply and
/// stops at once; when the server queued a close, the writer drains the queue and
/// writes it. Either way bounded by `deadline`.
pub(crate) async fn finish(
    conn: &Connection,
    writer: JoinHandle<()>,
    server_closed: bool,
    deadline: Duration,
) {
    if !server_closed {
        conn.end();
    }
    if Box::pin(tokio::time::timeout(deadline, writer))
        .await
        .is_err()
    {
        tracing::debug!(session = %conn.id(), "writer did not finish in time");
    }
    conn.end();
}
