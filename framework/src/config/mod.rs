//! Configuration: limits, timeouts and listener addresses. Every limit has a safe
//! default; each value comes from code ([`Config`], `main!`'s keys, the builder),
//! then a TOML file, then `FRAMEWORK_*` environment variables, the later
//! overriding the earlier ([`Settings`]). Every key is in one table, in the docs
//! of [`Settings`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

mod access;
mod auth;
mod channels;
mod cluster;
mod proxy;
mod quota;
mod sources;
mod tls;

pub use access::{Access, ChannelRule, Grant, Permissions};
pub use auth::{AuthConfig, KeyConfig};
pub use channels::{options_for, ChannelOptions, HistoryBounds, MAX_HISTORY_SIZE};
pub use cluster::ClusterConfig;
pub use proxy::{ForwardedHeader, IpCidr};
pub use quota::{default_quotas, glob_match, OpcodeRef, QuotaRule, QuotaScope, Rate};
pub use sources::{ConfigError, ListenSpec, Settings, ENV_PREFIX};
pub use tls::TlsConfig;

/// Default maximum size of one WebSocket message: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// Server limits and timeouts, shared by every service of an [`App`](crate::App).
///
/// ```
/// use std::time::Duration;
/// use framework::Config;
/// let config = Config {
///     max_message_size: 64 * 1024,
///     idle_timeout: Duration::from_secs(30),
///     ..Config::default()
/// };
/// assert_eq!(config.max_channels_per_session, 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Largest accepted WebSocket message (and frame); over it the connection is
    /// closed with 1009.
    pub max_message_size: usize,
    /// Bytes that may wait in one session's outgoing queue. A consumer that falls
    /// further behind is closed with 1008 so it never slows anyone else.
    pub max_queued_bytes: usize,
    /// Channels one session may join.
    pub max_channels_per_session: usize,
    /// Sessions one channel may hold on this node.
    pub max_subscribers_per_channel: usize,
    /// Concurrent TCP connections from one IP address (WebSocket and plain HTTP);
    /// past it every request on the connection is answered HTTP 429.
    pub max_connections_per_ip: usize,
    /// Concurrent TCP connections on this node, all listeners together; past it
    /// every request on the connection is answered HTTP 503 (never left hanging).
    pub max_connections: usize,
    /// Concurrent sessions of one authenticated user on this node: past it an
    /// upgrade with that user's token is answered HTTP 429, and an `Auth` frame
    /// that would make a session theirs closes it with 1008.
    pub max_connections_per_user: usize,
    /// Bytes this node may hold for its peers, all connections together: bytes
    /// of WebSocket messages still arriving (a frame announced but not yet read
    /// whole, the fragments of an unfinished message) and outgoing frames only one
    /// queue holds (replies, direct sends, raw sends; a fan-out delivery is one
    /// frame shared by its queues and counts against each queue's
    /// `max_queued_bytes` only). A connection whose next frame, or whose backlog,
    /// would go over it is closed with 1013 ("server busy: try again later").
    pub max_held_bytes: usize,
    /// The share of `max_held_bytes` the connections of one IP address may hold
    /// together; past it the connection is closed with 1008 ("too much data held
    /// for this address").
    pub max_held_bytes_per_ip: usize,
    /// Time a connection has to send its request head (the upgrade request, or any
    /// HTTP request), and the time the `on_connect` hooks have to decide (past it
    /// the upgrade is answered 503). With TLS, the handshake has this time too
    /// (before the request head's), and an HTTP/2 connection on which no stream
    /// opened for this long is sent GOAWAY.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A session that sends nothing (not even a WebSocket ping) for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The longest a fragmented WebSocket message may take to arrive whole; past
    /// it the session is closed with 1008 ("message took too long"), so a peer
    /// cannot keep a half-sent message (up to `max_message_size`) held forever
    /// while pings keep it alive.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// A session that has been quiet this long is sent a WebSocket ping (browsers
    /// answer pings but never send them, so a tab that only listens would otherwise
    /// hit `idle_timeout`). Zero turns pings off.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// After a ping, how long the peer has to answer (or send anything) before the
    /// session is closed (1000, "ping timeout").
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// Largest body of a server-API request (`/api/*`); over it: HTTP 413.
    pub max_api_body: usize,
    /// Time a server-API request has to deliver its body; past it: HTTP 408.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// On shutdown, how long sessions may take to drain their queues.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Connections the kernel completes and queues for each listener before the
    /// server accepts them (`listen(2)`'s backlog; Linux caps it at
    /// `net.core.somaxconn`, 4096 by default). When clients arrive faster than
    /// they are accepted — every client of a restarted node reconnecting at
    /// once — a connection that finds the queue full has its SYN dropped, and
    /// its client waits a second before trying again. Default 4096 (the
    /// standard library's and tokio's 128 drops the 129th of a burst). The
    /// accept loop takes up to this many queued connections at a time before it
    /// lets their handshakes run, so a full queue is emptied in one turn.
    pub listen_backlog: u32,
    /// Read buffer of each connection. Default 512 bytes, sized for real-time
    /// traffic of small messages, many of which are read at once into it
    /// (tungstenite's 128 KiB would cost that much per idle connection). An idle
    /// session holds none: it reads into the stack and keeps only what waits
    /// for the rest of its message. A message that does not fit is read
    /// straight into a buffer of its own size, in large reads, so large
    /// messages do not need a larger value.
    pub read_buffer_size: usize,
    /// Bytes gathered before the writer writes to the socket mid-batch (small
    /// frames are copied together; a payload over 1 KiB is written from where it
    /// is, never copied).
    pub write_buffer_size: usize,
    /// Frames the writer puts in one `writev` at most.
    pub max_batch_frames: usize,
    /// Browser origins allowed to upgrade (exact match of the `Origin` header).
    /// Empty: every origin. Requests without `Origin` (non-browser clients) are
    /// always allowed. A refused origin gets HTTP 403.
    pub allowed_origins: Vec<String>,
    /// `run_service`: the path that upgrades to the protocol.
    #[serde(deserialize_with = "sources::text")]
    pub websocket_path: String,
    /// `run_service`: the key of the server API (`/api/publish`, `/api/send`,
    /// `/api/broadcast`), sent as `Authorization: Bearer <key>` or `X-Api-Key`.
    /// `None` turns the API off (404).
    #[serde(deserialize_with = "sources::optional_text")]
    pub api_key: Option<String>,
    /// JWT authentication (see [`AuthConfig`]); `None`: tokens are not read.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// The cluster this node belongs to (see [`ClusterConfig`]); `None`: alone,
    /// with the in-memory broker. `App::broker` overrides it.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Who may subscribe, publish, list presence and read history, by channel
    /// pattern (see [`ChannelRule`]); a channel no rule matches is open.
    #[serde(default)]
    pub channels: Vec<ChannelRule>,
    /// History, presence and join/leave events by channel pattern (see
    /// [`ChannelOptions`]); a channel no entry matches behaves as in protocol v1.
    #[serde(default)]
    pub channel_options: Vec<ChannelOptions>,
    /// Bytes the single node's in-memory storage keeps for channel histories,
    /// all channels together; past it the oldest publications are trimmed (a
    /// recovery past them answers `recovered = false`). A cluster keeps history
    /// in its engine (Redis' own `maxmemory` applies there).
    pub max_history_bytes: usize,
    /// Who may `Send`, `Broadcast` and send application opcodes (see
    /// [`Permissions`]).
    #[serde(default)]
    pub permissions: Permissions,
    /// Quotas on frames and payload bytes (see [`QuotaRule`]); the default limits
    /// each session's `Publish` and `Broadcast` ([`default_quotas`]). Replace the
    /// list to change them; an empty list turns quotas off.
    pub quotas: Vec<QuotaRule>,
    /// On shutdown, how long the node keeps serving with `/readyz` answering 503
    /// before it stops accepting (time for a load balancer to notice).
    #[serde(with = "humantime_serde")]
    pub drain_grace: Duration,
    /// Proxies (addresses or CIDR blocks) trusted to say who the client is: in
    /// the `forwarded_header` of their HTTP requests and WebSocket upgrades, or
    /// in the PROXY protocol header of their connections (`proxy_protocol`).
    /// The address they give is the client's everywhere: `Connection::ip`,
    /// per-IP limits, quotas and memory budgets, hooks, logs. From any other
    /// peer those headers are ignored. Empty: every peer is the client.
    #[serde(deserialize_with = "proxy::cidr_list")]
    pub trusted_proxies: Vec<IpCidr>,
    /// The header trusted HTTP proxies name the client in (see
    /// [`ForwardedHeader`]); the other one is never read.
    pub forwarded_header: ForwardedHeader,
    /// Connections from `trusted_proxies` start with a PROXY protocol header
    /// (v1 or v2, as layer-4 balancers send it), which names the client. A
    /// trusted peer that sends none is refused (HTTP 400); other peers are served
    /// as they are, their bytes read as HTTP (a header from them is not honoured
    /// and gets HTTP 400).
    pub proxy_protocol: bool,
    /// How `main!` writes its logs to stderr: `text` (one readable line per
    /// event) or `json` (one JSON object per line, for log collectors).
    pub log_format: LogFormat,
    /// TLS on every listener (see [`TlsConfig`]); `None`: plain `ws://` and
    /// `http://`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// How `main!` writes its logs (`log_format`).
///
/// ```
/// use framework::config::LogFormat;
/// assert_eq!(LogFormat::default(), LogFormat::Text);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields`
    /// (with `message`), and the `span` and `spans` it happened in.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_queued_bytes: 4 * 1024 * 1024,
            max_channels_per_session: 1024,
            max_subscribers_per_channel: 1_000_000,
            max_connections_per_ip: 10_000,
            max_connections: 100_000,
            max_connections_per_user: 1_000,
            max_held_bytes: 1 << 30,
            max_held_bytes_per_ip: 64 << 20,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(5),
            listen_backlog: 4096,
            message_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(20),
            max_api_body: 64 * 1024,
            body_timeout: Duration::from_secs(10),
            read_buffer_size: 512,
            write_buffer_size: 16 * 1024,
            max_batch_frames: 64,
            allowed_origins: Vec::new(),
            websocket_path: "/ws".to_string(),
            api_key: None,
            auth: None,
            cluster: None,
            channels: Vec::new(),
            channel_options: Vec::new(),
            max_history_bytes: 256 << 20,
            permissions: Permissions::default(),
            quotas: default_quotas(),
            drain_grace: Duration::ZERO,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            proxy_protocol: false,
            log_format: LogFormat::Text,
            tls: None,
        }
    }
}

impl Config {
    /// Whether an upgrade with this `Origin` header value may proceed.
    pub fn origin_allowed(&self, origin: Option<&[u8]>) -> bool {
        match origin {
            None => true,
            Some(_) if self.allowed_origins.is_empty() => true,
            Some(o) => self.allowed_origins.iter().any(|a| a.as_bytes() == o),
        }
    }

    pub(crate) fn decode_limits(&self) -> crate::protocol::DecodeLimits {
        crate::protocol::DecodeLimits::for_max_size(self.max_message_size)
    }
}
