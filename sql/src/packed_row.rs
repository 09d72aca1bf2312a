//! Packed rows: a statement whose rows come back as one text value each.
//!
//! psqlODBC spends most of a scan's client time per value it converts into a bound buffer,
//! whatever the type. Asking PostgreSQL for each row as its record text, `(1,2.50,"a b",)`,
//! hands the driver one value per row instead of one per column; the scan splits and parses
//! the text itself (`ibarrow-providers`' `packed_rows`). The record text of numbers, booleans
//! and text does not depend on session settings; dates do (`DateStyle`), so they are sent as
//! days since 1970-01-01 instead.

use crate::{Dialect, SqlError};

/// Dialects whose record text the scan's parser has been proven against.
pub fn packed_rows_proven(dialect: Dialect) -> bool {
    dialect == Dialect::PostgreSql
}

/// One column of the statement being packed, by its output name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedColumn {
    pub name: String,
    /// A date, sent as a day count (`DateStyle` cannot change an integer).
    pub as_days: bool,
}

/// `statement` with each row as one text value holding `columns` in order.
pub fn packed_row_statement(
    dialect: Dialect,
    statement: &str,
    columns: &[PackedColumn],
) -> Result<String, SqlError> {
    if !packed_rows_proven(dialect) {
        return Err(SqlError::Unsupported(format!(
            "packed rows are only read from PostgreSQL, not {dialect}"
        )));
    }
    if columns.is_empty() {
        return Err(SqlError::NotRemote("a statement without columns".into()));
    }
    let values = columns
        .iter()
        .map(|column| {
            let name = dialect.quote_identifier(&column.name)?;
            Ok(if column.as_days {
                format!("({name} - DATE '1970-01-01')")
            } else {
                name
            })
        })
        .collect::<Result<Vec<_>, SqlError>>()?;
    let alias = dialect.quote_identifier("ibarrow_row")?;
    Ok(format!(
        "SELECT ROW({})::text FROM ({statement}) AS {alias}",
        values.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, as_days: bool) -> PackedColumn {
        PackedColumn {
            name: name.into(),
            as_days,
        }
    }

    #[test]
    fn wraps_the_statement_and_sends_dates_as_days() {
        let sql = packed_row_statement(
            Dialect::PostgreSql,
            "SELECT \"a\", \"d\" FROM \"t\"",
            &[column("a", false), column("d\"x", true)],
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT ROW(\"a\", (\"d\"\"x\" - DATE '1970-01-01'))::text \
             FROM (SELECT \"a\", \"d\" FROM \"t\") AS \"ibarrow_row\""
        );
    }

    #[test]
    fn refuses_unproven_dialects_and_empty_rows() {
        assert!(matches!(
            packed_row_statement(Dialect::MySql, "SELECT 1", &[column("a", false)]),
            Err(SqlError::Unsupported(_))
        ));
        assert!(packed_row_statement(Dialect::PostgreSql, "SELECT 1", &[]).is_err());
    }
}
