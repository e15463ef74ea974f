//! Compile tests for the macros: `tests/ui.rs` runs trybuild over
//! `tests/<macro>/pass/*.rs` (must compile and run) and `tests/<macro>/fail/*.rs`
//! (must fail with exactly the reviewed `.stderr` snapshot beside each case).
//! Regenerate snapshots with `TRYBUILD=overwrite cargo test -p ui-tests`, then
//! review them as a diff.
