//! An unknown key: the error lists the valid ones.

framework::main!(websocket = 8081, port = 8080);
