//! The raw WebSocket mode (the C++ guide's `run_raw_websocket_service` and
//! `raw_connection`): no protocol, your handler sees every message. It runs on the
//! same session engine as the protocol service (bounded queue, batching writer,
//! metrics, limits).
//!
//! Callback style, as in the guide:
//!
//! ```
//! use framework::raw::RawConnection;
//! fn echo(conn: RawConnection) {
//!     println!("client connected: {}", conn.id());
//!     conn.on_data(|conn, data| {
//!         let _ = conn.send(data.into_bytes());
//!     });
//!     conn.on_close(|conn| println!("client {} disconnected", conn.id()));
//! }
//! # let _ = framework::App::new().run_raw_websocket_service(8082, echo);
//! ```
//!
//! Or an async loop:
//!
//! ```
//! use framework::raw::RawConnection;
//! async fn echo(conn: RawConnection) {
//!     while let Some(msg) = conn.recv().await {
//!         let _ = conn.send(msg.into_bytes());
//!     }
//! }
//! # let _ = framework::App::new().run_raw_websocket_service(8082, echo);
//! ```

use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use uuid::Uuid;

use crate::session::{close_code, Connection, SendError, SessionMetrics};

/// One message received on a raw connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawMessage {
    /// A binary message.
    Binary(Bytes),
    /// A text message (valid UTF-8; invalid text closes the connection with 1007).
    Text(Utf8Bytes),
}

impl RawMessage {
    /// The message's bytes.
    pub fn data(&self) -> &[u8] {
        match self {
            RawMessage::Binary(b) => b,
            RawMessage::Text(t) => t.as_bytes(),
        }
    }
    /// Whether it came as a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, RawMessage::Text(_))
    }
    /// The text, for text messages.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            RawMessage::Text(t) => Some(t.as_str()),
            RawMessage::Binary(_) => None,
        }
    }
    /// The bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        match self {
            RawMessage::Binary(b) => b,
            RawMessage::Text(t) => t.into(),
        }
    }
}

/// An error on a raw connection, given to `on_error` callbacks.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RawError {
    /// The close code the connection ends with.
    pub close_code: u16,
    /// What happened.
    pub message: String,
}

type DataCallback = Arc<dyn Fn(&RawConnection, RawMessage) + Send + Sync>;
type ErrorCallback = Arc<dyn Fn(&RawConnection, &RawError) + Send + Sync>;
type CloseCallback = Arc<dyn Fn(&RawConnection) + Send + Sync>;

#[derive(Default)]
struct Callbacks {
    data: Option<DataCallback>,
    error: Option<ErrorCallback>,
    close: Option<CloseCallback>,
}

pub(crate) struct RawInner {
    pub(crate) conn: Connection,
    text: AtomicBool,
    /// How many times `on_data` has set a callback: the session keeps the one
    /// it last took (see [`DataCallbackCache`]) and takes it again only when
    /// this changed.
    data_set: AtomicU32,
    callbacks: Mutex<Callbacks>,
    /// Messages for `recv`, created on first use: callback-style handlers never
    /// pay for a channel.
    inbox: OnceLock<Inbox>,
}

/// One raw WebSocket connection (the C++ guide's `raw_connection`). Cheap to clone.
///
/// The C++ names map as: `on_data`, `on_error`, `on_close`, `send`, `read_some`,
/// `set_binary`, `set_text`, `get_id` → [`id`](Self::id), `remote_endpoint`,
/// `get_metrics` → [`metrics`](Self::metrics); plus the async [`recv`](Self::recv).
#[derive(Clone)]
pub struct RawConnection(pub(crate) Arc<RawInner>);

impl std::fmt::Debug for RawConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawConnection")
            .field("id", &self.id())
            .field("peer", &self.remote_endpoint())
            .finish()
    }
}

struct Inbox {
    tx: mpsc::Sender<RawMessage>,
    rx: tokio::sync::Mutex<mpsc::Receiver<RawMessage>>,
}

impl RawConnection {
    pub(crate) fn new(conn: Connection) -> RawConnection {
        RawConnection(Arc::new(RawInner {
            conn,
            text: AtomicBool::new(false),
            data_set: AtomicU32::new(0),
            callbacks: Mutex::new(Callbacks::default()),
            inbox: OnceLock::new(),
        }))
    }

    fn inbox(&self) -> &Inbox {
        self.0.inbox.get_or_init(|| {
            // Small: a handler that stops reading pushes back on the peer through TCP.
            let (tx, rx) = mpsc::channel(16);
            Inbox {
                tx,
                rx: tokio::sync::Mutex::new(rx),
            }
        })
    }

    /// Queues a message for `recv` if the inbox has room; gives it back when
    /// the inbox is full (then [`deliver`](Self::deliver) waits for room).
    pub(crate) fn try_deliver(&self, msg: RawMessage) -> Result<(), RawMessage> {
        match self.inbox().tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(msg)) => Err(msg),
            // The receiver lives as long as the connection.
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
        }
    }

    /// Queues a message for `recv`, waiting while the inbox is full.
    pub(crate) async fn deliver(&self, msg: RawMessage) {
        // The receiver lives as long as the connection, so this cannot fail.
        let _ = self.inbox().tx.send(msg).await;
    }

    /// Calls `handler` for every message from now on, instead of queueing it for
    /// [`recv`](Self::recv) (C++ `on_data`).
    pub fn on_data(&self, handler: impl Fn(&RawConnection, RawMessage) + Send + Sync + 'static) {
        let mut callbacks = self.0.callbacks.lock();
        callbacks.data = Some(Arc::new(handler));
        // Under the lock: the session that sees the new count takes this callback
        // (or a later one).
        self.0.data_set.fetch_add(1, Ordering::Release);
    }

    /// Calls `handler` when the connection fails (protocol error, oversized or
    /// invalid message) (C++ `on_error`).
    pub fn on_error(&self, handler: impl Fn(&RawConnection, &RawError) + Send + Sync + 'static) {
        self.0.callbacks.lock().error = Some(Arc::new(handler));
    }

    /// Calls `handler` once when the connection ends (C++ `on_close`).
    pub fn on_close(&self, handler: impl Fn(&RawConnection) + Send + Sync + 'static) {
        self.0.callbacks.lock().close = Some(Arc::new(handler));
    }

    /// Queues `data` as one message: binary by default, text after
    /// [`set_text(true)`](Self::set_text) (then `data` must be UTF-8).
    pub fn send(&self, data: impl Into<Bytes>) -> Result<(), SendError> {
        let data = data.into();
        if self.0.text.load(Ordering::Relaxed) {
            let text = Utf8Bytes::try_from(data).map_err(|_| SendError::NotUtf8)?;
            self.0.conn.send_text(text)
        } else {
            self.0.conn.send(data)
        }
    }

    /// Sends text regardless of the mode.
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), SendError> {
        self.0.conn.send_text(Utf8Bytes::from(text.into()))
    }

    /// Waits for the next message (with on_data unset). `None` when the connection
    /// has ended.
    pub async fn recv(&self) -> Option<RawMessage> {
        let conn = &self.0.conn;
        let mut rx = self.inbox().rx.lock().await;
        loop {
            // What arrived before the end is still delivered.
            if let Ok(msg) = rx.try_recv() {
                return Some(msg);
            }
            if conn.has_ended() {
                return None;
            }
            tokio::select! {
                msg = rx.recv() => return msg,
                _ = conn.ended() => {}
            }
        }
    }

    /// Reads one message, waiting at most `timeout` (forever with `None`) (C++
    /// `read_some`). `Ok(None)`: the connection ended; `Err(Elapsed)`: timed out.
    pub async fn read_some(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Option<RawMessage>, tokio::time::error::Elapsed> {
        match timeout {
            Some(t) => tokio::time::timeout(t, self.recv()).await,
            None => Ok(self.recv().await),
        }
    }

    /// Outgoing messages are binary (`true`) or text (`false`) (C++ `set_binary`).
    pub fn set_binary(&self, binary: bool) {
        self.0.text.store(!binary, Ordering::Relaxed);
    }

    /// Outgoing messages are text (`true`) or binary (`false`) (C++ `set_text`).
    pub fn set_text(&self, text: bool) {
        self.0.text.store(text, Ordering::Relaxed);
    }

    /// Whether outgoing messages are text.
    pub fn is_text(&self) -> bool {
        self.0.text.load(Ordering::Relaxed)
    }

    /// The session's UUID (C++ `get_id`).
    #[doc(alias = "get_id")]
    pub fn id(&self) -> Uuid {
        self.0.conn.id()
    }

    /// The client's address (C++ `remote_endpoint`).
    pub fn remote_endpoint(&self) -> SocketAddr {
        self.0.conn.peer_addr()
    }

    /// The session's counters (C++ `get_metrics`).
    #[doc(alias = "get_metrics")]
    pub fn metrics(&self) -> &SessionMetrics {
        self.0.conn.metrics()
    }

    /// Closes normally (1000) after what is queued is written.
    pub fn close(&self) {
        self.0.conn.stop();
    }

    /// Closes with `code` after what is queued is written.
    pub fn close_with(&self, code: u16, reason: &'static str) {
        self.0.conn.close(code, reason);
    }

    pub(crate) fn data_callback(&self) -> Option<DataCallback> {
        self.0.callbacks.lock().data.clone()
    }

    /// The data callback as of now, from `cache` while `on_data` has not set
    /// another since it was taken: one load per message instead of the lock and
    /// the callback's reference count taken and given back (two more cache lines
    /// per message, each read cold in an echo with 100 connections).
    pub(crate) fn data_callback_cached<'c>(
        &self,
        cache: &'c mut DataCallbackCache,
    ) -> Option<&'c DataCallback> {
        let set = self.0.data_set.load(Ordering::Acquire);
        if set != cache.set {
            cache.callback = self.data_callback();
            cache.set = set;
        }
        cache.callback.as_ref()
    }

    pub(crate) fn fire_error(&self, error: &RawError) {
        let cb = self.0.callbacks.lock().error.clone();
        if let Some(cb) = cb {
            cb(self, error);
        }
    }

    pub(crate) fn fire_close(&self) {
        let cb = self.0.callbacks.lock().close.take();
        if let Some(cb) = cb {
            cb(self);
        }
        // Callbacks hold clones of the connection; drop them so it can be freed.
        *self.0.callbacks.lock() = Callbacks::default();
    }

    pub(crate) fn internal_error(&self) {
        self.0.conn.abort(close_code::INTERNAL, "");
    }
}

/// The data callback a session last took, and the count of `on_data` calls it
/// was taken at (0: none yet, as a new connection starts).
#[derive(Default)]
pub(crate) struct DataCallbackCache {
    set: u32,
    callback: Option<DataCallback>,
}

pub(crate) trait ErasedRawHandler: Send + Sync + 'static {
    /// Calls the handler: `None` when it has already returned (a sync handler;
    /// no task is spawned for it), else its future, to run as a task.
    fn call(&self, conn: RawConnection) -> Option<BoxFuture<'static, ()>>;
}

/// A raw service handler: `Fn(RawConnection)` or `async Fn(RawConnection)`, called
/// once per connection. The `M` parameter only tells the two apart.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a raw WebSocket handler",
    note = "a raw handler is `fn(RawConnection)` or `async fn(RawConnection)`"
)]
pub trait RawHandler<M>: Send + Sync + Sized + 'static {
    /// Erases the handler.
    fn into_boxed(self) -> BoxedRawHandler;
}

/// A type-erased raw handler.
///
/// ```
/// use framework::raw::{BoxedRawHandler, RawConnection};
/// let h = BoxedRawHandler::new(|conn: RawConnection| conn.close());
/// # let _ = h;
/// ```
#[derive(Clone)]
pub struct BoxedRawHandler(pub(crate) Arc<dyn ErasedRawHandler>);

impl std::fmt::Debug for BoxedRawHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxedRawHandler")
    }
}

impl BoxedRawHandler {
    /// Erases any [`RawHandler`].
    pub fn new<M, H: RawHandler<M>>(handler: H) -> Self {
        handler.into_boxed()
    }
}

impl RawHandler<()> for BoxedRawHandler {
    fn into_boxed(self) -> BoxedRawHandler {
        self
    }
}

struct SyncRaw<F>(F);
struct AsyncRaw<F, Fut>(F, PhantomData<fn() -> Fut>);

impl<F: Fn(RawConnection) + Send + Sync + 'static> ErasedRawHandler for SyncRaw<F> {
    fn call(&self, conn: RawConnection) -> Option<BoxFuture<'static, ()>> {
        (self.0)(conn);
        None
    }
}

impl<F, Fut> ErasedRawHandler for AsyncRaw<F, Fut>
where
    F: Fn(RawConnection) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn call(&self, conn: RawConnection) -> Option<BoxFuture<'static, ()>> {
        Some(Box::pin((self.0)(conn)))
    }
}

impl<F: Fn(RawConnection) + Send + Sync + 'static> RawHandler<crate::dispatch::SyncReply> for F {
    fn into_boxed(self) -> BoxedRawHandler {
        BoxedRawHandler(Arc::new(SyncRaw(self)))
    }
}

impl<F, Fut> RawHandler<(crate::dispatch::AsyncReply, Fut)> for F
where
    F: Fn(RawConnection) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn into_boxed(self) -> BoxedRawHandler {
        BoxedRawHandler(Arc::new(AsyncRaw(self, PhantomData)))
    }
}
