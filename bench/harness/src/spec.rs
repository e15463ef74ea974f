//! The scenarios, the servers of each, and the messages they exchange.

/// A benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Echo,
    Rpc,
    Fanout,
    Idle,
    /// Cross-node fan-out: the fanout load over three nodes joined through an
    /// engine (Redis, NATS), beside one node with the in-memory broker.
    Cluster,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::Echo,
        Scenario::Rpc,
        Scenario::Fanout,
        Scenario::Idle,
        Scenario::Cluster,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Echo => "echo",
            Scenario::Rpc => "rpc",
            Scenario::Fanout => "fanout",
            Scenario::Idle => "idle",
            Scenario::Cluster => "cluster",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// How the load generator talks to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Plain WebSocket messages (echo).
    Raw,
    /// Protocol v1 frames; the server sends `Welcome` first.
    Framework,
    /// Protocol v1 frames without `Welcome` (the hand-written floor).
    Floor,
    /// JSON-RPC 2.0 over WebSocket.
    JsonRpc,
    /// Socket.IO v5 over Engine.IO v4, WebSocket transport only.
    SocketIo,
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

const fn spec(kind: &'static str, label: &'static str, proto: Proto) -> ServerSpec {
    let path = match proto {
        Proto::SocketIo => SIO_PATH,
        _ => "/",
    };
    ServerSpec {
        kind,
        label,
        proto,
        path,
    }
}

/// The servers of `scenario`, the framework first.
pub fn servers(scenario: Scenario) -> &'static [ServerSpec] {
    const ECHO: [ServerSpec; 4] = [
        spec("framework", "framework (raw service)", Proto::Raw),
        spec("tokio-tungstenite", "tokio-tungstenite", Proto::Raw),
        spec("fastwebsockets", "fastwebsockets", Proto::Raw),
        spec("axum", "axum WebSocket", Proto::Raw),
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
    const FANOUT: [ServerSpec; 3] = [
        spec("framework", "framework (Publish)", Proto::Framework),
        spec(
            "socketioxide",
            "socketioxide (room broadcast)",
            Proto::SocketIo,
        ),
        spec("jsonrpsee", "jsonrpsee (subscriptions)", Proto::JsonRpc),
    ];
    const IDLE: [ServerSpec; 5] = [
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
        spec("socketioxide", "socketioxide", Proto::SocketIo),
        spec("jsonrpsee", "jsonrpsee", Proto::JsonRpc),
    ];
    // One node with the in-memory broker first: the cluster variants are compared
    // with it. The kind names the engine (`framework`: none).
    const CLUSTER: [ServerSpec; 3] = [
        spec("framework", "1 node (in-memory broker)", Proto::Framework),
        spec("redis", "3 nodes over Redis", Proto::Framework),
        spec("nats", "3 nodes over NATS", Proto::Framework),
    ];
    match scenario {
        Scenario::Echo => &ECHO,
        Scenario::Rpc => &RPC,
        Scenario::Fanout => &FANOUT,
        Scenario::Idle => &IDLE,
        Scenario::Cluster => &CLUSTER,
    }
}

/// The cluster engine a server of the cluster scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Redis,
    Nats,
}

impl Engine {
    /// The engine of cluster server `kind` (`None`: one node, in-memory broker).
    pub fn of(kind: &str) -> Option<Engine> {
        match kind {
            "redis" => Some(Engine::Redis),
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
    fn every_kind_is_unique_per_scenario() {
        for s in Scenario::ALL {
            let kinds: std::collections::HashSet<_> = servers(s).iter().map(|x| x.kind).collect();
            assert_eq!(kinds.len(), servers(s).len());
            assert!(servers(s)[0].kind.starts_with("framework"));
        }
    }
}
