//! History and recovery (protocol v1.1), on every storage: in memory on one node,
//! in Redis and in NATS JetStream for a cluster (Debian's `redis-server` and
//! `nats-server -js`, started here on free loopback ports; two nodes
//! publishing). The same scenarios run on each.

use std::time::Duration;

use framework::client::Client;
use framework::config::{ChannelOptions, ClusterConfig};
use framework::protocol::{fbs, ErrorCode, Frame, FrameFields, Opcode};
use framework::{App, AppHandle, Config};
use framework_tests::engines::{Engine, Kind};
use framework_tests::http::{self, Request};
use framework_tests::{any_port, expect_server_error, DEADLINE};

/// Where the nodes of a scenario keep history.
#[derive(Debug, Clone, Copy)]
enum Store {
    Memory,
    Redis,
    Nats,
}

/// The nodes of a scenario: one with the in-memory storage, or two joined
/// through an engine (which lives as long as this value).
struct Nodes {
    nodes: Vec<AppHandle>,
    engine: Option<Engine>,
}

fn options() -> Vec<ChannelOptions> {
    vec![
        ChannelOptions::new("chat:*").history(5000, Duration::from_secs(300)),
        ChannelOptions::new("small:*").history(10, Duration::from_secs(300)),
        ChannelOptions::new("brief:*").history(100, Duration::from_millis(300)),
        ChannelOptions::new("readonly:*")
            .history(10, Duration::from_secs(300))
            .allow_publish(false),
    ]
}

async fn node(cluster: Option<ClusterConfig>) -> AppHandle {
    App::new()
        .config(Config {
            cluster,
            channel_options: options(),
            api_key: Some("key".into()),
            ..Config::default()
        })
        .run_websocket_service(any_port())
        .run_service(any_port())
        .start()
        .await
        .expect("node starts")
}

impl Nodes {
    async fn start(store: Store, prefix: &str) -> Nodes {
        match store {
            Store::Memory => Nodes {
                nodes: vec![node(None).await],
                engine: None,
            },
            Store::Redis | Store::Nats => {
                let engine = Engine::start(if let Store::Redis = store {
                    Kind::Redis
                } else {
                    Kind::Nats
                });
                let config = engine.cluster(prefix);
                Nodes {
                    nodes: vec![node(Some(config.clone())).await, node(Some(config)).await],
                    engine: Some(engine),
                }
            }
        }
    }

    /// The `i`-th node (wrapping: one node serves every index).
    fn at(&self, i: usize) -> &AppHandle {
        &self.nodes[i % self.nodes.len()]
    }

    async fn client(&self, i: usize) -> Client {
        Client::connect(&format!("ws://{}/", self.at(i).websocket_addr()))
            .await
            .expect("connects")
    }
}

/// A recovering `Subscribe`: (recovered, epoch, offset) of its Ack.
async fn recover(c: &Client, channel: &str, epoch: &str, offset: u64) -> (bool, String, u64) {
    let ack = c
        .call(
            FrameFields::new(Opcode::Subscribe.0)
                .channel(channel)
                .recover(true)
                .epoch(epoch)
                .offset(offset),
        )
        .await
        .expect("a recovering Subscribe is answered");
    assert_eq!(ack.opcode(), Opcode::Ack.0);
    (
        ack.recovered(),
        ack.epoch().unwrap_or_default().to_string(),
        ack.offset(),
    )
}

/// A publish with an Ack: the publication's (offset, epoch).
async fn publish(c: &Client, channel: &str, payload: &[u8]) -> (u64, String) {
    let ack = c
        .call(
            FrameFields::new(Opcode::Publish.0)
                .channel(channel)
                .payload(payload)
                .requires_ack(true),
        )
        .await
        .expect("published");
    (ack.offset(), ack.epoch().unwrap_or_default().to_string())
}

/// Every Publish delivery `c` receives until one carries `last` (or nothing
/// comes for `DEADLINE`).
async fn deliveries_until(c: &Client, last: u64) -> Vec<Frame> {
    let mut got = Vec::new();
    while let Some(f) = c.recv_timeout(DEADLINE).await {
        if f.opcode() == Opcode::Publish.0 {
            let offset = f.offset();
            got.push(f);
            if offset >= last {
                break;
            }
        }
    }
    got
}

async fn publications_carry_consecutive_offsets_and_one_epoch(store: Store) {
    let nodes = Nodes::start(store, "h1").await;
    let (a, b) = (nodes.client(0).await, nodes.client(1).await);
    let sub = nodes.client(1).await;
    sub.subscribe("chat:a").await.unwrap();
    let mut positions = Vec::new();
    for i in 0..20u8 {
        let from = if i % 2 == 0 { &a } else { &b };
        positions.push(publish(from, "chat:a", &[i]).await);
    }
    let offsets: Vec<u64> = positions.iter().map(|p| p.0).collect();
    assert_eq!(
        offsets,
        (1..=20).collect::<Vec<_>>(),
        "no gap, no repeat, cluster-wide"
    );
    let epoch = &positions[0].1;
    assert_eq!(epoch.len(), 16);
    assert!(positions.iter().all(|p| &p.1 == epoch), "one epoch");
    let got = deliveries_until(&sub, 20).await;
    let seen: Vec<(u64, Vec<u8>)> = got
        .iter()
        .map(|f| (f.offset(), f.payload().to_vec()))
        .collect();
    let want: Vec<(u64, Vec<u8>)> = (0..20u8).map(|i| (u64::from(i) + 1, vec![i])).collect();
    assert_eq!(seen, want, "delivered once each, in offset order");
    assert!(got.iter().all(|f| f.epoch() == Some(epoch.as_str())));

    // A channel without options is protocol v1: no offset, no epoch.
    sub.subscribe("plain").await.unwrap();
    a.publish("plain", b"v1").await.unwrap();
    let f = sub.recv_timeout(DEADLINE).await.expect("the v1 delivery");
    assert_eq!((f.offset(), f.epoch()), (0, None));

    // allow_publish = false: clients may not; the server API still may.
    let refused = a
        .call(
            FrameFields::new(Opcode::Publish.0)
                .channel("readonly:x")
                .payload(b"no")
                .requires_ack(true),
        )
        .await;
    expect_server_error(refused, ErrorCode::Forbidden);
    let api = http::send(
        nodes.at(0).service_addr(),
        Request::post_json(
            "/api/publish",
            r#"{"channel":"readonly:x","payload":"aGk="}"#,
        )
        .header("X-Api-Key", "key"),
    )
    .await;
    assert_eq!(api.status, 200, "{}", api.text());
    assert!(api.text().contains(r#""offset":1"#), "{}", api.text());
    drop(nodes);
}

async fn a_reconnecting_subscriber_recovers_exactly_what_it_missed(store: Store) {
    let nodes = Nodes::start(store, "h2").await;
    let publishers = [nodes.client(0).await, nodes.client(1).await];
    let sub = nodes.client(1).await;
    let (recovered, epoch, top) = recover(&sub, "chat:r", "", 0).await;
    assert!(!recovered, "nothing to recover from an unknown epoch");
    assert_eq!(top, 0, "a fresh channel");
    for i in 0..5u32 {
        publish(&publishers[0], "chat:r", &i.to_le_bytes()).await;
    }
    let seen = deliveries_until(&sub, 5).await;
    let last = seen.last().expect("deliveries").offset();
    assert_eq!(last, 5);
    assert_eq!(
        seen[0].epoch(),
        Some(epoch.as_str()),
        "the Ack named the epoch"
    );
    sub.close();
    drop(sub);

    // 1,000 publications while it is away, from both nodes.
    for i in 0..1000u32 {
        let p = &publishers[(i % 2) as usize];
        p.publish_nowait("chat:r", &(1000 + i).to_le_bytes())
            .unwrap();
    }
    publish(&publishers[0], "chat:r", b"barrier").await;
    publish(&publishers[1], "chat:r", b"barrier").await;
    // ... and publishing goes on during the reconnection.
    let live = {
        let p = nodes.client(0).await;
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..200u32 {
                last = publish(&p, "chat:r", &(5000 + i).to_le_bytes()).await.0;
                if i % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            last
        })
    };
    let sub = nodes.client(1).await;
    let ack = sub
        .call(
            FrameFields::new(Opcode::Subscribe.0)
                .channel("chat:r")
                .recover(true)
                .epoch(&epoch)
                .offset(last),
        )
        .await
        .expect("answered");
    assert!(ack.recovered(), "every missed publication is retained");
    assert_eq!(ack.epoch(), Some(epoch.as_str()));
    let final_offset = live.await.unwrap();
    let got = deliveries_until(&sub, final_offset).await;
    let offsets: Vec<u64> = got.iter().map(|f| f.offset()).collect();
    let want: Vec<u64> = (last + 1..=final_offset).collect();
    assert_eq!(offsets.len(), want.len(), "no gap, no duplicate");
    assert_eq!(offsets, want, "in order");
    // The Ack came after the replay and before any live publication; the client
    // answers the call as soon as the Ack arrives, so what was queued before it
    // is what the replay covered: every offset up to the Ack's.
    assert!(ack.offset() >= 1007 && ack.offset() <= final_offset);
    let metrics = http::get(nodes.at(1).service_addr(), "/metrics")
        .await
        .text();
    for line in [
        "framework_recoveries_total{recovered=\"true\"} 1",
        "framework_recoveries_total{recovered=\"false\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(metrics.contains("framework_history_publications_total"));
    drop(nodes);
}

async fn trimmed_or_lost_history_is_not_recovered(store: Store) {
    let mut nodes = Nodes::start(store, "h3").await;
    let p = nodes.client(0).await;
    let sub = nodes.client(1).await;
    let mut epoch = String::new();
    for i in 0..30u8 {
        epoch = publish(&p, "small:t", &[i]).await.1;
    }
    // Offset 5 was trimmed (10 kept: 21..=30).
    let (recovered, e, top) = recover(&sub, "small:t", &epoch, 5).await;
    assert_eq!((recovered, e.as_str(), top), (false, epoch.as_str(), 30));
    assert!(
        sub.recv_timeout(Duration::from_millis(300)).await.is_none(),
        "nothing replayed when it cannot be complete"
    );
    // Within what is kept: recovered.
    let other = nodes.client(0).await;
    assert!(recover(&other, "small:t", &epoch, 25).await.0);
    let replay = deliveries_until(&other, 30).await;
    assert_eq!(
        replay.iter().map(|f| f.offset()).collect::<Vec<_>>(),
        vec![26, 27, 28, 29, 30]
    );
    // Offset 0 in the current epoch replays everything retained; some was
    // trimmed, so it is not `recovered`.
    let from_zero = nodes.client(1).await;
    assert!(!recover(&from_zero, "small:t", &epoch, 0).await.0);
    let replay = deliveries_until(&from_zero, 30).await;
    assert_eq!(
        replay.iter().map(|f| f.offset()).collect::<Vec<_>>(),
        (21..=30).collect::<Vec<_>>()
    );
    // Another epoch: not recovered, nothing replayed.
    let third = nodes.client(1).await;
    let (recovered, e, _) = recover(&third, "small:t", "0000000000000000", 25).await;
    assert!(!recovered);
    assert_eq!(e, epoch);
    assert!(third
        .recv_timeout(Duration::from_millis(300))
        .await
        .is_none());

    // Time-to-live: publications expire, offsets go on.
    publish(&p, "brief:x", b"1").await;
    let (_, brief_epoch) = publish(&p, "brief:x", b"2").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let fresh = nodes.client(0).await;
    let (recovered, e, top) = recover(&fresh, "brief:x", &brief_epoch, 1).await;
    assert_eq!(
        (recovered, top),
        (false, 2),
        "expired publications cannot be replayed"
    );
    assert_eq!(e, brief_epoch, "offsets never restart within an epoch");
    assert_eq!(publish(&p, "brief:x", b"3").await.0, 3);

    if let Some(engine) = nodes.engine.as_mut() {
        // The storage restarts empty: a new epoch, nothing recovered.
        let (kind, port) = (engine.kind, engine.port);
        engine.kill();
        nodes.engine = Some(Engine::start_on(kind, port));
        let mut after = None;
        for _ in 0..100 {
            match p
                .call(
                    FrameFields::new(Opcode::Publish.0)
                        .channel("small:t")
                        .payload(b"again")
                        .requires_ack(true),
                )
                .await
            {
                Ok(ack) => {
                    after = Some((ack.offset(), ack.epoch().unwrap_or_default().to_string()));
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let (offset, new_epoch) = after.expect("publishing resumes once the engine is back");
        assert_eq!(offset, 1, "a new epoch starts at 1");
        assert_ne!(new_epoch, epoch);
        let late = nodes.client(1).await;
        let (recovered, e, _) = recover(&late, "small:t", &epoch, 30).await;
        assert!(!recovered, "the old epoch is gone");
        assert_eq!(e, new_epoch);
    }
}

async fn history_pages_ascend_within_bounds(store: Store) {
    let nodes = Nodes::start(store, "h4").await;
    let p = nodes.client(0).await;
    let reader = nodes.client(1).await;
    let mut epoch = String::new();
    for i in 0..25u8 {
        epoch = publish(&p, "chat:h", &[i]).await.1;
    }
    let page = |since: u64, limit: u32| {
        reader.call(
            FrameFields::new(Opcode::History.0)
                .channel("chat:h")
                .offset(since)
                .limit(limit),
        )
    };
    let reply = page(0, 10).await.expect("history");
    assert_eq!(reply.opcode(), Opcode::History.0);
    assert_eq!((reply.offset(), reply.epoch()), (25, Some(epoch.as_str())));
    let payload = reply.payload();
    let list = flatbuffers::root::<fbs::HistoryPage<'_>>(&payload).expect("a HistoryPage");
    let pubs = list.publications().expect("publications");
    let offsets: Vec<u64> = pubs.iter().map(|p| p.offset()).collect();
    assert_eq!(offsets, (1..=10).collect::<Vec<_>>(), "the oldest first");
    assert_eq!(
        pubs.get(3).payload().map(|v| v.bytes().to_vec()),
        Some(vec![3])
    );
    assert_eq!(
        pubs.get(0)
            .emitter_id()
            .map(|u| uuid::Uuid::from_bytes(u.bytes().into())),
        Some(p.session_id())
    );
    let reply = page(20, 0).await.unwrap();
    let payload = reply.payload();
    let list = flatbuffers::root::<fbs::HistoryPage<'_>>(&payload).unwrap();
    let offsets: Vec<u64> = list
        .publications()
        .unwrap()
        .iter()
        .map(|p| p.offset())
        .collect();
    assert_eq!(offsets, vec![21, 22, 23, 24, 25]);
    // A channel without history.
    let err = reader
        .call(FrameFields::new(Opcode::History.0).channel("plain"))
        .await;
    expect_server_error(err, ErrorCode::InvalidArgument);
    // The HTTP API.
    let api = http::send(
        nodes.at(1).service_addr(),
        Request::post_json("/api/history", r#"{"channel":"chat:h","since":23}"#)
            .header("X-Api-Key", "key"),
    )
    .await;
    assert_eq!(api.status, 200, "{}", api.text());
    let body: serde_json::Value = serde_json::from_str(&api.text()).unwrap();
    assert_eq!(body["offset"], 25);
    assert_eq!(body["epoch"], epoch.as_str());
    let offsets: Vec<u64> = body["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![24, 25]);
}

framework_tests::on_every!(Store { memory => Memory, redis => Redis, nats => Nats } [
    publications_carry_consecutive_offsets_and_one_epoch,
    a_reconnecting_subscriber_recovers_exactly_what_it_missed,
    trimmed_or_lost_history_is_not_recovered,
    history_pages_ascend_within_bounds
]);

/// The single node's histories hold at most `max_history_bytes` together: past
/// it the oldest publications go, and a recovery past them is not `recovered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_histories_stay_within_max_history_bytes() {
    let server = App::new()
        .config(Config {
            channel_options: options(),
            max_history_bytes: 20 * 1024,
            ..Config::default()
        })
        .run_websocket_service(any_port())
        .start()
        .await
        .unwrap();
    let url = format!("ws://{}/", server.websocket_addr());
    let p = Client::connect(&url).await.unwrap();
    let mut epoch = String::new();
    for i in 0..100u8 {
        epoch = publish(&p, "chat:big", &[i; 1024]).await.1;
    }
    let late = Client::connect(&url).await.unwrap();
    let (recovered, _, top) = recover(&late, "chat:big", &epoch, 1).await;
    assert_eq!((recovered, top), (false, 100), "the oldest were trimmed");
    let recent = Client::connect(&url).await.unwrap();
    assert!(
        recover(&recent, "chat:big", &epoch, 95).await.0,
        "the newest are kept"
    );
    assert_eq!(deliveries_until(&recent, 100).await.len(), 5);
}
