//! trybuild over every macro: `<macro>/pass/*.rs` must compile (and run),
//! `<macro>/fail/*.rs` must fail with exactly the reviewed `.stderr` beside it.
//! All cases run from one `TestCases`, so the framework is built once.
//!
//! Snapshots that contain rustc's own trait or const-evaluation errors (rather
//! than our `syn::Error` texts) may drift between compiler versions; when they do,
//! regenerate with `TRYBUILD=overwrite cargo test -p ui-tests` and review the diff.

#[test]
fn ui() {
    // trybuild builds the cases in a project of its own (its own target directory,
    // target/tests/trybuild), which does not inherit the workspace's profiles: with
    // the default dev profile's full debug info each pass case's binary was ~130 MB,
    // 4.6 GiB in all, half of a cold CI run's disk. The cases' cargo inherits this.
    std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "0");
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
