//! Writes the seed inputs of every target to `fuzz/seeds/<target>/` (a starting
//! point for a fresh corpus; the committed corpus in `fuzz/corpus/` grew from
//! them). `cargo run --example seeds` in `fuzz/`.

#[path = "../bodies/frame_dispatch.rs"]
mod frame_dispatch;
#[path = "../bodies/handshake.rs"]
mod handshake;
#[path = "../bodies/jwt.rs"]
mod jwt;
#[path = "../bodies/message_decode.rs"]
mod message_decode;
#[path = "../bodies/ws_frames.rs"]
mod ws_frames;

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let targets: [(&str, fn() -> Vec<Vec<u8>>, fn(&[u8])); 5] = [
        ("frame_dispatch", frame_dispatch::seeds, frame_dispatch::run),
        ("message_decode", message_decode::seeds, message_decode::run),
        ("handshake", handshake::seeds, handshake::run),
        ("jwt", jwt::seeds, jwt::run),
        ("ws_frames", ws_frames::seeds, ws_frames::run),
    ];
    for (name, seeds, run) in targets {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        let seeds = seeds();
        for (i, seed) in seeds.iter().enumerate() {
            // Every seed passes its own target's checks.
            run(seed);
            std::fs::write(dir.join(format!("seed-{i:03}")), seed)?;
        }
        println!("{name}: {} seeds in {}", seeds.len(), dir.display());
    }
    Ok(())
}
