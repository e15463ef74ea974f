//! Start-up checks of the macro registry, in a test binary of their own (the
//! registry is per binary): two `#[opcode(N)]` handlers for one N, and two
//! `#[raw_ws]` services on one port, make `start` fail with an error that names
//! both functions and both `file:line` locations.
//!
//! Raw duplicates are recorded as they are registered and opcode duplicates when
//! the dispatch table is built, so with both present `start` reports the raw one.
//! The opcode test therefore moves both raw services to port 0 (ephemeral ports
//! never conflict) through the `env = "..."` override of `#[raw_ws]`.

use std::sync::Mutex;

use framework::app::AppError;
use framework::prelude::*;

const DUPLICATE_OPCODE: u16 = 4242;
const RAW_PORT: u16 = 47_123;

const FIRST_OPCODE_LINE: u32 = line!() + 1;
#[opcode(4242)]
fn first_handler() -> Vec<u8> {
    b"first".to_vec()
}

const SECOND_OPCODE_LINE: u32 = line!() + 1;
#[opcode(4242)]
async fn second_handler(_ctx: Request) -> Vec<u8> {
    b"second".to_vec()
}

/// A handler on another opcode, which is not part of the conflict.
#[opcode(4243)]
fn bystander() {}

const FIRST_RAW_LINE: u32 = line!() + 1;
#[raw_ws(port = 47123, env = "REGISTRY_DUPLICATES_RAW_A")]
async fn first_raw(_conn: RawConnection) {}

const SECOND_RAW_LINE: u32 = line!() + 1;
#[raw_ws(port = 47123, env = "REGISTRY_DUPLICATES_RAW_B")]
fn second_raw(_conn: RawConnection) {}

/// The environment is process-wide: tests that read or change it take turns.
static ENV: Mutex<()> = Mutex::new(());

fn origin(name: &str, line: u32) -> String {
    format!("`{name}` at {}:{line}", file!())
}

/// Asserts that `first`/`second` are the two origins, in either order (the
/// registry's iteration order is unspecified).
fn assert_both(first: &str, second: &str, a: &str, b: &str) {
    assert!(
        (first == a && second == b) || (first == b && second == a),
        "expected {a} and {b}, got {first} and {second}"
    );
}

#[tokio::test]
async fn two_handlers_for_one_opcode_fail_start_naming_both() {
    // `with_registered` reads the overrides; `start` does not.
    let app = {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("REGISTRY_DUPLICATES_RAW_A", "0");
        std::env::set_var("REGISTRY_DUPLICATES_RAW_B", "0");
        let app = App::new().with_registered();
        std::env::remove_var("REGISTRY_DUPLICATES_RAW_A");
        std::env::remove_var("REGISTRY_DUPLICATES_RAW_B");
        app
    };
    let result = app.start().await;

    let err = match result {
        Ok(handle) => {
            handle.shutdown().await;
            panic!("start succeeded with two handlers for opcode {DUPLICATE_OPCODE}");
        }
        Err(e) => e,
    };
    let a = origin("first_handler", FIRST_OPCODE_LINE);
    let b = origin("second_handler", SECOND_OPCODE_LINE);
    match &err {
        AppError::DuplicateHandler {
            opcode,
            first,
            second,
        } => {
            assert_eq!(*opcode, DUPLICATE_OPCODE);
            assert_both(first, second, &a, &b);
        }
        other => panic!("expected DuplicateHandler, got {other:?}"),
    }
    let message = err.to_string();
    for part in [
        "opcode 4242",
        "first_handler",
        "second_handler",
        &format!("registry_duplicates.rs:{FIRST_OPCODE_LINE}"),
        &format!("registry_duplicates.rs:{SECOND_OPCODE_LINE}"),
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    assert!(!message.contains("bystander"), "{message}");
}

#[tokio::test]
async fn two_raw_services_on_one_port_fail_start_naming_both() {
    let app = {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        std::env::remove_var("REGISTRY_DUPLICATES_RAW_A");
        std::env::remove_var("REGISTRY_DUPLICATES_RAW_B");
        App::new().with_registered()
    };
    let err = match app.start().await {
        Ok(handle) => {
            handle.shutdown().await;
            panic!("start succeeded with two raw services on port {RAW_PORT}");
        }
        Err(e) => e,
    };
    let a = origin("first_raw", FIRST_RAW_LINE);
    let b = origin("second_raw", SECOND_RAW_LINE);
    match &err {
        AppError::DuplicateRawService {
            port,
            first,
            second,
        } => {
            assert_eq!(*port, RAW_PORT);
            assert_both(first, second, &a, &b);
        }
        other => panic!("expected DuplicateRawService, got {other:?}"),
    }
    let message = err.to_string();
    for part in [
        "port 47123",
        "first_raw",
        "second_raw",
        &format!("registry_duplicates.rs:{FIRST_RAW_LINE}"),
        &format!("registry_duplicates.rs:{SECOND_RAW_LINE}"),
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
}

/// The same checks without the macros: what `with_registered` does by hand.
#[tokio::test]
async fn the_runtime_api_reports_duplicates_with_the_callers_location() {
    let line = line!() + 3;
    let app = App::new()
        .register_custom_handler(300, |_ctx: Request| ())
        .register_custom_handler(300, |_ctx: Request| ())
        .run_websocket_service(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let err = match app.start().await {
        Ok(handle) => {
            handle.shutdown().await;
            panic!("start succeeded with two handlers for opcode 300");
        }
        Err(e) => e,
    };
    match err {
        AppError::DuplicateHandler {
            opcode,
            first,
            second,
        } => {
            assert_eq!(opcode, 300);
            assert!(
                first.ends_with(&format!("{}:{}:10", file!(), line - 1)),
                "{first}"
            );
            assert!(
                second.ends_with(&format!("{}:{}:10", file!(), line)),
                "{second}"
            );
        }
        other => panic!("expected DuplicateHandler, got {other:?}"),
    }
}

mod first_module {
    /// An `Item` table with one field.
    #[derive(framework::Message)]
    pub struct Item {
        /// A number.
        pub x: u32,
    }
}

mod second_module {
    /// Another, different, `Item` table.
    #[derive(framework::Message)]
    pub struct Item {
        /// A text.
        pub y: String,
    }
}

#[test]
fn two_different_tables_with_one_name_are_a_schema_conflict() {
    let err = framework::registry::export_schema(None).unwrap_err();
    assert_eq!(err.table, "Item");
    assert!(err.first.contains("registry_duplicates.rs:"), "{err}");
    assert!(err.second.contains("registry_duplicates.rs:"), "{err}");
    assert_ne!(err.first, err.second);
    assert!(err.to_string().contains("#[fbs(name"), "{err}");
}
