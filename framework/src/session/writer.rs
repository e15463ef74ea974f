//! The writer task: drains a session's queue and batches frames into few syscalls.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{Sink, SinkExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{Connection, Outbound};

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
///
/// An aborted session (a slow consumer) gets its close frame, with a reason it
/// can read, written after whatever is already on its way: if it reads within
/// `close_grace` it learns it was evicted, instead of seeing the connection cut.
pub(crate) async fn run<S>(mut sink: S, conn: Connection, max_batch: usize, close_grace: Duration)
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    loop {
        if conn.abort_code().is_some() {
            break;
        }
        let batch = conn.0.outbox.take();
        if batch.is_empty() {
            if conn.has_ended() {
                // The reader ended (peer closed or failed): send the close reply, stop.
                let _ = Box::pin(tokio::time::timeout(ABORT_CLOSE_DEADLINE, sink.close())).await;
                break;
            }
            // One small future is all an idle session's writer holds: pushes,
            // `end` and `abort` all wake it here.
            conn.writer_ready().await;
            continue;
        }
        // Boxed: the batch's state exists only while writing, so an idle
        // session's writer task stays small.
        let step = tokio::select! {
            biased;
            _ = conn.aborted() => break,
            step = Box::pin(write_batch(&mut sink, &conn, batch, max_batch)) => step,
        };
        match step {
            Ok(Step::Continue) => {}
            Ok(Step::Closed) | Err(_) => break,
        }
    }
    // What is still queued will never be written: its bytes go back to the budget.
    conn.drain_queue();
    if let Some(code) = conn.abort_code() {
        // The queue is dropped; the close goes right after the bytes already
        // handed to the socket. Bounded: a consumer that never reads is cut.
        let reason = conn.abort_reason();
        let _ = Box::pin(tokio::time::timeout(close_grace, async {
            sink.send(close_message(code, reason)).await?;
            sink.close().await
        }))
        .await;
    }
    conn.end();
}

/// Writes `batch`, flushing once per `max_batch` frames and at the end.
async fn write_batch<S>(
    sink: &mut S,
    conn: &Connection,
    batch: VecDeque<Outbound>,
    max_batch: usize,
) -> Result<Step, WsError>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let (mut messages, mut bytes, mut unflushed) = (0u64, 0u64, 0usize);
    // Bytes written but not yet given back to the queue's counts.
    let (mut written, mut charged) = (0usize, 0usize);
    let mut step = Step::Continue;
    for item in batch {
        let (message, len) = match item {
            Outbound::Binary(frame) => {
                let len = frame.len();
                charged += len;
                (Message::Binary(frame), len)
            }
            Outbound::Shared(frame) => {
                let len = frame.len();
                (Message::Binary(frame), len)
            }
            Outbound::Text(text) => {
                let len = text.len();
                charged += len;
                (Message::Text(text), len)
            }
            Outbound::Ping => {
                sink.feed(Message::Ping(Default::default())).await?;
                continue;
            }
            Outbound::Pong(payload) => {
                sink.feed(Message::Pong(payload)).await?;
                continue;
            }
            Outbound::CloseReply(code) => {
                let frame = code.map(|code| CloseFrame {
                    code: CloseCode::from(code),
                    reason: Default::default(),
                });
                sink.feed(Message::Close(frame)).await?;
                step = Step::Closed;
                break;
            }
            Outbound::Close(code, reason) => {
                sink.feed(close_message(code, reason)).await?;
                step = Step::Closed;
                break;
            }
        };
        sink.feed(message).await?;
        written += len;
        messages += 1;
        bytes += len as u64;
        unflushed += 1;
        if unflushed >= max_batch {
            sink.flush().await?;
            conn.dequeued(std::mem::take(&mut written), std::mem::take(&mut charged));
            unflushed = 0;
        }
    }
    sink.flush().await?;
    conn.dequeued(written, charged);
    conn.metrics().record_out(messages, bytes);
    if let Step::Closed = step {
        // Wait (bounded) for the peer's close reply, then drop the connection.
        let _ = tokio::time::timeout(ABORT_CLOSE_DEADLINE, sink.close()).await;
    }
    Ok(step)
}
