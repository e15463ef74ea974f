//! The cluster as configuration: which engine carries traffic between nodes, and
//! how nodes watch each other.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Running as one node of a cluster (`[cluster]` in TOML, `FRAMEWORK_CLUSTER_*`
/// variables). Without it the node is alone (the in-memory broker).
///
/// ```toml
/// [cluster]
/// url = "redis://127.0.0.1:6379"
/// prefix = "chat"
/// ```
///
/// ```
/// use framework::config::ClusterConfig;
/// let cluster = ClusterConfig::new("redis://127.0.0.1:6379");
/// assert_eq!(cluster.prefix, "framework");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The engine: `redis://host:port[/db]` (or `rediss://` for TLS).
    pub url: String,
    /// Prefix of every name the cluster uses in the engine, so several clusters
    /// (or other applications) can share one engine.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How often a node tells the others it is alive.
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A node not heard from for this long is dead: sends to its sessions are
    /// `NotFound`.
    #[serde(default = "default_heartbeat_timeout", with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// The longest an operation that needs the engine or another node may take
    /// before it fails with `Unavailable`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_prefix() -> String {
    "framework".into()
}

fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(2)
}

fn default_heartbeat_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

impl ClusterConfig {
    /// A cluster over the engine at `url`, with the default timings.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: default_prefix(),
            heartbeat_interval: default_heartbeat_interval(),
            heartbeat_timeout: default_heartbeat_timeout(),
            timeout: default_timeout(),
        }
    }
}
