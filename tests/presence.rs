//! Presence and join/leave events (protocol v1.1), on every storage: one node
//! with the in-memory storage, and three nodes over Redis and over NATS with
//! JetStream (Debian's `redis-server` and `nats-server`, started here on free
//! loopback ports) — plus a node in its own process killed with `kill -9`, whose
//! entries must disappear and whose sessions' `Leave` must arrive within the
//! heartbeat timeout.

use std::time::Duration;

use framework::client::Client;
use framework::config::{ChannelOptions, ChannelRule, ClusterConfig, Grant};
use framework::prelude::*;
use framework::protocol::{fbs, ErrorCode, Frame, FrameFields, Opcode};
use framework::storage::PresenceEntry;
use framework::{App, AppHandle, Config};
use framework_tests::engines::{Engine, Kind};
use framework_tests::{any_port, eventually_async, expect_server_error, DEADLINE};
use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
enum Store {
    Memory,
    Redis,
    Nats,
}

/// Opcode 200 names the connection: its payload becomes `ClientInfo.info`.
fn name(ctx: Request) -> Reply {
    ctx.connection().set_info(ctx.body().clone());
    Reply::empty()
}

fn config(cluster: Option<ClusterConfig>) -> Config {
    Config {
        cluster,
        channel_options: vec![
            ChannelOptions::new("room:*")
                .presence(true)
                .join_leave(true),
            ChannelOptions::new("quiet:*").presence(true),
        ],
        channels: vec![ChannelRule {
            subscribe: Some(vec![Grant::Nobody]),
            ..ChannelRule::new("room:secret")
        }],
        ..Config::default()
    }
}

async fn node(cluster: Option<ClusterConfig>) -> AppHandle {
    App::new()
        .config(config(cluster))
        .register_custom_handler(200, name)
        .run_websocket_service(any_port())
        .start()
        .await
        .expect("node starts")
}

/// The nodes of a scenario (and their Redis, alive as long as this value).
struct Nodes {
    nodes: Vec<AppHandle>,
    _engine: Option<Engine>,
}

impl Nodes {
    async fn start(store: Store, prefix: &str) -> Nodes {
        match store {
            Store::Memory => Nodes {
                nodes: vec![node(None).await],
                _engine: None,
            },
            Store::Redis | Store::Nats => {
                let engine = Engine::start(if let Store::Redis = store {
                    Kind::Redis
                } else {
                    Kind::Nats
                });
                let c = engine.cluster(prefix);
                Nodes {
                    nodes: vec![
                        node(Some(c.clone())).await,
                        node(Some(c.clone())).await,
                        node(Some(c)).await,
                    ],
                    _engine: Some(engine),
                }
            }
        }
    }

    /// A client on node `i` (wrapping), named `name`.
    async fn client(&self, i: usize, name: &str) -> Client {
        let node = &self.nodes[i % self.nodes.len()];
        let c = Client::connect(&format!("ws://{}/", node.websocket_addr()))
            .await
            .expect("connects");
        c.request(200, name.as_bytes()).await.expect("named");
        c
    }
}

async fn presence(c: &Client, channel: &str) -> (Vec<PresenceEntry>, u32, u32) {
    let reply = c
        .call(FrameFields::new(Opcode::Presence.0).channel(channel))
        .await
        .expect("presence");
    assert_eq!(reply.opcode(), Opcode::Presence.0);
    let payload = reply.payload();
    let list = flatbuffers::root::<fbs::PresenceList<'_>>(&payload).expect("a PresenceList");
    let mut entries: Vec<PresenceEntry> = list
        .clients()
        .map(|clients| {
            clients
                .iter()
                .map(|c| PresenceEntry {
                    session: Uuid::from_bytes(c.session_id().unwrap().bytes().into()),
                    node: Uuid::from_bytes(c.node_id().unwrap().bytes().into()),
                    user_id: c.user_id().unwrap_or_default().to_string(),
                    info: bytes::Bytes::copy_from_slice(
                        c.info().map(|v| v.bytes()).unwrap_or_default(),
                    ),
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort_by_key(|e| e.session);
    (entries, list.num_clients(), list.num_users())
}

/// The next event (`Join`/`Leave`) `c` receives: (opcode, channel, who).
async fn event(c: &Client) -> (u16, String, PresenceEntry) {
    let f: Frame = c.recv_timeout(DEADLINE).await.expect("an event");
    let who = PresenceEntry::decode(&f.payload()).expect("a ClientInfo payload");
    (f.opcode(), f.channel().unwrap_or_default().to_string(), who)
}

async fn nothing(c: &Client) {
    if let Some(f) = c.recv_timeout(Duration::from_millis(400)).await {
        panic!("unexpected frame: {f:?}");
    }
}

async fn presence_lists_subscribers_and_events_reach_the_others(store: Store) {
    let nodes = Nodes::start(store, "p1").await;
    let c0 = nodes.client(0, "ada").await;
    let c1 = nodes.client(1, "bob").await;
    let c2 = nodes.client(2, "cy").await;
    c0.subscribe("room:a").await.unwrap();
    nothing(&c0).await;
    c1.subscribe("room:a").await.unwrap();
    let (op, channel, who) = event(&c0).await;
    assert_eq!((op, channel.as_str()), (Opcode::Join.0, "room:a"));
    assert_eq!((who.session, &who.info[..]), (c1.session_id(), &b"bob"[..]));
    assert_eq!(who.node, c1.node_id(), "the entry names the session's node");
    c2.subscribe("room:a").await.unwrap();
    for c in [&c0, &c1] {
        let (op, _, who) = event(c).await;
        assert_eq!((op, who.session), (Opcode::Join.0, c2.session_id()));
    }
    // Once per session: a repeated Subscribe sends none; the joiner gets none.
    c1.subscribe("room:a").await.unwrap();
    nothing(&c0).await;
    nothing(&c2).await;

    let (entries, clients, users) = presence(&c2, "room:a").await;
    let mut want = vec![c0.session_id(), c1.session_id(), c2.session_id()];
    want.sort();
    assert_eq!(entries.iter().map(|e| e.session).collect::<Vec<_>>(), want);
    assert_eq!(
        (clients, users),
        (3, 0),
        "anonymous sessions are clients, not users"
    );
    let named: Vec<&[u8]> = {
        let mut n: Vec<&[u8]> = entries.iter().map(|e| &e.info[..]).collect();
        n.sort();
        n
    };
    assert_eq!(named, vec![&b"ada"[..], b"bob", b"cy"]);

    // Leave on Unsubscribe, and on disconnect.
    c1.unsubscribe("room:a").await.unwrap();
    for c in [&c0, &c2] {
        let (op, _, who) = event(c).await;
        assert_eq!((op, who.session), (Opcode::Leave.0, c1.session_id()));
    }
    let gone = c2.session_id();
    c2.close();
    drop(c2);
    let (op, _, who) = event(&c0).await;
    assert_eq!((op, who.session), (Opcode::Leave.0, gone));
    assert_eq!(presence(&c0, "room:a").await.1, 1);
    nothing(&c1).await;

    // Presence without join/leave: listed, but no events.
    c0.subscribe("quiet:q").await.unwrap();
    c1.subscribe("quiet:q").await.unwrap();
    nothing(&c0).await;
    assert_eq!(presence(&c1, "quiet:q").await.1, 2);
    // A v1 channel: no events, and no presence to list.
    c0.subscribe("plain").await.unwrap();
    c1.subscribe("plain").await.unwrap();
    c1.unsubscribe("plain").await.unwrap();
    nothing(&c0).await;
    expect_server_error(
        c0.call(FrameFields::new(Opcode::Presence.0).channel("plain"))
            .await,
        ErrorCode::InvalidArgument,
    );
    // Whoever may not subscribe may not list presence.
    let denied = c0
        .call(FrameFields::new(Opcode::Presence.0).channel("room:secret"))
        .await;
    let message = format!("{denied:?}");
    assert!(
        message.contains("Unauthorized") || message.contains("Forbidden"),
        "{message}"
    );
    let denied = c0
        .call(FrameFields::new(Opcode::History.0).channel("room:secret"))
        .await;
    assert!(denied.is_err(), "history is refused too");
}

framework_tests::on_every!(Store { memory => Memory, redis => Redis, nats => Nats } [
    presence_lists_subscribers_and_events_reach_the_others
]);

/// A node that just started has not heard the others' heartbeats yet (they beat
/// every `heartbeat_interval`): their subscribers are listed all the same, not
/// hidden as if their nodes were dead. Node `a` beats once a minute, so `b` hears
/// nothing from it during the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_lists_subscribers_of_nodes_it_has_not_heard_from_yet_redis() {
    a_new_node_lists_subscribers_of_nodes_it_has_not_heard_from_yet(Kind::Redis).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_lists_subscribers_of_nodes_it_has_not_heard_from_yet_nats() {
    a_new_node_lists_subscribers_of_nodes_it_has_not_heard_from_yet(Kind::Nats).await
}

async fn a_new_node_lists_subscribers_of_nodes_it_has_not_heard_from_yet(kind: Kind) {
    let engine = Engine::start(kind);
    let c = engine.cluster("p-new");
    let slow = ClusterConfig {
        heartbeat_interval: Duration::from_secs(60),
        heartbeat_timeout: Duration::from_secs(120),
        ..c.clone()
    };
    let a = node(Some(slow)).await;
    let b = node(Some(ClusterConfig {
        heartbeat_timeout: Duration::from_secs(60),
        ..c
    }))
    .await;
    let on_a = Nodes {
        nodes: vec![a],
        _engine: None,
    }
    .client(0, "ann")
    .await;
    on_a.subscribe("quiet:new").await.expect("subscribed");
    let on_b = Client::connect(&format!("ws://{}/", b.websocket_addr()))
        .await
        .expect("connects");
    let (entries, clients, _) = presence(&on_b, "quiet:new").await;
    assert_eq!(clients, 1, "{entries:?}");
    assert_eq!(entries[0].session, on_a.session_id());
    assert_eq!(&entries[0].info[..], b"ann");
}

/// A node killed with `kill -9`: within the heartbeat timeout its sessions leave
/// every other node's presence, and their `Leave` arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_leaves_presence_within_the_heartbeat_timeout_redis() {
    a_dead_node_leaves_presence_within_the_heartbeat_timeout(Kind::Redis).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_leaves_presence_within_the_heartbeat_timeout_nats() {
    a_dead_node_leaves_presence_within_the_heartbeat_timeout(Kind::Nats).await
}

async fn a_dead_node_leaves_presence_within_the_heartbeat_timeout(kind: Kind) {
    let engine = Engine::start(kind);
    let c = engine.cluster("p2");
    let (a, b) = (node(Some(c.clone())).await, node(Some(c)).await);
    let dir = framework_tests::tools::TempDir::new(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
        "presence",
    );
    let file = dir.0.join("node.toml");
    std::fs::write(
        &file,
        "[[channel_options]]\npattern = \"room:*\"\npresence = true\njoin_leave = true\n",
    )
    .unwrap();
    let (mut process, addr) = framework_tests::serve(
        std::process::Command::new(env!("CARGO_BIN_EXE_main-app"))
            .env("NO_COLOR", "1")
            .env("FRAMEWORK_CONFIG", &file)
            .env("FRAMEWORK_CLUSTER_URL", engine.url())
            .env("FRAMEWORK_CLUSTER_PREFIX", "p2")
            .env("FRAMEWORK_CLUSTER_HEARTBEAT_INTERVAL", "200ms")
            .env("FRAMEWORK_CLUSTER_HEARTBEAT_TIMEOUT", "1s")
            .env("FRAMEWORK_CLUSTER_TIMEOUT", "1s"),
    );
    let ca = Client::connect(&format!("ws://{}/", a.websocket_addr()))
        .await
        .unwrap();
    let cb = Client::connect(&format!("ws://{}/", b.websocket_addr()))
        .await
        .unwrap();
    ca.subscribe("room:x").await.unwrap();
    cb.subscribe("room:x").await.unwrap();
    assert_eq!(event(&ca).await.0, Opcode::Join.0);
    let remote = [
        Client::connect(&format!("ws://{addr}/")).await.unwrap(),
        Client::connect(&format!("ws://{addr}/")).await.unwrap(),
    ];
    for r in &remote {
        r.subscribe("room:x").await.unwrap();
    }
    for _ in 0..2 {
        assert_eq!(event(&ca).await.0, Opcode::Join.0);
        assert_eq!(event(&cb).await.0, Opcode::Join.0);
    }
    assert_eq!(presence(&ca, "room:x").await.1, 4);

    let _ = process.0.kill(); // SIGKILL: the node says nothing more
    let _ = process.0.wait();
    let killed = tokio::time::Instant::now();
    let mut left = Vec::new();
    for _ in 0..2 {
        let (op, channel, who) = event(&ca).await;
        assert_eq!((op, channel.as_str()), (Opcode::Leave.0, "room:x"));
        left.push(who.session);
    }
    let waited = killed.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "Leave within the heartbeat timeout (1 s) and a beat: {waited:?}"
    );
    let mut want: Vec<Uuid> = remote.iter().map(|r| r.session_id()).collect();
    want.sort();
    left.sort();
    assert_eq!(left, want);
    for _ in 0..2 {
        let (op, _, who) = event(&cb).await;
        assert_eq!(op, Opcode::Leave.0);
        assert!(want.contains(&who.session));
    }
    nothing(&ca).await;
    nothing(&cb).await;
    eventually_async(
        "presence is down to the live nodes' sessions",
        DEADLINE,
        || async { presence(&cb, "room:x").await.1 == 2 },
    )
    .await;
}
