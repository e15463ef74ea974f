//! Every kind of return value: `()`, `Reply`, bytes, a derived message,
//! `HandlerError`, `Result` with `HandlerError` or a custom error, and a reply
//! built with the request's builder (the C++ guide's style).

use framework::prelude::*;

#[derive(framework::Message)]
struct Total {
    total: i64,
}

#[opcode(200)]
fn unit() {}

#[opcode(201)]
fn reply() -> Reply {
    Reply::none()
}

#[opcode(202)]
fn bytes() -> bytes::Bytes {
    bytes::Bytes::from_static(b"ok")
}

#[opcode(203)]
fn vec() -> Vec<u8> {
    b"ok".to_vec()
}

#[opcode(204)]
async fn message() -> Total {
    Total { total: 1 }
}

#[opcode(205)]
fn error() -> HandlerError {
    HandlerError::not_found("nothing here")
}

#[opcode(206)]
async fn result() -> Result<Total, HandlerError> {
    Err(HandlerError::new(ErrorCode::Forbidden, "no"))
}

/// The user's own error type, with its error code.
struct NotYours;

impl From<NotYours> for HandlerError {
    fn from(_: NotYours) -> Self {
        HandlerError::new(ErrorCode::Forbidden, "not yours")
    }
}

#[opcode(207)]
fn custom_error() -> Result<(), NotYours> {
    Err(NotYours)
}

#[opcode(208)]
fn builder_style(mut ctx: Request) -> Reply {
    let channel = ctx.builder().create_string("room");
    let msg = framework::protocol::fbs::Message::create(
        ctx.builder(),
        &framework::protocol::fbs::MessageArgs {
            opcode: Opcode(208),
            channel: Some(channel),
            ..Default::default()
        },
    );
    ctx.finish(msg)
}

#[opcode(209)]
fn optional(ctx: Request) -> Option<Vec<u8>> {
    (!ctx.body().is_empty()).then(|| ctx.body().to_vec())
}

#[opcode(210)]
async fn optional_message(ctx: Request) -> Result<Option<Total>, HandlerError> {
    Ok((!ctx.body().is_empty()).then(|| Total { total: 1 }))
}

fn main() {
    let _ = App::new().with_registered();
}
