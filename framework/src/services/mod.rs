//! Layer 7: the services move bytes. Every listener — the protocol WebSocket
//! service, HTTP + WebSocket on one port, raw WebSocket — runs the same accept
//! loop ([`accept`]) and the same admission policy ([`admission`]); an upgraded
//! connection runs on the one session engine, speaking the protocol (its frames
//! go to the [`Dispatcher`]) or handing messages to a raw handler.

pub(crate) mod accept;
pub(crate) mod admission;
pub(crate) mod http;
pub(crate) mod limits;
pub(crate) mod metrics;
pub(crate) mod plain;
pub(crate) mod protocol;
pub(crate) mod proxy;
pub(crate) mod raw;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWrite;

use crate::session::FrameReader;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatch::Dispatcher;
use crate::node::Node;
use crate::raw::ErasedRawHandler;
use crate::session::writer::{self, Outlet};
use crate::session::Connection;

/// What every listener of an app shares.
pub(crate) struct Shared {
    pub(crate) node: Node,
    pub(crate) admission: admission::Admission,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

/// A session, ready for its task: it reads `stream` and writes through `outlet`.
pub(crate) struct OpenSession<R> {
    pub(crate) conn: Connection,
    pub(crate) stream: FrameReader<R>,
    /// The connection's writing side.
    pub(crate) outlet: Arc<dyn Outlet>,
    /// The connection's place in the connection limits, held until the session
    /// ends.
    pub(crate) slot: limits::ConnSlot,
}

/// The connection of an upgraded peer (made before its WebSocket, which reports
/// to it), with its account in the node's memory budget.
pub(crate) fn new_connection(
    node: &Node,
    peer: SocketAddr,
    charge: crate::session::budget::Charge,
) -> Connection {
    Connection::new(node.node_id(), peer, node.config().max_queued_bytes, charge)
}

/// Creates the session of an upgraded connection: one task (the caller's) reads
/// `stream` and writes `write`.
pub(crate) fn open_session<R, W>(
    stream: FrameReader<R>,
    write: W,
    conn: Connection,
    slot: limits::ConnSlot,
    extensions: ::http::Extensions,
) -> OpenSession<R>
where
    R: crate::session::SessionRead + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    if !extensions.is_empty() {
        conn.set_extensions(extensions);
    }
    let outlet: Arc<dyn Outlet> = writer::Shared::new(write);
    // Deliveries from other tasks write through it while the session runs.
    conn.attach_outlet(&outlet);
    OpenSession {
        conn,
        stream,
        outlet,
        slot,
    }
}

/// What an upgraded connection runs: the protocol, or a raw handler.
#[derive(Clone)]
pub(crate) enum Service {
    Protocol(Arc<Dispatcher>),
    Raw(Arc<dyn ErasedRawHandler>),
}

impl Service {
    /// Whether the application's `on_connect` hooks run for this service.
    pub(crate) fn runs_hooks(&self) -> bool {
        matches!(self, Service::Protocol(_))
    }
}

/// How one service runs an opened session. The protocol and raw services are
/// kinds of their own, so each session's task is exactly its own size (a raw
/// session's reader also watches its handler's task, and is larger).
pub(crate) trait SessionKind: Send + 'static {
    /// The session's future, to run as the connection's task.
    fn run<R>(
        self,
        session: OpenSession<R>,
        shared: Arc<Shared>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        R: crate::session::SessionRead + Send + 'static;
}

/// The protocol service's sessions.
pub(crate) struct ProtocolSession(pub(crate) Arc<Dispatcher>);

impl SessionKind for ProtocolSession {
    fn run<R>(
        self,
        session: OpenSession<R>,
        shared: Arc<Shared>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        R: crate::session::SessionRead + Send + 'static,
    {
        protocol::serve(session, self.0, shared.shutdown.clone())
    }
}

/// A raw service's sessions.
pub(crate) struct RawSession(pub(crate) Arc<dyn ErasedRawHandler>);

impl SessionKind for RawSession {
    fn run<R>(
        self,
        session: OpenSession<R>,
        shared: Arc<Shared>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        R: crate::session::SessionRead + Send + 'static,
    {
        raw::serve(
            session,
            shared.node.clone(),
            self.0,
            shared.shutdown.clone(),
        )
    }
}
