//! The writer task: drains a session's queue and batches frames into few syscalls.

use futures_util::{Sink, SinkExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{Connection, Outbound, OutboundQueue};

/// How long a close frame may take to go out when a session is aborted.
const ABORT_CLOSE_DEADLINE: Duration = Duration::from_secs(1);

pub(crate) fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

enum Step {
    Continue,
    /// A graceful close was written: the session is over.
    Closed,
}

/// Runs until the queue asks for a close, the session is aborted or ended, or the
/// socket fails. Always leaves the session marked as ended.
pub(crate) async fn run<S>(
    mut sink: S,
    conn: Connection,
    mut queue: OutboundQueue,
    max_batch: usize,
) where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let aborted = conn.0.aborted.clone();
    let ended = conn.0.ended.clone();
    loop {
        let first = tokio::select! {
            biased;
            _ = aborted.cancelled() => break,
            item = queue.rx.recv() => match item {
                Some(item) => item,
                None => break,
            },
            // The reader ended (peer closed or failed): flush what remains and stop.
            _ = ended.cancelled() => {
                let _ = tokio::time::timeout(ABORT_CLOSE_DEADLINE, sink.close()).await;
                break;
            }
        };
        let batch = write_batch(&mut sink, &conn, &mut queue, first, max_batch);
        let step = tokio::select! {
            biased;
            _ = aborted.cancelled() => break,
            step = batch => step,
        };
        match step {
            Ok(Step::Continue) => {}
            Ok(Step::Closed) | Err(_) => break,
        }
    }
    if let Some(code) = conn.abort_code() {
        // Best effort: a slow consumer's socket may be full, so this is bounded.
        let _ = tokio::time::timeout(ABORT_CLOSE_DEADLINE, async {
            sink.send(close_message(code, "")).await?;
            sink.close().await
        })
        .await;
    }
    conn.0.ended.cancel();
}

async fn write_batch<S>(
    sink: &mut S,
    conn: &Connection,
    queue: &mut OutboundQueue,
    first: Outbound,
    max_batch: usize,
) -> Result<Step, WsError>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let mut next = Some(first);
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut step = Step::Continue;
    while let Some(item) = next.take() {
        match item {
            Outbound::Binary(frame) => {
                let len = frame.len();
                sink.feed(Message::Binary(frame)).await?;
                conn.dequeued(len);
                messages += 1;
                bytes += len as u64;
            }
            Outbound::Text(text) => {
                let len = text.len();
                sink.feed(Message::Text(text)).await?;
                conn.dequeued(len);
                messages += 1;
                bytes += len as u64;
            }
            Outbound::Close(code, reason) => {
                sink.feed(close_message(code, reason)).await?;
                step = Step::Closed;
                break;
            }
        }
        if messages as usize >= max_batch {
            break;
        }
        next = queue.rx.try_recv().ok();
    }
    sink.flush().await?;
    conn.metrics().record_out(messages, bytes);
    if let Step::Closed = step {
        // Wait (bounded) for the peer's close reply, then drop the connection.
        let _ = tokio::time::timeout(ABORT_CLOSE_DEADLINE, sink.close()).await;
    }
    Ok(step)
}
