//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the very
//! bodies the cargo-fuzz targets run (`fuzz/bodies/*.rs`, included here by path),
//! so every input the fuzzers kept stays checked by an ordinary `cargo test`,
//! without nightly or cargo-fuzz. The seeds each body generates are replayed too.
//! How the corpus was made, and how to fuzz: `docs/fuzzing.md`.

use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "../fuzz/bodies/frame_dispatch.rs"]
mod frame_dispatch;
#[allow(dead_code)]
#[path = "../fuzz/bodies/handshake.rs"]
mod handshake;
#[allow(dead_code)]
#[path = "../fuzz/bodies/jwt.rs"]
mod jwt;
#[allow(dead_code)]
#[path = "../fuzz/bodies/message_decode.rs"]
mod message_decode;
#[allow(dead_code)]
#[path = "../fuzz/bodies/ws_frames.rs"]
mod ws_frames;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every corpus file and every seed of `target` through `run`; a failure
/// names the file.
fn replay(target: &str, run: fn(&[u8]), seeds: fn() -> Vec<Vec<u8>>) {
    let files = corpus(target);
    assert!(
        files.len() >= 10,
        "the {target} corpus has {} files",
        files.len()
    );
    for file in &files {
        let data = std::fs::read(file).expect("a corpus file");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} fails", file.display());
    }
    for (i, seed) in seeds().iter().enumerate() {
        let outcome = std::panic::catch_unwind(|| run(seed));
        assert!(outcome.is_ok(), "{target} seed {i} fails");
    }
}

#[test]
fn frame_dispatch_corpus() {
    replay("frame_dispatch", frame_dispatch::run, frame_dispatch::seeds);
}

#[test]
fn message_decode_corpus() {
    replay("message_decode", message_decode::run, message_decode::seeds);
}

#[test]
fn handshake_corpus() {
    replay("handshake", handshake::run, handshake::seeds);
}

#[test]
fn jwt_corpus() {
    replay("jwt", jwt::run, jwt::seeds);
}

#[test]
fn ws_frames_corpus() {
    replay("ws_frames", ws_frames::run, ws_frames::seeds);
}
