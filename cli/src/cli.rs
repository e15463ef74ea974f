//! The command line of `fw` and its commands.
//!
//! Every frame received prints as one JSON line on standard output
//! ([`render`]); status lines (`fw: subscribed to news`) and errors
//! go to standard error. See [`EXIT_CODES`] for how `fw` exits.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use clap::{Args, Parser, Subcommand};
use framework::client::{Client, ClientError, ConnectionEvent, ReconnectPolicy};
use framework::protocol::{ErrorCode, Frame, FrameFields, Opcode};
use uuid::Uuid;

use crate::json::Json;
use crate::render::{self, PayloadType};
use crate::schema::Schema;

/// The exit codes, as `fw --help` lists them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0    success (also: --count frames printed, or standard output closed)
  1    the server answered with an Error frame (its code and message on stderr)
  2    usage: a bad command line, payload, schema or type
  3    cannot connect (refused, unreachable, upgrade refused), or the connection
       was lost
  4    timeout: no connection or no answer within --timeout
  130  interrupted (Ctrl-C)";

/// `fw`: a command-line client of the protocol. Every frame received prints as a
/// JSON line on standard output.
#[derive(Debug, Parser)]
#[command(
    name = "fw",
    version,
    about = "A command-line client of the framework's WebSocket protocol: every frame \
             received prints as a JSON line.",
    after_help = EXIT_CODES,
    args_override_self = true
)]
pub struct Cli {
    /// The server's WebSocket URL.
    #[arg(
        long,
        global = true,
        env = "FW_URL",
        default_value = "ws://127.0.0.1:8081/"
    )]
    pub url: String,

    /// A token (JWT), sent as `Authorization: Bearer` with the upgrade.
    #[arg(long, global = true, env = "FW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// For a `wss://` URL: check the server against the CA certificates in this
    /// PEM file instead of the system's roots (a private CA).
    #[arg(long, global = true, env = "FW_CA", value_name = "PEM")]
    pub ca: Option<PathBuf>,

    /// How long to wait for the connection and for each answer (`10s`, `500ms`,
    /// or a number of seconds).
    #[arg(long, global = true, env = "FW_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// A FlatBuffers schema for payloads: `.fbs` (compiled with flatc) or `.bfbs`.
    /// With it, payloads given are JSON, encoded into the table named by --type;
    /// payloads received are decoded back to JSON.
    #[arg(long, global = true, env = "FW_SCHEMA")]
    pub schema: Option<PathBuf>,

    /// The flatc that compiles a `.fbs` schema (default: `flatc` on PATH).
    #[arg(long, global = true, env = "FW_FLATC")]
    pub flatc: Option<PathBuf>,

    /// No status lines on standard error (errors still print).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect, print the Welcome (session id, node id, user), then every frame
    /// addressed to this session (sends, broadcasts) until Ctrl-C or --count.
    Connect {
        /// Exit after printing this many frames after the Welcome (0: at once).
        #[arg(long)]
        count: Option<u64>,
        /// Reconnect by itself when the connection is lost.
        #[arg(long)]
        reconnect: bool,
        /// Decode payloads as this table of --schema (default: its root_type).
        #[arg(long = "type", value_name = "TABLE")]
        table: Option<String>,
    },
    /// Subscribe to channels and print every delivery until Ctrl-C or --count.
    Subscribe {
        /// The channels.
        #[arg(required = true)]
        channels: Vec<String>,
        /// Exit after printing this many frames.
        #[arg(long)]
        count: Option<u64>,
        /// Recover what was missed after EPOCH:OFFSET (from an earlier delivery's
        /// `epoch` and `offset`): missed publications print first. One channel.
        #[arg(long, value_name = "EPOCH:OFFSET", value_parser = parse_position)]
        recover: Option<(String, u64)>,
        /// Reconnect by itself when the connection is lost, resubscribing with
        /// recovery from the last publication received.
        #[arg(long)]
        reconnect: bool,
        /// Decode payloads as this table of --schema (default: its root_type).
        #[arg(long = "type", value_name = "TABLE")]
        table: Option<String>,
    },
    /// Publish a payload to a channel; prints the Ack (with the publication's
    /// offset and epoch on a channel with history).
    Publish {
        /// The channel.
        channel: String,
        /// The payload.
        #[command(flatten)]
        payload: PayloadArgs,
    },
    /// Send a payload to one session; prints the Ack.
    Send {
        /// The receiving session's id (what `fw connect` prints as `session_id`).
        session: Uuid,
        /// The payload.
        #[command(flatten)]
        payload: PayloadArgs,
    },
    /// Broadcast a payload to every session; prints the Ack.
    Broadcast {
        /// The payload.
        #[command(flatten)]
        payload: PayloadArgs,
    },
    /// Call an opcode (an application opcode, 200 and up, or a built-in by name)
    /// and print the reply.
    Call {
        /// The opcode: a number, or a built-in's name (`Ping`).
        #[arg(value_parser = parse_opcode)]
        opcode: u16,
        /// The request's payload.
        #[command(flatten)]
        payload: PayloadArgs,
        /// Decode the reply as this table of --schema (default: the schema's
        /// response type for the opcode, else its root_type).
        #[arg(long, value_name = "TABLE")]
        reply_type: Option<String>,
    },
    /// Print a channel's retained publications (a channel with history).
    History {
        /// The channel.
        channel: String,
        /// Only publications after this offset (0: from the oldest retained).
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// At most this many publications (0: the server's cap).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Decode payloads as this table of --schema (default: its root_type).
        #[arg(long = "type", value_name = "TABLE")]
        table: Option<String>,
    },
    /// Print who is subscribed to a channel (a channel with presence).
    Presence {
        /// The channel.
        channel: String,
    },
    /// Ping the server and print the round trip.
    Ping {
        /// How many pings, one a second.
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
}

/// A payload given on the command line.
#[derive(Debug, Args)]
pub struct PayloadArgs {
    /// The payload: text, or JSON with --schema; `-` reads standard input. None:
    /// an empty payload (`call`: no payload).
    pub payload: Option<String>,
    /// Read the payload from this file (`-`: standard input).
    #[arg(long, conflicts_with = "payload")]
    pub file: Option<PathBuf>,
    /// The payload is base64 (raw bytes; not with --schema).
    #[arg(long)]
    pub base64: bool,
    /// Encode the JSON payload as this table of --schema (default: the schema's
    /// request type for the opcode, else its root_type).
    #[arg(long = "type", value_name = "TABLE")]
    pub table: Option<String>,
}

/// Why a command failed, and so how `fw` exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Exit 1: the server answered with an `Error` frame.
    Server {
        /// The error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
        /// `retry_after_ms` (rate limits).
        retry_after_ms: u32,
    },
    /// Exit 2: the command line, a payload, a schema or a type is wrong.
    Usage(String),
    /// Exit 3: no connection, or it was lost.
    Connection(String),
    /// Exit 4: no connection or no answer in time.
    Timeout(String),
    /// Exit 130: Ctrl-C.
    Interrupted,
    /// Exit 0 without a word: standard output was closed (`fw subscribe | head`).
    OutputClosed,
    /// Exit 1: standard output cannot be written.
    Output(String),
}

impl Failure {
    /// The exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Server { .. } | Failure::Output(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Connection(_) => 3,
            Failure::Timeout(_) => 4,
            Failure::Interrupted => 130,
            Failure::OutputClosed => 0,
        }
    }

    /// What to print on standard error (`None`: nothing).
    pub fn message(&self) -> Option<String> {
        Some(match self {
            Failure::Server {
                code,
                message,
                retry_after_ms,
            } => {
                let mut text = format!(
                    "fw: server error {} ({}): {message}",
                    render::error_code_name(*code),
                    code.0
                );
                if *retry_after_ms != 0 {
                    text.push_str(&format!(" (retry after {retry_after_ms} ms)"));
                }
                text
            }
            Failure::Usage(m) => format!("fw: error: {m}"),
            Failure::Connection(m) | Failure::Timeout(m) | Failure::Output(m) => {
                format!("fw: {m}")
            }
            Failure::Interrupted | Failure::OutputClosed => return None,
        })
    }
}

/// Runs `fw` with the process's arguments; what `main` returns.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fw: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            result = run(&cli) => result,
            _ = tokio::signal::ctrl_c() => Err(Failure::Interrupted),
        }
    });
    // Connections close with the runtime; do not wait for their tasks.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message() {
                eprintln!("{message}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: &Cli) -> Result<(), Failure> {
    let schema = match &cli.schema {
        Some(path) => Some(
            Schema::load(path, cli.flatc.as_deref()).map_err(|e| Failure::Usage(e.to_string()))?,
        ),
        None => None,
    };
    match &cli.command {
        Command::Connect {
            count,
            reconnect,
            table,
        } => {
            let decode = decode_type(schema, table.as_deref(), None, true)?;
            let client = connect(cli, *reconnect).await?;
            let mut welcome = vec![
                ("opcode", Json::from("Welcome")),
                ("session_id", Json::from(client.session_id().to_string())),
                ("node_id", Json::from(client.node_id().to_string())),
            ];
            if !client.user_id().is_empty() {
                welcome.push(("user_id", Json::from(client.user_id())));
            }
            if client.expires_at_ms() != 0 {
                welcome.push(("expires_at_ms", Json::from(client.expires_at_ms())));
            }
            print_line(&Json::object(welcome))?;
            deliveries(&client, *count, decode.as_ref()).await
        }
        Command::Subscribe {
            channels,
            count,
            recover,
            reconnect,
            table,
        } => {
            if recover.is_some() && channels.len() != 1 {
                return Err(Failure::Usage(
                    "--recover takes one channel: an epoch and offset are a channel's".into(),
                ));
            }
            let decode = decode_type(schema, table.as_deref(), None, true)?;
            let client = connect(cli, *reconnect).await?;
            for channel in channels {
                match recover {
                    Some((epoch, offset)) => {
                        let recovery = client
                            .subscribe_recover(channel, epoch, *offset)
                            .await
                            .map_err(|e| client_failure(e, cli))?;
                        status(
                            cli,
                            &format!(
                                "recovered {channel}: {} (epoch {}, latest offset {})",
                                if recovery.recovered {
                                    "every missed publication"
                                } else {
                                    "no (publications may be missing)"
                                },
                                recovery.epoch,
                                recovery.offset
                            ),
                        );
                    }
                    None => client
                        .subscribe(channel)
                        .await
                        .map_err(|e| client_failure(e, cli))?,
                }
            }
            status(cli, &format!("subscribed to {}", channels.join(", ")));
            deliveries(&client, *count, decode.as_ref()).await
        }
        Command::Publish { channel, payload } => {
            let bytes = payload_bytes(payload, schema, None)?.unwrap_or_default();
            let fields = FrameFields::new(Opcode::Publish.0)
                .channel(channel)
                .payload(&bytes)
                .requires_ack(true);
            acked(cli, fields).await
        }
        Command::Send { session, payload } => {
            let bytes = payload_bytes(payload, schema, None)?.unwrap_or_default();
            let fields = FrameFields::new(Opcode::Send.0)
                .receiver_id(Some(*session))
                .payload(&bytes)
                .requires_ack(true);
            acked(cli, fields).await
        }
        Command::Broadcast { payload } => {
            let bytes = payload_bytes(payload, schema, None)?.unwrap_or_default();
            let fields = FrameFields::new(Opcode::Broadcast.0)
                .payload(&bytes)
                .requires_ack(true);
            acked(cli, fields).await
        }
        Command::Call {
            opcode,
            payload,
            reply_type,
        } => {
            let types = schema.and_then(|s| s.opcode_types(*opcode));
            let bytes = payload_bytes(payload, schema, types.map(|t| t.0))?;
            let decode = decode_type(schema, reply_type.as_deref(), types.map(|t| t.1), false)?;
            let client = connect(cli, false).await?;
            let mut fields = FrameFields::new(*opcode);
            if let Some(bytes) = &bytes {
                fields = fields.payload(bytes);
            }
            let reply = client
                .call(fields)
                .await
                .map_err(|e| client_failure(e, cli))?;
            print_line(&render::frame(&reply, decode.as_ref()))?;
            client.close();
            Ok(())
        }
        Command::History {
            channel,
            since,
            limit,
            table,
        } => {
            let decode = decode_type(schema, table.as_deref(), None, true)?;
            let client = connect(cli, false).await?;
            let page = client
                .history(channel, *since, *limit)
                .await
                .map_err(|e| client_failure(e, cli))?;
            print_line(&render::history(channel, &page, decode.as_ref()))?;
            client.close();
            Ok(())
        }
        Command::Presence { channel } => {
            let client = connect(cli, false).await?;
            let presence = client
                .presence(channel)
                .await
                .map_err(|e| client_failure(e, cli))?;
            print_line(&render::presence(channel, &presence))?;
            client.close();
            Ok(())
        }
        Command::Ping { count } => {
            let client = connect(cli, false).await?;
            for i in 0..*count {
                if i > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let rtt = client.ping().await.map_err(|e| client_failure(e, cli))?;
                print_line(&Json::object([
                    ("opcode", Json::from("Pong")),
                    ("rtt_ms", Json::float(rtt.as_secs_f64() * 1000.0)),
                ]))?;
            }
            client.close();
            Ok(())
        }
    }
}

/// Connects as the command line says.
async fn connect(cli: &Cli, reconnect: bool) -> Result<Client, Failure> {
    check_url(&cli.url)?;
    if let Some(token) = &cli.token {
        if token.is_empty() || token.chars().any(|c| !(' '..='~').contains(&c)) {
            return Err(Failure::Usage(
                "--token must be printable ASCII (a JWT)".into(),
            ));
        }
    }
    let mut builder = Client::builder(cli.url.as_str()).timeout(cli.timeout);
    if let Some(token) = &cli.token {
        builder = builder.token(token.as_str());
    }
    if reconnect {
        builder = builder.reconnect(ReconnectPolicy::default());
    }
    if let Some(ca) = &cli.ca {
        let pem = std::fs::read(ca)
            .map_err(|e| Failure::Usage(format!("cannot read --ca {}: {e}", ca.display())))?;
        builder = builder.tls_root_certificates(pem);
    }
    let client = match tokio::time::timeout(cli.timeout, builder.connect()).await {
        Err(_) => {
            return Err(Failure::Timeout(format!(
                "no connection to {} within {}",
                cli.url,
                humantime::format_duration(cli.timeout)
            )))
        }
        Ok(Err(e)) => return Err(connect_failure(e, &cli.url)),
        Ok(Ok(client)) => client,
    };
    if reconnect && !cli.quiet {
        let mut events = client.connection_events();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                eprintln!("fw: {}", describe_event(&event));
            }
        });
    }
    Ok(client)
}

/// A `ws://` (or `wss://`) URL with a host, or a usage error.
fn check_url(url: &str) -> Result<(), Failure> {
    let bad = |why: String| {
        Err(Failure::Usage(format!(
            "invalid --url {url}: {why} (expected ws://HOST:PORT/PATH)"
        )))
    };
    let uri: tungstenite::http::Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => return bad(e.to_string()),
    };
    match uri.scheme_str() {
        Some("ws" | "wss") => {}
        Some(other) => return bad(format!("the scheme is {other}, not ws")),
        None => return bad("no scheme".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return bad("no host".into());
    }
    Ok(())
}

fn describe_event(event: &ConnectionEvent) -> String {
    match event {
        ConnectionEvent::Disconnected { close } => match close {
            Some((code, reason)) => {
                format!("disconnected (close {code} {reason:?}); reconnecting")
            }
            None => "disconnected; reconnecting".into(),
        },
        ConnectionEvent::ReconnectFailed { attempt, error } => {
            format!("reconnection attempt {attempt} failed: {error}")
        }
        ConnectionEvent::Resubscribed { channel, recovery } => format!(
            "resubscribed to {channel}{}",
            if recovery.recovered || recovery.epoch.is_empty() {
                String::new()
            } else {
                " (publications may be missing: not recovered)".into()
            }
        ),
        ConnectionEvent::ResubscribeFailed { channel, error } => {
            format!("cannot subscribe to {channel} again: {error}")
        }
        ConnectionEvent::Reconnected {
            session_id,
            attempts,
            ..
        } => format!("reconnected as session {session_id} after {attempts} attempt(s)"),
        ConnectionEvent::GaveUp => "gave up reconnecting".into(),
        other => format!("{other:?}"),
    }
}

/// A failed first connection.
fn connect_failure(e: ClientError, url: &str) -> Failure {
    use tungstenite::Error as Ws;
    match e {
        ClientError::Ws(Ws::Url(e)) => Failure::Usage(format!("invalid --url {url}: {e}")),
        ClientError::Ws(Ws::Http(response)) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .filter(|b| !b.is_empty())
                .map(|b| format!(": {b}"))
                .unwrap_or_default();
            Failure::Connection(format!(
                "cannot connect to {url}: the server refused the WebSocket upgrade with HTTP {status}{body}"
            ))
        }
        ClientError::Ws(e) => Failure::Connection(format!("cannot connect to {url}: {e}")),
        ClientError::Closed => Failure::Connection(format!(
            "cannot connect to {url}: the connection closed before the Welcome"
        )),
        ClientError::Protocol(m) => Failure::Connection(format!(
            "cannot connect to {url}: not a protocol server ({m})"
        )),
        other => client_failure_plain(other),
    }
}

fn client_failure(e: ClientError, cli: &Cli) -> Failure {
    match e {
        ClientError::Timeout(_) => Failure::Timeout(format!(
            "no answer from {} within {}",
            cli.url,
            humantime::format_duration(cli.timeout)
        )),
        other => client_failure_plain(other),
    }
}

fn client_failure_plain(e: ClientError) -> Failure {
    match e {
        ClientError::Server {
            code,
            message,
            retry_after_ms,
        } => Failure::Server {
            code,
            message,
            retry_after_ms,
        },
        ClientError::Timeout(t) => Failure::Timeout(format!(
            "no answer within {}",
            humantime::format_duration(t)
        )),
        ClientError::Closed => Failure::Connection("the connection closed".into()),
        ClientError::Ws(e) => Failure::Connection(format!("the connection failed: {e}")),
        ClientError::Protocol(m) => Failure::Connection(format!("protocol violation: {m}")),
        ClientError::Tls(m) => Failure::Usage(format!("--ca: {m}")),
    }
}

/// Sends an acknowledged frame (publish, send, broadcast) and prints the `Ack`.
async fn acked(cli: &Cli, fields: FrameFields<'_>) -> Result<(), Failure> {
    let client = connect(cli, false).await?;
    let ack = client
        .call(fields)
        .await
        .map_err(|e| client_failure(e, cli))?;
    print_line(&render::frame(&ack, None))?;
    client.close();
    Ok(())
}

/// Prints deliveries until `count` of them (none: forever). The connection's end
/// is exit 3.
async fn deliveries(
    client: &Client,
    count: Option<u64>,
    decode: Option<&PayloadType>,
) -> Result<(), Failure> {
    let mut printed = 0u64;
    while count.is_none_or(|n| printed < n) {
        match client.recv().await {
            Some(frame) => {
                print_frame(&frame, decode)?;
                printed += 1;
            }
            None => {
                let how = match client.close_frame() {
                    Some((code, reason)) if reason.is_empty() => format!(" (close {code})"),
                    Some((code, reason)) => format!(" (close {code}: {reason})"),
                    None => String::new(),
                };
                return Err(Failure::Connection(format!(
                    "the server closed the connection{how}"
                )));
            }
        }
    }
    client.close();
    Ok(())
}

fn print_frame(frame: &Frame, decode: Option<&PayloadType>) -> Result<(), Failure> {
    print_line(&render::frame(frame, decode))
}

/// Writes one JSON line to standard output, flushed.
fn print_line(value: &Json) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{value}").and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::OutputClosed),
        Err(e) => Err(Failure::Output(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// A status line on standard error, unless --quiet.
fn status(cli: &Cli, line: &str) {
    if !cli.quiet {
        eprintln!("fw: {line}");
    }
}

/// The table received payloads decode as: `explicit`, else `fallback` (what the
/// schema says for an opcode), else the schema's root_type, else none (a usage
/// error when `required`: a schema was given to decode with).
fn decode_type(
    schema: Option<Schema>,
    explicit: Option<&str>,
    fallback: Option<&'static str>,
    required: bool,
) -> Result<Option<PayloadType>, Failure> {
    let Some(schema) = schema else {
        if let Some(table) = explicit {
            return Err(Failure::Usage(format!(
                "a type ({table}) needs a schema: pass --schema FILE"
            )));
        }
        return Ok(None);
    };
    let name = explicit.or(fallback).or_else(|| schema.root_type());
    match name {
        Some(name) => {
            let table = schema
                .resolve(name)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            Ok(Some(PayloadType { schema, table }))
        }
        None if required => Err(Failure::Usage(format!(
            "which table are the payloads? The schema has no root_type: pass --type TABLE (tables: {})",
            schema.tables().join(", ")
        ))),
        None => Ok(None),
    }
}

/// The payload bytes to send: the argument, the file or standard input; base64
/// decoded with --base64; with a schema, JSON encoded into the table of --type
/// (else `fallback`, else the schema's root_type). `None`: no payload given.
fn payload_bytes(
    args: &PayloadArgs,
    schema: Option<Schema>,
    fallback: Option<&'static str>,
) -> Result<Option<Vec<u8>>, Failure> {
    let read_stdin = || {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map(|_| buf)
            .map_err(|e| Failure::Usage(format!("cannot read standard input: {e}")))
    };
    let raw = match (&args.payload, &args.file) {
        (Some(p), _) if p == "-" => Some(read_stdin()?),
        (Some(p), _) => Some(p.clone().into_bytes()),
        (None, Some(f)) if f.as_os_str() == "-" => Some(read_stdin()?),
        (None, Some(f)) => Some(std::fs::read(f).map_err(|e| {
            Failure::Usage(format!("cannot read the payload file {}: {e}", f.display()))
        })?),
        (None, None) => None,
    };
    if args.base64 && schema.is_some() {
        return Err(Failure::Usage(
            "--base64 gives raw bytes; with --schema the payload is JSON".into(),
        ));
    }
    let Some(raw) = raw else {
        if let (Some(table), None) = (&args.table, schema) {
            return Err(Failure::Usage(format!(
                "a type ({table}) needs a schema: pass --schema FILE"
            )));
        }
        return Ok(None);
    };
    if args.base64 {
        let text: String = String::from_utf8_lossy(&raw)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        return base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Some)
            .map_err(|e| Failure::Usage(format!("the payload is not base64: {e}")));
    }
    let Some(schema) = schema else {
        if let Some(table) = &args.table {
            return Err(Failure::Usage(format!(
                "a type ({table}) needs a schema: pass --schema FILE"
            )));
        }
        return Ok(Some(raw));
    };
    let Some(name) = args
        .table
        .as_deref()
        .or(fallback)
        .or_else(|| schema.root_type())
    else {
        return Err(Failure::Usage(format!(
            "which table is the payload? The schema has no root_type: pass --type TABLE (tables: {})",
            schema.tables().join(", ")
        )));
    };
    let table = schema
        .resolve(name)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| Failure::Usage(format!("the payload is not JSON: {e}")))?;
    schema
        .encode(table, &json)
        .map(Some)
        .map_err(|e| Failure::Usage(format!("the payload is not a {table}: {e}")))
}

/// `10s`, `500ms`, `1m`, or a number of seconds (`2.5`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    humantime::parse_duration(text.trim()).map_err(|e| format!("{e} (examples: 10s, 500ms, 2.5)"))
}

/// `EPOCH:OFFSET`.
fn parse_position(text: &str) -> Result<(String, u64), String> {
    let (epoch, offset) = text
        .rsplit_once(':')
        .ok_or("expected EPOCH:OFFSET (e.g. 3f2a9c0d1e5b7a60:41)")?;
    let offset = offset
        .parse()
        .map_err(|_| format!("`{offset}` is not an offset"))?;
    Ok((epoch.to_string(), offset))
}

/// An opcode number, or a built-in's name (any case).
fn parse_opcode(text: &str) -> Result<u16, String> {
    if let Ok(n) = text.parse::<u16>() {
        return Ok(n);
    }
    Opcode::ENUM_VALUES
        .iter()
        .find(|o| {
            o.variant_name()
                .is_some_and(|n| n.eq_ignore_ascii_case(text))
        })
        .map(|o| o.0)
        .ok_or_else(|| {
            format!("`{text}` is not an opcode: give a number (0-65535) or a built-in's name")
        })
}
