//! Layer 4: the cluster seam. Publishes, sends and broadcasts go through a
//! [`Broker`], which delivers on this node through the [`Hub`] and, in a cluster, to
//! the other nodes. [`InMemoryBroker`] is the embedded single-node default.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::hub::Hub;
use crate::storage::{Departed, MemoryStorage, Storage};

/// Why a broker operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// No node owns the target session.
    #[error("no node owns session {0}")]
    NotFound(Uuid),
    /// The broker (e.g. the cluster's engine) cannot be reached.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// The cluster seam. A node calls the broker for everything that may cross nodes;
/// the broker delivers locally through the node's [`Hub`] and remotely through its
/// engine. Frames are already encoded: a broker never re-encodes a delivery.
///
/// Implementations learn which sessions this node owns (`session_opened` /
/// `session_closed`) and which channels it has local subscribers for
/// (`channel_interest`), so a clustered broker routes sends to the owning node and
/// publishes only to nodes that care.
///
/// ```
/// use std::sync::Arc;
/// use framework::broker::{Broker, InMemoryBroker};
/// use framework::hub::Hub;
/// let broker = InMemoryBroker::new(uuid::Uuid::new_v4(), Arc::new(Hub::new(8, 8)));
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// broker.broadcast(bytes::Bytes::from_static(b"frame")).await.unwrap();
/// # });
/// ```
pub trait Broker: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> Uuid;

    /// A session now lives on this node (before its `Welcome`). Nothing to do by
    /// default: the in-memory and cluster brokers route by the session's id.
    fn session_opened(&self, _session: Uuid) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async { Ok(()) })
    }

    /// A session of this node ended. Nothing to do by default.
    fn session_closed(&self, _session: Uuid) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// This node gained its first (`true`) or lost its last (`false`) local
    /// subscriber of `channel`.
    fn channel_interest(
        &self,
        channel: Arc<str>,
        interested: bool,
    ) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Delivers an encoded `Publish` frame to every subscriber of `channel`, on every node.
    fn publish(&self, channel: Arc<str>, frame: Bytes) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Delivers an encoded `Send` frame to the session `receiver`, wherever it lives.
    fn send(&self, receiver: Uuid, frame: Bytes) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Delivers an encoded `Broadcast` frame to every session on every node.
    fn broadcast(&self, frame: Bytes) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// The node that owns `session`, if any.
    fn owner_of(&self, session: Uuid) -> BoxFuture<'_, Result<Option<Uuid>, BrokerError>>;

    /// The counters of a cluster broker (exported by `/metrics`); `None` for a
    /// broker that is not one.
    fn cluster_stats(&self) -> Option<&crate::cluster::ClusterStats> {
        None
    }

    /// Whether this broker can carry traffic now; `Err` says why not (a
    /// cluster whose engine is unreachable). `/readyz` answers 503 while it is
    /// not. Always ready by default.
    fn ready(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Where channel history and presence are kept (protocol v1.1); `None`: this
    /// broker keeps neither, and channels configured for them answer
    /// `Unavailable`.
    fn storage(&self) -> Option<Arc<dyn Storage>> {
        None
    }

    /// Delivers an encoded event (`Join`, `Leave`) to every subscriber of
    /// `channel` on every node but the session `except`.
    fn publish_event(
        &self,
        channel: Arc<str>,
        frame: Bytes,
        except: Uuid,
    ) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Presence entries of sessions whose node died, once per entry cluster-wide
    /// (the node sends `Leave` for them where configured). `None`: a broker
    /// whose nodes cannot die apart from this one.
    fn departures(&self) -> Option<tokio::sync::mpsc::Receiver<Departed>> {
        None
    }
}

/// The single-node broker: every delivery stays in this process.
pub struct InMemoryBroker {
    node_id: Uuid,
    hub: Arc<Hub>,
    storage: Arc<MemoryStorage>,
}

impl std::fmt::Debug for InMemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryBroker")
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl InMemoryBroker {
    /// A broker for node `node_id` delivering through `hub`.
    pub fn new(node_id: Uuid, hub: Arc<Hub>) -> Self {
        Self::with_history_limit(node_id, hub, crate::Config::default().max_history_bytes)
    }

    /// A broker whose in-memory histories hold at most `limit` bytes together
    /// (`Config::max_history_bytes`).
    pub fn with_history_limit(node_id: Uuid, hub: Arc<Hub>, limit: usize) -> Self {
        let storage = MemoryStorage::with_limit(node_id, hub.clone(), limit);
        Self {
            node_id,
            hub,
            storage,
        }
    }
}

impl Broker for InMemoryBroker {
    fn node_id(&self) -> Uuid {
        self.node_id
    }

    fn channel_interest(
        &self,
        _channel: Arc<str>,
        _interested: bool,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(async { Ok(()) })
    }

    fn publish(&self, channel: Arc<str>, frame: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.hub.publish_local(&channel, &frame);
        Box::pin(async { Ok(()) })
    }

    fn send(&self, receiver: Uuid, frame: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        let result = match self.hub.send_local(&receiver, frame) {
            // The receiver exists; a full queue closes it, which is its own failure.
            Some(_) => Ok(()),
            None => Err(BrokerError::NotFound(receiver)),
        };
        Box::pin(async move { result })
    }

    fn broadcast(&self, frame: Bytes) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.hub.broadcast_local(&frame);
        Box::pin(async { Ok(()) })
    }

    fn owner_of(&self, session: Uuid) -> BoxFuture<'_, Result<Option<Uuid>, BrokerError>> {
        let owner = self.hub.session(&session).map(|_| self.node_id);
        Box::pin(async move { Ok(owner) })
    }

    fn storage(&self) -> Option<Arc<dyn Storage>> {
        Some(self.storage.clone())
    }

    fn publish_event(
        &self,
        channel: Arc<str>,
        frame: Bytes,
        except: Uuid,
    ) -> BoxFuture<'_, Result<(), BrokerError>> {
        self.hub.event_local(&channel, &frame, except);
        Box::pin(async { Ok(()) })
    }
}
