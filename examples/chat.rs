//! A chat server, a chat page for browsers, and a scripted conversation. Typed
//! opcodes with derived messages: 200 posts a `ChatLine` to its room, 201 answers
//! who is online, 202 sets the sender's display name. Rooms are channels with
//! history, presence and join/leave events; direct sends carry whispers.
//!
//! Serves the protocol on 8081 (`FRAMEWORK_WEBSOCKET` overrides) and, on 8080
//! (`FRAMEWORK_SERVICE` overrides), the chat page at `/chat` — the TypeScript
//! client (`clients/typescript`, bundled as `examples/chat/client.js`) in plain
//! HTML — with the protocol on that port's `/ws` too. Plays a short conversation
//! between alice, bob and carol, then keeps serving until Ctrl-C: open the page
//! to join them. `--once` stops after the conversation; `--serve-only` skips it.

use std::time::Duration;

use framework::client::Client;
use framework::config::ChannelOptions;
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

/// Opcode 200: post a line to its room. The server publishes its text as the
/// sender (the delivery's `emitter_id` names the sender's session, whose
/// display name every subscriber knows from presence), the same as a `Publish`
/// of the text from the browser page.
#[opcode(200)]
async fn post(ctx: Request, line: ChatLine) -> Result<(), HandlerError> {
    framework::builtins::validate_channel(&line.room)?;
    if line.text.trim().is_empty() {
        return Err(HandlerError::invalid_argument("empty line"));
    }
    ctx.node()
        .publish_as(
            ctx.connection(),
            &line.room,
            line.text.as_bytes(),
            Some(ctx.trace_id()),
        )
        .await?;
    Ok(())
}

/// Opcode 202: the sender's display name (UTF-8, at most 32 bytes), shown to
/// the others in presence and in join/leave events of rooms joined afterwards.
#[opcode(202)]
fn name(ctx: Request) -> Result<Reply, HandlerError> {
    let name = std::str::from_utf8(ctx.body())
        .map_err(|_| HandlerError::invalid_argument("a name is UTF-8"))?
        .trim();
    if name.is_empty() || name.len() > 32 {
        return Err(HandlerError::invalid_argument("a name has 1 to 32 bytes"));
    }
    ctx.connection().set_info(name.as_bytes().to_vec());
    Ok(Reply::empty())
}

/// The chat page and the bundled TypeScript client it runs on.
fn page() -> axum::Router {
    use axum::response::Html;
    axum::Router::new()
        .route(
            "/chat",
            axum::routing::get(|| async { Html(include_str!("chat/index.html")) }),
        )
        .route(
            "/chat/client.js",
            axum::routing::get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/javascript")],
                    include_str!("chat/client.js"),
                )
            }),
        )
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

/// Display names by session id, as the page knows them from presence.
type Names = std::collections::HashMap<uuid::Uuid, &'static str>;

async fn hear(name: &str, client: &Client, names: &Names) -> anyhow::Result<()> {
    // Joins and leaves of the room are events, not lines: skipped here.
    let frame = loop {
        let frame = client
            .recv_timeout(Duration::from_secs(5))
            .await
            .ok_or_else(|| anyhow::anyhow!("{name} heard nothing"))?;
        if frame.opcode() != Opcode::Join.0 && frame.opcode() != Opcode::Leave.0 {
            break frame;
        }
    };
    if frame.opcode() == Opcode::Send.0 {
        println!(
            "{name} got a whisper from {}: {}",
            names[&frame.emitter_id().unwrap_or_default()],
            String::from_utf8_lossy(&frame.payload())
        );
    } else {
        println!(
            "{name} heard in #{} from {}: {}",
            frame.channel().unwrap_or_default(),
            names[&frame.emitter_id().unwrap_or_default()],
            String::from_utf8_lossy(&frame.payload())
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logging();
    let app = App::new()
        .with_registered()
        // Every room keeps its last 200 lines for ten minutes, lists who is in
        // it, and tells its members who joins and leaves.
        .channel_options(
            ChannelOptions::new("*")
                .history(200, Duration::from_secs(600))
                .presence(true)
                .join_leave(true),
        )
        .run_websocket_service(8081)
        .run_service(8080)
        .router(page())
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
    let mut names = Names::new();
    for (name, c) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        c.request(202, name.as_bytes()).await?;
        names.insert(c.session_id(), name);
    }
    for c in [&alice, &bob, &carol] {
        c.subscribe("lobby").await?;
    }
    bob.subscribe("rust").await?;

    say(&alice, "lobby", "hello, everyone").await?;
    for (name, c) in [("alice", &alice), ("bob", &bob), ("carol", &carol)] {
        hear(name, c, &names).await?;
    }
    say(&carol, "rust", "anyone tried the macros?").await?;
    hear("bob", &bob, &names).await?;

    carol.send_to(bob.session_id(), b"psst, bob").await?;
    hear("bob", &bob, &names).await?;

    let online = Online::decode(&alice.request(201, b"").await?.payload())?;
    println!("{} people online in {} rooms", online.count, online.rooms);

    if !std::env::args().any(|a| a == "--once") {
        println!(
            "chat server on {url}; the chat page: http://127.0.0.1:{}/chat — open it to join alice, bob and carol; Ctrl-C stops it",
            server.service_addr().port()
        );
        tokio::signal::ctrl_c().await?;
    }
    server.shutdown().await;
    Ok(())
}
