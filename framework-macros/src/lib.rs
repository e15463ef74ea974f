//! Procedural macros for `framework` (the declarative layer lands with its issue).
