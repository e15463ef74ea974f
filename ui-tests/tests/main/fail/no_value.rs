//! A key without a value.

framework::main!(websocket);
