//! The reading half of a session: data messages in arrival order, with control
//! frames, idle timeout, shutdown and read failures handled the same way for
//! every service.

use std::time::Duration;

use futures_util::stream::SplitStream;
use futures_util::StreamExt;
use std::future::Future;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

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

/// What a session's reader waits for besides the socket, each registered once per
/// session rather than once per read (per-read timers and waiter registrations
/// showed in profiles): the session's end, the server's shutdown, and the idle
/// deadline, which is checked lazily against the session's last activity.
pub(crate) struct Waits<'p, E, C> {
    pub(crate) ended: Pin<&'p mut E>,
    pub(crate) shutdown: Pin<&'p mut C>,
    pub(crate) idle: Pin<&'p mut Sleep>,
    pub(crate) idle_timeout: Duration,
}

/// Declares `$waits`, a [`Waits`] for `$conn` pinned in the caller's frame (so the
/// waits live as long as the session's reader, registered once).
macro_rules! reader_waits {
    ($waits:ident, $conn:expr, $shutdown:expr, $idle_timeout:expr) => {
        let ended = $conn.ended();
        let shutdown_wait = $shutdown.cancelled();
        let idle = tokio::time::sleep($idle_timeout);
        tokio::pin!(ended, shutdown_wait, idle);
        let mut $waits = $crate::session::Waits {
            ended: ended.as_mut(),
            shutdown: shutdown_wait.as_mut(),
            idle: idle.as_mut(),
            idle_timeout: $idle_timeout,
        };
    };
}
pub(crate) use reader_waits;

/// Reads until the next data message or the end of the session.
pub(crate) async fn next_message<S, E, C>(
    stream: &mut SplitStream<WebSocketStream<S>>,
    conn: &Connection,
    waits: &mut Waits<'_, E, C>,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
    E: Future<Output = ()>,
    C: Future<Output = ()>,
{
    let close = |code: u16, reason: &'static str| {
        conn.close(code, reason);
        Next::Done(Some((code, reason)))
    };
    loop {
        let next = tokio::select! {
            biased;
            _ = waits.ended.as_mut() => return Next::Done(None),
            _ = waits.shutdown.as_mut() => return close(close_code::GOING_AWAY, "server shutting down"),
            _ = waits.idle.as_mut() => {
                let idle_for = conn.metrics().since_last_activity();
                if idle_for >= waits.idle_timeout {
                    return close(close_code::NORMAL, "idle timeout");
                }
                let rest = waits.idle_timeout - idle_for;
                waits.idle.as_mut().reset(tokio::time::Instant::now() + rest);
                continue;
            }
            next = stream.next() => next,
        };
        match next {
            None => return Next::Done(None),
            Some(Ok(msg)) => match &msg {
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
            Some(Err(e)) => {
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
