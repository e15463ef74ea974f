//! Dispatch cost of a macro-registered typed handler next to a hand-registered
//! closure doing the same decoding (the "costs no more than" claim), with
//! a raw body echo as the floor. Each frame goes through the real decode →
//! dispatch → reply path of [`TestNode`], in process, on a current-thread runtime.
//!
//! Run: `cargo bench -p framework-bench --bench dispatch`
//! (smoke test: `cargo bench -p framework-bench -- --test`).

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use framework::prelude::*;
use framework::protocol::{DecodeLimits, Frame, FrameFields};
use framework::testing::TestNode;

/// The request: a few scalars, a string and a vector of strings.
#[derive(framework::Message, Debug, Clone, PartialEq)]
struct Order {
    id: u64,
    symbol: String,
    quantity: u32,
    price: f64,
    tags: Vec<String>,
}

/// The response.
#[derive(framework::Message, Debug, Clone, PartialEq)]
struct Accepted {
    id: u64,
    total: f64,
    accepted: bool,
}

/// The work both handlers do once the order is decoded.
fn accept(order: &Order) -> Accepted {
    Accepted {
        id: order.id,
        total: order.price * f64::from(order.quantity),
        accepted: !order.tags.is_empty(),
    }
}

/// Registered by the macro, with typed extraction generated from the signature.
#[opcode(200)]
fn place_order(order: Order) -> Accepted {
    accept(&order)
}

/// The same by hand: decode the payload, answer `BadPayload` if it does not
/// decode, encode the response.
fn hand_written(ctx: Request) -> Reply {
    match Order::decode(ctx.body()) {
        Ok(order) => Reply::payload(accept(&order).encode()),
        Err(e) => Reply::error(HandlerError::bad_payload(format!(
            "payload is not a valid Order: {e}"
        ))),
    }
}

/// The floor: the payload echoed back, no decoding (what a handler working on a
/// flatc-generated table it never copies costs at most).
fn echo(ctx: Request) -> Bytes {
    ctx.body().clone()
}

/// The request frame, with a `transaction_id` like a client's request.
fn request(node: &TestNode) -> Bytes {
    let order = Order {
        id: 42,
        symbol: "FWK".into(),
        quantity: 3,
        price: 12.5,
        tags: vec!["limit".into(), "day".into()],
    };
    FrameFields::new(200)
        // Any UUID will do: the in-process session's id is one at hand.
        .transaction_id(Some(node.connection().id()))
        .payload(&order.encode())
        .encode()
}

/// One reply frame's payload; panics unless there is exactly one reply.
async fn reply_payload(node: &TestNode, frame: &Bytes) -> Bytes {
    let replies = node.dispatch(frame.clone()).await;
    assert_eq!(replies.len(), 1, "one reply per request");
    let reply = Frame::decode(replies[0].clone(), &DecodeLimits::default()).unwrap();
    assert_eq!(reply.opcode(), 200, "a response, not an error");
    reply.payload()
}

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (frame, macro_node, closure_node, echo_node) = rt.block_on(async {
        let macro_node = TestNode::new(App::new().with_registered()).await.unwrap();
        let closure_node = TestNode::new(App::new().register_custom_handler(200, hand_written))
            .await
            .unwrap();
        let echo_node = TestNode::new(App::new().register_custom_handler(200, echo))
            .await
            .unwrap();
        let frame = request(&macro_node);
        // Both typed handlers answer the same bytes; the echo answers the payload.
        let by_macro = reply_payload(&macro_node, &frame).await;
        let by_hand = reply_payload(&closure_node, &frame).await;
        assert_eq!(by_macro, by_hand);
        assert_eq!(
            Accepted::decode(&by_macro).unwrap(),
            Accepted {
                id: 42,
                total: 37.5,
                accepted: true
            }
        );
        let echoed = reply_payload(&echo_node, &frame).await;
        assert_eq!(
            Order::decode(&echoed).unwrap(),
            Order::decode(
                &Frame::decode(frame.clone(), &DecodeLimits::default())
                    .unwrap()
                    .payload()
            )
            .unwrap()
        );
        (frame, macro_node, closure_node, echo_node)
    });

    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for (name, node) in [
        ("macro_typed_handler", &macro_node),
        ("hand_registered_closure", &closure_node),
        ("raw_body_echo", &echo_node),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| node.dispatch(frame.clone()));
        });
    }
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
