//! What a statement reads, as the access check saw it: for the audit log.

use std::collections::BTreeSet;

/// One table a statement reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableRead {
    /// `source.schema.table`.
    pub table: String,
    /// The columns the statement names (or selects through `*`).
    pub columns: Vec<String>,
    /// Those of them the user sees masked, with the role whose mask applies.
    pub masked: Vec<String>,
    /// The row filters applied, with their roles.
    pub row_filters: Vec<String>,
}

/// The tables, native statements and insert targets of one statement.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AccessReport {
    /// The tables it reads, with their columns, masks and row filters.
    pub tables: Vec<TableRead>,
    /// Sources that received native SQL (`query()`).
    pub native_sql: BTreeSet<String>,
    /// Tables written (`INSERT INTO`).
    pub written: BTreeSet<String>,
}
