//! The built-in opcodes' default handlers. They use only the public handler API,
//! so an override (`override_websocket_handler`) can do everything they do.

use crate::dispatch::{BoxedHandler, HandlerError, Reply, Request};
use crate::node::SubscribeError;
use crate::protocol::{ErrorCode, Opcode};

/// Longest channel name in bytes.
pub const MAX_CHANNEL_LEN: usize = 255;

/// Checks a channel name: 1..=255 bytes of UTF-8 without control characters.
///
/// ```
/// use framework::builtins::validate_channel;
/// assert!(validate_channel("room-1").is_ok());
/// assert!(validate_channel("").is_err());
/// assert!(validate_channel("a\nb").is_err());
/// ```
pub fn validate_channel(channel: &str) -> Result<(), HandlerError> {
    if channel.is_empty() {
        return Err(HandlerError::invalid_argument("channel is empty"));
    }
    if channel.len() > MAX_CHANNEL_LEN {
        return Err(HandlerError::invalid_argument(
            "channel is longer than 255 bytes",
        ));
    }
    if channel.chars().any(char::is_control) {
        return Err(HandlerError::invalid_argument(
            "channel contains control characters",
        ));
    }
    Ok(())
}

fn channel_of(ctx: &Request) -> Result<&str, HandlerError> {
    let channel = ctx
        .frame()
        .channel()
        .ok_or_else(|| HandlerError::invalid_argument("channel is missing"))?;
    validate_channel(channel)?;
    Ok(channel)
}

impl From<SubscribeError> for HandlerError {
    fn from(e: SubscribeError) -> Self {
        match e {
            SubscribeError::Limit(limit) => {
                HandlerError::new(ErrorCode::TooLarge, limit.to_string())
            }
            SubscribeError::Broker(b) => b.into(),
        }
    }
}

/// `Ping` → `Pong` with the ping's `transaction_id` and `trace_id`.
pub fn ping(_ctx: Request) -> Reply {
    Reply::with_opcode(Opcode::Pong, None)
}

/// `Subscribe`: join `channel` (twice is a no-op).
pub async fn subscribe(ctx: Request) -> Result<Reply, HandlerError> {
    let channel = channel_of(&ctx)?;
    ctx.node().subscribe(ctx.connection(), channel).await?;
    Ok(Reply::ack())
}

/// `Unsubscribe`: leave `channel` (not joined is a no-op).
pub async fn unsubscribe(ctx: Request) -> Result<Reply, HandlerError> {
    let channel = channel_of(&ctx)?;
    ctx.node().unsubscribe(ctx.connection(), channel).await?;
    Ok(Reply::ack())
}

/// `Publish`: deliver `payload` to every subscriber of `channel` on every node.
pub async fn publish(ctx: Request) -> Result<Reply, HandlerError> {
    let channel = channel_of(&ctx)?;
    let emitter = ctx.connection().id();
    ctx.node()
        .publish(channel, ctx.body(), emitter, Some(ctx.trace_id()))
        .await?;
    Ok(Reply::ack())
}

/// `Send`: deliver `payload` to session `receiver_id` on whichever node owns it.
pub async fn send(ctx: Request) -> Result<Reply, HandlerError> {
    let receiver = ctx
        .frame()
        .receiver_id()
        .ok_or_else(|| HandlerError::invalid_argument("receiver_id is missing"))?;
    let emitter = ctx.connection().id();
    ctx.node()
        .send(receiver, ctx.body(), emitter, Some(ctx.trace_id()))
        .await?;
    Ok(Reply::ack())
}

/// `Broadcast`: deliver `payload` to every session on every node, the sender included.
pub async fn broadcast(ctx: Request) -> Result<Reply, HandlerError> {
    let emitter = ctx.connection().id();
    ctx.node()
        .broadcast(ctx.body(), emitter, Some(ctx.trace_id()))
        .await?;
    Ok(Reply::ack())
}

/// The default handler of every built-in opcode a client may send.
pub(crate) fn defaults() -> Vec<(Opcode, BoxedHandler)> {
    vec![
        (Opcode::Ping, BoxedHandler::new(ping)),
        (Opcode::Subscribe, BoxedHandler::new(subscribe)),
        (Opcode::Unsubscribe, BoxedHandler::new(unsubscribe)),
        (Opcode::Publish, BoxedHandler::new(publish)),
        (Opcode::Send, BoxedHandler::new(send)),
        (Opcode::Broadcast, BoxedHandler::new(broadcast)),
    ]
}
