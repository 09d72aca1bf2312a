//! The SQL dialects ibarrow speaks, detected from the driver's `SQL_DBMS_NAME`.
//!
//! Everything that differs between databases when rendering a remote statement lives here:
//! identifier quoting, string/binary/temporal literal syntax and row-limit syntax. Rendering of
//! whole expressions is in [`crate::filter`]; it asks the dialect only for these primitives.

use std::fmt;

use crate::error::SqlError;

/// A database family whose SQL ibarrow can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// PostgreSQL.
    PostgreSql,
    /// MariaDB and MySQL.
    MySql,
    /// SQLite.
    Sqlite,
    /// Microsoft SQL Server.
    MsSql,
    /// Firebird and InterBase.
    Firebird,
    /// IBM Db2.
    Db2,
    /// Standard SQL only, for databases ibarrow does not know.
    Ansi,
}

/// How a dialect spells "at most N rows".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSyntax {
    /// `SELECT … LIMIT n`
    Limit,
    /// `SELECT TOP n …`
    Top,
    /// `SELECT FIRST n …`
    First,
    /// `SELECT … FETCH FIRST n ROWS ONLY`
    FetchFirst,
}

impl Dialect {
    /// Every dialect, [`Dialect::Ansi`] last.
    pub const ALL: [Dialect; 7] = [
        Dialect::PostgreSql,
        Dialect::MySql,
        Dialect::Sqlite,
        Dialect::MsSql,
        Dialect::Firebird,
        Dialect::Db2,
        Dialect::Ansi,
    ];

    /// Maps the value of `SQLGetInfo(SQL_DBMS_NAME)` to a dialect; unknown names get [`Dialect::Ansi`].
    pub fn from_dbms_name(dbms_name: &str) -> Dialect {
        let name = dbms_name.to_ascii_lowercase();
        if name.contains("postgres") {
            Dialect::PostgreSql
        } else if name.contains("mysql") || name.contains("mariadb") {
            Dialect::MySql
        } else if name.contains("sqlite") {
            Dialect::Sqlite
        } else if name.contains("sql server") || name.contains("microsoft") {
            Dialect::MsSql
        } else if name.contains("firebird") || name.contains("interbase") {
            Dialect::Firebird
        } else if name.contains("db2") {
            Dialect::Db2
        } else {
            Dialect::Ansi
        }
    }

    /// The database family's name for messages, e.g. `PostgreSQL` or `MySQL/MariaDB`.
    pub fn name(self) -> &'static str {
        self.capabilities().name()
    }

    /// The cheapest statement that proves a connection answers.
    pub fn ping_statement(self) -> &'static str {
        match self {
            Dialect::Firebird => "SELECT 1 FROM RDB$DATABASE",
            Dialect::Db2 => "SELECT 1 FROM SYSIBM.SYSDUMMY1",
            _ => "SELECT 1",
        }
    }

    /// How this dialect spells a row limit.
    pub fn limit_syntax(self) -> LimitSyntax {
        match self {
            Dialect::PostgreSql | Dialect::MySql | Dialect::Sqlite => LimitSyntax::Limit,
            Dialect::MsSql => LimitSyntax::Top,
            Dialect::Firebird => LimitSyntax::First,
            Dialect::Db2 | Dialect::Ansi => LimitSyntax::FetchFirst,
        }
    }

    /// Quotes an identifier so that any character in it is part of the name. Refuses a NUL,
    /// which no database accepts in a name and which would end the statement text in C drivers.
    pub fn quote_identifier(self, ident: &str) -> Result<String, SqlError> {
        if ident.contains('\0') {
            return Err(SqlError::InvalidIdentifier {
                identifier: ident.escape_default().to_string(),
                reason: "it contains a NUL character",
            });
        }
        let (open, close) = match self {
            Dialect::MySql => ('`', '`'),
            Dialect::MsSql => ('[', ']'),
            _ => ('"', '"'),
        };
        let mut quoted = String::with_capacity(ident.len() + 2);
        quoted.push(open);
        for c in ident.chars() {
            if c == close {
                quoted.push(close);
            }
            quoted.push(c);
        }
        quoted.push(close);
        Ok(quoted)
    }

    /// A string literal that the database reads back as exactly `value`, whatever the server's
    /// escaping mode. `None` when the dialect cannot represent it safely (a NUL character), in
    /// which case the comparison stays in DataFusion.
    ///
    /// MySQL/MariaDB get a hex literal marked as UTF-8 text (`_utf8mb4 X'…'`): it needs no
    /// escaping under any `sql_mode` (backslash escapes or not), and as text it is converted to
    /// a latin1 or ucs2 column's character set like any string (bare hex would be raw bytes
    /// there). Compared with [`Dialect::bytewise_string_column`] it compares byte-wise, the way
    /// DataFusion compares strings.
    pub fn string_literal(self, value: &str) -> Option<String> {
        if value.contains('\0') {
            return None;
        }
        Some(match self {
            Dialect::MySql => format!("_utf8mb4 {}", hex_literal(value.as_bytes())),
            // E'' strings mean the same with standard_conforming_strings on or off.
            Dialect::PostgreSql if value.contains('\\') => {
                format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
            }
            Dialect::MsSql => format!("N'{}'", value.replace('\'', "''")),
            _ => format!("'{}'", value.replace('\'', "''")),
        })
    }

    /// A binary-string literal.
    pub fn binary_literal(self, value: &[u8]) -> String {
        match self {
            // decode() reads the same with standard_conforming_strings on or off.
            Dialect::PostgreSql => {
                let mut hex = String::with_capacity(value.len() * 2);
                push_hex(&mut hex, value);
                format!("decode('{hex}', 'hex')")
            }
            Dialect::MsSql => {
                let mut hex = String::from("0x");
                push_hex(&mut hex, value);
                hex
            }
            Dialect::Db2 => format!("B{}", hex_literal(value)),
            _ => hex_literal(value),
        }
    }

    /// A boolean literal: `1`/`0` where the database has no boolean type (SQLite, SQL
    /// Server), else `TRUE`/`FALSE`.
    pub fn boolean_literal(self, value: bool) -> &'static str {
        match (self, value) {
            (Dialect::Sqlite | Dialect::MsSql, true) => "1",
            (Dialect::Sqlite | Dialect::MsSql, false) => "0",
            (_, true) => "TRUE",
            (_, false) => "FALSE",
        }
    }

    /// Whether a boolean column can stand alone as a predicate (`WHERE flag`).
    pub fn has_boolean_predicates(self) -> bool {
        !matches!(self, Dialect::MsSql)
    }

    /// `date` is `YYYY-MM-DD`.
    pub fn date_literal(self, date: &str) -> String {
        match self {
            // SQLite keeps dates as ISO text; compare them as text.
            Dialect::Sqlite => format!("'{date}'"),
            Dialect::MsSql => format!("CAST('{date}' AS DATE)"),
            _ => format!("DATE '{date}'"),
        }
    }

    /// `time` is `HH:MM:SS[.fffffffff]`.
    pub fn time_literal(self, time: &str) -> String {
        match self {
            Dialect::Sqlite => format!("'{time}'"),
            Dialect::MsSql => format!("CAST('{time}' AS TIME)"),
            _ => format!("TIME '{time}'"),
        }
    }

    /// `timestamp` is `YYYY-MM-DD HH:MM:SS[.fffffffff]`.
    pub fn timestamp_literal(self, timestamp: &str) -> String {
        match self {
            Dialect::Sqlite => format!("'{timestamp}'"),
            Dialect::MsSql => format!("CAST('{timestamp}' AS DATETIME2)"),
            _ => format!("TIMESTAMP '{timestamp}'"),
        }
    }

    /// An expression converted to unbounded text.
    pub fn cast_to_text(self, expr: &str) -> String {
        match self {
            Dialect::PostgreSql | Dialect::Sqlite => format!("CAST({expr} AS TEXT)"),
            Dialect::MySql => format!("CAST({expr} AS CHAR)"),
            Dialect::MsSql => format!("CAST({expr} AS NVARCHAR(MAX))"),
            Dialect::Firebird | Dialect::Db2 | Dialect::Ansi => {
                format!("CAST({expr} AS VARCHAR(32000))")
            }
        }
    }

    /// A string column as an operand of a comparison. MariaDB/MySQL compare through the
    /// column's collation, which is usually case-insensitive and ignores trailing blanks;
    /// as a binary string the column compares byte-wise, as DataFusion does. It is converted
    /// to UTF-8 first, so that its bytes are those of the (UTF-8) literal whatever the
    /// column's character set (latin1, ucs2 …).
    pub fn bytewise_string_column(self, quoted_column: String) -> String {
        match self {
            Dialect::MySql => format!("CAST(CONVERT({quoted_column} USING utf8mb4) AS BINARY)"),
            _ => quoted_column,
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xF) as usize] as char);
    }
}

fn hex_literal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2 + 3);
    out.push_str("X'");
    push_hex(&mut out, bytes);
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case("PostgreSQL", Dialect::PostgreSql)]
    #[test_case("MariaDB", Dialect::MySql)]
    #[test_case("MySQL", Dialect::MySql)]
    #[test_case("SQLite", Dialect::Sqlite)]
    #[test_case("Microsoft SQL Server", Dialect::MsSql)]
    #[test_case("Firebird", Dialect::Firebird)]
    #[test_case("DB2/LINUXX8664", Dialect::Db2)]
    #[test_case("Teradata", Dialect::Ansi)]
    fn detects_dialect_from_dbms_name(name: &str, expected: Dialect) {
        assert_eq!(Dialect::from_dbms_name(name), expected);
    }

    #[test_case(Dialect::PostgreSql, r#""we""ird""#)]
    #[test_case(Dialect::MySql, r#"`we"ird`"#)]
    #[test_case(Dialect::MsSql, r#"[we"ird]"#)]
    fn quotes_identifiers(dialect: Dialect, expected: &str) {
        assert_eq!(dialect.quote_identifier(r#"we"ird"#).unwrap(), expected);
    }

    #[test]
    fn doubles_closing_quote_characters() {
        assert_eq!(Dialect::MySql.quote_identifier("a`b").unwrap(), "`a``b`");
        assert_eq!(Dialect::MsSql.quote_identifier("a]b[").unwrap(), "[a]]b[]");
        assert_eq!(
            Dialect::Sqlite.quote_identifier("a\"b").unwrap(),
            "\"a\"\"b\""
        );
    }

    #[test]
    fn refuses_nul_in_identifiers() {
        let err = Dialect::PostgreSql.quote_identifier("a\0b").unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
    }

    #[test]
    fn postgres_escapes_backslashes_in_e_strings() {
        assert_eq!(
            Dialect::PostgreSql
                .string_literal(r"x\' OR 1=1 --")
                .unwrap(),
            r"E'x\\'' OR 1=1 --'"
        );
        assert_eq!(
            Dialect::PostgreSql.string_literal("it's").unwrap(),
            "'it''s'"
        );
        assert_eq!(
            Dialect::PostgreSql.string_literal("tail\\").unwrap(),
            r"E'tail\\'"
        );
    }

    #[test]
    fn mysql_strings_are_hex() {
        assert_eq!(
            Dialect::MySql.string_literal("a'\\").unwrap(),
            "_utf8mb4 X'61275C'"
        );
        assert_eq!(Dialect::MySql.string_literal("").unwrap(), "_utf8mb4 X''");
    }

    #[test]
    fn sqlite_and_ansi_double_quotes_only() {
        assert_eq!(Dialect::Sqlite.string_literal(r"a'\").unwrap(), r"'a''\'");
        assert_eq!(Dialect::MsSql.string_literal("é'").unwrap(), "N'é'''");
    }

    #[test]
    fn nul_in_strings_is_not_rendered() {
        for dialect in Dialect::ALL {
            assert_eq!(dialect.string_literal("a\0b"), None, "{dialect}");
        }
    }

    #[test]
    fn binary_literals() {
        assert_eq!(
            Dialect::PostgreSql.binary_literal(&[0, 255]),
            "decode('00FF', 'hex')"
        );
        assert_eq!(Dialect::MySql.binary_literal(&[0, 255]), "X'00FF'");
        assert_eq!(Dialect::MsSql.binary_literal(&[0, 255]), "0x00FF");
        assert_eq!(Dialect::Db2.binary_literal(&[0, 255]), "BX'00FF'");
    }
}
