//! One WebSocket connection: the upgrade request, the opening handshake
//! (`Welcome`), the writer and reader tasks, the waiters of correlated calls, and
//! the positions the readers track.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};
use uuid::Uuid;

use crate::protocol::{DecodeLimits, Frame, FrameFields, Opcode};

use super::{ClientError, StreamPosition};

pub(super) fn upgrade_request(
    url: &str,
    token: Option<&str>,
) -> Result<tungstenite::handshake::client::Request, ClientError> {
    let mut request = url.into_client_request()?;
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::Protocol("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", value);
    }
    Ok(request)
}

/// A call waiting for its answer; `track` names the channel of a `Subscribe`,
/// whose `Ack` the reader records before any later delivery.
struct Waiter {
    done: oneshot::Sender<Frame>,
    track: Option<Arc<str>>,
}

/// Waiters by transaction id; `None` once the connection is gone, so late calls
/// fail at once instead of waiting for their timeout.
type Pending = Arc<Mutex<Option<HashMap<Uuid, Waiter>>>>;

/// One WebSocket connection.
pub(super) struct Link {
    pub(super) session_id: Uuid,
    pub(super) node_id: Uuid,
    pub(super) out: mpsc::UnboundedSender<Message>,
    pending: Pending,
}

impl Link {
    pub(super) fn alive(&self) -> bool {
        self.pending.lock().is_some()
    }

    /// Registers a waiter for `tx`; `None` when the connection is gone.
    pub(super) fn expect_answer(
        &self,
        tx: Uuid,
        track: Option<Arc<str>>,
    ) -> Option<oneshot::Receiver<Frame>> {
        let (done, answer) = oneshot::channel();
        self.pending
            .lock()
            .as_mut()?
            .insert(tx, Waiter { done, track });
        Some(answer)
    }

    fn forget(&self, tx: Uuid) {
        if let Some(p) = self.pending.lock().as_mut() {
            p.remove(&tx);
        }
    }

    /// Sends `frame` (carrying `tx`) and waits for its answer until `deadline`.
    pub(super) async fn exchange(
        &self,
        tx: Uuid,
        frame: Bytes,
        answer: oneshot::Receiver<Frame>,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Frame, ClientError> {
        if self.out.send(Message::Binary(frame)).is_err() {
            self.forget(tx);
            return Err(ClientError::Closed);
        }
        let frame = match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(f)) => f,
            Ok(Err(_)) => return Err(ClientError::Closed),
            Err(_) => {
                self.forget(tx);
                return Err(ClientError::Timeout(timeout));
            }
        };
        if frame.opcode() == Opcode::Error.0 {
            return Err(ClientError::Server {
                code: frame.error_code(),
                message: frame.error_message().unwrap_or_default().to_string(),
                retry_after_ms: frame.retry_after_ms(),
            });
        }
        Ok(frame)
    }

    /// A whole call on this connection (used before it is handed to users).
    pub(super) async fn call(
        &self,
        fields: FrameFields<'_>,
        track: Option<Arc<str>>,
        timeout: Duration,
    ) -> Result<Frame, ClientError> {
        let tx = Uuid::new_v4();
        let answer = self.expect_answer(tx, track).ok_or(ClientError::Closed)?;
        let frame = fields.transaction_id(Some(tx)).encode();
        let deadline = tokio::time::Instant::now() + timeout;
        self.exchange(tx, frame, answer, deadline, timeout).await
    }
}

/// What the readers of every connection of a client keep up to date.
#[derive(Default)]
pub(super) struct Tracking {
    /// The subscribed channels, with the last position received on each.
    pub(super) channels: Mutex<HashMap<String, Option<StreamPosition>>>,
    /// The last close frame the server sent.
    pub(super) close: Mutex<Option<(u16, String)>>,
}

impl Tracking {
    /// `epoch`/`offset` reached on `slot`: later in the same epoch, or a new epoch.
    fn advance(slot: &mut Option<StreamPosition>, epoch: &str, offset: u64) {
        match slot {
            Some(p) if p.epoch == epoch => p.offset = p.offset.max(offset),
            _ => {
                *slot = Some(StreamPosition {
                    epoch: epoch.to_string(),
                    offset,
                })
            }
        }
    }

    /// The `Ack` of a `Subscribe` of `channel` (recovering ones carry a position).
    fn subscribed(&self, channel: &str, ack: &Frame) {
        if ack.opcode() != Opcode::Ack.0 {
            return;
        }
        let mut channels = self.channels.lock();
        let slot = channels.entry(channel.to_string()).or_insert(None);
        if let Some(epoch) = ack.epoch().filter(|e| !e.is_empty()) {
            Self::advance(slot, epoch, ack.offset());
        }
    }

    /// A delivery: a publication with an offset moves its channel's position.
    fn delivered(&self, frame: &Frame) {
        if frame.opcode() != Opcode::Publish.0 || frame.offset() == 0 {
            return;
        }
        let (Some(channel), Some(epoch)) = (frame.channel(), frame.epoch()) else {
            return;
        };
        if epoch.is_empty() {
            return;
        }
        if let Some(slot) = self.channels.lock().get_mut(channel) {
            Self::advance(slot, epoch, frame.offset());
        }
    }
}

/// A connection just opened: its `Welcome` read, its reader and writer running.
pub(super) struct Opened {
    pub(super) link: Arc<Link>,
    pub(super) user_id: String,
    pub(super) expires_at_ms: u64,
    /// Resolves (or fails) when the connection has ended.
    pub(super) ended: oneshot::Receiver<()>,
}

/// Connects, reads `Welcome`, and starts the connection's writer and reader; the
/// reader hands deliveries to `events_tx` and keeps `tracking` up to date.
pub(super) async fn open(
    request: tungstenite::handshake::client::Request,
    tls: Option<Arc<rustls::ClientConfig>>,
    tracking: Arc<Tracking>,
    events_tx: mpsc::UnboundedSender<Frame>,
) -> Result<Opened, ClientError> {
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    // `wss://` without a configuration of ours: the system's root certificates.
    let connector = tls.map(tokio_tungstenite::Connector::Rustls);
    let (ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector)
            .await?;
    let (mut sink, mut stream) = ws.split();
    let limits = DecodeLimits::for_max_size(64 << 20);

    let welcome = loop {
        match stream.next().await {
            Some(Ok(Message::Binary(b))) => {
                let f =
                    Frame::decode(b, &limits).map_err(|e| ClientError::Protocol(e.to_string()))?;
                if f.opcode() != Opcode::Welcome.0 {
                    return Err(ClientError::Protocol("first frame is not Welcome".into()));
                }
                break f;
            }
            Some(Ok(Message::Close(_))) | None => return Err(ClientError::Closed),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    };
    let session_id = welcome
        .receiver_id()
        .ok_or_else(|| ClientError::Protocol("Welcome without receiver_id".into()))?;

    let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(first) = out_rx.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            while let Ok(next) = out_rx.try_recv() {
                if sink.feed(next).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });

    let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
    let (ended_tx, ended) = oneshot::channel();
    let reader_pending = pending.clone();
    tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            match msg {
                Ok(Message::Binary(b)) => {
                    let Ok(frame) = Frame::decode(b, &limits) else {
                        continue;
                    };
                    let waiter = frame
                        .transaction_id()
                        .and_then(|tx| reader_pending.lock().as_mut()?.remove(&tx));
                    match waiter {
                        Some(w) => {
                            if let Some(channel) = &w.track {
                                tracking.subscribed(channel, &frame);
                            }
                            let _ = w.done.send(frame);
                        }
                        None => {
                            tracking.delivered(&frame);
                            let _ = events_tx.send(frame);
                        }
                    }
                }
                Ok(Message::Close(c)) => {
                    *tracking.close.lock() = c.map(|c| (u16::from(c.code), c.reason.to_string()));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // Fails every waiter (their senders drop) and every later call.
        *reader_pending.lock() = None;
        let _ = ended_tx.send(());
    });

    Ok(Opened {
        link: Arc::new(Link {
            session_id,
            node_id: welcome.node_id().unwrap_or_default(),
            out,
            pending,
        }),
        user_id: welcome.user_id().unwrap_or_default().to_string(),
        expires_at_ms: welcome.expires_at_ms(),
        ended,
    })
}
