//! An in-process node for testing handlers and benchmarking dispatch without
//! sockets: frames go through the real decode → dispatch → reply path.
//!
//! ```
//! use framework::{testing::TestNode, App, Request};
//! use framework::protocol::{Frame, DecodeLimits, FrameFields};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let node = TestNode::new(App::new().register_custom_handler(200, |ctx: Request| ctx.body().to_vec()))
//!     .await
//!     .unwrap();
//! let replies = node.dispatch(FrameFields::new(200).payload(b"hi").encode()).await;
//! let reply = Frame::decode(replies[0].clone(), &DecodeLimits::default()).unwrap();
//! assert_eq!(&reply.payload()[..], b"hi");
//! # });
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::app::{App, AppError};
use crate::dispatch::Dispatcher;
use crate::node::Node;
use crate::session::{Connection, Outbound};

/// A node with one in-process session and no listener.
pub struct TestNode {
    dispatcher: Arc<Dispatcher>,
    conn: Connection,
}

impl std::fmt::Debug for TestNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNode")
            .field("session", &self.conn.id())
            .finish()
    }
}

impl TestNode {
    /// Assembles `app`'s node and handlers (its listeners are ignored) with one
    /// session registered in the hub. `on_connect` hooks do not run (there is no
    /// upgrade request): attach what they would with
    /// [`Connection::insert_extension`].
    pub async fn new(mut app: App) -> Result<TestNode, AppError> {
        let dispatcher = app.assemble().await?;
        let node = dispatcher.node();
        let peer: SocketAddr = ([127, 0, 0, 1], 0).into();
        let conn = Connection::new(
            node.node_id(),
            peer,
            node.config().max_queued_bytes,
            crate::session::budget::Charge::unlimited_counting(
                node.metrics().slow_consumer_closes.clone(),
            ),
        );
        node.session_opened(&conn).await.map_err(AppError::Broker)?;
        Ok(TestNode { dispatcher, conn })
    }

    /// The node (hub, broker, metrics).
    pub fn node(&self) -> &Node {
        self.dispatcher.node()
    }

    /// The node's request pipeline, the one the services use.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// The in-process session.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Handles one incoming message as the session would, and returns every frame
    /// queued to the session meanwhile (deliveries, then the reply), in order.
    pub async fn dispatch(&self, frame: Bytes) -> Vec<Bytes> {
        if let Some(reply) = self.dispatcher.dispatch(&self.conn, frame).await {
            let _ = self.conn.send(reply);
        }
        self.take_queued()
    }
    /// Frames queued to the session and not yet taken.
    pub fn take_queued(&self) -> Vec<Bytes> {
        let mut out = Vec::new();
        for item in self.conn.0.outbox.take() {
            match item {
                Outbound::Binary(b) => {
                    self.conn.dequeued(b.len(), b.len());
                    out.push(b);
                }
                Outbound::Shared(b) => {
                    self.conn.dequeued(b.len(), 0);
                    out.push(b);
                }
                _ => {}
            }
        }
        out
    }
}
