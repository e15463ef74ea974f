//! The scenarios, the servers of each, and the messages they exchange.

/// A benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Echo,
    /// Echo of 64 KiB messages.
    Echo64k,
    /// The echo load against each server plain and over TLS (its `-tls` twin).
    EchoTls,
    Rpc,
    Fanout,
    /// Fan-out to 10,000 subscribers.
    Fanout10k,
    /// The fanout load against each server plain and over TLS (its `-tls` twin).
    FanoutTls,
    Idle,
    /// A connection storm: 10,000 clients connect, then reconnect after the
    /// server is restarted.
    Storm,
    /// Cross-node fan-out: the fanout load over three nodes joined through an
    /// engine (Redis, NATS), beside one node with the in-memory broker.
    Cluster,
    /// Protocol v1.1 recovery: a subscriber misses [`MISSED`] publications while
    /// disconnected, then a recovering `Subscribe` replays them (one node with
    /// history in memory; three nodes with history in Redis).
    Recovery,
}

impl Scenario {
    pub const ALL: [Scenario; 11] = [
        Scenario::Echo,
        Scenario::Echo64k,
        Scenario::EchoTls,
        Scenario::Rpc,
        Scenario::Fanout,
        Scenario::Fanout10k,
        Scenario::FanoutTls,
        Scenario::Idle,
        Scenario::Storm,
        Scenario::Cluster,
        Scenario::Recovery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Echo => "echo",
            Scenario::Echo64k => "echo64k",
            Scenario::EchoTls => "echo-tls",
            Scenario::Rpc => "rpc",
            Scenario::Fanout => "fanout",
            Scenario::Fanout10k => "fanout10k",
            Scenario::FanoutTls => "fanout-tls",
            Scenario::Idle => "idle",
            Scenario::Storm => "storm",
            Scenario::Cluster => "cluster",
            Scenario::Recovery => "recovery",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Echo scenarios: one message in flight per connection, echoed back.
    pub fn is_echo(self) -> bool {
        matches!(self, Scenario::Echo | Scenario::Echo64k | Scenario::EchoTls)
    }

    /// Fan-out scenarios on one server: a publisher and many subscribers.
    pub fn is_fanout(self) -> bool {
        matches!(
            self,
            Scenario::Fanout | Scenario::Fanout10k | Scenario::FanoutTls
        )
    }

    /// The TLS scenarios: every server runs plain and over TLS in each round.
    pub fn is_tls(self) -> bool {
        matches!(self, Scenario::EchoTls | Scenario::FanoutTls)
    }
}

/// How the load generator talks to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Plain WebSocket messages (echo).
    Raw,
    /// Protocol v1 frames; the server sends `Welcome` first.
    Framework,
    /// Protocol v1 frames without `Welcome` (the hand-written floors: rpc,
    /// fanout, fanout10k).
    Floor,
    /// JSON-RPC 2.0 over WebSocket.
    JsonRpc,
    /// Socket.IO v5 over Engine.IO v4, WebSocket transport only.
    SocketIo,
    /// The Pusher channels protocol (Sockudo): JSON events over WebSocket,
    /// `pusher:connection_established` first, publishing through the HTTP API.
    Pusher,
}

/// One server of one scenario.
#[derive(Debug, Clone, Copy)]
pub struct ServerSpec {
    /// `--server` name.
    pub kind: &'static str,
    /// Display name in BENCHMARKS.md.
    pub label: &'static str,
    pub proto: Proto,
    /// Upgrade path (with query).
    pub path: &'static str,
}

const SIO_PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// Sockudo's one app of the benchmark (configured through its environment).
pub const PUSHER_APP_ID: &str = "bench";
pub const PUSHER_KEY: &str = "bench-key";
pub const PUSHER_SECRET: &str = "bench-secret";

/// A Pusher client's upgrade path (`/app/{key}` and the client's query, as
/// pusher-js sends it).
const PUSHER_PATH: &str = "/app/bench-key?protocol=7&client=js&version=8.4.0&flash=false";

const fn spec(kind: &'static str, label: &'static str, proto: Proto) -> ServerSpec {
    let path = match proto {
        Proto::SocketIo => SIO_PATH,
        Proto::Pusher => PUSHER_PATH,
        _ => "/",
    };
    ServerSpec {
        kind,
        label,
        proto,
        path,
    }
}

/// The label of the fan-out scenarios' hand-written floor.
const FANOUT_FLOOR: &str = "hand-written floor (one nonblocking write per subscriber)";

/// The servers of `scenario`, the framework first.
pub fn servers(scenario: Scenario) -> &'static [ServerSpec] {
    const ECHO: [ServerSpec; 5] = [
        spec("framework", "framework (raw service)", Proto::Raw),
        spec("tokio-tungstenite", "tokio-tungstenite", Proto::Raw),
        spec("fastwebsockets", "fastwebsockets", Proto::Raw),
        spec("sockudo-ws", "sockudo-ws", Proto::Raw),
        spec("axum", "axum WebSocket", Proto::Raw),
    ];
    // Each server plain, then its `-tls` twin: the same server over TLS, the
    // certificate of the run (see `crate::tls`). The peer: fastwebsockets as its
    // `tls_server` example serves TLS (tokio-rustls' `TlsAcceptor`).
    const ECHO_TLS: [ServerSpec; 4] = [
        spec("framework", "framework (raw service)", Proto::Raw),
        spec(
            "framework-tls",
            "framework (raw service) over TLS",
            Proto::Raw,
        ),
        spec("fastwebsockets", "fastwebsockets", Proto::Raw),
        spec("fastwebsockets-tls", "fastwebsockets over TLS", Proto::Raw),
    ];
    const RPC: [ServerSpec; 4] = [
        spec("framework", "framework (#[opcode(200)])", Proto::Framework),
        spec(
            "floor",
            "hand-written floor (tokio-tungstenite + flatbuffers)",
            Proto::Floor,
        ),
        spec("jsonrpsee", "jsonrpsee (method call)", Proto::JsonRpc),
        spec(
            "socketioxide",
            "socketioxide (event + ack)",
            Proto::SocketIo,
        ),
    ];
    // The history variant right after the plain framework: it is compared with
    // it (history ÷ plain), not with the peers. Then the hand-written floor (see
    // `servers::fanout_floor`): the cost of the writes alone.
    const FANOUT: [ServerSpec; 6] = [
        spec("framework", "framework (Publish)", Proto::Framework),
        spec(
            "framework-history",
            "framework (Publish, history on)",
            Proto::Framework,
        ),
        spec("floor", FANOUT_FLOOR, Proto::Floor),
        spec(
            "socketioxide",
            "socketioxide (room broadcast)",
            Proto::SocketIo,
        ),
        spec("jsonrpsee", "jsonrpsee (subscriptions)", Proto::JsonRpc),
        spec("sockudo", "Sockudo (HTTP API publish)", Proto::Pusher),
    ];
    const FANOUT10K: [ServerSpec; 5] = [
        spec("framework", "framework (Publish)", Proto::Framework),
        spec("floor", FANOUT_FLOOR, Proto::Floor),
        spec(
            "socketioxide",
            "socketioxide (room broadcast)",
            Proto::SocketIo,
        ),
        spec("jsonrpsee", "jsonrpsee (subscriptions)", Proto::JsonRpc),
        spec("sockudo", "Sockudo (HTTP API publish)", Proto::Pusher),
    ];
    // As ECHO_TLS. Sockudo serves TLS itself when configured to (`SSL_ENABLED`),
    // its HTTP API included: each publish is then an HTTPS request.
    const FANOUT_TLS: [ServerSpec; 4] = [
        spec("framework", "framework (Publish)", Proto::Framework),
        spec(
            "framework-tls",
            "framework (Publish) over TLS",
            Proto::Framework,
        ),
        spec("sockudo", "Sockudo (HTTP API publish)", Proto::Pusher),
        spec(
            "sockudo-tls",
            "Sockudo (HTTPS API publish) over TLS",
            Proto::Pusher,
        ),
    ];
    const IDLE: [ServerSpec; 7] = [
        spec(
            "framework",
            "framework (protocol service)",
            Proto::Framework,
        ),
        spec("framework-raw", "framework (raw service)", Proto::Raw),
        spec(
            "tokio-tungstenite",
            "tokio-tungstenite (default settings)",
            Proto::Raw,
        ),
        spec("sockudo-ws", "sockudo-ws (default settings)", Proto::Raw),
        spec("socketioxide", "socketioxide", Proto::SocketIo),
        spec("jsonrpsee", "jsonrpsee", Proto::JsonRpc),
        spec("sockudo", "Sockudo", Proto::Pusher),
    ];
    // The protocol service (upgrade + Welcome) first: the storm targets compare
    // it with fastwebsockets' accept + upgrade.
    const STORM: [ServerSpec; 7] = [
        spec(
            "framework",
            "framework (protocol service: upgrade + Welcome)",
            Proto::Framework,
        ),
        spec(
            "framework-raw",
            "framework (raw service: upgrade)",
            Proto::Raw,
        ),
        spec("fastwebsockets", "fastwebsockets (upgrade)", Proto::Raw),
        spec("sockudo-ws", "sockudo-ws (upgrade)", Proto::Raw),
        spec(
            "tokio-tungstenite",
            "tokio-tungstenite (upgrade)",
            Proto::Raw,
        ),
        spec(
            "socketioxide",
            "socketioxide (upgrade + Engine.IO open + connect)",
            Proto::SocketIo,
        ),
        spec(
            "sockudo",
            "Sockudo (upgrade + connection_established)",
            Proto::Pusher,
        ),
    ];
    // One node with the in-memory broker first: the cluster variants are compared
    // with it. The kind names the engine (`framework`: none).
    const CLUSTER: [ServerSpec; 4] = [
        spec("framework", "1 node (in-memory broker)", Proto::Framework),
        spec("redis", "3 nodes over Redis", Proto::Framework),
        spec(
            "redis-history",
            "3 nodes over Redis, history on",
            Proto::Framework,
        ),
        spec("nats", "3 nodes over NATS", Proto::Framework),
    ];
    // The same servers as the history variants above.
    const RECOVERY: [ServerSpec; 2] = [
        spec(
            "framework-history",
            "1 node, history in memory",
            Proto::Framework,
        ),
        spec(
            "redis-history",
            "3 nodes over Redis (subscriber on node B, publisher on node A)",
            Proto::Framework,
        ),
    ];
    match scenario {
        Scenario::Echo | Scenario::Echo64k => &ECHO,
        Scenario::EchoTls => &ECHO_TLS,
        Scenario::Rpc => &RPC,
        Scenario::Fanout => &FANOUT,
        Scenario::Fanout10k => &FANOUT10K,
        Scenario::FanoutTls => &FANOUT_TLS,
        Scenario::Idle => &IDLE,
        Scenario::Storm => &STORM,
        Scenario::Cluster => &CLUSTER,
        Scenario::Recovery => &RECOVERY,
    }
}

/// Servers that are programs of their own, not roles of this harness: the
/// runner starts them (Sockudo, built by `scripts/bench.sh`).
pub fn is_external(kind: &str) -> bool {
    plain_kind(kind) == "sockudo"
}

/// The suffix of a server's TLS twin in the TLS scenarios.
const TLS_SUFFIX: &str = "-tls";

/// Whether server `kind` is the TLS twin of a server (serves `wss://`, its
/// clients connect over TLS).
pub fn is_tls(kind: &str) -> bool {
    kind.ends_with(TLS_SUFFIX)
}

/// The plain server of TLS twin `kind` (`kind` itself when it is plain).
pub fn plain_kind(kind: &str) -> &str {
    kind.strip_suffix(TLS_SUFFIX).unwrap_or(kind)
}

/// The TLS twin of plain server `kind`.
pub fn tls_kind(kind: &str) -> String {
    format!("{kind}{TLS_SUFFIX}")
}

/// Whether server `kind` keeps history on the benchmark's channels (the
/// `-history` variants): see [`history_options`].
pub fn has_history(kind: &str) -> bool {
    kind.ends_with("-history")
}

/// History size of the `-history` variants: publications kept per channel.
pub const HISTORY_SIZE: usize = 1000;

/// History time-to-live of the `-history` variants.
pub const HISTORY_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The recovery scenario's channels: `recovery:<run>:<repetition>`.
pub const RECOVERY_PREFIX: &str = "recovery:";

/// Publications a subscriber misses in the recovery scenario.
pub const MISSED: usize = 1000;

/// The channel options of a `-history` server: history on the fan-out channel
/// (only: the cluster's [`SOLO_CHANNEL`] keeps none) and on the recovery
/// scenario's channels.
pub fn history_options() -> Vec<framework::config::ChannelOptions> {
    use framework::config::ChannelOptions;
    vec![
        ChannelOptions::new(CHANNEL).history(HISTORY_SIZE, HISTORY_TTL),
        ChannelOptions::new(format!("{RECOVERY_PREFIX}*")).history(HISTORY_SIZE, HISTORY_TTL),
    ]
}

/// The cluster engine a server of the cluster scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Redis,
    Nats,
}

impl Engine {
    /// The engine of cluster (or recovery) server `kind` (`None`: one node,
    /// in-memory broker).
    pub fn of(kind: &str) -> Option<Engine> {
        match kind {
            "redis" | "redis-history" => Some(Engine::Redis),
            "nats" => Some(Engine::Nats),
            _ => None,
        }
    }

    /// The engine's server program (Debian's packages of the same name).
    pub fn program(self) -> &'static str {
        match self {
            Engine::Redis => "redis-server",
            Engine::Nats => "nats-server",
        }
    }

    /// Arguments serving on 127.0.0.1:`port` only, with nothing written to disk.
    pub fn args(self, port: u16) -> Vec<String> {
        let port = port.to_string();
        let args: Vec<&str> = match self {
            Engine::Redis => vec![
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            Engine::Nats => vec!["-a", "127.0.0.1", "-p", &port],
        };
        args.into_iter().map(String::from).collect()
    }

    /// The URL the nodes are given (`ClusterConfig::url`).
    pub fn url(self, port: u16) -> String {
        match self {
            Engine::Redis => format!("redis://127.0.0.1:{port}"),
            Engine::Nats => format!("nats://127.0.0.1:{port}"),
        }
    }
}

/// Nodes of a cluster variant: node A (the publisher's), B and C.
pub const CLUSTER_NODES: usize = 3;

/// The server `kind` of `scenario`.
pub fn find(scenario: Scenario, kind: &str) -> Option<ServerSpec> {
    servers(scenario).iter().copied().find(|s| s.kind == kind)
}

/// The typed request of the rpc scenario (application opcode 200).
#[derive(framework::Message, Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct AddRequest {
    pub id: u64,
    pub a: i64,
    pub b: i64,
}

/// The typed response of the rpc scenario.
#[derive(
    framework::Message, Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize,
)]
pub struct AddResponse {
    pub id: u64,
    pub sum: i64,
}

/// The application opcode of the rpc scenario.
pub const ADD_OPCODE: u16 = 200;

/// The fan-out channel / room / subscription.
pub const CHANNEL: &str = "bench";

/// The cluster scenario's second channel: only node B's subscribers join it, so
/// a publish on it from node A must not reach node C at all.
pub const SOLO_CHANNEL: &str = "bench-b-only";

/// Size of a fan-out payload: `{seq:020}{nanos:020}` and padding.
pub const FANOUT_PAYLOAD: usize = 64;

/// Writes a 64-byte ASCII fan-out payload carrying `seq` and the send time.
pub fn fanout_payload(out: &mut [u8; FANOUT_PAYLOAD], seq: u64, nanos: u64) {
    write_digits(&mut out[0..20], seq);
    write_digits(&mut out[20..40], nanos);
    out[40..].fill(b'x');
}

/// Reads `(seq, nanos)` back from a fan-out payload.
pub fn parse_fanout_payload(p: &[u8]) -> Option<(u64, u64)> {
    if p.len() != FANOUT_PAYLOAD {
        return None;
    }
    Some((read_digits(&p[0..20])?, read_digits(&p[20..40])?))
}

fn write_digits(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn read_digits(s: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_payload_round_trips() {
        let mut p = [0u8; FANOUT_PAYLOAD];
        fanout_payload(&mut p, 42, 1_234_567_890_123);
        assert_eq!(parse_fanout_payload(&p), Some((42, 1_234_567_890_123)));
        assert!(p.is_ascii());
    }

    #[test]
    fn history_covers_the_benchmark_channels_only() {
        let opts = history_options();
        let has =
            |c: &str| framework::config::options_for(&opts, c).is_some_and(|o| o.has_history());
        assert!(has(CHANNEL));
        assert!(has("recovery:1:0"));
        assert!(!has(SOLO_CHANNEL));
        assert!(has_history("redis-history") && !has_history("redis"));
        assert_eq!(Engine::of("redis-history"), Some(Engine::Redis));
    }

    #[test]
    fn every_kind_is_unique_per_scenario() {
        for s in Scenario::ALL {
            let kinds: std::collections::HashSet<_> = servers(s).iter().map(|x| x.kind).collect();
            assert_eq!(kinds.len(), servers(s).len());
            assert!(servers(s)[0].kind.starts_with("framework"));
        }
    }

    #[test]
    fn every_tls_server_follows_its_plain_twin() {
        for s in Scenario::ALL {
            let list = servers(s);
            for (i, spec) in list.iter().enumerate() {
                assert_eq!(is_tls(spec.kind), s.is_tls() && i % 2 == 1, "{}", spec.kind);
                if is_tls(spec.kind) {
                    assert_eq!(list[i - 1].kind, plain_kind(spec.kind));
                    assert_eq!(tls_kind(list[i - 1].kind), spec.kind);
                }
            }
        }
        assert!(is_external("sockudo-tls") && !is_external("framework-tls"));
    }
}
