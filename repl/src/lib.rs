//! What the `ibarrow` binary carries beyond the engine library, shared with its tests: the
//! embedded demo. The command line itself is in `src/main.rs`.

#![warn(missing_docs)]

pub mod demo;
