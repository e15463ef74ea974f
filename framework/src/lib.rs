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
pub mod storage;
pub mod testing;

mod services;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "otel")]
pub mod otel;

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
/// The rustls version the TLS of the services and of the client is made with
/// (`ClientBuilder::tls_config` takes its `ClientConfig`).
pub use rustls;
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
                    // An HTTP/1 request (as the fuzzers parse) always has its key.
                    Ok(a) => Ok((
                        a.key.unwrap_or(http::HeaderValue::from_static("")),
                        a.extensions,
                    )),
                    Err(r) => Err((r.status, r.message, r.headers)),
                }
            }
        }

        /// How far the frame reader reads past a large frame; a message's buffer
        /// is its size (then growth by at most a quarter) and this much more, all
        /// of it counted in the memory budget.
        pub const READ_PAST: usize = crate::session::frames::READ_PAST;

        /// What the session's WebSocket frame reader made of a byte stream.
        #[derive(Debug)]
        pub struct FramesRead {
            /// Every message and control frame read, in order.
            pub messages: Vec<tokio_tungstenite::tungstenite::Message>,
            /// The close code the session would end with (`None`: the stream just
            /// ended, or the memory budget refused a frame).
            pub close: Option<u16>,
            /// Whether the memory budget refused a frame.
            pub over_budget: bool,
            /// Bytes still counted in the memory budget once the reader is gone
            /// (must be 0).
            pub held_after: usize,
            /// The most the budget counted at once.
            pub held_peak: usize,
        }

        /// Runs the session's WebSocket frame reader (`session::frames`) over
        /// `bytes`, delivered in pieces of the sizes in `pieces` (cycled; empty:
        /// all at once), with `max_message` as `max_message_size`, `read_size` as
        /// `read_buffer_size` and `budget` bytes of memory budget, until the stream
        /// ends or fails.
        pub fn read_ws_frames(
            bytes: &[u8],
            pieces: &[usize],
            max_message: usize,
            read_size: usize,
            budget: usize,
        ) -> FramesRead {
            use crate::session::budget::{Charge, MemoryBudget};
            use tokio::io::AsyncWriteExt;
            thread_local! {
                static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
            }
            let budget = MemoryBudget::standalone(budget, budget);
            let conn = crate::Connection::new(
                uuid::Uuid::nil(),
                std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
                1 << 20,
                Charge::new(budget.clone(), Default::default()),
            );
            let (reader_end, mut writer_end) = tokio::io::duplex(64 * 1024);
            let bytes = bytes.to_vec();
            let pieces = if pieces.is_empty() {
                vec![usize::MAX]
            } else {
                pieces.to_vec()
            };
            let mut read = RUNTIME.with(|rt| {
                rt.block_on(async {
                    let writer = tokio::spawn(async move {
                        let mut rest = &bytes[..];
                        for size in pieces.iter().cycle() {
                            if rest.is_empty() {
                                break;
                            }
                            let n = (*size).clamp(1, rest.len());
                            if writer_end.write_all(&rest[..n]).await.is_err() {
                                break;
                            }
                            rest = &rest[n..];
                            // Each piece a read of its own: the reader runs before
                            // the next is written (else up to 128 pieces, tokio's
                            // cooperative budget, would arrive as one).
                            tokio::task::yield_now().await;
                        }
                    });
                    let mut reader = crate::session::FrameReader::new(
                        reader_end,
                        b"",
                        conn,
                        read_size,
                        max_message,
                    );
                    let mut out = FramesRead {
                        messages: Vec::new(),
                        close: None,
                        over_budget: false,
                        held_after: 0,
                        held_peak: 0,
                    };
                    loop {
                        match reader.next().await {
                            Ok(m) => out.messages.push(m),
                            Err(e) => {
                                out.close = e.close().map(|(code, _)| code);
                                out.over_budget =
                                    matches!(e, crate::session::frames::ReadError::Budget(_));
                                break;
                            }
                        }
                        out.held_peak = out.held_peak.max(budget.held());
                    }
                    out.held_peak = out.held_peak.max(budget.held());
                    writer.abort();
                    drop(reader);
                    out
                })
            });
            read.held_after = budget.held();
            read
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
