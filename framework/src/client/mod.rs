//! A Rust client for protocol v1 and v1.1: connect, learn the session id from
//! `Welcome`, subscribe, publish, send, broadcast, correlated requests and a stream
//! of deliveries; channel history, presence and recovery; and, when asked for, a
//! client that reconnects by itself and recovers what it missed.
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
//!
//! A client that survives a lost connection (see [`Client::connect_reconnecting`]):
//! the same delivery stream goes on across reconnects, and every channel with
//! history is resubscribed from the last publication it received.
//!
//! ```no_run
//! use framework::client::{Client, ConnectionEvent};
//! # async fn f() -> Result<(), framework::client::ClientError> {
//! let client = Client::connect_reconnecting("ws://127.0.0.1:8081/").await?;
//! let mut events = client.connection_events();
//! client.subscribe("chat:rust").await?;
//! tokio::spawn(async move {
//!     while let Ok(event) = events.recv().await {
//!         if let ConnectionEvent::Resubscribed { channel, recovery } = event {
//!             if !recovery.recovered {
//!                 println!("{channel}: publications were lost, reload the state");
//!             }
//!         }
//!     }
//! });
//! while let Some(delivery) = client.recv().await {
//!     println!("{:?} #{}", delivery.channel(), delivery.offset());
//! }
//! # Ok(()) }
//! ```

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

use crate::protocol::{ErrorCode, Frame, FrameFields, Opcode};

use self::connection::{open, Tracking};
use self::control::{duration_ns, Control};

mod builder;
mod channels;
mod connection;
mod control;
mod reconnect;
mod types;

pub use self::builder::ClientBuilder;
pub use self::reconnect::{ConnectionEvent, ReconnectPolicy};
pub use self::types::{HistoryPage, Presence, Publication, Recovered, StreamPosition};

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
    /// The TLS options cannot be used (e.g. root certificates that are not PEM).
    #[error("tls: {0}")]
    Tls(String),
}

/// A connected protocol client. Methods take `&self`; the client can be shared.
///
/// By default a lost connection closes the client. A client made with
/// [`connect_reconnecting`](Self::connect_reconnecting) (or
/// [`ClientBuilder::reconnect`]) reconnects instead.
pub struct Client {
    ctl: Arc<Control>,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Frame>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("session_id", &self.session_id())
            .field("reconnecting", &self.ctl.reconnecting)
            .finish()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // A reconnecting client's task stops (and with it the connection).
        self.ctl.cancel.cancel();
    }
}

impl Client {
    /// Connects to `url` (`ws://host:port/path`) and waits for `Welcome`.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        Self::builder(url).connect().await
    }

    /// A [`ClientBuilder`] for `url`, to set a token, a timeout or reconnection.
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url.into())
    }

    /// Connects to `url` and, whenever the connection is lost, reconnects by itself
    /// with the default [`ReconnectPolicy`] (exponential backoff from 250 ms to
    /// 10 s, with jitter, forever).
    ///
    /// On each new connection the client subscribes again to every channel it is
    /// subscribed to, with recovery from the last `epoch`/`offset` it received
    /// there (or, when nothing arrived yet, from the position the `Subscribe`'s
    /// `Ack` gave: this client's [`subscribe`](Self::subscribe) is a recovering
    /// one, to learn it). The publications missed meanwhile come through the same
    /// delivery stream ([`recv`](Self::recv), [`deliveries`](Self::deliveries)),
    /// in order and before any live one; whether each channel was fully
    /// recovered is told by [`connection_events`](Self::connection_events) and
    /// [`last_recovery`](Self::last_recovery). Calls made while it reconnects wait
    /// for the new connection (within the request timeout); the delivery stream
    /// ends only when the client is closed, dropped, or gives up.
    ///
    /// ```no_run
    /// use framework::client::Client;
    /// # async fn f() -> Result<(), framework::client::ClientError> {
    /// let client = Client::connect_reconnecting("ws://127.0.0.1:8081/").await?;
    /// client.subscribe("chat:rust").await?;
    /// while let Some(delivery) = client.recv().await {
    ///     // Uninterrupted across reconnects: offsets follow each other.
    ///     println!("#{}: {:?}", delivery.offset(), delivery.payload());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn connect_reconnecting(url: &str) -> Result<Client, ClientError> {
        Self::builder(url)
            .reconnect(ReconnectPolicy::default())
            .connect()
            .await
    }

    /// Connects with a prepared HTTP request (extra headers, e.g. `Authorization`).
    /// Such a client does not reconnect.
    pub async fn connect_request(
        request: tungstenite::handshake::client::Request,
    ) -> Result<Client, ClientError> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let tracking = Arc::new(Tracking::default());
        let opened = open(request, None, tracking.clone(), events_tx).await?;
        let ctl = Control::new(&opened, tracking, Duration::from_secs(10), false, None);
        Ok(Client {
            ctl: Arc::new(ctl),
            events: tokio::sync::Mutex::new(events),
        })
    }

    /// Sets how long correlated calls wait for an answer (default 10 s).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.ctl
            .timeout_ns
            .store(duration_ns(timeout), Ordering::Relaxed);
        self
    }

    /// This session's id, from `Welcome` (a reconnecting client gets a new one
    /// with each connection).
    pub fn session_id(&self) -> Uuid {
        self.ctl.session.lock().0
    }

    /// The node that owns this session, from `Welcome`.
    pub fn node_id(&self) -> Uuid {
        self.ctl.session.lock().1
    }

    /// The authenticated user (`Welcome`, or the last successful `Auth`); empty
    /// when anonymous.
    pub fn user_id(&self) -> String {
        self.ctl.identity.lock().0.clone()
    }

    /// When the connection's token expires (Unix ms; 0: never or anonymous).
    pub fn expires_at_ms(&self) -> u64 {
        self.ctl.identity.lock().1
    }

    /// Connects with a token in the `Authorization: Bearer` header.
    pub async fn connect_with_token(url: &str, token: &str) -> Result<Client, ClientError> {
        Self::builder(url).token(token).connect().await
    }

    /// Presents (or refreshes) the connection's token with an `Auth` frame; the
    /// server's `Ack` gives the user id and expiry, kept by [`user_id`](Self::user_id)
    /// and [`expires_at_ms`](Self::expires_at_ms). A reconnecting client presents
    /// the last accepted token when it reconnects.
    pub async fn authenticate(&self, token: &str) -> Result<(String, u64), ClientError> {
        let mut fields = FrameFields::new(Opcode::Auth.0);
        fields.token = Some(token);
        let ack = self.call(fields).await?;
        let identity = (
            ack.user_id().unwrap_or_default().to_string(),
            ack.expires_at_ms(),
        );
        *self.ctl.identity.lock() = identity.clone();
        *self.ctl.token.lock() = Some(token.to_string());
        Ok(identity)
    }

    /// The close code and reason the server sent, once closed.
    pub fn close_frame(&self) -> Option<(u16, String)> {
        self.ctl.tracking.close.lock().clone()
    }

    /// Sends an encoded frame (or any bytes) as one binary message, without waiting.
    pub fn send_frame(&self, frame: Bytes) -> Result<(), ClientError> {
        self.send_message(Message::Binary(frame))
    }

    /// Sends any WebSocket message, without waiting ([`ClientError::Closed`] also
    /// while a reconnecting client is reconnecting).
    pub fn send_message(&self, msg: Message) -> Result<(), ClientError> {
        let link = self.ctl.live_link().ok_or(ClientError::Closed)?;
        link.out.send(msg).map_err(|_| ClientError::Closed)
    }

    /// Sends `fields` with a fresh `transaction_id` and waits for the frame that
    /// carries it back. An `Error` answer becomes [`ClientError::Server`].
    pub async fn call(&self, fields: FrameFields<'_>) -> Result<Frame, ClientError> {
        self.call_tracked(fields, None).await
    }

    async fn call_tracked(
        &self,
        fields: FrameFields<'_>,
        track: Option<Arc<str>>,
    ) -> Result<Frame, ClientError> {
        let timeout = self.ctl.timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let tx = Uuid::new_v4();
        let frame = fields.transaction_id(Some(tx)).encode();
        loop {
            let link = self.ctl.ready_link(deadline, timeout).await?;
            // A connection that ended meanwhile got nothing: wait for the next.
            if let Some(answer) = link.expect_answer(tx, track.clone()) {
                return link.exchange(tx, frame, answer, deadline, timeout).await;
            }
        }
    }

    /// Whether the connection has ended for good (a reconnecting client: closed,
    /// dropped or given up; not while it reconnects).
    pub fn is_closed(&self) -> bool {
        self.ctl.finished.load(Ordering::Acquire) && self.ctl.live_link().is_none()
    }

    /// Whether a connection is up and usable now (a reconnecting client: not
    /// while it reconnects and resubscribes).
    pub fn is_connected(&self) -> bool {
        self.ctl.live_link().is_some()
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
    ///
    /// A reconnecting client sends a recovering `Subscribe` with no epoch (nothing
    /// is replayed) to learn the channel's position, so that a reconnection
    /// recovers from there even when nothing was received yet.
    pub async fn subscribe(&self, channel: &str) -> Result<(), ClientError> {
        let fields = FrameFields::new(Opcode::Subscribe.0)
            .channel(channel)
            .requires_ack(true);
        let fields = if self.ctl.reconnecting {
            fields.recover(true)
        } else {
            // Follows offsets from the first delivery, even one before the Ack.
            let mut channels = self.ctl.tracking.channels.lock();
            channels.entry(channel.to_string()).or_insert(None);
            fields
        };
        let result = self.call_tracked(fields, Some(Arc::from(channel))).await;
        if let Err(ClientError::Server { .. }) = result {
            let mut channels = self.ctl.tracking.channels.lock();
            if channels.get(channel).is_some_and(Option::is_none) {
                channels.remove(channel);
            }
        }
        expect(&result?, Opcode::Ack)
    }

    /// Leaves `channel` and waits for the `Ack`.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), ClientError> {
        self.ctl.tracking.channels.lock().remove(channel);
        let result = self
            .acked(FrameFields::new(Opcode::Unsubscribe.0).channel(channel))
            .await;
        // Also when a resubscription raced with this call.
        self.ctl.tracking.channels.lock().remove(channel);
        result
    }

    /// The connection's events (disconnected, resubscribed, reconnected…), from
    /// now on. Only a reconnecting client has any. A receiver that falls more than
    /// 256 events behind loses the oldest (`RecvError::Lagged`).
    ///
    /// ```no_run
    /// use framework::client::{Client, ConnectionEvent};
    /// # async fn f(client: Client) {
    /// let mut events = client.connection_events();
    /// while let Ok(event) = events.recv().await {
    ///     if let ConnectionEvent::Reconnected { session_id, attempts, .. } = event {
    ///         println!("reconnected as {session_id} after {attempts} attempt(s)");
    ///     }
    /// }
    /// # }
    /// ```
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.ctl.events.subscribe()
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

    /// The next delivery or uncorrelated frame (Publish, Send, Broadcast, Join,
    /// Leave, or an `Error` without transaction id). `None` once the connection is
    /// closed (a reconnecting client: closed, dropped or given up).
    pub async fn recv(&self) -> Option<Frame> {
        self.events.lock().await.recv().await
    }

    /// A delivery already received, without waiting (`None`: none is waiting, or
    /// another task is receiving).
    ///
    /// ```no_run
    /// # async fn f(client: framework::client::Client) {
    /// while let Some(frame) = client.try_recv() {
    ///     println!("{:?}", frame.channel());
    /// }
    /// # }
    /// ```
    pub fn try_recv(&self) -> Option<Frame> {
        self.events.try_lock().ok()?.try_recv().ok()
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

    /// Closes the connection normally (a reconnecting client stops reconnecting).
    pub fn close(&self) {
        self.ctl.cancel.cancel();
        if let Some(link) = self.ctl.link.borrow().as_ref() {
            let _ = link.out.send(Message::Close(None));
        }
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
