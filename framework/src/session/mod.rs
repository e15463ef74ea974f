//! Layer 2: sessions. One reader and one writer task per connection; the writer
//! drains a byte-bounded queue of pre-encoded frames and batches them into few
//! syscalls.

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
