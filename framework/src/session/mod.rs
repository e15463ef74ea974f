//! Layer 2: sessions. One task per connection reads its frames and writes its
//! byte-bounded queue of pre-encoded frames. What its own messages queued is
//! written before it waits for the next (when the socket takes it at once);
//! what other sessions queue for it (deliveries) is written by the fan-out's
//! tasks when the socket is free, or else wakes it while it waits; either way
//! in batches of few syscalls.

pub(crate) mod budget;
mod connection;
pub(crate) mod frames;
mod metrics;
mod queue;
mod reader;
pub(crate) mod writer;

pub(crate) use connection::Outbound;
pub use connection::{close_code, Connection, SendError};
pub(crate) use frames::{FrameReader, SessionRead};
pub use metrics::{opcode_slot, opcode_slot_label, OpcodeCounters, SessionMetrics, OPCODE_SLOTS};
pub(crate) use queue::Queue;
pub(crate) use reader::{finish, next_message, reader_waits, Keepalive, Next, Waits};
