//! Layer 2: sessions. One reader and one writer task per connection, sharing a
//! byte-bounded queue of pre-encoded frames. The reader writes what its own
//! messages queued before it waits for the next (when the socket takes it at
//! once); the writer task drains everything else (deliveries from other
//! sessions, what a blocked socket did not take) in batches of few syscalls.

pub(crate) mod budget;
mod connection;
pub(crate) mod frames;
mod metrics;
mod reader;
pub(crate) mod writer;

pub(crate) use connection::Outbound;
pub use connection::{close_code, Connection, SendError};
pub(crate) use frames::FrameReader;
pub use metrics::{opcode_slot, opcode_slot_label, OpcodeCounters, SessionMetrics, OPCODE_SLOTS};
pub(crate) use reader::{finish, next_message, reader_waits, Keepalive, Next, Waits};
