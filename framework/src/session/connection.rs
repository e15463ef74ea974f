use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::sync::Notify;
use uuid::Uuid;

use super::budget::{Charge, OverBudget};
use super::SessionMetrics;

/// WebSocket close codes the framework uses (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// WebSocket protocol violation.
    pub const PROTOCOL: u16 = 1002;
    /// Invalid UTF-8 in a text message.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation: slow consumer, auth required and never given.
    pub const POLICY: u16 = 1008;
    /// Message over the configured maximum.
    pub const TOO_BIG: u16 = 1009;
    /// Internal failure of the connection itself.
    pub const INTERNAL: u16 = 1011;
    /// The server is overloaded (its memory budget is spent): reconnect later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Why a frame could not be queued for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The session is closing or closed.
    #[error("the session is closed")]
    Closed,
    /// The session's queue was over its byte limit: it is being closed with 1008.
    #[error("the session's outgoing queue is full (slow consumer)")]
    Overflow,
    /// The bytes the node holds for this peer (or for all peers) are at their
    /// budget (`max_held_bytes_per_ip`, `max_held_bytes`): the session is being
    /// closed with 1008 or 1013.
    #[error("the node's memory budget for this peer is spent")]
    OverBudget,
    /// Text mode was asked to send bytes that are not UTF-8.
    #[error("text messages must be UTF-8")]
    NotUtf8,
}

/// An item of a session's outgoing queue.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A pre-encoded binary frame this queue alone holds (a reply, a direct
    /// send), counted in the node's memory budget.
    Binary(Bytes),
    /// A binary frame shared by many queues (a channel or broadcast delivery),
    /// counted only against this queue's own limit.
    Shared(Bytes),
    /// A text frame (raw mode only).
    Text(tokio_tungstenite::tungstenite::Utf8Bytes),
    /// A WebSocket ping (keepalive).
    Ping,
    /// The answer to the peer's ping.
    Pong(Bytes),
    /// The answer to the peer's close: its code echoed (none when it gave none).
    CloseReply(Option<u16>),
    /// Close after everything queued before it was written.
    Close(u16, &'static str),
    /// Frames the reader began writing inline and the socket did not take
    /// whole: the writer finishes them first (see `writer::write_inline`).
    Carried(Box<super::writer::Carry>),
}

/// A session's state. `repr(C)`, in this order: what every message reads or
/// writes comes first, side by side (the queue, its counts, the closing flags,
/// the message counters), the rest after. With many sessions, a session's
/// state is not in the CPU's caches when its message comes, and each line it
/// touches is a miss: the compiler's own order spread those fields over six
/// of the struct's nine lines (cachegrind of echo, 100 connections).
#[repr(C)]
pub(crate) struct ConnectionInner {
    pub(crate) outbox: Outbox,
    queued: AtomicUsize,
    /// Bytes of `queued` that are counted in the node's memory budget.
    charged: AtomicUsize,
    max_queued: usize,
    /// The node's memory budget, this connection's address's share.
    charge: Charge,
    /// Non-zero once an immediate close (dropping what is queued) was requested.
    abort_code: AtomicU16,
    /// Cancelled when the session must end now: stops both its reader and writer.
    ended: AtomicBool,
    /// The server's shutdown woke this session (see [`Connection::shutdown_waker`]).
    shutdown_seen: AtomicBool,
    /// Set when `deadline_ms` changes, so the reader re-arms its timer.
    deadline_changed: AtomicBool,
    /// The session's closing writes ran (`writer::run`).
    pub(super) closing_written: AtomicBool,
    pub(crate) metrics: SessionMetrics,
    // What is read now and then, or once.
    pub(crate) id: Uuid,
    pub(crate) node_id: Uuid,
    pub(crate) peer: SocketAddr,
    /// The reason the abort's close frame gives.
    abort_reason: std::sync::OnceLock<&'static str>,
    /// Wakes everything waiting for the end (the reader, a raw handler's `recv`).
    end_notify: Notify,
    /// Woken by `abort`: the writer stops whatever it is doing.
    abort_waker: AtomicWaker,
    pub(crate) channels: Mutex<HashSet<Arc<str>>>,
    /// When the unfinished fragmented message being received started (ms into
    /// the session, 1-based; 0: none).
    message_since_ms: AtomicU64,
    /// When the session must end (Unix ms; 0: never), e.g. its token's expiry.
    deadline_ms: AtomicU64,
    /// State a higher layer keeps per session (the node's quota limiters), made
    /// on first use.
    node_state: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
    /// Typed values the application attached (identity, app data).
    extensions: Mutex<http::Extensions>,
    /// The builder handlers of this connection reuse (see `Request::builder`).
    builder: Mutex<Option<Box<flatbuffers::FlatBufferBuilder<'static>>>>,
    /// The session's writing side, while its task runs: a fan-out's tasks
    /// write deliveries through it when the socket is free
    /// ([`Connection::flush`]).
    outlet: std::sync::OnceLock<std::sync::Weak<dyn super::writer::Outlet>>,
    /// Where the session's TCP socket (tokio's, the writer's target) lives in
    /// memory, for [`Connection::prefetch_writer`] (0: none, or not plain TCP).
    /// Only ever an address to prefetch, never dereferenced.
    socket_line: AtomicUsize,
}

/// A handle to one live session (the C++ guide's `websocket_connection`). Cheap to
/// clone; every clone refers to the same session.
///
/// Sending never blocks: frames go to the session's bounded queue, drained by its
/// task. A session that falls more than `max_queued_bytes` behind is closed
/// with 1008, so one slow consumer never slows the others.
///
/// The C++ names map as: `get_id` → [`id`](Self::id), `get_node_id` →
/// [`node_id`](Self::node_id), `get_ip` → [`ip`](Self::ip), `get_port` →
/// [`port`](Self::port), `get_metrics` → [`metrics`](Self::metrics), `send`, `stop`.
///
/// ```
/// use framework::{dispatch::Request, Reply};
/// fn who_am_i(ctx: Request) -> Reply {
///     let conn = ctx.connection();
///     println!("{} from {}:{}", conn.id(), conn.ip(), conn.port());
///     Reply::empty()
/// }
/// ```
#[derive(Clone)]
pub struct Connection(pub(crate) Arc<ConnectionInner>);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.0.id)
            .field("peer", &self.0.peer)
            .finish()
    }
}

impl Drop for ConnectionInner {
    fn drop(&mut self) {
        // Whatever was queued after the writer stopped.
        self.charge.release(*self.charged.get_mut());
    }
}

/// The session's waker for the server's shutdown: marks the session and wakes
/// its task (see [`Connection::shutdown_waker`]).
impl std::task::Wake for ConnectionInner {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shutdown_seen.store(true, Ordering::Release);
        self.outbox.wake();
    }
}

/// Asks the CPU to bring the cache line holding `at` into its caches: a hint,
/// which reads nothing the program sees and never faults, whatever the address
/// (nothing is done on other architectures).
#[inline(always)]
fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` only hints the cache: it has no effect the program
    // can observe and does not fault on any address, valid or not; SSE, which
    // it needs, is part of every x86_64 CPU (the target's baseline).
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

impl PartialEq for Connection {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Connection {}

/// A session's outgoing queue. A [`Queue`](super::Queue) behind a lock rather
/// than a channel: an idle session's empty queue allocates nothing (a channel
/// allocates a block up front), one item queued allocates nothing either, and
/// the writer takes everything queued in one lock. The writer is
/// woken through an `AtomicWaker` (lock-free), not a `Notify` (a mutex per wait
/// and per wake-up showed in fan-out profiles).
///
/// Two flags let the session write its replies without a wake-up (a task
/// wake-up per reply was a quarter of echo's CPU):
/// - `active`: the session is handling a message and will write what is queued
///   before it waits for anything; meanwhile a push does not wake it.
/// - `claimed`: something is writing to the socket; the rest keeps off it.
#[derive(Default)]
#[repr(C)]
pub(crate) struct Outbox {
    items: Mutex<super::Queue>,
    /// Whether `items` is non-empty; set and cleared under the lock.
    pending: AtomicBool,
    active: AtomicBool,
    claimed: AtomicBool,
    waker: AtomicWaker,
}

impl Outbox {
    fn push(&self, item: Outbound) {
        let _ = self.push_quiet(item);
        // SeqCst with `deactivate`: either the reader sees this item after it
        // stops being active, or this push sees it inactive and wakes the writer.
        if !self.active.load(Ordering::SeqCst) {
            self.waker.wake();
        }
    }

    /// Queues `item` without waking anyone; whether the queue was empty (then
    /// the caller writes it, or wakes the session, next).
    fn push_quiet(&self, item: Outbound) -> bool {
        let mut items = self.items.lock();
        let first = items.is_empty();
        items.push_back(item);
        self.pending.store(true, Ordering::SeqCst);
        first
    }

    /// Puts `items` back at the front of the queue, ahead of anything queued
    /// since they were taken.
    pub(crate) fn push_front(&self, items: super::Queue) {
        if items.is_empty() {
            return;
        }
        self.items.lock().prepend(items);
        self.pending.store(true, Ordering::SeqCst);
    }

    /// Everything queued, leaving the queue empty (and unallocated).
    pub(crate) fn take(&self) -> super::Queue {
        let mut items = self.items.lock();
        self.pending.store(false, Ordering::SeqCst);
        std::mem::take(&mut *items)
    }

    /// Whether anything is queued.
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// Wakes `waker` when something is queued while the reader is not active,
    /// or the session is aborted or ends.
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    /// Wakes the writer without queueing anything.
    pub(crate) fn wake(&self) {
        self.waker.wake();
    }

    /// Takes the socket for writing; `false` when someone else has it.
    pub(crate) fn claim(&self) -> bool {
        self.claimed
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Gives the socket back. Nobody is woken: the session's one task writes,
    /// and it looks at the queue again before it waits.
    pub(crate) fn release(&self) {
        self.claimed.store(false, Ordering::SeqCst);
    }

    /// The reader handles a message: what it queues is written by the reader
    /// (see [`deactivate`](Self::deactivate)).
    pub(crate) fn activate(&self) {
        self.active.store(true, Ordering::SeqCst);
    }

    /// The session is about to wait: from now on pushes wake it. Nobody is
    /// woken for what is queued already: every caller looks at the queue next
    /// ([`Outlet::poll_write`](super::writer::Outlet::poll_write) or the closing
    /// writes).
    pub(crate) fn deactivate(&self) {
        self.active.store(false, Ordering::SeqCst);
    }
}

impl Connection {
    pub(crate) fn new(
        node_id: Uuid,
        peer: SocketAddr,
        max_queued: usize,
        charge: Charge,
    ) -> Connection {
        let inner = ConnectionInner {
            // Carries the node's routing key: a cluster routes sends by it.
            id: crate::cluster::session_id(node_id),
            node_id,
            peer,
            outbox: Outbox::default(),
            queued: AtomicUsize::new(0),
            max_queued,
            abort_code: AtomicU16::new(0),
            abort_reason: std::sync::OnceLock::new(),
            charged: AtomicUsize::new(0),
            charge,
            ended: AtomicBool::new(false),
            shutdown_seen: AtomicBool::new(false),
            closing_written: AtomicBool::new(false),
            end_notify: Notify::new(),
            abort_waker: AtomicWaker::new(),
            metrics: SessionMetrics::new(),
            channels: Mutex::new(HashSet::new()),
            message_since_ms: AtomicU64::new(0),
            deadline_ms: AtomicU64::new(0),
            deadline_changed: AtomicBool::new(false),
            node_state: std::sync::OnceLock::new(),
            extensions: Mutex::new(http::Extensions::new()),
            builder: Mutex::new(None),
            outlet: std::sync::OnceLock::new(),
            socket_line: AtomicUsize::new(0),
        };
        Connection(Arc::new(inner))
    }

    /// The session's UUID (C++ `get_id`): a version 8 UUID whose first six bytes
    /// are the owner node's routing key (its id's first six bytes) and whose
    /// other 74 bits are random — a cluster routes a `Send` by it.
    #[doc(alias = "get_id")]
    pub fn id(&self) -> Uuid {
        self.0.id
    }

    /// The node that owns this session (C++ `get_node_id`).
    #[doc(alias = "get_node_id")]
    pub fn node_id(&self) -> Uuid {
        self.0.node_id
    }

    /// The client's IP address (C++ `get_ip`).
    #[doc(alias = "get_ip")]
    pub fn ip(&self) -> IpAddr {
        self.0.peer.ip()
    }

    /// The client's TCP port (C++ `get_port`).
    #[doc(alias = "get_port")]
    pub fn port(&self) -> u16 {
        self.0.peer.port()
    }

    /// The client's address.
    #[doc(alias = "remote_endpoint")]
    pub fn peer_addr(&self) -> SocketAddr {
        self.0.peer
    }

    /// The session's counters (C++ `get_metrics`).
    #[doc(alias = "get_metrics")]
    pub fn metrics(&self) -> &SessionMetrics {
        &self.0.metrics
    }

    /// Queues a pre-encoded frame (e.g. from [`helpers`](crate::helpers)) as one binary
    /// WebSocket message. Never blocks.
    pub fn send(&self, frame: impl Into<Bytes>) -> Result<(), SendError> {
        self.enqueue(Outbound::Binary(frame.into()))
    }

    /// Queues a frame shared with other queues (fan-out): it counts against this
    /// queue's limit, not again in the node's memory budget.
    pub(crate) fn send_shared(&self, frame: Bytes) -> Result<(), SendError> {
        self.enqueue(Outbound::Shared(frame))
    }

    /// Queues a text WebSocket message (raw mode; the protocol itself is binary).
    pub(crate) fn send_text(
        &self,
        text: tokio_tungstenite::tungstenite::Utf8Bytes,
    ) -> Result<(), SendError> {
        self.enqueue(Outbound::Text(text))
    }

    pub(crate) fn enqueue(&self, item: Outbound) -> Result<(), SendError> {
        self.admit(&item)?;
        self.0.outbox.push(item);
        Ok(())
    }

    /// Counts `item` in the queue's limit and the memory budget, or refuses it
    /// (closing the session when it is over a limit).
    fn admit(&self, item: &Outbound) -> Result<(), SendError> {
        let (len, charged) = match item {
            Outbound::Binary(b) => (b.len(), true),
            Outbound::Shared(b) => (b.len(), false),
            Outbound::Text(t) => (t.len(), true),
            Outbound::Close(..)
            | Outbound::CloseReply(_)
            | Outbound::Ping
            | Outbound::Pong(_)
            | Outbound::Carried(_) => (0, false),
        };
        if self.is_closing() {
            self.0.metrics.record_dropped();
            return Err(SendError::Closed);
        }
        let before = self.0.queued.fetch_add(len, Ordering::AcqRel);
        // An empty queue always takes one frame, so a frame larger than the limit
        // does not close a consumer that keeps up.
        if len > 0 && before > 0 && before + len > self.0.max_queued {
            self.0.queued.fetch_sub(len, Ordering::AcqRel);
            self.slow_consumer();
            return Err(SendError::Overflow);
        }
        if charged && len > 0 {
            if before == 0 {
                // Likewise for the memory budget: a queue that keeps up is never
                // the one holding memory.
                self.0.charge.force(len);
            } else if let Err(over) = self.0.charge.take(len) {
                self.0.queued.fetch_sub(len, Ordering::AcqRel);
                self.0.metrics.record_dropped();
                self.over_budget(over);
                return Err(SendError::OverBudget);
            }
            self.0.charged.fetch_add(len, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Makes `outlet` (the session's writing side) the one other tasks write
    /// deliveries through while the session's task holds it.
    pub(crate) fn attach_outlet(&self, outlet: &Arc<dyn super::writer::Outlet>) {
        let _ = self.0.outlet.set(Arc::downgrade(outlet));
    }

    /// Names `socket` (the plain TCP stream the session writes) as the memory
    /// a fan-out's writing task is to prefetch ([`prefetch_writer`](Self::prefetch_writer)).
    pub(crate) fn hint_socket(&self, socket: &tokio::net::TcpStream) {
        self.0
            .socket_line
            .store(std::ptr::from_ref(socket).addr(), Ordering::Relaxed);
    }

    /// A fan-out's look-ahead, first step: asks the CPU to bring in the lines
    /// of this session's state that a delivery reads and writes (its queue,
    /// its byte count, its abort code, its writing side), while the caller
    /// works on the sessions before it. With thousands of subscribers their
    /// state is not in cache when a publication comes: waiting for it was most
    /// of a fan-out's user time to 10,000 subscribers.
    pub(crate) fn prefetch_state(&self) {
        let inner = &*self.0;
        prefetch(std::ptr::from_ref(inner).cast::<u8>().wrapping_sub(16));
        prefetch(&inner.abort_code);
        prefetch(&inner.queued);
        prefetch(&inner.outbox);
        prefetch(
            std::ptr::from_ref(&inner.outbox)
                .cast::<u8>()
                .wrapping_add(64),
        );
        prefetch(&inner.outlet);
    }

    /// The look-ahead's second step, once [`prefetch_state`](Self::prefetch_state)
    /// brought the state in: the session's writing side and its socket, which
    /// the write goes through.
    pub(crate) fn prefetch_writer(&self) {
        if let Some(outlet) = self.0.outlet.get() {
            // The reference counts before the value (an upgrade writes them),
            // then the value (a plain TCP session's: a lock and its half of
            // the socket, 24 bytes).
            let at = std::sync::Weak::as_ptr(outlet).cast::<u8>();
            prefetch(at.wrapping_sub(16));
            prefetch(at.wrapping_add(16));
        }
        let socket = self.0.socket_line.load(Ordering::Relaxed);
        if socket != 0 {
            let at = std::ptr::without_provenance::<u8>(socket);
            prefetch(at);
            prefetch(at.wrapping_add(std::mem::size_of::<tokio::net::TcpStream>() - 1));
        }
    }

    /// The session's writing side, while its task runs.
    fn outlet(&self) -> Option<Arc<dyn super::writer::Outlet>> {
        self.0.outlet.get().and_then(std::sync::Weak::upgrade)
    }

    /// Queues a shared frame without waking the session. `Ok(true)` when the
    /// queue was empty: the caller must then see it written, with
    /// [`flush`](Self::flush) (from another task perhaps). Otherwise whoever
    /// is to write what was queued before takes this frame with it (every
    /// writer looks at the queue again after it gives the socket back).
    pub(crate) fn send_shared_quiet(&self, frame: Bytes) -> Result<bool, SendError> {
        let item = Outbound::Shared(frame);
        self.admit(&item)?;
        Ok(self.0.outbox.push_quiet(item))
    }

    /// Writes what is queued from the caller's task when the socket is free
    /// and takes it at once; wakes the session for whatever is left.
    pub(crate) fn flush(&self) {
        match self.outlet() {
            Some(outlet) => outlet.flush(self),
            None => self.0.outbox.wake(),
        }
    }

    /// The most bytes this session's outgoing queue holds.
    pub(crate) fn max_queued(&self) -> usize {
        self.0.max_queued
    }

    /// Drops a frame for this session and closes it with 1008 as a slow
    /// consumer (counted once).
    pub(crate) fn slow_consumer(&self) {
        self.0.metrics.record_dropped();
        if self.abort(
            super::close_code::POLICY,
            "slow consumer: fell too far behind",
        ) {
            self.0.charge.budget().count_slow_consumer();
            tracing::info!(session = %self.0.id, "slow consumer: closing with 1008");
        }
    }

    /// Closes the session for going over the memory budget.
    pub(crate) fn over_budget(&self, over: OverBudget) {
        let (code, reason) = over.close();
        if self.abort(code, reason) {
            self.0.charge.budget().count_close();
            tracing::info!(session = %self.0.id, code, reason, "over the memory budget: closing");
        }
    }

    /// Counts `n` bytes of an incoming message in the memory budget.
    pub(crate) fn hold_incoming(&self, n: usize) -> Result<(), OverBudget> {
        self.0.charge.take(n)
    }

    /// Gives back bytes counted by [`hold_incoming`](Self::hold_incoming).
    pub(crate) fn release_incoming(&self, n: usize) {
        self.0.charge.release(n);
    }

    /// Queues the answer to the peer's ping.
    pub(crate) fn pong(&self, payload: Bytes) -> Result<(), SendError> {
        self.enqueue(Outbound::Pong(payload))
    }

    /// Queues the answer to the peer's close frame, after what is queued.
    pub(crate) fn close_reply(&self, code: Option<u16>) {
        self.0.outbox.push(Outbound::CloseReply(code));
    }

    /// Queues a WebSocket ping (the peer's pong counts as activity).
    pub(crate) fn ping(&self) -> Result<(), SendError> {
        self.enqueue(Outbound::Ping)
    }

    /// Closes the session normally (1000) after what is already queued is written.
    pub fn stop(&self) {
        self.close(super::close_code::NORMAL, "");
    }

    /// Closes with `code` after what is already queued is written.
    pub fn close(&self, code: u16, reason: &'static str) {
        self.0.outbox.push(Outbound::Close(code, reason));
    }

    /// Closes at once with `code` and `reason`, dropping what is queued (slow
    /// consumer, memory budget, fatal error). Whether this call was the first.
    pub(crate) fn abort(&self, code: u16, reason: &'static str) -> bool {
        let first = self
            .0
            .abort_code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            let _ = self.0.abort_reason.set(reason);
            // Interrupts the writer even when it is blocked on a full socket.
            self.0.abort_waker.wake();
            self.0.outbox.wake();
        }
        first
    }

    /// The reason of the abort, if any.
    pub(crate) fn abort_reason(&self) -> &'static str {
        self.0.abort_reason.get().copied().unwrap_or("")
    }

    pub(crate) fn abort_code(&self) -> Option<u16> {
        match self.0.abort_code.load(Ordering::Acquire) {
            0 => None,
            c => Some(c),
        }
    }

    /// Resolves once something is queued, or the session ended or was aborted
    /// (the writer's only wait while idle).
    pub(crate) fn writer_ready(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let outbox = &self.0.outbox;
            outbox.waker.register(cx.waker());
            // Something queued is the writer's unless the reader is writing it.
            let writable = outbox.pending.load(Ordering::SeqCst)
                && !outbox.claimed.load(Ordering::SeqCst)
                && !outbox.active.load(Ordering::SeqCst);
            if writable || self.has_ended() || self.abort_code().is_some() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
    }

    /// Resolves once the session is aborted.
    pub(crate) fn aborted(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            self.0.abort_waker.register(cx.waker());
            if self.abort_code().is_some() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
    }

    /// Runs `work` (the handling of a message the reader got) as part of the
    /// reader's active spell: what it queues is written by the reader when it
    /// is done. If `work` has to wait, the spell ends there, so nothing queued
    /// waits for it.
    ///
    /// While `work` waits, what other sessions queue for this one is written
    /// through `outlet` (the session has no other task to write it); and when
    /// the session is to end meanwhile (closed by the app, aborted), its closing
    /// writes run at once, as `closing` says, instead of after `work`.
    ///
    /// A future of its own rather than an `async fn`, which would hold `work`
    /// twice (as its argument and pinned): this is in every session's future.
    pub(crate) fn while_active<'a, F: std::future::Future>(
        &'a self,
        outlet: &'a dyn super::writer::Outlet,
        closing: &'a super::writer::Closing,
        work: F,
    ) -> WhileActive<'a, F> {
        WhileActive {
            conn: self,
            outlet,
            closing,
            writes: CloseWrites::NotBegun,
            output: None,
            work,
        }
    }

    /// Marks the session ended and wakes its writer (which then flushes and stops).
    pub(crate) fn end(&self) {
        if !self.0.ended.swap(true, Ordering::AcqRel) {
            self.0.end_notify.notify_waiters();
            self.0.outbox.wake();
        }
    }

    /// A waker that marks the session as told of the server's shutdown
    /// ([`shutdown_seen`](Self::shutdown_seen)) and wakes its task through the
    /// queue's waker, which the session registers whenever it waits.
    pub(crate) fn shutdown_waker(&self) -> std::task::Waker {
        std::task::Waker::from(self.0.clone())
    }

    /// Whether the waker of [`shutdown_waker`](Self::shutdown_waker) was woken.
    pub(crate) fn shutdown_seen(&self) -> bool {
        self.0.shutdown_seen.load(Ordering::Acquire)
    }

    /// Whether the session has ended.
    pub(crate) fn has_ended(&self) -> bool {
        self.0.ended.load(Ordering::Acquire)
    }

    /// Resolves once the session has ended.
    pub(crate) async fn ended(&self) {
        let notified = self.0.end_notify.notified();
        tokio::pin!(notified);
        // Registered before the check, so an `end` in between is not missed.
        notified.as_mut().enable();
        if self.has_ended() {
            return;
        }
        notified.await;
    }

    /// Whether the session is closing (a close was requested or it ended).
    pub fn is_closing(&self) -> bool {
        self.0.abort_code.load(Ordering::Acquire) != 0 || self.has_ended()
    }

    /// Bytes currently waiting in the outgoing queue.
    pub fn queued_bytes(&self) -> usize {
        self.0.queued.load(Ordering::Acquire)
    }

    /// `bytes` left the queue, `charged` of them counted in the memory budget.
    pub(crate) fn dequeued(&self, bytes: usize, charged: usize) {
        self.0.queued.fetch_sub(bytes, Ordering::AcqRel);
        if charged > 0 {
            self.0.charged.fetch_sub(charged, Ordering::AcqRel);
            self.0.charge.release(charged);
        }
    }

    /// Queues `bytes` to be written as they are, before anything else (the
    /// session's first write then leads with them): the upgrade's response
    /// when it was held back. Called before the session queues anything.
    pub(crate) fn queue_preface(&self, bytes: bytes::BytesMut) {
        let preface = super::writer::Carry::preface(bytes);
        self.0.outbox.push(Outbound::Carried(Box::new(preface)));
    }

    /// Drops everything queued (the session is over), giving its bytes back.
    pub(crate) fn drain_queue(&self) {
        let (mut bytes, mut charged) = (0, 0);
        for item in self.0.outbox.take() {
            match item {
                Outbound::Binary(b) => (bytes, charged) = (bytes + b.len(), charged + b.len()),
                Outbound::Text(t) => (bytes, charged) = (bytes + t.len(), charged + t.len()),
                Outbound::Shared(b) => bytes += b.len(),
                Outbound::Carried(carry) => {
                    (bytes, charged) = (bytes + carry.written, charged + carry.charged)
                }
                Outbound::Close(..)
                | Outbound::CloseReply(_)
                | Outbound::Ping
                | Outbound::Pong(_) => {}
            }
        }
        self.dequeued(bytes, charged);
    }

    pub(crate) fn take_builder(&self) -> Box<flatbuffers::FlatBufferBuilder<'static>> {
        self.0
            .builder
            .lock()
            .take()
            .unwrap_or_else(|| Box::new(flatbuffers::FlatBufferBuilder::with_capacity(256)))
    }

    pub(crate) fn return_builder(&self, builder: Box<flatbuffers::FlatBufferBuilder<'static>>) {
        *self.0.builder.lock() = Some(builder);
    }

    /// A clone of the value of type `T` attached to this connection (by an
    /// `on_connect` hook or a handler), if any.
    ///
    /// ```
    /// # fn f(conn: framework::Connection) {
    /// #[derive(Clone)]
    /// struct Nick(String);
    /// conn.insert_extension(Nick("ada".into()));
    /// assert_eq!(conn.extension::<Nick>().unwrap().0, "ada");
    /// # }
    /// ```
    pub fn extension<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.0.extensions.lock().get::<T>().cloned()
    }

    /// Attaches `value` to this connection, returning the value of the same type
    /// it replaces. Every later frame of the connection sees it.
    pub fn insert_extension<T: Clone + Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.0.extensions.lock().insert(value)
    }

    /// Detaches the value of type `T`.
    pub fn remove_extension<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.0.extensions.lock().remove::<T>()
    }

    /// Attaches application bytes that other clients see in this session's
    /// presence entries and `Join`/`Leave` events (`ClientInfo.info`), e.g. a
    /// display name. Never put the token here. Takes effect for channels joined
    /// afterwards.
    ///
    /// ```
    /// # fn f(conn: framework::session::Connection) {
    /// conn.set_info(&b"Ada Lovelace"[..]);
    /// assert_eq!(&conn.info()[..], b"Ada Lovelace");
    /// # }
    /// ```
    pub fn set_info(&self, info: impl Into<bytes::Bytes>) {
        self.insert_extension(ClientInfoBytes(info.into()));
    }

    /// The bytes [`set_info`](Self::set_info) attached (empty by default).
    pub fn info(&self) -> bytes::Bytes {
        self.extension::<ClientInfoBytes>()
            .map(|i| i.0)
            .unwrap_or_default()
    }

    /// Runs `f` with the connection's extensions locked: to read or change several
    /// values at once. Do not call other extension methods of this connection
    /// inside `f` (they would wait for the lock `f` holds).
    pub fn with_extensions<R>(&self, f: impl FnOnce(&mut http::Extensions) -> R) -> R {
        f(&mut self.0.extensions.lock())
    }

    /// A fragmented message started arriving.
    pub(crate) fn message_started(&self) {
        let now = self.0.metrics.elapsed_ms().max(1);
        self.0.message_since_ms.store(now, Ordering::Release);
    }

    /// The fragmented message is whole.
    pub(crate) fn message_finished(&self) {
        self.0.message_since_ms.store(0, Ordering::Release);
    }

    /// How long the unfinished message has been arriving, if there is one.
    pub(crate) fn message_unfinished_for(&self) -> Option<std::time::Duration> {
        match self.0.message_since_ms.load(Ordering::Acquire) {
            0 => None,
            since => Some(std::time::Duration::from_millis(
                self.0.metrics.elapsed_ms().saturating_sub(since),
            )),
        }
    }

    /// Sets when the session must end (Unix ms; 0: never): the reader closes it
    /// with 1008 "token expired" then.
    pub(crate) fn set_deadline_ms(&self, ms: u64) {
        self.0.deadline_ms.store(ms, Ordering::Release);
        self.0.deadline_changed.store(true, Ordering::Release);
    }

    /// When the session must end (Unix ms; 0: never).
    pub(crate) fn deadline_ms(&self) -> u64 {
        self.0.deadline_ms.load(Ordering::Acquire)
    }

    /// Whether the deadline changed since the last call.
    pub(crate) fn take_deadline_changed(&self) -> bool {
        self.0.deadline_changed.swap(false, Ordering::AcqRel)
    }

    /// The per-session state of the node (see the field).
    pub(crate) fn node_state(&self) -> &std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>> {
        &self.0.node_state
    }

    /// Replaces every extension (the values the `on_connect` hooks attached).
    pub(crate) fn set_extensions(&self, extensions: http::Extensions) {
        *self.0.extensions.lock() = extensions;
    }

    /// The channels this session has joined on this node.
    pub fn channels(&self) -> Vec<String> {
        self.0
            .channels
            .lock()
            .iter()
            .map(|c| c.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_queue_takes_a_frame_larger_than_the_limit() {
        let c = Connection::new(
            Uuid::nil(),
            "127.0.0.1:1".parse().unwrap(),
            10,
            Charge::unlimited(),
        );
        assert!(c.send(Bytes::from(vec![0u8; 100])).is_ok());
        assert_eq!(c.send(Bytes::from_static(b"1")), Err(SendError::Overflow));
    }

    #[test]
    fn over_the_byte_limit_the_session_is_aborted_with_1008() {
        let c = Connection::new(
            Uuid::nil(),
            "127.0.0.1:1".parse().unwrap(),
            10,
            Charge::unlimited(),
        );
        assert!(c.send(Bytes::from_static(b"12345")).is_ok());
        assert!(c.send(Bytes::from_static(b"12345")).is_ok());
        assert_eq!(c.send(Bytes::from_static(b"1")), Err(SendError::Overflow));
        assert_eq!(c.abort_code(), Some(close_code::POLICY));
        assert_eq!(c.send(Bytes::from_static(b"1")), Err(SendError::Closed));
        assert_eq!(c.metrics().dropped(), 2);
        let queued = c.0.outbox.take();
        assert_eq!(queued.len(), 2);
        assert!(queued.iter().all(|o| matches!(o, Outbound::Binary(_))));
        assert!(c.is_closing());
    }

    #[test]
    fn a_slow_consumer_is_counted_once_in_the_node_metric_its_account_names() {
        let closes = Arc::new(AtomicU64::new(0));
        let c = Connection::new(
            Uuid::nil(),
            "127.0.0.1:1".parse().unwrap(),
            10,
            Charge::unlimited_counting(closes.clone()),
        );
        assert!(c.send(Bytes::from_static(b"1234567890")).is_ok());
        assert_eq!(c.send(Bytes::from_static(b"1")), Err(SendError::Overflow));
        c.slow_consumer();
        assert_eq!(closes.load(Ordering::Relaxed), 1, "one close, counted once");
    }

    /// The fan-out's look-ahead prefetches addresses without reading what
    /// they hold (it reads only the connection's own fields): it is harmless
    /// whatever state the session is in, a freed socket and writer included.
    #[test]
    fn prefetching_a_session_is_harmless_in_every_state() {
        let c = Connection::new(
            Uuid::nil(),
            "127.0.0.1:1".parse().unwrap(),
            1 << 20,
            Charge::unlimited(),
        );
        c.prefetch_state();
        c.prefetch_writer(); // no writer yet, no socket named
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let std_socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        std_socket.set_nonblocking(true).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let socket = runtime
            .block_on(async { tokio::net::TcpStream::from_std(std_socket) })
            .unwrap();
        c.hint_socket(&socket);
        let outlet: Arc<dyn super::super::writer::Outlet> =
            super::super::writer::Shared::new(tokio::io::sink());
        c.attach_outlet(&outlet);
        c.prefetch_writer(); // both alive
        drop(socket);
        drop(outlet);
        c.prefetch_state();
        c.prefetch_writer(); // the writer and the socket are gone
        assert!(c.outlet().is_none());
        assert_eq!(c.send_shared_quiet(Bytes::from_static(b"frame")), Ok(true));
        assert_eq!(c.0.outbox.take().len(), 1);
    }
}

/// The application bytes of a connection's `ClientInfo` (see `Connection::set_info`).
#[derive(Clone)]
struct ClientInfoBytes(bytes::Bytes);

/// Where a [`WhileActive`] is with the session's closing writes.
enum CloseWrites<'a> {
    NotBegun,
    Running(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>),
    Done,
}

pin_project_lite::pin_project! {
    /// The future of [`Connection::while_active`].
    pub(crate) struct WhileActive<'a, F>
    where
        F: std::future::Future,
    {
        conn: &'a Connection,
        outlet: &'a dyn super::writer::Outlet,
        closing: &'a super::writer::Closing,
        writes: CloseWrites<'a>,
        output: Option<F::Output>,
        #[pin]
        work: F,
    }
}

impl<F: std::future::Future> std::future::Future for WhileActive<'_, F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        use std::task::Poll;
        let this = self.project();
        if this.output.is_none() {
            match this.work.poll(cx) {
                Poll::Ready(out) => *this.output = Some(out),
                Poll::Pending => {
                    this.conn.0.outbox.deactivate();
                    if let CloseWrites::NotBegun = this.writes {
                        // Deliveries go out meanwhile; `Ready` when the session
                        // is to end.
                        if this.outlet.poll_write(this.conn, cx).is_ready() {
                            *this.writes =
                                CloseWrites::Running(this.closing.write(this.conn, *this.outlet));
                        }
                    }
                }
            }
        }
        // Closing writes, once begun, run to their end (a frame is never left
        // half written), even when `work` is done first.
        if let CloseWrites::Running(writes) = this.writes {
            if writes.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            *this.writes = CloseWrites::Done;
        }
        match this.output.take() {
            Some(out) => Poll::Ready(out),
            None => Poll::Pending,
        }
    }
}
