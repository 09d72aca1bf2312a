//! A database ibarrow does not know: standard SQL, and every answer the cautious default.

use super::Capabilities;

#[derive(Debug)]
pub struct Ansi;

impl Capabilities for Ansi {
    fn name(&self) -> &'static str {
        "ANSI SQL"
    }
}
