//! The guide's first program: the protocol WebSocket service on port 8081
//! (`PORT` overrides). Clients subscribe, publish, send and broadcast.

use framework::App;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logging();
    App::new()
        .run_websocket_service(examples::port_or(8081))
        .run()
        .await?;
    Ok(())
}
