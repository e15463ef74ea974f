//! Session lifecycle end to end: cleanup after every kind of disconnect, the idle
//! timeout, and graceful shutdown (1001 to every session, queued deliveries flushed
//! first, the port closed, and no waiting on sessions that are gone).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use framework::client::{Client, ClientError};
use framework::protocol::{ErrorCode, FrameFields, Opcode};
use framework::{App, AppHandle, Config};
use framework_tests::{client, eventually, start, RawWs, DEADLINE};
use tokio::net::TcpStream;
use uuid::Uuid;

/// How the client under test goes away.
#[derive(Debug, Clone, Copy)]
enum Disconnect {
    /// `Client::close`: a close frame, then the TCP connection ends.
    Close,
    /// The `Client` is dropped.
    DropClient,
    /// The TCP connection ends (FIN) without a close frame.
    DropTcp,
    /// The TCP connection is reset (RST).
    ResetTcp,
}

/// Polls `Send` to `id` until the server answers `NotFound`.
async fn until_send_is_not_found(observer: &Client, id: Uuid) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match observer.send_to(id, b"still there?").await {
            Ok(()) => {}
            Err(ClientError::Server { code, .. }) if code == ErrorCode::NotFound => return,
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "Send to a disconnected session still succeeds after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn disconnect_is_cleaned_up(how: Disconnect) {
    let server = start(App::new()).await;
    let node = server.node().clone();
    let observer = client(&server).await;
    observer.subscribe("room").await.unwrap();

    let (gone_id, gone): (Uuid, Box<dyn FnOnce() + Send>) = match how {
        Disconnect::Close | Disconnect::DropClient => {
            let c = client(&server).await;
            c.subscribe("room").await.unwrap();
            c.subscribe("solo").await.unwrap();
            let id = c.session_id();
            match how {
                Disconnect::Close => (id, Box::new(move || c.close())),
                _ => (id, Box::new(move || drop(c))),
            }
        }
        Disconnect::DropTcp | Disconnect::ResetTcp => {
            let (mut raw, welcome) = RawWs::connect(&server).await;
            for channel in ["room", "solo"] {
                let ack = raw
                    .request(
                        FrameFields::new(Opcode::Subscribe.0)
                            .channel(channel)
                            .requires_ack(true),
                    )
                    .await;
                assert_eq!(ack.opcode(), Opcode::Ack.0);
            }
            if let Disconnect::ResetTcp = how {
                raw.reset_on_drop();
            }
            (welcome.receiver_id().unwrap(), Box::new(move || drop(raw)))
        }
    };
    assert_eq!(node.hub().session_count(), 2);
    assert_eq!(node.hub().subscriber_count("room"), 2);
    assert_eq!(node.hub().subscriber_count("solo"), 1);
    let closed_before = node.metrics().sessions_closed.load(Relaxed);

    gone();
    until_send_is_not_found(&observer, gone_id).await;
    eventually("the hub forgets the session", DEADLINE, || {
        node.hub().session_count() == 1
            && node.hub().subscriber_count("room") == 1
            && node.hub().subscriber_count("solo") == 0
            && node.hub().channel_count() == 1
    })
    .await;
    eventually("sessions_closed counts it", DEADLINE, || {
        node.metrics().sessions_closed.load(Relaxed) == closed_before + 1
    })
    .await;

    // Publishing to its channels still works for the others.
    observer.publish("room", b"after").await.unwrap();
    let d = observer.recv_timeout(DEADLINE).await.expect("delivery");
    assert_eq!(&d.payload()[..], b"after");
    observer.publish("solo", b"to nobody").await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn a_closed_client_is_cleaned_up() {
    disconnect_is_cleaned_up(Disconnect::Close).await;
}

#[tokio::test]
async fn a_dropped_client_is_cleaned_up() {
    disconnect_is_cleaned_up(Disconnect::DropClient).await;
}

#[tokio::test]
async fn a_tcp_drop_without_close_frame_is_cleaned_up() {
    disconnect_is_cleaned_up(Disconnect::DropTcp).await;
}

#[tokio::test]
async fn a_tcp_reset_is_cleaned_up() {
    disconnect_is_cleaned_up(Disconnect::ResetTcp).await;
}

#[tokio::test]
async fn an_idle_session_is_closed_with_1000() {
    let server = start(App::new().config(Config {
        idle_timeout: Duration::from_millis(200),
        ..Config::default()
    }))
    .await;
    let (mut raw, welcome) = RawWs::connect(&server).await;
    let id = welcome.receiver_id().unwrap();
    assert_eq!(raw.close_code().await, Some(1000));
    let node = server.node().clone();
    eventually("the idle session leaves the hub", DEADLINE, || {
        node.hub().session(&id).is_none()
    })
    .await;
    server.shutdown().await;
}

fn shutdown_config() -> Config {
    Config {
        // Long, so that "prompt" is clearly distinguishable from "timed out".
        shutdown_timeout: Duration::from_secs(3),
        ..Config::default()
    }
}

/// Shuts `server` down and returns how long it took.
async fn timed_shutdown(server: AppHandle) -> Duration {
    let started = Instant::now();
    server.shutdown().await;
    started.elapsed()
}

/// The longest a shutdown may take and still count as prompt.
const PROMPT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_every_session_with_1001() {
    let server = start(App::new().config(shutdown_config())).await;
    let node = server.node().clone();
    let addr = server.websocket_addr();

    let clients = [
        client(&server).await,
        client(&server).await,
        client(&server).await,
    ];
    let (mut silent, _) = RawWs::connect(&server).await;
    let (mut sub, _) = RawWs::connect(&server).await;
    let ack = sub
        .request(
            FrameFields::new(Opcode::Subscribe.0)
                .channel("news")
                .requires_ack(true),
        )
        .await;
    assert_eq!(ack.opcode(), Opcode::Ack.0);
    // Deliveries queued (acked publishes) before shutdown are flushed before 1001.
    for n in 0..20u8 {
        clients[0].publish("news", &[n]).await.unwrap();
    }
    assert_eq!(node.hub().session_count(), 5);

    let shutdown = tokio::spawn(timed_shutdown(server));

    for n in 0..20u8 {
        let d = sub
            .next_frame()
            .await
            .expect("queued delivery before the close");
        assert_eq!(&d.payload()[..], &[n]);
    }
    assert_eq!(sub.close_code().await, Some(1001));
    assert_eq!(silent.close_code().await, Some(1001));
    for c in &clients {
        eventually("the client receives 1001", DEADLINE, || {
            c.close_frame().map(|(code, _)| code) == Some(1001)
        })
        .await;
    }

    let took = shutdown.await.expect("shutdown task");
    assert!(
        took < PROMPT,
        "shutdown took {took:?}; it must not wait out shutdown_timeout"
    );
    assert_eq!(node.hub().session_count(), 0);
    assert_eq!(
        node.metrics().sessions_closed.load(Relaxed),
        node.metrics().sessions_opened.load(Relaxed)
    );
    // The port refuses new connections.
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the port still accepts after shutdown");
}

#[tokio::test]
async fn a_closed_clients_calls_fail_with_closed() {
    let server = start(App::new()).await;
    let url = framework_tests::url(&server);
    // A short call timeout, so that a hanging call fails this test quickly.
    let c = Client::connect(&url)
        .await
        .unwrap()
        .with_timeout(Duration::from_secs(3));
    server.shutdown().await;
    eventually("the client receives 1001", DEADLINE, || {
        c.close_frame().map(|(code, _)| code) == Some(1001)
    })
    .await;
    assert!(c.recv_timeout(DEADLINE).await.is_none(), "recv ends: None");
    let r = c.ping().await;
    assert!(
        matches!(r, Err(ClientError::Closed)),
        "a call on a closed connection must fail with Closed, got {r:?}"
    );
    let r = c.publish("news", b"x").await;
    assert!(matches!(r, Err(ClientError::Closed)), "got {r:?}");
}

#[tokio::test]
async fn shutdown_without_sessions_is_immediate_and_closes_the_port() {
    let server = start(App::new().config(shutdown_config())).await;
    let addr = server.websocket_addr();
    let c = client(&server).await;
    c.close();
    let node = server.node().clone();
    eventually("the closed session is gone", DEADLINE, || {
        node.hub().session_count() == 0
    })
    .await;
    let took = timed_shutdown(server).await;
    assert!(took < PROMPT, "shutdown took {took:?}");
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_connection_that_never_upgrades_does_not_delay_shutdown() {
    let server = start(App::new().config(shutdown_config())).await;
    let addr = server.websocket_addr();
    let node = server.node().clone();
    let session = client(&server).await;
    // A TCP connection that never sends its HTTP upgrade request.
    let idle_tcp = TcpStream::connect(addr).await.expect("tcp connect");
    session.ping().await.unwrap();
    assert_eq!(node.hub().session_count(), 1);

    let took = timed_shutdown(server).await;
    assert!(
        took < PROMPT,
        "shutdown took {took:?}: it waited for a handshake that will never come \
         (shutdown_timeout is {:?}, handshake_timeout {:?})",
        shutdown_config().shutdown_timeout,
        Config::default().handshake_timeout,
    );
    eventually("the session receives 1001", DEADLINE, || {
        session.close_frame().map(|(c, _)| c) == Some(1001)
    })
    .await;
    drop(idle_tcp);
}

/// The backlog the kernel gives the listening socket on `addr`, as `ss` reads it
/// (its Send-Q column for a listener), and the cap `net.core.somaxconn` puts on it.
fn listen_backlog(addr: std::net::SocketAddr) -> (u32, u32) {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", addr.port())])
        .output()
        .expect("ss (Debian's iproute2, installed by scripts/test.sh) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(&addr.to_string()))
        .unwrap_or_else(|| panic!("no listener on {addr} in `ss -ltn`: {text:?}"));
    let backlog = line.split_whitespace().nth(2).and_then(|q| q.parse().ok());
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("/proc/sys/net/core/somaxconn")
        .trim()
        .parse()
        .expect("a number");
    (
        backlog.unwrap_or_else(|| panic!("no Send-Q in {line:?}")),
        somaxconn,
    )
}

#[tokio::test]
async fn every_listener_queues_listen_backlog_connections() {
    // The default: a burst of reconnecting clients is not cut at 128 (tokio's
    // and the standard library's backlog), where the 129th SYN is dropped and
    // its client waits a second.
    let server = App::new()
        .run_websocket_service(framework_tests::any_port())
        .run_service(framework_tests::any_port())
        .start()
        .await
        .expect("server starts");
    for addr in [server.websocket_addr(), server.service_addr()] {
        let (backlog, somaxconn) = listen_backlog(addr);
        assert_eq!(backlog, Config::default().listen_backlog.min(somaxconn));
        assert!(backlog > 128, "{addr}: backlog {backlog}");
    }
    server.shutdown().await;

    // Configured.
    let server = start(App::new().config(Config {
        listen_backlog: 300,
        ..Config::default()
    }))
    .await;
    let (backlog, somaxconn) = listen_backlog(server.websocket_addr());
    assert_eq!(backlog, 300.min(somaxconn));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_prompt_during_a_connection_flood() {
    // Connections keep arriving while the server shuts down, none of them
    // sending its upgrade request: the accept loop, which takes whole bursts
    // off the listen queue, still stops, and the hundreds of connections in
    // their handshake do not hold the shutdown up (nor wait out
    // `handshake_timeout`).
    let server = start(App::new().config(Config {
        // Short turns: the loop checks for the shutdown at the end of each.
        listen_backlog: 128,
        ..shutdown_config()
    }))
    .await;
    let addr = server.websocket_addr();
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let connected = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let (flooding, connected) = (flooding.clone(), connected.clone());
            tokio::spawn(async move {
                let mut held = Vec::new();
                while flooding.load(Relaxed) {
                    match TcpStream::connect(addr).await {
                        Ok(tcp) => {
                            connected.fetch_add(1, Relaxed);
                            held.push(tcp);
                            if held.len() >= 200 {
                                held.clear();
                            }
                        }
                        // Refused once the listener is closed.
                        Err(_) => tokio::task::yield_now().await,
                    }
                }
            })
        })
        .collect();
    eventually("the flood is under way", DEADLINE, || {
        connected.load(Relaxed) > 1_000
    })
    .await;
    let took = timed_shutdown(server).await;
    flooding.store(false, Relaxed);
    for f in flooders {
        f.await.expect("flooder");
    }
    assert!(took < PROMPT, "shutdown took {took:?} during a flood");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port still accepts"
    );
}
