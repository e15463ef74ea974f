//! Helpers shared by the tests of `fw`: temporary directories, flatc, and
//! running the binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a test waits for something that should happen promptly (generous for
/// a loaded machine; a passing test never waits this long).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The `fw` binary.
pub const FW: &str = env!("CARGO_BIN_EXE_fw");

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fw-test-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    /// A path inside.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs flatc (from PATH, as scripts/test.sh sets it up) and asserts it worked.
pub fn flatc(args: &[&std::ffi::OsStr]) -> Output {
    let out = Command::new("flatc")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run flatc ({e}): run scripts/test.sh, which installs flatc 25.12.19")
        });
    assert!(
        out.status.success(),
        "flatc {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Compiles `fbs` to a binary schema in its directory; returns the `.bfbs` path.
pub fn compile_bfbs(fbs: &Path) -> PathBuf {
    let dir = fbs.parent().expect("a directory");
    flatc(&[
        "--binary".as_ref(),
        "--schema".as_ref(),
        "-o".as_ref(),
        dir.as_os_str(),
        fbs.as_os_str(),
    ]);
    fbs.with_extension("bfbs")
}
