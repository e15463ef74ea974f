//! The reading half of a WebSocket connection (RFC 6455 §5): frames parsed from
//! the socket, control frames handed up as they come, data frames assembled
//! into messages.
//!
//! It is ours rather than the WebSocket library's so that what a peer makes the
//! server hold is what it sent, and no more:
//!
//! - a message that arrives whole in the read buffer is cut out of it without a
//!   copy;
//! - a larger message gets one buffer of its frame's size (and [`READ_PAST`]
//!   bytes more), read into directly (a 64 KiB message is a few large reads,
//!   not one per 512 bytes);
//! - a fragmented message grows its buffer by at most a quarter at a time, so it
//!   costs about 1× its size (the library held up to 2×: the frame buffer it
//!   keeps, plus the message doubling as it grew);
//! - every byte of those buffers is counted in the node's memory budget while the
//!   message is unfinished, and the session learns when a message is under way
//!   (bounded by `message_timeout`);
//! - the read buffer stays small (`read_buffer_size`): a large message never
//!   leaves a large buffer behind.
//!
//! The writing half stays with the library (tungstenite), on the socket's write
//! half.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::budget::OverBudget;
use super::{close_code, Connection};

/// Why a connection cannot be read any further.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer broke RFC 6455 (1002).
    Protocol(&'static str),
    /// A message over `max_message_size` (1009).
    TooBig,
    /// A text message (or a close reason) that is not UTF-8 (1007).
    Utf8,
    /// The memory budget refused the bytes a message needs.
    Budget(OverBudget),
    /// The peer went away (EOF) or the socket failed.
    Gone(#[allow(dead_code, reason = "shown in the debug log")] Option<io::Error>),
}

impl ReadError {
    /// The close code and reason the session ends with; `None` when nothing can
    /// be sent (the peer is gone) or the budget decides (it aborts the session).
    pub(crate) fn close(&self) -> Option<(u16, &'static str)> {
        match self {
            ReadError::Protocol(reason) => Some((close_code::PROTOCOL, reason)),
            ReadError::TooBig => Some((close_code::TOO_BIG, "message too big")),
            ReadError::Utf8 => Some((
                close_code::INVALID_PAYLOAD,
                "invalid UTF-8 in a text message",
            )),
            ReadError::Budget(_) | ReadError::Gone(_) => None,
        }
    }
}

/// The data frame whose payload is being read into the message.
#[derive(Debug)]
struct DataFrame {
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes still to come.
    remaining: usize,
    /// Payload bytes received (the mask's phase).
    received: usize,
}

/// The message being assembled.
#[derive(Debug)]
struct Assembly {
    text: bool,
    data: BytesMut,
    /// Bytes of `data` known to be valid UTF-8 (text only).
    validated: usize,
}

/// Reads a client's frames from `io` (see the module's documentation).
pub(crate) struct FrameReader<R> {
    io: R,
    /// Bytes read and not yet parsed.
    buf: BytesMut,
    read_size: usize,
    max_message: usize,
    conn: Connection,
    frame: Option<DataFrame>,
    message: Option<Assembly>,
    /// Bytes of `message` counted in the memory budget.
    held: usize,
    /// Whether the session was told a message is under way.
    marked: bool,
    /// Set after an error: nothing more is parsed.
    failed: bool,
}

/// A session's reading side: an [`AsyncRead`] that can also read what is
/// there into a buffer on the reader's stack and hand it to `f`, which is how
/// a session reads between messages. A plain TCP session reads with a `recv`
/// of its own there ([`TcpReader`](crate::services::plain::TcpReader)); any
/// other stream through its `poll_read`.
pub(crate) trait SessionRead: AsyncRead + Unpin {
    /// Reads into `buf` and gives `f` what was read (empty: the peer closed).
    fn poll_read_with<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        buf: &mut [std::mem::MaybeUninit<u8>],
        f: impl FnOnce(&[u8]) -> T,
    ) -> Poll<std::io::Result<T>> {
        let mut read = ReadBuf::uninit(buf);
        std::task::ready!(Pin::new(&mut *self).poll_read(cx, &mut read))?;
        Poll::Ready(Ok(f(read.filled())))
    }
}

impl<T: AsyncRead> SessionRead for tokio::io::ReadHalf<T> {}
impl SessionRead for tokio::io::DuplexStream {}

/// The largest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// The most read at once into the stack when nothing is buffered.
const STACK_READ: usize = 4096;

/// How far a read into a large message goes on past its frame: the bytes there
/// (the next frame's start) move to the read buffer. A read that asks for more
/// than the frame and gets less tells that the socket is empty, and the next
/// read waits for the socket rather than trying it first: reading exactly the
/// frame's rest cost a failed `recv` (`EAGAIN`) per large message (64 KiB
/// echo: 3 `recv` per message, 2 with this, as fastwebsockets).
pub(crate) const READ_PAST: usize = 128;

impl<R: SessionRead> FrameReader<R> {
    /// A reader of `io`, which starts with `prefix` (bytes read ahead during the
    /// handshake).
    pub(crate) fn new(
        io: R,
        prefix: &[u8],
        conn: Connection,
        read_size: usize,
        max_message: usize,
    ) -> Self {
        Self {
            io,
            buf: BytesMut::from(prefix),
            read_size: read_size.max(MAX_HEADER + 125),
            max_message,
            conn,
            frame: None,
            message: None,
            held: 0,
            marked: false,
            failed: false,
        }
    }

    /// The next message or control frame. Cancel-safe: every byte read is kept in
    /// the reader, so dropping the future (a timer won) loses nothing.
    pub(crate) async fn next(&mut self) -> Result<Message, ReadError> {
        if self.failed {
            return Err(ReadError::Gone(None));
        }
        loop {
            match self.parse() {
                Ok(Some(message)) => {
                    if self.buf.is_empty() {
                        // What was read is all handed up: keep no buffer.
                        self.buf = BytesMut::new();
                    }
                    return Ok(message);
                }
                Ok(None) => {}
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
            if !self.marked && (self.frame.is_some() || self.message.is_some()) {
                // Part of a message is here and the rest must be waited for.
                self.marked = true;
                self.conn.message_started();
            }
            match self.fill().await {
                Ok(None) => {}
                Ok(Some(message)) => return Ok(message),
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
    }

    /// Reads and drops whatever the peer sends until it closes the connection
    /// (for a session that has ended: unread bytes would make the kernel reset
    /// the connection under the close frame).
    pub(crate) async fn discard(&mut self) {
        self.buf.clear();
        let mut scratch = [0u8; 4096];
        while let Ok(n) = self.io.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    }

    /// Whether frames can still be read (no error so far).
    /// Whether a whole frame is buffered: the next [`next`](Self::next) parses
    /// it without reading the socket (a protocol error counts too: it needs no
    /// read either).
    pub(crate) fn has_whole_frame(&self) -> bool {
        if self.frame.is_some() {
            // In the middle of a large frame: the rest is read, not buffered.
            return false;
        }
        match Header::parse(&self.buf) {
            Ok(Some(header)) => self.buf.len() - header.len >= header.payload,
            Ok(None) => false,
            Err(_) => true,
        }
    }

    pub(crate) fn is_healthy(&self) -> bool {
        !self.failed
    }

    /// Reads more bytes: straight into the message when a large payload is
    /// awaited, else into the read buffer. `Some` when the read was exactly
    /// one whole message, which is then handed up at once.
    async fn fill(&mut self) -> Result<Option<Message>, ReadError> {
        if let (Some(frame), Some(message), true) =
            (&mut self.frame, &mut self.message, self.buf.is_empty())
        {
            let start = message.data.len();
            // `grow` made room for the whole frame and `READ_PAST` bytes more.
            let room = message.data.capacity() - start;
            let limit = room.min(frame.remaining + READ_PAST);
            let n = (&mut self.io)
                .take(limit as u64)
                .read_buf(&mut message.data)
                .await
                .map_err(|e| ReadError::Gone(Some(e)))?;
            if n == 0 {
                return Err(ReadError::Gone(None));
            }
            let mine = n.min(frame.remaining);
            if n > mine {
                // Past the frame: the next frame's first bytes.
                self.buf = BytesMut::from(&message.data[start + mine..]);
                message.data.truncate(start + mine);
            }
            unmask(&mut message.data[start..], frame.mask, frame.received);
            frame.received += mine;
            frame.remaining -= mine;
            return Ok(None);
        }
        if self.buf.is_empty() {
            // Nothing buffered: a session waiting here (idle) holds no buffer.
            // The read goes to the stack, only during the poll, and what came
            // is copied into a buffer of its size.
            let limit = self.read_size.min(STACK_READ);
            // Between messages: a read that is one whole message can be it.
            let between = self.frame.is_none() && self.message.is_none();
            let (io, buf, max) = (&mut self.io, &mut self.buf, self.max_message);
            let read = std::future::poll_fn(|cx| {
                // Uninitialised: zeroing it on every poll cost a memset per
                // read (and per wake-up that found nothing).
                let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); STACK_READ];
                io.poll_read_with(cx, &mut stack[..limit], |got| {
                    if got.is_empty() {
                        StackRead::Eof
                    } else if let Some((text, payload)) =
                        between.then(|| lone_message(got, max)).flatten()
                    {
                        StackRead::Message(text, payload)
                    } else {
                        *buf = BytesMut::from(got);
                        StackRead::Buffered
                    }
                })
            })
            .await
            .map_err(|e| ReadError::Gone(Some(e)))?;
            return match read {
                StackRead::Eof => Err(ReadError::Gone(None)),
                StackRead::Buffered => Ok(None),
                StackRead::Message(text, payload) => finished(text, payload).map(Some),
            };
        }
        if self.buf.capacity() - self.buf.len() < self.read_size / 2 {
            self.buf.reserve(self.read_size);
        }
        let n = self
            .io
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| ReadError::Gone(Some(e)))?;
        if n == 0 {
            return Err(ReadError::Gone(None));
        }
        Ok(None)
    }

    /// Parses what is buffered: `Some` once a message or control frame is whole.
    fn parse(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            if let Some(frame) = &mut self.frame {
                let message = self.message.as_mut().expect("a frame belongs to a message");
                let n = frame.remaining.min(self.buf.len());
                if n > 0 {
                    let start = message.data.len();
                    message.data.extend_from_slice(&self.buf[..n]);
                    self.buf.advance(n);
                    unmask(&mut message.data[start..], frame.mask, frame.received);
                    frame.received += n;
                    frame.remaining -= n;
                }
                if frame.remaining > 0 {
                    return Ok(None);
                }
                let fin = frame.fin;
                self.frame = None;
                if message.text {
                    validate_utf8(message, fin)?;
                }
                if fin {
                    return self.complete().map(Some);
                }
                continue;
            }
            let Some(header) = Header::parse(&self.buf)? else {
                return Ok(None);
            };
            if header.opcode >= 8 {
                // Control frames are small (≤ 125 bytes): taken whole.
                if self.buf.len() < header.len + header.payload {
                    return Ok(None);
                }
                self.buf.advance(header.len);
                let mut payload = self.buf.split_to(header.payload);
                unmask(&mut payload, header.mask, 0);
                return control(header.opcode, payload.freeze()).map(Some);
            }
            let continuation = header.opcode == 0;
            match (&self.message, continuation) {
                (None, true) => return Err(ReadError::Protocol("continuation without a message")),
                (Some(_), false) => {
                    return Err(ReadError::Protocol(
                        "a new message before the last one ended",
                    ))
                }
                _ => {}
            }
            let so_far = self.message.as_ref().map_or(0, |m| m.data.len());
            if header.payload > self.max_message.saturating_sub(so_far) {
                return Err(ReadError::TooBig);
            }
            self.buf.advance(header.len);
            if !continuation && header.fin && self.buf.len() >= header.payload {
                // The whole message is here: cut out, no copy.
                let mut payload = self.buf.split_to(header.payload);
                unmask(&mut payload, header.mask, 0);
                return finished(header.opcode == 1, payload.freeze()).map(Some);
            }
            if !continuation {
                self.message = Some(Assembly {
                    text: header.opcode == 1,
                    data: BytesMut::new(),
                    validated: 0,
                });
            }
            self.grow(header.payload)?;
            self.frame = Some(DataFrame {
                fin: header.fin,
                mask: header.mask,
                remaining: header.payload,
                received: 0,
            });
        }
    }

    /// Makes room in the message for `more` bytes, counting them in the budget:
    /// the first frame's size, then growth by at least a quarter; with
    /// [`READ_PAST`] bytes more each time.
    fn grow(&mut self, more: usize) -> Result<(), ReadError> {
        let message = self.message.as_mut().expect("a message");
        let need = message.data.len() + more;
        let capacity = message.data.capacity();
        if need <= capacity {
            return Ok(());
        }
        let target = if message.data.is_empty() {
            need
        } else {
            need.max(capacity + capacity / 4)
                .min(self.max_message.max(need))
        };
        let size = target + READ_PAST;
        if size > self.held {
            self.conn
                .hold_incoming(size - self.held)
                .map_err(ReadError::Budget)?;
            self.held = size;
        }
        let mut data = BytesMut::with_capacity(size);
        data.extend_from_slice(&message.data);
        message.data = data;
        Ok(())
    }

    /// The assembled message, handed up; its bytes leave the budget.
    fn complete(&mut self) -> Result<Message, ReadError> {
        let message = self.message.take().expect("a message");
        self.conn.release_incoming(std::mem::take(&mut self.held));
        if self.marked {
            self.marked = false;
            self.conn.message_finished();
        }
        finished(message.text, message.data.freeze())
    }
}

impl<R> Drop for FrameReader<R> {
    fn drop(&mut self) {
        // An unfinished message will never be whole.
        self.conn.release_incoming(self.held);
    }
}

/// A parsed frame header.
#[derive(Debug, PartialEq)]
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// The header's length.
    len: usize,
    /// The payload's length.
    payload: usize,
}

impl Header {
    /// The header at the start of `buf`, `None` while incomplete.
    fn parse(buf: &[u8]) -> Result<Option<Header>, ReadError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            // No extension is ever negotiated.
            return Err(ReadError::Protocol("reserved bits set"));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        match opcode {
            0..=2 => {}
            8..=10 => {
                if !fin {
                    return Err(ReadError::Protocol("fragmented control frame"));
                }
                if b1 & 0x7f > 125 {
                    return Err(ReadError::Protocol("control frame over 125 bytes"));
                }
            }
            _ => return Err(ReadError::Protocol("reserved opcode")),
        }
        if b1 & 0x80 == 0 {
            return Err(ReadError::Protocol("unmasked client frame"));
        }
        let (ext, short) = match b1 & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(usize::from(n))),
        };
        let len = 2 + ext + 4;
        if buf.len() < len {
            return Ok(None);
        }
        let payload = match short {
            Some(n) => n,
            None if ext == 2 => usize::from(u16::from_be_bytes([buf[2], buf[3]])),
            None => {
                let n = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
                if n >> 63 != 0 {
                    return Err(ReadError::Protocol("payload length over 2^63"));
                }
                // Over `usize` (32-bit targets) is over any maximum.
                usize::try_from(n).unwrap_or(usize::MAX)
            }
        };
        let mask = buf[2 + ext..len].try_into().expect("4 bytes");
        Ok(Some(Header {
            fin,
            opcode,
            mask,
            len,
            payload,
        }))
    }
}

/// What a read into the stack brought.
enum StackRead {
    /// The peer closed the connection.
    Eof,
    /// Bytes, now in the read buffer.
    Buffered,
    /// Exactly one whole message (text?, payload).
    Message(bool, Bytes),
}

/// The message `got` is when it is exactly one whole unfragmented data frame
/// (the usual read of a request): its payload unmasked into a buffer of its own
/// size. Copying it into the read buffer and cutting the payload out of that
/// cost an allocation more per message (the buffer's shared count) and a copy
/// of the header. `None` for anything else, which goes the general way (and
/// fails there when it must).
fn lone_message(got: &[u8], max_message: usize) -> Option<(bool, Bytes)> {
    let header = Header::parse(got).ok()??;
    let data = header.opcode == 1 || header.opcode == 2;
    if !header.fin || !data || header.payload > max_message {
        return None;
    }
    if header.len.checked_add(header.payload) != Some(got.len()) {
        return None;
    }
    Some((
        header.opcode == 1,
        unmasked_copy(&got[header.len..], header.mask),
    ))
}

/// A message's bytes with their shared count in one allocation: the bytes
/// up to `N` long, in place.
///
/// A message read whole becomes a [`Bytes`] the dispatcher shares (the frame
/// and its payload's slice, which a handler may keep). One made from a `Vec`
/// allocates again on its first clone (the shared count) and frees twice;
/// [`Bytes::from_owner`] of this allocates once: a protocol message's
/// allocation less (callgrind of the rpc load: ~8,150 -> ~8,000 instructions per
/// message).
struct Inline<const N: usize> {
    len: usize,
    bytes: [u8; N],
}

impl<const N: usize> AsRef<[u8]> for Inline<N> {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// `masked`, unmasked with `mask`, in a buffer of its own: in place in the
/// allocation of the shared count up to 512 bytes (size classes of 64 to 512,
/// so at most twice the bytes are held), in a `Vec` above.
fn unmasked_copy(masked: &[u8], mask: [u8; 4]) -> Bytes {
    fn inline<const N: usize>(masked: &[u8], mask: [u8; 4]) -> Bytes {
        let mut owner = Inline {
            len: masked.len(),
            bytes: [0; N],
        };
        let data = &mut owner.bytes[..masked.len()];
        data.copy_from_slice(masked);
        unmask(data, mask, 0);
        Bytes::from_owner(owner)
    }
    match masked.len() {
        0 => Bytes::new(),
        1..=64 => inline::<64>(masked, mask),
        65..=128 => inline::<128>(masked, mask),
        129..=256 => inline::<256>(masked, mask),
        257..=512 => inline::<512>(masked, mask),
        _ => {
            let mut data = masked.to_vec();
            unmask(&mut data, mask, 0);
            Bytes::from(data)
        }
    }
}

/// A whole single-frame message.
fn finished(text: bool, data: Bytes) -> Result<Message, ReadError> {
    if text {
        Utf8Bytes::try_from(data)
            .map(Message::Text)
            .map_err(|_| ReadError::Utf8)
    } else {
        Ok(Message::Binary(data))
    }
}

/// A control frame's message.
fn control(opcode: u8, payload: Bytes) -> Result<Message, ReadError> {
    match opcode {
        9 => Ok(Message::Ping(payload)),
        10 => Ok(Message::Pong(payload)),
        _ => match payload.len() {
            0 => Ok(Message::Close(None)),
            1 => Err(ReadError::Protocol("close frame of one byte")),
            _ => {
                let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_allowed() {
                    return Err(ReadError::Protocol("invalid close code"));
                }
                let reason =
                    Utf8Bytes::try_from(payload.slice(2..)).map_err(|_| ReadError::Utf8)?;
                Ok(Message::Close(Some(CloseFrame { code, reason })))
            }
        },
    }
}

/// Checks the text received so far, failing as soon as it cannot be UTF-8 (a
/// character may still be cut at the end unless the message is `whole`).
fn validate_utf8(message: &mut Assembly, whole: bool) -> Result<(), ReadError> {
    let rest = &message.data[message.validated..];
    match std::str::from_utf8(rest) {
        Ok(_) => message.validated = message.data.len(),
        Err(e) if e.error_len().is_none() && !whole => message.validated += e.valid_up_to(),
        Err(_) => return Err(ReadError::Utf8),
    }
    Ok(())
}

/// Payloads from this size up are unmasked with AVX2 where the CPU has it (the
/// check is one load of a cached flag; below this size it is not worth it).
const WIDE_UNMASK: usize = 256;

/// Unmasks `data`, whose first byte is byte `offset` of the frame's payload.
///
/// The same loop is compiled twice: for the target's baseline (SSE2 on x86_64:
/// 16 bytes at a time) and, for large payloads on a CPU with AVX2, 32 bytes at
/// a time. A 64 KiB message's unmasking was ~18,600 instructions of the
/// ~23,000 its echo costs the server (callgrind).
fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let key: [u8; 4] = std::array::from_fn(|i| mask[(offset + i) % 4]);
    #[cfg(target_arch = "x86_64")]
    if data.len() >= WIDE_UNMASK && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `unmask_avx2` needs nothing but AVX2, which the CPU has
        // (checked just above).
        #[allow(unsafe_code)]
        unsafe {
            unmask_avx2(data, key);
        }
        return;
    }
    unmask_with(data, key);
}

/// [`unmask_with`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn unmask_avx2(data: &mut [u8], key: [u8; 4]) {
    unmask_with(data, key);
}

/// XORs `data` with `key` repeated, 8 bytes at a time (which the compiler
/// widens to the vector registers it may use).
#[inline(always)]
fn unmask_with(data: &mut [u8], key: [u8; 4]) {
    let mut chunks = data.chunks_exact_mut(8);
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes(chunk.try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size class and the `Vec` above them: the copy is the unmasked
    /// payload, and its clones and slices see the same bytes after the
    /// original is gone.
    #[test]
    fn an_unmasked_copy_is_the_payload_in_every_size_class() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for len in [
            0, 1, 5, 63, 64, 65, 127, 128, 129, 256, 257, 511, 512, 513, 4096,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut masked = plain.clone();
            unmask(&mut masked, mask, 0);
            let copy = unmasked_copy(&masked, mask);
            assert_eq!(&copy[..], &plain[..], "length {len}");
            let (clone, tail) = (copy.clone(), copy.slice(len / 2..));
            drop(copy);
            assert_eq!(&clone[..], &plain[..], "clone, length {len}");
            assert_eq!(&tail[..], &plain[len / 2..], "slice, length {len}");
        }
    }
    use crate::session::budget::{Charge, MemoryBudget};
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [1, 2, 3, 4];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    fn conn(budget: &Arc<MemoryBudget>) -> Connection {
        Connection::new(
            uuid::Uuid::nil(),
            "127.0.0.1:1".parse().unwrap(),
            1 << 20,
            Charge::new(budget.clone(), Arc::default()),
        )
    }

    /// A reader over a pipe, and the pipe's writing end.
    fn reader(
        budget: &Arc<MemoryBudget>,
        max: usize,
    ) -> (
        FrameReader<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
    ) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (FrameReader::new(a, b"", conn(budget), 512, max), b)
    }

    #[test]
    fn unmasking_at_any_offset_matches_bytewise() {
        for offset in 0..8 {
            for len in [0, 1, 7, 8, 9, 100, 255, 256, 257, 300, 1000] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
                let mut got = data.clone();
                unmask(&mut got, [9, 8, 7, 6], offset);
                let want: Vec<u8> = (0..len)
                    .map(|i| data[i] ^ [9, 8, 7, 6][(offset + i) % 4])
                    .collect();
                assert_eq!(got, want, "offset {offset}, len {len}");
                // The baseline loop too, which a CPU with AVX2 skips from
                // `WIDE_UNMASK` bytes up.
                let key: [u8; 4] = std::array::from_fn(|i| [9, 8, 7, 6][(offset + i) % 4]);
                let mut base = data.clone();
                unmask_with(&mut base, key);
                assert_eq!(base, want, "baseline, offset {offset}, len {len}");
            }
        }
    }

    /// A read into a large message goes on past its frame: what it reads there
    /// (a whole small frame, or the start of a large one) is the next
    /// messages', in order and unchanged.
    #[tokio::test]
    async fn bytes_read_past_a_large_frame_begin_the_next_message() {
        let budget = MemoryBudget::standalone(usize::MAX, usize::MAX);
        let (mut r, mut w) = reader(&budget, 1 << 20);
        let big: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let other: Vec<u8> = (0..20_000u32).map(|i| (i % 13) as u8).collect();
        let first = frame(true, 2, &big);
        w.write_all(&first[..1000]).await.unwrap();
        // Now reading straight into the message.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(20), r.next()).await;
        assert!(r.frame.is_some(), "in the middle of the large frame");
        let mut rest = first[1000..].to_vec();
        rest.extend(frame(true, 2, b"after"));
        rest.extend(frame(true, 2, &other));
        w.write_all(&rest).await.unwrap();
        for want in [&big[..], b"after", &other[..]] {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), r.next());
            match next.await.expect("every message arrives").unwrap() {
                Message::Binary(b) => assert_eq!(&b[..], want),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn messages_small_large_and_fragmented_arrive_whole() {
        let budget = MemoryBudget::standalone(usize::MAX, usize::MAX);
        let (mut r, mut w) = reader(&budget, 1 << 20);
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut bytes = frame(true, 2, b"small");
        bytes.extend(frame(true, 2, &big));
        bytes.extend(frame(false, 1, "héllo ".as_bytes()));
        bytes.extend(frame(true, 9, b"ping"));
        // A character cut between two fragments.
        let text = "wörld".as_bytes();
        bytes.extend(frame(false, 0, &text[..2]));
        bytes.extend(frame(true, 0, &text[2..]));
        bytes.extend(frame(true, 8, &[0x03, 0xe8, b'o', b'k']));
        // Written in odd pieces: headers and payloads split anywhere.
        let writer = tokio::spawn(async move {
            for piece in bytes.chunks(333) {
                w.write_all(piece).await.unwrap();
            }
            w
        });
        assert_eq!(
            r.next().await.unwrap(),
            Message::Binary(Bytes::from_static(b"small"))
        );
        assert_eq!(r.next().await.unwrap(), Message::Binary(big.into()));
        assert_eq!(
            r.next().await.unwrap(),
            Message::Ping(Bytes::from_static(b"ping"))
        );
        assert_eq!(r.next().await.unwrap(), Message::text("héllo wörld"));
        match r.next().await.unwrap() {
            Message::Close(Some(c)) => {
                assert_eq!((u16::from(c.code), c.reason.as_str()), (1000, "ok"))
            }
            other => panic!("{other:?}"),
        }
        drop(writer.await.unwrap());
        assert!(matches!(r.next().await, Err(ReadError::Gone(None))));
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_read_that_is_one_whole_message_is_that_message_and_keeps_no_buffer() {
        let budget = MemoryBudget::standalone(usize::MAX, usize::MAX);
        let medium: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let cases = [
            (
                frame(true, 2, b"binary"),
                Message::Binary(Bytes::from_static(b"binary")),
            ),
            (frame(true, 1, "téxt".as_bytes()), Message::text("téxt")),
            (frame(true, 2, b""), Message::Binary(Bytes::new())),
            (
                frame(true, 2, &medium),
                Message::Binary(medium.clone().into()),
            ),
            (
                frame(true, 9, b"p"),
                Message::Ping(Bytes::from_static(b"p")),
            ),
        ];
        for (bytes, want) in cases {
            let (mut r, mut w) = reader(&budget, 1 << 20);
            w.write_all(&bytes).await.unwrap();
            assert_eq!(r.next().await.unwrap(), want);
            assert_eq!(r.buf.capacity(), 0, "nothing kept after {want:?}");
        }
        // A message and the start of the next in one read: the first, then the
        // second once whole.
        let (mut r, mut w) = reader(&budget, 1 << 20);
        let next = frame(true, 2, b"second");
        w.write_all(&[frame(true, 2, b"first"), next[..3].to_vec()].concat())
            .await
            .unwrap();
        assert_eq!(r.next().await.unwrap(), Message::Binary("first".into()));
        w.write_all(&next[3..]).await.unwrap();
        assert_eq!(r.next().await.unwrap(), Message::Binary("second".into()));
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_fragmented_message_costs_about_its_size_and_is_counted_until_whole() {
        let budget = MemoryBudget::standalone(usize::MAX, usize::MAX);
        let (mut r, mut w) = reader(&budget, 1 << 20);
        // 100 fragments of 10,000 bytes: the buffer grows by a quarter at a time.
        for _ in 0..99 {
            w.write_all(&frame(
                false,
                if r.message.is_none() { 2 } else { 0 },
                &[7; 10_000],
            ))
            .await
            .unwrap();
            let _ = tokio::time::timeout(std::time::Duration::from_millis(5), r.next()).await;
        }
        let held = budget.held();
        assert!(
            (990_000..=990_000 * 5 / 4 + 10_000).contains(&held),
            "held {held}"
        );
        assert_eq!(r.message.as_ref().unwrap().data.capacity(), held);
        assert!(r.conn.message_unfinished_for().is_some(), "under way");
        w.write_all(&frame(true, 0, &[7; 10_000])).await.unwrap();
        match r.next().await.unwrap() {
            Message::Binary(b) => assert_eq!(b.len(), 1_000_000),
            other => panic!("{other:?}"),
        }
        assert_eq!(budget.held(), 0, "given back once whole");
        assert!(r.conn.message_unfinished_for().is_none());
        // One large frame: a buffer of its size and the read past it.
        let (mut r, mut w) = reader(&budget, 1 << 20);
        let f = frame(true, 2, &[1; 300_000]);
        w.write_all(&f[..1000]).await.unwrap();
        let _ = tokio::time::timeout(std::time::Duration::from_millis(20), r.next()).await;
        assert_eq!(budget.held(), 300_000 + READ_PAST);
        drop(r);
        assert_eq!(
            budget.held(),
            0,
            "a reader dropped mid-message gives its bytes back"
        );
    }

    #[tokio::test]
    async fn violations_are_refused_with_their_close_codes() {
        let budget = MemoryBudget::standalone(10_000, 10_000);
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (vec![0x82 | 0x40, 0x80, 1, 2, 3, 4], 1002), // RSV1
            (vec![0x83, 0x80, 1, 2, 3, 4], 1002),        // reserved opcode
            (vec![0x82, 0x00], 1002),                    // unmasked
            (frame(false, 9, b"x"), 1002),               // fragmented ping
            (frame(true, 0, b"x"), 1002),                // stray continuation
            ([frame(false, 2, b"a"), frame(true, 2, b"b")].concat(), 1002),
            (frame(true, 8, &[3]), 1002),          // close of one byte
            (frame(true, 8, &[0x03, 0xed]), 1002), // close code 1005
            (frame(true, 8, &[0x03, 0xe8, 0xff]), 1007), // close reason not UTF-8
            (frame(true, 1, &[0xc3, 0x28]), 1007), // text not UTF-8
            (
                [frame(false, 1, &[0xff]), frame(true, 0, b"")].concat(),
                1007,
            ),
            (frame(true, 2, &[0; 2000]), 1009), // over max_message
            (
                [frame(false, 2, &[0; 900]), frame(true, 0, &[0; 200])].concat(),
                1009,
            ),
        ];
        for (bytes, code) in cases {
            let (mut r, mut w) = reader(&budget, 1000);
            w.write_all(&bytes).await.unwrap();
            let got = loop {
                match r.next().await {
                    Ok(_) => continue,
                    Err(e) => break e.close().map(|c| c.0),
                }
            };
            assert_eq!(got, Some(code), "{bytes:?}");
        }
        // The budget refuses a frame it cannot hold.
        let (mut r, mut w) = reader(&budget, 1 << 20);
        w.write_all(&frame(true, 2, &[0; 20_000])[..100])
            .await
            .unwrap();
        assert!(matches!(
            r.next().await,
            Err(ReadError::Budget(OverBudget::Ip))
        ));
        assert_eq!(budget.held(), 0);
    }

    /// Feeds `bytes` in pieces of the given sizes (cycled) and reads until the
    /// stream ends or fails (what the fuzz target runs).
    fn read_all(
        bytes: Vec<u8>,
        pieces: Vec<usize>,
        max: usize,
    ) -> crate::__private::fuzz::FramesRead {
        crate::__private::fuzz::read_ws_frames(&bytes, &pieces, max, 512, usize::MAX)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        #[test]
        fn any_bytes_in_any_pieces_end_cleanly(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
            pieces in proptest::collection::vec(1usize..600, 1..8),
        ) {
            let read = read_all(bytes, pieces, 1000);
            proptest::prop_assert_eq!(read.held_after, 0);
        }

        #[test]
        fn messages_fragmented_any_way_arrive_in_order(
            messages in proptest::collection::vec(
                (proptest::prelude::any::<bool>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000), 1usize..5),
                1..8,
            ),
            pieces in proptest::collection::vec(1usize..700, 1..8),
        ) {
            let mut bytes = Vec::new();
            let mut want = Vec::new();
            for (text, data, fragments) in messages {
                let (opcode, message) = if text {
                    let s: String = String::from_utf8_lossy(&data).into_owned();
                    (1, Message::text(s))
                } else {
                    (2, Message::Binary(data.into()))
                };
                let payload = message.clone().into_data();
                let step = payload.len().div_ceil(fragments).max(1);
                let parts: Vec<&[u8]> = if payload.is_empty() { vec![&[][..]] } else { payload.chunks(step).collect() };
                for (i, part) in parts.iter().enumerate() {
                    let last = i + 1 == parts.len();
                    bytes.extend(frame(last, if i == 0 { opcode } else { 0 }, part));
                    if !last {
                        bytes.extend(frame(true, 9, b"p"));
                    }
                }
                want.push(message);
            }
            let read = read_all(bytes, pieces, 1 << 20);
            let got: Vec<Message> = read.messages.into_iter().filter(|m| !m.is_ping()).collect();
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(read.held_after, 0);
        }
    }
}
