//! The stream an upgraded connection runs on: the TCP stream hyper served,
//! taken back from hyper, with whatever hyper had read past the request head
//! (a client that sent frames before the `101`) replayed first. It also reads
//! the WebSocket frame headers going by, to tell the session when a fragmented
//! message started and when it finished: the WebSocket layer holds an unfinished
//! message until it is whole, and the session bounds how long that may take.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::session::budget::OverBudget;
use crate::session::Connection;

/// `io`, with `prefix` read before it, watching frame headers for `conn`.
pub(crate) struct Rewound<T> {
    prefix: Bytes,
    io: T,
    frames: FrameWatch,
    conn: Connection,
}

/// Follows the client's frames through the bytes read: each header is parsed,
/// each payload skipped. A message is "under way" (bounded by `message_timeout`)
/// from its first frame's header until the last byte of its final frame, when
/// that spans reads; the bytes the WebSocket layer must keep for it meanwhile are
/// counted in the node's memory budget.
#[derive(Default)]
struct FrameWatch {
    header: [u8; 14],
    /// Header bytes gathered so far.
    have: u8,
    /// Payload bytes still to skip.
    skip: u64,
    /// Whether the frame being skipped is the final frame of a data message.
    ends_message: bool,
    /// Whether the session was told a message is under way.
    marked: bool,
    /// Bytes of the message under way counted in the memory budget.
    held: usize,
    /// Frames larger than this are refused by the WebSocket layer itself (1009),
    /// so they are not counted.
    max_frame: u64,
    /// Set once the budget refused a frame: nothing more is read.
    refused: bool,
}

impl FrameWatch {
    fn new(max_frame: usize) -> Self {
        Self {
            max_frame: max_frame as u64,
            ..Self::default()
        }
    }

    /// The header's length once its first two bytes are known.
    fn header_len(&self) -> usize {
        let masked = self.header[1] & 0x80 != 0;
        let ext = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if masked { 4 } else { 0 }
    }

    fn payload_len(&self) -> u64 {
        match self.header[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => u64::from_be_bytes(self.header[2..10].try_into().unwrap_or([0; 8])),
            n => u64::from(n),
        }
    }

    /// Feeds bytes read; tells `conn` when a message starts or ends arriving, and
    /// counts what it holds. `Err` when the memory budget refuses a frame.
    fn feed(&mut self, mut bytes: &[u8], conn: &Connection) -> Result<(), OverBudget> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(bytes.len() as u64)) as usize;
                self.skip -= n as u64;
                bytes = &bytes[n..];
                if self.skip == 0 {
                    self.frame_done(conn);
                }
                continue;
            }
            let have = usize::from(self.have);
            let want = if have < 2 { 2 } else { self.header_len() };
            let n = (want - have).min(bytes.len());
            self.header[have..have + n].copy_from_slice(&bytes[..n]);
            self.have += n as u8;
            bytes = &bytes[n..];
            if usize::from(self.have) < 2 || usize::from(self.have) < self.header_len() {
                continue;
            }
            self.have = 0;
            let fin = self.header[0] & 0x80 != 0;
            let opcode = self.header[0] & 0x0f;
            let len = self.payload_len();
            self.skip = len;
            // Data frames: continuation (0), text (1), binary (2).
            if opcode <= 2 {
                let spans = len > bytes.len() as u64;
                self.ends_message = fin;
                // Kept beyond this read: a frame that spans reads (its whole
                // length is reserved at its header), and every fragment of an
                // unfinished message (kept until the message is whole).
                if (spans || !fin || opcode == 0) && len <= self.max_frame && len > 0 {
                    conn.hold_incoming(len as usize)?;
                    self.held += len as usize;
                }
                if (spans || !fin) && !self.marked {
                    self.marked = true;
                    conn.message_started();
                }
            }
            if len == 0 {
                self.frame_done(conn);
            }
        }
        Ok(())
    }

    /// The frame being skipped was read whole.
    fn frame_done(&mut self, conn: &Connection) {
        if !self.ends_message {
            return;
        }
        self.ends_message = false;
        if self.marked {
            self.marked = false;
            conn.message_finished();
        }
        conn.release_incoming(std::mem::take(&mut self.held));
    }
}

impl<T> Rewound<T> {
    /// `prefix` is usually an empty slice of hyper's read buffer: keeping it would
    /// keep that whole buffer (8 KiB) alive for the session's lifetime, so an
    /// empty prefix is dropped and a non-empty one copied out.
    pub(crate) fn new(prefix: Bytes, io: T, conn: Connection, max_frame: usize) -> Self {
        let prefix = if prefix.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(&prefix)
        };
        Self {
            prefix,
            io,
            frames: FrameWatch::new(max_frame),
            conn,
        }
    }
}

impl<T> Drop for Rewound<T> {
    fn drop(&mut self) {
        // The message under way, if any, will never be whole.
        self.conn
            .release_incoming(std::mem::take(&mut self.frames.held));
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewound<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.frames.refused {
            return discard(Pin::new(&mut this.io), cx);
        }
        let before = buf.filled().len();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
        } else {
            match Pin::new(&mut this.io).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
        if let Err(over) = this.frames.feed(&buf.filled()[before..], &this.conn) {
            // Nothing of this read, nor anything after it, reaches the WebSocket
            // layer (which would reserve the frame's length): the session is
            // closed with the reason, and what the peer still sends is dropped
            // (not left unread, which would reset the connection under the close).
            this.frames.refused = true;
            buf.set_filled(before);
            this.conn.over_budget(over);
            return discard(Pin::new(&mut this.io), cx);
        }
        Poll::Ready(Ok(()))
    }
}

/// Reads and drops whatever `io` has; pending until EOF (which is reported as
/// such) or an error.
fn discard<T: AsyncRead>(mut io: Pin<&mut T>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let mut scratch = [0u8; 4096];
    loop {
        let mut buf = ReadBuf::new(&mut scratch);
        match io.as_mut().poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
            Poll::Ready(Ok(())) => continue,
            other => return other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewound<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::budget::{Charge, MemoryBudget};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_prefix_is_read_first() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b" world")
            .await
            .unwrap();
        drop(a);
        let mut r = Rewound::new(Bytes::from_static(b"hello"), b, conn(), 1 << 20);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    fn conn() -> Connection {
        Connection::new(
            uuid::Uuid::nil(),
            "127.0.0.1:1".parse().unwrap(),
            1 << 20,
            Default::default(),
            crate::session::budget::Charge::unlimited(),
        )
    }

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
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        f
    }

    #[test]
    fn fragmented_messages_are_followed_byte_by_byte() {
        let c = conn();
        let mut w = FrameWatch::new(1 << 20);
        let mut bytes = frame(true, 2, b"whole");
        bytes.extend(frame(false, 2, &[7; 300]));
        bytes.extend(frame(true, 9, b"ping in between"));
        bytes.extend(frame(false, 0, &[7; 70_000]));
        // Fed one byte at a time: headers split anywhere are still read.
        let split = bytes.len();
        for b in &bytes[..split] {
            w.feed(std::slice::from_ref(b), &c).unwrap();
        }
        assert!(
            c.message_unfinished_for().is_some(),
            "a message is under way"
        );
        for b in frame(true, 0, b"end") {
            w.feed(&[b], &c).unwrap();
        }
        assert!(c.message_unfinished_for().is_none(), "the message is whole");
        w.feed(&frame(true, 1, b"text"), &c).unwrap();
        assert!(c.message_unfinished_for().is_none());
    }

    fn budgeted(max: usize, per_ip: usize) -> (Connection, Arc<MemoryBudget>) {
        let budget = MemoryBudget::new(max, per_ip);
        let c = Connection::new(
            uuid::Uuid::nil(),
            "127.0.0.1:1".parse().unwrap(),
            1 << 20,
            Default::default(),
            Charge::new(budget.clone(), Arc::default()),
        );
        (c, budget)
    }

    #[test]
    fn bytes_kept_across_reads_are_counted_until_the_message_is_whole() {
        let (c, budget) = budgeted(1 << 20, 1 << 20);
        let mut w = FrameWatch::new(1 << 20);
        // A whole message in one read is never counted.
        w.feed(&frame(true, 2, &[1; 100]), &c).unwrap();
        assert_eq!(budget.held(), 0);
        assert!(c.message_unfinished_for().is_none());
        // One frame whose payload spans reads: counted (the WebSocket layer
        // reserves it all at its header) and under way until its last byte.
        let big = frame(true, 2, &[1; 5000]);
        w.feed(&big[..1000], &c).unwrap();
        assert_eq!(budget.held(), 5000);
        assert!(c.message_unfinished_for().is_some());
        w.feed(&big[1000..], &c).unwrap();
        assert_eq!(budget.held(), 0);
        assert!(c.message_unfinished_for().is_none());
        // Fragments are kept until the final one, even those read whole.
        w.feed(&frame(false, 2, &[1; 300]), &c).unwrap();
        w.feed(&frame(false, 0, &[1; 200]), &c).unwrap();
        w.feed(&frame(true, 9, b"ping"), &c).unwrap();
        assert_eq!(budget.held(), 500);
        w.feed(&frame(true, 0, &[1; 10]), &c).unwrap();
        assert_eq!(budget.held(), 0, "given back when the message is whole");
    }

    #[test]
    fn a_frame_over_the_budget_is_refused_and_nothing_stays_counted() {
        let (c, budget) = budgeted(10_000, 4_000);
        let mut w = FrameWatch::new(1 << 20);
        w.feed(&frame(false, 2, &[1; 3000]), &c).unwrap();
        assert_eq!(
            w.feed(&frame(false, 0, &[1; 3000]), &c),
            Err(OverBudget::Ip)
        );
        assert_eq!(budget.held(), 3000);
        // Frames the WebSocket layer refuses itself (over max_message_size) are
        // left to it (1009).
        let mut w2 = FrameWatch::new(100);
        w2.feed(&frame(true, 2, &[1; 2000])[..10], &c).unwrap();
        assert_eq!(budget.held(), 3000);
        // A stream dropped mid-message gives its bytes back.
        let (a, _b) = tokio::io::duplex(64);
        let mut r = Rewound::new(Bytes::new(), a, c.clone(), 1 << 20);
        r.frames = w;
        drop(r);
        assert_eq!(budget.held(), 0);
    }
}
