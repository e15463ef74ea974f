//! The guide's `run_service(8080)`: HTTP and the protocol WebSocket on one port
//! (`FRAMEWORK_SERVICE` overrides). Try `curl localhost:8080/healthz`, `curl localhost:8080/metrics`,
//! `curl localhost:8080/hello`, and connect a protocol client to `ws://localhost:8080/ws`.
//! With `FRAMEWORK_API_KEY` set, the server API is on:
//! `curl -H "Authorization: Bearer $FRAMEWORK_API_KEY" -d '{"channel":"news","payload":"aGk="}' localhost:8080/api/publish`.

use axum::routing::get;
use framework::App;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logging();
    let routes = axum::Router::new().route(
        "/hello",
        get(|| async { "hello from the app's own route\n" }),
    );
    App::new()
        .router(routes)
        .run_service(8080)
        .configure(framework::config::Settings::file_from_env().as_deref())?
        .run()
        .await?;
    Ok(())
}
