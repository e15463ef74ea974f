//! The writing side of a session: drains its queue and writes its frames in
//! few syscalls.
//!
//! Server frames are simple (RFC 6455 §5.2: never masked, never fragmented
//! here), so the session frames them itself instead of going through a
//! WebSocket library: a batch becomes one `writev` of the frames' headers and
//! payloads. Small frames are copied into one contiguous buffer (a copy of a few
//! bytes is cheaper than an I/O vector entry); a large payload is written from
//! the queue's own bytes, never copied.
//!
//! A session is one task. After handling a message, before it waits for the
//! next, it writes what is queued when the socket takes it at once
//! ([`Outlet::write_now`]); while it waits, whatever is queued (deliveries from
//! other sessions) or left over from a full socket is written as it comes
//! ([`Outlet::poll_write`]); at the end, [`run`] drains the queue up to the
//! close frame and writes it ([`Outlet::finish`]).
//!
//! A fan-out's deliveries are written by the fan-out's own tasks
//! ([`Outlet::flush`]) when the socket is free, without waking the session;
//! whatever the socket does not take at once is left to the session.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{Connection, Outbound, Queue};

/// How long a close frame may take to go out when a session is aborted.
const ABORT_CLOSE_DEADLINE: Duration = Duration::from_secs(1);

/// Payloads up to this size are copied next to their header; larger ones are
/// written from where they are.
const COPY_AT_MOST: usize = 1024;

/// A single frame's payload up to this size is written from one buffer with
/// its header (see `write_inline`).
const JOIN_AT_MOST: usize = 512;

/// The stack buffer a small frame is joined in (header and payload).
const SMALL_JOIN: usize = 128;

/// I/O vector entries per `writev`.
const IOV_PER_WRITE: usize = 64;

/// WebSocket opcodes (RFC 6455 §5.2).
pub(crate) mod opcode {
    pub(crate) const TEXT: u8 = 0x1;
    pub(crate) const BINARY: u8 = 0x2;
    pub(crate) const CLOSE: u8 = 0x8;
    pub(crate) const PING: u8 = 0x9;
    pub(crate) const PONG: u8 = 0xA;
}

/// Appends the header of a final, unmasked frame of `opcode` carrying `len`
/// payload bytes.
pub(crate) fn put_header(out: &mut BytesMut, opcode: u8, len: usize) {
    let (header, n) = header(opcode, len);
    out.extend_from_slice(&header[..n]);
}

/// The header of a final, unmasked frame of `opcode` carrying `len` payload
/// bytes, and its length.
fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    out[0] = 0x80 | opcode;
    let n = if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= usize::from(u16::MAX) {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (out, n)
}

/// A close frame's payload: the code, then the reason (RFC 6455 §5.5.1), the
/// reason cut to fit a control frame's 125 bytes at a character boundary.
fn close_payload(code: u16, reason: &str) -> ([u8; 125], usize) {
    let mut out = [0u8; 125];
    out[..2].copy_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    (out, 2 + end)
}

/// Frames on their way to the socket: headers and small payloads copied into
/// one buffer, and large payloads, each written (from its own bytes) at its
/// place in the buffer. A batch of small frames is one buffer and one write,
/// with no other allocation.
pub(crate) struct Frames {
    /// Headers and small payloads, in order.
    buf: BytesMut,
    /// Bytes at the front of `buf` already written.
    done: usize,
    /// Large payloads, each with the length of `buf` it follows, in order.
    large: VecDeque<(usize, Bytes)>,
    /// Payload bytes and frames added, for the metrics.
    payload: u64,
    frames: u64,
}

thread_local! {
    /// A batch buffer kept for the next batch written on this thread (see
    /// [`Frames::batch`]).
    static SPARE: std::cell::Cell<Option<BytesMut>> = const { std::cell::Cell::new(None) };
}

/// The largest batch buffer kept for the next batch.
const SPARE_AT_MOST: usize = 64 * 1024;

impl Frames {
    fn new(capacity: usize) -> Self {
        Frames {
            buf: BytesMut::with_capacity(capacity),
            done: 0,
            large: VecDeque::new(),
            payload: 0,
            frames: 0,
        }
    }

    /// Frames for a batch of `capacity` bytes, in the buffer the thread's
    /// last whole batch left ([`recycle`](Self::recycle)) when it is large
    /// enough. A fan-out writes a batch to every subscriber behind on a few
    /// publications; a buffer allocated and freed for each was ~7 % of the
    /// instructions per delivery at its peak (callgrind).
    fn batch(capacity: usize) -> Self {
        let mut frames = Frames::new(0);
        frames.buf = match SPARE.with(std::cell::Cell::take) {
            Some(buf) if buf.capacity() >= capacity => buf,
            _ => BytesMut::with_capacity(capacity),
        };
        frames
    }

    /// Gives the buffer of these frames, all written, to the thread's next
    /// batch.
    fn recycle(mut self) {
        if self.buf.capacity() <= SPARE_AT_MOST {
            self.buf.clear();
            SPARE.with(|spare| spare.set(Some(self.buf)));
        }
    }

    fn copied(&mut self, opcode: u8, payload: &[u8]) {
        put_header(&mut self.buf, opcode, payload.len());
        self.buf.extend_from_slice(payload);
    }

    fn push(&mut self, opcode: u8, payload: Bytes) {
        self.frames += 1;
        self.payload += payload.len() as u64;
        if payload.len() <= COPY_AT_MOST {
            self.copied(opcode, &payload);
            return;
        }
        put_header(&mut self.buf, opcode, payload.len());
        self.large.push_back((self.buf.len(), payload));
    }

    fn control(&mut self, opcode: u8, payload: &[u8]) {
        self.copied(opcode, payload);
    }

    fn close(&mut self, code: u16, reason: &str) {
        let (payload, len) = close_payload(code, reason);
        self.copied(opcode::CLOSE, &payload[..len]);
    }

    /// Appends `other`'s unwritten frames after these.
    fn append(&mut self, other: Frames) {
        let base = self.buf.len();
        self.buf.extend_from_slice(&other.buf[other.done..]);
        self.large.extend(
            other
                .large
                .into_iter()
                .map(|(at, payload)| (base + at - other.done, payload)),
        );
        self.frames += other.frames;
        self.payload += other.payload;
    }

    /// The frames and payload bytes counted since the last call.
    fn take_counts(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.frames),
            std::mem::take(&mut self.payload),
        )
    }

    /// Bytes waiting (copied and not).
    fn len(&self) -> usize {
        self.buf.len() - self.done + self.large.iter().map(|(_, p)| p.len()).sum::<usize>()
    }

    fn is_empty(&self) -> bool {
        self.done == self.buf.len() && self.large.is_empty()
    }

    /// Marks `n` more bytes written, in order.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let until = self.large.front().map_or(self.buf.len(), |(at, _)| *at);
            if self.done < until {
                let k = n.min(until - self.done);
                self.done += k;
                n -= k;
                continue;
            }
            let Some((_, payload)) = self.large.front_mut() else {
                break;
            };
            if n >= payload.len() {
                n -= payload.len();
                self.large.pop_front();
            } else {
                payload.advance(n);
                n = 0;
            }
        }
    }

    /// Writes what the socket takes now; `Ready(Ok)` once everything is written
    /// and flushed.
    fn poll_write_to<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); IOV_PER_WRITE];
            let mut n = 0;
            let mut pos = self.done;
            let mut listed_all = true;
            for (at, payload) in &self.large {
                if n + 2 > IOV_PER_WRITE {
                    listed_all = false;
                    break;
                }
                if pos < *at {
                    slices[n] = IoSlice::new(&self.buf[pos..*at]);
                    n += 1;
                    pos = *at;
                }
                slices[n] = IoSlice::new(payload);
                n += 1;
            }
            if listed_all && pos < self.buf.len() && n < IOV_PER_WRITE {
                // After the last large payload: the rest of the buffer.
                slices[n] = IoSlice::new(&self.buf[pos..]);
                n += 1;
            }
            let written = match Pin::new(&mut *w).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            self.advance(written);
        }
        Pin::new(w).poll_flush(cx)
    }

    /// Writes everything, in as few `writev`s as the socket takes, then flushes.
    async fn write_to<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write_to(w, cx)).await
    }
}

/// Frames the reader could not write whole, with what they hold of the
/// session's queue: given back once written.
pub(crate) struct Carry {
    frames: Frames,
    /// Queue bytes (`Connection::dequeued`'s first count).
    pub(crate) written: usize,
    /// Of them, bytes counted in the memory budget.
    pub(crate) charged: usize,
}

impl Carry {
    /// Bytes that go out before any frame, as they are: the upgrade's response
    /// when it was held back (see `services::plain`). They are no frames and
    /// hold nothing of the queue's bytes.
    pub(crate) fn preface(bytes: BytesMut) -> Carry {
        // The frames that follow are encoded after them, in the same buffer.
        let mut frames = Frames::new(0);
        frames.buf = bytes;
        Carry {
            frames,
            written: 0,
            charged: 0,
        }
    }
}

impl std::fmt::Debug for Carry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carry")
            .field("frames", &self.frames.frames)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// The writing side of a connection. One writer at a time (the queue's claim);
/// the lock is taken for one poll at a time, never across a wait.
pub(crate) struct Shared<W>(Mutex<W>);

impl<W: AsyncWrite + Unpin> Shared<W> {
    pub(crate) fn new(w: W) -> Arc<Self> {
        Arc::new(Shared(Mutex::new(w)))
    }
}

/// [`run`]'s view of [`Shared`]: an `AsyncWrite` locking per poll.
struct Locked<'a, W>(&'a Shared<W>);

impl<W: AsyncWrite + Unpin> AsyncWrite for Locked<'_, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0 .0.lock()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0 .0.lock()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0 .0.lock().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0 .0.lock()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0 .0.lock()).poll_shutdown(cx)
    }
}

/// What a session's reader writes through (its connection's [`Shared`] writing
/// side, whatever the transport). The session's one task does all its writing
/// through it: what its own messages queued, deliveries from other sessions,
/// and, at the end, the close.
pub(crate) trait Outlet: Send + Sync {
    /// Writes what the session has queued, if the socket takes it at once;
    /// what it does not take is written by [`poll_write`](Self::poll_write).
    /// Ends the reader's active spell ([`Outbox::deactivate`](super::connection::Outbox)).
    fn write_now(&self, conn: &Connection);

    /// Writes what is queued, as far as the socket takes it, and registers the
    /// task to be woken when more is queued or the socket takes more. `Ready`
    /// when the session is to end: a close frame is next in the queue, the
    /// session was aborted or ended, or the socket failed; then
    /// [`finish`](Self::finish) writes the rest.
    fn poll_write(&self, conn: &Connection, cx: &mut Context<'_>) -> Poll<()>;

    /// Writes what is still queued up to its close frame (or, for an aborted
    /// session, the close alone), then shuts the socket's writing side down and
    /// marks the session ended (see [`run`]).
    fn finish<'a>(
        &'a self,
        conn: &'a Connection,
        config: WriterConfig,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

    /// Writes what is queued (from another task) when nobody else writes, as
    /// far as the socket takes it now; wakes the session for the rest. See
    /// [`Connection::flush`].
    fn flush(&self, conn: &Connection);
}

impl<W: AsyncWrite + Unpin + Send> Outlet for Shared<W> {
    fn write_now(&self, conn: &Connection) {
        let outbox = &conn.0.outbox;
        if outbox.is_pending() && conn.abort_code().is_none() && outbox.claim() {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            write_inline(self, conn, &mut cx);
            outbox.release();
        }
        outbox.deactivate();
    }

    fn poll_write(&self, conn: &Connection, cx: &mut Context<'_>) -> Poll<()> {
        let outbox = &conn.0.outbox;
        // Registered before looking, so a push in between is not missed.
        outbox.register(cx.waker());
        loop {
            if conn.abort_code().is_some() || conn.has_ended() {
                return Poll::Ready(());
            }
            if !outbox.is_pending() || !outbox.claim() {
                return Poll::Pending;
            }
            let written = write_inline(self, conn, cx);
            outbox.release();
            match written {
                Inline::Written => continue,
                Inline::Blocked => return Poll::Pending,
                Inline::Stop => return Poll::Ready(()),
            }
        }
    }

    fn finish<'a>(
        &'a self,
        conn: &'a Connection,
        config: WriterConfig,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(run(self, conn, config))
    }

    fn flush(&self, conn: &Connection) {
        let outbox = &conn.0.outbox;
        if conn.abort_code().is_some() || !outbox.claim() {
            // Whoever writes looks at the queue again; the session's task
            // does if nobody else does.
            outbox.wake();
            return;
        }
        outside_budget(|cx| {
            write_inline(self, conn, cx);
        });
        let_go(conn);
    }
}

/// Runs `write` (nonblocking writes from a task other than the session's) with
/// a waker that wakes nobody, outside the calling task's cooperative budget.
/// Tokio's sockets answer "not ready" to every operation once the task polling
/// them has spent its budget (128 per poll), so without this all but the first
/// writes of a fan-out would find every socket busy and go the slow way. The
/// budget has nothing to guard here: these writes never wait, and a fan-out is
/// one bounded pass over its recipients.
fn outside_budget(write: impl FnOnce(&mut Context<'_>)) {
    let mut write = Some(write);
    let once = tokio::task::coop::unconstrained(std::future::poll_fn(|cx| {
        if let Some(write) = write.take() {
            write(cx);
        }
        Poll::Ready(())
    }));
    // Ready at its first poll: the closure never waits.
    let _ = std::future::Future::poll(
        std::pin::pin!(once),
        &mut Context::from_waker(std::task::Waker::noop()),
    );
}

/// Gives the socket back after a write from a task other than the session's,
/// and wakes the session when anything is still queued: what the socket did
/// not take (its readiness was registered with a waker that wakes nobody), or
/// what was queued meanwhile by a writer that found the socket taken.
fn let_go(conn: &Connection) {
    let outbox = &conn.0.outbox;
    outbox.release();
    if outbox.is_pending() {
        outbox.wake();
    }
}

/// How far [`write_inline`] got.
enum Inline {
    /// Everything taken from the queue was written.
    Written,
    /// The socket took only part: the rest waits at the front of the queue.
    Blocked,
    /// A close frame is next in the queue (what came before it is written), or
    /// the socket failed.
    Stop,
}

/// `head` then `payload` in a buffer of `N` bytes, which holds both.
fn join<const N: usize>(head: &[u8], payload: &[u8]) -> [u8; N] {
    let mut buf = [0u8; N];
    buf[..head.len()].copy_from_slice(head);
    buf[head.len()..head.len() + payload.len()].copy_from_slice(payload);
    buf
}

/// Writes the queue as far as the socket takes it (the caller holds the claim):
/// the frames a previous call left half written first, then the data frames up
/// to the first close. What the socket does not take, and everything from a
/// close on, goes back to the front of the queue.
fn write_inline<W: AsyncWrite + Unpin>(
    shared: &Shared<W>,
    conn: &Connection,
    cx: &mut Context<'_>,
) -> Inline {
    let mut batch = conn.0.outbox.take();
    let mut w = shared.0.lock();
    // The usual case, one reply: written from the stack, header and payload
    // side by side when it is small (one buffer makes a plain `send`), else
    // the header beside the payload's own bytes; nothing allocated. What the
    // socket does not take goes the general way below, from where it stopped.
    let mut sent = 0;
    if let (1, Some(Outbound::Binary(payload) | Outbound::Shared(payload))) =
        (batch.len(), batch.front())
    {
        let (head, n) = header(opcode::BINARY, payload.len());
        let (small, joined, one, two);
        let slices: &[IoSlice<'_>] = if n + payload.len() <= SMALL_JOIN {
            // A buffer to fit: zeroing the large one cost a `memset` per reply.
            small = join::<SMALL_JOIN>(&head[..n], payload);
            one = [IoSlice::new(&small[..n + payload.len()])];
            &one
        } else if payload.len() <= JOIN_AT_MOST {
            // Made only here: a large frame pays for no buffer it does not use.
            joined = join::<{ 4 + JOIN_AT_MOST }>(&head[..n], payload);
            one = [IoSlice::new(&joined[..n + payload.len()])];
            &one
        } else {
            two = [IoSlice::new(&head[..n]), IoSlice::new(payload)];
            &two
        };
        match Pin::new(&mut *w).poll_write_vectored(cx, slices) {
            Poll::Ready(Ok(k)) => sent = k,
            Poll::Ready(Err(e)) => {
                tracing::debug!(session = %conn.id(), error = %e, "write failed");
                conn.0.outbox.push_front(batch);
                return Inline::Stop;
            }
            Poll::Pending => {}
        }
        if sent == n + payload.len() && Pin::new(&mut *w).poll_flush(cx).is_ready() {
            let len = payload.len();
            let charged = if let Some(Outbound::Binary(_)) = batch.front() {
                len
            } else {
                0
            };
            conn.dequeued(len, charged);
            conn.metrics().record_out(1, len as u64);
            return Inline::Written;
        }
    }
    // Frames a previous call could not finish go first, as they are.
    let mut carry = match batch.pop_front() {
        Some(Outbound::Carried(carry)) => *carry,
        other => {
            if let Some(item) = other {
                batch.push_front(item);
            }
            Carry {
                frames: Frames::batch(batch_bytes(&batch)),
                written: 0,
                charged: 0,
            }
        }
    };
    let mut rest = Queue::default();
    while let Some(item) = batch.pop_front() {
        match item {
            Outbound::Close(..) | Outbound::CloseReply(_) => {
                // Closing is `finish`'s.
                rest = std::mem::take(&mut batch);
                rest.push_front(item);
                break;
            }
            item => encode(
                &mut carry.frames,
                item,
                &mut carry.written,
                &mut carry.charged,
            ),
        }
    }
    batch.recycle();
    carry.frames.advance(sent);
    let done = carry.frames.poll_write_to(&mut *w, cx);
    drop(w);
    let outcome = match done {
        Poll::Ready(Ok(())) => {
            conn.dequeued(carry.written, carry.charged);
            let (frames, payload) = carry.frames.take_counts();
            conn.metrics().record_out(frames, payload);
            carry.frames.recycle();
            if rest.is_empty() {
                Inline::Written
            } else {
                Inline::Stop
            }
        }
        Poll::Ready(Err(e)) => {
            // The frames are lost with the connection.
            tracing::debug!(session = %conn.id(), error = %e, "write failed");
            conn.dequeued(carry.written, carry.charged);
            Inline::Stop
        }
        Poll::Pending => {
            rest.push_front(Outbound::Carried(Box::new(carry)));
            Inline::Blocked
        }
    };
    conn.0.outbox.push_front(rest);
    outcome
}

/// Adds a data or control frame to `frames`, counting the queue bytes it frees.
fn encode(frames: &mut Frames, item: Outbound, written: &mut usize, charged: &mut usize) {
    match item {
        Outbound::Binary(frame) => {
            *charged += frame.len();
            *written += frame.len();
            frames.push(opcode::BINARY, frame);
        }
        Outbound::Shared(frame) => {
            *written += frame.len();
            frames.push(opcode::BINARY, frame);
        }
        Outbound::Text(text) => {
            *charged += text.len();
            *written += text.len();
            frames.push(opcode::TEXT, Bytes::from(text));
        }
        Outbound::Ping => frames.control(opcode::PING, &[]),
        Outbound::Pong(payload) => frames.control(opcode::PONG, &payload),
        Outbound::Close(code, reason) => frames.close(code, reason),
        Outbound::CloseReply(Some(code)) => frames.control(opcode::CLOSE, &code.to_be_bytes()),
        Outbound::CloseReply(None) => frames.control(opcode::CLOSE, &[]),
        Outbound::Carried(_) => unreachable!("carried frames are written as they are"),
    }
}

enum Step {
    Continue,
    /// A close frame was written: the session is over.
    Closed,
}

/// The writer's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterConfig {
    /// Frames taken before writing mid-batch.
    pub(crate) max_batch: usize,
    /// Bytes gathered before writing mid-batch.
    pub(crate) write_buffer: usize,
    /// How long an aborted session's close frame may take to go out.
    pub(crate) close_grace: Duration,
}

impl WriterConfig {
    pub(crate) fn from_config(config: &crate::Config) -> Self {
        WriterConfig {
            max_batch: config.max_batch_frames,
            write_buffer: config.write_buffer_size,
            close_grace: config.shutdown_timeout,
        }
    }
}

/// How a session's closing writes run: with `writer`'s settings, bounded by
/// its `close_grace` (the [`deadline`](Self::deadline)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Closing {
    pub(crate) writer: WriterConfig,
}

impl Closing {
    pub(crate) fn from_config(config: &crate::Config) -> Self {
        Closing {
            writer: WriterConfig::from_config(config),
        }
    }

    /// How long the closing writes may take (`shutdown_timeout`).
    pub(crate) fn deadline(&self) -> Duration {
        self.writer.close_grace
    }

    /// The closing writes ([`Outlet::finish`]), within the deadline. They run
    /// once per session: a second call finds them done.
    pub(crate) fn write<'a>(
        self,
        conn: &'a Connection,
        outlet: &'a dyn Outlet,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let writes = tokio::time::timeout(self.deadline(), outlet.finish(conn, self.writer));
            if writes.await.is_err() {
                tracing::debug!(session = %conn.id(), "the close did not go out in time");
            }
        })
    }
}

/// A session's closing writes ([`Outlet::finish`]): runs until the queue asks
/// for a close, the session is aborted or ended, or the socket fails. Always leaves the session marked as ended, and shuts the
/// socket's writing side down (bounded) when done.
///
/// An aborted session (a slow consumer) gets its close frame, with a reason it
/// can read, written after whatever is already on its way: if it reads within
/// `close_grace` it learns it was evicted, instead of seeing the connection cut.
pub(crate) async fn run<W>(shared: &Shared<W>, conn: &Connection, config: WriterConfig)
where
    W: AsyncWrite + Unpin,
{
    if conn
        .0
        .closing_written
        .swap(true, std::sync::atomic::Ordering::AcqRel)
    {
        // Done already (while a handler waited): this ends with the claim held.
        return;
    }
    let mut w = Locked(shared);
    let outbox = &conn.0.outbox;
    // The frames on their way: kept here, not in the batch's future, so an
    // abort in the middle of a frame can finish it before the close frame (a
    // close after half a frame would garble the stream). Boxed, and only while
    // a batch is written: an idle writer holds 8 bytes of it.
    let mut inflight: Option<Box<Frames>> = None;
    // Whether this task has the claim on the socket.
    let mut holding = false;
    loop {
        if conn.abort_code().is_some() {
            break;
        }
        if !outbox.claim() {
            if conn.has_ended() {
                // The reader finishes an inline write (it never waits holding
                // the claim): let it.
                tokio::task::yield_now().await;
            } else {
                // The reader is writing inline; it wakes this task when it is
                // done if anything is left.
                conn.writer_ready().await;
            }
            continue;
        }
        holding = true;
        let batch = outbox.take();
        if batch.is_empty() {
            outbox.release();
            holding = false;
            if conn.has_ended() {
                // The reader ended (peer closed or failed): nothing more to say.
                break;
            }
            // Pushes, `end` and `abort` all wake it here.
            conn.writer_ready().await;
            continue;
        }
        // Boxed: the batch's state exists only while writing.
        let step = tokio::select! {
            biased;
            _ = conn.aborted() => break,
            step = Box::pin(write_batch(
                &mut w,
                conn,
                batch,
                config,
                inflight.insert(Box::new(Frames::new(0))),
            )) => step,
        };
        match step {
            Ok(Step::Continue) => {
                inflight = None;
                outbox.release();
                holding = false;
            }
            Ok(Step::Closed) | Err(_) => break,
        }
    }
    // From here on this task alone writes, and keeps the claim: the reader may
    // be finishing an inline write (it never waits holding the claim), and
    // never writes again.
    while !holding && !outbox.claim() {
        tokio::task::yield_now().await;
    }
    let mut inflight = inflight.map_or_else(|| Frames::new(0), |frames| *frames);
    // A frame the reader began and could not finish comes first.
    let mut queued = outbox.take();
    if let Some(Outbound::Carried(_)) = queued.front() {
        if let Some(Outbound::Carried(carry)) = queued.pop_front() {
            conn.dequeued(carry.written, carry.charged);
            inflight.append(carry.frames);
        }
    }
    outbox.push_front(queued);
    // What is still queued will never be written: its bytes go back to the budget.
    conn.drain_queue();
    if let Some(code) = conn.abort_code() {
        // The queue is dropped; the close goes right after the bytes already
        // handed to the socket (the rest of a frame begun included). Bounded: a
        // consumer that never reads is cut.
        let reason = conn.abort_reason();
        let mut close = Frames::new(128);
        close.close(code, reason);
        inflight.append(close);
        let _ = Box::pin(tokio::time::timeout(config.close_grace, async {
            inflight.write_to(&mut w).await?;
            w.shutdown().await
        }))
        .await;
    } else {
        let _ = Box::pin(tokio::time::timeout(ABORT_CLOSE_DEADLINE, w.shutdown())).await;
    }
    conn.end();
}

/// Writes `batch`, in runs of at most `max_batch` frames or about
/// `write_buffer` bytes.
async fn write_batch<W>(
    w: &mut W,
    conn: &Connection,
    batch: Queue,
    config: WriterConfig,
    frames: &mut Frames,
) -> io::Result<Step>
where
    W: AsyncWrite + Unpin,
{
    frames
        .buf
        .reserve(config.write_buffer.min(batch_bytes(&batch)));
    // Bytes queued but not yet given back to the queue's counts.
    let (mut written, mut charged, mut unwritten) = (0usize, 0usize, 0usize);
    let mut step = Step::Continue;
    for item in batch {
        match item {
            Outbound::Carried(carry) => {
                // Left by the reader (its first frame perhaps half written):
                // it goes first, as it is.
                written += carry.written;
                charged += carry.charged;
                frames.append(carry.frames);
            }
            item @ (Outbound::Close(..) | Outbound::CloseReply(_)) => {
                encode(frames, item, &mut written, &mut charged);
                step = Step::Closed;
                break;
            }
            item => encode(frames, item, &mut written, &mut charged),
        }
        unwritten += 1;
        if unwritten >= config.max_batch || frames.len() >= config.write_buffer {
            frames.write_to(w).await?;
            conn.dequeued(std::mem::take(&mut written), std::mem::take(&mut charged));
            unwritten = 0;
        }
    }
    frames.write_to(w).await?;
    conn.dequeued(written, charged);
    let (sent, payload) = frames.take_counts();
    conn.metrics().record_out(sent, payload);
    // Nothing is in flight: give the buffer back (an idle writer holds none).
    *frames = Frames::new(0);
    Ok(step)
}

/// The bytes a batch will take in the copy buffer, at most (headers included).
fn batch_bytes(batch: &Queue) -> usize {
    batch
        .iter()
        .map(|item| {
            14 + match item {
                Outbound::Binary(b) | Outbound::Shared(b) if b.len() <= COPY_AT_MOST => b.len(),
                Outbound::Text(t) if t.len() <= COPY_AT_MOST => t.len(),
                Outbound::Pong(p) => p.len(),
                Outbound::Close(..) => 125,
                _ => 0,
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message;

    /// What a WebSocket client library reads from `bytes`.
    async fn read_all(bytes: Vec<u8>) -> Vec<Message> {
        use futures_util::StreamExt;
        let stream = tokio_tungstenite::WebSocketStream::from_raw_socket(
            std::io::Cursor::new(bytes),
            Role::Client,
            None,
        )
        .await;
        stream
            .take_while(|m| std::future::ready(m.is_ok()))
            .map(Result::unwrap)
            .collect()
            .await
    }

    #[test]
    fn a_written_batch_leaves_its_buffer_to_the_next_large_enough_one() {
        let mut first = Frames::batch(100);
        first.push(opcode::BINARY, Bytes::from_static(b"one"));
        let buf = first.buf.as_ptr();
        first.recycle();
        let mut second = Frames::batch(80);
        assert_eq!(second.buf.as_ptr(), buf, "the same buffer");
        assert!(second.is_empty(), "and nothing of the last batch in it");
        second.push(opcode::BINARY, Bytes::from_static(b"two"));
        assert_eq!(&second.buf[2..], b"two");
        second.recycle();
        // Too small for the next: that one gets a buffer of its size.
        let third = Frames::batch(1000);
        assert!(third.buf.capacity() >= 1000);
    }

    #[tokio::test]
    async fn frames_of_every_size_and_kind_read_back_as_sent() {
        let sizes = [0usize, 1, 125, 126, 1024, 1025, 65_535, 65_536, 200_000];
        let mut frames = Frames::new(64);
        for (i, &n) in sizes.iter().enumerate() {
            frames.push(opcode::BINARY, Bytes::from(vec![i as u8; n]));
        }
        frames.push(opcode::TEXT, Bytes::from_static("héllo".as_bytes()));
        frames.control(opcode::PING, &[]);
        frames.control(opcode::PONG, b"p");
        frames.close(4000, &"é".repeat(100));
        let mut out = Vec::new();
        frames.write_to(&mut out).await.unwrap();
        let got = read_all(out).await;
        assert_eq!(got.len(), sizes.len() + 4);
        for (i, &n) in sizes.iter().enumerate() {
            assert_eq!(
                got[i],
                Message::Binary(Bytes::from(vec![i as u8; n])),
                "size {n}"
            );
        }
        assert_eq!(got[sizes.len()], Message::Text("héllo".into()));
        assert!(matches!(got[sizes.len() + 1], Message::Ping(ref p) if p.is_empty()));
        assert!(matches!(got[sizes.len() + 2], Message::Pong(ref p) if &p[..] == b"p"));
        match &got[sizes.len() + 3] {
            Message::Close(Some(close)) => {
                assert_eq!(u16::from(close.code), 4000);
                // Cut at a character boundary within 123 bytes: 61 two-byte characters.
                assert_eq!(close.reason.as_str(), "é".repeat(61));
            }
            other => panic!("{other:?}"),
        }
    }

    /// A writer that takes at most 7 bytes per call, vectored or not.
    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// A socket that takes `budget` bytes (at most 7 per call), then would block.
    struct Stalling {
        out: Vec<u8>,
        budget: usize,
    }

    impl AsyncWrite for Stalling {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(7).min(self.budget);
            if n == 0 {
                return Poll::Pending;
            }
            self.budget -= n;
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn more_large_payloads_than_one_writev_takes_go_out_in_order() {
        // 40 large payloads between small frames: 80 pieces, over one writev's
        // 64. The socket stalls in the middle of a large payload; what is left
        // is carried into another batch, after a frame of its own.
        let large = |i: u32| Bytes::from(vec![i as u8; 2000 + i as usize]);
        let small = |i: u32| Bytes::from(i.to_be_bytes().to_vec());
        let mut first = Frames::new(0);
        let mut want = vec![Message::Binary(Bytes::from_static(b"before"))];
        for i in 0..40u32 {
            first.push(opcode::BINARY, small(i));
            first.push(opcode::BINARY, large(i));
            want.extend([Message::Binary(small(i)), Message::Binary(large(i))]);
        }
        want.push(Message::Binary(Bytes::from_static(b"after")));
        let mut head = Frames::new(0);
        head.push(opcode::BINARY, Bytes::from_static(b"before"));
        let mut bytes = Vec::new();
        head.write_to(&mut bytes).await.unwrap();
        let mut socket = Stalling {
            out: Vec::new(),
            budget: 5000,
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(first.poll_write_to(&mut socket, &mut cx).is_pending());
        bytes.extend(socket.out);
        let mut rest = Frames::new(0);
        rest.append(first);
        rest.push(opcode::BINARY, Bytes::from_static(b"after"));
        rest.write_to(&mut bytes).await.unwrap();
        assert_eq!(read_all(bytes).await, want);
        assert_eq!(rest.frames, 81);
    }

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A connection whose writing side is `w`, its session waiting (its waker
    /// registered with the queue, the counter returned).
    fn waiting_session<W: AsyncWrite + Unpin + Send + 'static>(
        w: W,
    ) -> (Connection, Arc<Shared<W>>, Arc<Wakes>) {
        let conn = Connection::new(
            uuid::Uuid::nil(),
            "127.0.0.1:1".parse().unwrap(),
            1 << 20,
            crate::session::budget::Charge::unlimited(),
        );
        let shared = Shared::new(w);
        // Attached while `shared` (the session's task's outlet) lives.
        conn.attach_outlet(&(shared.clone() as Arc<dyn Outlet>));
        let wakes = Arc::new(Wakes::default());
        conn.0
            .outbox
            .register(&std::task::Waker::from(wakes.clone()));
        (conn, shared, wakes)
    }

    #[tokio::test]
    async fn a_fan_out_writes_the_queue_from_another_task_without_waking_the_session() {
        let (conn, shared, wakes) = waiting_session(Vec::new());
        // The first frame finds the queue empty: its writer is the caller.
        assert_eq!(conn.send_shared_quiet(Bytes::from_static(b"one")), Ok(true));
        // The second goes with it.
        assert_eq!(
            conn.send_shared_quiet(Bytes::from_static(b"two")),
            Ok(false)
        );
        conn.flush();
        let written = std::mem::take(&mut *shared.0.lock());
        assert_eq!(
            read_all(written).await,
            vec![
                Message::Binary(Bytes::from_static(b"one")),
                Message::Binary(Bytes::from_static(b"two")),
            ]
        );
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(conn.queued_bytes(), 0);
        assert_eq!(conn.metrics().messages_out(), 2);
        assert!(!conn.0.outbox.is_pending());
    }

    #[tokio::test]
    async fn a_fan_out_leaves_a_busy_socket_to_the_session_and_wakes_it() {
        let (conn, shared, wakes) = waiting_session(Vec::new());
        // Someone else is writing: the frame waits for the session.
        assert!(conn.0.outbox.claim());
        assert_eq!(conn.send_shared_quiet(Bytes::from_static(b"one")), Ok(true));
        conn.flush();
        assert!(shared.0.lock().is_empty());
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(conn.0.outbox.is_pending());
        assert_eq!(conn.queued_bytes(), 3);
    }

    #[tokio::test]
    async fn a_frame_the_socket_takes_in_part_is_finished_by_the_session() {
        let (conn, shared, wakes) = waiting_session(Stalling {
            out: Vec::new(),
            budget: 5,
        });
        let payload = Bytes::from_static(b"a frame of some length");
        assert_eq!(conn.send_shared_quiet(payload.clone()), Ok(true));
        conn.flush();
        // Five bytes went out; the rest waits, and the session is told.
        assert_eq!(shared.0.lock().out.len(), 5);
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(conn.0.outbox.is_pending());
        assert_eq!(conn.queued_bytes(), payload.len());
        // The session writes the rest when the socket takes it.
        shared.0.lock().budget = usize::MAX;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Outlet::poll_write(&*shared, &conn, &mut cx).is_pending());
        let written = std::mem::take(&mut shared.0.lock().out);
        assert_eq!(read_all(written).await, vec![Message::Binary(payload)]);
        assert_eq!(conn.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn short_writes_resume_where_they_stopped() {
        let mut frames = Frames::new(16);
        let big = Bytes::from((0..5000u32).map(|i| i as u8).collect::<Vec<_>>());
        frames.push(opcode::BINARY, Bytes::from_static(b"first"));
        frames.push(opcode::BINARY, big.clone());
        frames.push(opcode::BINARY, Bytes::from_static(b"last"));
        let mut w = Trickle(Vec::new());
        frames.write_to(&mut w).await.unwrap();
        let got = read_all(w.0).await;
        assert_eq!(
            got,
            vec![
                Message::Binary(Bytes::from_static(b"first")),
                Message::Binary(big),
                Message::Binary(Bytes::from_static(b"last")),
            ]
        );
        assert_eq!(frames.frames, 3);
        assert_eq!(frames.payload, 5009);
    }
}
