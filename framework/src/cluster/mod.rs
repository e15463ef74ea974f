//! The cluster: nodes of one application sharing their traffic through an
//! engine people already run. [`ClusterBroker`] is the one cluster core — node
//! heartbeats, channel interest, routing of sends, request/response between nodes
//! with timeouts — over any [`Engine`], the small piece that speaks to one product
//! ([`redis`](mod@redis) is the first).
//!
//! How traffic moves (names under the configured prefix `p`):
//!
//! - **Publish**: delivered to this node's subscribers at once, then published on
//!   `p:c:<channel>`, which exactly the nodes with a local subscriber of the
//!   channel subscribe to (they subscribe when their first local subscriber
//!   joins, and the `Subscribe` is acknowledged only once the engine confirmed).
//!   A node never receives a channel nobody on it listens to.
//! - **Broadcast**: delivered here, then published on `p:all`.
//! - **Send**: a session's id carries its node's routing key (its first six
//!   bytes), so a send goes straight to `p:n:<key>`, the owner's own subject, as
//!   a request; the owner answers whether the session exists. No node listening
//!   there (it died) is `NotFound` at once; no answer within `timeout` is
//!   `NotFound` when the owner's heartbeats stopped, `Unavailable` otherwise.
//! - **Heartbeats** on `p:hb` every `heartbeat_interval`: each node knows which
//!   nodes are alive (dead after `heartbeat_timeout` without one).
//!
//! Frames cross nodes as they were encoded, behind a small envelope (a kind
//! byte and the origin node): nothing is re-encoded per node, and a node skips
//! its own publications when the engine echoes them back.

#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "nats")]
mod nats_storage;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
mod redis_storage;
#[cfg(feature = "nats")]
pub use nats_storage::NatsStorage;
#[cfg(feature = "redis")]
pub use redis_storage::RedisStorage;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::broker::{Broker, BrokerError};
use crate::config::ClusterConfig;
use crate::hub::Hub;
use crate::storage::{Departed as Departures, Storage};

/// Why an engine operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);

/// Receives what the engine delivers: the subject and the payload, in the order
/// the engine delivered them. Called on the engine's reading task: it must not
/// block.
pub type Inbox = Arc<dyn Fn(&[u8], Bytes) + Send + Sync>;

/// The part of a cluster that speaks to one engine: publish/subscribe on
/// subjects, nothing more. Subscriptions are the engine's to keep across
/// reconnections.
pub trait Engine: Send + Sync + 'static {
    /// Publishes `payload` on `subject`; resolves to how many subscribers got it,
    /// or `None` when the engine cannot tell.
    fn publish(
        &self,
        subject: String,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<Option<usize>, EngineError>>;

    /// Starts receiving `subject` (into the inbox), once the engine confirmed.
    fn subscribe(&self, subject: String) -> BoxFuture<'_, Result<(), EngineError>>;

    /// Stops receiving `subject`.
    fn unsubscribe(&self, subject: String) -> BoxFuture<'_, Result<(), EngineError>>;
}

/// Counters of a cluster node, also exported by `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Engine operations that failed or timed out.
    pub engine_errors: AtomicU64,
    /// Publishes and broadcasts delivered here but not carried to the other
    /// nodes (the engine was unreachable): reported, never silently lost.
    pub undelivered: AtomicU64,
    /// Publishes, broadcasts and sends received from other nodes.
    pub received: AtomicU64,
    /// Whether the last engine operation succeeded.
    connected: AtomicBool,
    /// Other nodes heard from within the heartbeat timeout (at the last beat).
    nodes: std::sync::atomic::AtomicUsize,
    /// How long this node's last heartbeat took to come back through the engine,
    /// in microseconds.
    lag_micros: AtomicU64,
}

impl ClusterStats {
    /// Whether the engine answered the last operation.
    pub fn connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    /// How many other nodes were alive at the last heartbeat.
    pub fn other_nodes(&self) -> usize {
        self.nodes.load(Relaxed)
    }

    /// The engine's lag: how long this node's last heartbeat took to come back.
    pub fn engine_lag(&self) -> Duration {
        Duration::from_micros(self.lag_micros.load(Relaxed))
    }
}

/// Whether a node is alive (heard from within the heartbeat timeout).
pub(crate) type Liveness = Arc<dyn Fn(&Uuid) -> bool + Send + Sync>;

/// Envelope kinds.
const PUBLISH: u8 = b'P';
const BROADCAST: u8 = b'B';
const HEARTBEAT: u8 = b'H';
const SEND: u8 = b'S';
const OWNER: u8 = b'O';
const REPLY: u8 = b'R';
/// A publication on a channel with history, published by the storage: every
/// node delivers it (the origin included), in the order the engine gives.
const HISTORY: u8 = b'Q';
/// An event (`Join`, `Leave`): the session it is not for, then the frame.
const EVENT: u8 = b'E';

/// A session's (or node's) routing key: the first six bytes of its id.
type Key = [u8; 6];

fn key_of(id: &Uuid) -> Key {
    let mut key = [0; 6];
    key.copy_from_slice(&id.as_bytes()[..6]);
    key
}

fn hex(key: &Key) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new session id for a session of node `node`: the node's routing key, then
/// 74 random bits (a version 8 UUID).
pub(crate) fn session_id(node: Uuid) -> Uuid {
    let mut bytes = *Uuid::new_v4().as_bytes();
    bytes[..6].copy_from_slice(&node.as_bytes()[..6]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// `channel` as one subject token: every byte outside `[A-Za-z0-9_:-]` written
/// `%XX`, so any channel name is one valid token for every engine (NATS gives
/// `.`, `*`, `>` and spaces a meaning).
pub(crate) fn subject_token(channel: &str) -> String {
    let mut token = String::with_capacity(channel.len());
    for b in channel.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-') {
            token.push(char::from(b));
        } else {
            token.push_str(&format!("%{b:02X}"));
        }
    }
    token
}

/// The subject of `channel` in the cluster `prefix`.
pub(crate) fn channel_subject_of(prefix: &str, channel: &str) -> String {
    format!("{prefix}:c:{}", subject_token(channel))
}

/// The channel name a subject token encodes (see [`subject_token`]).
fn decode_subject(token: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(token.len());
    let mut i = 0;
    while i < token.len() {
        if token[i] == b'%' {
            let hex = std::str::from_utf8(token.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(token[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a node answered to a request.
#[derive(Debug, Clone, Copy)]
struct Answer {
    found: bool,
    node: Uuid,
}

struct Core {
    node_id: Uuid,
    key: Key,
    hub: Arc<Hub>,
    engine: OnceLock<Arc<dyn Engine>>,
    config: ClusterConfig,
    pending: DashMap<Uuid, oneshot::Sender<Answer>>,
    /// Live nodes by routing key: their id and when they were last heard from.
    nodes: DashMap<Key, (Uuid, Instant)>,
    stats: ClusterStats,
    /// Whether a failure was logged since the engine last worked.
    failing: AtomicBool,
    /// The clock of this node's heartbeats.
    started: Instant,
    /// When (on that clock, in microseconds) this node's last heartbeat came
    /// back through the engine; 0 until the first.
    echoed_micros: AtomicU64,
    /// History and presence, when the engine has a storage.
    storage: OnceLock<Arc<dyn Storage>>,
    departures: tokio::sync::mpsc::Sender<Departures>,
    departures_rx: parking_lot::Mutex<Option<tokio::sync::mpsc::Receiver<Departures>>>,
}

/// The cluster core: a [`Broker`] over an [`Engine`] (see the module's
/// documentation).
///
/// ```no_run
/// # async fn f() -> Result<(), framework::app::AppError> {
/// use framework::{config::ClusterConfig, App, Config};
/// let app = App::new()
///     .config(Config {
///         cluster: Some(ClusterConfig::new("redis://127.0.0.1:6379")),
///         ..Config::default()
///     })
///     .run_service(std::net::SocketAddr::from(([0, 0, 0, 0], 8080)));
/// let handle = app.start().await?; // fails with AppError::Broker when Redis cannot be reached
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClusterBroker(Arc<Core>);

impl std::fmt::Debug for ClusterBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBroker")
            .field("node_id", &self.0.node_id)
            .field("prefix", &self.0.config.prefix)
            .finish()
    }
}

/// Connects node `node_id` to the cluster `config` describes, with the engine its
/// URL names: subscribes to the node's own subjects and starts the heartbeats.
// A build without engines (no `redis`, no `nats` feature) refuses every URL.
#[cfg_attr(
    not(any(feature = "redis", feature = "nats")),
    allow(unreachable_code, unused_variables)
)]
pub async fn connect(
    config: &ClusterConfig,
    node_id: Uuid,
    hub: Arc<Hub>,
) -> Result<ClusterBroker, BrokerError> {
    let broker = ClusterBroker::new(config.clone(), node_id, hub.clone());
    let scheme = config.url.split("://").next().unwrap_or_default();
    let engine: Arc<dyn Engine> = match scheme {
        #[cfg(feature = "redis")]
        "redis" | "rediss" => {
            let engine = redis::RedisEngine::connect(config, broker.inbox()).await?;
            let storage = Arc::new(RedisStorage::new(
                engine.conn.clone(),
                &config.prefix,
                node_id,
                broker.history_head(),
                broker.liveness(),
                config.timeout,
            ));
            storage.keep_presence_alive();
            broker.set_storage(storage);
            Arc::new(engine)
        }
        #[cfg(feature = "nats")]
        "nats" => {
            let engine = nats::NatsEngine::connect(config, broker.inbox()).await?;
            broker.set_storage(Arc::new(NatsStorage::new(
                engine.client(),
                &config.prefix,
                node_id,
                hub.clone(),
                broker.liveness(),
                config.timeout,
            )));
            Arc::new(engine)
        }
        other => {
            return Err(BrokerError::Unavailable(format!(
                "no cluster engine for `{other}://` URLs (this build has: {})",
                ENGINES.join(", ")
            )))
        }
    };
    broker.start(engine).await?;
    Ok(broker)
}

/// The URL schemes of the engines this build has.
const ENGINES: &[&str] = &[
    #[cfg(feature = "redis")]
    "redis://",
    #[cfg(feature = "redis")]
    "rediss://",
    #[cfg(feature = "nats")]
    "nats://",
];

impl ClusterBroker {
    /// A cluster core for node `node_id`, not yet attached to an engine (see
    /// [`start`](Self::start)).
    pub fn new(config: ClusterConfig, node_id: Uuid, hub: Arc<Hub>) -> Self {
        let (departures, departures_rx) = tokio::sync::mpsc::channel(64);
        Self(Arc::new(Core {
            storage: OnceLock::new(),
            departures,
            departures_rx: parking_lot::Mutex::new(Some(departures_rx)),
            node_id,
            key: key_of(&node_id),
            hub,
            engine: OnceLock::new(),
            config,
            pending: DashMap::new(),
            nodes: DashMap::new(),
            stats: ClusterStats::default(),
            failing: AtomicBool::new(false),
            started: Instant::now(),
            echoed_micros: AtomicU64::new(0),
        }))
    }

    /// What the engine delivers to: hand it to the engine when connecting it.
    pub fn inbox(&self) -> Inbox {
        let core = Arc::downgrade(&self.0);
        Arc::new(move |subject, payload| {
            if let Some(core) = core.upgrade() {
                core.receive(subject, payload);
            }
        })
    }

    /// Attaches `engine`: subscribes to this node's subjects and starts the
    /// heartbeats (a task that ends with the broker).
    pub async fn start(&self, engine: Arc<dyn Engine>) -> Result<(), BrokerError> {
        let core = &self.0;
        if core.engine.set(engine).is_err() {
            return Err(BrokerError::Unavailable(
                "the cluster is already started".into(),
            ));
        }
        for subject in [
            core.node_subject(&core.key),
            core.subject("all"),
            core.subject("hb"),
        ] {
            core.subscribe(subject).await?;
        }
        core.heartbeat().await;
        let weak = Arc::downgrade(&self.0);
        let interval = core.config.heartbeat_interval;
        tokio::spawn(heartbeats(weak, interval));
        Ok(())
    }

    /// Gives the cluster its history and presence storage (once; the Redis
    /// engine's is set by [`connect`]).
    pub fn set_storage(&self, storage: Arc<dyn Storage>) {
        let _ = self.0.storage.set(storage);
    }

    /// Whether a node is alive, as this node sees it (for a storage's presence
    /// reads).
    pub fn liveness(&self) -> Liveness {
        let core = Arc::downgrade(&self.0);
        Arc::new(move |node| core.upgrade().is_some_and(|c| c.alive(node)))
    }

    /// The envelope head of this node's history publications (what a storage
    /// that publishes them itself puts before each frame).
    pub fn history_head(&self) -> Bytes {
        self.0.envelope(HISTORY, &[])
    }

    /// This node's counters.
    pub fn stats(&self) -> &ClusterStats {
        &self.0.stats
    }

    /// The nodes alive now (heard from within the heartbeat timeout), this one
    /// included.
    pub fn nodes(&self) -> Vec<Uuid> {
        let timeout = self.0.config.heartbeat_timeout;
        let mut nodes: Vec<Uuid> = self
            .0
            .nodes
            .iter()
            .filter(|e| e.value().1.elapsed() < timeout)
            .map(|e| e.value().0)
            .collect();
        if !nodes.contains(&self.0.node_id) {
            nodes.push(self.0.node_id);
        }
        nodes
    }
}

/// Beats until the broker is gone; forgets nodes not heard from in time.
async fn heartbeats(core: Weak<Core>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(core) = core.upgrade() else { return };
        core.heartbeat().await;
        let timeout = core.config.heartbeat_timeout;
        let mut dead = Vec::new();
        core.nodes.retain(|_, (node, seen)| {
            let alive = seen.elapsed() < timeout;
            if !alive {
                tracing::warn!(%node, "cluster node silent for {timeout:?}: considered dead");
                dead.push(*node);
            }
            alive
        });
        if let Some(storage) = core.storage.get() {
            for node in dead {
                match storage.node_gone(node).await {
                    Ok(gone) if !gone.is_empty() => {
                        tracing::info!(%node, entries = gone.len(), "presence of a dead node removed");
                        let _ = core.departures.try_send(gone);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(%node, error = %e, "presence of a dead node not removed")
                    }
                }
            }
        }
        let others = core
            .nodes
            .iter()
            .filter(|e| e.value().0 != core.node_id)
            .count();
        core.stats.nodes.store(others, Relaxed);
    }
}

impl Core {
    fn engine(&self) -> Result<&Arc<dyn Engine>, BrokerError> {
        self.engine
            .get()
            .ok_or_else(|| BrokerError::Unavailable("the cluster is not started".into()))
    }

    fn subject(&self, name: &str) -> String {
        format!("{}:{name}", self.config.prefix)
    }

    /// The subject of `channel` (see [`subject_token`]).
    fn channel_subject(&self, channel: &str) -> String {
        channel_subject_of(&self.config.prefix, channel)
    }

    /// Whether `node` is alive: this one, or heard from within the heartbeat
    /// timeout.
    ///
    /// A node never heard from counts as alive while this one is younger than
    /// the heartbeat timeout: it may simply not have beaten since this node
    /// started (its entries would otherwise vanish from every presence read for
    /// up to a heartbeat interval). A node that died before this one started is
    /// removed by the survivors within the timeout anyway.
    fn alive(&self, node: &Uuid) -> bool {
        let timeout = self.config.heartbeat_timeout;
        *node == self.node_id
            || match self.nodes.get(&key_of(node)) {
                Some(e) => e.value().0 == *node && e.value().1.elapsed() < timeout,
                None => self.started.elapsed() < timeout,
            }
    }

    fn node_subject(&self, key: &Key) -> String {
        format!("{}:n:{}", self.config.prefix, hex(key))
    }

    /// Records the outcome of an engine operation; logs once per failure streak.
    fn outcome<T>(&self, what: &str, result: Result<T, EngineError>) -> Result<T, BrokerError> {
        match result {
            Ok(v) => {
                self.stats.connected.store(true, Relaxed);
                if self.failing.swap(false, Relaxed) {
                    tracing::info!("cluster engine reachable again");
                }
                Ok(v)
            }
            Err(e) => {
                self.stats.connected.store(false, Relaxed);
                self.stats.engine_errors.fetch_add(1, Relaxed);
                if !self.failing.swap(true, Relaxed) {
                    tracing::warn!(error = %e, "cluster engine failed ({what}); retrying in the background");
                }
                Err(BrokerError::Unavailable(format!("cluster engine: {e}")))
            }
        }
    }

    async fn timed<T>(
        &self,
        what: &str,
        op: BoxFuture<'_, Result<T, EngineError>>,
    ) -> Result<T, BrokerError> {
        let result = match tokio::time::timeout(self.config.timeout, op).await {
            Ok(r) => r,
            Err(_) => Err(EngineError(format!(
                "no answer within {:?}",
                self.config.timeout
            ))),
        };
        self.outcome(what, result)
    }

    async fn publish(&self, subject: String, payload: Bytes) -> Result<Option<usize>, BrokerError> {
        let engine = self.engine()?;
        self.timed("publish", engine.publish(subject, payload))
            .await
    }

    async fn subscribe(&self, subject: String) -> Result<(), BrokerError> {
        let engine = self.engine()?;
        self.timed("subscribe", engine.subscribe(subject)).await
    }

    async fn heartbeat(&self) {
        let mut beat = BytesMut::with_capacity(25);
        beat.put_u8(HEARTBEAT);
        beat.put_slice(self.node_id.as_bytes());
        beat.put_u64(self.started.elapsed().as_micros() as u64);
        let _ = self.publish(self.subject("hb"), beat.freeze()).await;
    }

    /// An envelope: kind, this node, then `parts`.
    fn envelope(&self, kind: u8, parts: &[&[u8]]) -> Bytes {
        let len = 17 + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut out = BytesMut::with_capacity(len);
        out.put_u8(kind);
        out.put_slice(self.node_id.as_bytes());
        for part in parts {
            out.put_slice(part);
        }
        out.freeze()
    }

    /// Something the engine delivered.
    fn receive(&self, subject: &[u8], payload: Bytes) {
        if payload.len() < 17 {
            return;
        }
        let kind = payload[0];
        let Ok(origin) = Uuid::from_slice(&payload[1..17]) else {
            return;
        };
        if kind == HEARTBEAT {
            if origin == self.node_id && payload.len() >= 25 {
                let sent = u64::from_be_bytes(payload[17..25].try_into().unwrap_or_default());
                let now = self.started.elapsed().as_micros() as u64;
                self.stats
                    .lag_micros
                    .store(now.saturating_sub(sent), Relaxed);
                self.echoed_micros.store(now, Relaxed);
            }
            self.nodes.insert(key_of(&origin), (origin, Instant::now()));
            return;
        }
        if kind == REPLY {
            // origin: the request's id; then found, then the answering node.
            if payload.len() >= 34 {
                let found = payload[17] == 1;
                let node = Uuid::from_slice(&payload[18..34]).unwrap_or_default();
                if let Some((_, tx)) = self.pending.remove(&origin) {
                    let _ = tx.send(Answer { found, node });
                }
            }
            return;
        }
        let channel_of = |subject: &[u8]| {
            let prefix = self.channel_subject("");
            decode_subject(subject.strip_prefix(prefix.as_bytes())?)
        };
        if kind == HISTORY {
            // Published by the storage in offset order: delivered on every
            // node, this one included.
            if let Some(channel) = channel_of(subject) {
                self.stats.received.fetch_add(1, Relaxed);
                self.hub.publish_local(&channel, &payload.slice(17..));
            }
            return;
        }
        if origin == self.node_id {
            // Our own publication, echoed by the engine: delivered already.
            return;
        }
        let body = payload.slice(17..);
        match kind {
            PUBLISH => {
                let Some(channel) = channel_of(subject) else {
                    return;
                };
                self.stats.received.fetch_add(1, Relaxed);
                self.hub.publish_local(&channel, &body);
            }
            EVENT if body.len() >= 16 => {
                let Some(channel) = channel_of(subject) else {
                    return;
                };
                let except = Uuid::from_slice(&body[..16]).unwrap_or_default();
                self.hub.event_local(&channel, &body.slice(16..), except);
            }
            BROADCAST => {
                self.stats.received.fetch_add(1, Relaxed);
                self.hub.broadcast_local(&body);
            }
            SEND | OWNER if body.len() >= 32 => {
                let request = Uuid::from_slice(&body[..16]).unwrap_or_default();
                let session = Uuid::from_slice(&body[16..32]).unwrap_or_default();
                let found = if kind == SEND {
                    self.stats.received.fetch_add(1, Relaxed);
                    self.hub.send_local(&session, body.slice(32..)).is_some()
                } else {
                    self.hub.session(&session).is_some()
                };
                self.answer(origin, request, found);
            }
            _ => {}
        }
    }

    /// Answers request `request` of node `to`.
    fn answer(&self, to: Uuid, request: Uuid, found: bool) {
        let mut reply = BytesMut::with_capacity(34);
        reply.put_u8(REPLY);
        reply.put_slice(request.as_bytes());
        reply.put_u8(u8::from(found));
        reply.put_slice(self.node_id.as_bytes());
        let subject = self.node_subject(&key_of(&to));
        let Some(engine) = self.engine.get().cloned() else {
            return;
        };
        let timeout = self.config.timeout;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(timeout, engine.publish(subject, reply.freeze())).await;
        });
    }

    /// Asks the node that owns `session` (by its routing key); `None`: no node
    /// owns it.
    async fn ask(
        &self,
        kind: u8,
        session: Uuid,
        frame: &[u8],
    ) -> Result<Option<Uuid>, BrokerError> {
        let key = key_of(&session);
        if key == self.key {
            return Ok(None);
        }
        let request = Uuid::new_v4();
        let (tx, rx) = oneshot::channel();
        self.pending.insert(request, tx);
        let payload = self.envelope(kind, &[request.as_bytes(), session.as_bytes(), frame]);
        let published = self.publish(self.node_subject(&key), payload).await;
        let answer = match published {
            Err(e) => Err(e),
            // Nobody listens on the owner's subject: it is gone.
            Ok(Some(0)) => Ok(None),
            Ok(_) => match tokio::time::timeout(self.config.timeout, rx).await {
                Ok(Ok(answer)) => Ok(answer.found.then_some(answer.node)),
                _ => {
                    let alive = self
                        .nodes
                        .get(&key)
                        .is_some_and(|e| e.value().1.elapsed() < self.config.heartbeat_timeout);
                    if alive {
                        Err(BrokerError::Unavailable(format!(
                            "node {} did not answer within {:?}",
                            hex(&key),
                            self.config.timeout
                        )))
                    } else {
                        Ok(None)
                    }
                }
            },
        };
        self.pending.remove(&request);
        answer
    }
}

impl Broker for ClusterBroker {
    fn node_id(&self) -> Uuid {
        self.0.node_id
    }

    fn channel_interest(
        &self,
        channel: Arc<str>,
        interested: bool,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            let core = &self.0;
            let subject = core.channel_subject(&channel);
            if interested {
                core.subscribe(subject).await
            } else {
                let engine = core.engine()?;
                // Best effort: a stale subscription only costs traffic.
                let _ = core.timed("unsubscribe", engine.unsubscribe(subject)).await;
                Ok(())
            }
        })
    }

    fn publish(&self, channel: Arc<str>, frame: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            let core = &self.0;
            core.hub.publish_local(&channel, &frame);
            let payload = core.envelope(PUBLISH, &[&frame]);
            let result = core.publish(core.channel_subject(&channel), payload).await;
            if result.is_err() {
                core.stats.undelivered.fetch_add(1, Relaxed);
            }
            result.map(|_| ())
        })
    }

    fn send(&self, receiver: Uuid, frame: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            let core = &self.0;
            if core.hub.session(&receiver).is_some()
                && core.hub.send_local(&receiver, frame.clone()).is_some()
            {
                return Ok(());
            }
            match core.ask(SEND, receiver, &frame).await? {
                Some(_) => Ok(()),
                None => Err(BrokerError::NotFound(receiver)),
            }
        })
    }

    fn broadcast(&self, frame: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            let core = &self.0;
            core.hub.broadcast_local(&frame);
            let payload = core.envelope(BROADCAST, &[&frame]);
            let result = core.publish(core.subject("all"), payload).await;
            if result.is_err() {
                core.stats.undelivered.fetch_add(1, Relaxed);
            }
            result.map(|_| ())
        })
    }

    fn cluster_stats(&self) -> Option<&ClusterStats> {
        Some(&self.0.stats)
    }

    /// Ready while the engine answered the last operation and this node's own
    /// heartbeats come back through it within `heartbeat_timeout` (an engine
    /// that takes publishes but delivers nothing is not ready either).
    fn ready(&self) -> Result<(), BrokerError> {
        let core = &self.0;
        if !core.stats.connected() {
            return Err(BrokerError::Unavailable(
                "the cluster engine does not answer".into(),
            ));
        }
        let echoed = Duration::from_micros(core.echoed_micros.load(Relaxed));
        let silent = core.started.elapsed().saturating_sub(echoed);
        if silent > core.config.heartbeat_timeout {
            return Err(BrokerError::Unavailable(format!(
                "this node's heartbeats have not come back through the cluster engine for {silent:?}"
            )));
        }
        Ok(())
    }

    fn storage(&self) -> Option<Arc<dyn Storage>> {
        self.0.storage.get().cloned()
    }

    fn publish_event(
        &self,
        channel: Arc<str>,
        frame: Bytes,
        except: Uuid,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async move {
            let core = &self.0;
            core.hub.event_local(&channel, &frame, except);
            let payload = core.envelope(EVENT, &[except.as_bytes(), &frame]);
            core.publish(core.channel_subject(&channel), payload)
                .await
                .map(|_| ())
        })
    }

    fn departures(&self) -> Option<tokio::sync::mpsc::Receiver<Departures>> {
        self.0.departures_rx.lock().take()
    }

    fn owner_of(&self, session: Uuid) -> BoxFuture<'_, Result<Option<Uuid>, BrokerError>> {
        Box::pin(async move {
            let core = &self.0;
            if core.hub.session(&session).is_some() {
                return Ok(Some(core.node_id));
            }
            core.ask(OWNER, session, &[]).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip_through_subjects() {
        let core = ClusterBroker::new(
            ClusterConfig::new("x://"),
            Uuid::new_v4(),
            Arc::new(Hub::new(1, 1)),
        );
        for channel in ["room", "chat:room.1", "a b*>%", "ünï", ""] {
            let subject = core.0.channel_subject(channel);
            let token = &subject["framework:c:".len()..];
            assert!(!token.contains(['.', '*', '>', ' ']), "{subject}");
            assert_eq!(decode_subject(token.as_bytes()).as_deref(), Some(channel));
        }
    }

    #[test]
    fn session_ids_carry_their_node_key() {
        let node = Uuid::new_v4();
        let a = session_id(node);
        let b = session_id(node);
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 8);
        assert_eq!(key_of(&a), key_of(&node));
    }
}
