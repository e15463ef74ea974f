//! The guide's first program: the protocol WebSocket service on port 8081
//! (`FRAMEWORK_WEBSOCKET` overrides). Clients subscribe, publish, send and broadcast.
//!
//! Without the macro this is `App::new().run_websocket_service(8081).run().await`.

framework::main!(websocket = 8081);
