//! trybuild over every macro: `<macro>/pass/*.rs` must compile (and run),
//! `<macro>/fail/*.rs` must fail with exactly the reviewed `.stderr` beside it.
//! All cases run from one `TestCases`, so the framework is built once.
//!
//! Snapshots that contain rustc's own trait or const-evaluation errors (rather
//! than our `syn::Error` texts) may drift between compiler versions; when they do,
//! regenerate with `TRYBUILD=overwrite cargo test -p ui-tests` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    for m in [
        "opcode",
        "override_opcode",
        "raw_ws",
        "message",
        "main",
        "hooks",
    ] {
        t.pass(format!("tests/{m}/pass/*.rs"));
        t.compile_fail(format!("tests/{m}/fail/*.rs"));
    }
}
