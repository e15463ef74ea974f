//! The guide's `run_service(8080)`: HTTP and the protocol WebSocket on one port
//! (`PORT` overrides). Try `curl localhost:8080/healthz`, `curl localhost:8080/metrics`,
//! `curl localhost:8080/hello`, and connect a protocol client to `ws://localhost:8080/ws`.
//! With `API_KEY` set, the server API is on:
//! `curl -H "Authorization: Bearer $API_KEY" -d '{"channel":"news","payload":"aGk="}' localhost:8080/api/publish`.

use axum::routing::get;
use framework::App;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logging();
    let config = framework::Config {
        api_key: std::env::var("API_KEY").ok(),
        ..framework::Config::default()
    };
    let routes = axum::Router::new().route(
        "/hello",
        get(|| async { "hello from the app's own route\n" }),
    );
    App::new()
        .config(config)
        .router(routes)
        .run_service(examples::port_or(8080))
        .run()
        .await?;
    Ok(())
}
