//! Layer 5: the running node: its hub, broker, configuration, shared state,
//! counters, token verifier and quotas.
//! Handlers reach it through [`Request::node`](crate::dispatch::Request::node); the
//! application reaches it through [`AppHandle::node`](crate::AppHandle::node).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

mod access;
mod auth;
mod channels;
mod quota;
mod users;

pub(crate) use access::Access;
pub use access::{Action, Denied};
pub use auth::{AuthError, AuthSetupError, Identity, Verifier};
pub use channels::{ChannelError, Recovery, MAX_HISTORY_PAGE};
pub use quota::QuotaResult;
pub(crate) use quota::Quotas;
pub use users::TooManyForUser;
pub(crate) use users::{UserCounts, UserSlot};

use crate::broker::{Broker, BrokerError};
use crate::hub::{Hub, JoinError};
use crate::protocol::{ErrorCode, FrameFields, Opcode};
use crate::session::budget::MemoryBudget;
use crate::session::{opcode_slot, opcode_slot_label, Connection, OpcodeCounters, OPCODE_SLOTS};
use crate::storage::{Pending, Position};
use crate::Config;

/// Shared application state, keyed by type (the C++ guide's `state::instance`).
///
/// ```
/// let mut state = framework::node::AppState::default();
/// state.insert(42u32);
/// assert_eq!(*state.get::<u32>().unwrap(), 42);
/// assert!(state.get::<String>().is_none());
/// ```
#[derive(Default, Clone)]
pub struct AppState {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("values", &self.values.len())
            .finish()
    }
}

impl AppState {
    /// Stores `value`, replacing a previous value of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// Whether a value of this type was stored.
    pub fn contains(&self, type_id: TypeId) -> bool {
        self.values.contains_key(&type_id)
    }

    /// The value of type `T`, if one was stored.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.values
            .get(&TypeId::of::<T>())
            .and_then(|v| v.clone().downcast::<T>().ok())
    }
}

/// Error codes counted in [`NodeMetrics::errors_sent`]: every value the schema names.
const ERROR_CODES: usize = ErrorCode::ENUM_MAX as usize + 1;

/// Node-wide counters, exported in Prometheus format by the HTTP service.
#[derive(Debug)]
pub struct NodeMetrics {
    /// Sessions ever opened (protocol and raw).
    pub sessions_opened: AtomicU64,
    /// Sessions ended.
    pub sessions_closed: AtomicU64,
    /// Sessions closed with 1008 because their queue overflowed (shared with the
    /// node's memory budget, through which the sessions count themselves).
    pub slow_consumer_closes: Arc<AtomicU64>,
    /// Sessions closed with 1009 for an oversized message.
    pub oversized_closes: AtomicU64,
    /// Connections refused before the handshake completed (limits, timeouts,
    /// origin, hooks).
    pub handshakes_refused: AtomicU64,
    /// Failed `accept` calls (e.g. out of file descriptors); the listener backs off.
    pub accept_errors: AtomicU64,
    /// TLS handshakes that failed or timed out (with `[tls]`).
    pub tls_handshake_failures: AtomicU64,
    /// Certificates reloaded (SIGHUP, changed files, `AppHandle::reload_tls`).
    pub tls_reloads: AtomicU64,
    /// Reloads that failed (the certificate in use stayed).
    pub tls_reload_failures: AtomicU64,
    /// Binary messages received, decodable or not.
    pub frames_in: AtomicU64,
    /// Decoded protocol frames received, by opcode.
    pub received: OpcodeCounters,
    /// Frames this node answered or greeted with (replies, acks, errors,
    /// `Welcome`), by opcode; deliveries are counted by the hub
    /// ([`DeliveryStats`](crate::hub::DeliveryStats)).
    pub sent: OpcodeCounters,
    /// Error frames sent, indexed by `ErrorCode` value.
    errors: [AtomicU64; ERROR_CODES],
    /// Time handlers took, in seconds.
    pub handler_duration: prometheus::Histogram,
    /// The same by opcode slot ([`opcode_slot`]), labelled `opcode`.
    handler_durations: Box<[prometheus::Histogram]>,
    /// Recovering `Subscribe`s answered `recovered = true`.
    pub recovered: AtomicU64,
    /// Recovering `Subscribe`s answered `recovered = false`.
    pub not_recovered: AtomicU64,
    /// Publications kept in a channel's history (given an offset).
    pub history_appends: AtomicU64,
}

/// The buckets of the handler-latency histograms, in seconds.
const HANDLER_BUCKETS: [f64; 12] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

impl Default for NodeMetrics {
    fn default() -> Self {
        let opts = prometheus::HistogramOpts::new(
            "framework_handler_duration_seconds",
            "Time from a frame's dispatch to its reply.",
        )
        .buckets(HANDLER_BUCKETS.to_vec());
        let by_opcode = |slot| {
            let opts = prometheus::HistogramOpts::new(
                "framework_handler_duration_by_opcode_seconds",
                "Time from a frame's dispatch to its reply, by the frame's opcode.",
            )
            .const_label("opcode", opcode_slot_label(slot))
            .buckets(HANDLER_BUCKETS.to_vec());
            prometheus::Histogram::with_opts(opts).expect("static histogram options are valid")
        };
        Self {
            sessions_opened: AtomicU64::new(0),
            sessions_closed: AtomicU64::new(0),
            slow_consumer_closes: Arc::default(),
            oversized_closes: AtomicU64::new(0),
            handshakes_refused: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            tls_reloads: AtomicU64::new(0),
            tls_reload_failures: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            received: OpcodeCounters::default(),
            sent: OpcodeCounters::default(),
            errors: Default::default(),
            handler_duration: prometheus::Histogram::with_opts(opts)
                .expect("static histogram options are valid"),
            handler_durations: (0..OPCODE_SLOTS).map(by_opcode).collect(),
            recovered: AtomicU64::new(0),
            not_recovered: AtomicU64::new(0),
            history_appends: AtomicU64::new(0),
        }
    }
}

impl NodeMetrics {
    pub(crate) fn count_in(&self, opcode: u16, bytes: usize) {
        self.received.count(opcode, 1, bytes as u64);
    }

    /// Counts a frame this node sends itself (a reply, an error, `Welcome`) of
    /// `bytes` bytes; `error` is its code when it is an `Error` frame.
    pub(crate) fn count_sent(&self, opcode: u16, bytes: usize, error: Option<ErrorCode>) {
        self.sent.count(opcode, 1, bytes as u64);
        if let Some(code) = error {
            if let Some(c) = self.errors.get(code.0 as usize) {
                c.fetch_add(1, Relaxed);
            }
        }
    }

    /// Records that a handler took `seconds` to answer a frame with `opcode`.
    pub(crate) fn observe_handler(&self, opcode: u16, seconds: f64) {
        self.handler_duration.observe(seconds);
        self.handler_durations[opcode_slot(opcode)].observe(seconds);
    }

    /// The handler-latency histogram of `opcode`'s slot ([`opcode_slot`]:
    /// application opcodes share one), exported as
    /// `framework_handler_duration_by_opcode_seconds{opcode="…"}`.
    ///
    /// ```
    /// let m = framework::node::NodeMetrics::default();
    /// assert_eq!(m.handler_duration_of(2).get_sample_count(), 0);
    /// ```
    pub fn handler_duration_of(&self, opcode: u16) -> &prometheus::Histogram {
        &self.handler_durations[opcode_slot(opcode)]
    }

    /// Every slot's handler-latency histogram.
    pub(crate) fn handler_durations(&self) -> &[prometheus::Histogram] {
        &self.handler_durations
    }

    /// Error frames sent with `code`.
    pub fn errors_sent(&self, code: ErrorCode) -> u64 {
        self.errors
            .get(code.0 as usize)
            .map_or(0, |c| c.load(Relaxed))
    }

    /// Sessions open now.
    pub fn sessions_active(&self) -> u64 {
        let opened = self.sessions_opened.load(Relaxed);
        opened.saturating_sub(self.sessions_closed.load(Relaxed))
    }
}

/// Why a `Subscribe` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// A membership limit.
    #[error(transparent)]
    Limit(#[from] JoinError),
    /// The broker could not register the node's interest.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

pub(crate) struct NodeInner {
    pub(crate) hub: Arc<Hub>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) config: Config,
    pub(crate) state: AppState,
    pub(crate) metrics: NodeMetrics,
    pub(crate) quotas: Quotas,
    pub(crate) verifier: Option<Verifier>,
    pub(crate) access: Access,
    pub(crate) users: Arc<UserCounts>,
    pub(crate) budget: Arc<MemoryBudget>,
    pub(crate) started: Instant,
    /// The `Welcome` of a session without an identity, but for its id.
    welcome: Option<WelcomeTemplate>,
}

/// A `Welcome` encoded once per node, for the sessions opened without an
/// identity: theirs differ only in the session's id, written into a copy of
/// this one, instead of each going through the builder (667 of a connection's
/// 44,628 instructions, callgrind of a storm's connection phase).
struct WelcomeTemplate {
    /// The node id it carries.
    node: Uuid,
    frame: bytes::Bytes,
    /// Where the receiver id's 16 bytes are in `frame`.
    receiver_at: usize,
}

impl WelcomeTemplate {
    fn new(node: Uuid) -> Option<Self> {
        let frame = FrameFields::new(Opcode::Welcome.0)
            .receiver_id(Some(Uuid::nil()))
            .node_id(Some(node))
            .encode();
        // The receiver id, a struct, is read in place: its address in the frame.
        let receiver = crate::protocol::fbs::root_as_message(&frame)
            .ok()?
            .receiver_id()?;
        let receiver_at = (receiver as *const crate::protocol::fbs::Uuid as usize)
            .checked_sub(frame.as_ptr() as usize)?;
        (receiver_at + 16 <= frame.len()).then_some(WelcomeTemplate {
            node,
            frame,
            receiver_at,
        })
    }

    fn frame(&self, receiver: Uuid) -> bytes::Bytes {
        let mut frame = bytes::BytesMut::from(&self.frame[..]);
        frame[self.receiver_at..self.receiver_at + 16].copy_from_slice(receiver.as_bytes());
        frame.freeze()
    }
}

/// A handle to the running node. Cheap to clone.
///
/// ```no_run
/// # async fn f(handle: framework::AppHandle) {
/// let node = handle.node();
/// node.publish("news", b"from the server", node.node_id(), None).await.unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct Node(pub(crate) Arc<NodeInner>);

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.node_id()).finish()
    }
}

impl Node {
    pub(crate) fn new(
        hub: Arc<Hub>,
        broker: Arc<dyn Broker>,
        config: Config,
        state: AppState,
        verifier: Option<Verifier>,
        opcode_access: &[(u16, Vec<crate::config::Grant>)],
    ) -> Self {
        let access = Access::new(
            &config.channels,
            &config.permissions,
            opcode_access,
            verifier.is_some(),
        );
        let welcome = WelcomeTemplate::new(broker.node_id());
        let metrics = NodeMetrics::default();
        Node(Arc::new(NodeInner {
            welcome,
            hub,
            broker,
            verifier,
            access,
            quotas: Quotas::new(&config.quotas),
            users: UserCounts::new(config.max_connections_per_user),
            // Sessions count their slow-consumer closes in the node's metric
            // through their account in this budget.
            budget: MemoryBudget::counting_slow_consumers(
                config.max_held_bytes,
                config.max_held_bytes_per_ip,
                metrics.slow_consumer_closes.clone(),
            ),
            config,
            state,
            metrics,
            started: Instant::now(),
        }))
    }

    /// The node's memory budget (bytes held for peers, and their limits).
    pub(crate) fn memory_budget(&self) -> &Arc<MemoryBudget> {
        &self.0.budget
    }

    /// Bytes this node holds for its peers now: unfinished incoming messages and
    /// outgoing frames only one queue holds (see `max_held_bytes`).
    ///
    /// ```no_run
    /// # async fn f(handle: framework::AppHandle) {
    /// assert!(handle.node().held_bytes() <= handle.node().config().max_held_bytes);
    /// # }
    /// ```
    pub fn held_bytes(&self) -> usize {
        self.0.budget.held()
    }

    /// Sessions closed because they would have gone over `max_held_bytes` or
    /// `max_held_bytes_per_ip`.
    ///
    /// ```no_run
    /// # async fn f(handle: framework::AppHandle) {
    /// println!("{} held, {} closed for it", handle.node().held_bytes(), handle.node().memory_budget_closes());
    /// # }
    /// ```
    pub fn memory_budget_closes(&self) -> u64 {
        self.0.budget.closes()
    }

    /// This node's id (sent in `Welcome`).
    pub fn node_id(&self) -> Uuid {
        self.0.broker.node_id()
    }

    /// Local sessions and channels.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.0.hub
    }

    /// The broker that carries deliveries between nodes.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.0.broker
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The application's shared state.
    pub fn state(&self) -> &AppState {
        &self.0.state
    }

    /// Node-wide counters.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.0.metrics
    }

    /// The node's quotas.
    pub(crate) fn quotas(&self) -> &Quotas {
        &self.0.quotas
    }

    /// Time since the node started.
    pub fn uptime(&self) -> std::time::Duration {
        self.0.started.elapsed()
    }

    /// Joins `conn` to `channel`, telling the broker when this node's interest starts.
    /// On channels with presence or join/leave events (`Config::channel_options`),
    /// the session's presence entry is added and the others get a `Join`.
    pub async fn subscribe(&self, conn: &Connection, channel: &str) -> Result<(), SubscribeError> {
        let was_member = conn.0.channels.lock().contains(channel);
        if self.0.hub.subscribe(conn, channel)? {
            if let Err(e) = self.interest(channel, true).await {
                self.0.hub.unsubscribe(conn, channel);
                return Err(e.into());
            }
        }
        if !was_member && !self.0.config.channel_options.is_empty() {
            if let Err(e) = self.joined(conn, channel).await {
                self.unsubscribe(conn, channel).await.ok();
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Removes `conn` from `channel`; a no-op when it had not joined. Its
    /// presence entry goes, and the others get a `Leave`, where configured.
    pub async fn unsubscribe(&self, conn: &Connection, channel: &str) -> Result<(), BrokerError> {
        let was_member = conn.0.channels.lock().contains(channel);
        if self.0.hub.unsubscribe(conn, channel) {
            self.interest(channel, false).await?;
        }
        if was_member && !self.0.config.channel_options.is_empty() {
            self.left(&self.presence_entry(conn), channel).await;
        }
        Ok(())
    }

    /// Publishes `payload` to `channel` on every node, encoded once. On a
    /// channel with history the publication gets the next offset, which is
    /// returned with the epoch (`None` on other channels).
    pub async fn publish(
        &self,
        channel: &str,
        payload: &[u8],
        emitter: Uuid,
        trace_id: Option<Uuid>,
    ) -> Result<Option<Position>, BrokerError> {
        self.publish_from(channel, payload, emitter, None, trace_id)
            .await
    }

    async fn publish_from(
        &self,
        channel: &str,
        payload: &[u8],
        emitter: Uuid,
        user: Option<&Identity>,
        trace_id: Option<Uuid>,
    ) -> Result<Option<Position>, BrokerError> {
        if !self.0.config.channel_options.is_empty() {
            let user = user.map(Identity::user_id);
            let pending = Pending::new(channel, payload, emitter, user, trace_id);
            if let Some(result) = self.publish_history(pending).await {
                return result.map(Some);
            }
        }
        let frame = delivery(
            Opcode::Publish,
            payload,
            emitter,
            user.map(Identity::user_id),
            trace_id,
        )
        .channel(channel)
        .encode();
        self.0
            .broker
            .publish(Arc::from(channel), frame)
            .await
            .map(|()| None)
    }

    /// Publishes `payload` to `channel` as the session `conn`: the delivery names
    /// the session in `emitter_id` and, when it is authenticated, its user in
    /// `user_id` — what the built-in `Publish` does.
    ///
    /// ```no_run
    /// # use framework::prelude::*;
    /// async fn shout(ctx: Request) -> Result<Reply, HandlerError> {
    ///     ctx.node()
    ///         .publish_as(ctx.connection(), "lobby", ctx.body(), Some(ctx.trace_id()))
    ///         .await?;
    ///     Ok(Reply::ack())
    /// }
    /// ```
    pub async fn publish_as(
        &self,
        conn: &Connection,
        channel: &str,
        payload: &[u8],
        trace_id: Option<Uuid>,
    ) -> Result<Option<Position>, BrokerError> {
        let user = conn.extension::<Identity>();
        self.publish_from(channel, payload, conn.id(), user.as_ref(), trace_id)
            .await
    }

    /// Sends `payload` to the session `receiver`, wherever it lives.
    pub async fn send(
        &self,
        receiver: Uuid,
        payload: &[u8],
        emitter: Uuid,
        trace_id: Option<Uuid>,
    ) -> Result<(), BrokerError> {
        let frame = delivery(Opcode::Send, payload, emitter, None, trace_id)
            .receiver_id(Some(receiver))
            .encode();
        self.0.broker.send(receiver, frame).await
    }

    /// Sends `payload` to the session `receiver` as the session `conn` (its id in
    /// `emitter_id`, its user in `user_id` when authenticated) — what the built-in
    /// `Send` does.
    ///
    /// ```no_run
    /// # use framework::prelude::*;
    /// # async fn f(ctx: Request, to: uuid::Uuid) -> Result<(), framework::broker::BrokerError> {
    /// ctx.node().send_as(ctx.connection(), to, b"psst", None).await
    /// # }
    /// ```
    pub async fn send_as(
        &self,
        conn: &Connection,
        receiver: Uuid,
        payload: &[u8],
        trace_id: Option<Uuid>,
    ) -> Result<(), BrokerError> {
        let user = conn.extension::<Identity>();
        let frame = delivery_from(Opcode::Send, payload, conn, user.as_ref(), trace_id)
            .receiver_id(Some(receiver))
            .encode();
        self.0.broker.send(receiver, frame).await
    }

    /// Sends `payload` to every session on every node.
    pub async fn broadcast(
        &self,
        payload: &[u8],
        emitter: Uuid,
        trace_id: Option<Uuid>,
    ) -> Result<(), BrokerError> {
        let frame = delivery(Opcode::Broadcast, payload, emitter, None, trace_id).encode();
        self.0.broker.broadcast(frame).await
    }

    /// Sends `payload` to every session on every node as the session `conn` (its
    /// id in `emitter_id`, its user in `user_id` when authenticated) — what the
    /// built-in `Broadcast` does.
    ///
    /// ```no_run
    /// # use framework::prelude::*;
    /// # async fn f(ctx: Request) -> Result<(), framework::broker::BrokerError> {
    /// ctx.node().broadcast_as(ctx.connection(), b"hello all", None).await
    /// # }
    /// ```
    pub async fn broadcast_as(
        &self,
        conn: &Connection,
        payload: &[u8],
        trace_id: Option<Uuid>,
    ) -> Result<(), BrokerError> {
        let user = conn.extension::<Identity>();
        let frame =
            delivery_from(Opcode::Broadcast, payload, conn, user.as_ref(), trace_id).encode();
        self.0.broker.broadcast(frame).await
    }

    /// Queues the `Welcome` frame that opens every protocol session.
    /// The authorization rules.
    pub(crate) fn access(&self) -> &Access {
        &self.0.access
    }

    /// The token verifier, when authentication is configured.
    pub fn verifier(&self) -> Option<&Verifier> {
        self.0.verifier.as_ref()
    }

    /// Makes `identity` the connection's: handlers see it, `Welcome` and `Auth`'s
    /// Ack carry it, and the session is closed with 1008 when it expires (unless
    /// a fresh `Auth` came first).
    ///
    /// The session then counts against its user's `max_connections_per_user`
    /// (a fresh token for the same user does not count again). When the user
    /// has that many sessions already, the session is closed with 1008 ("too
    /// many connections for this user") and keeps its previous identity until
    /// it ends.
    ///
    /// ```no_run
    /// # async fn f(node: framework::node::Node, conn: framework::session::Connection,
    /// #            identity: framework::node::Identity) {
    /// if let Err(e) = node.set_identity(&conn, identity) {
    ///     tracing::info!(session = %conn.id(), "{e}");
    /// }
    /// # }
    /// ```
    pub fn set_identity(
        &self,
        conn: &Connection,
        identity: Identity,
    ) -> Result<(), TooManyForUser> {
        let slot = match conn.extension::<UserSlot>() {
            Some(slot) if slot.user() == identity.user_id() => slot,
            _ => match self.0.users.acquire(identity.user_id()) {
                Ok(slot) => slot,
                Err(e) => {
                    conn.close(
                        crate::session::close_code::POLICY,
                        "too many connections for this user",
                    );
                    return Err(e);
                }
            },
        };
        conn.insert_extension(slot);
        conn.set_deadline_ms(identity.expires_at_ms());
        conn.insert_extension(identity);
        Ok(())
    }

    /// A slot for one more session of `user` (the upgrade's check).
    pub(crate) fn user_slot(&self, user: &str) -> Result<UserSlot, TooManyForUser> {
        self.0.users.acquire(user)
    }

    pub(crate) fn welcome(&self, conn: &Connection) {
        let identity = conn.extension::<Identity>();
        let frame = self.welcome_frame(conn.id(), identity.as_ref());
        self.0
            .metrics
            .count_sent(Opcode::Welcome.0, frame.len(), None);
        let _ = conn.send(frame);
    }

    /// The `Welcome` of session `receiver`, with its identity's user and expiry.
    fn welcome_frame(&self, receiver: Uuid, identity: Option<&Identity>) -> bytes::Bytes {
        let node = self.node_id();
        match (&self.0.welcome, identity) {
            (Some(template), None) if template.node == node => template.frame(receiver),
            _ => {
                let mut fields = FrameFields::new(Opcode::Welcome.0)
                    .receiver_id(Some(receiver))
                    .node_id(Some(node));
                if let Some(id) = identity {
                    fields = fields
                        .user_id(id.user_id())
                        .expires_at_ms(id.expires_at_ms());
                }
                fields.encode()
            }
        }
    }

    pub(crate) async fn session_opened(&self, conn: &Connection) -> Result<(), BrokerError> {
        self.0.hub.register(conn);
        if let Err(e) = self.0.broker.session_opened(conn.id()).await {
            self.0.hub.unregister(conn);
            return Err(e);
        }
        self.0.metrics.sessions_opened.fetch_add(1, Relaxed);
        Ok(())
    }

    pub(crate) async fn session_closed(&self, conn: &Connection) {
        // The user's count drops now, not when the last handle to the
        // connection does.
        conn.remove_extension::<UserSlot>();
        let announced: Vec<Arc<str>> = if self.0.config.channel_options.is_empty() {
            Vec::new()
        } else {
            conn.0
                .channels
                .lock()
                .iter()
                .filter(|c| {
                    self.channel_options(c)
                        .is_some_and(|o| o.presence || o.join_leave)
                })
                .cloned()
                .collect()
        };
        let entry = (!announced.is_empty()).then(|| self.presence_entry(conn));
        for channel in self.0.hub.unregister(conn) {
            let _ = self.interest(&channel, false).await;
        }
        if let Some(entry) = entry {
            for channel in announced {
                self.left(&entry, &channel).await;
            }
        }
        self.0.broker.session_closed(conn.id()).await;
        self.0.metrics.sessions_closed.fetch_add(1, Relaxed);
    }
}

/// A delivery emitted by the session `conn`, authenticated as `user` if any.
fn delivery_from<'a>(
    opcode: Opcode,
    payload: &'a [u8],
    conn: &Connection,
    user: Option<&'a Identity>,
    trace_id: Option<Uuid>,
) -> FrameFields<'a> {
    delivery(
        opcode,
        payload,
        conn.id(),
        user.map(Identity::user_id),
        trace_id,
    )
}

/// The fields every delivery carries: who emitted it (session and, when
/// authenticated, user), the payload and the trace id.
fn delivery<'a>(
    opcode: Opcode,
    payload: &'a [u8],
    emitter: Uuid,
    user_id: Option<&'a str>,
    trace_id: Option<Uuid>,
) -> FrameFields<'a> {
    let fields = FrameFields::new(opcode.0)
        .payload(payload)
        .emitter_id(Some(emitter))
        .trace_id(trace_id);
    match user_id {
        Some(user) if !user.is_empty() => fields.user_id(user),
        _ => fields,
    }
}

#[cfg(test)]
mod tests {
    use super::WelcomeTemplate;
    use crate::protocol::{fbs, FrameFields, Opcode};
    use uuid::Uuid;

    #[test]
    fn a_templated_welcome_is_the_builders_welcome() {
        for _ in 0..64 {
            let (node, receiver) = (Uuid::new_v4(), Uuid::new_v4());
            let template = WelcomeTemplate::new(node).expect("a template");
            let built = FrameFields::new(Opcode::Welcome.0)
                .receiver_id(Some(receiver))
                .node_id(Some(node))
                .encode();
            let frame = template.frame(receiver);
            assert_eq!(frame, built);
            let msg = fbs::root_as_message(&frame).expect("a valid frame");
            assert_eq!(msg.opcode(), Opcode::Welcome);
            assert_eq!(
                msg.receiver_id()
                    .map(|r| Uuid::from_bytes(r.bytes().into())),
                Some(receiver)
            );
            assert_eq!(
                msg.node_id().map(|r| Uuid::from_bytes(r.bytes().into())),
                Some(node)
            );
        }
    }
}
