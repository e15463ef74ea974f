//! The server the TypeScript client's tests (`clients/typescript`) run as a
//! process: the protocol on `run_websocket_service` and on `run_service` (`/ws`,
//! plus the HTTP API), both on 127.0.0.1:0, with channels configured for history,
//! presence and join/leave events, a few typed application opcodes, and JWT
//! authentication (HS256) when a secret is given.
//!
//! Environment:
//! - `TS_SERVER_JWT_SECRET`: the HS256 secret; unset, the server reads no token.
//! - `TS_SERVER_AUTH_REQUIRED=1`: refuse upgrades without a valid token.
//! - `TS_SERVER_API_KEY`: the server API's key (default `ts-test-key`).
//! - `TS_SERVER_CLUSTER_URL`: join the cluster of nodes sharing this engine
//!   (`redis://…` or `nats://…`), with heartbeats fast enough for a test to see a
//!   stopped node gone within about a second; histories and presence then live in
//!   the engine. Unset, the node runs alone, in memory.
//! - `TS_SERVER_CLUSTER_PREFIX`: the cluster's prefix in the engine (default
//!   `framework`), so the tests' clusters never meet.
//! - `TS_SERVER_TLS=1`: serve TLS (`wss://`, `https://`) with a certificate for
//!   `127.0.0.1` made at start by a CA of its own, whose PEM file it names.
//!
//! Once it serves, it prints one line on stdout and flushes it:
//!
//! ```text
//! TS_SERVER_READY {"websocket":"127.0.0.1:41001","service":"127.0.0.1:41002"}
//! TS_SERVER_READY {"websocket":"127.0.0.1:41001","service":"127.0.0.1:41002","ca":"/tmp/ts-server-tls-1/ca.pem"}
//! ```
//!
//! It stops when its standard input ends (so it never outlives the test that
//! started it with a pipe), or at SIGINT/SIGTERM. `--export-schema <file | ->`
//! writes the schema of its messages (as a `framework::main!` binary does) and exits.
//!
//! Channels (the first matching pattern decides):
//! - `chat:*`: history (100 kept, 10 min), presence, join/leave events;
//! - `short:*`: history of 3 (a recovery past them is `recovered = false`);
//! - `news:*`: history (10), and only the server publishes (`allow_publish = false`);
//! - anything else: protocol v1 channels.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use framework::config::{AuthConfig, ChannelOptions};
use framework::node::Identity;
use framework::prelude::*;

/// Opcode 200's request: text to repeat.
#[derive(framework::Message, Debug, Clone, PartialEq)]
pub struct EchoRequest {
    /// What to repeat.
    pub text: String,
    /// How many times (1..=100).
    pub times: u32,
}

/// Opcode 200's answer.
#[derive(framework::Message, Debug, Clone, PartialEq)]
pub struct EchoReply {
    /// `text`, `times` times.
    pub text: String,
    /// The caller's user (the token's `sub`); empty when anonymous.
    pub user_id: String,
    /// The caller's session.
    pub session_id: uuid::Uuid,
}

/// Opcode 200: repeats the text; `InvalidArgument` when `times` is out of range.
#[opcode(200)]
fn echo(
    conn: Connection,
    who: Option<Identity>,
    request: EchoRequest,
) -> Result<EchoReply, HandlerError> {
    if request.times == 0 || request.times > 100 {
        return Err(HandlerError::invalid_argument("times must be 1..=100"));
    }
    Ok(EchoReply {
        text: request.text.repeat(request.times as usize),
        user_id: who.map(|w| w.user_id().to_string()).unwrap_or_default(),
        session_id: conn.id(),
    })
}

/// Opcode 201: always `RateLimited`, retry after 1500 ms.
#[opcode(201)]
fn slow_down() -> Result<(), HandlerError> {
    Err(HandlerError::rate_limited(1500))
}

/// Opcode 202: sets the connection's `info` (shown in presence and `Join`) to the
/// payload, e.g. a display name. Answers with no payload.
#[opcode(202)]
fn set_info(conn: Connection, Body(info): Body) {
    conn.set_info(info);
}

/// Opcode 203: closes the caller's connection with 4000 "kicked" (the tests'
/// way to drop a connection from the server's side).
#[opcode(203)]
fn kick(conn: Connection) {
    conn.close(4000, "kicked");
}

fn usage() -> &'static str {
    "usage: ts-server [--export-schema <file.fbs | ->]\n\
     environment: TS_SERVER_JWT_SECRET, TS_SERVER_AUTH_REQUIRED=1, TS_SERVER_API_KEY,\n\
     TS_SERVER_CLUSTER_URL, TS_SERVER_CLUSTER_PREFIX, TS_SERVER_TLS=1"
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => {}
        ["--export-schema", target] => return framework::registry::write_schema(target),
        [arg] if arg.starts_with("--export-schema=") => {
            return framework::registry::write_schema(&arg["--export-schema=".len()..]);
        }
        ["--help" | "-h"] => {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("error: bad arguments {args:?}\n{}", usage());
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn app() -> App {
    let mut config = Config {
        api_key: Some(std::env::var("TS_SERVER_API_KEY").unwrap_or_else(|_| "ts-test-key".into())),
        // Stop at once when the test is done (no health-check grace period).
        drain_grace: Duration::ZERO,
        shutdown_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    if let Ok(secret) = std::env::var("TS_SERVER_JWT_SECRET") {
        let mut auth = AuthConfig::hs256(secret);
        auth.required = std::env::var("TS_SERVER_AUTH_REQUIRED").is_ok_and(|v| v == "1");
        config.auth = Some(auth);
    }
    if let Ok(url) = std::env::var("TS_SERVER_CLUSTER_URL") {
        config.cluster = Some(framework::config::ClusterConfig {
            prefix: std::env::var("TS_SERVER_CLUSTER_PREFIX")
                .unwrap_or_else(|_| "framework".into()),
            heartbeat_interval: Duration::from_millis(200),
            heartbeat_timeout: Duration::from_secs(1),
            timeout: Duration::from_millis(1500),
            ..framework::config::ClusterConfig::new(url)
        });
    }
    let ten_minutes = Duration::from_secs(600);
    let localhost = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    App::new()
        .with_registered()
        .config(config)
        .channel_options(
            ChannelOptions::new("chat:*")
                .history(100, ten_minutes)
                .presence(true)
                .join_leave(true),
        )
        .channel_options(ChannelOptions::new("short:*").history(3, ten_minutes))
        .channel_options(
            ChannelOptions::new("news:*")
                .history(10, ten_minutes)
                .allow_publish(false),
        )
        .run_websocket_service(localhost)
        .run_service(localhost)
}

async fn serve() -> Result<(), framework::app::AppError> {
    // With TLS: a CA, and a certificate it signs, in a directory removed at exit.
    let tls = std::env::var("TS_SERVER_TLS")
        .is_ok_and(|v| v == "1")
        .then(|| {
            let dir = framework_tests::tools::TempDir::new(&std::env::temp_dir(), "ts-server-tls");
            let ca = framework_tests::tls::TestCa::new("ts-server CA");
            let config = ca.write_server_files(&dir.0);
            let ca_file = ca.write_pem(&dir.0, "ca.pem");
            (dir, config, ca_file)
        });
    let app = match &tls {
        Some((_, config, _)) => app().tls(config.clone()),
        None => app(),
    };
    let handle = app.start().await?;
    {
        let ca = match &tls {
            Some((_, _, ca_file)) => format!(",\"ca\":{:?}", ca_file.display().to_string()),
            None => String::new(),
        };
        let mut out = std::io::stdout().lock();
        // A failed write means nobody reads the address: the test is gone.
        let _ = writeln!(
            out,
            "TS_SERVER_READY {{\"websocket\":\"{}\",\"service\":\"{}\"{ca}}}",
            handle.websocket_addr(),
            handle.service_addr()
        );
        let _ = out.flush();
    }
    // The end of standard input (the test closed its pipe, or exited).
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            if line.is_err() {
                break;
            }
        }
        let _ = eof_tx.send(());
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(framework::app::AppError::Signal)?;
    tokio::select! {
        _ = eof_rx => {}
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    handle.shutdown().await;
    Ok(())
}
