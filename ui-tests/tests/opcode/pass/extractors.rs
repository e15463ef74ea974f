//! Every extractor, the request by value / `&` / `&mut`, a derived message and a
//! flatc-generated table, and a user-defined extractor.

use framework::dispatch::{Body, FromRequest, QuotaResult, State, Trace, TransactionId, ViaParts};
use framework::node::Node;
use framework::prelude::*;
use framework::protocol::{fbs, Frame};

#[derive(framework::Message)]
struct Sum {
    a: i64,
    b: i64,
}

struct Counter(std::sync::atomic::AtomicU64);

/// A user-defined extractor.
struct SessionId(uuid::Uuid);

impl<'b> FromRequest<'b, ViaParts> for SessionId {
    fn from_request(req: &Request, _body: &'b bytes::Bytes) -> Result<Self, HandlerError> {
        Ok(SessionId(req.connection().id()))
    }
}

#[opcode(200)]
fn by_value(ctx: Request) -> Vec<u8> {
    ctx.body().to_vec()
}

#[opcode(201)]
fn by_ref(ctx: &Request, sum: Sum) -> Vec<u8> {
    format!("{} {}", ctx.opcode(), sum.a + sum.b).into_bytes()
}

#[opcode(202)]
fn by_mut(ctx: &mut Request) -> Reply {
    framework::helpers::make_empty_response(ctx, 202)
}

#[opcode(203)]
#[allow(clippy::too_many_arguments)]
async fn every_extractor(
    conn: Connection,
    State(counter): State<Counter>,
    trace: Trace,
    quota: QuotaResult,
    Body(body): Body,
    node: Node,
    tx: TransactionId,
    frame: Frame,
    session: SessionId,
    sum: Sum,
) -> Vec<u8> {
    let _ = (
        conn.id(),
        trace.trace_id,
        quota.is_allowed(),
        node.node_id(),
    );
    let _ = (tx.0, frame.opcode(), session.0, body.len(), sum.a);
    counter.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Vec::new()
}

/// Extractors around the request by value, with a borrowed flatc table.
#[opcode(204)]
fn flatc_table(ctx: &Request, msg: fbs::Message<'_>, trace: Trace) -> Vec<u8> {
    let _ = (ctx.opcode(), trace.span_id);
    msg.channel().unwrap_or_default().as_bytes().to_vec()
}

/// Explicit lifetime on the borrowed table.
#[opcode(205)]
fn flatc_table_named<'a>(msg: fbs::Message<'a>) -> Vec<u8> {
    msg.channel().unwrap_or_default().as_bytes().to_vec()
}

/// Patterns in argument position.
#[opcode(206)]
fn patterns(Body(_): Body, _: Trace, Sum { a, b }: Sum) -> Vec<u8> {
    (a + b).to_le_bytes().to_vec()
}

/// The request moved in next to a decoded message and a borrowed table (both
/// are extracted before the request is moved).
#[opcode(207)]
fn by_value_with_message(ctx: Request, sum: Sum) -> Vec<u8> {
    let _ = ctx.opcode();
    (sum.a - sum.b).to_le_bytes().to_vec()
}

#[opcode(208)]
async fn by_value_with_table(msg: fbs::Message<'_>, ctx: Request) -> Vec<u8> {
    let _ = ctx.opcode();
    msg.channel().unwrap_or_default().as_bytes().to_vec()
}

fn main() {
    let _ = App::new()
        .with_registered()
        .with_state(Counter(std::sync::atomic::AtomicU64::new(0)));
}
