//! The Rust client's protocol v1.1 calls end to end, against a real server on a
//! loopback port: `subscribe_recover` (replay exactly what was missed, then the
//! `Ack`), `history` pages, `presence`, and the reconnecting client, whose
//! connection the server closes while publishing goes on.
//!
//! Absence is never asserted by waiting: replayed publications reach the delivery
//! stream before the `Ack` that resolves `subscribe_recover` (one connection, in
//! order), so what is not there when it returns never comes; after a reconnection,
//! a live publication must be the very next delivery.

use std::time::Duration;

use framework::client::{
    Client, ClientError, ConnectionEvent, ReconnectPolicy, Recovered, StreamPosition,
};
use framework::config::ChannelOptions;
use framework::protocol::{ErrorCode, Frame, Opcode};
use framework::{App, AppHandle};
use framework_tests::{any_port, client, eventually_async, expect_server_error, url, DEADLINE};
use tokio::sync::broadcast;

async fn server() -> AppHandle {
    App::new()
        .channel_options(ChannelOptions::new("chat:*").history(1000, Duration::from_secs(300)))
        .channel_options(
            ChannelOptions::new("room:*")
                .history(100, Duration::from_secs(300))
                .presence(true),
        )
        .run_websocket_service(any_port())
        .start()
        .await
        .expect("server starts")
}

/// The next delivery, which must be a publication on `channel`.
async fn next_publication(c: &Client, channel: &str) -> Frame {
    let frame = c
        .recv_timeout(DEADLINE)
        .await
        .unwrap_or_else(|| panic!("a publication on {channel} within {DEADLINE:?}"));
    assert_eq!(frame.opcode(), Opcode::Publish.0, "a Publish: {frame:?}");
    assert_eq!(frame.channel(), Some(channel), "{frame:?}");
    frame
}

/// (offset, payload) of the next `n` publications on `channel`.
async fn take(c: &Client, channel: &str, n: usize) -> Vec<(u64, Vec<u8>)> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let f = next_publication(c, channel).await;
        got.push((f.offset(), f.payload().to_vec()));
    }
    got
}

/// (offset, payload) of what is already in the delivery stream.
fn drain(c: &Client) -> Vec<(u64, Vec<u8>)> {
    std::iter::from_fn(|| c.try_recv())
        .map(|f| {
            assert_eq!(f.opcode(), Opcode::Publish.0, "{f:?}");
            (f.offset(), f.payload().to_vec())
        })
        .collect()
}

fn expected(offsets: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
    offsets.map(|o| (o, format!("m{o}").into_bytes())).collect()
}

/// Publishes `m<o>` for every offset in `offsets` (the payload names its expected
/// offset: the channel's offsets are 1, 2, 3, … in publish order).
async fn publish_range(p: &Client, channel: &str, offsets: std::ops::RangeInclusive<u64>) {
    for o in offsets {
        p.publish(channel, format!("m{o}").as_bytes())
            .await
            .expect("publish");
    }
}

/// The next event that `pick` accepts (others are skipped).
async fn event<T>(
    events: &mut broadcast::Receiver<ConnectionEvent>,
    what: &str,
    mut pick: impl FnMut(&ConnectionEvent) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(t) = pick(&e) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("events ended before {what}"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}"))
}

fn quick_policy() -> ReconnectPolicy {
    ReconnectPolicy {
        initial_delay: Duration::from_millis(300),
        max_delay: Duration::from_secs(1),
        ..ReconnectPolicy::default()
    }
}

async fn reconnecting(handle: &AppHandle) -> Client {
    Client::builder(url(handle))
        .reconnect(quick_policy())
        .connect()
        .await
        .expect("client connects")
}

/// Closes `c`'s session from the server side, as a restarting node would.
fn kill(handle: &AppHandle, c: &Client) {
    handle
        .node()
        .hub()
        .session(&c.session_id())
        .expect("the client's session is on this node")
        .close(1012, "restart");
}

#[tokio::test]
async fn subscribe_recover_replays_exactly_what_was_missed_then_acks() {
    let server = server().await;
    let (sub, publisher) = (client(&server).await, client(&server).await);

    sub.subscribe("chat:a").await.expect("subscribe");
    publish_range(&publisher, "chat:a", 1..=3).await;
    assert_eq!(take(&sub, "chat:a", 3).await, expected(1..=3));
    let epoch = sub
        .position("chat:a")
        .expect("a position after publications")
        .epoch;
    assert!(!epoch.is_empty());
    assert_eq!(
        sub.position("chat:a"),
        Some(StreamPosition {
            epoch: epoch.clone(),
            offset: 3
        })
    );

    sub.unsubscribe("chat:a").await.expect("unsubscribe");
    assert_eq!(sub.position("chat:a"), None, "not followed once left");
    publish_range(&publisher, "chat:a", 4..=9).await;

    let recovery = sub
        .subscribe_recover("chat:a", &epoch, 3)
        .await
        .expect("recovering subscribe");
    assert_eq!(
        recovery,
        Recovered {
            recovered: true,
            epoch: epoch.clone(),
            offset: 9
        }
    );
    // Replayed before the Ack: all of them are already here, nothing else.
    assert_eq!(drain(&sub), expected(4..=9));
    assert_eq!(sub.last_recovery("chat:a"), Some(recovery));
    assert_eq!(sub.position("chat:a").map(|p| p.offset), Some(9));

    // Then live publications, without a gap or a duplicate.
    publish_range(&publisher, "chat:a", 10..=10).await;
    assert_eq!(take(&sub, "chat:a", 1).await, expected(10..=10));
    let f = sub.recv_timeout(Duration::ZERO).await;
    assert!(f.is_none(), "nothing else: {f:?}");

    // Recovering from the current position replays nothing and is recovered.
    let fresh = client(&server).await;
    let same = fresh
        .subscribe_recover("chat:a", &epoch, 10)
        .await
        .expect("recovering subscribe");
    assert!(same.recovered && same.offset == 10, "{same:?}");
    assert!(drain(&fresh).is_empty());

    // offset 0 in the current epoch: everything retained.
    let all = client(&server).await;
    let r = all
        .subscribe_recover("chat:a", &epoch, 0)
        .await
        .expect("recover");
    assert!(r.recovered, "{r:?}");
    assert_eq!(drain(&all), expected(1..=10));
}

#[tokio::test]
async fn subscribe_recover_with_a_wrong_epoch_replays_nothing() {
    let server = server().await;
    let publisher = client(&server).await;
    publish_range(&publisher, "chat:b", 1..=5).await;
    let epoch = publisher
        .history("chat:b", 0, 1)
        .await
        .expect("history")
        .epoch;

    let sub = client(&server).await;
    let recovery = sub
        .subscribe_recover("chat:b", "not-the-epoch", 2)
        .await
        .expect("recovering subscribe");
    assert_eq!(
        recovery,
        Recovered {
            recovered: false,
            epoch: epoch.clone(),
            offset: 5
        }
    );
    assert!(drain(&sub).is_empty(), "nothing is replayed");
    assert_eq!(
        sub.position("chat:b"),
        Some(StreamPosition { epoch, offset: 5 }),
        "the Ack tells where live publications go on from"
    );
    // Subscribed all the same: the next publication is the first delivery.
    publish_range(&publisher, "chat:b", 6..=6).await;
    assert_eq!(take(&sub, "chat:b", 1).await, expected(6..=6));

    // A channel without history: answered, never recovered, no position.
    let plain = sub
        .subscribe_recover("news", "whatever", 3)
        .await
        .expect("recovering subscribe");
    assert_eq!(plain, Recovered::default());
    assert_eq!(sub.position("news"), None);
    publisher.publish("news", b"live").await.expect("publish");
    let f = sub.recv_timeout(DEADLINE).await.expect("a delivery");
    assert_eq!((f.channel(), f.offset()), (Some("news"), 0));
}

#[tokio::test]
async fn history_pages_ascending_with_the_channels_position() {
    let server = server().await;
    let publisher = client(&server).await;
    publish_range(&publisher, "chat:h", 1..=10).await;

    let first = publisher.history("chat:h", 0, 4).await.expect("history");
    assert!(!first.epoch.is_empty());
    assert_eq!(first.offset, 10, "the latest offset");
    let as_pairs = |page: &framework::client::HistoryPage| {
        page.publications
            .iter()
            .map(|p| (p.offset, p.payload.to_vec()))
            .collect::<Vec<_>>()
    };
    assert_eq!(as_pairs(&first), expected(1..=4));
    for p in &first.publications {
        assert_eq!(p.emitter_id, Some(publisher.session_id()));
        assert_eq!(p.user_id, "", "anonymous publisher");
    }

    let second = publisher.history("chat:h", 4, 4).await.expect("history");
    assert_eq!(as_pairs(&second), expected(5..=8));
    assert_eq!(
        (second.epoch.as_str(), second.offset),
        (first.epoch.as_str(), 10)
    );
    let rest = publisher.history("chat:h", 8, 100).await.expect("history");
    assert_eq!(as_pairs(&rest), expected(9..=10));
    let none = publisher.history("chat:h", 10, 5).await.expect("history");
    assert!(none.publications.is_empty());
    assert_eq!(none.offset, 10);

    // The pages recover a subscriber exactly.
    let sub = client(&server).await;
    let r = sub
        .subscribe_recover("chat:h", &first.epoch, 8)
        .await
        .expect("recover");
    assert!(r.recovered);
    assert_eq!(drain(&sub), expected(9..=10));

    expect_server_error(
        publisher.history("news", 0, 10).await,
        ErrorCode::InvalidArgument,
    );
}

#[tokio::test]
async fn presence_lists_the_subscribers_with_counts() {
    let server = server().await;
    let node = server.node().node_id();
    let (a, b) = (client(&server).await, client(&server).await);
    a.subscribe("room:p").await.expect("subscribe");
    b.subscribe("room:p").await.expect("subscribe");

    let presence = a.presence("room:p").await.expect("presence");
    assert_eq!(presence.num_clients, 2);
    assert_eq!(presence.num_users, 0, "anonymous sessions are not users");
    let mut sessions: Vec<_> = presence.clients.iter().map(|e| e.session).collect();
    sessions.sort();
    let mut want = vec![a.session_id(), b.session_id()];
    want.sort();
    assert_eq!(sessions, want);
    for entry in &presence.clients {
        assert_eq!(entry.node, node);
        assert_eq!(entry.user_id, "");
    }

    b.unsubscribe("room:p").await.expect("unsubscribe");
    eventually_async("b leaves the presence", DEADLINE, || async {
        let p = a.presence("room:p").await.expect("presence");
        p.num_clients == 1 && p.clients.len() == 1 && p.clients[0].session == a.session_id()
    })
    .await;

    expect_server_error(a.presence("chat:x").await, ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn a_reconnecting_client_recovers_every_publication_exactly_once() {
    let server = server().await;
    let publisher = client(&server).await;
    let c = reconnecting(&server).await;
    let mut events = c.connection_events();

    c.subscribe("chat:live").await.expect("subscribe");
    // Nothing arrives on this one before the connection drops: its position is
    // the one the Subscribe's Ack gave.
    c.subscribe("chat:quiet").await.expect("subscribe");
    c.subscribe("news").await.expect("subscribe (no history)");
    publish_range(&publisher, "chat:live", 1..=3).await;
    assert_eq!(take(&c, "chat:live", 3).await, expected(1..=3));

    for round in 0..2u64 {
        let first_session = c.session_id();
        kill(&server, &c);
        let close = event(&mut events, "Disconnected", |e| match e {
            ConnectionEvent::Disconnected { close } => Some(close.clone()),
            _ => None,
        })
        .await;
        assert_eq!(close, Some((1012, "restart".to_string())));

        // Published while the client is away (or, on a very slow machine, while it
        // comes back: either way it must get each one once, in order).
        let base = 3 + round * 7;
        publish_range(&publisher, "chat:live", base + 1..=base + 7).await;
        publish_range(&publisher, "chat:quiet", round * 2 + 1..=round * 2 + 2).await;

        let mut resubscribed = Vec::new();
        let attempts = loop {
            let e = event(&mut events, "Resubscribed/Reconnected", |e| Some(e.clone())).await;
            match e {
                ConnectionEvent::Resubscribed { channel, recovery } => {
                    resubscribed.push((channel, recovery))
                }
                ConnectionEvent::Reconnected {
                    session_id,
                    attempts,
                    ..
                } => {
                    assert_eq!(session_id, c.session_id());
                    break attempts;
                }
                ConnectionEvent::ReconnectFailed { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        };
        assert!(attempts >= 1);
        assert_ne!(c.session_id(), first_session, "a new session");
        resubscribed.sort_by(|x, y| x.0.cmp(&y.0));
        let names: Vec<_> = resubscribed.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["chat:live", "chat:quiet", "news"]);
        for (channel, recovery) in &resubscribed {
            let history = channel.starts_with("chat:");
            assert_eq!(recovery.recovered, history, "{channel}: {recovery:?}");
            assert_eq!(c.last_recovery(channel).as_ref(), Some(recovery));
        }
        assert!(resubscribed[0].1.offset <= base + 7, "{resubscribed:?}");

        // Every publication of the outage once, in offset order, per channel.
        let mut live = Vec::new();
        let mut quiet = Vec::new();
        while live.len() < 7 || quiet.len() < 2 {
            let f = c
                .recv_timeout(DEADLINE)
                .await
                .expect("the missed publications");
            let entry = (f.offset(), f.payload().to_vec());
            match f.channel() {
                Some("chat:live") => live.push(entry),
                Some("chat:quiet") => quiet.push(entry),
                other => panic!("unexpected delivery on {other:?}"),
            }
        }
        assert_eq!(live, expected(base + 1..=base + 7), "round {round}");
        assert_eq!(
            quiet,
            expected(round * 2 + 1..=round * 2 + 2),
            "round {round}"
        );

        // Then live ones, next in line: no duplicate was queued before them.
        publisher
            .publish("news", b"sentinel")
            .await
            .expect("publish");
        let f = c.recv_timeout(DEADLINE).await.expect("the sentinel");
        assert_eq!(
            (f.channel(), f.payload().as_ref()),
            (Some("news"), &b"sentinel"[..])
        );
    }
    assert_eq!(c.position("chat:live").map(|p| p.offset), Some(17));
    assert_eq!(c.position("chat:quiet").map(|p| p.offset), Some(4));
    assert!(c.is_connected() && !c.is_closed());
}

#[tokio::test]
async fn calls_wait_for_the_reconnection_and_unsubscribed_channels_stay_left() {
    let server = server().await;
    let publisher = client(&server).await;
    let c = reconnecting(&server).await;
    let mut events = c.connection_events();
    c.subscribe("chat:kept").await.expect("subscribe");
    c.subscribe("chat:left").await.expect("subscribe");
    c.unsubscribe("chat:left").await.expect("unsubscribe");

    kill(&server, &c);
    event(&mut events, "Disconnected", |e| {
        matches!(e, ConnectionEvent::Disconnected { .. }).then_some(())
    })
    .await;
    // Made while reconnecting: answered on the new connection.
    c.publish("chat:kept", b"m1").await.expect("publish waits");
    assert!(c.is_connected());
    assert_eq!(take(&c, "chat:kept", 1).await, expected(1..=1));
    assert!(c.last_recovery("chat:left").is_none(), "not resubscribed");
    publish_range(&publisher, "chat:left", 1..=1).await;
    publish_range(&publisher, "chat:kept", 2..=2).await;
    assert_eq!(
        take(&c, "chat:kept", 1).await,
        expected(2..=2),
        "nothing from the channel it left"
    );
}

#[tokio::test]
async fn a_reconnecting_client_ends_when_closed_or_when_it_gives_up() {
    let server = server().await;
    let c = reconnecting(&server).await;
    c.subscribe("chat:end").await.expect("subscribe");
    c.close();
    assert!(
        c.recv_timeout(DEADLINE).await.is_none(),
        "the delivery stream ends"
    );
    assert!(c.is_closed());
    assert!(matches!(c.ping().await, Err(ClientError::Closed)));

    let c = Client::builder(url(&server))
        .reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(100),
            max_attempts: Some(2),
            ..ReconnectPolicy::default()
        })
        .connect()
        .await
        .expect("connects");
    let mut events = c.connection_events();
    server.shutdown().await;
    event(&mut events, "GaveUp", |e| {
        matches!(e, ConnectionEvent::GaveUp).then_some(())
    })
    .await;
    assert!(c.recv_timeout(DEADLINE).await.is_none());
    assert!(c.is_closed() && !c.is_connected());
    assert!(matches!(
        c.publish("chat:end", b"x").await,
        Err(ClientError::Closed)
    ));
}
