//! Every built-in a client sends can be overridden, sync or async, with any
//! extractor, delegating to the default handler or answering itself.

use framework::dispatch::Trace;
use framework::prelude::*;
use framework::protocol::{DecodeLimits, Frame, FrameFields};
use framework::testing::TestNode;

#[override_opcode(Ping)]
fn ping() -> Reply {
    Reply::with_opcode(Opcode::Pong, Some(bytes::Bytes::from_static(b"custom")))
}

#[override_opcode(Subscribe)]
async fn subscribe(ctx: Request) -> Result<Reply, HandlerError> {
    if ctx
        .frame()
        .channel()
        .is_some_and(|c| c.starts_with("admin/"))
    {
        return Err(HandlerError::new(
            ErrorCode::Forbidden,
            "admin channels are closed",
        ));
    }
    framework::builtins::subscribe(ctx).await
}

#[override_opcode(Unsubscribe)]
fn unsubscribe(_ctx: Request, _trace: Trace) -> Reply {
    Reply::ack()
}

#[override_opcode(Publish)]
async fn publish(_conn: Connection) -> Reply {
    Reply::ack()
}

#[override_opcode(Send)]
fn send() {}

#[override_opcode(Broadcast)]
fn broadcast(mut ctx: Request) -> Reply {
    framework::helpers::make_empty_response(&mut ctx, Opcode::Ack)
}

#[override_opcode(Auth)]
fn auth() -> Result<(), HandlerError> {
    Err(HandlerError::new(ErrorCode::Unauthorized, "no"))
}

#[override_opcode(Presence)]
fn presence() -> Result<(), HandlerError> {
    Err(HandlerError::invalid_argument("no presence here"))
}

#[override_opcode(History)]
async fn history() -> Result<(), HandlerError> {
    Err(HandlerError::invalid_argument("no history here"))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let node = TestNode::new(App::new().with_registered()).await.unwrap();
        let replies = node
            .dispatch(FrameFields::new(Opcode::Ping.0).encode())
            .await;
        let pong = Frame::decode(replies[0].clone(), &DecodeLimits::default()).unwrap();
        assert_eq!(pong.opcode(), Opcode::Pong.0);
        assert_eq!(&pong.payload()[..], b"custom");
    });
}
