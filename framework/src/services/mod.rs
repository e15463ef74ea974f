//! Layer 6: the services that accept connections and run sessions.

pub(crate) mod http;
pub(crate) mod limits;
pub(crate) mod listener;
pub(crate) mod metrics;
pub(crate) mod protocol;
pub(crate) mod raw;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Dispatcher;
use crate::node::Node;
use crate::raw::ErasedRawHandler;

/// Creates the session of an upgraded connection and starts its writer; returns
/// the connection handle, the reading half, and the writer task.
pub(crate) fn open_session<S>(
    ws: WebSocketStream<S>,
    peer: SocketAddr,
    node: &Node,
) -> (
    crate::session::Connection,
    futures_util::stream::SplitStream<WebSocketStream<S>>,
    tokio::task::JoinHandle<()>,
)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use futures_util::StreamExt;
    let config = node.config();
    let conn = crate::session::Connection::new(
        node.node_id(),
        peer,
        config.max_queued_bytes,
        node.metrics().slow_consumer_closes.clone(),
    );
    let (sink, stream) = ws.split();
    let writer = tokio::spawn(crate::session::writer::run(
        sink,
        conn.clone(),
        config.max_batch_frames,
    ));
    (conn, stream, writer)
}

/// What an upgraded connection runs: the protocol, or a raw handler.
#[derive(Clone)]
pub(crate) enum Service {
    Protocol(Arc<Dispatcher>),
    Raw(Arc<dyn ErasedRawHandler>),
}

impl Service {
    pub(crate) async fn serve<S>(
        &self,
        ws: WebSocketStream<S>,
        peer: SocketAddr,
        node: Node,
        shutdown: CancellationToken,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match self {
            Service::Protocol(d) => protocol::serve(ws, peer, node, d.clone(), shutdown).await,
            Service::Raw(h) => raw::serve(ws, peer, node, h.clone(), shutdown).await,
        }
    }
}
