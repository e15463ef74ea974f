//! Layer 6: the services that accept connections and run sessions.

pub(crate) mod limits;
pub(crate) mod listener;
pub(crate) mod protocol;
