//! Frame-building helpers with the C++ guide's names (`websocket::helpers`).

use bytes::Bytes;
use uuid::Uuid;

use crate::dispatch::{Reply, Request};
use crate::protocol::{FrameFields, IntoOpcode, Opcode};

/// A response with `opcode`, the request's `transaction_id` and trace id, and no
/// payload, built with the request's reused builder.
///
/// ```
/// use framework::{dispatch::Request, helpers, Reply};
/// fn on_200(mut ctx: Request) -> Reply {
///     helpers::make_empty_response(&mut ctx, 200)
/// }
/// ```
pub fn make_empty_response(ctx: &mut Request, opcode: impl IntoOpcode) -> Reply {
    let fields = FrameFields::new(opcode.into_opcode())
        .transaction_id(ctx.transaction_id())
        .trace_id(Some(ctx.trace_id()))
        .span_id(ctx.span_id());
    let root = fields.build(ctx.builder());
    ctx.finish(root)
}

/// A client's `Publish` frame for `channel`.
///
/// ```
/// let frame = framework::helpers::build_ws_publish_frame("room", b"hi", None, false, None, None);
/// assert_eq!(&frame[4..8], b"FWK1");
/// ```
pub fn build_ws_publish_frame(
    channel: &str,
    payload: &[u8],
    transaction_id: Option<Uuid>,
    requires_ack: bool,
    token: Option<&str>,
    trace_id: Option<Uuid>,
) -> Bytes {
    let mut f = FrameFields::new(Opcode::Publish.0)
        .channel(channel)
        .payload(payload)
        .transaction_id(transaction_id)
        .requires_ack(requires_ack)
        .trace_id(trace_id);
    f.token = token;
    f.encode()
}

/// A `Send` frame to session `receiver_id`. `emitter_id` is informative only: the
/// server sets the real emitter on delivery.
///
/// ```
/// use uuid::Uuid;
/// let frame = framework::helpers::build_ws_send_frame(Uuid::new_v4(), Uuid::nil(), b"hi", None, true);
/// assert!(!frame.is_empty());
/// ```
pub fn build_ws_send_frame(
    receiver_id: Uuid,
    emitter_id: Uuid,
    payload: &[u8],
    transaction_id: Option<Uuid>,
    requires_ack: bool,
) -> Bytes {
    FrameFields::new(Opcode::Send.0)
        .receiver_id(Some(receiver_id))
        .emitter_id(Some(emitter_id))
        .payload(payload)
        .transaction_id(transaction_id)
        .requires_ack(requires_ack)
        .encode()
}

/// A `Broadcast` frame.
///
/// ```
/// let frame = framework::helpers::build_ws_broadcast_frame(b"hi", None, false);
/// assert!(!frame.is_empty());
/// ```
pub fn build_ws_broadcast_frame(
    payload: &[u8],
    transaction_id: Option<Uuid>,
    requires_ack: bool,
) -> Bytes {
    FrameFields::new(Opcode::Broadcast.0)
        .payload(payload)
        .transaction_id(transaction_id)
        .requires_ack(requires_ack)
        .encode()
}
