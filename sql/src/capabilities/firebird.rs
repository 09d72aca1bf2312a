//! Firebird and InterBase.

use super::Capabilities;

#[derive(Debug)]
pub struct Firebird;

impl Capabilities for Firebird {
    fn name(&self) -> &'static str {
        "Firebird"
    }

    fn like_is_case_sensitive(&self) -> bool {
        true
    }
}
