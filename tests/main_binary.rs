//! A `framework::main!` binary (`tests/bin/main_app.rs`) run as a process: its
//! command line (`--export-schema`, `--config`, `--help`), the configuration
//! layers (file, then `FRAMEWORK_*` variables over the code) and its errors,
//! JSON logs, and the graceful-restart sequence of docs/deployment.md.

use std::process::Command;
use std::time::Duration;

use framework::client::Client;
use framework::message::Message;
use framework_tests::http;
use framework_tests::{listed_addr, serve, serve_logged, spawn_logging, Serving, DEADLINE};

const BIN: &str = env!("CARGO_BIN_EXE_main-app");

#[derive(framework::Message)]
struct Greeting {
    text: String,
}

fn app() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("FRAMEWORK_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Runs the binary to its end; (exit code, stdout, stderr).
fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn greeting(addr: std::net::SocketAddr) -> String {
    let client = Client::connect(&format!("ws://{addr}/"))
        .await
        .expect("connect");
    let reply = tokio::time::timeout(DEADLINE, client.request(200, b""))
        .await
        .expect("in time")
        .expect("a reply");
    Greeting::decode(&reply.payload()).expect("a Greeting").text
}

#[test]
fn export_schema_writes_every_derived_message() {
    let (code, stdout, _) = run(app().arg("--export-schema").arg("-"));
    assert_eq!(code, Some(0));
    assert!(stdout.contains("table Greeting"), "{stdout}");
    assert!(stdout.contains("text: string"), "{stdout}");

    let dir = std::env::temp_dir().join(format!("main-app-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("app.fbs");
    let (code, _, stderr) = run(app().arg(format!("--export-schema={}", file.display())));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("table Greeting"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn help_and_bad_arguments() {
    let (code, stdout, _) = run(app().arg("--help"));
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--config") && stdout.contains("--export-schema"));
    let (code, _, stderr) = run(app().arg("--port").arg("1"));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown argument `--port`"), "{stderr}");
}

#[tokio::test]
async fn it_serves_on_the_address_in_code() {
    let (_child, addr) = serve(&mut app());
    assert!(addr.ip().is_loopback());
    assert_eq!(greeting(addr).await, "hello from main!");
}

#[tokio::test]
async fn the_environment_overrides_the_file_which_overrides_the_code() {
    let dir = std::env::temp_dir().join(format!("main-app-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The file moves the service to another loopback address (127.0.0.0/8 is all
    // loopback on Linux), and sets a limit.
    let file = dir.join("app.toml");
    std::fs::write(
        &file,
        "websocket = \"127.0.0.2:0\"\nmax_message_size = 65536\n",
    )
    .unwrap();
    let (_child, addr) = serve(app().arg("--config").arg(&file));
    assert_eq!(
        addr.ip().to_string(),
        "127.0.0.2",
        "the file moved the service"
    );
    assert_eq!(greeting(addr).await, "hello from main!");
    drop(_child);

    // A file value that would fail does not matter once the environment overrides it.
    std::fs::write(&file, "websocket = \"not an address\"\n").unwrap();
    let (_child, addr) = serve(
        app()
            .env("FRAMEWORK_CONFIG", &file)
            .env("FRAMEWORK_WEBSOCKET", "127.0.0.3:0"),
    );
    assert_eq!(addr.ip().to_string(), "127.0.0.3", "the environment wins");
    assert_eq!(greeting(addr).await, "hello from main!");
    drop(_child);

    // Alone, that file stops start-up, naming the key.
    let (code, _, stderr) = run(app().arg("--config").arg(&file));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("websocket"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_values_and_unknown_keys_stop_start_up() {
    for (name, value, expect) in [
        ("FRAMEWORK_WEBSOCKET", "not-a-port", "websocket"),
        ("FRAMEWORK_WEBSOCKET", "70000", "websocket"),
        ("FRAMEWORK_IDLE_TIMEOUT", "soon", "idle_timeout"),
        (
            "FRAMEWORK_WEBSOCKET_PORT",
            "8081",
            "unknown configuration key `websocket_port`",
        ),
        ("FRAMEWORK_RAW_9999", "9000", "raw.9999"),
    ] {
        let (code, _, stderr) = run(app().env(name, value));
        assert_eq!(code, Some(1), "{name}={value} must stop start-up: {stderr}");
        assert!(stderr.contains(expect), "{name}={value}: {stderr}");
    }
    let (code, _, stderr) = run(app().arg("--config").arg("/no/such/app.toml"));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    // The signal comes the moment the binary says it serves: the handlers are in
    // place before the listeners are.
    let (mut child, _addr) = serve(&mut app());
    let pid = child.0.id();
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            assert!(status.success(), "graceful shutdown exits 0: {status:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn terminate(child: &Serving) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits for the process to exit; its status.
fn exit_status(child: &mut Serving) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_graceful_restart_sequence_is_as_documented() {
    // docs/deployment.md: SIGTERM → /readyz 503 (new upgrades refused, the open
    // sessions and HTTP still served) for drain_grace → the listeners stop →
    // sessions closed with 1001 within shutdown_timeout → exit 0.
    let (mut child, ws, line) = serve_logged(
        app()
            .env("FRAMEWORK_SERVICE", "127.0.0.1:0")
            .env("FRAMEWORK_DRAIN_GRACE", "2s"),
    );
    let service = listed_addr(&line, "service").expect("the service's address");
    let session = Client::connect(&format!("ws://{ws}/")).await.unwrap();
    assert_eq!(http::get(service, "/readyz").await.status, 200);

    terminate(&child);
    let start = std::time::Instant::now();
    while http::get(service, "/readyz").await.status != 503 {
        assert!(start.elapsed() < DEADLINE, "/readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Draining: alive, still serving what is open, refusing new sessions.
    assert_eq!(http::get(service, "/healthz").await.status, 200);
    assert!(session.ping().await.is_ok(), "the open session is served");
    assert!(Client::connect(&format!("ws://{ws}/")).await.is_err());

    // Then the listeners stop, the session is closed with 1001, and the process
    // exits 0.
    while tokio::net::TcpStream::connect(service).await.is_ok() {
        assert!(start.elapsed() < DEADLINE, "the listeners never stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "the listeners stopped before drain_grace: {:?}",
        start.elapsed()
    );
    assert!(session.recv_timeout(DEADLINE).await.is_none());
    assert_eq!(session.close_frame().map(|(code, _)| code), Some(1001));
    assert!(exit_status(&mut child).success());
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let (mut child, lines) = spawn_logging(app().env("FRAMEWORK_LOG_FORMAT", "json"));
    let parse = |line: &str| -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let serving = loop {
        let line = lines.recv_timeout(DEADLINE).expect("the binary logs");
        let event = parse(&line);
        if event["fields"]["message"] == "serving" {
            break event;
        }
    };
    assert_eq!(serving["level"], "INFO");
    assert!(serving["timestamp"].is_string(), "{serving}");
    let listed = serving["fields"]["websocket"]
        .as_str()
        .expect("the addresses");
    let addr = listed.trim_matches(['[', ']']).parse().expect("an address");
    assert_eq!(greeting(addr).await, "hello from main!");

    terminate(&child);
    assert!(exit_status(&mut child).success());
    // Every line to the end of the output (the sender goes with the pipe).
    let rest: Vec<serde_json::Value> = std::iter::from_fn(|| lines.recv_timeout(DEADLINE).ok())
        .map(|l| parse(&l))
        .collect();
    assert!(
        rest.iter()
            .any(|e| e["fields"]["message"] == "shutting down"),
        "{rest:?}"
    );
}

/// The greeting over `wss://`, trusting only `ca`; `Err` when the connection
/// fails (e.g. the server's certificate is not `ca`'s).
async fn greeting_tls(
    addr: std::net::SocketAddr,
    ca: &framework_tests::tls::TestCa,
) -> Result<String, framework::client::ClientError> {
    let client = Client::builder(format!("wss://{addr}/"))
        .tls_root_certificates(&ca.pem)
        .connect()
        .await?;
    let reply = tokio::time::timeout(DEADLINE, client.request(200, b""))
        .await
        .expect("in time")?;
    Ok(Greeting::decode(&reply.payload()).expect("a Greeting").text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_from_the_environment_reloads_on_sighup() {
    use framework_tests::tls::TestCa;
    let dir = framework_tests::tools::TempDir::new(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")),
        "main-tls",
    );
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let tls = old_ca.write_server_files(&dir.0);
    let (child, addr) = serve(
        app()
            .env("FRAMEWORK_TLS_CERT_FILE", &tls.cert_file)
            .env("FRAMEWORK_TLS_KEY_FILE", &tls.key_file)
            // No polling: only the signal reloads.
            .env("FRAMEWORK_TLS_RELOAD_INTERVAL", "0s"),
    );
    let open = Client::builder(format!("wss://{addr}/"))
        .tls_root_certificates(&old_ca.pem)
        .connect()
        .await
        .expect("wss with the old certificate");
    assert_eq!(
        greeting_tls(addr, &old_ca).await.unwrap(),
        "hello from main!"
    );

    new_ca.write_server_files(&dir.0);
    assert!(
        greeting_tls(addr, &new_ca).await.is_err(),
        "without a signal the old certificate stays"
    );
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(child.0.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        match greeting_tls(addr, &new_ca).await {
            Ok(text) => {
                assert_eq!(text, "hello from main!");
                break;
            }
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "the new certificate is not served after SIGHUP: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The connection made before the reload goes on.
    let reply = open.request(200, b"").await.expect("the old connection");
    assert_eq!(
        Greeting::decode(&reply.payload()).unwrap().text,
        "hello from main!"
    );
    drop(child);
}

#[test]
fn a_tls_key_that_does_not_load_stops_start_up() {
    let (code, _, stderr) = run(app()
        .env("FRAMEWORK_TLS_CERT_FILE", "/no/such/chain.pem")
        .env("FRAMEWORK_TLS_KEY_FILE", "/no/such/key.pem"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot set up TLS") && stderr.contains("/no/such/chain.pem"),
        "{stderr}"
    );
}
