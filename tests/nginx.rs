//! The WebSocket path through a real nginx (Debian's package, started here on a
//! free loopback port from a temporary directory), configured with exactly the
//! block the README documents: the upgrade passes, the server sees the client
//! nginx names in `X-Forwarded-For` (with 127.0.0.1, nginx, as the trusted
//! proxy; a client's own `X-Forwarded-For` changes nothing), and an idle
//! WebSocket outlives nginx's `proxy_read_timeout` thanks to the server's pings
//! (and does not without them).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use framework::session::Connection;
use framework::{App, AppHandle, Config};
use framework_tests::engines::free_port;
use framework_tests::tools::TempDir;
use framework_tests::{any_port, tcp_from, Ending, RawWs, DEADLINE};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

const README: &str = include_str!("../README.md");
const MARKER: &str = "<!-- tests/nginx.rs reads the nginx block below. -->";
/// nginx closes an upstream connection silent this long (the README says 75s).
const READ_TIMEOUT: &str = "1s";

/// The README's nginx block, for a server on `server` and nginx on `port`.
fn documented_block(server: SocketAddr, port: u16) -> String {
    let after = README.split(MARKER).nth(1).expect("the README's marker");
    let block = after
        .split("```nginx\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the README's nginx block");
    let mut block = block.to_string();
    for (documented, here) in [
        ("server 127.0.0.1:8080;", format!("server {server};")),
        ("listen 80;", format!("listen 127.0.0.1:{port};")),
        (
            "proxy_read_timeout 75s;",
            format!("proxy_read_timeout {READ_TIMEOUT};"),
        ),
    ] {
        assert_eq!(
            block.matches(documented).count(),
            1,
            "the README's nginx block has `{documented}` once"
        );
        block = block.replace(documented, &here);
    }
    block
}

/// An nginx process, in single-process mode (so killing it leaves no worker
/// behind), with everything it writes in its own directory.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Nginx {
    fn start(server: SocketAddr) -> Nginx {
        let dir = TempDir::new(Path::new(env!("CARGO_TARGET_TMPDIR")), "nginx");
        let d = dir.0.display();
        let port = free_port();
        let conf = format!(
            "error_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             access_log off;\n\
             client_body_temp_path {d}/client_body;\n\
             proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             {}\n}}\n",
            documented_block(server, port)
        );
        std::fs::write(dir.0.join("nginx.conf"), conf).expect("write nginx.conf");
        let binary = if Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        let child = Command::new(binary)
            .arg("-e")
            .arg(dir.0.join("error.log"))
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(dir.0.join("nginx.conf"))
            .arg("-g")
            .arg(format!(
                "daemon off; master_process off; pid {d}/nginx.pid;"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run nginx ({e}): scripts/test.sh installs Debian's nginx package")
            });
        let mut nginx = Nginx {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        nginx.wait_listening();
        nginx
    }

    fn wait_listening(&mut self) {
        let deadline = std::time::Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(self.addr).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited ({status}): {}", self.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nginx does not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server trusting nginx (127.0.0.1), pinging quiet sessions every
/// `ping_interval`; opcode 200 answers the session's client address.
async fn server(ping_interval: Duration) -> AppHandle {
    App::new()
        .config(Config {
            ping_interval,
            trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
            ..Config::default()
        })
        .register_custom_handler(200, |conn: Connection| {
            conn.peer_addr().to_string().into_bytes()
        })
        .run_service(any_port())
        .start()
        .await
        .expect("server starts")
}

/// A session through nginx from 127.0.0.2, which claims to be 6.6.6.6.
async fn through(nginx: &Nginx) -> RawWs {
    let tcp = tcp_from("127.0.0.2", nginx.addr).await;
    let url = format!("ws://{}/ws", nginx.addr);
    let (ws, welcome) = RawWs::handshake(tcp, &url, &[("X-Forwarded-For", "6.6.6.6")])
        .await
        .unwrap_or_else(|status| panic!("upgrade through nginx refused: {status}"));
    assert_eq!(welcome.opcode_enum(), framework::protocol::Opcode::Welcome);
    ws
}

async fn client_address(ws: &mut RawWs) -> String {
    let reply = ws.request(framework::protocol::FrameFields::new(200)).await;
    String::from_utf8_lossy(&reply.payload()).into_owned()
}

#[tokio::test]
async fn a_websocket_through_nginx_sees_its_client_and_outlives_the_read_timeout() {
    let server = server(Duration::from_millis(300)).await;
    let nginx = Nginx::start(server.service_addr());
    let mut ws = through(&nginx).await;
    // nginx connects from 127.0.0.1 and appends 127.0.0.2 to the client's claim.
    assert_eq!(client_address(&mut ws).await, "127.0.0.2:0");

    // Quiet for three read timeouts: only the server's pings cross nginx (and the
    // client's pongs, sent as it reads).
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut pings = 0;
    loop {
        match tokio::time::timeout_at(quiet_until, ws.ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(other) => panic!("the idle WebSocket ended: {other:?}\n{}", nginx.log()),
        }
    }
    assert!(pings >= 3, "{pings} pings in 3 s at a 300 ms interval");
    assert_eq!(client_address(&mut ws).await, "127.0.0.2:0", "still open");
    server.shutdown().await;
}

#[tokio::test]
async fn without_the_servers_pings_nginx_closes_an_idle_websocket() {
    let server = server(Duration::ZERO).await;
    let nginx = Nginx::start(server.service_addr());
    let mut ws = through(&nginx).await;
    assert_eq!(client_address(&mut ws).await, "127.0.0.2:0");
    let started = std::time::Instant::now();
    let ending = ws.drain(DEADLINE).await;
    assert_ne!(
        ending,
        Ending::TimedOut,
        "nginx closes after {READ_TIMEOUT}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed by the read timeout, not before: {:?}",
        started.elapsed()
    );
    server.shutdown().await;
}
