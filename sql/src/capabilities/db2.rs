//! IBM DB2.

use super::Capabilities;

#[derive(Debug)]
pub struct Db2;

impl Capabilities for Db2 {
    fn name(&self) -> &'static str {
        "DB2"
    }

    fn like_is_case_sensitive(&self) -> bool {
        true
    }
}
