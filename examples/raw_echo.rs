//! The guide's raw WebSocket example, in macro form: every message is echoed back,
//! on port 8082 (`FRAMEWORK_RAW_8082` overrides). Text comes back as text, binary as binary.
//!
//! Without the macros this is `App::new().run_raw_websocket_service(8082, echo).run()`.

use framework::prelude::*;

#[raw_ws(port = 8082)]
fn echo(conn: RawConnection) {
    tracing::info!(id = %conn.id(), peer = %conn.remote_endpoint(), "client connected");
    conn.on_data(|conn, data| {
        let sent = match data {
            RawMessage::Text(text) => conn.send_text(text.as_str()),
            RawMessage::Binary(bytes) => conn.send(bytes),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "echo not queued");
        }
    });
    conn.on_close(|conn| tracing::info!(id = %conn.id(), "client disconnected"));
}

framework::main!(
    config = framework::Config {
        // Autobahn's limits cases send messages of up to 16 MiB.
        max_message_size: 64 * 1024 * 1024,
        max_queued_bytes: 128 * 1024 * 1024,
        ..framework::Config::default()
    }
);
