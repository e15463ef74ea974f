//! Three nodes of one application on one machine, joined through Redis (or NATS),
//! a client on each: a publish on one node is seen on all three, and a direct
//! send crosses nodes by the receiver's session id alone.
//!
//! Start an engine first (Debian packages `redis-server`, `nats-server`):
//!
//! ```sh
//! redis-server --port 6379 --save ''        # or: nats-server -p 4222
//! cargo run -p examples --example cluster   # FRAMEWORK_CLUSTER_URL=nats://127.0.0.1:4222 for NATS
//! ```
//!
//! The nodes serve on 8091, 8092 and 8093 until Ctrl-C (`--once`: stop after the
//! demonstration). In a real deployment each node is its own process, configured
//! with the same `[cluster] url` (or `FRAMEWORK_CLUSTER_URL`) and nothing else.

use std::time::Duration;

use framework::client::Client;
use framework::config::ClusterConfig;
use framework::{App, AppHandle};

async fn node(url: &str, port: u16) -> anyhow::Result<AppHandle> {
    let app = App::new()
        .cluster(ClusterConfig::new(url))
        .run_websocket_service(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    Ok(app.start().await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let url =
        std::env::var("FRAMEWORK_CLUSTER_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut nodes = Vec::new();
    for port in [8091, 8092, 8093] {
        match node(&url, port).await {
            Ok(n) => nodes.push(n),
            Err(e) => {
                eprintln!("cannot start a node: {e}");
                eprintln!("start an engine first: `redis-server --port 6379 --save ''`, or `nats-server -p 4222` with FRAMEWORK_CLUSTER_URL=nats://127.0.0.1:4222");
                std::process::exit(1);
            }
        }
    }
    let mut clients = Vec::new();
    for n in &nodes {
        let c = Client::connect(&format!("ws://{}/", n.websocket_addr())).await?;
        println!(
            "a client on node {} (port {})",
            c.node_id(),
            n.websocket_addr().port()
        );
        c.subscribe("lobby").await?;
        clients.push(c);
    }

    clients[0].publish("lobby", b"hello from node 1").await?;
    for (i, c) in clients.iter().enumerate() {
        let got = c.recv_timeout(Duration::from_secs(5)).await;
        let text = got.map(|f| String::from_utf8_lossy(&f.payload()).into_owned());
        println!(
            "client on node {}: {:?}",
            i + 1,
            text.unwrap_or_else(|| "(nothing)".into())
        );
    }

    clients[2]
        .send_to(clients[0].session_id(), b"a whisper from node 3")
        .await?;
    if let Some(f) = clients[0].recv_timeout(Duration::from_secs(5)).await {
        println!(
            "client on node 1 got a send: {:?}",
            String::from_utf8_lossy(&f.payload())
        );
    }

    if std::env::args().any(|a| a == "--once") {
        for n in nodes {
            n.shutdown().await;
        }
        return Ok(());
    }
    println!("serving on ws://127.0.0.1:8091, :8092, :8093 — Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    for n in nodes {
        n.shutdown().await;
    }
    Ok(())
}
