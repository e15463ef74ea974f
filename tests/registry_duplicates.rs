//! Start-up checks of the macro registry, in a test binary of their own (the
//! registry is per binary): two `#[opcode(N)]` handlers for one N, and two
//! `#[raw_ws]` services on one port, make `start` fail with an error that names
//! both functions and both `file:line` locations.
//!
//! Every registration error is reported at once (`AppError::Several`), so both
//! conflicts of this binary show in one start-up failure.

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
#[raw_ws(port = 47123)]
async fn first_raw(_conn: RawConnection) {}

const SECOND_RAW_LINE: u32 = line!() + 1;
#[raw_ws(port = 47123)]
fn second_raw(_conn: RawConnection) {}

/// The registry's errors: `start` fails with every one of them.
async fn registry_errors() -> (Vec<AppError>, String) {
    let err = match App::new().with_registered().start().await {
        Ok(handle) => {
            handle.shutdown().await;
            panic!("start succeeded with duplicate registrations");
        }
        Err(e) => e,
    };
    let message = err.to_string();
    match err {
        AppError::Several(errors) => (errors, message),
        other => panic!("expected both conflicts at once, got {other:?}"),
    }
}

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
    let (errors, message) = registry_errors().await;
    let err = errors
        .iter()
        .find(|e| matches!(e, AppError::DuplicateHandler { .. }))
        .unwrap_or_else(|| panic!("no DuplicateHandler in {errors:?}"));
    let a = origin("first_handler", FIRST_OPCODE_LINE);
    let b = origin("second_handler", SECOND_OPCODE_LINE);
    match err {
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
    let (errors, message) = registry_errors().await;
    let err = errors
        .iter()
        .find(|e| matches!(e, AppError::DuplicateRawService { .. }))
        .unwrap_or_else(|| panic!("no DuplicateRawService in {errors:?}"));
    let a = origin("first_raw", FIRST_RAW_LINE);
    let b = origin("second_raw", SECOND_RAW_LINE);
    match err {
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
