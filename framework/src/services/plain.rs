//! A plain TCP connection as hyper serves it, holding back a `101 Switching
//! Protocols` response so that the session sends it in the same write as its
//! first frames.
//!
//! hyper writes and flushes the 101 on its own, and the session then writes its
//! `Welcome`: two `writev`s, two TCP segments and two wake-ups of the client for
//! every connection, which was a third of the server's CPU when 10,000 clients
//! connected at once (perf). Held here, the 101 goes back to the session with
//! the stream ([`PlainIo::into_parts`]) and leads its first write; a raw
//! session writes it at once too, before it waits for anything. Only the
//! framework's own upgrade asks for it ([`Hold`], set by its handler): the 101
//! of an application's own axum route, and every other response, is written as
//! hyper writes it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How every 101 response hyper writes begins.
const SWITCHING: &[u8] = b"HTTP/1.1 101 ";

/// Set by the framework's upgrade handler on the connection it answers with a
/// 101: hold that response back for the session.
#[derive(Clone, Default)]
pub(crate) struct Hold(Arc<AtomicBool>);

impl Hold {
    /// The next 101 written on this connection is the framework's own.
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A plain TCP stream that keeps the framework's 101 response (and anything
/// written after it) instead of writing it.
pub(crate) struct PlainIo {
    tcp: TcpStream,
    hold: Hold,
    /// The 101 response, once hyper wrote it.
    held: Option<BytesMut>,
}

impl PlainIo {
    pub(crate) fn new(tcp: TcpStream, hold: Hold) -> Self {
        PlainIo {
            tcp,
            hold,
            held: None,
        }
    }

    /// The stream, and the response held back (if one was).
    pub(crate) fn into_parts(self) -> (TcpStream, Option<BytesMut>) {
        (self.tcp, self.held)
    }

    /// Holds `slices` when a 101 is being written (or was): `Some(bytes held)`.
    fn hold(&mut self, slices: &[IoSlice<'_>]) -> Option<usize> {
        if self.held.is_none() {
            if !self.hold.is_set() {
                return None;
            }
            let first = slices.iter().find(|s| !s.is_empty())?;
            if !first.starts_with(SWITCHING) {
                return None;
            }
            self.held = Some(BytesMut::new());
        }
        let held = self.held.as_mut()?;
        let before = held.len();
        for s in slices {
            held.extend_from_slice(s);
        }
        Some(held.len() - before)
    }
}

impl AsyncRead for PlainIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for PlainIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.hold(&[IoSlice::new(buf)]) {
            Some(n) => Poll::Ready(Ok(n)),
            None => Pin::new(&mut self.tcp).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.hold(bufs) {
            Some(n) => Poll::Ready(Ok(n)),
            None => Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.held.is_some() {
            // Nothing of it is in the socket: it goes with the session's first write.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The reading half of a plain TCP session. Between messages it reads with
/// `recv` (rustix) rather than the C library's, which brackets every call with
/// the thread's cancellation state (two calls more per read: with the call
/// itself, 1.8 % of the echo server's perf samples, of ~21 % in user space).
/// Readiness is tokio's, with its rule that a read
/// which does not fill the buffer emptied the socket: the next read waits for
/// readiness instead of finding nothing in another `recv`. The rest of a large
/// message is read through tokio.
pub(crate) struct TcpReader(tokio::net::tcp::OwnedReadHalf);

impl TcpReader {
    pub(crate) fn new(half: tokio::net::tcp::OwnedReadHalf) -> Self {
        TcpReader(half)
    }
}

impl AsyncRead for TcpReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl crate::session::SessionRead for TcpReader {
    fn poll_read_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [std::mem::MaybeUninit<u8>],
        f: impl FnOnce(&[u8]) -> T,
    ) -> Poll<io::Result<T>> {
        let tcp: &TcpStream = self.0.as_ref();
        let room = buf.len();
        let (mut f, mut out) = (Some(f), None);
        loop {
            std::task::ready!(tcp.poll_read_ready(cx))?;
            // Inside `try_io`, so that tokio clears the readiness it saw
            // before the call (not a newer one) when the error says to.
            let tried = tcp.try_io(tokio::io::Interest::READABLE, || {
                let ((read, _), _) =
                    rustix::net::recv(tcp, &mut *buf, rustix::net::RecvFlags::empty())?;
                let n = read.len();
                out = f.take().map(|f| f(read));
                if 0 < n && n < room {
                    // The socket is empty: the error makes tokio clear its
                    // readiness (what its own reads do after a short one).
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
            if let Some(out) = out {
                return Poll::Ready(Ok(out));
            }
            // Nothing read: the socket was empty (its readiness is cleared,
            // so the next wait registers) or the call was interrupted.
            if let Err(e) = tried {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

/// The writing half of a plain TCP session. It writes with `send` and
/// `sendmsg` rather than tokio's `write` and `writev`: the socket calls skip
/// the file layer (`vfs_writev`, `fdget_pos`, `sock_write_iter`), about a
/// sixth of the kernel's time per delivery in the fan-out profile. Readiness
/// and the wait for a full socket are tokio's, as for its own writes.
pub(crate) struct TcpWriter(tokio::net::tcp::OwnedWriteHalf);

impl TcpWriter {
    pub(crate) fn new(half: tokio::net::tcp::OwnedWriteHalf) -> Self {
        TcpWriter(half)
    }

    /// Runs `send`: at once, and when the socket is full, again once tokio
    /// sees it writable.
    ///
    /// The first try does not ask tokio's readiness first: a socket is rarely
    /// full, and the look at its readiness (a cache line of its own per
    /// socket, and the task's budget) was a tenth of a fan-out's user time to
    /// 10,000 subscribers. A full socket is then tried through tokio, which
    /// clears its readiness and registers the task for the next.
    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        mut send: impl FnMut(&TcpStream) -> rustix::io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let tcp: &TcpStream = self.0.as_ref();
        loop {
            match send(tcp) {
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => break,
                done => return Poll::Ready(done.map_err(io::Error::from)),
            }
        }
        loop {
            std::task::ready!(tcp.poll_write_ready(cx))?;
            match tcp.try_io(tokio::io::Interest::WRITABLE, || {
                send(tcp).map_err(io::Error::from)
            }) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                done => return Poll::Ready(done),
            }
        }
    }
}

impl AsyncWrite for TcpWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_send(cx, |tcp| {
            rustix::net::send(tcp, buf, rustix::net::SendFlags::NOSIGNAL)
        })
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let [one] = bufs {
            // One buffer: `send` has no vector to copy in.
            return self.poll_write(cx, one);
        }
        self.poll_send(cx, |tcp| {
            rustix::net::sendmsg(
                tcp,
                bufs,
                &mut rustix::net::SendAncillaryBuffer::default(),
                rustix::net::SendFlags::NOSIGNAL,
            )
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (PlainIo, Hold, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let hold = Hold::default();
        let io = PlainIo::new(accepted.unwrap().0, hold.clone());
        (io, hold, client.unwrap())
    }

    #[tokio::test]
    async fn a_101_not_asked_for_is_written() {
        let (mut io, _hold, mut client) = pair().await;
        io.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .await
            .unwrap();
        io.flush().await.unwrap();
        let mut got = [0u8; 36];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
        assert!(io.into_parts().1.is_none());
    }

    #[tokio::test]
    async fn other_responses_are_written_and_a_101_is_held_with_what_follows() {
        let (mut io, hold, mut client) = pair().await;
        hold.set();
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        io.flush().await.unwrap();
        let mut got = [0u8; 19];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"HTTP/1.1 200 OK\r\n\r\n");

        let head = b"HTTP/1.1 101 Switching Protocols\r\n";
        let slices = [IoSlice::new(b""), IoSlice::new(head), IoSlice::new(b"\r\n")];
        let n = io.write_vectored(&slices).await.unwrap();
        assert_eq!(n, head.len() + 2);
        io.write_all(b"more").await.unwrap();
        io.flush().await.unwrap();
        let (tcp, held) = io.into_parts();
        assert_eq!(
            &held.expect("held")[..],
            b"HTTP/1.1 101 Switching Protocols\r\n\r\nmore".as_slice()
        );
        // Nothing of it reached the client.
        drop(tcp);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    }

    #[tokio::test]
    async fn a_tcp_writer_writes_in_order_waits_for_a_full_socket_and_shuts_down() {
        let (io, _hold, mut client) = pair().await;
        let (_read, write) = io.into_parts().0.into_split();
        let mut w = TcpWriter::new(write);
        w.write_all(b"one").await.unwrap();
        let slices = [
            IoSlice::new(b"two"),
            IoSlice::new(b""),
            IoSlice::new(b"three"),
        ];
        assert_eq!(w.write_vectored(&slices).await.unwrap(), 8);
        // More than the socket's buffers hold: the writer waits for the
        // client to read, and nothing is lost or reordered.
        let big: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        w.write_all(&big).await.unwrap();
        w.shutdown().await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(&got[..11], b"onetwothree");
        assert!(
            got[11..] == big[..],
            "the large write arrived whole and in order"
        );
    }

    /// One read through `poll_read_with` into a buffer of `room` bytes.
    async fn read_with(r: &mut TcpReader, room: usize) -> Vec<u8> {
        use crate::session::SessionRead;
        std::future::poll_fn(|cx| {
            let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); 64];
            r.poll_read_with(cx, &mut stack[..room], <[u8]>::to_vec)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_tcp_reader_reads_in_order_waits_after_an_emptying_read_and_sees_the_end() {
        let (io, _hold, mut client) = pair().await;
        let (read, _write) = io.into_parts().0.into_split();
        let mut r = TcpReader::new(read);
        // More than the buffer holds: a full read, then the rest at once.
        client.write_all(b"0123456789").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(read_with(&mut r, 6).await, b"012345");
        assert_eq!(read_with(&mut r, 64).await, b"6789");
        // That short read emptied the socket: the next one waits, and wakes
        // for what arrives later.
        let waiting = tokio::spawn(async move {
            let got = read_with(&mut r, 64).await;
            (r, got)
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "nothing to read yet");
        client.write_all(b"later").await.unwrap();
        let (mut r, got) = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("woken for what arrived")
            .unwrap();
        assert_eq!(got, b"later");
        // The stream mixes with tokio's reads; the end reads empty.
        client.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        r.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"x");
        drop(client);
        assert!(read_with(&mut r, 64).await.is_empty());
    }

    #[tokio::test]
    async fn a_tcp_writer_reports_a_closed_peer_as_an_error() {
        let (io, _hold, client) = pair().await;
        let (_read, write) = io.into_parts().0.into_split();
        let mut w = TcpWriter::new(write);
        drop(client);
        // The peer's reset arrives after a write or two; from then on every
        // write fails (the session then ends).
        let mut failed = false;
        for _ in 0..100 {
            if w.write_all(&[0u8; 4096]).await.is_err() {
                failed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(failed, "writing to a closed peer fails");
    }
}
