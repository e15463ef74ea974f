//! Helpers shared by the end-to-end tests: start a server on `127.0.0.1:0`, connect
//! clients, and speak raw WebSocket when a test needs to send malformed input.

pub mod http;
pub mod tls;

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framework::client::{Client, ClientError};
use framework::protocol::{DecodeLimits, ErrorCode, Frame, FrameFields};
use framework::{App, AppHandle};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should happen promptly (generous, so a
/// loaded machine does not make a test flaky; a passing test never waits this long).
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A loopback address with a free port.
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

/// Starts `app` with a protocol WebSocket service on a free loopback port.
pub async fn start(app: App) -> AppHandle {
    app.run_websocket_service(any_port())
        .start()
        .await
        .expect("server starts")
}

/// Starts `app` (with a protocol service) and returns the error `start` fails with.
pub async fn start_err(app: App) -> framework::app::AppError {
    app.run_websocket_service(any_port())
        .start()
        .await
        .expect_err("start must refuse this app")
}

/// The `ws://` URL of a running server.
pub fn url(handle: &AppHandle) -> String {
    format!("ws://{}/", handle.websocket_addr())
}

/// A connected protocol client.
pub async fn client(handle: &AppHandle) -> Client {
    Client::connect(&url(handle))
        .await
        .expect("client connects")
}

/// A TCP connection to `to` from the loopback address `from` (all of 127.0.0.0/8
/// is loopback on Linux), so that a test can be a client other than 127.0.0.1.
pub async fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("a loopback address");
    socket.bind(local).expect("bind a loopback address");
    socket.connect(to).await.expect("tcp connect")
}

/// Polls `condition` every few milliseconds until it holds; panics naming `what`
/// when it still does not hold after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// [`eventually`] with an async condition.
pub async fn eventually_async<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asserts that a client call failed with an `Error` frame carrying `code`; returns
/// the server's message.
#[track_caller]
pub fn expect_server_error<T: Debug>(result: Result<T, ClientError>, code: ErrorCode) -> String {
    match result {
        Err(ClientError::Server {
            code: got, message, ..
        }) => {
            assert_eq!(got, code, "error code (message: {message:?})");
            message
        }
        other => panic!("expected an Error frame with {code:?}, got {other:?}"),
    }
}

/// How a raw socket's stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A close frame (with its code, if it had one).
    Close(Option<u16>),
    /// The stream ended or failed without a close frame.
    Dropped,
    /// Still open when the deadline passed.
    TimedOut,
}

/// A raw WebSocket to the server, for sending what the client would never send.
pub struct RawWs {
    /// The socket.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawWs {
    /// Connects and consumes the `Welcome` frame.
    pub async fn connect(handle: &AppHandle) -> (RawWs, Frame) {
        let (ws, _) = tokio_tungstenite::connect_async(url(handle))
            .await
            .expect("raw connect");
        let mut raw = RawWs { ws };
        let welcome = raw.next_frame().await.expect("welcome");
        (raw, welcome)
    }

    /// Connects over a socket whose kernel receive buffer is `recv_buffer` bytes (set
    /// before connecting, so the kernel does not grow it), and consumes `Welcome`.
    /// Never reading from it afterwards makes it a consumer that cannot keep up.
    pub async fn connect_with_recv_buffer(handle: &AppHandle, recv_buffer: u32) -> (RawWs, Frame) {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .set_recv_buffer_size(recv_buffer)
            .expect("set SO_RCVBUF");
        let tcp = socket
            .connect(handle.websocket_addr())
            .await
            .expect("tcp connect");
        let (ws, _) = tokio_tungstenite::client_async(url(handle), MaybeTlsStream::Plain(tcp))
            .await
            .expect("raw handshake");
        let mut raw = RawWs { ws };
        let welcome = raw.next_frame().await.expect("welcome");
        (raw, welcome)
    }

    /// The WebSocket handshake to `url` over `tcp` (which may have carried a
    /// PROXY protocol header already), with `headers` added; consumes `Welcome`.
    /// A refused upgrade is its HTTP status.
    pub async fn handshake(
        tcp: TcpStream,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<(RawWs, Frame), u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().expect("a ws:// URL");
        for (name, value) in headers {
            request.headers_mut().append(
                tokio_tungstenite::tungstenite::http::header::HeaderName::from_bytes(
                    name.as_bytes(),
                )
                .expect("a header name"),
                value.parse().expect("a header value"),
            );
        }
        match tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)).await {
            Ok((ws, _)) => {
                let mut raw = RawWs { ws };
                let welcome = raw.next_frame().await.expect("welcome");
                Ok((raw, welcome))
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(e) => panic!("the handshake failed without an HTTP answer: {e}"),
        }
    }

    /// Makes dropping this socket reset the TCP connection (`SO_LINGER` 0) instead
    /// of closing it in order.
    pub fn reset_on_drop(&self) {
        match self.ws.get_ref() {
            MaybeTlsStream::Plain(tcp) => tcp.set_zero_linger().expect("linger"),
            _ => unreachable!("tests use plain TCP"),
        }
    }

    /// Sends an encoded frame.
    pub async fn send_fields(&mut self, fields: FrameFields<'_>) {
        self.send_binary(fields.encode()).await;
    }

    /// Sends a frame and returns the next frame the server sends.
    pub async fn request(&mut self, fields: FrameFields<'_>) -> Frame {
        self.send_fields(fields).await;
        self.next_frame().await.expect("an answer")
    }

    /// Reads (and discards) everything until the stream ends, for at most `timeout`.
    pub async fn drain(&mut self, timeout: Duration) -> Ending {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ending::TimedOut,
                Ok(None) | Ok(Some(Err(_))) => return Ending::Dropped,
                Ok(Some(Ok(Message::Close(c)))) => {
                    return Ending::Close(c.map(|c| u16::from(c.code)))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Sends one binary message.
    pub async fn send_binary(&mut self, bytes: impl Into<Bytes>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }

    /// Sends any message.
    pub async fn send(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    /// The next message within 10 s (`None` when the stream ended or timed out).
    pub async fn next_message(&mut self) -> Option<Message> {
        match tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await {
            Ok(Some(Ok(m))) => Some(m),
            _ => None,
        }
    }

    /// The next binary message decoded as a protocol frame.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match self.next_message().await? {
                Message::Binary(b) => {
                    return Some(
                        Frame::decode(b, &DecodeLimits::for_max_size(64 << 20))
                            .expect("server frames verify"),
                    )
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads until a close frame arrives and returns its code (`None`: no close frame).
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next_message().await? {
                Message::Close(Some(c)) => return Some(c.code.into()),
                Message::Close(None) => return None,
                _ => continue,
            }
        }
    }
}

/// Running the external tools of the cross-language tests (python3, flatc).
pub mod tools {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    /// A fresh directory under `base` (a test's `CARGO_TARGET_TMPDIR`), removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        /// Creates `base/prefix-<pid>-<uuid>`.
        pub fn new(base: &Path, prefix: &str) -> TempDir {
            let dir = base.join(format!(
                "{prefix}-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4()
            ));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The interpreter: `$PYTHON` (as in `scripts/test.sh`) or `python3`.
    pub fn python() -> String {
        std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
    }

    /// A tool's status and output, for assertion messages.
    pub fn show(out: &Output) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Runs `cmd`; a program that is not installed fails the test with a pointer to
    /// `scripts/test.sh`, which installs python3's packages and flatc.
    pub fn run_tool(cmd: &mut Command, what: &str) -> Output {
        match cmd.output() {
            Ok(out) => out,
            Err(e) => panic!(
                "cannot run {what} ({e}): this test needs python3 (with the packages of \
                 tests/python/requirements.txt) and flatc 25.12.19 on PATH; run \
                 scripts/test.sh, which installs them"
            ),
        }
    }
}

/// This process's resident memory, in MiB (`VmRSS`).
pub fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kib / 1024
}

/// A server running as a child process, killed when dropped.
pub struct Serving(pub std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` (a `main!` binary) with its stderr piped: every line it logs
/// arrives on the receiver.
pub fn spawn_logging(
    cmd: &mut std::process::Command,
) -> (Serving, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end even when nobody listens any more: a full pipe would
        // block the binary's logging.
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    (Serving(child), rx)
}

/// The address a text log line lists as `name=[addr]` (the first, when several).
pub fn listed_addr(line: &str, name: &str) -> Option<SocketAddr> {
    let rest = line.split(&format!("{name}=[")).nth(1)?;
    rest.split([']', ',']).next()?.parse().ok()
}

/// Starts `cmd` (a `main!` binary) and reads its log until it says where its
/// protocol service listens (`websocket=[addr]`); a log line with "error" first
/// fails the test. The binary's log line saying it serves is returned too.
pub fn serve_logged(cmd: &mut std::process::Command) -> (Serving, SocketAddr, String) {
    let (child, lines) = spawn_logging(cmd);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the binary logs its addresses");
        if let Some(addr) = listed_addr(&line, "websocket") {
            return (child, addr, line);
        }
        assert!(!line.contains("error"), "the binary failed: {line}");
    }
}

/// [`serve_logged`], without the line.
pub fn serve(cmd: &mut std::process::Command) -> (Serving, SocketAddr) {
    let (child, addr, _) = serve_logged(cmd);
    (child, addr)
}

/// Runs each scenario (an `async fn(V)`) once per variant, each in a module of
/// its own: `on_every!(Kind { redis => Redis, nats => Nats } [scenario_a, scenario_b]);`
/// makes the tests `redis::scenario_a`, `nats::scenario_a`, ... calling
/// `scenario_a(Kind::Redis)` and so on.
#[macro_export]
macro_rules! on_every {
    ($kind:ident { $($module:ident => $variant:ident),* $(,)? } $scenarios:tt) => {
        $( $crate::on_every!(@module $kind, $module, $variant, $scenarios); )*
    };
    (@module $kind:ident, $module:ident, $variant:ident, [$($scenario:ident),* $(,)?]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::$kind::$variant).await
                }
            )*
        }
    };
}

/// Cluster engines run by the tests as real processes on free loopback ports.
pub mod engines {
    use std::io::Read;
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    /// A free loopback port (bound and released: the engine binds it next).
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    /// Which engine.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        /// Debian's `redis-server`.
        Redis,
        /// Debian's `nats-server`.
        Nats,
    }

    /// An engine process, killed on drop (NATS with JetStream, its store in a
    /// directory of its own, removed on drop).
    pub struct Engine {
        child: Option<Child>,
        store: Option<std::path::PathBuf>,
        /// Which engine it is.
        pub kind: Kind,
        /// The port it listens on.
        pub port: u16,
    }

    impl Engine {
        /// Starts one on a free port and waits until it answers.
        pub fn start(kind: Kind) -> Engine {
            Self::start_on(kind, free_port())
        }

        /// Starts one on `port` (again, after a kill) and waits until it answers.
        pub fn start_on(kind: Kind, port: u16) -> Engine {
            let p = port.to_string();
            let mut store = None;
            let mut cmd = match kind {
                Kind::Redis => {
                    let mut c = Command::new("redis-server");
                    c.args(["--port", &p, "--bind", "127.0.0.1"]).args([
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--protected-mode",
                        "no",
                    ]);
                    c
                }
                Kind::Nats => {
                    let dir = std::env::temp_dir().join(format!(
                        "framework-nats-{}-{}",
                        std::process::id(),
                        uuid::Uuid::new_v4().as_simple()
                    ));
                    let mut c = Command::new("nats-server");
                    c.args(["-a", "127.0.0.1", "-p", &p, "-js", "-sd"])
                        .arg(&dir);
                    store = Some(dir);
                    c
                }
            };
            let child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{kind:?} engine does not run ({e}): scripts/test.sh installs Debian's redis-server and nats-server")
                });
            let engine = Engine {
                child: Some(child),
                store,
                kind,
                port,
            };
            engine.wait_ready();
            engine
        }

        /// A cluster over this engine with fast heartbeats (200 ms, dead after
        /// 1 s) and a short timeout (1.5 s): faults show within the tests'
        /// patience.
        pub fn cluster(&self, prefix: &str) -> framework::config::ClusterConfig {
            framework::config::ClusterConfig {
                prefix: prefix.into(),
                heartbeat_interval: Duration::from_millis(200),
                heartbeat_timeout: Duration::from_secs(1),
                timeout: Duration::from_millis(1500),
                ..framework::config::ClusterConfig::new(self.url())
            }
        }

        /// The URL the cluster connects to.
        pub fn url(&self) -> String {
            match self.kind {
                Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
                Kind::Nats => format!("nats://127.0.0.1:{}", self.port),
            }
        }

        fn wait_ready(&self) {
            for _ in 0..500 {
                if self.answers() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("{:?} on port {} did not start", self.kind, self.port);
        }

        fn answers(&self) -> bool {
            match self.kind {
                Kind::Redis => self.cli(&["PING"]).is_some_and(|o| o.contains("PONG")),
                Kind::Nats => {
                    let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
                        return false;
                    };
                    let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = [0u8; 4];
                    tcp.read_exact(&mut buf).is_ok() && &buf == b"INFO"
                }
            }
        }

        /// Runs `redis-cli` against a Redis; its output, when it ran.
        pub fn cli(&self, args: &[&str]) -> Option<String> {
            let out = Command::new("redis-cli")
                .args(["-p", &self.port.to_string()])
                .args(args)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        }

        fn pid(&self) -> u32 {
            self.child.as_ref().map_or(0, |c| c.id())
        }

        /// Sends `signal` (e.g. `"-STOP"`, `"-CONT"`) to the process.
        pub fn signal(&self, signal: &str) {
            let status = Command::new("kill")
                .args([signal, &self.pid().to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill {signal}");
            if signal == "-STOP" {
                // `kill` returns once the signal is sent; a thread running on
                // another CPU stops a moment later. Wait until every thread is
                // stopped, or a request could still be answered after this.
                let tasks = format!("/proc/{}/task", self.pid());
                let stopped = || {
                    std::fs::read_dir(&tasks).is_ok_and(|dir| {
                        dir.flatten().all(|task| {
                            std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                                // The state follows the command's closing parenthesis.
                                stat.rsplit_once(") ")
                                    .is_some_and(|(_, rest)| rest.starts_with(['T', 't']))
                            })
                        })
                    })
                };
                for _ in 0..500 {
                    if stopped() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                panic!("{:?} on port {} did not stop", self.kind, self.port);
            }
        }

        /// `kill -9`, and waits for the process to be gone.
        pub fn kill(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for Engine {
        fn drop(&mut self) {
            if let Some(child) = self.child.as_ref() {
                // A stopped process cannot die until it is continued.
                let _ = Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .status();
            }
            self.kill();
            if let Some(dir) = self.store.take() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}
