//! What the load generator needs to drive Sockudo, a Pusher channels server: the
//! protocol's JSON events over WebSocket, and publishing through its HTTP API
//! (`POST /apps/{id}/events`, signed as Pusher's server libraries sign it). Sockudo
//! answers every API request with `Connection: close` (its router adds the header
//! "to prevent idle HTTP connection buildup"), so each publish is a connection of
//! its own (over TLS, a TLS handshake of its own too).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::spec::{PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET};
use crate::ws::{find_bytes, Stream, WsConn, TEXT};

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Whether a WebSocket message is the Pusher event `name`.
pub fn is_event(msg: &[u8], name: &str) -> bool {
    let mut needle = Vec::with_capacity(name.len() + 12);
    needle.extend_from_slice(b"\"event\":\"");
    needle.extend_from_slice(name.as_bytes());
    needle.push(b'"');
    find_bytes(msg, &needle).is_some()
}

/// The `pusher:subscribe` event of a public channel.
pub fn subscribe_event(channel: &str) -> String {
    format!(r#"{{"event":"pusher:subscribe","data":{{"auth":"","channel":"{channel}"}}}}"#)
}

/// The first `len` bytes of the `data` string of an event (the publications of
/// the benchmark are ASCII: no escapes).
pub fn data(msg: &[u8], len: usize) -> Option<&[u8]> {
    let at = find_bytes(msg, br#""data":""#)? + 8;
    msg.get(at..at + len)
}

/// The next message that is not a `pusher:ping` (answered with `pusher:pong`).
pub async fn recv(conn: &mut WsConn) -> io::Result<(u8, std::ops::Range<usize>)> {
    loop {
        let (op, r) = conn.recv_range().await?;
        if is_event(conn.slice(r.clone()), "pusher:ping") {
            conn.send(TEXT, br#"{"event":"pusher:pong","data":{}}"#)
                .await?;
            continue;
        }
        return Ok((op, r));
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Appends to `out` the signed HTTP request publishing event `msg` with `data`
/// on `channel` (`auth_signature` = HMAC-SHA256 of method, path and the sorted
/// query under the app secret; `body_md5` = MD5 of the body).
pub fn publish_request(out: &mut Vec<u8>, host: SocketAddr, channel: &str, data: &str, ts: u64) {
    use md5::Digest as _;
    use std::io::Write as _;
    let body = format!(r#"{{"name":"msg","channels":["{channel}"],"data":"{data}"}}"#);
    let md5 = hex(&md5::Md5::digest(body.as_bytes()));
    let path = format!("/apps/{PUSHER_APP_ID}/events");
    let query =
        format!("auth_key={PUSHER_KEY}&auth_timestamp={ts}&auth_version=1.0&body_md5={md5}");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(PUSHER_SECRET.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("POST\n{path}\n{query}").as_bytes());
    let signature = hex(&mac.finalize().into_bytes());
    let _ = write!(
        out,
        "POST {path}?{query}&auth_signature={signature} HTTP/1.1\r\nHost: {host}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// An HTTP/1.1 connection (HTTPS with TLS): requests written without waiting,
/// their responses read as they arrive and checked (200).
pub struct HttpConn {
    stream: Stream,
    buf: Vec<u8>,
    end: usize,
    sent: u64,
    answered: u64,
}

impl HttpConn {
    /// Connects to `addr`, over TLS with `tls`.
    pub async fn connect(
        addr: SocketAddr,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> io::Result<HttpConn> {
        Ok(HttpConn {
            stream: Stream::connect(addr, tls).await?,
            buf: vec![0; 4 * 1024],
            end: 0,
            sent: 0,
            answered: 0,
        })
    }

    pub async fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.sent += 1;
        self.stream.write_all(request).await
    }

    /// Every request sent was answered.
    pub fn done(&self) -> bool {
        self.answered == self.sent
    }

    /// Reads whatever has arrived without waiting and checks every complete
    /// response: a status other than 200 is an error, and so is the connection
    /// closed before every request was answered.
    pub fn discard_available(&mut self) -> io::Result<()> {
        loop {
            self.parse()?;
            if self.done() {
                return Ok(());
            }
            if self.end == self.buf.len() {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
            match self.stream.try_read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(err("the HTTP API closed the connection before answering")),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Consumes the complete responses at the front of the buffer.
    fn parse(&mut self) -> io::Result<()> {
        let mut start = 0;
        loop {
            let b = &self.buf[start..self.end];
            let Some(head_end) = find_bytes(b, b"\r\n\r\n") else {
                break;
            };
            let head = &b[..head_end];
            if !head.starts_with(b"HTTP/1.1 200") {
                let line = head.split(|&c| c == b'\r').next().unwrap_or_default();
                let body = String::from_utf8_lossy(&b[head_end + 4..b.len().min(head_end + 300)]);
                return Err(err(format!(
                    "the HTTP API answered {}: {body}",
                    String::from_utf8_lossy(line)
                )));
            }
            let text = String::from_utf8_lossy(head).to_ascii_lowercase();
            if text.contains("transfer-encoding: chunked") {
                return Err(err("a chunked HTTP API response (not supported)"));
            }
            let len = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| err("an HTTP API response without Content-Length"))?;
            if b.len() < head_end + 4 + len {
                break;
            }
            start += head_end + 4 + len;
            self.answered += 1;
        }
        self.buf.copy_within(start..self.end, 0);
        self.end -= start;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_events_and_their_data() {
        let msg = br#"{"event":"msg","channel":"bench","data":"0123456789"}"#;
        assert!(is_event(msg, "msg"));
        assert!(!is_event(msg, "pusher:ping"));
        assert_eq!(data(msg, 4), Some(&b"0123"[..]));
        assert_eq!(data(msg, 40), None);
    }

    #[test]
    fn signs_as_the_pusher_libraries_do() {
        // The "worked authentication example" of Pusher's HTTP API reference.
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        use md5::Digest as _;
        assert_eq!(
            hex(&md5::Md5::digest(body.as_bytes())),
            "ec365a775a4cd0599faeb73354201b6f"
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"7ad3773142a6692b25b8").unwrap();
        mac.update(
            b"POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179\
              &auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f",
        );
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
        let mut out = Vec::new();
        publish_request(&mut out, "127.0.0.1:1".parse().unwrap(), "c", "x", 7);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("POST /apps/bench/events?auth_key=bench-key&auth_timestamp=7&"));
        assert!(text.ends_with(r#"{"name":"msg","channels":["c"],"data":"x"}"#));
    }
}
