//! The reading half of a session: data messages in arrival order, with control
//! frames, idle timeout, shutdown and read failures handled the same way for
//! every service.

use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use tokio::time::Sleep;
use tokio_tungstenite::tungstenite::Message;

use super::frames::{FrameReader, ReadError};
use super::{close_code, Connection};

/// What the reader got next.
pub(crate) enum Next {
    /// A binary or text message (already counted in the session's metrics).
    Data(Message),
    /// The session is over. `Some` when the server queued a close frame (code,
    /// reason); `None` when the peer closed or the transport failed.
    Done(Option<(u16, &'static str)>),
}

/// The quiet-time rules of a session: close after `idle_timeout` without anything
/// from the peer; ping after `ping_interval` of quiet (zero: never), and close when
/// a ping is not answered within `pong_timeout`. Milliseconds, so an idle
/// session's reader stays small.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keepalive {
    pub(crate) idle_timeout: Duration,
    /// The most a fragmented message may take to arrive whole.
    pub(crate) message_timeout: Duration,
    pub(crate) ping_interval_ms: u32,
    pub(crate) pong_timeout_ms: u32,
}

impl Keepalive {
    pub(crate) fn from_config(config: &crate::Config) -> Self {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        Self {
            idle_timeout: config.idle_timeout,
            message_timeout: config.message_timeout,
            ping_interval_ms: ms(config.ping_interval),
            pong_timeout_ms: ms(config.pong_timeout).max(1),
        }
    }
}

/// What a session's reader waits for besides the socket, each registered once per
/// session rather than once per read (per-read timers and waiter registrations
/// showed in profiles): the queue (through the outlet, which also tells when the
/// session is to end: closed, aborted, ended), the server's shutdown, and one
/// quiet timer, which is checked lazily against the session's last activity and
/// serves the idle deadline and the keepalive pings alike.
pub(crate) struct Waits<'p, C> {
    /// Where the session writes: what its messages queued, before it waits, and
    /// whatever is queued while it waits.
    pub(crate) outlet: &'p dyn super::writer::Outlet,
    pub(crate) shutdown: Pin<&'p mut C>,
    /// `shutdown` was polled once, with the session's shutdown waker.
    pub(crate) shutdown_registered: bool,
    pub(crate) idle: Pin<&'p mut Sleep>,
    pub(crate) keepalive: Keepalive,
    /// When the unanswered ping went out (ms since the session started); 0: none.
    pub(crate) ping_sent_ms: u64,
}

/// What the quiet timer decided.
enum Quiet {
    /// Wake again after this long.
    Wait(Duration),
    /// Close the session with this code and reason.
    Close(u16, &'static str),
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether the server is shutting down, for a session's reader. The server's
/// shutdown future is polled once, with a waker of the session's own
/// ([`Connection::shutdown_waker`]); every later poll is one atomic load. Polling
/// the token's future takes two locks every session of the server shares (its
/// tree node's and its `Notify`'s), and the reader polls its waits on every
/// wake-up: one shared lock per delivery, across all cores.
fn poll_shutdown<C: Future<Output = ()>>(
    shutdown: &mut Pin<&mut C>,
    registered: &mut bool,
    conn: &Connection,
) -> std::task::Poll<()> {
    if *registered {
        return if conn.shutdown_seen() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        };
    }
    *registered = true;
    let waker = conn.shutdown_waker();
    shutdown
        .as_mut()
        .poll(&mut std::task::Context::from_waker(&waker))
}

impl<C> Waits<'_, C> {
    /// Makes the quiet timer look again now (the session's deadline changed).
    pub(crate) fn recheck_now(&mut self) {
        self.idle.as_mut().reset(tokio::time::Instant::now());
    }

    /// The quiet rules, applied to a session quiet for `idle_for`, `now_ms` into its
    /// life; queues a ping when one is due.
    fn quiet(&mut self, conn: &Connection, idle_for: Duration, now_ms: u64) -> Quiet {
        let k = self.keepalive;
        if idle_for >= k.idle_timeout {
            return Quiet::Close(close_code::NORMAL, "idle timeout");
        }
        let mut next = k.idle_timeout - idle_for;
        if let Some(taking) = conn.message_unfinished_for() {
            if taking >= k.message_timeout {
                return Quiet::Close(close_code::POLICY, "message took too long");
            }
            next = next.min(k.message_timeout - taking);
        }
        let deadline = conn.deadline_ms();
        if deadline != 0 {
            let now = unix_now_ms();
            if now >= deadline {
                return Quiet::Close(close_code::POLICY, "token expired");
            }
            next = next.min(Duration::from_millis(deadline - now));
        }
        let since_activity_ms = idle_for.as_millis() as u64;
        // A ping is answered by anything the peer sends after it.
        if self.ping_sent_ms != 0 && since_activity_ms <= now_ms - self.ping_sent_ms {
            self.ping_sent_ms = 0;
        }
        if k.ping_interval_ms == 0 {
            return Quiet::Wait(next);
        }
        let interval = u64::from(k.ping_interval_ms);
        if self.ping_sent_ms != 0 {
            let waited = now_ms - self.ping_sent_ms;
            if waited >= u64::from(k.pong_timeout_ms) {
                return Quiet::Close(close_code::NORMAL, "ping timeout");
            }
            next = next.min(Duration::from_millis(u64::from(k.pong_timeout_ms) - waited));
        } else if since_activity_ms >= interval {
            if conn.ping().is_ok() {
                self.ping_sent_ms = now_ms.max(1);
            }
            next = next.min(Duration::from_millis(u64::from(k.pong_timeout_ms)));
        } else {
            next = next.min(Duration::from_millis(interval - since_activity_ms));
        }
        // The answer to a ping is noticed (and the next ping sent) within an interval.
        Quiet::Wait(next.min(Duration::from_millis(interval)))
    }
}

/// Declares `$waits`, a [`Waits`] for `$conn` pinned in the caller's frame (so the
/// waits live as long as the session's reader, registered once).
macro_rules! reader_waits {
    ($waits:ident, $conn:expr, $outlet:expr, $shutdown:expr, $keepalive:expr) => {
        let keepalive: $crate::session::Keepalive = $keepalive;
        let shutdown_wait = $shutdown.cancelled();
        let first_wake = if keepalive.ping_interval_ms > 0 {
            keepalive
                .idle_timeout
                .min(std::time::Duration::from_millis(u64::from(
                    keepalive.ping_interval_ms,
                )))
        } else {
            keepalive.idle_timeout
        };
        let idle = tokio::time::sleep(first_wake);
        tokio::pin!(shutdown_wait, idle);
        let mut $waits = $crate::session::Waits {
            outlet: $outlet,
            shutdown: shutdown_wait.as_mut(),
            shutdown_registered: false,
            idle: idle.as_mut(),
            keepalive,
            ping_sent_ms: 0,
        };
    };
}
pub(crate) use reader_waits;

/// Reads until the next data message or the end of the session.
pub(crate) async fn next_message<R, C>(
    stream: &mut FrameReader<R>,
    conn: &Connection,
    waits: &mut Waits<'_, C>,
) -> Next
where
    R: super::frames::SessionRead,
    C: Future<Output = ()>,
{
    let close = |code: u16, reason: &'static str| {
        conn.close(code, reason);
        Next::Done(Some((code, reason)))
    };
    loop {
        if !stream.has_whole_frame() {
            // About to wait for the socket: what the last messages queued goes
            // out now, from here (no writer wake-up) when the socket takes it.
            waits.outlet.write_now(conn);
        }
        if conn.has_ended() {
            return Next::Done(None);
        }
        // The socket first: a frame that is there is handled without polling
        // the waits (a mutex and a waker registration each, per frame, showed
        // in echo profiles). They are polled whenever the socket has nothing,
        // which tokio's cooperative budget forces now and then under a flood.
        let next = tokio::select! {
            biased;
            next = stream.next() => next,
            // What is queued meanwhile goes out from here; `Ready` when the
            // session is to end (a close is next, aborted, ended, failed).
            _ = std::future::poll_fn(|cx| waits.outlet.poll_write(conn, cx)) => return Next::Done(None),
            _ = std::future::poll_fn(|_| poll_shutdown(&mut waits.shutdown, &mut waits.shutdown_registered, conn)) => {
                return close(close_code::GOING_AWAY, "server shutting down")
            }
            _ = waits.idle.as_mut() => {
                let metrics = conn.metrics();
                match waits.quiet(conn, metrics.since_last_activity(), metrics.elapsed_ms()) {
                    Quiet::Close(code, reason) => return close(code, reason),
                    Quiet::Wait(rest) => {
                        waits.idle.as_mut().reset(tokio::time::Instant::now() + rest);
                    }
                }
                continue;
            }
        };
        // What handling this frame queues is written by this reader, before it
        // waits again (see `Outbox`).
        conn.0.outbox.activate();
        match next {
            Ok(msg) => match &msg {
                Message::Binary(b) => {
                    conn.metrics().record_in(b.len());
                    return Next::Data(msg);
                }
                Message::Text(t) => {
                    conn.metrics().record_in(t.len());
                    return Next::Data(msg);
                }
                Message::Ping(payload) => {
                    conn.metrics().touch();
                    let _ = conn.pong(payload.clone());
                }
                Message::Pong(_) => conn.metrics().touch(),
                Message::Close(frame) => {
                    // The peer closes: echo its code (RFC 6455 §5.5.1), then stop.
                    conn.close_reply(frame.as_ref().map(|f| u16::from(f.code)));
                    return Next::Done(None);
                }
                Message::Frame(_) => {}
            },
            Err(ReadError::Budget(over)) => {
                conn.over_budget(over);
                return Next::Done(Some(over.close()));
            }
            Err(e) => {
                tracing::debug!(session = %conn.id(), error = ?e, "read failed");
                return match e.close() {
                    Some((code, reason)) => close(code, reason),
                    None => Next::Done(None),
                };
            }
        }
    }
}

/// Ends a session: when the peer closed, the close reply is flushed and the
/// session stops at once; when the server queued a close, the queue is drained
/// up to it and it is written. Either way bounded by `deadline`.
///
/// When the server closed (or aborted) the session, what the peer still sends is
/// then read and dropped until its close reply or EOF (at most a second): closing
/// a socket with unread bytes makes the kernel reset the connection, which could
/// destroy the close frame before the peer reads it.
pub(crate) async fn finish<R>(
    conn: &Connection,
    outlet: &dyn super::writer::Outlet,
    stream: &mut FrameReader<R>,
    server_closed: bool,
    closing: super::writer::Closing,
) where
    R: super::frames::SessionRead,
{
    // Nothing is written inline any more: what the reader queued last (a close,
    // a reply) is the closing writes'.
    conn.0.outbox.deactivate();
    if !server_closed {
        conn.end();
    }
    closing.write(conn, outlet).await;
    conn.end();
    if server_closed || conn.abort_code().is_some() {
        let drain = async {
            while stream.is_healthy() {
                match stream.next().await {
                    Ok(Message::Close(_)) => return,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            // A stream that cannot be parsed any further is read raw.
            stream.discard().await;
        };
        let _ = Box::pin(tokio::time::timeout(
            closing.deadline().min(CLOSE_DRAIN),
            drain,
        ))
        .await;
    }
}

/// The longest a closed session's reader drains what the peer still sends.
const CLOSE_DRAIN: Duration = Duration::from_secs(1);
