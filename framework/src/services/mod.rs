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

/// A session whose writer runs, ready for its reader.
pub(crate) struct OpenSession<S> {
    pub(crate) conn: crate::session::Connection,
    pub(crate) stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    pub(crate) writer: tokio::task::JoinHandle<()>,
}

/// Creates the session of an upgraded connection and starts its writer.
fn open_session<S>(ws: WebSocketStream<S>, peer: SocketAddr, node: &Node) -> OpenSession<S>
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
    OpenSession {
        conn,
        stream,
        writer,
    }
}

/// What an upgraded connection runs: the protocol, or a raw handler.
#[derive(Clone)]
pub(crate) enum Service {
    Protocol(Arc<Dispatcher>),
    Raw(Arc<dyn ErasedRawHandler>),
}

impl Service {
    /// Opens the session at once (the WebSocket is split and its writer spawned
    /// here, synchronously) and returns the reader's future, which holds neither
    /// the WebSocket nor anything else of the handshake: an idle session's task
    /// stays small.
    pub(crate) fn serve<S>(
        &self,
        ws: WebSocketStream<S>,
        peer: SocketAddr,
        node: Node,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let session = open_session(ws, peer, &node);
        let service = self.clone();
        async move {
            match service {
                Service::Protocol(d) => protocol::serve(session, node, d, shutdown).await,
                Service::Raw(h) => raw::serve(session, node, h, shutdown).await,
            }
        }
    }
}
