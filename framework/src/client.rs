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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::protocol::{fbs, from_fbs_uuid, DecodeLimits, ErrorCode, Frame, FrameFields, Opcode};
use crate::storage::PresenceEntry;

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

/// The answer to a recovering `Subscribe` ([`Client::subscribe_recover`], and every
/// resubscription of a reconnecting client).
///
/// ```no_run
/// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
/// let recovery = client.subscribe_recover("chat:rust", "3f2a9c0d", 41).await?;
/// if !recovery.recovered {
///     // Something after offset 41 is gone (or the epoch changed): reload the
///     // state from the source of truth, then follow from `recovery.offset`.
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Whether every missed publication was replayed (they came through the
    /// delivery stream before this answer). `false` on a channel without history,
    /// after an epoch change, or when the history no longer reaches back.
    pub recovered: bool,
    /// The channel's current epoch (empty: the channel has no history).
    pub epoch: String,
    /// The channel's latest offset.
    pub offset: u64,
}

impl Recovered {
    fn from_ack(ack: &Frame) -> Self {
        Recovered {
            recovered: ack.recovered(),
            epoch: ack.epoch().unwrap_or_default().to_string(),
            offset: ack.offset(),
        }
    }
}

/// Where a client stands in a channel's history: the epoch and offset of the
/// last publication it received (or of the recovering `Subscribe` that joined).
///
/// ```no_run
/// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
/// if let Some(position) = client.position("chat:rust") {
///     println!("seen up to #{} of epoch {}", position.offset, position.epoch);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamPosition {
    /// The history's identity.
    pub epoch: String,
    /// The last offset received.
    pub offset: u64,
}

/// One retained publication of a channel ([`HistoryPage::publications`]).
///
/// ```no_run
/// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
/// for publication in client.history("chat:rust", 0, 10).await?.publications {
///     println!("#{} by {:?}: {:?}", publication.offset, publication.emitter_id, publication.payload);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Its position in the channel's epoch (1, 2, 3, …).
    pub offset: u64,
    /// What was published.
    pub payload: Bytes,
    /// The publishing session (`None`: the server published it).
    pub emitter_id: Option<Uuid>,
    /// The publisher's user (empty when anonymous).
    pub user_id: String,
    /// The publication's trace id.
    pub trace_id: Option<Uuid>,
}

/// A page of a channel's history ([`Client::history`]).
///
/// ```no_run
/// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
/// let page = client.history("chat:rust", 0, 100).await?;
/// println!("epoch {}, latest #{}, {} retained", page.epoch, page.offset, page.publications.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryPage {
    /// The channel's current epoch.
    pub epoch: String,
    /// The channel's latest offset (that of its newest publication).
    pub offset: u64,
    /// The publications, ascending by offset.
    pub publications: Vec<Publication>,
}

/// Who is subscribed to a channel, on every node ([`Client::presence`]).
///
/// ```no_run
/// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
/// let presence = client.presence("chat:rust").await?;
/// for entry in &presence.clients {
///     println!("{} ({:?}) on node {}", entry.session, entry.user_id, entry.node);
/// }
/// println!("{} sessions, {} users", presence.num_clients, presence.num_users);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Presence {
    /// One entry per subscribed session.
    pub clients: Vec<PresenceEntry>,
    /// How many sessions are subscribed.
    pub num_clients: u32,
    /// How many distinct authenticated users they belong to.
    pub num_users: u32,
}

/// How a reconnecting client waits between connection attempts: exponential
/// backoff, capped, with random jitter so that many clients dropped at once do
/// not come back at once.
///
/// Attempt `n` (from 0) waits `min(initial_delay × multiplierⁿ, max_delay)`, less a
/// random part of at most `jitter` of it.
///
/// ```
/// use std::time::Duration;
/// use framework::client::ReconnectPolicy;
/// let policy = ReconnectPolicy {
///     initial_delay: Duration::from_millis(100),
///     max_delay: Duration::from_secs(5),
///     max_attempts: Some(20),
///     ..ReconnectPolicy::default()
/// };
/// let third = policy.delay(2); // 400 ms, less up to half of it
/// assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
/// assert!(policy.delay(30) <= Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// The wait before the first attempt (default 250 ms).
    pub initial_delay: Duration,
    /// The longest wait (default 10 s).
    pub max_delay: Duration,
    /// How much each failed attempt multiplies the wait (default 2; below 1 counts as 1).
    pub multiplier: f64,
    /// The largest fraction of a wait taken off at random (0 to 1; default 0.5).
    pub jitter: f64,
    /// How many attempts in a row before giving up (`None`, the default: never).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The wait before attempt `attempt` (0: the first after a disconnection).
    pub fn delay(&self, attempt: u32) -> Duration {
        let max = self.max_delay.as_secs_f64();
        let factor = self.multiplier.max(1.0).powi(attempt.min(1024) as i32);
        let base = (self.initial_delay.as_secs_f64() * factor).min(max);
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let wait = base * (1.0 - jitter * unit_random());
        if wait.is_finite() && wait > 0.0 {
            Duration::from_secs_f64(wait)
        } else {
            Duration::ZERO
        }
    }
}

/// A random number in `[0, 1)`.
fn unit_random() -> f64 {
    (Uuid::new_v4().as_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64
}

/// What happens to a reconnecting client's connection
/// ([`Client::connection_events`]), in this order: `Disconnected`, any number of
/// `ReconnectFailed`, one `Resubscribed` or `ResubscribeFailed` per channel, then
/// `Reconnected` (or `GaveUp`).
///
/// ```no_run
/// use framework::client::{Client, ConnectionEvent};
/// # async fn f(client: Client) {
/// let mut events = client.connection_events();
/// while let Ok(event) = events.recv().await {
///     match event {
///         ConnectionEvent::Disconnected { close } => println!("lost ({close:?})"),
///         ConnectionEvent::Resubscribed { channel, recovery } => {
///             println!("{channel}: recovered = {}", recovery.recovered)
///         }
///         ConnectionEvent::Reconnected { session_id, .. } => println!("back as {session_id}"),
///         other => println!("{other:?}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The connection ended (with the server's close code and reason, if it sent
    /// one); reconnection starts.
    Disconnected {
        /// The close frame's code and reason.
        close: Option<(u16, String)>,
    },
    /// A connection attempt failed; the next one follows after the backoff.
    ReconnectFailed {
        /// Attempts since the disconnection (from 1).
        attempt: u32,
        /// Why it failed.
        error: String,
    },
    /// A channel was subscribed again on the new connection; whatever was
    /// replayed is already in the delivery stream.
    Resubscribed {
        /// The channel.
        channel: String,
        /// The answer (`recovered = false`: publications may have been missed).
        recovery: Recovered,
    },
    /// The server refused to subscribe a channel again (e.g. `Forbidden`); the
    /// client no longer counts it as subscribed.
    ResubscribeFailed {
        /// The channel.
        channel: String,
        /// The server's error.
        error: String,
    },
    /// The client is connected again and every channel is resubscribed.
    Reconnected {
        /// The new session.
        session_id: Uuid,
        /// The node that owns it.
        node_id: Uuid,
        /// How many attempts it took.
        attempts: u32,
    },
    /// [`ReconnectPolicy::max_attempts`] attempts failed: the client is closed.
    GaveUp,
}

/// Builds a [`Client`] with options: a token, a request timeout, reconnection.
///
/// ```no_run
/// use std::time::Duration;
/// use framework::client::{Client, ReconnectPolicy};
/// # async fn f() -> Result<(), framework::client::ClientError> {
/// let client = Client::builder("ws://127.0.0.1:8081/")
///     .token("eyJhbGciOi...")
///     .timeout(Duration::from_secs(5))
///     .reconnect(ReconnectPolicy { max_attempts: Some(50), ..ReconnectPolicy::default() })
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    url: String,
    token: Option<String>,
    timeout: Duration,
    reconnect: Option<ReconnectPolicy>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("reconnect", &self.reconnect)
            .finish()
    }
}

impl ClientBuilder {
    /// Presents `token` in the `Authorization: Bearer` header of the upgrade (of
    /// every reconnection too, until [`Client::authenticate`] replaces it).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How long correlated calls wait for an answer (default 10 s); on a
    /// reconnecting client this includes waiting for the connection to come back.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reconnects by itself with `policy` whenever the connection is lost (see
    /// [`Client::connect_reconnecting`]). Without it (the default) a lost
    /// connection closes the client.
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Connects and waits for `Welcome`. The first connection is not retried: its
    /// failure is returned.
    pub async fn connect(self) -> Result<Client, ClientError> {
        let request = upgrade_request(&self.url, self.token.as_deref())?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let tracking = Arc::new(Tracking::default());
        let opened = open(request, tracking.clone(), events_tx.clone()).await?;
        let reconnecting = self.reconnect.is_some();
        let ctl = Arc::new(Control::new(
            &opened,
            tracking,
            self.timeout,
            reconnecting,
            self.token,
        ));
        match self.reconnect {
            Some(policy) => {
                let supervisor = Supervisor {
                    ctl: ctl.clone(),
                    url: self.url,
                    policy,
                    events_tx,
                };
                tokio::spawn(supervisor.run(opened.ended));
            }
            None => drop(events_tx),
        }
        Ok(Client {
            ctl,
            events: tokio::sync::Mutex::new(events),
        })
    }
}

fn upgrade_request(
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
struct Link {
    session_id: Uuid,
    node_id: Uuid,
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
}

impl Link {
    fn alive(&self) -> bool {
        self.pending.lock().is_some()
    }

    /// Registers a waiter for `tx`; `None` when the connection is gone.
    fn expect_answer(&self, tx: Uuid, track: Option<Arc<str>>) -> Option<oneshot::Receiver<Frame>> {
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
    async fn exchange(
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
    async fn call(
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
struct Tracking {
    /// The subscribed channels, with the last position received on each.
    channels: Mutex<HashMap<String, Option<StreamPosition>>>,
    /// The last close frame the server sent.
    close: Mutex<Option<(u16, String)>>,
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
struct Opened {
    link: Arc<Link>,
    user_id: String,
    expires_at_ms: u64,
    /// Resolves (or fails) when the connection has ended.
    ended: oneshot::Receiver<()>,
}

/// Connects, reads `Welcome`, and starts the connection's writer and reader; the
/// reader hands deliveries to `events_tx` and keeps `tracking` up to date.
async fn open(
    request: tungstenite::handshake::client::Request,
    tracking: Arc<Tracking>,
    events_tx: mpsc::UnboundedSender<Frame>,
) -> Result<Opened, ClientError> {
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
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

/// The state a client shares with its reconnection task.
struct Control {
    /// The connection calls use; `None` while a reconnecting client reconnects.
    link: watch::Sender<Option<Arc<Link>>>,
    /// No connection will come any more (always, without reconnection).
    finished: AtomicBool,
    reconnecting: bool,
    timeout_ns: AtomicU64,
    /// The session and node ids of the last connection handed to users.
    session: Mutex<(Uuid, Uuid)>,
    /// The authenticated user and token expiry, from `Welcome` or the last `Auth`.
    identity: Mutex<(String, u64)>,
    /// The token presented at each (re)connection.
    token: Mutex<Option<String>>,
    recoveries: Mutex<HashMap<String, Recovered>>,
    events: broadcast::Sender<ConnectionEvent>,
    tracking: Arc<Tracking>,
    /// Stops reconnecting (the client was closed or dropped).
    cancel: CancellationToken,
}

impl Control {
    fn new(
        opened: &Opened,
        tracking: Arc<Tracking>,
        timeout: Duration,
        reconnecting: bool,
        token: Option<String>,
    ) -> Self {
        Control {
            link: watch::Sender::new(Some(opened.link.clone())),
            finished: AtomicBool::new(!reconnecting),
            reconnecting,
            timeout_ns: AtomicU64::new(duration_ns(timeout)),
            session: Mutex::new((opened.link.session_id, opened.link.node_id)),
            identity: Mutex::new((opened.user_id.clone(), opened.expires_at_ms)),
            token: Mutex::new(token),
            recoveries: Mutex::new(HashMap::new()),
            events: broadcast::channel(256).0,
            tracking,
            cancel: CancellationToken::new(),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_nanos(self.timeout_ns.load(Ordering::Relaxed))
    }

    fn emit(&self, event: ConnectionEvent) {
        let _ = self.events.send(event);
    }

    /// The current connection, when it is up.
    fn live_link(&self) -> Option<Arc<Link>> {
        self.link.borrow().as_ref().filter(|l| l.alive()).cloned()
    }

    /// The connection to call on: the current one, or (reconnecting) the next one,
    /// waiting for it until `deadline`.
    async fn ready_link(
        &self,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Arc<Link>, ClientError> {
        let mut rx = self.link.subscribe();
        loop {
            let current = rx
                .borrow_and_update()
                .as_ref()
                .filter(|l| l.alive())
                .cloned();
            if let Some(link) = current {
                return Ok(link);
            }
            if self.finished.load(Ordering::Acquire) {
                return Err(ClientError::Closed);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Err(_) => return Err(ClientError::Timeout(timeout)),
                Ok(Err(_)) => return Err(ClientError::Closed),
                Ok(Ok(())) => {}
            }
        }
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The task that reconnects a reconnecting client.
struct Supervisor {
    ctl: Arc<Control>,
    url: String,
    policy: ReconnectPolicy,
    /// Keeps the delivery stream open between connections.
    events_tx: mpsc::UnboundedSender<Frame>,
}

impl Supervisor {
    async fn run(self, mut ended: oneshot::Receiver<()>) {
        let cancel = self.ctl.cancel.clone();
        'life: loop {
            tokio::select! {
                _ = cancel.cancelled() => break 'life,
                _ = &mut ended => {}
            }
            self.ctl.link.send_replace(None);
            let close = self.ctl.tracking.close.lock().clone();
            self.ctl.emit(ConnectionEvent::Disconnected { close });
            let mut attempt = 0u32;
            loop {
                if self.policy.max_attempts.is_some_and(|max| attempt >= max) {
                    self.ctl.emit(ConnectionEvent::GaveUp);
                    break 'life;
                }
                let delay = self.policy.delay(attempt);
                attempt += 1;
                let result = tokio::select! {
                    _ = cancel.cancelled() => break 'life,
                    result = async {
                        tokio::time::sleep(delay).await;
                        self.reconnect(attempt).await
                    } => result,
                };
                match result {
                    Ok(next) => {
                        ended = next;
                        continue 'life;
                    }
                    Err(error) => self.ctl.emit(ConnectionEvent::ReconnectFailed {
                        attempt,
                        error: error.to_string(),
                    }),
                }
            }
        }
        self.ctl.finished.store(true, Ordering::Release);
        // Wakes calls waiting for a connection: none will come.
        self.ctl.link.send_modify(|_| {});
    }

    /// Connects, resubscribes every channel (recovering from its position), then
    /// hands the connection to users.
    async fn reconnect(&self, attempts: u32) -> Result<oneshot::Receiver<()>, ClientError> {
        let token = self.ctl.token.lock().clone();
        let request = upgrade_request(&self.url, token.as_deref())?;
        let opened = open(request, self.ctl.tracking.clone(), self.events_tx.clone()).await?;
        let link = opened.link;
        let timeout = self.ctl.timeout();
        let channels: Vec<(String, Option<StreamPosition>)> = self
            .ctl
            .tracking
            .channels
            .lock()
            .iter()
            .map(|(c, p)| (c.clone(), p.clone()))
            .collect();
        for (channel, position) in channels {
            let position = position.unwrap_or_default();
            let fields = FrameFields::new(Opcode::Subscribe.0)
                .channel(&channel)
                .requires_ack(true)
                .recover(true)
                .epoch(&position.epoch)
                .offset(position.offset);
            match link
                .call(fields, Some(Arc::from(channel.as_str())), timeout)
                .await
            {
                Ok(ack) => {
                    expect(&ack, Opcode::Ack)?;
                    let recovery = Recovered::from_ack(&ack);
                    self.ctl
                        .recoveries
                        .lock()
                        .insert(channel.clone(), recovery.clone());
                    self.ctl
                        .emit(ConnectionEvent::Resubscribed { channel, recovery });
                }
                Err(ClientError::Server { code, message, .. }) => {
                    self.ctl.tracking.channels.lock().remove(&channel);
                    self.ctl.emit(ConnectionEvent::ResubscribeFailed {
                        channel,
                        error: format!("{code:?}: {message}"),
                    });
                }
                // This connection failed too (dropping `link` closes it).
                Err(e) => return Err(e),
            }
        }
        *self.ctl.identity.lock() = (opened.user_id, opened.expires_at_ms);
        *self.ctl.tracking.close.lock() = None;
        let (session_id, node_id) = (link.session_id, link.node_id);
        *self.ctl.session.lock() = (session_id, node_id);
        self.ctl.link.send_replace(Some(link));
        self.ctl.emit(ConnectionEvent::Reconnected {
            session_id,
            node_id,
            attempts,
        });
        Ok(opened.ended)
    }
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
        ClientBuilder {
            url: url.into(),
            token: None,
            timeout: Duration::from_secs(10),
            reconnect: None,
        }
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
        let opened = open(request, tracking.clone(), events_tx).await?;
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

    /// Joins `channel` recovering what this client missed after `offset` of
    /// `epoch` (from a delivery's [`Frame::offset`] and [`Frame::epoch`], or a
    /// [`HistoryPage`]). The missed publications are delivered first, through the
    /// ordinary delivery stream ([`recv`](Self::recv)), then the `Ack` resolves
    /// this call, then live publications follow: no gap, no duplicate.
    /// `recovered = false` (another epoch, history trimmed, or a channel without
    /// history) means nothing was replayed and the caller must resynchronise.
    ///
    /// ```no_run
    /// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
    /// let recovery = client.subscribe_recover("chat:rust", "3f2a9c0d", 41).await?;
    /// if recovery.recovered {
    ///     // Publications 42..=recovery.offset are already waiting in `recv`.
    ///     while let Some(replayed) = client.try_recv() {
    ///         assert_eq!(replayed.epoch(), Some("3f2a9c0d"));
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_recover(
        &self,
        channel: &str,
        epoch: &str,
        offset: u64,
    ) -> Result<Recovered, ClientError> {
        let fields = FrameFields::new(Opcode::Subscribe.0)
            .channel(channel)
            .requires_ack(true)
            .recover(true)
            .epoch(epoch)
            .offset(offset);
        let ack = self.call_tracked(fields, Some(Arc::from(channel))).await?;
        expect(&ack, Opcode::Ack)?;
        let recovery = Recovered::from_ack(&ack);
        self.ctl
            .recoveries
            .lock()
            .insert(channel.to_string(), recovery.clone());
        Ok(recovery)
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

    /// The last `epoch`/`offset` this client received on `channel` (from a
    /// publication, or the `Ack` of a recovering `Subscribe`); `None` when it is
    /// not subscribed or the channel has no history (no offsets).
    ///
    /// ```no_run
    /// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
    /// client.subscribe("chat:rust").await?;
    /// let delivery = client.recv().await.expect("a publication");
    /// let position = client.position("chat:rust").expect("chat:* has history");
    /// assert_eq!(Some(position.offset), Some(delivery.offset()));
    /// # Ok(()) }
    /// ```
    pub fn position(&self, channel: &str) -> Option<StreamPosition> {
        self.ctl
            .tracking
            .channels
            .lock()
            .get(channel)
            .cloned()
            .flatten()
    }

    /// The answer to the last recovering `Subscribe` of `channel`:
    /// [`subscribe_recover`](Self::subscribe_recover), or the resubscription of a
    /// reconnecting client.
    ///
    /// ```no_run
    /// # async fn f(client: framework::client::Client) {
    /// if let Some(recovery) = client.last_recovery("chat:rust") {
    ///     println!("recovered: {}, now at #{}", recovery.recovered, recovery.offset);
    /// }
    /// # }
    /// ```
    pub fn last_recovery(&self, channel: &str) -> Option<Recovered> {
        self.ctl.recoveries.lock().get(channel).cloned()
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

    /// The retained publications of `channel` with an offset greater than `since`
    /// (0: from the oldest retained), at most `limit` of them (0: the server's
    /// cap), ascending, in the channel's current epoch; the page also gives that
    /// epoch and the latest offset. A channel without history is
    /// `Error`/`InvalidArgument`.
    ///
    /// ```no_run
    /// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
    /// // Page through everything retained, 100 at a time.
    /// let mut since = 0;
    /// loop {
    ///     let page = client.history("chat:rust", since, 100).await?;
    ///     let Some(last) = page.publications.last() else { break };
    ///     since = last.offset;
    ///     for publication in &page.publications {
    ///         println!("#{}: {:?}", publication.offset, publication.payload);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn history(
        &self,
        channel: &str,
        since: u64,
        limit: u32,
    ) -> Result<HistoryPage, ClientError> {
        let reply = self
            .call(
                FrameFields::new(Opcode::History.0)
                    .channel(channel)
                    .offset(since)
                    .limit(limit),
            )
            .await?;
        expect(&reply, Opcode::History)?;
        let mut page = HistoryPage {
            epoch: reply.epoch().unwrap_or_default().to_string(),
            offset: reply.offset(),
            publications: Vec::new(),
        };
        let payload = reply.payload();
        if payload.is_empty() {
            return Ok(page);
        }
        let table = flatbuffers::root::<fbs::HistoryPage<'_>>(&payload)
            .map_err(|e| ClientError::Protocol(format!("HistoryPage: {e}")))?;
        page.publications = table
            .publications()
            .map(|list| {
                list.iter()
                    .map(|p| Publication {
                        offset: p.offset(),
                        payload: Bytes::copy_from_slice(
                            p.payload().map(|v| v.bytes()).unwrap_or_default(),
                        ),
                        emitter_id: p.emitter_id().map(from_fbs_uuid),
                        user_id: p.user_id().unwrap_or_default().to_string(),
                        trace_id: p.trace_id().map(from_fbs_uuid),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(page)
    }

    /// The sessions subscribed to `channel` now, on every node. A channel without
    /// presence is `Error`/`InvalidArgument`.
    ///
    /// ```no_run
    /// # async fn f(client: framework::client::Client) -> Result<(), framework::client::ClientError> {
    /// let presence = client.presence("chat:rust").await?;
    /// assert_eq!(presence.clients.len(), presence.num_clients as usize);
    /// # Ok(()) }
    /// ```
    pub async fn presence(&self, channel: &str) -> Result<Presence, ClientError> {
        let reply = self
            .call(FrameFields::new(Opcode::Presence.0).channel(channel))
            .await?;
        expect(&reply, Opcode::Presence)?;
        let payload = reply.payload();
        if payload.is_empty() {
            return Ok(Presence::default());
        }
        let list = flatbuffers::root::<fbs::PresenceList<'_>>(&payload)
            .map_err(|e| ClientError::Protocol(format!("PresenceList: {e}")))?;
        let clients = match list.clients() {
            Some(clients) => clients
                .iter()
                .map(|c| {
                    Ok(PresenceEntry {
                        session: c.session_id().map(from_fbs_uuid).ok_or_else(|| {
                            ClientError::Protocol("ClientInfo without session_id".into())
                        })?,
                        node: c.node_id().map(from_fbs_uuid).unwrap_or_default(),
                        user_id: c.user_id().unwrap_or_default().to_string(),
                        info: Bytes::copy_from_slice(
                            c.info().map(|v| v.bytes()).unwrap_or_default(),
                        ),
                    })
                })
                .collect::<Result<Vec<_>, ClientError>>()?,
            None => Vec::new(),
        };
        Ok(Presence {
            clients,
            num_clients: list.num_clients(),
            num_users: list.num_users(),
        })
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
