//! A Rust client for protocol v1: connect, learn the session id from `Welcome`,
//! subscribe, publish, send, broadcast, correlated requests and a stream of
//! deliveries.
//!
//! ```no_run
//! use framework::client::Client;
//! # async fn f() -> Result<(), framework::client::ClientError> {
//! let client = Client::connect("ws://127.0.0.1:8081/").await?;
//! client.subscribe("news").await?;
//! client.publish("news", b"hello").await?;
//! let delivery = client.recv().await.expect("a delivery");
//! assert_eq!(delivery.channel(), Some("news"));
//! assert_eq!(delivery.emitter_id(), Some(client.session_id()));
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};
use uuid::Uuid;

use crate::protocol::{DecodeLimits, ErrorCode, Frame, FrameFields, Opcode};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// The server sent something that is not protocol v1.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The server answered with an `Error` frame.
    #[error("server error {code:?}: {message}")]
    Server {
        /// The error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
        /// `retry_after_ms` (for `RateLimited`).
        retry_after_ms: u32,
    },
    /// No answer within the request timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Waiters by transaction id; `None` once the connection is gone, so late calls
/// fail at once instead of waiting for their timeout.
type Pending = Arc<Mutex<Option<HashMap<Uuid, oneshot::Sender<Frame>>>>>;

/// A connected protocol client. Methods take `&self`; the client can be shared.
pub struct Client {
    session_id: Uuid,
    node_id: Uuid,
    /// The authenticated user and token expiry, from `Welcome` or the last `Auth`.
    identity: Mutex<(String, u64)>,
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Frame>>,
    close: Arc<Mutex<Option<(u16, String)>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("session_id", &self.session_id)
            .finish()
    }
}

impl Client {
    /// Connects to `url` (`ws://host:port/path`) and waits for `Welcome`.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        let request = url.into_client_request()?;
        Self::connect_request(request).await
    }

    /// Connects with a prepared HTTP request (extra headers, e.g. `Authorization`).
    pub async fn connect_request(
        request: tungstenite::handshake::client::Request,
    ) -> Result<Client, ClientError> {
        let config = tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
        let (mut sink, mut stream) = ws.split();
        let limits = DecodeLimits::for_max_size(64 << 20);

        let welcome = loop {
            match stream.next().await {
                Some(Ok(Message::Binary(b))) => {
                    let f = Frame::decode(b, &limits)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
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
        let node_id = welcome.node_id().unwrap_or_default();
        let identity = Mutex::new((
            welcome.user_id().unwrap_or_default().to_string(),
            welcome.expires_at_ms(),
        ));

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
        let close = Arc::new(Mutex::new(None));
        let (events_tx, events) = mpsc::unbounded_channel();
        let (pending2, close2) = (pending.clone(), close.clone());
        tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(Message::Binary(b)) => {
                        let Ok(frame) = Frame::decode(b, &limits) else {
                            continue;
                        };
                        let waiter = frame
                            .transaction_id()
                            .and_then(|tx| pending2.lock().as_mut()?.remove(&tx));
                        match waiter {
                            Some(w) => {
                                let _ = w.send(frame);
                            }
                            None => {
                                let _ = events_tx.send(frame);
                            }
                        }
                    }
                    Ok(Message::Close(c)) => {
                        *close2.lock() = c.map(|c| (u16::from(c.code), c.reason.to_string()));
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            // Fails every waiter (their senders drop) and every later call.
            *pending2.lock() = None;
        });

        Ok(Client {
            session_id,
            node_id,
            identity,
            out,
            pending,
            events: tokio::sync::Mutex::new(events),
            close,
            timeout: Duration::from_secs(10),
        })
    }

    /// Sets how long correlated calls wait for an answer (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// This session's id, from `Welcome`.
    pub fn session_id(&self) -> Uuid {
        self.session_id
    }

    /// The node that owns this session, from `Welcome`.
    pub fn node_id(&self) -> Uuid {
        self.node_id
    }

    /// The authenticated user (`Welcome`, or the last successful `Auth`); empty
    /// when anonymous.
    pub fn user_id(&self) -> String {
        self.identity.lock().0.clone()
    }

    /// When the connection's token expires (Unix ms; 0: never or anonymous).
    pub fn expires_at_ms(&self) -> u64 {
        self.identity.lock().1
    }

    /// Connects with a token in the `Authorization: Bearer` header.
    pub async fn connect_with_token(url: &str, token: &str) -> Result<Client, ClientError> {
        let mut request = url.into_client_request()?;
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::Protocol("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", value);
        Self::connect_request(request).await
    }

    /// Presents (or refreshes) the connection's token with an `Auth` frame; the
    /// server's `Ack` gives the user id and expiry, kept by [`user_id`](Self::user_id)
    /// and [`expires_at_ms`](Self::expires_at_ms).
    pub async fn authenticate(&self, token: &str) -> Result<(String, u64), ClientError> {
        let mut fields = FrameFields::new(Opcode::Auth.0);
        fields.token = Some(token);
        let ack = self.call(fields).await?;
        let identity = (
            ack.user_id().unwrap_or_default().to_string(),
            ack.expires_at_ms(),
        );
        *self.identity.lock() = identity.clone();
        Ok(identity)
    }

    /// The close code and reason the server sent, once closed.
    pub fn close_frame(&self) -> Option<(u16, String)> {
        self.close.lock().clone()
    }

    /// Sends an encoded frame (or any bytes) as one binary message, without waiting.
    pub fn send_frame(&self, frame: Bytes) -> Result<(), ClientError> {
        self.send_message(Message::Binary(frame))
    }

    /// Sends any WebSocket message, without waiting.
    pub fn send_message(&self, msg: Message) -> Result<(), ClientError> {
        if self.is_closed() {
            return Err(ClientError::Closed);
        }
        self.out.send(msg).map_err(|_| ClientError::Closed)
    }

    /// Sends `fields` with a fresh `transaction_id` and waits for the frame that
    /// carries it back. An `Error` answer becomes [`ClientError::Server`].
    pub async fn call(&self, fields: FrameFields<'_>) -> Result<Frame, ClientError> {
        let tx = Uuid::new_v4();
        let (done, answer) = oneshot::channel();
        match self.pending.lock().as_mut() {
            Some(p) => p.insert(tx, done),
            None => return Err(ClientError::Closed),
        };
        let frame = fields.transaction_id(Some(tx)).encode();
        if let Err(e) = self.send_frame(frame) {
            self.forget(tx);
            return Err(e);
        }
        let frame = match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(f)) => f,
            Ok(Err(_)) => return Err(ClientError::Closed),
            Err(_) => {
                self.forget(tx);
                return Err(ClientError::Timeout(self.timeout));
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

    fn forget(&self, tx: Uuid) {
        if let Some(p) = self.pending.lock().as_mut() {
            p.remove(&tx);
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.pending.lock().is_none()
    }

    /// Calls application opcode `opcode` with `payload`; returns the response frame.
    pub async fn request(&self, opcode: u16, payload: &[u8]) -> Result<Frame, ClientError> {
        self.call(FrameFields::new(opcode).payload(payload)).await
    }

    /// Round trip of `Ping` → `Pong`.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let start = Instant::now();
        let pong = self.call(FrameFields::new(Opcode::Ping.0)).await?;
        expect(&pong, Opcode::Pong)?;
        Ok(start.elapsed())
    }

    async fn acked(&self, fields: FrameFields<'_>) -> Result<(), ClientError> {
        let answer = self.call(fields.requires_ack(true)).await?;
        expect(&answer, Opcode::Ack)
    }

    /// Joins `channel` and waits for the `Ack`.
    pub async fn subscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.acked(FrameFields::new(Opcode::Subscribe.0).channel(channel))
            .await
    }

    /// Leaves `channel` and waits for the `Ack`.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.acked(FrameFields::new(Opcode::Unsubscribe.0).channel(channel))
            .await
    }

    /// Publishes to `channel` and waits for the `Ack`.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<(), ClientError> {
        self.acked(
            FrameFields::new(Opcode::Publish.0)
                .channel(channel)
                .payload(payload),
        )
        .await
    }

    /// Publishes without asking for an `Ack` (fire and forget).
    pub fn publish_nowait(&self, channel: &str, payload: &[u8]) -> Result<(), ClientError> {
        let f = FrameFields::new(Opcode::Publish.0)
            .channel(channel)
            .payload(payload);
        self.send_frame(f.encode())
    }

    /// Sends `payload` to session `receiver` and waits for the `Ack`.
    pub async fn send_to(&self, receiver: Uuid, payload: &[u8]) -> Result<(), ClientError> {
        let f = FrameFields::new(Opcode::Send.0)
            .receiver_id(Some(receiver))
            .payload(payload);
        self.acked(f).await
    }

    /// Broadcasts `payload` to every session and waits for the `Ack`.
    pub async fn broadcast(&self, payload: &[u8]) -> Result<(), ClientError> {
        self.acked(FrameFields::new(Opcode::Broadcast.0).payload(payload))
            .await
    }

    /// The next delivery or uncorrelated frame (Publish, Send, Broadcast, or an
    /// `Error` without transaction id). `None` once the connection is closed.
    pub async fn recv(&self) -> Option<Frame> {
        self.events.lock().await.recv().await
    }

    /// The deliveries as a `Stream` (what [`recv`](Self::recv) returns, until the
    /// connection closes).
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    /// # async fn f(client: framework::client::Client) {
    /// let mut deliveries = std::pin::pin!(client.deliveries());
    /// while let Some(frame) = deliveries.next().await {
    ///     println!("{:?} from {:?}", frame.channel(), frame.emitter_id());
    /// }
    /// # }
    /// ```
    pub fn deliveries(&self) -> impl futures_util::Stream<Item = Frame> + '_ {
        futures_util::stream::unfold(self, |client| async move {
            client.recv().await.map(|frame| (frame, client))
        })
    }

    /// [`recv`](Self::recv) with a deadline.
    pub async fn recv_timeout(&self, timeout: Duration) -> Option<Frame> {
        tokio::time::timeout(timeout, self.recv())
            .await
            .ok()
            .flatten()
    }

    /// Closes the connection normally.
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }
}

fn expect(frame: &Frame, opcode: Opcode) -> Result<(), ClientError> {
    if frame.opcode() == opcode.0 {
        Ok(())
    } else {
        Err(ClientError::Protocol(format!(
            "expected {opcode:?}, got opcode {}",
            frame.opcode()
        )))
    }
}
