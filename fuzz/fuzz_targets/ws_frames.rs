#![no_main]

// The body is shared with the corpus replay test (tests/fuzz_corpus.rs); its
// seeds() serves fuzz/examples/seeds.rs.
#[allow(dead_code)]
#[path = "../bodies/ws_frames.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
