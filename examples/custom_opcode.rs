//! The guide's custom handler, in macro form: application opcode 200 answered with
//! `helpers::make_empty_response`, protocol WebSocket on port 8081 (`FRAMEWORK_WEBSOCKET` overrides).
//!
//! Without the macros this is
//! `App::new().run_websocket_service(8081).register_custom_handler(200, on_200).run()`.

use framework::prelude::*;

#[opcode(200)]
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

framework::main!(websocket = 8081);
