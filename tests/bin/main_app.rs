//! A `framework::main!` application as a user writes it, run as a process by
//! `tests/main_binary.rs`: the command line, the configuration layers and schema
//! export, end to end.

use framework::prelude::*;

/// What opcode 200 answers.
#[derive(framework::Message)]
struct Greeting {
    text: String,
}

/// The greeting, from the shared state.
struct Words(&'static str);

#[opcode(200)]
fn greet(State(words): State<Words>) -> Greeting {
    Greeting {
        text: words.0.to_string(),
    }
}

framework::main!(websocket = "127.0.0.1:0", state = Words("hello from main!"));
