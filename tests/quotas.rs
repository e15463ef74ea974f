//! Quotas end to end: a frame over quota is answered `RateLimited` with
//! `retry_after_ms` and not handled, and is accepted again after that long; a
//! handler that takes `QuotaResult` decides itself; per-address budgets are
//! shared; the default quotas stop one session's Broadcast flood before it evicts
//! every receiver.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use framework::client::Client;
use framework::config::{QuotaRule, QuotaScope, Rate};
use framework::dispatch::{QuotaResult, State};
use framework::protocol::ErrorCode;
use framework::{App, Config};
use framework_tests::{any_port, client, expect_server_error, start, DEADLINE};

#[derive(Default)]
struct Calls(AtomicU64);

fn counted(State(calls): State<Calls>) -> Vec<u8> {
    calls.0.fetch_add(1, Ordering::Relaxed);
    b"ok".to_vec()
}

/// Takes the quota result: decides itself.
fn decides(quota: QuotaResult) -> Vec<u8> {
    match quota {
        QuotaResult::Allowed { remaining } => format!("allowed {remaining}").into_bytes(),
        QuotaResult::Exceeded { retry_after_ms } => format!("over {retry_after_ms}").into_bytes(),
        QuotaResult::Unlimited => b"unlimited".to_vec(),
    }
}

fn rate(text: &str) -> Rate {
    text.parse().expect("a rate")
}

#[tokio::test]
async fn over_quota_frames_are_rate_limited_and_not_handled_until_retry_after() {
    let server = start(
        App::new()
            .with_state(Calls::default())
            .register_custom_handler(200, counted)
            .quota(QuotaRule::opcode(200).frames(rate("3/2s burst 3"))),
    )
    .await;
    let calls = server.node().state().get::<Calls>().expect("registered");
    let c = client(&server).await;
    for _ in 0..3 {
        assert_eq!(&c.request(200, b"").await.unwrap().payload()[..], b"ok");
    }
    let err = c
        .request(200, b"")
        .await
        .expect_err("the fourth is over quota");
    let retry = match &err {
        framework::client::ClientError::Server {
            code,
            retry_after_ms,
            ..
        } => {
            assert_eq!(*code, ErrorCode::RateLimited);
            *retry_after_ms
        }
        other => panic!("expected RateLimited, got {other:?}"),
    };
    assert!((1..=700).contains(&retry), "retry_after_ms = {retry}");
    assert_eq!(
        calls.0.load(Ordering::Relaxed),
        3,
        "the refused frame was not handled"
    );
    // Other opcodes are not limited by it.
    assert!(c.ping().await.is_ok());
    // After retry_after_ms, one more fits.
    tokio::time::sleep(Duration::from_millis(u64::from(retry) + 20)).await;
    assert_eq!(&c.request(200, b"").await.unwrap().payload()[..], b"ok");
    assert_eq!(calls.0.load(Ordering::Relaxed), 4);
    // Each connection has its own budget.
    let other = client(&server).await;
    assert_eq!(&other.request(200, b"").await.unwrap().payload()[..], b"ok");
    server.shutdown().await;
}

#[tokio::test]
async fn a_handler_that_takes_quota_result_decides_itself() {
    let server = start(
        App::new()
            .register_custom_handler(201, decides)
            .register_custom_handler(202, decides)
            .quota(QuotaRule::opcode(201).frames(rate("2/10s burst 2"))),
    )
    .await;
    let c = client(&server).await;
    let text = |f: framework::protocol::Frame| String::from_utf8_lossy(&f.payload()).into_owned();
    assert_eq!(text(c.request(201, b"").await.unwrap()), "allowed 1");
    assert_eq!(text(c.request(201, b"").await.unwrap()), "allowed 0");
    let over = text(c.request(201, b"").await.unwrap());
    assert!(over.starts_with("over "), "{over}");
    assert_eq!(text(c.request(202, b"").await.unwrap()), "unlimited");
    server.shutdown().await;
}

#[tokio::test]
async fn a_per_address_budget_is_shared_by_its_connections() {
    let server = start(
        App::new().register_custom_handler(203, || ()).quota(
            QuotaRule::opcode(203)
                .per(QuotaScope::Ip)
                .frames(rate("2/10s burst 2")),
        ),
    )
    .await;
    let (a, b) = (client(&server).await, client(&server).await);
    assert!(a.request(203, b"").await.is_ok());
    assert!(b.request(203, b"").await.is_ok());
    expect_server_error(b.request(203, b"").await, ErrorCode::RateLimited);
    expect_server_error(a.request(203, b"").await, ErrorCode::RateLimited);
    server.shutdown().await;
}

#[tokio::test]
async fn an_empty_quota_list_turns_quotas_off() {
    let server = start(App::new().config(Config {
        quotas: Vec::new(),
        ..Config::default()
    }))
    .await;
    let c = client(&server).await;
    for _ in 0..40 {
        c.broadcast(b"x").await.expect("no Broadcast quota");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_default_quotas_stop_a_broadcast_flood_before_it_evicts_the_receivers() {
    let server = App::new()
        .config(Config {
            max_message_size: 2 << 20,
            ..Config::default()
        })
        .run_websocket_service(any_port())
        .start()
        .await
        .unwrap();
    let url = format!("ws://{}/", server.websocket_addr());
    let mut receivers = Vec::new();
    for _ in 0..50 {
        receivers.push(Client::connect(&url).await.unwrap());
    }
    let sender = Client::connect(&url).await.unwrap();
    let payload = vec![7u8; 1 << 20];
    let (mut accepted, mut limited) = (0, 0);
    for _ in 0..40 {
        match sender.broadcast(&payload).await {
            Ok(()) => accepted += 1,
            Err(e) => {
                expect_server_error::<()>(Err(e), ErrorCode::RateLimited);
                limited += 1;
            }
        }
    }
    assert!(
        limited >= 30,
        "the flood was limited: {accepted} accepted, {limited} refused"
    );
    assert!(accepted <= 10, "{accepted} one-MiB broadcasts accepted");
    // Every receiver is still connected, and gets every accepted broadcast.
    for r in &receivers {
        for _ in 0..accepted {
            let f = r.recv_timeout(DEADLINE).await.expect("a broadcast");
            assert_eq!(f.payload().len(), 1 << 20);
        }
        assert!(r.ping().await.is_ok(), "the receiver was not evicted");
    }
    assert_eq!(
        server
            .node()
            .metrics()
            .slow_consumer_closes
            .load(Ordering::Relaxed),
        0
    );
    server.shutdown().await;
}
