//! Every extractor, the request by value in any position, a derived message, a
//! flatc table (borrowed, and owned for async handlers), user-defined sync and
//! async extractors, optional extractors and connection extensions.

use framework::dispatch::{
    AsyncFromRequestParts, Body, Extension, FromRequestParts, QuotaResult, State, Table, Trace,
    TransactionId,
};
use framework::node::Node;
use framework::prelude::*;
use framework::protocol::{fbs, Frame};

#[derive(framework::Message)]
struct Sum {
    a: i64,
    b: i64,
}

struct Counter(std::sync::atomic::AtomicU64);

#[derive(Clone)]
struct User(String);

/// A user-defined extractor.
struct SessionId(uuid::Uuid);

impl FromRequestParts for SessionId {
    fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        Ok(SessionId(req.connection().id()))
    }
}

/// A user-defined extractor that awaits.
struct Looked(u64);

impl AsyncFromRequestParts for Looked {
    async fn from_request_parts(req: &Request) -> Result<Self, HandlerError> {
        tokio::task::yield_now().await;
        Ok(Looked(req.span_id()))
    }
}

#[opcode(200)]
fn by_value(ctx: Request) -> Vec<u8> {
    ctx.body().to_vec()
}

#[opcode(201)]
fn request_last(sum: Sum, ctx: Request) -> Vec<u8> {
    format!("{} {}", ctx.opcode(), sum.a + sum.b).into_bytes()
}

#[opcode(202)]
fn builder(mut ctx: Request) -> Reply {
    framework::helpers::make_empty_response(&mut ctx, 202)
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
    looked: Looked,
    user: Option<Extension<User>>,
    sum: Sum,
) -> Vec<u8> {
    let _ = (
        conn.id(),
        trace.trace_id,
        quota.is_allowed(),
        node.node_id(),
        looked.0,
        user.map(|Extension(u)| u.0),
    );
    let _ = (tx.0, frame.opcode(), session.0, body.len(), sum.a);
    counter.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Vec::new()
}

/// Extractors around the request by value, with a borrowed flatc table.
#[opcode(204)]
fn flatc_table(ctx: Request, msg: fbs::Message<'_>, trace: Trace) -> Vec<u8> {
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

/// An async handler takes an owned flatc table.
#[opcode(208)]
async fn owned_table(msg: Table<fbs::Message<'static>>, ctx: Request) -> Vec<u8> {
    let _ = ctx.opcode();
    msg.get().channel().unwrap_or_default().as_bytes().to_vec()
}

/// A connection extension, required.
#[opcode(209)]
fn extension(Extension(user): Extension<User>) -> Vec<u8> {
    user.0.into_bytes()
}

fn main() {
    let _ = App::new()
        .with_registered()
        .with_state(Counter(std::sync::atomic::AtomicU64::new(0)));
}
