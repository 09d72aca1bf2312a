//! Whether a native statement only reads, judged from its tokens in the source's own lexical
//! rules: the check a passthrough query to a source that is not writable must pass.
//!
//! It is the first of three lines: sessions of such a source are also opened read-only in the
//! database (`Dialect::session_setup`), and a database user without write grants is the real
//! boundary. Functions with side effects (`pg_terminate_backend`, …) are not recognised here.

use datafusion::sql::sqlparser::dialect::{
    Dialect as Lexer, GenericDialect, MsSqlDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use crate::dialect::Dialect;
use crate::error::SqlError;

/// Words a reading statement may start with (besides an opening parenthesis).
const READING_STARTS: [Keyword; 5] = [
    Keyword::SELECT,
    Keyword::WITH,
    Keyword::VALUES,
    Keyword::TABLE,
    Keyword::SHOW,
];

/// Words that write wherever they appear: data-modifying CTEs (`WITH d AS (DELETE …)`),
/// `SELECT … INTO` a table or a file, `SELECT … FOR UPDATE` locks, and the statements T-SQL
/// runs after a query without a semicolon (`SELECT 1 DROP TABLE t`).
const WRITING_WORDS: [Keyword; 21] = [
    Keyword::INSERT,
    Keyword::UPDATE,
    Keyword::DELETE,
    Keyword::MERGE,
    Keyword::INTO,
    Keyword::DROP,
    Keyword::CREATE,
    Keyword::ALTER,
    Keyword::TRUNCATE,
    Keyword::EXEC,
    Keyword::EXECUTE,
    Keyword::GRANT,
    Keyword::REVOKE,
    Keyword::CALL,
    Keyword::SET,
    Keyword::DECLARE,
    Keyword::COMMIT,
    Keyword::ROLLBACK,
    Keyword::PRAGMA,
    Keyword::ATTACH,
    Keyword::DETACH,
];

/// Functions that change the session or reach another server: `set_config` turns
/// PostgreSQL's read-only session back to read-write for the connection's whole life.
const WRITING_FUNCTIONS: [&str; 4] = ["set_config", "dblink", "dblink_exec", "lo_import"];

impl Dialect {
    fn lexer(self) -> Box<dyn Lexer> {
        match self {
            Dialect::PostgreSql => Box::new(PostgreSqlDialect {}),
            Dialect::MySql => Box::new(MySqlDialect {}),
            Dialect::Sqlite => Box::new(SQLiteDialect {}),
            Dialect::MsSql => Box::new(MsSqlDialect {}),
            Dialect::Firebird | Dialect::Db2 | Dialect::Ansi => Box::new(GenericDialect {}),
        }
    }
}

/// `Ok` when `sql` is one statement that starts like a query and names no writing keyword
/// outside quotes and comments; otherwise an error that says what was found.
pub fn check_reads_only(dialect: Dialect, sql: &str) -> Result<(), SqlError> {
    // Whether a backslash escapes depends on the server's NO_BACKSLASH_ESCAPES: a literal
    // could end elsewhere than the tokenizer thinks.
    if dialect == Dialect::MySql && sql.contains('\\') {
        return Err(SqlError::NotReadOnly(
            "the statement contains a backslash, whose meaning in MariaDB/MySQL strings \
             depends on the server's sql_mode"
                .into(),
        ));
    }
    let lexer = dialect.lexer();
    let tokens = Tokenizer::new(lexer.as_ref(), sql)
        .tokenize()
        .map_err(|err| {
            SqlError::NotReadOnly(format!(
                "the statement cannot be read as {} SQL ({err}), so it cannot be shown to only \
                 read",
                dialect.name()
            ))
        })?;
    // MariaDB runs the contents of `/*M! … */` comments.
    let executable_comment = tokens.iter().any(|t| {
        matches!(t, Token::Whitespace(Whitespace::MultiLineComment(text))
            if dialect == Dialect::MySql && (text.starts_with("M!") || text.starts_with('!')))
    });
    if executable_comment {
        return Err(SqlError::NotReadOnly(
            "the statement contains an executable comment (/*! … */ or /*M! … */)".into(),
        ));
    }
    let mut significant = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF));
    match significant.next() {
        None => return Err(SqlError::NotReadOnly("the statement is empty".into())),
        Some(Token::LParen) => {}
        Some(Token::Word(word))
            if word.quote_style.is_none() && READING_STARTS.contains(&word.keyword) => {}
        Some(other) => {
            return Err(SqlError::NotReadOnly(format!(
                "only queries (SELECT, WITH, VALUES, TABLE, SHOW) may run, and this statement \
                 starts with `{other}`"
            )));
        }
    }
    let mut after_semicolon = false;
    for token in significant {
        match token {
            Token::SemiColon => after_semicolon = true,
            _ if after_semicolon => {
                return Err(SqlError::NotReadOnly(
                    "the text holds more than one statement; pass one query".into(),
                ));
            }
            Token::Word(word)
                if word.quote_style.is_none() && WRITING_WORDS.contains(&word.keyword) =>
            {
                return Err(SqlError::NotReadOnly(format!(
                    "the query contains `{}`, which writes, locks or changes settings (quote it \
                     if it is a name)",
                    word.value
                )));
            }
            Token::Word(word)
                if word.quote_style.is_none()
                    && WRITING_FUNCTIONS
                        .iter()
                        .any(|f| word.value.eq_ignore_ascii_case(f)) =>
            {
                return Err(SqlError::NotReadOnly(format!(
                    "the query calls `{}`, which changes the session or reaches another server",
                    word.value
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Dialect; 6] = [
        Dialect::PostgreSql,
        Dialect::MySql,
        Dialect::Sqlite,
        Dialect::MsSql,
        Dialect::Db2,
        Dialect::Firebird,
    ];

    #[test]
    fn queries_pass() {
        for dialect in ALL {
            for sql in [
                "SELECT 1",
                "  select id, name FROM t WHERE name = 'INSERT INTO x' -- DELETE\n",
                "WITH a AS (SELECT 1 AS x) SELECT x FROM a;",
                "(SELECT 1) UNION (SELECT 2)",
                "VALUES (1), (2)",
                "SELECT 1;  ",
                "SELECT replace(name, 'a', 'b') FROM t /* UPDATE */",
            ] {
                assert_eq!(check_reads_only(dialect, sql), Ok(()), "{dialect:?}: {sql}");
            }
        }
        assert_eq!(
            check_reads_only(Dialect::PostgreSql, r#"SELECT "update", "into" FROM t"#),
            Ok(())
        );
        assert_eq!(
            check_reads_only(Dialect::MySql, "SELECT `delete` FROM t # UPDATE t\n"),
            Ok(())
        );
        assert_eq!(
            check_reads_only(Dialect::PostgreSql, "SELECT $$DELETE FROM t$$"),
            Ok(())
        );
    }

    #[test]
    fn mariadb_executable_comments_and_backslashes_are_refused() {
        for sql in [
            "SELECT * FROM t /*M! INTO OUTFILE '/tmp/x' */",
            "SELECT * FROM t /*! FOR UPDATE */",
            r"SELECT 'a\' INTO OUTFILE '/tmp/x' -- '",
            r"SELECT 'a\b' AS s",
        ] {
            assert!(
                matches!(
                    check_reads_only(Dialect::MySql, sql),
                    Err(SqlError::NotReadOnly(_))
                ),
                "let through: {sql}"
            );
        }
        assert_eq!(
            check_reads_only(Dialect::MySql, "SELECT 1 /* a plain comment */"),
            Ok(())
        );
    }

    #[test]
    fn writes_and_second_statements_are_refused() {
        for dialect in ALL {
            for sql in [
                "DELETE FROM t",
                "insert into t values (1)",
                "UPDATE t SET a = 1",
                "DROP TABLE t",
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
                "PRAGMA query_only = OFF",
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                "SELECT * INTO t2 FROM t",
                "SELECT * FROM t FOR UPDATE",
                "SELECT 1; DELETE FROM t",
                "SELECT 1; SELECT 2",
                "",
                "   -- only a comment",
                "CALL proc()",
                "SELECT 1 DROP TABLE t",
                "SELECT 1 EXEC('DELETE FROM t')",
                "SELECT 1 TRUNCATE TABLE t",
                "SELECT set_config('default_transaction_read_only', 'off', false)",
                "SELECT * FROM dblink('other', 'DELETE FROM t') AS x(n int)",
            ] {
                assert!(
                    matches!(
                        check_reads_only(dialect, sql),
                        Err(SqlError::NotReadOnly(_))
                    ),
                    "{dialect:?} let through: {sql}"
                );
            }
        }
    }
}
