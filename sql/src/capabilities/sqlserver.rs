//! Microsoft SQL Server.

use super::Capabilities;
use crate::session::IsolationLevel;

#[derive(Debug)]
pub struct SqlServer;

impl Capabilities for SqlServer {
    fn name(&self) -> &'static str {
        "SQL Server"
    }

    fn set_isolation(&self, level: IsolationLevel) -> Result<Option<String>, String> {
        Ok(Some(format!("SET TRANSACTION ISOLATION LEVEL {level}")))
    }
}
