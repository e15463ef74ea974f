//! `fw` end to end: a real server started in process (`framework::App` on
//! 127.0.0.1:0, on a runtime of its own), and the built binary run as a shell
//! user runs it. Every test has its own server, so broadcasts and channels never
//! cross tests; a test waits for what it needs (a status line, a JSON line), never
//! a fixed time, and gives up after a generous deadline.
//!
//! `flatc` 25.12.19 is required for `.fbs` schemas (scripts/test.sh installs it).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use framework::config::ChannelOptions;
use framework::prelude::*;
use serde_json::{json, Value};
use support::{compile_bfbs, TempDir, DEADLINE, FW};

/// What opcode 200 takes.
#[derive(framework::Message, Debug, Clone, PartialEq)]
struct Hello {
    name: String,
    times: u32,
}

/// What opcode 200 answers.
#[derive(framework::Message, Debug, Clone, PartialEq)]
struct Greeting {
    text: String,
}

#[opcode(200)]
fn greet(hello: Hello) -> Greeting {
    Greeting {
        text: vec![format!("hello, {}!", hello.name); hello.times as usize].join(" "),
    }
}

#[opcode(201)]
fn refuse(_hello: Hello) -> Result<Greeting, HandlerError> {
    Err(HandlerError::new(ErrorCode::Forbidden, "not you"))
}

#[opcode(202)]
async fn never_answers() -> Greeting {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Greeting {
        text: String::new(),
    }
}

/// A server on its own runtime, which serves while the test blocks on processes.
struct Server {
    runtime: Option<tokio::runtime::Runtime>,
    handle: Option<AppHandle>,
    url: String,
}

impl Server {
    fn start() -> Server {
        Server::start_on("127.0.0.1:0".parse().unwrap())
    }

    fn start_on(addr: SocketAddr) -> Server {
        Server::try_start_on(addr).expect("the server starts")
    }

    fn try_start_on(addr: SocketAddr) -> Result<Server, framework::app::AppError> {
        Server::try_start_with(addr, None)
    }

    /// A server serving `wss://` with `tls`.
    fn start_tls(tls: framework::config::TlsConfig) -> Server {
        Server::try_start_with("127.0.0.1:0".parse().unwrap(), Some(tls))
            .expect("the TLS server starts")
    }

    fn try_start_with(
        addr: SocketAddr,
        tls: Option<framework::config::TlsConfig>,
    ) -> Result<Server, framework::app::AppError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let config = Config {
            channel_options: vec![
                ChannelOptions::new("chat:*").history(100, Duration::from_secs(300)),
                ChannelOptions::new("room:*").presence(true),
            ],
            ..Config::default()
        };
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let config = Config { tls, ..config };
        let handle = runtime.block_on(
            App::new()
                .config(config)
                .with_registered()
                .run_websocket_service(addr)
                .start(),
        )?;
        let url = format!("{scheme}://{}/", handle.websocket_addr());
        Ok(Server {
            runtime: Some(runtime),
            handle: Some(handle),
            url,
        })
    }

    /// Shuts the server down (its sessions get close 1001).
    fn shutdown(&mut self) {
        if let (Some(rt), Some(handle)) = (&self.runtime, self.handle.take()) {
            rt.block_on(handle.shutdown());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// `fw` with no FW_* variables from the environment.
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(FW);
    for (k, _) in std::env::vars() {
        if k.starts_with("FW_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args);
    cmd
}

/// What a finished run gave.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The only line of standard output, as JSON.
    fn json(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "one JSON line expected: {self:?}");
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Runs `fw args` to its end (killed and failed after the deadline), with
/// `stdin` as its standard input.
fn run_with_input(server: Option<&Server>, args: &[&str], stdin: &[u8]) -> Run {
    let mut cmd = command(&[]);
    if let Some(s) = server {
        cmd.args(["--url", &s.url]);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fw runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let out = reader(child.stdout.take().unwrap());
    let err = reader(child.stderr.take().unwrap());
    let code = wait(&mut child, args);
    Run {
        code,
        stdout: out.recv_timeout(DEADLINE).unwrap_or_default(),
        stderr: err.recv_timeout(DEADLINE).unwrap_or_default(),
    }
}

fn run(server: &Server, args: &[&str]) -> Run {
    run_with_input(Some(server), args, b"")
}

/// Reads a pipe to its end on a thread.
fn reader(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    rx
}

/// Waits for `child` to exit (kills it and panics after the deadline).
fn wait(child: &mut Child, what: &[&str]) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("fw {what:?} did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A long-running `fw` (connect, subscribe) whose lines the test reads as they come.
struct Running {
    child: Child,
    args: Vec<String>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

impl Running {
    fn spawn(server: &Server, args: &[&str]) -> Running {
        let mut child = command(&["--url", &server.url])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fw runs");
        Running {
            stdout: lines(child.stdout.take().unwrap()),
            stderr: lines(child.stderr.take().unwrap()),
            child,
            args: args.iter().map(|a| a.to_string()).collect(),
            stderr_seen: Vec::new(),
        }
    }

    /// The next line of standard output, as JSON.
    fn json(&mut self) -> Value {
        match self.stdout.recv_timeout(DEADLINE) {
            Ok(line) => serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")),
            Err(_) => {
                self.drain_stderr();
                panic!(
                    "fw {:?} printed no line within {DEADLINE:?}; stderr: {:?}",
                    self.args, self.stderr_seen
                )
            }
        }
    }

    fn drain_stderr(&mut self) {
        while let Ok(line) = self.stderr.try_recv() {
            self.stderr_seen.push(line);
        }
    }

    /// Waits for a line of standard error containing `needle`.
    fn wait_stderr(&mut self, needle: &str) {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(50)) {
                let found = line.contains(needle);
                self.stderr_seen.push(line);
                if found {
                    return;
                }
            }
        }
        panic!(
            "fw {:?} never said {needle:?}; stderr: {:?}",
            self.args, self.stderr_seen
        );
    }

    /// Waits for the exit; (code, the rest of stderr).
    fn finish(mut self) -> (Option<i32>, String) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let code = wait(&mut self.child, &args);
        let start = Instant::now();
        // The reader thread ends with the pipe.
        while let Ok(line) = self
            .stderr
            .recv_timeout(DEADLINE.saturating_sub(start.elapsed()))
        {
            self.stderr_seen.push(line);
        }
        (code, self.stderr_seen.join("\n"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The schema of this binary's derived messages (Hello, Greeting), as the
/// framework exports it.
fn exported_schema(dir: &TempDir) -> std::path::PathBuf {
    let fbs = dir.join("app.fbs");
    std::fs::write(&fbs, framework::registry::export_schema(None).unwrap()).unwrap();
    fbs
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn a_publish_is_seen_by_a_subscriber() {
    let server = Server::start();
    let mut sub = Running::spawn(&server, &["subscribe", "news", "--count", "2"]);
    sub.wait_stderr("subscribed to news");

    let publish = run(&server, &["publish", "news", "hello"]);
    assert_eq!(publish.code, Some(0), "{publish:?}");
    assert_eq!(publish.json()["opcode"], "Ack");
    // Binary bytes, from standard input.
    let publish = run_with_input(Some(&server), &["publish", "news", "-"], &[0, 1, 0xff]);
    assert_eq!(publish.code, Some(0), "{publish:?}");

    let first = sub.json();
    assert_eq!(first["opcode"], "Publish");
    assert_eq!(first["channel"], "news");
    assert_eq!(first["payload"], "hello");
    assert!(
        first["emitter_id"].is_string() && first["trace_id"].is_string(),
        "{first}"
    );
    let second = sub.json();
    assert_eq!(second["payload_base64"], "AAH/", "{second}");
    assert_eq!(second.get("payload"), None);
    let (code, stderr) = sub.finish();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn history_offsets_and_recovery() {
    let server = Server::start();
    let mut epoch = String::new();
    for (i, text) in ["one", "two", "three"].into_iter().enumerate() {
        let ack = run(&server, &["publish", "chat:1", text]).json();
        assert_eq!(ack["offset"], i as u64 + 1, "{ack}");
        epoch = ack["epoch"].as_str().expect("an epoch").to_string();
    }

    let page = run(&server, &["history", "chat:1", "--since", "1"]).json();
    assert_eq!(page["epoch"], epoch.as_str());
    assert_eq!(page["offset"], 3);
    let publications = page["publications"].as_array().unwrap();
    let got: Vec<(&Value, &Value)> = publications
        .iter()
        .map(|p| (&p["offset"], &p["payload"]))
        .collect();
    assert_eq!(
        got,
        [(&json!(2), &json!("two")), (&json!(3), &json!("three"))]
    );

    // What was missed after offset 1 is replayed first.
    let position = format!("{epoch}:1");
    let mut sub = Running::spawn(
        &server,
        &[
            "subscribe",
            "chat:1",
            "--recover",
            &position,
            "--count",
            "2",
        ],
    );
    assert_eq!(sub.json()["payload"], "two");
    assert_eq!(sub.json()["payload"], "three");
    let (code, stderr) = sub.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("recovered chat:1: every missed publication"),
        "{stderr}"
    );
}

#[test]
fn a_send_reaches_one_session() {
    let server = Server::start();
    let mut receiver = Running::spawn(&server, &["connect", "--count", "1"]);
    let welcome = receiver.json();
    assert_eq!(welcome["opcode"], "Welcome");
    let session = welcome["session_id"]
        .as_str()
        .expect("a session id")
        .to_string();

    let send = run(&server, &["send", &session, "psst"]);
    assert_eq!(send.code, Some(0), "{send:?}");
    assert_eq!(send.json()["opcode"], "Ack");

    let delivery = receiver.json();
    assert_eq!(delivery["opcode"], "Send");
    assert_eq!(delivery["receiver_id"], session.as_str());
    assert_eq!(delivery["payload"], "psst");
    let (code, stderr) = receiver.finish();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_broadcast_reaches_every_session() {
    let server = Server::start();
    let mut receivers: Vec<Running> = (0..2)
        .map(|_| Running::spawn(&server, &["connect", "--count", "1"]))
        .collect();
    for r in &mut receivers {
        assert_eq!(r.json()["opcode"], "Welcome");
    }
    let broadcast = run(&server, &["broadcast", "all hands"]);
    assert_eq!(broadcast.code, Some(0), "{broadcast:?}");
    for mut r in receivers {
        let delivery = r.json();
        assert_eq!(delivery["opcode"], "Broadcast");
        assert_eq!(delivery["payload"], "all hands");
        let (code, stderr) = r.finish();
        assert_eq!(code, Some(0), "{stderr}");
    }
}

#[test]
fn call_encodes_and_decodes_json_through_the_exported_schema() {
    let server = Server::start();
    let dir = TempDir::new("call");
    let fbs = exported_schema(&dir);
    let request = r#"{"name": "Ada", "times": 2}"#;
    let expected = json!({ "text": "hello, Ada! hello, Ada!" });

    // The .fbs, compiled by flatc from PATH.
    let call = run(
        &server,
        &[
            "--schema",
            path(&fbs),
            "call",
            "200",
            request,
            "--type",
            "Hello",
            "--reply-type",
            "Greeting",
        ],
    );
    assert_eq!(call.code, Some(0), "{call:?}");
    let reply = call.json();
    assert_eq!(reply["opcode"], "200");
    assert_eq!(reply["decoded"], expected, "{reply}");
    assert!(reply["payload_base64"].is_string(), "{reply}");

    // The .bfbs, read in process: no flatc needed. The JSON from standard input.
    let bfbs = compile_bfbs(&fbs);
    let call = run_with_input(
        Some(&server),
        &[
            "--schema",
            path(&bfbs),
            "--flatc",
            "/nonexistent/flatc",
            "call",
            "200",
            "-",
            "--type",
            "Hello",
            "--reply-type",
            "Greeting",
        ],
        request.as_bytes(),
    );
    assert_eq!(call.code, Some(0), "{call:?}");
    assert_eq!(call.json()["decoded"], expected);

    // A schema that says which tables opcode 200 takes and answers needs no
    // --type and no --reply-type.
    let rpc = dir.join("rpc.fbs");
    let text = std::fs::read_to_string(&fbs).unwrap();
    std::fs::write(
        &rpc,
        format!(
            "attribute \"opcode\";\n{text}\nrpc_service App {{\n  Greet(Hello): Greeting (opcode: \"200\");\n}}\n"
        ),
    )
    .unwrap();
    let call = run(
        &server,
        &[
            "--schema",
            path(&rpc),
            "call",
            "200",
            r#"{"name":"Bo","times":1}"#,
        ],
    );
    assert_eq!(call.code, Some(0), "{call:?}");
    assert_eq!(call.json()["decoded"], json!({ "text": "hello, Bo!" }));
}

#[test]
fn subscribe_decodes_payloads_through_the_schema() {
    let server = Server::start();
    let dir = TempDir::new("decode");
    let fbs = exported_schema(&dir);
    let mut sub = Running::spawn(
        &server,
        &[
            "--schema",
            path(&fbs),
            "subscribe",
            "greetings",
            "--type",
            "Greeting",
            "--count",
            "2",
        ],
    );
    sub.wait_stderr("subscribed to greetings");
    let publish = run(
        &server,
        &[
            "--schema",
            path(&fbs),
            "publish",
            "greetings",
            r#"{"text":"hi"}"#,
            "--type",
            "Greeting",
        ],
    );
    assert_eq!(publish.code, Some(0), "{publish:?}");
    // Bytes that are no Greeting say so, and the stream goes on.
    let publish = run(&server, &["publish", "greetings", "--base64", "AAAA"]);
    assert_eq!(publish.code, Some(0), "{publish:?}");

    let delivery = sub.json();
    assert_eq!(delivery["decoded"], json!({ "text": "hi" }), "{delivery}");
    let bad = sub.json();
    assert!(
        bad["decode_error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("not a Greeting"),
        "{bad}"
    );
    let (code, stderr) = sub.finish();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn presence_lists_the_subscribers() {
    let server = Server::start();
    let mut sub = Running::spawn(&server, &["subscribe", "room:1"]);
    sub.wait_stderr("subscribed to room:1");
    let presence = run(&server, &["presence", "room:1"]);
    assert_eq!(presence.code, Some(0), "{presence:?}");
    let presence = presence.json();
    assert_eq!(presence["num_clients"], 1, "{presence}");
    assert!(
        presence["clients"][0]["session_id"].is_string(),
        "{presence}"
    );
}

#[test]
fn an_error_frame_exits_1_with_its_code_and_message() {
    let server = Server::start();
    let dir = TempDir::new("errors");
    let fbs = exported_schema(&dir);
    let cases: [(&[&str], &str); 5] = [
        (&["call", "299"], "server error UnknownOpcode (2)"),
        (
            &[
                "--schema",
                path(&fbs),
                "call",
                "201",
                r#"{"name":"x","times":1}"#,
                "--type",
                "Hello",
            ],
            "server error Forbidden (5): not you",
        ),
        (
            &["call", "200", "not a flatbuffer"],
            "server error BadPayload (3)",
        ),
        (
            &["send", "00000000-0000-0000-0000-000000000001", "x"],
            "server error NotFound (6)",
        ),
        (&["history", "news"], "server error InvalidArgument (11)"),
    ];
    for (args, message) in cases {
        let r = run(&server, args);
        assert_eq!(r.code, Some(1), "{args:?}: {r:?}");
        assert!(r.stderr.contains(message), "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
    }
}

#[test]
fn an_unreachable_server_exits_3() {
    // A port nobody listens on: bound, then closed (on an address no other
    // test listens on, so that none takes the port meanwhile).
    let port = TcpListener::bind("127.0.0.43:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.43:{port}/");
    for args in [
        &["publish", "news", "x"][..],
        &["subscribe", "news", "--reconnect"],
        &["call", "200"],
    ] {
        let r = run_with_input(None, &[&["--url", &url][..], args].concat(), b"");
        assert_eq!(r.code, Some(3), "{args:?}: {r:?}");
        assert!(
            r.stderr.contains(&format!("cannot connect to {url}")),
            "{r:?}"
        );
    }
}

#[test]
fn a_lost_connection_exits_3() {
    let mut server = Server::start();
    let mut sub = Running::spawn(&server, &["subscribe", "news"]);
    sub.wait_stderr("subscribed to news");
    server.shutdown();
    let (code, stderr) = sub.finish();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("the server closed the connection (close 1001"),
        "{stderr}"
    );
}

#[test]
fn a_reconnecting_subscriber_survives_a_restart() {
    // An address of its own (127.0.0.0/8 is all loopback): no other test's
    // server can take the port meanwhile.
    let mut first = Server::start_on("127.0.0.42:0".parse().unwrap());
    let addr = first.handle.as_ref().unwrap().websocket_addr();
    let mut sub = Running::spawn(
        &first,
        &["subscribe", "news", "--reconnect", "--count", "1"],
    );
    sub.wait_stderr("subscribed to news");
    first.shutdown();
    sub.wait_stderr("disconnected (close 1001");
    drop(first);
    // The same address again (once the first server's listener is gone): the
    // client comes back by itself.
    let start = Instant::now();
    let second = loop {
        match Server::try_start_on(addr) {
            Ok(server) => break server,
            Err(_) if start.elapsed() < DEADLINE => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("cannot listen on {addr} again: {e}"),
        }
    };
    sub.wait_stderr("resubscribed to news");
    sub.wait_stderr("reconnected as session");
    let publish = run(&second, &["publish", "news", "back"]);
    assert_eq!(publish.code, Some(0), "{publish:?}");
    assert_eq!(sub.json()["payload"], "back");
    let (code, stderr) = sub.finish();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn wss_with_a_private_ca() {
    let dir = TempDir::new("tls");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (ca, cert_file, key_file) = (
        dir.0.join("ca.pem"),
        dir.0.join("cert.pem"),
        dir.0.join("key.pem"),
    );
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let server = Server::start_tls(framework::config::TlsConfig::new(cert_file, key_file));
    assert!(server.url.starts_with("wss://"));

    let r = run(&server, &["--ca", path(&ca), "ping"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.json()["opcode"], "Pong");
    // The system's roots do not hold the test's CA.
    let r = run(&server, &["ping"]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(r.stderr.to_lowercase().contains("certificate"), "{r:?}");
    // A file that is no CA certificate is a usage error.
    let r = run(&server, &["--ca", path(&dir.0.join("key.pem")), "ping"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("--ca"), "{r:?}");
}

#[test]
fn no_answer_in_time_exits_4() {
    // A listener that never accepts: the upgrade is never answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", silent.local_addr().unwrap());
    let r = run_with_input(None, &["--url", &url, "--timeout", "300ms", "ping"], b"");
    assert_eq!(r.code, Some(4), "{r:?}");
    assert!(
        r.stderr.contains("no connection to") && r.stderr.contains("within 300ms"),
        "{r:?}"
    );

    // A handler that never answers.
    let server = Server::start();
    let r = run(&server, &["--timeout", "0.3", "call", "202"]);
    assert_eq!(r.code, Some(4), "{r:?}");
    assert!(r.stderr.contains("no answer from"), "{r:?}");
}

#[test]
fn usage_errors_exit_2() {
    let server = Server::start();
    let dir = TempDir::new("usage");
    let fbs = exported_schema(&dir);
    let schema = path(&fbs);
    let missing = dir.join("missing.fbs");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], "Usage: fw"),
        (vec!["frobnicate"], "unrecognized subcommand"),
        (
            vec!["send", "not-a-uuid", "x"],
            "invalid value 'not-a-uuid'",
        ),
        (vec!["--timeout", "soon", "ping"], "invalid value 'soon'"),
        (
            vec!["--url", "http://127.0.0.1:1/", "ping"],
            "the scheme is http, not ws",
        ),
        (
            vec!["call", "200", "{}", "--type", "Hello"],
            "needs a schema",
        ),
        (
            vec!["--schema", path(&missing), "call", "200", "{}"],
            "cannot read the schema",
        ),
        (
            vec![
                "--schema", schema, "call", "200", "{nope", "--type", "Hello",
            ],
            "the payload is not JSON",
        ),
        (
            vec![
                "--schema",
                schema,
                "call",
                "200",
                r#"{"nom":"x"}"#,
                "--type",
                "Hello",
            ],
            "the payload is not a Hello: unknown field `nom` in table Hello (fields: name, times)",
        ),
        (
            vec![
                "--schema",
                schema,
                "call",
                "200",
                r#"{"name":"x","times":-1}"#,
                "--type",
                "Hello",
            ],
            "at .times: -1 is out of range for a uint",
        ),
        (
            vec!["--schema", schema, "call", "200", "{}"],
            "pass --type TABLE (tables: Greeting, Hello)",
        ),
        (
            vec!["--schema", schema, "call", "200", "{}", "--type", "Nobody"],
            "no table `Nobody`",
        ),
        (
            vec!["--schema", schema, "subscribe", "c"],
            "which table are the payloads? The schema has no root_type: pass --type TABLE",
        ),
        (
            vec!["--schema", schema, "publish", "c", "--base64", "AA=="],
            "--base64 gives raw bytes",
        ),
        (
            vec!["--schema", schema, "--flatc", "/nonexistent/flatc", "ping"],
            "/nonexistent/flatc, does not exist",
        ),
        (
            vec!["subscribe", "a", "b", "--recover", "e:1"],
            "--recover takes one channel",
        ),
        (
            vec!["subscribe", "a", "--recover", "e"],
            "expected EPOCH:OFFSET",
        ),
    ];
    for (args, message) in cases {
        let r = run(&server, &args);
        assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
        assert!(r.stderr.contains(message), "{args:?}: {r:?}");
    }

    // flatc missing from PATH: the error says how to do without.
    let r = command(&["--url", &server.url, "--schema", schema, "ping"])
        .env("PATH", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`flatc` not found on PATH") && stderr.contains("--flatc PATH"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_exits_130() {
    let server = Server::start();
    let mut sub = Running::spawn(&server, &["subscribe", "news"]);
    sub.wait_stderr("subscribed to news");
    let status = Command::new("kill")
        .args(["-INT", &sub.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let (code, stderr) = sub.finish();
    assert_eq!(code, Some(130), "{stderr}");
}

#[test]
fn ping_and_help() {
    let server = Server::start();
    let ping = run(&server, &["ping"]).json();
    assert_eq!(ping["opcode"], "Pong");
    assert!(
        ping["rtt_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{ping}"
    );

    let help = run(&server, &["--help"]);
    assert_eq!(help.code, Some(0));
    for word in [
        "subscribe",
        "publish",
        "send",
        "broadcast",
        "call",
        "history",
        "presence",
        "Exit codes",
    ] {
        assert!(help.stdout.contains(word), "{word}: {}", help.stdout);
    }
}
