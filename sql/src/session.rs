//! Session settings applied to every new connection of a source: read-only mode and the
//! transaction isolation level, spelled in each database's own statements (ODBC's
//! `SQL_ATTR_ACCESS_MODE` is a hint most drivers ignore, so it is not relied on).

use std::fmt;
use std::str::FromStr;

use crate::dialect::Dialect;
use crate::error::SqlError;

/// A transaction isolation level, as `SET TRANSACTION ISOLATION LEVEL` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// `READ UNCOMMITTED`: may see other transactions' uncommitted changes.
    ReadUncommitted,
    /// `READ COMMITTED`: sees only committed changes, each statement anew.
    ReadCommitted,
    /// `REPEATABLE READ`: rows once read do not change within the transaction.
    RepeatableRead,
    /// `SERIALIZABLE`: as if the transactions ran one after another.
    Serializable,
    /// SQL Server's row-versioning level.
    Snapshot,
}

impl IsolationLevel {
    fn sql(self) -> &'static str {
        match self {
            IsolationLevel::ReadUncommitted => "READ UNCOMMITTED",
            IsolationLevel::ReadCommitted => "READ COMMITTED",
            IsolationLevel::RepeatableRead => "REPEATABLE READ",
            IsolationLevel::Serializable => "SERIALIZABLE",
            IsolationLevel::Snapshot => "SNAPSHOT",
        }
    }
}

impl fmt::Display for IsolationLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql())
    }
}

impl FromStr for IsolationLevel {
    type Err = SqlError;

    /// Accepts `read_committed`, `READ COMMITTED`, `read-committed`, any case.
    fn from_str(text: &str) -> Result<Self, SqlError> {
        let words: Vec<String> = text
            .split(|c: char| c == '_' || c == '-' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        match words.join(" ").as_str() {
            "read uncommitted" => Ok(IsolationLevel::ReadUncommitted),
            "read committed" => Ok(IsolationLevel::ReadCommitted),
            "repeatable read" => Ok(IsolationLevel::RepeatableRead),
            "serializable" => Ok(IsolationLevel::Serializable),
            "snapshot" => Ok(IsolationLevel::Snapshot),
            _ => Err(SqlError::Unsupported(format!(
                "unknown isolation level `{text}`; use read_uncommitted, read_committed, \
                 repeatable_read, serializable or snapshot"
            ))),
        }
    }
}

/// What every connection of a source is set to when it opens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionSettings {
    /// Open the session read-only, so that no statement may write.
    pub read_only: bool,
    /// The isolation level to set; None keeps the database's default.
    pub isolation: Option<IsolationLevel>,
}

impl Dialect {
    /// The statements that put a new connection into `settings`, or an error naming the
    /// setting this database cannot honour.
    pub fn session_setup(self, settings: &SessionSettings) -> Result<Vec<String>, SqlError> {
        let capabilities = self.capabilities();
        let mut statements = Vec::new();
        if settings.read_only {
            match capabilities.read_only_session() {
                Some(statement) => statements.push(statement.to_string()),
                None => {
                    return Err(SqlError::Unsupported(format!(
                        "read-only sessions are not supported for {self}; connect with a \
                         database user that may only read instead"
                    )));
                }
            }
        }
        if let Some(level) = settings.isolation {
            match capabilities.set_isolation(level) {
                Ok(Some(statement)) => statements.push(statement),
                Ok(None) => {}
                Err(reason) => return Err(SqlError::Unsupported(reason)),
            }
        }
        Ok(statements)
    }

    /// Whether [`Self::session_setup`] can open this database's sessions read-only.
    pub fn has_read_only_sessions(self) -> bool {
        self.capabilities().read_only_session().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_levels_parse_in_any_spelling() {
        for text in [
            "read_committed",
            "READ COMMITTED",
            "Read-Committed",
            " read  committed ",
        ] {
            assert_eq!(text.parse(), Ok(IsolationLevel::ReadCommitted), "{text}");
        }
        let err = "chaos".parse::<IsolationLevel>().unwrap_err().to_string();
        assert!(err.contains("unknown isolation level `chaos`"), "{err}");
    }

    #[test]
    fn each_database_gets_its_own_statements() {
        let both = SessionSettings {
            read_only: true,
            isolation: Some(IsolationLevel::RepeatableRead),
        };
        assert_eq!(
            Dialect::PostgreSql.session_setup(&both).unwrap(),
            [
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ"
            ]
        );
        assert_eq!(
            Dialect::MySql.session_setup(&both).unwrap(),
            [
                "SET SESSION TRANSACTION READ ONLY",
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"
            ]
        );
        let err = Dialect::Sqlite
            .session_setup(&both)
            .unwrap_err()
            .to_string();
        assert!(err.contains("SERIALIZABLE"), "{err}");
        let read_only = SessionSettings {
            read_only: true,
            isolation: Some(IsolationLevel::Serializable),
        };
        assert_eq!(
            Dialect::Sqlite.session_setup(&read_only).unwrap(),
            ["PRAGMA query_only = ON"]
        );
        assert!(
            Dialect::PostgreSql
                .session_setup(&SessionSettings::default())
                .unwrap()
                .is_empty()
        );
    }
}
