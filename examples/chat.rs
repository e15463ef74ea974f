//! A chat server and a scripted conversation: three clients join rooms, talk in
//! a channel, and whisper to each other with direct sends. Serves on 8081 (`PORT`
//! overrides); `chat --serve-only` just serves.

use std::time::Duration;

use framework::client::Client;
use framework::{App, HandlerError, Request};

/// Opcode 200: "who is online?" — answers with the number of sessions on this node.
async fn online(ctx: Request) -> Result<Vec<u8>, HandlerError> {
    let count = ctx.node().hub().session_count() as u64;
    Ok(count.to_be_bytes().to_vec())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logging();
    let app = App::new()
        .run_websocket_service(examples::port_or(8081))
        .register_custom_handler(200, online);
    if std::env::args().any(|a| a == "--serve-only") {
        app.run().await?;
        return Ok(());
    }
    let server = app.start().await?;
    let url = format!("ws://127.0.0.1:{}/", server.websocket_addr().port());

    let alice = Client::connect(&url).await?;
    let bob = Client::connect(&url).await?;
    let carol = Client::connect(&url).await?;
    for c in [&alice, &bob, &carol] {
        c.subscribe("lobby").await?;
    }
    bob.subscribe("rust").await?;

    alice.publish("lobby", b"hello, everyone").await?;
    for (name, c) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        let line = c
            .recv_timeout(Duration::from_secs(5))
            .await
            .expect("lobby line");
        println!(
            "{name} got in #{}: {}",
            line.channel().unwrap_or_default(),
            String::from_utf8_lossy(&line.payload())
        );
    }

    carol.send_to(bob.session_id(), b"psst, bob").await?;
    let whisper = bob
        .recv_timeout(Duration::from_secs(5))
        .await
        .expect("whisper");
    println!(
        "bob got a whisper from {}: {}",
        whisper.emitter_id().unwrap_or_default(),
        String::from_utf8_lossy(&whisper.payload())
    );

    let online = alice.request(200, b"").await?;
    let n = u64::from_be_bytes(online.payload()[..8].try_into()?);
    println!("{n} people online");

    server.shutdown().await;
    Ok(())
}
