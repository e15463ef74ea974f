//! A minimal RFC 6455 client for the load generator: one read buffer and one write
//! buffer per connection, reused for every message, no allocation per message, one
//! `write` per sent message, and as many frames parsed per `read` as arrived.
//!
//! It does what the benchmark needs and no more: unfragmented data frames (every
//! server under test sends small messages unfragmented), masking as a client
//! must, automatic answers to `Ping`, and an error on `Close`.
//!
//! It speaks over TCP or, in the TLS scenarios, over TLS (tokio-rustls): a
//! [`Stream`] is either, so the plain path reads and writes the `TcpStream`
//! as before, behind one `match`.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A received data frame, borrowed from the connection's read buffer.
pub struct Frame<'a> {
    pub opcode: u8,
    pub payload: &'a [u8],
}

/// A client's connection: TCP, or TLS over TCP (boxed: rustls' state is large,
/// and the plain variant stays a bare `TcpStream`). An enum, not a trait object
/// or a generic: the plain path pays one predictable branch per read or write,
/// no dynamic call and no allocation.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Connects to `addr` (TCP_NODELAY), then, with `tls`, makes the TLS
    /// handshake for the name `addr`'s IP address (the one the certificate
    /// names), noting what it negotiated (see [`crate::tls::note`]).
    pub async fn connect(
        addr: SocketAddr,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> io::Result<Stream> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let Some(config) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let stream = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| err(format!("TLS handshake with {addr}: {e}")))?;
        crate::tls::note(stream.get_ref().1);
        Ok(Stream::Tls(Box::new(stream)))
    }

    /// Reads what is available, waiting for something when nothing is.
    #[inline]
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    /// Writes all of `data` (over TLS: encrypted and flushed to the socket, not
    /// left in rustls' buffer).
    #[inline]
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(data).await,
            Stream::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
        }
    }

    /// Reads what has already arrived without waiting: `WouldBlock` when
    /// nothing has (over TLS: one poll of the TLS stream, with a waker that
    /// does nothing; the caller polls again later anyway).
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::future::Future as _;
        match self {
            Stream::Plain(s) => s.try_read(buf),
            Stream::Tls(s) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match std::pin::pin!(s.read(buf)).poll(&mut cx) {
                    std::task::Poll::Ready(got) => got,
                    std::task::Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    /// The TCP stream of a plain connection (`None` over TLS).
    fn plain(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(_) => None,
        }
    }
}

/// One client WebSocket connection.
pub struct WsConn {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    out: Vec<u8>,
    mask: [u8; 4],
    /// Reads go through `recvmsg` and keep the kernel's receive timestamp
    /// (plain connections only).
    stamps: bool,
    /// `CLOCK_REALTIME` nanoseconds at which the kernel received the last bytes read.
    last_rx: Option<u64>,
    /// Room for a read's control message (its timestamp), made once.
    cmsg: Vec<u8>,
}

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

fn no_stamps() -> io::Error {
    err("kernel receive timestamps need a plain TCP connection")
}

/// A cheap per-connection mask key (xorshift over a process-wide counter).
fn mask_key() -> [u8; 4] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut x = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let k = (x >> 16) as u32;
    // A zero key would leave payloads unmasked; harmless, but avoid it anyway.
    (k | 1).to_le_bytes()
}

impl WsConn {
    /// Connects to `addr` (over TLS with `tls`), upgrades on `path`, with a
    /// read buffer of `buf_size` bytes (grown when a larger frame arrives).
    pub async fn connect(
        addr: SocketAddr,
        tls: Option<&Arc<rustls::ClientConfig>>,
        path: &str,
        buf_size: usize,
    ) -> io::Result<WsConn> {
        let mut conn = WsConn {
            stream: Stream::connect(addr, tls).await?,
            buf: vec![0; buf_size.max(512)],
            start: 0,
            end: 0,
            out: Vec::with_capacity(256),
            mask: mask_key(),
            stamps: false,
            last_rx: None,
            cmsg: Vec::new(),
        };
        conn.handshake(addr, path).await?;
        Ok(conn)
    }

    async fn handshake(&mut self, addr: SocketAddr, path: &str) -> io::Result<()> {
        use std::io::Write as _;
        self.out.clear();
        write!(
            self.out,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        self.stream.write_all(&self.out).await?;
        loop {
            if let Some(pos) = find(&self.buf[..self.end], b"\r\n\r\n") {
                let head = &self.buf[..pos];
                if !head.starts_with(b"HTTP/1.1 101") {
                    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                    return Err(err(format!(
                        "upgrade refused: {}",
                        String::from_utf8_lossy(line)
                    )));
                }
                self.start = pos + 4;
                return Ok(());
            }
            if self.end == self.buf.len() {
                return Err(err("upgrade response too large"));
            }
            let n = self.stream.read(&mut self.buf[self.end..]).await?;
            if n == 0 {
                return Err(err("closed during the upgrade"));
            }
            self.end += n;
        }
    }

    /// Appends one masked frame to the write buffer without writing it.
    pub fn queue(&mut self, opcode: u8, payload: &[u8]) {
        encode_frame(&mut self.out, opcode, payload, self.mask);
    }

    /// One masked frame of `payload`, as [`queue`](Self::queue) writes it, and
    /// where its payload starts in it: a caller that sends the same message
    /// again and again patches it in place ([`patch`](Self::patch)) instead of
    /// copying and masking the whole payload per message.
    pub fn encode(&self, opcode: u8, payload: &[u8]) -> (Vec<u8>, usize) {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        encode_frame(&mut frame, opcode, payload, self.mask);
        let at = frame.len() - payload.len();
        (frame, at)
    }

    /// Writes `bytes` masked into `frame` (from [`encode`](Self::encode)) at
    /// payload offset `offset`; `at` is where the payload starts.
    pub fn patch(&self, frame: &mut [u8], at: usize, offset: usize, bytes: &[u8]) {
        patch_masked(frame, at, offset, bytes, self.mask);
    }

    /// Writes an encoded frame, in one `write` when the socket takes it.
    pub async fn send_encoded(&mut self, frame: &[u8]) -> io::Result<()> {
        self.stream.write_all(frame).await
    }

    /// Writes what was queued, in one `write` when the socket takes it.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends one message.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.out.clear();
        self.queue(opcode, payload);
        self.flush().await
    }

    /// Parses the next complete frame in the buffer: `(opcode, payload range)`.
    fn parse(&self) -> io::Result<Option<(u8, usize, usize)>> {
        let b = &self.buf[self.start..self.end];
        if b.len() < 2 {
            return Ok(None);
        }
        let (fin, opcode) = (b[0] & 0x80 != 0, b[0] & 0x0f);
        if b[1] & 0x80 != 0 {
            return Err(err("the server sent a masked frame"));
        }
        let (len, header) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => {
                let mut l = [0u8; 8];
                l.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(l) as usize, 10)
            }
            126 | 127 => return Ok(None),
            l => (l as usize, 2),
        };
        if !fin || opcode == 0 {
            return Err(err("fragmented messages are not supported"));
        }
        if b.len() < header + len {
            return Ok(None);
        }
        let at = self.start + header;
        Ok(Some((opcode, at, at + len)))
    }

    /// Makes room after the buffered bytes: rewinds an empty buffer, else moves
    /// unread bytes to the front or, when they fill it, doubles it.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
        }
    }

    /// Reads more bytes into the buffer (compacting or growing it first).
    async fn fill(&mut self) -> io::Result<()> {
        self.make_room();
        let n = if self.stamps {
            self.read_stamped().await?
        } else {
            self.stream.read(&mut self.buf[self.end..]).await?
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        self.end += n;
        Ok(())
    }

    /// Asks the kernel to timestamp received data (`SO_TIMESTAMPNS`): latency is
    /// then measured to the moment the bytes reached this socket, not to the moment
    /// this single-threaded load generator got around to reading them.
    ///
    /// Over TLS the kernel's timestamps are those of encrypted records, not of
    /// messages: not available there.
    pub fn enable_rx_timestamps(&mut self) -> io::Result<()> {
        use nix::sys::socket::{setsockopt, sockopt};
        let tcp = self.stream.plain().ok_or_else(no_stamps)?;
        setsockopt(tcp, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)?;
        self.cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
        self.stamps = true;
        Ok(())
    }

    /// The kernel's receive time (`CLOCK_REALTIME` ns) of the last bytes read.
    pub fn last_rx_ns(&self) -> Option<u64> {
        self.last_rx
    }

    /// One `recvmsg` of what has arrived, and its kernel timestamp.
    ///
    /// A read shorter than the buffer left the socket empty: it makes tokio
    /// clear the socket's readiness, as tokio's own reads do, so that the next
    /// read waits for the socket instead of trying a `recvmsg` that finds
    /// nothing. Without that, every delivery cost the load generator a second,
    /// failed `recvmsg` (`EAGAIN`), on the side that bounds the fan-out's peak.
    /// The control-message buffer is the connection's, not one allocated per
    /// call.
    async fn read_stamped(&mut self) -> io::Result<usize> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::AsRawFd;
        loop {
            let stream = self.stream.plain().ok_or_else(no_stamps)?;
            stream.readable().await?;
            let fd = stream.as_raw_fd();
            let buf = &mut self.buf[self.end..];
            let room = buf.len();
            let cmsg = &mut self.cmsg;
            let mut read = None;
            let tried = stream.try_io(tokio::io::Interest::READABLE, || {
                let mut iov = [std::io::IoSliceMut::new(buf)];
                let msg = recvmsg::<()>(fd, &mut iov, Some(cmsg.as_mut_slice()), MsgFlags::empty())
                    .map_err(io::Error::from)?;
                let mut stamp = None;
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmTimestampns(t) = c {
                        stamp = Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64);
                    }
                }
                read = Some((msg.bytes, stamp));
                if 0 < msg.bytes && msg.bytes < room {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
            if let Some((n, stamp)) = read {
                if stamp.is_some() {
                    self.last_rx = stamp;
                }
                return Ok(n);
            }
            // Nothing read: the socket was empty (its readiness is now cleared).
            if let Err(e) = tried {
                if e.kind() != io::ErrorKind::WouldBlock {
                    return Err(e);
                }
            }
        }
    }

    /// The next data message. Answers pings; a close is an error.
    pub async fn recv(&mut self) -> io::Result<Frame<'_>> {
        let (opcode, range) = self.recv_range().await?;
        Ok(Frame {
            opcode,
            payload: &self.buf[range],
        })
    }

    /// The payload of a frame returned by [`recv_range`](Self::recv_range), valid
    /// until the next receive.
    pub fn slice(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// [`recv`](Self::recv) returning the payload's place in the read buffer.
    pub async fn recv_range(&mut self) -> io::Result<(u8, Range<usize>)> {
        loop {
            let Some((opcode, from, to)) = self.parse()? else {
                self.fill().await?;
                continue;
            };
            self.start = to;
            match opcode {
                TEXT | BINARY => return Ok((opcode, from..to)),
                PING => {
                    let mut data = [0u8; 125];
                    let n = (to - from).min(125);
                    data[..n].copy_from_slice(&self.buf[from..from + n]);
                    // Keep whatever the caller had queued; the pong goes first.
                    let pending = std::mem::take(&mut self.out);
                    self.queue(PONG, &data[..n]);
                    self.flush().await?;
                    self.out = pending;
                }
                PONG => {}
                CLOSE => {
                    let code = if to - from >= 2 {
                        u16::from_be_bytes([self.buf[from], self.buf[from + 1]])
                    } else {
                        1005
                    };
                    return Err(err(format!("the server closed with {code}")));
                }
                other => return Err(err(format!("unexpected opcode {other}"))),
            }
        }
    }

    /// Reads whatever has arrived without waiting and drops the complete frames
    /// (a publisher's acks and responses it does not need).
    pub fn discard_available(&mut self) -> io::Result<()> {
        loop {
            while let Some((opcode, _, to)) = self.parse()? {
                if opcode == CLOSE {
                    return Err(err("the server closed the connection"));
                }
                self.start = to;
            }
            self.make_room();
            match self.stream.try_read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ))
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Appends a masked client frame of `payload` to `out`.
fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    let len = payload.len();
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let at = out.len();
    out.extend_from_slice(payload);
    mask_in_place(&mut out[at..], mask);
}

/// Overwrites payload bytes `offset..` of an encoded frame whose payload
/// starts at `at` with `bytes`, masked.
fn patch_masked(frame: &mut [u8], at: usize, offset: usize, bytes: &[u8], mask: [u8; 4]) {
    for (i, b) in bytes.iter().enumerate() {
        frame[at + offset + i] = b ^ mask[(offset + i) & 3];
    }
}

/// XORs `data` with the repeated 4-byte `mask`, eight bytes at a time (a 64 KiB
/// message is masked without a loop per byte).
pub fn mask_in_place(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    // The rest starts at a multiple of 8, so the mask starts over.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Position of `needle` in `hay` (for the load generator's light parsing).
pub fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    find(hay, needle)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_patched_frame_is_the_frame_of_the_patched_payload() {
        let mask = [0x9a, 0x01, 0xfe, 0x44];
        for len in [1, 8, 125, 126, 65_535, 65_536] {
            let mut payload: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
            let mut frame = Vec::new();
            super::encode_frame(&mut frame, 2, &payload, mask);
            let at = frame.len() - len;
            let offset = len / 3;
            let new = [0xde, 0xad, 0xbe, 0xef, 0x01];
            let n = new.len().min(len - offset);
            payload[offset..offset + n].copy_from_slice(&new[..n]);
            super::patch_masked(&mut frame, at, offset, &new[..n], mask);
            let mut fresh = Vec::new();
            super::encode_frame(&mut fresh, 2, &payload, mask);
            assert_eq!(frame, fresh, "length {len}");
        }
    }

    #[test]
    fn masks_like_the_byte_loop() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in [0, 1, 3, 7, 8, 9, 15, 16, 17, 1000, 65_536] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut fast = data.clone();
            super::mask_in_place(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i & 3])
                .collect();
            assert_eq!(fast, slow, "length {len}");
        }
    }
}
