#![doc = include_str!("../README.md")]

pub mod app;
pub mod broker;
pub mod builtins;
pub mod config;
pub mod dispatch;
pub mod helpers;
pub mod hub;
pub mod node;
pub mod protocol;
pub mod raw;
pub mod session;

mod services;

#[cfg(feature = "client")]
pub mod client;

pub use app::{App, AppHandle};
pub use config::Config;
pub use dispatch::{HandlerError, IntoReply, Reply, Request};
pub use session::Connection;

/// Re-exports for the common case: `use framework::prelude::*;`.
pub mod prelude {
    pub use crate::dispatch::{HandlerError, IntoReply, Reply, Request};
    pub use crate::protocol::{ErrorCode, Opcode};
    pub use crate::session::Connection;
    pub use crate::{helpers, App, AppHandle, Config};
}
