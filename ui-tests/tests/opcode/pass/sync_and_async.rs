//! Sync and async handlers, with and without arguments, registered and served.

use framework::prelude::*;
use framework::protocol::{DecodeLimits, Frame, FrameFields};
use framework::testing::TestNode;

#[opcode(200)]
fn nothing() {}

#[opcode(201)]
async fn nothing_async() {}

#[opcode(202)]
fn echo(Body(body): Body) -> Vec<u8> {
    body.to_vec()
}

#[opcode(203)]
async fn echo_async(ctx: Request) -> bytes::Bytes {
    ctx.body().clone()
}

/// With quotas, in every spelling the rate grammar has.
#[opcode(204, quota = "10/s")]
fn quota_simple() {}

#[opcode(205, quota = "600/m burst 50")]
async fn quota_burst() {}

#[opcode(206, quota = "5/250ms",)]
fn quota_period() {}

/// Who may send it.
#[opcode(207, auth)]
fn members() {}

#[opcode(208, auth = "claim:role=admin", quota = "1/s")]
async fn admins() {}

/// The largest opcode, with a type suffix on the literal.
#[opcode(65535u16)]
fn last() {}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let node = TestNode::new(App::new().with_registered()).await.unwrap();
        for opcode in [200, 201, 202, 203, 65535] {
            let replies = node
                .dispatch(FrameFields::new(opcode).payload(b"x").encode())
                .await;
            let reply = Frame::decode(replies[0].clone(), &DecodeLimits::default()).unwrap();
            assert_eq!(reply.opcode(), opcode);
            let expected: &[u8] = if matches!(opcode, 202 | 203) {
                b"x"
            } else {
                b""
            };
            assert_eq!(&reply.payload()[..], expected);
        }
    });
}
