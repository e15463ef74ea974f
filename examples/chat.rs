//! A chat server and a scripted conversation. Typed opcodes with derived messages:
//! 200 posts a `ChatLine` to its room, 201 answers who is online. Built-in channels
//! carry the room traffic; direct sends carry whispers. Serves on 8081
//! (`FRAMEWORK_WEBSOCKET` overrides): plays a short conversation, then keeps serving until Ctrl-C.
//! `--once` stops after the conversation; `--serve-only` skips it.

use std::time::Duration;

use framework::client::Client;
use framework::prelude::*;

/// A line of chat.
#[derive(framework::Message, Debug, Clone, PartialEq)]
pub struct ChatLine {
    /// The room (a channel).
    pub room: String,
    /// Who said it (filled in by the server).
    pub from: uuid::Uuid,
    /// What was said.
    pub text: String,
}

/// The answer to "who is online?".
#[derive(framework::Message, Debug, Clone, PartialEq)]
pub struct Online {
    /// Sessions on this node.
    pub count: u32,
    /// The rooms with someone in them on this node.
    pub rooms: u32,
}

/// Opcode 200: post a line; the server stamps the sender and publishes it to the room.
#[opcode(200)]
async fn post(ctx: Request, line: ChatLine) -> Result<(), HandlerError> {
    framework::builtins::validate_channel(&line.room)?;
    if line.text.trim().is_empty() {
        return Err(HandlerError::invalid_argument("empty line"));
    }
    let from = ctx.connection().id();
    let stamped = ChatLine { from, ..line };
    ctx.node()
        .publish(&stamped.room, &stamped.encode(), from, Some(ctx.trace_id()))
        .await?;
    Ok(())
}

/// Opcode 201: who is online.
#[opcode(201)]
fn online(node: framework::node::Node) -> Online {
    Online {
        count: node.hub().session_count() as u32,
        rooms: node.hub().channel_count() as u32,
    }
}

async fn say(client: &Client, room: &str, text: &str) -> anyhow::Result<()> {
    let line = ChatLine {
        room: room.into(),
        from: uuid::Uuid::nil(),
        text: text.into(),
    };
    client.request(200, &line.encode()).await?;
    Ok(())
}

async fn hear(name: &str, client: &Client) -> anyhow::Result<()> {
    let frame = client
        .recv_timeout(Duration::from_secs(5))
        .await
        .ok_or_else(|| anyhow::anyhow!("{name} heard nothing"))?;
    if frame.opcode() == Opcode::Send.0 {
        println!(
            "{name} got a whisper from {}: {}",
            frame.emitter_id().unwrap_or_default(),
            String::from_utf8_lossy(&frame.payload())
        );
    } else {
        let line = ChatLine::decode(&frame.payload())?;
        println!(
            "{name} heard in #{} from {}: {}",
            line.room, line.from, line.text
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logging();
    let app = App::new()
        .with_registered()
        .run_websocket_service(8081)
        .configure(framework::config::Settings::file_from_env().as_deref())?;
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

    say(&alice, "lobby", "hello, everyone").await?;
    for (name, c) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        hear(name, c).await?;
    }
    say(&carol, "rust", "anyone tried the macros?").await?;
    hear("bob", &bob).await?;

    carol.send_to(bob.session_id(), b"psst, bob").await?;
    hear("bob", &bob).await?;

    let online = Online::decode(&alice.request(201, b"").await?.payload())?;
    println!("{} people online in {} rooms", online.count, online.rooms);

    if !std::env::args().any(|a| a == "--once") {
        println!("chat server on {url} — connect more clients; Ctrl-C stops it");
        tokio::signal::ctrl_c().await?;
    }
    server.shutdown().await;
    Ok(())
}
