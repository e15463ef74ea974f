//! `id` without its value and `deprecated` with one.
//!
//! The snapshot beside this case was written by hand with the messages the other
//! macros give for the same mistakes (`known_keys` in check.rs): the derive
//! currently answers "unknown key `id` ...; valid keys: id, deprecated", which
//! contradicts itself.

#[derive(framework::Message)]
struct Fields {
    #[fbs(id)]
    a: u32,
    #[fbs(deprecated = true)]
    b: u32,
}

fn main() {}
