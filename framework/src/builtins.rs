//! The built-in opcodes' default handlers. They use only the public handler API,
//! so an override (`override_websocket_handler`) can do everything they do.

use crate::dispatch::{BoxedHandler, HandlerError, Reply, Request};
use crate::node::{ChannelError, SubscribeError};
use crate::protocol::{ErrorCode, FrameFields, Opcode};
use crate::storage::{history_page, presence_list, Position};

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

impl From<ChannelError> for HandlerError {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::Broker(b) => b.into(),
            other => HandlerError::invalid_argument(other.to_string()),
        }
    }
}

/// A frame answering `ctx` with `opcode`, carrying a channel's position.
fn positioned<'a>(ctx: &Request, opcode: Opcode, position: &'a Position) -> FrameFields<'a> {
    FrameFields::new(opcode.0)
        .transaction_id(ctx.transaction_id())
        .trace_id(Some(ctx.trace_id()))
        .span_id(ctx.span_id())
        .offset(position.offset)
        .epoch(&position.epoch)
}

/// `Ping` → `Pong` with the ping's `transaction_id` and `trace_id`.
pub fn ping(_ctx: Request) -> Reply {
    Reply::with_opcode(Opcode::Pong, None)
}

/// `Subscribe`: join `channel` (twice is a no-op). With `recover`, first replay
/// what the client missed after its `epoch`/`offset`, then answer with an `Ack`
/// (always) carrying `recovered` and the channel's `epoch` and latest `offset`,
/// then deliver live publications.
pub async fn subscribe(ctx: Request) -> Result<Reply, HandlerError> {
    let channel = channel_of(&ctx)?;
    let frame = ctx.frame();
    if !frame.recover() {
        ctx.node().subscribe(ctx.connection(), channel).await?;
        return Ok(Reply::ack());
    }
    let epoch = frame.epoch().unwrap_or_default();
    let recovery = ctx
        .node()
        .subscribe_recover(ctx.connection(), channel, epoch, frame.offset())
        .await?;
    let ack = positioned(&ctx, Opcode::Ack, &recovery.position)
        .recovered(recovery.recovered)
        .encode();
    ctx.node()
        .metrics()
        .count_sent(Opcode::Ack.0, ack.len(), None);
    // The Ack goes after the replayed publications and before any live one.
    let _ = ctx.connection().send(ack);
    recovery.resume();
    Ok(Reply::none())
}

/// `Unsubscribe`: leave `channel` (not joined is a no-op).
pub async fn unsubscribe(ctx: Request) -> Result<Reply, HandlerError> {
    let channel = channel_of(&ctx)?;
    ctx.node().unsubscribe(ctx.connection(), channel).await?;
    Ok(Reply::ack())
}

/// `Publish`: deliver `payload` to every subscriber of `channel` on every node.
/// On a channel with history, the `Ack` (when asked for) carries the
/// publication's `offset` and `epoch`.
pub async fn publish(ctx: Request) -> Result<Reply, HandlerError> {
    let channel = channel_of(&ctx)?;
    if ctx
        .node()
        .channel_options(channel)
        .is_some_and(|o| !o.allow_publish)
    {
        return Err(HandlerError::new(
            ErrorCode::Forbidden,
            "clients may not publish on this channel",
        ));
    }
    let position = ctx
        .node()
        .publish_as(ctx.connection(), channel, ctx.body(), Some(ctx.trace_id()))
        .await?;
    match position {
        Some(position) if ctx.frame().requires_ack() => Ok(Reply::frame(
            positioned(&ctx, Opcode::Ack, &position).encode(),
        )),
        _ => Ok(Reply::ack()),
    }
}

/// `Presence`: the sessions subscribed to `channel` on every node, as a
/// `PresenceList` (`InvalidArgument` on a channel without presence).
pub async fn presence(ctx: Request) -> Result<Reply, HandlerError> {
    let channel = channel_of(&ctx)?;
    let entries = ctx.node().presence(channel).await?;
    Ok(Reply::payload(presence_list(&entries)))
}

/// `History`: the retained publications of `channel` after `offset` (at most
/// `limit`, capped at 1,000, and as many as fit in `max_message_size`), as a
/// `HistoryPage`; the reply carries the
/// channel's `epoch` and latest `offset`. A request naming another `epoch` than
/// the channel's gets an empty page (its offsets mean nothing in this epoch).
pub async fn history(ctx: Request) -> Result<Reply, HandlerError> {
    let channel = channel_of(&ctx)?;
    let frame = ctx.frame();
    let limit = match frame.limit() {
        0 => crate::node::MAX_HISTORY_PAGE,
        n => n as usize,
    };
    let mut slice = ctx.node().history(channel, frame.offset(), limit).await?;
    if frame
        .epoch()
        .is_some_and(|e| !e.is_empty() && e != slice.position.epoch)
    {
        slice.publications.clear();
    }
    // A page fits in one message the client accepts (at least one publication):
    // the client asks again from the last offset it got.
    let room = ctx.node().config().max_message_size.saturating_sub(1024);
    let mut used = 0;
    let fits = slice
        .publications
        .iter()
        .take_while(|f| {
            used += f.len() + 64;
            used <= room
        })
        .count()
        .max(1);
    slice.publications.truncate(fits);
    let page = history_page(&slice.publications);
    Ok(Reply::frame(
        positioned(&ctx, Opcode::History, &slice.position)
            .payload(&page)
            .encode(),
    ))
}

/// `Send`: deliver `payload` to session `receiver_id` on whichever node owns it.
pub async fn send(ctx: Request) -> Result<Reply, HandlerError> {
    let receiver = ctx
        .frame()
        .receiver_id()
        .ok_or_else(|| HandlerError::invalid_argument("receiver_id is missing"))?;
    ctx.node()
        .send_as(ctx.connection(), receiver, ctx.body(), Some(ctx.trace_id()))
        .await?;
    Ok(Reply::ack())
}

/// `Broadcast`: deliver `payload` to every session on every node, the sender included.
pub async fn broadcast(ctx: Request) -> Result<Reply, HandlerError> {
    ctx.node()
        .broadcast_as(ctx.connection(), ctx.body(), Some(ctx.trace_id()))
        .await?;
    Ok(Reply::ack())
}

/// `Auth` (with authentication configured): verifies the frame's `token` and makes
/// it the connection's identity, answering with an `Ack` that carries `user_id` and
/// `expires_at_ms` — always, with or without `requires_ack`. A bad token is
/// `Unauthorized` and leaves the previous identity as it was.
pub async fn auth(ctx: Request) -> Result<Reply, HandlerError> {
    let Some(verifier) = ctx.node().verifier() else {
        return Err(HandlerError::new(
            ErrorCode::UnknownOpcode,
            "authentication is not configured on this server",
        ));
    };
    let token = ctx
        .frame()
        .token()
        .ok_or_else(|| HandlerError::new(ErrorCode::Unauthorized, "the Auth frame has no token"))?;
    let identity = verifier
        .verify(token)
        .await
        .map_err(|e| HandlerError::new(ErrorCode::Unauthorized, e.to_string()))?;
    let ack = FrameFields::new(Opcode::Ack.0)
        .transaction_id(ctx.transaction_id())
        .trace_id(Some(ctx.trace_id()))
        .span_id(ctx.span_id())
        .user_id(identity.user_id())
        .expires_at_ms(identity.expires_at_ms())
        .encode();
    ctx.node()
        .set_identity(ctx.connection(), identity)
        .map_err(|e| HandlerError::new(ErrorCode::Forbidden, e.to_string()))?;
    Ok(Reply::frame(ack))
}

/// A built-in opcode a client sends, with its default handler (`None`: answered
/// `UnknownOpcode` until the application provides one, as `Auth` is without
/// authentication).
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The opcode.
    pub opcode: Opcode,
    /// Makes its default handler.
    pub default: Option<fn() -> BoxedHandler>,
}

/// The one table of built-ins: every opcode below 200 a client may send, each
/// overridable with `override_websocket_handler` / `#[override_opcode]`. The
/// schema's other opcodes are sent by the server only. Adding a built-in is a
/// line in `schemas/protocol.fbs`, its handler function above, and a line here.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        opcode: Opcode::Ping,
        default: Some(|| BoxedHandler::new(ping)),
    },
    Builtin {
        opcode: Opcode::Subscribe,
        default: Some(|| BoxedHandler::new(subscribe)),
    },
    Builtin {
        opcode: Opcode::Unsubscribe,
        default: Some(|| BoxedHandler::new(unsubscribe)),
    },
    Builtin {
        opcode: Opcode::Publish,
        default: Some(|| BoxedHandler::new(publish)),
    },
    Builtin {
        opcode: Opcode::Send,
        default: Some(|| BoxedHandler::new(send)),
    },
    Builtin {
        opcode: Opcode::Broadcast,
        default: Some(|| BoxedHandler::new(broadcast)),
    },
    // Answered by `auth` when authentication is configured.
    Builtin {
        opcode: Opcode::Auth,
        default: None,
    },
    Builtin {
        opcode: Opcode::Presence,
        default: Some(|| BoxedHandler::new(presence)),
    },
    Builtin {
        opcode: Opcode::History,
        default: Some(|| BoxedHandler::new(history)),
    },
];

/// Whether `opcode` is a built-in a client sends (so an application may override
/// it). `const`: the macros check every `#[override_opcode(Name)]` against this
/// table at compile time.
///
/// ```
/// use framework::builtins::is_overridable;
/// use framework::protocol::Opcode;
/// assert!(is_overridable(Opcode::Ping.0));
/// assert!(!is_overridable(Opcode::Welcome.0));
/// assert!(!is_overridable(200));
/// ```
pub const fn is_overridable(opcode: u16) -> bool {
    let mut i = 0;
    while i < BUILTINS.len() {
        if BUILTINS[i].opcode.0 == opcode {
            return true;
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names `#[override_opcode]` accepts are exactly the table's, in order
    /// (each expansion also checks its name against the table at compile time).
    #[test]
    fn the_macro_accepts_exactly_the_overridable_built_ins() {
        let macro_names: &[&str] = &framework_macros::__overridable_names!();
        let table: Vec<&str> = BUILTINS
            .iter()
            .map(|b| b.opcode.variant_name().unwrap_or("unnamed"))
            .collect();
        assert_eq!(macro_names, table.as_slice());
    }

    #[test]
    fn server_only_opcodes_are_not_overridable() {
        for op in [
            Opcode::None,
            Opcode::Welcome,
            Opcode::Pong,
            Opcode::Ack,
            Opcode::Error,
            Opcode::Join,
            Opcode::Leave,
        ] {
            assert!(!is_overridable(op.0), "{op:?}");
        }
    }
}
