//! The cluster over real engines — Debian's `redis-server` and `nats-server`,
//! started here on free loopback ports — every scenario once per engine: framework
//! nodes in this process (and one in its own process), clients on each. Publish,
//! Send, Broadcast and the HTTP server API cross nodes, exactly once and in order;
//! `Welcome.node_id` and `owner_of` are real; a channel nobody on a node listens
//! to never reaches that node; and the faults: the engine killed and restarted
//! (`/readyz` 503 meanwhile), paused, its subscription connection dropped, a
//! node killed.

use std::time::Duration;

use framework::client::Client;
use framework::config::ClusterConfig;
use framework::protocol::{ErrorCode, Opcode};
use framework::{App, AppHandle, Config};
use framework_tests::engines::{Engine, Kind};
use framework_tests::http::{self, Request};
use framework_tests::{any_port, eventually, expect_server_error, DEADLINE};
use uuid::Uuid;

async fn node(cluster: ClusterConfig) -> AppHandle {
    App::new()
        .config(Config {
            cluster: Some(cluster),
            api_key: Some("key".into()),
            ..Config::default()
        })
        .run_websocket_service(any_port())
        .run_service(any_port())
        .start()
        .await
        .expect("node starts")
}

async fn client(node: &AppHandle) -> Client {
    Client::connect(&format!("ws://{}/", node.websocket_addr()))
        .await
        .expect("connects")
}

/// Every payload `c` receives within `wait`.
async fn received(c: &Client, wait: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Some(f) = c.recv_timeout(wait).await {
        got.push(f.payload().to_vec());
    }
    got
}

fn received_by(node: &AppHandle) -> u64 {
    node.node()
        .broker()
        .cluster_stats()
        .expect("a cluster broker")
        .received
        .load(std::sync::atomic::Ordering::Relaxed)
}

async fn publish_send_broadcast_and_the_api_cross_nodes_exactly_once_in_order(kind: Kind) {
    let redis = Engine::start(kind);
    let config = redis.cluster("t1");
    let nodes = [
        node(config.clone()).await,
        node(config.clone()).await,
        node(config).await,
    ];
    let clients = [
        client(&nodes[0]).await,
        client(&nodes[1]).await,
        client(&nodes[2]).await,
    ];
    for (c, n) in clients.iter().zip(&nodes) {
        assert_eq!(
            c.node_id(),
            n.node().node_id(),
            "Welcome names the owner node"
        );
    }
    assert_ne!(nodes[0].node().node_id(), nodes[1].node().node_id());

    // Publish: subscribers on nodes 2 and 3 and on the publisher's node 1.
    for c in &clients {
        c.subscribe("room").await.unwrap();
    }
    for i in 0..50u8 {
        clients[0].publish("room", &[i]).await.unwrap();
    }
    let want: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i]).collect();
    for c in &clients {
        assert_eq!(
            received(c, Duration::from_millis(500)).await,
            want,
            "once each, in order"
        );
    }

    // Send to a session on another node, by its id alone.
    clients[0]
        .send_to(clients[2].session_id(), b"psst")
        .await
        .unwrap();
    let got = clients[2].recv_timeout(DEADLINE).await.expect("the send");
    assert_eq!(
        (got.opcode(), &got.payload()[..]),
        (Opcode::Send.0, &b"psst"[..])
    );
    assert_eq!(got.emitter_id(), Some(clients[0].session_id()));
    // A session that does not exist: on a live node, on no node at all.
    let mut gone = clients[1].session_id().into_bytes();
    gone[15] ^= 1;
    expect_server_error(
        clients[0].send_to(Uuid::from_bytes(gone), b"x").await,
        ErrorCode::NotFound,
    );
    expect_server_error(
        clients[0].send_to(Uuid::new_v4(), b"x").await,
        ErrorCode::NotFound,
    );

    // owner_of, from any node.
    let owner = nodes[0]
        .node()
        .broker()
        .owner_of(clients[1].session_id())
        .await;
    assert_eq!(owner, Ok(Some(nodes[1].node().node_id())));
    assert_eq!(
        nodes[0]
            .node()
            .broker()
            .owner_of(Uuid::from_bytes(gone))
            .await,
        Ok(None)
    );

    // Broadcast reaches every session on every node, once.
    clients[1].broadcast(b"all").await.unwrap();
    for c in &clients {
        assert_eq!(
            received(c, Duration::from_millis(300)).await,
            vec![b"all".to_vec()]
        );
    }

    // The HTTP server API of node 3 reaches node 2's session.
    let body = format!(
        r#"{{"receiver_id":"{}","payload":"aGk="}}"#,
        clients[1].session_id()
    );
    let r = http::send(
        nodes[2].service_addr(),
        Request::post_json("/api/send", &body).header("X-Api-Key", "key"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = clients[1]
        .recv_timeout(DEADLINE)
        .await
        .expect("the API's send");
    assert_eq!(&got.payload()[..], b"hi");
    server_api_publish_reaches_all(&nodes, &clients).await;
}

async fn server_api_publish_reaches_all(nodes: &[AppHandle; 3], clients: &[Client; 3]) {
    let r = http::send(
        nodes[1].service_addr(),
        Request::post_json("/api/publish", r#"{"channel":"room","payload":"aGk="}"#)
            .header("X-Api-Key", "key"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for c in clients {
        assert_eq!(
            received(c, Duration::from_millis(300)).await,
            vec![b"hi".to_vec()]
        );
    }
    let r = http::send(
        nodes[2].service_addr(),
        Request::post_json("/api/broadcast", r#"{"payload":"YWxs"}"#).header("X-Api-Key", "key"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for c in clients {
        assert_eq!(
            received(c, Duration::from_millis(300)).await,
            vec![b"all".to_vec()],
            "the API's broadcast reaches every node once"
        );
    }
}

async fn a_node_without_subscribers_of_a_channel_receives_none_of_it(kind: Kind) {
    let redis = Engine::start(kind);
    let config = redis.cluster("t2");
    let a = node(config.clone()).await;
    let b = node(config).await;
    let (ca, cb) = (client(&a).await, client(&b).await);
    cb.subscribe("quiet").await.unwrap();
    for _ in 0..20 {
        ca.publish("quiet", b"x").await.unwrap();
    }
    eventually("node b got all 20", DEADLINE, || received_by(&b) == 20).await;
    assert_eq!(
        received_by(&a),
        0,
        "a's own publications are not echoed to it"
    );
    // b publishes on a channel only b listens to: a receives nothing.
    for _ in 0..20 {
        cb.publish("quiet", b"y").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(received_by(&a), 0, "no traffic where nobody listens");
    // Once b's subscriber leaves, b stops receiving the channel too.
    cb.unsubscribe("quiet").await.unwrap();
    ca.publish("quiet", b"z").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(received_by(&b), 20);
    drop((ca, cb));
}

async fn an_unreachable_engine_fails_start_with_the_cause(kind: Kind) {
    let port = framework_tests::engines::free_port();
    let scheme = match kind {
        Kind::Redis => "redis",
        Kind::Nats => "nats",
    };
    let err = App::new()
        .config(Config {
            cluster: Some(ClusterConfig {
                timeout: Duration::from_millis(500),
                ..ClusterConfig::new(format!("{scheme}://127.0.0.1:{port}"))
            }),
            ..Config::default()
        })
        .run_websocket_service(any_port())
        .start()
        .await
        .expect_err("no Redis there");
    let message = err.to_string();
    assert!(
        message.contains("broker") && message.contains(scheme),
        "{message}"
    );
    let err = App::new()
        .config(Config {
            cluster: Some(ClusterConfig::new("carrier-pigeon://coop")),
            ..Config::default()
        })
        .run_websocket_service(any_port())
        .start()
        .await
        .expect_err("no such engine");
    assert!(err.to_string().contains("carrier-pigeon"), "{err}");
}

// --- faults ---------------------------------------------------------------------------

/// Publishes on `room` from `from` until `to` receives one, within `within`.
async fn delivery_resumes(from: &Client, to: &Client, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let _ = from.publish("room", b"again").await;
        if to.recv_timeout(Duration::from_millis(200)).await.is_some() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cross-node delivery did not resume within {within:?}"
        );
    }
}

/// Asserts `c` still answers a ping promptly (its node serves local traffic).
async fn serves_locally(c: &Client) {
    let rtt = tokio::time::timeout(Duration::from_secs(2), c.ping())
        .await
        .expect("a pong within 2 s")
        .expect("a pong");
    assert!(rtt < Duration::from_millis(500), "ping took {rtt:?}");
}

fn undelivered(node: &AppHandle) -> u64 {
    node.node()
        .broker()
        .cluster_stats()
        .unwrap()
        .undelivered
        .load(std::sync::atomic::Ordering::Relaxed)
}

async fn the_engine_killed_and_restarted_nodes_serve_locally_then_resume(kind: Kind) {
    let mut redis = Engine::start(kind);
    let port = redis.port;
    let config = redis.cluster("t3");
    let (a, b) = (node(config.clone()).await, node(config).await);
    let (ca, local, cb) = (client(&a).await, client(&a).await, client(&b).await);
    local.subscribe("room").await.unwrap();
    cb.subscribe("room").await.unwrap();
    ca.publish("room", b"before").await.unwrap();
    assert!(cb.recv_timeout(DEADLINE).await.is_some());
    assert!(local.recv_timeout(DEADLINE).await.is_some());

    redis.kill();
    // Local traffic goes on; what needs the engine fails fast and is counted.
    let started = tokio::time::Instant::now();
    let result = ca.publish("room", b"while down").await;
    expect_server_error(result, ErrorCode::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed fast: {:?}",
        started.elapsed()
    );
    assert_eq!(
        local
            .recv_timeout(DEADLINE)
            .await
            .map(|f| f.payload().to_vec()),
        Some(b"while down".to_vec()),
        "the publisher's own node still delivers"
    );
    assert!(undelivered(&a) >= 1, "reported, not silently lost");
    expect_server_error(
        ca.send_to(cb.session_id(), b"x").await,
        ErrorCode::Unavailable,
    );
    serves_locally(&ca).await;
    serves_locally(&cb).await;

    // The engine returns: subscriptions are restored without any client action.
    let _redis = Engine::start_on(kind, port);
    delivery_resumes(&ca, &cb, Duration::from_secs(10)).await;
    ca.send_to(cb.session_id(), b"hello again").await.unwrap();
    let metrics = http::get(a.service_addr(), "/metrics").await.text();
    assert!(
        http::metric(&metrics, "framework_cluster_undelivered_total").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        http::metric(&metrics, "framework_cluster_engine_up"),
        Some(1.0)
    );
    // The lag is how long the last heartbeat took to come back: one sent while
    // the engine was down comes back late (the client held it), so the gauge
    // shows the outage until a heartbeat sent since the restart returns
    // (every 200 ms here).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = http::get(a.service_addr(), "/metrics").await.text();
        let lag = http::metric(&metrics, "framework_cluster_engine_lag_seconds").expect("the lag");
        if lag > 0.0 && lag < 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "engine lag still {lag} s 10 s after the engine returned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_paused_engine_makes_remote_operations_fail_fast_not_hang(kind: Kind) {
    let redis = Engine::start(kind);
    let config = redis.cluster("t4");
    let (a, b) = (node(config.clone()).await, node(config).await);
    let (ca, local, cb) = (client(&a).await, client(&a).await, client(&b).await);
    local.subscribe("room").await.unwrap();
    cb.subscribe("room").await.unwrap();

    redis.signal("-STOP");
    let started = tokio::time::Instant::now();
    expect_server_error(ca.publish("room", b"paused").await, ErrorCode::Unavailable);
    expect_server_error(
        ca.send_to(cb.session_id(), b"x").await,
        ErrorCode::Unavailable,
    );
    expect_server_error(ca.subscribe("elsewhere").await, ErrorCode::Unavailable);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "three operations failed within their timeouts: {:?}",
        started.elapsed()
    );
    assert!(
        local.recv_timeout(DEADLINE).await.is_some(),
        "local delivery goes on"
    );
    serves_locally(&ca).await;
    serves_locally(&cb).await;

    redis.signal("-CONT");
    delivery_resumes(&ca, &cb, Duration::from_secs(10)).await;
    drop(a);
}

/// Redis only: `CLIENT KILL TYPE pubsub` (NATS has no such command).
async fn a_dropped_subscription_connection_is_detected_and_restored(kind: Kind) {
    let redis = Engine::start(kind);
    let config = redis.cluster("t5");
    let (a, b) = (node(config.clone()).await, node(config).await);
    let (ca, cb) = (client(&a).await, client(&b).await);
    cb.subscribe("room").await.unwrap();
    ca.publish("room", b"before").await.unwrap();
    assert!(cb.recv_timeout(DEADLINE).await.is_some());

    let killed = redis
        .cli(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .expect("redis-cli");
    assert!(
        killed.trim() != "0",
        "subscribed connections were killed: {killed}"
    );
    delivery_resumes(&ca, &cb, Duration::from_secs(10)).await;
    drop((a, b));
}

/// A cluster node in its own process: the `main!` test application, joined to
/// the cluster through the environment alone.
fn spawn_node(redis: &Engine, prefix: &str) -> (framework_tests::Serving, std::net::SocketAddr) {
    framework_tests::serve(
        std::process::Command::new(env!("CARGO_BIN_EXE_main-app"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("FRAMEWORK_CLUSTER_URL", redis.url())
            .env("FRAMEWORK_CLUSTER_PREFIX", prefix)
            .env("FRAMEWORK_CLUSTER_HEARTBEAT_INTERVAL", "200ms")
            .env("FRAMEWORK_CLUSTER_HEARTBEAT_TIMEOUT", "1s")
            .env("FRAMEWORK_CLUSTER_TIMEOUT", "1s"),
    )
}

async fn a_node_killed_takes_its_sessions_out_of_the_directory_and_nothing_else(kind: Kind) {
    let redis = Engine::start(kind);
    let config = redis.cluster("t6");
    let a = node(config).await;
    let ca = client(&a).await;
    let other = client(&a).await;
    let (mut process, addr) = spawn_node(&redis, "t6");
    let remote = Client::connect(&format!("ws://{addr}/")).await.unwrap();
    assert_ne!(remote.node_id(), a.node().node_id());
    ca.send_to(remote.session_id(), b"hi").await.unwrap();
    assert!(
        remote.recv_timeout(DEADLINE).await.is_some(),
        "a send reaches the process"
    );
    eventually("a sees the other node", DEADLINE, || {
        a.node().broker().cluster_stats().unwrap().other_nodes() == 1
    })
    .await;

    let _ = process.0.kill(); // SIGKILL
    let _ = process.0.wait();
    let started = tokio::time::Instant::now();
    let seen = std::sync::Mutex::new(Vec::new());
    let gone = async {
        loop {
            let result = ca.send_to(remote.session_id(), b"anyone?").await;
            seen.lock()
                .unwrap()
                .push((started.elapsed(), format!("{result:?}")));
            match result {
                Err(framework::client::ClientError::Server {
                    code: ErrorCode::NotFound,
                    ..
                }) => return,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .is_err()
    {
        panic!("no NotFound within 10 s: {:?}", seen.lock().unwrap());
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // Nothing else is disturbed.
    ca.send_to(other.session_id(), b"still here").await.unwrap();
    assert!(other.recv_timeout(DEADLINE).await.is_some());
    eventually("a forgets the dead node", DEADLINE, || {
        a.node().broker().cluster_stats().unwrap().other_nodes() == 0
    })
    .await;
}

async fn a_stopped_node_does_not_slow_the_others(kind: Kind) {
    let engine = Engine::start(kind);
    let config = engine.cluster("t7");
    let (a, b) = (node(config.clone()).await, node(config).await);
    let (ca, cb) = (client(&a).await, client(&b).await);
    let (process, addr) = spawn_node(&engine, "t7");
    let stuck = Client::connect(&format!("ws://{addr}/")).await.unwrap();
    stuck.subscribe("room").await.unwrap();
    cb.subscribe("room").await.unwrap();

    // The third node stops (SIGSTOP): its engine connection stays open and
    // stops reading.
    let pid = process.0.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let started = tokio::time::Instant::now();
    let payload = vec![7u8; 1024];
    for i in 0..300u16 {
        let mut p = payload.clone();
        p[..2].copy_from_slice(&i.to_be_bytes());
        ca.publish("room", &p).await.unwrap();
    }
    let got = received(&cb, Duration::from_millis(500)).await;
    assert_eq!(got.len(), 300, "every publication reached the healthy node");
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, p)| p[..2] == (i as u16).to_be_bytes()),
        "in order"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "300 publications took {:?}",
        started.elapsed()
    );
    // A send to the stopped node fails within the timeout instead of hanging.
    let asked = tokio::time::Instant::now();
    let result = ca.send_to(stuck.session_id(), b"anyone?").await;
    assert!(
        matches!(
            result,
            Err(framework::client::ClientError::Server {
                code: ErrorCode::Unavailable | ErrorCode::NotFound,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    // Between the healthy nodes, nothing changed.
    ca.send_to(cb.session_id(), b"fine").await.unwrap();
    assert!(cb.recv_timeout(DEADLINE).await.is_some());
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    drop(process);
}

/// `/readyz`'s status and body, and `/healthz`'s status.
async fn probes(node: &AppHandle) -> (u16, serde_json::Value, u16) {
    let ready = http::get(node.service_addr(), "/readyz").await;
    let body = serde_json::from_slice(&ready.body).expect("JSON");
    let live = http::get(node.service_addr(), "/healthz").await.status;
    (ready.status, body, live)
}

async fn readyz_is_503_while_the_engine_is_out_of_reach(kind: Kind) {
    let mut engine = Engine::start(kind);
    let port = engine.port;
    let a = node(engine.cluster("ready")).await;
    let (status, body, live) = probes(&a).await;
    assert_eq!((status, live), (200, 200), "{body}");
    assert_eq!(body["status"], "ready");

    engine.kill();
    let start = tokio::time::Instant::now();
    let (body, live) = loop {
        let (status, body, live) = probes(&a).await;
        if status == 503 {
            break (body, live);
        }
        assert!(
            start.elapsed() < DEADLINE,
            "/readyz stayed {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["status"], "unavailable");
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("cluster engine"),
        "{body}"
    );
    assert_eq!(live, 200, "liveness does not depend on the engine");

    let _engine = Engine::start_on(kind, port);
    let start = tokio::time::Instant::now();
    loop {
        let (status, body, _) = probes(&a).await;
        if status == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "/readyz did not recover: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.shutdown().await;
}

framework_tests::on_every!(Kind { redis => Redis, nats => Nats } [
    readyz_is_503_while_the_engine_is_out_of_reach,
    publish_send_broadcast_and_the_api_cross_nodes_exactly_once_in_order,
    a_node_without_subscribers_of_a_channel_receives_none_of_it,
    an_unreachable_engine_fails_start_with_the_cause,
    the_engine_killed_and_restarted_nodes_serve_locally_then_resume,
    a_paused_engine_makes_remote_operations_fail_fast_not_hang,
    a_node_killed_takes_its_sessions_out_of_the_directory_and_nothing_else,
    a_stopped_node_does_not_slow_the_others
]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_client_kill_pubsub() {
    a_dropped_subscription_connection_is_detected_and_restored(Kind::Redis).await
}
