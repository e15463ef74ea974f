//! The design card: what a user writes. A typed chat opcode, an overridden Ping,
//! a raw echo service, derived message types, and one `framework::main!`.
//!
//! Ports: HTTP + protocol WebSocket on 8080 (`/ws`), protocol WebSocket on 8081,
//! raw echo on 8082; override with FRAMEWORK_SERVICE, FRAMEWORK_WEBSOCKET,
//! FRAMEWORK_RAW_8082 (ports or addresses).

use framework::prelude::*;

/// A line of chat, sent as the payload of opcode 200.
#[derive(framework::Message, Debug, Clone, PartialEq)]
pub struct ChatLine {
    /// The room (a channel).
    pub room: String,
    /// What was said.
    pub text: String,
}

/// Opcode 200: post a line to its room; the poster gets the line back, stamped.
#[opcode(200)]
async fn post(ctx: Request, line: ChatLine) -> Result<ChatLine, HandlerError> {
    if line.text.is_empty() {
        return Err(HandlerError::invalid_argument("empty line"));
    }
    let stamped = ChatLine {
        text: format!("{}: {}", ctx.connection().id(), line.text),
        ..line
    };
    let payload = framework::Message::encode(&stamped);
    ctx.node()
        .publish(
            &stamped.room,
            &payload,
            ctx.connection().id(),
            Some(ctx.trace_id()),
        )
        .await?;
    Ok(stamped)
}

/// Ping, counted in the logs before the usual Pong.
#[override_opcode(Ping)]
fn ping(ctx: Request) -> Reply {
    tracing::debug!(session = %ctx.connection().id(), "ping");
    Reply::with_opcode(Opcode::Pong, None)
}

/// A raw echo service on port 8082.
#[raw_ws(port = 8082)]
async fn echo(conn: RawConnection) {
    while let Some(msg) = conn.recv().await {
        let _ = conn.send(msg.into_bytes());
    }
}

framework::main!(service = 8080, websocket = 8081);
