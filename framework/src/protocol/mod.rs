//! Layer 1: the wire protocol (the contract: `docs/protocol.md` in the repository).
//!
//! [`fbs`] is the code flatc generates from `schemas/protocol.fbs`; [`Frame`] is a
//! verified incoming frame and [`FrameFields`] encodes outgoing ones.

#[allow(
    unsafe_code,
    missing_docs,
    unused_imports,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    deprecated,
    clippy::all,
    clippy::pedantic,
    rust_2018_idioms
)]
#[path = "generated/protocol_generated.rs"]
#[rustfmt::skip] // flatc's output, byte for byte (checked by scripts/gen-protocol.sh)
mod generated;

mod encode;
mod frame;

pub(crate) use encode::finish;
pub use encode::FrameFields;
pub(crate) use encode::{reply_frame, reply_frame_with};
pub(crate) use frame::Head;
pub use frame::{DecodeLimits, Frame, FrameError};
/// The flatc-generated protocol types (`Message`, `Opcode`, `ErrorCode`, `Uuid`).
///
/// ```
/// use framework::protocol::fbs::Opcode;
/// assert_eq!(Opcode::Ping.0, 2);
/// ```
pub use generated::framework::protocol::fbs;
pub use generated::framework::protocol::fbs::{ErrorCode, Opcode};

/// The file identifier every protocol frame is finished with.
pub const FILE_IDENTIFIER: &str = "FWK1";

/// The first opcode value available to applications; lower values are reserved.
pub const FIRST_APPLICATION_OPCODE: u16 = 200;

/// An opcode given either as its raw value or as the generated enum.
///
/// ```
/// use framework::protocol::{IntoOpcode, Opcode};
/// assert_eq!(200.into_opcode(), 200);
/// assert_eq!(Opcode::Pong.into_opcode(), 3);
/// ```
pub trait IntoOpcode {
    /// The raw opcode value.
    fn into_opcode(self) -> u16;
}

impl IntoOpcode for u16 {
    fn into_opcode(self) -> u16 {
        self
    }
}

impl IntoOpcode for Opcode {
    fn into_opcode(self) -> u16 {
        self.0
    }
}

pub(crate) fn to_fbs_uuid(id: &uuid::Uuid) -> fbs::Uuid {
    fbs::Uuid::new(id.as_bytes())
}

pub(crate) fn from_fbs_uuid(id: &fbs::Uuid) -> uuid::Uuid {
    uuid::Uuid::from_bytes(id.bytes().into())
}
