//! `fw`, the command-line client of the framework's protocol, as a library: the
//! command line and its commands ([`cli`]), JSON for payloads through a schema
//! ([`schema`]), and the JSON lines that frames print as ([`render`]).

pub mod cli;
pub mod json;
pub mod render;
pub mod schema;
