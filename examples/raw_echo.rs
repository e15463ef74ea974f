//! The guide's raw WebSocket example: every message is echoed back, on port 8082
//! (`PORT` overrides). Text comes back as text, binary as binary.

use framework::raw::{RawConnection, RawMessage};
use framework::App;

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logging();
    let config = framework::Config {
        // Autobahn's limits cases send up to 16 MiB messages.
        max_message_size: 64 * 1024 * 1024,
        max_queued_bytes: 128 * 1024 * 1024,
        ..framework::Config::default()
    };
    App::new()
        .config(config)
        .run_raw_websocket_service(examples::port_or(8082), echo)
        .run()
        .await?;
    Ok(())
}
