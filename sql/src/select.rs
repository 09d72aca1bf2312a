//! The `SELECT` a remote scan sends.

use std::fmt;

use crate::dialect::{Dialect, LimitSyntax};
use crate::error::SqlError;

/// A remote table as the database names it. `qualifier` is the schema (PostgreSQL, SQL Server,
/// DB2, Firebird) or the database (MariaDB/MySQL); SQLite tables have none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteTable {
    /// The schema or database the table is in, unquoted; None for SQLite.
    pub qualifier: Option<String>,
    /// The table's own name, unquoted.
    pub name: String,
}

impl RemoteTable {
    /// The table `name` in `qualifier` (None: unqualified).
    pub fn new(qualifier: Option<impl Into<String>>, name: impl Into<String>) -> Self {
        Self {
            qualifier: qualifier.map(Into::into),
            name: name.into(),
        }
    }

    /// The quoted, qualified name for `dialect`.
    pub fn render(&self, dialect: Dialect) -> Result<String, SqlError> {
        let name = dialect.quote_identifier(&self.name)?;
        Ok(match &self.qualifier {
            Some(qualifier) => format!("{}.{name}", dialect.quote_identifier(qualifier)?),
            None => name,
        })
    }

    /// `INSERT INTO <table> (<columns>) VALUES (?, …)`: one parameter per column, in order.
    pub fn insert_statement(&self, dialect: Dialect, columns: &[&str]) -> Result<String, SqlError> {
        let names = columns
            .iter()
            .map(|c| dialect.quote_identifier(c))
            .collect::<Result<Vec<_>, _>>()?;
        let parameters = vec!["?"; columns.len()];
        Ok(format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.render(dialect)?,
            names.join(", "),
            parameters.join(", ")
        ))
    }
}

impl fmt::Display for RemoteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.qualifier {
            Some(q) => write!(f, "{q}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One column of a remote SELECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectColumn {
    /// The remote column name.
    pub name: String,
    /// Converted to text by the database (for types without an exact Arrow counterpart).
    pub as_text: bool,
}

impl SelectColumn {
    /// The column `name`, read as the database stores it (not converted to text).
    pub fn plain(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            as_text: false,
        }
    }
}

/// `SELECT <columns> FROM <table> [WHERE <filters>] [limit]`, the statement of one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSelect {
    /// The table scanned.
    pub table: RemoteTable,
    /// The columns read; empty when none is needed (`count(*)`), which selects a constant so
    /// that only the row count travels.
    pub columns: Vec<SelectColumn>,
    /// Already-rendered conditions (from [`crate::render_filter`]), joined with AND.
    pub filters: Vec<String>,
    /// At most this many rows, in the dialect's limit syntax; None for all.
    pub limit: Option<usize>,
}

impl RemoteSelect {
    /// The statement in `dialect`; fails when a name cannot be quoted in it.
    pub fn to_sql(&self, dialect: Dialect) -> Result<String, SqlError> {
        let mut sql = String::from("SELECT ");
        match (self.limit, dialect.limit_syntax()) {
            (Some(n), LimitSyntax::Top) => sql.push_str(&format!("TOP {n} ")),
            (Some(n), LimitSyntax::First) => sql.push_str(&format!("FIRST {n} ")),
            _ => {}
        }
        if self.columns.is_empty() {
            sql.push('1');
        } else {
            let columns = self
                .columns
                .iter()
                .map(|c| {
                    let quoted = dialect.quote_identifier(&c.name)?;
                    Ok(if c.as_text {
                        format!("{} AS {quoted}", dialect.cast_to_text(&quoted))
                    } else {
                        quoted
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            sql.push_str(&columns.join(", "));
        }
        sql.push_str(" FROM ");
        sql.push_str(&self.table.render(dialect)?);
        if !self.filters.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.filters.join(" AND "));
        }
        match (self.limit, dialect.limit_syntax()) {
            (Some(n), LimitSyntax::Limit) => sql.push_str(&format!(" LIMIT {n}")),
            (Some(n), LimitSyntax::FetchFirst) => {
                sql.push_str(&format!(" FETCH FIRST {n} ROWS ONLY"))
            }
            _ => {}
        }
        Ok(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test]
    fn insert_statements_quote_every_name() {
        let table = RemoteTable::new(Some("shop"), "order lines");
        assert_eq!(
            table
                .insert_statement(Dialect::MySql, &["id", "we`ird"])
                .unwrap(),
            "INSERT INTO `shop`.`order lines` (`id`, `we``ird`) VALUES (?, ?)"
        );
        assert_eq!(
            table
                .insert_statement(Dialect::PostgreSql, &["id"])
                .unwrap(),
            r#"INSERT INTO "shop"."order lines" ("id") VALUES (?)"#
        );
    }

    fn select(limit: Option<usize>) -> RemoteSelect {
        RemoteSelect {
            table: RemoteTable::new(Some("shop"), "orders"),
            columns: vec![SelectColumn::plain("id"), SelectColumn::plain("total")],
            filters: vec!["(x = 1)".into(), "(y = 2)".into()],
            limit,
        }
    }

    #[test_case(
        Dialect::PostgreSql,
        r#"SELECT "id", "total" FROM "shop"."orders" WHERE (x = 1) AND (y = 2) LIMIT 10"#
    )]
    #[test_case(
        Dialect::MySql,
        "SELECT `id`, `total` FROM `shop`.`orders` WHERE (x = 1) AND (y = 2) LIMIT 10"
    )]
    #[test_case(
        Dialect::MsSql,
        "SELECT TOP 10 [id], [total] FROM [shop].[orders] WHERE (x = 1) AND (y = 2)"
    )]
    #[test_case(
        Dialect::Firebird,
        r#"SELECT FIRST 10 "id", "total" FROM "shop"."orders" WHERE (x = 1) AND (y = 2)"#
    )]
    #[test_case(Dialect::Db2, r#"SELECT "id", "total" FROM "shop"."orders" WHERE (x = 1) AND (y = 2) FETCH FIRST 10 ROWS ONLY"#)]
    fn limit_syntax_per_dialect(dialect: Dialect, expected: &str) {
        assert_eq!(select(Some(10)).to_sql(dialect).unwrap(), expected);
    }

    #[test]
    fn text_columns_are_cast_and_keep_their_names() {
        let scan = RemoteSelect {
            table: RemoteTable::new(Some("public"), "t"),
            columns: vec![SelectColumn {
                name: "n".into(),
                as_text: true,
            }],
            filters: vec![],
            limit: None,
        };
        assert_eq!(
            scan.to_sql(Dialect::PostgreSql).unwrap(),
            r#"SELECT CAST("n" AS TEXT) AS "n" FROM "public"."t""#
        );
        assert_eq!(
            scan.to_sql(Dialect::MySql).unwrap(),
            "SELECT CAST(`n` AS CHAR) AS `n` FROM `public`.`t`"
        );
    }

    #[test]
    fn no_columns_selects_a_constant() {
        let scan = RemoteSelect {
            table: RemoteTable::new(None::<String>, "t"),
            columns: vec![],
            filters: vec![],
            limit: None,
        };
        assert_eq!(
            scan.to_sql(Dialect::Sqlite).unwrap(),
            r#"SELECT 1 FROM "t""#
        );
    }
}
