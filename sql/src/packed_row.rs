//! Packed rows: a statement whose rows come back as one text value each.
//!
//! psqlODBC spends most of a scan's client time per value it converts into a bound buffer,
//! whatever the type. Asking PostgreSQL for each row as its record text, `(1,2.50,"a b",)`,
//! hands the driver one value per row instead of one per column; the scan splits and parses
//! the text itself (`ibarrow-providers`' `packed_rows`). The record text of numbers, booleans
//! and text does not depend on session settings; dates and timestamps do (`DateStyle`), so
//! they are sent as integers instead: days, or microseconds, since 1970-01-01.

use crate::{Dialect, SqlError};

/// One column of the statement being packed, by its output name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedColumn {
    /// The column's output name in the statement being packed.
    pub name: String,
    /// How its value is written into the row text.
    pub sent_as: PackedValue,
}

/// How a column's value is written into the row text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackedValue {
    /// The value's own text.
    AsIs,
    /// A date, as days since 1970-01-01 (`DateStyle` cannot change an integer).
    Days,
    /// A timestamp without time zone, as microseconds since 1970-01-01 00:00: its date's days
    /// times a day's microseconds plus its time of day's. Both parts are exact whatever the
    /// server's version (`EXTRACT` gives a double before PostgreSQL 14, but a time of day in
    /// microseconds is well within a double's exact integers).
    Microseconds,
}

/// `ROW(<columns>)::text`: a row of a derived table as one text value holding `columns` in
/// order (the select list of a [`crate::ScanStatement`] with packed rows).
pub(crate) fn packed_row_value(
    dialect: Dialect,
    columns: &[PackedColumn],
) -> Result<String, SqlError> {
    if columns.is_empty() {
        return Err(SqlError::NotRemote("a statement without columns".into()));
    }
    let values = columns
        .iter()
        .map(|column| {
            let name = dialect.quote_identifier(&column.name)?;
            Ok(match column.sent_as {
                PackedValue::AsIs => name,
                PackedValue::Days => format!("({name} - DATE '1970-01-01')"),
                PackedValue::Microseconds => format!(
                    "(({name}::date - DATE '1970-01-01')::bigint * 86400000000 \
                     + (EXTRACT(EPOCH FROM {name}::time) * 1000000)::bigint)"
                ),
            })
        })
        .collect::<Result<Vec<_>, SqlError>>()?;
    Ok(format!("ROW({})::text", values.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, sent_as: PackedValue) -> PackedColumn {
        PackedColumn {
            name: name.into(),
            sent_as,
        }
    }

    #[test]
    fn sends_dates_and_timestamps_as_integers() {
        let row = packed_row_value(
            Dialect::PostgreSql,
            &[
                column("a", PackedValue::AsIs),
                column("d\"x", PackedValue::Days),
                column("ts", PackedValue::Microseconds),
            ],
        )
        .unwrap();
        assert_eq!(
            row,
            "ROW(\"a\", (\"d\"\"x\" - DATE '1970-01-01'), \
             ((\"ts\"::date - DATE '1970-01-01')::bigint * 86400000000 \
             + (EXTRACT(EPOCH FROM \"ts\"::time) * 1000000)::bigint))::text"
        );
        assert!(packed_row_value(Dialect::PostgreSql, &[]).is_err());
    }
}
