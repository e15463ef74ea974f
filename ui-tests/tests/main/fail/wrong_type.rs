//! A port of the wrong type: rustc points at the value.

framework::main!(websocket = "8081");
