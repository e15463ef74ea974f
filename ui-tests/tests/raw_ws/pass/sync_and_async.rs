//! A sync raw handler registering callbacks and an async one looping on `recv`.

use framework::prelude::*;

#[raw_ws(port = 8082)]
fn callbacks(conn: RawConnection) {
    conn.on_data(|conn, msg| {
        let _ = conn.send(msg.into_bytes());
    });
    conn.on_close(|_| {});
}

#[raw_ws(port = 0)]
async fn looping(conn: RawConnection) {
    while let Some(msg) = conn.recv().await {
        let _ = conn.send(msg.into_bytes());
    }
}

#[raw_ws(port = 65535)]
async fn trailing_comma(_conn: RawConnection) {}

/// The port overridden by `$PORT` at run time.
#[raw_ws(env = "PORT", port = 8083)]
async fn from_env(_conn: RawConnection) {}

fn main() {
    let names: Vec<_> = framework::registry::all().map(|r| r.name).collect();
    for name in ["callbacks", "looping", "trailing_comma", "from_env"] {
        assert!(names.contains(&name), "{name} not registered: {names:?}");
    }
}
