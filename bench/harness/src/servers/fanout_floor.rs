//! The hand-written floor of the fan-out scenarios (server `floor` of fanout and
//! fanout10k): what a delivery costs when it is nothing but the write. No
//! framework and no WebSocket library: the upgrade and the client frames are
//! handled by hand on tokio's `TcpStream`, and on each `Publish` the publisher's
//! own task encodes the delivery once (WebSocket header and protocol `Message`,
//! as the framework's deliveries look on the wire) and writes it to every
//! subscriber's socket with one nonblocking `write` each: no task per
//! subscriber, no queue, no wake-up, nothing between the publish and the
//! syscalls. The framework's fan-out ÷ this one is how far the framework is
//! from the cost of the writes alone.
//!
//! It stays correct where a socket does not take a whole frame (a short write,
//! or `WouldBlock`, possible at the peak with publishes in flight): the rest,
//! and every later frame while any is left, goes to that subscriber's backlog,
//! which the subscriber's connection task writes out when the socket is
//! writable again. The fast path (nothing waiting, the whole frame taken) is
//! one uncontended lock and one `write`.
//!
//! It serves what the benchmark needs and no more: one channel
//! ([`CHANNEL`]), unfragmented client frames, `Subscribe`, `Unsubscribe` and
//! `Publish` (each acknowledged when it asks to be), WebSocket `Ping` and
//! `Close` answered; no `Welcome` (the load generator's [`Proto::Floor`]).
//!
//! [`Proto::Floor`]: crate::spec::Proto::Floor

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Buf as _, BytesMut};
use flatbuffers::FlatBufferBuilder;
use framework::protocol::{fbs, ErrorCode, Opcode, FILE_IDENTIFIER};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::spec::CHANNEL;
use crate::ws::{find_bytes, mask_in_place, BINARY, CLOSE, PING, PONG, TEXT};

/// The largest client frame read (the benchmark's are under 200 bytes); a
/// larger one ends the connection (close 1009).
const MAX_FRAME: usize = 1 << 20;

/// Bytes a subscriber may have waiting in its backlog; beyond, it is dropped (a
/// subscriber that does not read would otherwise grow it without end).
const MAX_BACKLOG: usize = 16 << 20;

/// The largest upgrade request read.
const MAX_REQUEST: usize = 8 * 1024;

/// Serves the fan-out floor on `addr` until killed.
pub(super) async fn run(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = super::listen(addr)?;
    super::announce(listener.local_addr()?);
    let subscribers = Arc::new(Subscribers::default());
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(tcp, subscribers.clone()));
    }
}

/// Locks `m`, poisoned or not (the data stays consistent: no code panics while
/// holding these locks, and a backlog is only bytes).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------- subscribers

/// The channel's subscribers. A plain list behind a std mutex: the publisher
/// holds it for the whole loop of writes (joining and leaving, rare, wait).
#[derive(Default)]
struct Subscribers(Mutex<Vec<Arc<Peer>>>);

impl Subscribers {
    fn join(&self, peer: &Arc<Peer>) {
        lock(&self.0).push(peer.clone());
    }

    fn leave(&self, peer: &Arc<Peer>) {
        let mut list = lock(&self.0);
        if let Some(i) = list.iter().position(|p| Arc::ptr_eq(p, peer)) {
            list.swap_remove(i);
        }
    }

    /// Writes the encoded WebSocket frame `frame` to every subscriber, in the
    /// calling (publisher's) task: one nonblocking `write` each.
    fn publish(&self, frame: &[u8]) {
        for peer in lock(&self.0).iter() {
            peer.send(frame);
        }
    }
}

/// One connection's socket, shared by its own task (reading, answering,
/// writing out the backlog) and publishers (writing deliveries): tokio's
/// `TcpStream` reads and writes through `&self`.
struct Peer {
    tcp: TcpStream,
    /// Held across every write to the socket, so that frames written by the
    /// connection's task and by publishers never interleave.
    out: Mutex<Out>,
    /// Wakes the connection's task: its backlog started, or the connection died.
    wake: Notify,
}

#[derive(Default)]
struct Out {
    /// Bytes the socket did not take yet, in order; while any are waiting,
    /// every later frame goes after them.
    backlog: BytesMut,
    /// A write failed, or the backlog overflowed: the connection ends.
    dead: bool,
}

impl Peer {
    /// Writes the frame `frame`: one nonblocking `write` when nothing is
    /// waiting; what the socket does not take waits in the backlog, and the
    /// connection's task is woken to write it out.
    fn send(&self, frame: &[u8]) {
        let mut out = lock(&self.out);
        if out.dead {
            return;
        }
        if out.backlog.is_empty() {
            match self.tcp.try_write(frame) {
                Ok(n) if n == frame.len() => return,
                Ok(n) => out.backlog.extend_from_slice(&frame[n..]),
                Err(e) if would_block(&e) => out.backlog.extend_from_slice(frame),
                Err(_) => out.dead = true,
            }
        } else if out.backlog.len() + frame.len() > MAX_BACKLOG {
            out.dead = true;
        } else {
            // The task was woken when the backlog started.
            out.backlog.extend_from_slice(frame);
            return;
        }
        drop(out);
        self.wake.notify_one();
    }

    /// Writes out as much of the backlog as the socket takes (called when it
    /// is writable); an error when the connection failed.
    fn flush(&self) -> io::Result<()> {
        let mut out = lock(&self.out);
        while !out.backlog.is_empty() {
            match self.tcp.try_write(&out.backlog) {
                Ok(n) => out.backlog.advance(n),
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) => {
                    out.dead = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Whether bytes are waiting, and whether the connection died.
    fn state(&self) -> (bool, bool) {
        let out = lock(&self.out);
        (!out.backlog.is_empty(), out.dead)
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

// ---------------------------------------------------------------- connection

/// One connection: the upgrade, then its frames until it ends; it leaves the
/// channel when it ends.
async fn connection(tcp: TcpStream, subscribers: Arc<Subscribers>) {
    let mut rx = Rx {
        buf: vec![0; 1024],
        start: 0,
        end: 0,
    };
    let Ok(tcp) = upgrade(tcp, &mut rx).await else {
        return;
    };
    let peer = Arc::new(Peer {
        tcp,
        out: Mutex::new(Out::default()),
        wake: Notify::new(),
    });
    let mut conn = Conn {
        peer: peer.clone(),
        subscribers: subscribers.clone(),
        subscribed: false,
        id: Uuid::new_v4(),
        fbb: FlatBufferBuilder::with_capacity(256),
        frame: Vec::with_capacity(256),
    };
    let _ = conn.serve(&mut rx).await;
    if conn.subscribed {
        subscribers.leave(&peer);
    }
}

/// Reads the upgrade request into `rx` and answers it with `101` (RFC 6455
/// §4.2.2; `Sec-WebSocket-Key` is all that is checked); bytes after the
/// request stay in `rx`.
async fn upgrade(mut tcp: TcpStream, rx: &mut Rx) -> io::Result<TcpStream> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let head_end = loop {
        if let Some(at) = find_bytes(&rx.buf[..rx.end], b"\r\n\r\n") {
            break at + 4;
        }
        if rx.end >= MAX_REQUEST {
            return Err(io::Error::other("upgrade request too large"));
        }
        if rx.end == rx.buf.len() {
            rx.buf.resize(rx.buf.len() * 2, 0);
        }
        let n = tcp.read(&mut rx.buf[rx.end..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        rx.end += n;
    };
    let head = std::str::from_utf8(&rx.buf[..head_end]).map_err(io::Error::other)?;
    let key = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim())
    });
    let Some(key) = key.filter(|_| head.starts_with("GET ")) else {
        let _ = tcp
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
        return Err(io::Error::other("not a WebSocket upgrade"));
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    tcp.write_all(response.as_bytes()).await?;
    rx.start = head_end;
    Ok(tcp)
}

/// A connection's read buffer: bytes `start..end` are read and not handled yet.
struct Rx {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Rx {
    /// Makes room after the buffered bytes (rewinds, compacts, or grows up to
    /// a frame of [`MAX_FRAME`]).
    fn make_room(&mut self) {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            } else {
                let grown = (self.buf.len() * 2).min(MAX_FRAME + 14);
                self.buf.resize(grown, 0);
            }
        }
    }

    /// The next complete client frame, unmasked in place: `(fin, opcode,
    /// payload range)`; `None` until it has all arrived.
    fn next_frame(&mut self) -> Result<Option<(bool, u8, std::ops::Range<usize>)>, u16> {
        let b = &self.buf[self.start..self.end];
        if b.len() < 2 {
            return Ok(None);
        }
        let (fin, opcode) = (b[0] & 0x80 != 0, b[0] & 0x0f);
        if b[1] & 0x80 == 0 {
            // RFC 6455 §5.1: a client masks every frame.
            return Err(1002);
        }
        let (len, at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")),
                10,
            ),
            126 | 127 => return Ok(None),
            l => (u64::from(l), 2),
        };
        if len > MAX_FRAME as u64 {
            return Err(1009);
        }
        let len = len as usize;
        if b.len() < at + 4 + len {
            return Ok(None);
        }
        let mask: [u8; 4] = b[at..at + 4].try_into().expect("4 bytes");
        let from = self.start + at + 4;
        mask_in_place(&mut self.buf[from..from + len], mask);
        self.start = from + len;
        Ok(Some((fin, opcode, from..from + len)))
    }
}

/// What a connection's task keeps besides its read buffer.
struct Conn {
    peer: Arc<Peer>,
    subscribers: Arc<Subscribers>,
    /// It joined the channel.
    subscribed: bool,
    /// Its session id, the `emitter_id` of what it publishes (as the
    /// framework's deliveries name the publisher).
    id: Uuid,
    /// Reused for every frame it encodes.
    fbb: FlatBufferBuilder<'static>,
    /// The WebSocket frame being sent, reused.
    frame: Vec<u8>,
}

impl Conn {
    /// Reads and answers frames, and writes out the backlog when the socket
    /// takes more, until the connection ends.
    async fn serve(&mut self, rx: &mut Rx) -> io::Result<()> {
        let peer = self.peer.clone();
        // Bytes that came with the upgrade request.
        if !self.frames(rx) {
            return Ok(());
        }
        loop {
            let (waiting, dead) = peer.state();
            if dead {
                return Err(io::Error::other("the connection failed"));
            }
            tokio::select! {
                ready = peer.tcp.writable(), if waiting => {
                    ready?;
                    peer.flush()?;
                }
                // The backlog started, or the connection died: look again.
                () = peer.wake.notified() => {}
                ready = peer.tcp.readable() => {
                    ready?;
                    rx.make_room();
                    match peer.tcp.try_read(&mut rx.buf[rx.end..]) {
                        Ok(0) => return Ok(()),
                        Ok(n) => rx.end += n,
                        Err(e) if would_block(&e) => continue,
                        Err(e) => return Err(e),
                    }
                    if !self.frames(rx) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Handles every complete frame in `rx`; `false` when the connection ends.
    fn frames(&mut self, rx: &mut Rx) -> bool {
        loop {
            let (fin, opcode, range) = match rx.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return true,
                Err(code) => {
                    self.close(code);
                    return false;
                }
            };
            match opcode {
                // Fragmented messages: not needed by the benchmark, refused.
                _ if !fin || opcode == 0 => {
                    self.close(1003);
                    return false;
                }
                BINARY => self.message(&rx.buf[range]),
                TEXT | PONG => {}
                PING => {
                    let payload = &rx.buf[range.start..range.end.min(range.start + 125)];
                    encode_ws(&mut self.frame, PONG, payload);
                    self.peer.send(&self.frame);
                }
                CLOSE => {
                    // Echo the status code (RFC 6455 §5.5.1), then end.
                    let code = &rx.buf[range.start..range.end.min(range.start + 2)];
                    encode_ws(&mut self.frame, CLOSE, code);
                    self.peer.send(&self.frame);
                    return false;
                }
                _ => {
                    self.close(1002);
                    return false;
                }
            }
        }
    }

    /// Sends a close frame with status `code`.
    fn close(&mut self, code: u16) {
        encode_ws(&mut self.frame, CLOSE, &code.to_be_bytes());
        self.peer.send(&self.frame);
    }

    /// Handles one protocol v1 `Message`; anything else is ignored.
    fn message(&mut self, bytes: &[u8]) {
        if bytes.len() < 8 || !flatbuffers::buffer_has_identifier(bytes, FILE_IDENTIFIER, false) {
            return;
        }
        let Ok(msg) = flatbuffers::root::<fbs::Message<'_>>(bytes) else {
            return;
        };
        let opcode = msg.opcode();
        if !matches!(
            opcode,
            Opcode::Subscribe | Opcode::Unsubscribe | Opcode::Publish
        ) {
            return;
        }
        if msg.channel() != Some(CHANNEL) {
            self.reply(
                &msg,
                Opcode::Error,
                ErrorCode::NotFound,
                "the floor serves one channel",
            );
            return;
        }
        match opcode {
            Opcode::Subscribe if !self.subscribed => {
                self.subscribers.join(&self.peer);
                self.subscribed = true;
            }
            Opcode::Unsubscribe if self.subscribed => {
                self.subscribers.leave(&self.peer);
                self.subscribed = false;
            }
            Opcode::Publish => {
                let payload = msg.payload().map_or(&[][..], |p| p.bytes());
                let trace = msg
                    .trace_id()
                    .map_or_else(Uuid::new_v4, |t| Uuid::from_bytes(t.bytes().into()));
                delivery(&mut self.fbb, self.id, trace, payload);
                encode_ws(&mut self.frame, BINARY, self.fbb.finished_data());
                self.subscribers.publish(&self.frame);
            }
            _ => {}
        }
        if msg.requires_ack() {
            self.reply(&msg, Opcode::Ack, ErrorCode::None, "");
        }
    }

    /// Answers `req` with `opcode` (`Ack`, `Error`) and its transaction id.
    fn reply(&mut self, req: &fbs::Message<'_>, opcode: Opcode, code: ErrorCode, text: &str) {
        self.fbb.reset();
        let error_message = (!text.is_empty()).then(|| self.fbb.create_string(text));
        let root = fbs::Message::create(
            &mut self.fbb,
            &fbs::MessageArgs {
                opcode,
                transaction_id: req.transaction_id(),
                error_code: code,
                error_message,
                ..Default::default()
            },
        );
        self.fbb.finish(root, Some(FILE_IDENTIFIER));
        encode_ws(&mut self.frame, BINARY, self.fbb.finished_data());
        self.peer.send(&self.frame);
    }
}

/// Encodes into `fbb` the delivery of a publication of `payload` on
/// [`CHANNEL`]: the fields the framework's deliveries carry (opcode `Publish`,
/// the channel, the payload, the publisher's session id and the trace id), so
/// that both write the same number of bytes per delivery.
fn delivery(fbb: &mut FlatBufferBuilder<'static>, emitter: Uuid, trace: Uuid, payload: &[u8]) {
    fbb.reset();
    let channel = fbb.create_string(CHANNEL);
    let payload = fbb.create_vector(payload);
    let emitter = fbs::Uuid::new(emitter.as_bytes());
    let trace = fbs::Uuid::new(trace.as_bytes());
    let root = fbs::Message::create(
        fbb,
        &fbs::MessageArgs {
            opcode: Opcode::Publish,
            channel: Some(channel),
            payload: Some(payload),
            emitter_id: Some(&emitter),
            trace_id: Some(&trace),
            ..Default::default()
        },
    );
    fbb.finish(root, Some(FILE_IDENTIFIER));
}

/// Writes into `out` (cleared first) one unmasked, final WebSocket frame of
/// `opcode` carrying `payload`, as a server sends it.
fn encode_ws(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.clear();
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use framework::protocol::FrameFields;

    #[test]
    fn a_delivery_is_the_size_of_the_frameworks() {
        let (emitter, trace) = (Uuid::new_v4(), Uuid::new_v4());
        let payload = [b'p'; crate::spec::FANOUT_PAYLOAD];
        let mut fbb = FlatBufferBuilder::new();
        delivery(&mut fbb, emitter, trace, &payload);
        // As the framework's node encodes a delivery (`delivery(..).channel(..)`).
        let theirs = FrameFields::new(Opcode::Publish.0)
            .payload(&payload)
            .emitter_id(Some(emitter))
            .trace_id(Some(trace))
            .channel(CHANNEL)
            .encode();
        assert_eq!(fbb.finished_data().len(), theirs.len());
        let msg = flatbuffers::root::<fbs::Message<'_>>(fbb.finished_data()).unwrap();
        assert_eq!(msg.opcode(), Opcode::Publish);
        assert_eq!(msg.channel(), Some(CHANNEL));
        assert_eq!(msg.payload().unwrap().bytes(), &payload[..]);
        assert_eq!(msg.offset(), 0);
    }

    #[test]
    fn reads_masked_frames_and_waits_for_the_rest() {
        let mut rx = Rx {
            buf: vec![0; 64],
            start: 0,
            end: 0,
        };
        let mask = [1u8, 2, 3, 4];
        let body: Vec<u8> = b"hello"
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        let mut wire = vec![0x82, 0x80 | 5];
        wire.extend_from_slice(&mask);
        wire.extend_from_slice(&body);
        rx.buf[..wire.len() - 1].copy_from_slice(&wire[..wire.len() - 1]);
        rx.end = wire.len() - 1;
        assert_eq!(rx.next_frame(), Ok(None));
        rx.buf[wire.len() - 1] = wire[wire.len() - 1];
        rx.end = wire.len();
        let (fin, opcode, range) = rx.next_frame().unwrap().unwrap();
        assert!(fin);
        assert_eq!(opcode, BINARY);
        assert_eq!(&rx.buf[range], b"hello");
        assert_eq!(rx.next_frame(), Ok(None));
        // Unmasked: refused.
        rx.buf[rx.end..rx.end + 2].copy_from_slice(&[0x82, 0]);
        rx.end += 2;
        assert_eq!(rx.next_frame(), Err(1002));
    }

    /// A socket that does not take everything: the rest waits in order, later
    /// frames go after it, and once it is written out frames go straight to the
    /// socket again; the reader gets every byte once, in order.
    #[tokio::test]
    async fn a_backlog_keeps_the_stream_whole() {
        use nix::sys::socket::{setsockopt, sockopt};
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (client, accepted) = tokio::join!(
            TcpStream::connect(listener.local_addr().unwrap()),
            listener.accept()
        );
        let (mut client, server) = (client.unwrap(), accepted.unwrap().0);
        // A small send buffer (no autotuning): 2 MB do not fit it and the
        // receive buffer (128 KiB by default, grown only as the reader reads).
        setsockopt(&server, sockopt::SndBuf, &16384).unwrap();
        server.set_nodelay(true).unwrap();
        let peer = Peer {
            tcp: server,
            out: Mutex::new(Out::default()),
            wake: Notify::new(),
        };
        let frame = |i: u32| {
            let mut f = vec![(i % 251) as u8; 1000];
            f[..4].copy_from_slice(&i.to_be_bytes());
            f
        };
        let mut expected = Vec::new();
        for i in 0..2000 {
            peer.send(&frame(i));
            expected.extend_from_slice(&frame(i));
        }
        assert_eq!(peer.state(), (true, false), "2 MB went into the buffers");
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        while peer.state().0 {
            peer.tcp.writable().await.unwrap();
            peer.flush().unwrap();
        }
        for i in 2000..2010 {
            peer.send(&frame(i));
            expected.extend_from_slice(&frame(i));
        }
        while peer.state().0 {
            peer.tcp.writable().await.unwrap();
            peer.flush().unwrap();
        }
        drop(peer);
        assert!(reader.await.unwrap() == expected);
    }

    #[test]
    fn encodes_the_three_lengths() {
        let mut out = Vec::new();
        encode_ws(&mut out, BINARY, &[0; 125]);
        assert_eq!(&out[..2], &[0x82, 125]);
        encode_ws(&mut out, BINARY, &[0; 126]);
        assert_eq!(&out[..4], &[0x82, 126, 0, 126]);
        encode_ws(&mut out, BINARY, &[0; 70_000]);
        assert_eq!(&out[..2], &[0x82, 127]);
        assert_eq!(out.len(), 10 + 70_000);
    }
}
