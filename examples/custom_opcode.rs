//! The guide's custom handler: application opcode 200 answered with
//! `helpers::make_empty_response`, on port 8081 (`PORT` overrides).

use framework::{helpers, App, Reply, Request};

fn on_200(mut ctx: Request) -> Reply {
    // ctx.message() is the parsed frame, ctx.body() its payload,
    // ctx.connection() the sender.
    tracing::info!(
        session = %ctx.connection().id(),
        bytes = ctx.body().len(),
        trace = %ctx.trace_id(),
        "opcode 200"
    );
    helpers::make_empty_response(&mut ctx, 200)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    examples::init_logging();
    App::new()
        .run_websocket_service(examples::port_or(8081))
        .register_custom_handler(200, on_200)
        .run()
        .await?;
    Ok(())
}
