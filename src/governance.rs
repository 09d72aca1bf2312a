//! What the engine accepts before planning: SQL text within a size limit, without control
//! characters, valid UTF-8, one statement per call (unless the caller asks for a script), and
//! only statements that read (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE).

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;

use crate::error::{Error, Result};

/// The operating-system user running this process, the identity the REPL and Python sessions
/// carry when their caller names none. On Unix it is the name of the real user id: `USER` can
/// be set to anyone's name, and grants and the audit log go by this identity.
pub fn os_user() -> String {
    #[cfg(unix)]
    {
        let uid = nix::unistd::getuid();
        match nix::unistd::User::from_uid(uid) {
            Ok(Some(user)) => user.name,
            // A uid without a passwd entry (containers): its number, which cannot be chosen.
            _ => uid.to_string(),
        }
    }
    #[cfg(not(unix))]
    {
        std::env::var("USERNAME").unwrap_or_else(|_| "unknown".to_string())
    }
}

/// Limits on the query text; `[engine] max_sql_bytes` sets the size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputLimits {
    /// The longest SQL text accepted, in bytes (default 1 MiB).
    pub max_sql_bytes: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_sql_bytes: 1024 * 1024,
        }
    }
}

/// Refuses text over the size limit or with control characters other than tab, line feed
/// and carriage return; the error names the limit or the character's position.
pub fn check_text(sql: &str, limits: &InputLimits) -> Result<()> {
    if sql.len() > limits.max_sql_bytes {
        return Err(Error::InputRejected(format!(
            "the SQL text is {} bytes, over the limit of {} bytes (max_sql_bytes); send a \
             shorter statement or raise [engine] max_sql_bytes",
            sql.len(),
            limits.max_sql_bytes
        )));
    }
    if let Some((offset, c)) = sql
        .char_indices()
        .find(|&(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(Error::InputRejected(format!(
            "the SQL text contains the control character U+{:04X} at byte {offset}; only \
             tab, line feed and carriage return are allowed",
            c as u32
        )));
    }
    Ok(())
}

/// Text from bytes (Python callers may pass bytes); invalid UTF-8 is refused with its position.
pub fn decode(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|err| {
        Error::InputRejected(format!(
            "the SQL text is not valid UTF-8 (at byte {}); send it UTF-8 encoded",
            err.valid_up_to()
        ))
    })
}

/// Refuses every statement other than queries and `INSERT INTO`: ibarrow does not change the
/// engine's settings or a database's schema, and an INSERT reaches only a source configured
/// `writable` (the tables of other sources refuse it when it is planned).
pub fn check_statement_kind(statement: &DfStatement) -> Result<()> {
    let refused = |what: &str| {
        Err(Error::InputRejected(format!(
            "{what} is refused: ibarrow runs queries (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE) \
             and INSERT INTO tables of writable sources; change a database otherwise with its \
             own tools"
        )))
    };
    match statement {
        DfStatement::Statement(inner) => match inner.as_ref() {
            Statement::Query(_)
            | Statement::ExplainTable { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowFunctions { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowCreate { .. }
            | Statement::ShowObjects(_)
            | Statement::Insert(_) => Ok(()),
            Statement::Explain { statement, .. } => {
                check_statement_kind(&DfStatement::Statement(statement.clone()))
            }
            other => refused(&format!("`{}`", first_words(&other.to_string()))),
        },
        DfStatement::Explain(explain) => check_statement_kind(&explain.statement),
        DfStatement::CreateExternalTable(_) => refused("CREATE EXTERNAL TABLE"),
        DfStatement::CopyTo(_) => refused("COPY"),
        DfStatement::Reset(_) => refused("RESET"),
    }
}

/// The statement's leading keywords, for naming it in an error without echoing its data.
fn first_words(statement: &str) -> String {
    statement
        .split_whitespace()
        .take_while(|word| word.chars().all(|c| c.is_ascii_alphabetic()))
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_limit_holds_at_its_boundary() {
        let limits = InputLimits { max_sql_bytes: 20 };
        assert!(check_text(&"x".repeat(20), &limits).is_ok());
        let err = check_text(&"x".repeat(21), &limits)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("21 bytes") && err.contains("max_sql_bytes"),
            "{err}"
        );
    }

    #[test]
    fn control_characters_other_than_whitespace_are_refused() {
        let limits = InputLimits::default();
        assert!(check_text("SELECT 1\n\tFROM t\r\n", &limits).is_ok());
        for bad in [
            "SELECT 1\0",
            "SELECT '\u{1b}[2J'",
            "SELECT\u{7f}1",
            "SELECT \u{85}",
        ] {
            let err = check_text(bad, &limits).unwrap_err().to_string();
            assert!(err.contains("control character U+"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn invalid_utf8_is_refused_with_its_position() {
        assert_eq!(decode(b"SELECT 1").unwrap(), "SELECT 1");
        let err = decode(b"SELECT '\xff'").unwrap_err().to_string();
        assert!(err.contains("not valid UTF-8 (at byte 8)"), "{err}");
    }

    /// A property of the sanitizer over many generated texts: it never panics, and it accepts
    /// exactly the texts within the limit that hold no forbidden control character.
    #[test]
    fn the_sanitizer_accepts_exactly_the_allowed_texts() {
        let limits = InputLimits { max_sql_bytes: 64 };
        let alphabet: Vec<char> = "SELECT 'x';\t\n\r\0\u{1}\u{7f}\u{85}\u{a0}é漢😀\"-/*"
            .chars()
            .collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..100_000 {
            let len = (next() % 40) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let allowed = text.len() <= limits.max_sql_bytes
                && text
                    .chars()
                    .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'));
            assert_eq!(check_text(&text, &limits).is_ok(), allowed, "{text:?}");
        }
    }
}
