//! Layer 3: dispatch. The opcode → handler table is built once at start-up;
//! a [`Request`] carries everything a handler may use; its return value becomes
//! the reply frame.

mod extract;
mod handler;
mod reply;
mod request;

use std::collections::HashMap;

pub use extract::{
    is_message, Body, FromRequest, State, Trace, TransactionId, ViaMessage, ViaParts, ViaTable,
};
pub use handler::{AsyncHandler, BoxedHandler, Handler, SyncHandler};
pub(crate) use reply::ReplyMeta;
pub use reply::{HandlerError, IntoReply, Reply};
pub use request::{QuotaResult, Request};

use crate::protocol::FIRST_APPLICATION_OPCODE;

/// The opcode → handler table of a running app. Built-ins live in a dense array,
/// application opcodes in a map.
#[derive(Clone, Default)]
pub(crate) struct Dispatcher {
    builtins: Vec<Option<BoxedHandler>>,
    custom: HashMap<u16, BoxedHandler>,
}

impl Dispatcher {
    pub(crate) fn new() -> Self {
        Self {
            builtins: vec![None; FIRST_APPLICATION_OPCODE as usize],
            custom: HashMap::new(),
        }
    }

    pub(crate) fn insert(&mut self, opcode: u16, handler: BoxedHandler) {
        if opcode < FIRST_APPLICATION_OPCODE {
            self.builtins[opcode as usize] = Some(handler);
        } else {
            self.custom.insert(opcode, handler);
        }
    }

    pub(crate) fn get(&self, opcode: u16) -> Option<&BoxedHandler> {
        if opcode < FIRST_APPLICATION_OPCODE {
            self.builtins[opcode as usize].as_ref()
        } else {
            self.custom.get(&opcode)
        }
    }
}
