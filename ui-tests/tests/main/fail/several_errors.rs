//! Every error of one invocation is reported at once.

framework::main!(websocket = 1, websocket = 2, host = "0.0.0.0", service);
