#![doc = include_str!("../../README.md")]

pub mod app;
pub mod broker;
pub mod builtins;
pub mod cluster;
pub mod config;
pub mod dispatch;
pub mod helpers;
pub mod hub;
pub mod message;
pub mod node;
pub mod protocol;
pub mod raw;
pub mod registry;
pub mod session;
pub mod testing;

mod services;

#[cfg(feature = "client")]
pub mod client;

pub use app::{App, AppHandle};
/// The axum version `run_service` merges routes from (`App::router`).
pub use axum;
/// The byte buffers frames and payloads are (`Body`, `Reply::payload`).
pub use bytes;
pub use config::Config;
pub use dispatch::{HandlerError, IntoReply, Reply, Request};
#[doc = include_str!("../docs/authorize.md")]
pub use framework_macros::authorize;
#[doc = include_str!("../docs/main.md")]
pub use framework_macros::main;
#[doc = include_str!("../docs/on_connect.md")]
pub use framework_macros::on_connect;
#[doc = include_str!("../docs/on_disconnect.md")]
pub use framework_macros::on_disconnect;
#[doc = include_str!("../docs/opcode.md")]
pub use framework_macros::opcode;
#[doc = include_str!("../docs/override_opcode.md")]
pub use framework_macros::override_opcode;
#[doc = include_str!("../docs/raw_ws.md")]
pub use framework_macros::raw_ws;
#[doc = include_str!("../docs/message.md")]
pub use framework_macros::Message;
/// The HTTP types hooks and routes use (`HeaderMap`, `Uri`, `StatusCode`), so an
/// application needs no `http` dependency of its own.
pub use http;
pub use message::Message;
pub use services::http::SERVER_EMITTER;
pub use session::Connection;

/// Used by the macros' generated code; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::app::{listen_addr, run_main};
    pub use crate::dispatch::authorize::{authorizer, BoxedAuthorizer};
    pub use crate::dispatch::handler_typed as typed;
    pub use crate::dispatch::hooks::{
        connect_hook, disconnect_hook, BoxedConnectHook, BoxedDisconnectHook,
    };
    pub use crate::dispatch::{BoxedHandler, FromRequest};
    pub use crate::message::{DecodeError, Field, Schema, TableRef};
    pub use crate::raw::BoxedRawHandler;
    pub use crate::registry::{Kind, Registration};
    pub use flatbuffers;
    pub use inventory;

    /// For the fuzz targets (`fuzz/`) and the test that replays their corpus; not a
    /// public API.
    pub mod fuzz {
        use crate::services::admission;

        /// A refused upgrade: the status, the body's text, the extra headers.
        pub type Refused = (
            http::StatusCode,
            String,
            Vec<(http::HeaderName, http::HeaderValue)>,
        );

        /// The admission policy a protocol listener of `node`'s app would run on an
        /// upgrade request (handshake headers, Origin, draining, token, `on_connect`
        /// hooks), without a listener; connection slots are not involved.
        pub struct Admission(admission::Admission);

        impl Admission {
            /// The policy of `node`'s app.
            pub fn new(node: &crate::testing::TestNode) -> Admission {
                let draining = tokio_util::sync::CancellationToken::new();
                let hooks = node.dispatcher().hooks().clone();
                Admission(admission::Admission::new(
                    node.node().clone(),
                    draining,
                    hooks,
                ))
            }

            /// Admits `parts` from `peer`: the `Sec-WebSocket-Key` and what the
            /// connection would be opened with, or the refusal.
            pub async fn admit(
                &self,
                parts: http::request::Parts,
                peer: std::net::SocketAddr,
            ) -> Result<(http::HeaderValue, http::Extensions), Refused> {
                match self.0.admit(parts, peer, true).await {
                    Ok(a) => Ok((a.key, a.extensions)),
                    Err(r) => Err((r.status, r.message, r.headers)),
                }
            }
        }
    }
}

/// Re-exports for the common case: `use framework::prelude::*;`.
pub mod prelude {
    pub use crate::dispatch::hooks::Refusal;
    pub use crate::dispatch::{
        Body, Claims, Extension, HandlerError, IntoReply, Reply, Request, State, Trace,
    };
    pub use crate::node::Identity;
    pub use crate::protocol::{ErrorCode, Opcode};
    pub use crate::raw::{RawConnection, RawMessage};
    pub use crate::session::Connection;
    pub use crate::{
        authorize, main, on_connect, on_disconnect, opcode, override_opcode, raw_ws, Message,
    };
    pub use crate::{helpers, App, AppHandle, Config};
}
