//! Compile-fail tests for the macros live in `tests/` (added with the macros).
