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

use crate::session::Connection;

/// `io`, with `prefix` read before it, watching frame headers for `conn`.
pub(crate) struct Rewound<T> {
    prefix: Bytes,
    io: T,
    frames: FrameWatch,
    conn: Connection,
}

/// Follows the client's frames through the bytes read: each header is parsed,
/// each payload skipped.
#[derive(Default)]
struct FrameWatch {
    header: [u8; 14],
    /// Header bytes gathered so far.
    have: u8,
    /// Payload bytes still to skip.
    skip: u64,
    /// Whether a fragmented data message is under way.
    in_message: bool,
}

impl FrameWatch {
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

    /// Feeds bytes read; tells `conn` when a fragmented message starts or ends.
    fn feed(&mut self, mut bytes: &[u8], conn: &Connection) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(bytes.len() as u64)) as usize;
                self.skip -= n as u64;
                bytes = &bytes[n..];
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
            let fin = self.header[0] & 0x80 != 0;
            match self.header[0] & 0x0f {
                // Text or binary: a message starts; unfinished unless FIN.
                1 | 2 if !fin => {
                    self.in_message = true;
                    conn.message_started();
                }
                // The last continuation ends it.
                0 if fin && self.in_message => {
                    self.in_message = false;
                    conn.message_finished();
                }
                _ => {}
            }
            self.skip = self.payload_len();
            self.have = 0;
        }
    }
}

impl<T> Rewound<T> {
    /// `prefix` is usually an empty slice of hyper's read buffer: keeping it would
    /// keep that whole buffer (8 KiB) alive for the session's lifetime, so an
    /// empty prefix is dropped and a non-empty one copied out.
    pub(crate) fn new(prefix: Bytes, io: T, conn: Connection) -> Self {
        let prefix = if prefix.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(&prefix)
        };
        Self {
            prefix,
            io,
            frames: FrameWatch::default(),
            conn,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewound<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
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
        this.frames.feed(&buf.filled()[before..], &this.conn);
        Poll::Ready(Ok(()))
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
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_prefix_is_read_first() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b" world")
            .await
            .unwrap();
        drop(a);
        let mut r = Rewound::new(Bytes::from_static(b"hello"), b, conn());
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
        let mut w = FrameWatch::default();
        let mut bytes = frame(true, 2, b"whole");
        bytes.extend(frame(false, 2, &[7; 300]));
        bytes.extend(frame(true, 9, b"ping in between"));
        bytes.extend(frame(false, 0, &[7; 70_000]));
        // Fed one byte at a time: headers split anywhere are still read.
        let split = bytes.len();
        for b in &bytes[..split] {
            w.feed(std::slice::from_ref(b), &c);
        }
        assert!(
            c.message_unfinished_for().is_some(),
            "a message is under way"
        );
        for b in frame(true, 0, b"end") {
            w.feed(&[b], &c);
        }
        assert!(c.message_unfinished_for().is_none(), "the message is whole");
        w.feed(&frame(true, 1, b"text"), &c);
        assert!(c.message_unfinished_for().is_none());
    }
}
