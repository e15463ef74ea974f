//! A tiny HTTP/1.1 client over a plain `TcpStream`, for tests of `run_service`: it
//! writes exactly the request a test asks for (any method, path and headers, even
//! ones a real client would refuse to send) and reads the status line, the headers
//! and a `Content-Length`, chunked or read-to-end body.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::DEADLINE;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (empty for `101 Switching Protocols`).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request to send: method, path, extra headers and a body. `Host`,
/// `Connection: close` and (when there is a body) `Content-Length` are added.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The request target, e.g. `/healthz`.
    pub path: &'a str,
    /// Extra headers.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The body.
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// A `GET` of `path`.
    pub fn get(path: &'a str) -> Self {
        Self {
            method: "GET",
            path,
            ..Self::default()
        }
    }

    /// A `POST` of `body` to `path` with `Content-Type: application/json`.
    pub fn post_json(path: &'a str, body: &'a str) -> Self {
        Self {
            method: "POST",
            path,
            headers: vec![("Content-Type", "application/json")],
            body: body.as_bytes(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The bytes of the request.
    pub fn to_bytes(&self, addr: SocketAddr) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n",
            self.method, self.path
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() || self.method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body);
        bytes
    }
}

/// Sends `request` on a new connection to `addr` and reads the response; panics when
/// that takes longer than [`DEADLINE`].
pub async fn send(addr: SocketAddr, request: Request<'_>) -> Response {
    let what = format!("{} {}", request.method, request.path);
    tokio::time::timeout(DEADLINE, async {
        let mut tcp = TcpStream::connect(addr).await.expect("tcp connect");
        tcp.write_all(&request.to_bytes(addr))
            .await
            .expect("write request");
        read_response(&mut tcp).await
    })
    .await
    .unwrap_or_else(|_| panic!("no answer to {what} within {DEADLINE:?}"))
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    send(addr, Request::get(path)).await
}

/// Reads one response from `stream`. A `101` response ends after its headers (the
/// stream then speaks another protocol).
pub async fn read_response(stream: &mut TcpStream) -> Response {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    assert!(
        version.starts_with("HTTP/1."),
        "not an HTTP response: {line:?}"
    );
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));

    let mut headers = Vec::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).await.expect("header line");
        assert!(n > 0, "connection closed inside the response head");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l
            .split_once(':')
            .unwrap_or_else(|| panic!("bad header line {l:?}"));
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if status == 101 || status == 204 || status == 304 {
        return response;
    }
    if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().expect("numeric Content-Length");
        let mut body = vec![0; len];
        reader.read_exact(&mut body).await.expect("body");
        response.body = body;
    } else if response
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            line.clear();
            reader.read_line(&mut line).await.expect("chunk size");
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {line:?}"));
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.expect("chunk");
            if size == 0 {
                break;
            }
            response.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        reader
            .read_to_end(&mut response.body)
            .await
            .expect("body to the end");
    }
    response
}

/// The headers of a WebSocket upgrade request (version 13, a fixed valid key).
pub fn upgrade_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]
}

/// The value of the Prometheus sample `name{labels}` (or `name` without labels) in
/// a `/metrics` text, e.g. `metric(text, r#"framework_frames_in_total{opcode="Ping"}"#)`.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().ok()).flatten()
    })
}
