//! The statement one partition of a scan sends, kept in its parts until it is sent: the query
//! (one table's SELECT, a pushed sub-plan, or a user's own statement) and what narrows or
//! reshapes its result — the columns kept, conditions known while planning, the condition a
//! join learns at run time, and PostgreSQL's packed rows. [`ScanStatement::render`] writes it
//! once, around one derived table at most, so a run-time filter added to a narrowed, packed
//! statement never nests wrapper in wrapper.

use crate::dialect::Dialect;
use crate::error::SqlError;
use crate::packed_row::{PackedColumn, packed_row_value};

/// The name of the derived table a query is wrapped in (quoted per dialect).
const WRAPPED_ALIAS: &str = "ibarrow_scan";

/// The statement of one scan partition. The parts are checked and quoted as they are added,
/// so rendering cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanStatement {
    dialect: Dialect,
    query: String,
    /// The result columns kept, quoted, in order; `None`: all of them.
    columns: Option<Vec<String>>,
    /// Conditions over the query's result columns known while planning.
    conditions: Vec<String>,
    /// The condition the hash joins above learnt at run time (see `render_runtime_filter`).
    runtime_condition: Option<String>,
    /// Each row as one text value (`ROW(…)::text`), replacing the column list.
    packed_row: Option<String>,
}

/// What a [`ScanStatement`] holds apart from its dialect, for sending a planned scan to
/// another process (an executor of a cluster), which rebuilds it with its own source's
/// dialect ([`ScanStatement::from_parts`]). The parts were checked and quoted when the
/// statement was built, so they are only ever taken from [`ScanStatement::parts`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanStatementParts {
    /// The query narrowed and projected.
    pub query: String,
    /// The result columns kept, quoted; `None`: all of them.
    pub columns: Option<Vec<String>>,
    /// Conditions known while planning, rendered.
    pub conditions: Vec<String>,
    /// The run-time condition, rendered.
    pub runtime_condition: Option<String>,
    /// The packed-row expression, rendered.
    pub packed_row: Option<String>,
}

impl ScanStatement {
    /// `query` sent as it is, until something narrows or reshapes it.
    pub fn new(dialect: Dialect, query: impl Into<String>) -> Self {
        Self {
            dialect,
            query: query.into(),
            columns: None,
            conditions: Vec::new(),
            runtime_condition: None,
            packed_row: None,
        }
    }

    /// The statement's parts, rendered as they will be sent ([`ScanStatementParts`]).
    pub fn parts(&self) -> ScanStatementParts {
        ScanStatementParts {
            query: self.query.clone(),
            columns: self.columns.clone(),
            conditions: self.conditions.clone(),
            runtime_condition: self.runtime_condition.clone(),
            packed_row: self.packed_row.clone(),
        }
    }

    /// The statement [`Self::parts`] described, in `dialect`.
    pub fn from_parts(dialect: Dialect, parts: ScanStatementParts) -> Self {
        Self {
            dialect,
            query: parts.query,
            columns: parts.columns,
            conditions: parts.conditions,
            runtime_condition: parts.runtime_condition,
            packed_row: parts.packed_row,
        }
    }

    /// Keeps only the result columns `names`, in that order (none: a constant, so only the
    /// row count travels). The query's result columns must have unique names.
    pub fn project<S: AsRef<str>>(mut self, names: &[S]) -> Result<Self, SqlError> {
        let quoted = names
            .iter()
            .map(|name| self.dialect.quote_identifier(name.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        self.columns = Some(quoted);
        Ok(self)
    }

    /// Narrows the result by rendered conditions over its columns (from `render_filter`).
    /// Only for SELECTs whose result columns have unique names: every statement ibarrow builds.
    pub fn narrow(mut self, conditions: impl IntoIterator<Item = String>) -> Self {
        self.conditions.extend(conditions);
        self
    }

    /// Sets or clears the condition a join learnt at run time; the previous one is returned.
    pub fn set_runtime_condition(&mut self, condition: Option<String>) -> Option<String> {
        std::mem::replace(&mut self.runtime_condition, condition)
    }

    /// The condition a join learnt at run time, if one is set.
    pub fn runtime_condition(&self) -> Option<&str> {
        self.runtime_condition.as_deref()
    }

    /// Each row as one text value holding `columns` in order (see `packed_row`); refused
    /// where the parser of the record text is not proven.
    pub fn pack_rows(mut self, columns: &[PackedColumn]) -> Result<Self, SqlError> {
        if !self.dialect.capabilities().packs_rows() {
            return Err(SqlError::Unsupported(format!(
                "packed rows are only read from PostgreSQL, not {}",
                self.dialect
            )));
        }
        self.packed_row = Some(packed_row_value(self.dialect, columns)?);
        Ok(self)
    }

    /// The query before any narrowing or reshaping.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The statement as sent.
    pub fn render(&self) -> String {
        self.render_with(self.packed_row.as_deref())
    }

    /// The statement with its rows as columns, not packed: what the database is asked to
    /// estimate (the same rows as [`Self::render`]'s).
    pub fn render_unpacked(&self) -> String {
        self.render_with(None)
    }

    fn render_with(&self, packed_row: Option<&str>) -> String {
        let conditions: Vec<&str> = self
            .conditions
            .iter()
            .map(String::as_str)
            .chain(self.runtime_condition.as_deref())
            .collect();
        let select_list = match (packed_row, &self.columns) {
            (Some(row), _) => row.to_string(),
            (None, Some(columns)) if columns.is_empty() => "1".to_string(),
            (None, Some(columns)) => columns.join(", "),
            (None, None) if !conditions.is_empty() => "*".to_string(),
            (None, None) => return self.query.clone(),
        };
        let alias = self
            .dialect
            .quote_identifier(WRAPPED_ALIAS)
            .unwrap_or_else(|_| WRAPPED_ALIAS.to_string());
        // No `AS` before the alias: Oracle refuses it, every database takes the alias without.
        let mut sql = format!("SELECT {select_list} FROM ({}) {alias}", self.query);
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PackedValue;

    const QUERY: &str = "SELECT \"a\", \"d\" FROM \"t\"";

    #[test]
    fn a_statement_alone_is_sent_as_it_is() {
        let statement = ScanStatement::new(Dialect::PostgreSql, QUERY);
        assert_eq!(statement.render(), QUERY);
        assert_eq!(statement.render_unpacked(), QUERY);
    }

    #[test]
    fn conditions_and_the_run_time_filter_share_one_derived_table() {
        let mut statement = ScanStatement::new(Dialect::MySql, "SELECT `a` FROM `t`")
            .narrow(["(`a` > 0)".to_string()]);
        assert_eq!(
            statement.render(),
            "SELECT * FROM (SELECT `a` FROM `t`) `ibarrow_scan` WHERE (`a` > 0)"
        );
        assert_eq!(
            statement.set_runtime_condition(Some("(`a` IN (1, 2))".into())),
            None
        );
        assert_eq!(
            statement.render(),
            "SELECT * FROM (SELECT `a` FROM `t`) `ibarrow_scan` \
             WHERE (`a` > 0) AND (`a` IN (1, 2))"
        );
        // Dropped again (the database refused it): the planned statement comes back.
        assert!(statement.set_runtime_condition(None).is_some());
        assert_eq!(
            statement.render(),
            "SELECT * FROM (SELECT `a` FROM `t`) `ibarrow_scan` WHERE (`a` > 0)"
        );
    }

    #[test]
    fn a_projection_quotes_its_columns_and_keeps_a_constant_for_none() {
        let statement = ScanStatement::new(Dialect::PostgreSql, QUERY)
            .project(&["d", "we\"ird"])
            .unwrap();
        assert_eq!(
            statement.render(),
            "SELECT \"d\", \"we\"\"ird\" FROM (SELECT \"a\", \"d\" FROM \"t\") \"ibarrow_scan\""
        );
        let none = ScanStatement::new(Dialect::Sqlite, QUERY)
            .project::<&str>(&[])
            .unwrap();
        assert_eq!(
            none.render(),
            "SELECT 1 FROM (SELECT \"a\", \"d\" FROM \"t\") \"ibarrow_scan\""
        );
        assert!(
            ScanStatement::new(Dialect::Sqlite, QUERY)
                .project(&["a\0"])
                .is_err()
        );
    }

    #[test]
    fn packed_rows_replace_the_column_list_and_keep_the_conditions() {
        let mut statement = ScanStatement::new(Dialect::PostgreSql, QUERY)
            .narrow(["(\"a\" > 0)".to_string()])
            .pack_rows(&[
                PackedColumn {
                    name: "a".into(),
                    sent_as: PackedValue::AsIs,
                },
                PackedColumn {
                    name: "d".into(),
                    sent_as: PackedValue::Days,
                },
            ])
            .unwrap();
        statement.set_runtime_condition(Some("(\"a\" = 7)".into()));
        assert_eq!(
            statement.render(),
            "SELECT ROW(\"a\", (\"d\" - DATE '1970-01-01'))::text \
             FROM (SELECT \"a\", \"d\" FROM \"t\") \"ibarrow_scan\" \
             WHERE (\"a\" > 0) AND (\"a\" = 7)"
        );
        // What the database estimates: the same rows, as columns.
        assert_eq!(
            statement.render_unpacked(),
            "SELECT * FROM (SELECT \"a\", \"d\" FROM \"t\") \"ibarrow_scan\" \
             WHERE (\"a\" > 0) AND (\"a\" = 7)"
        );
    }

    #[test]
    fn packing_is_refused_where_it_is_not_proven() {
        let column = PackedColumn {
            name: "a".into(),
            sent_as: PackedValue::AsIs,
        };
        assert!(matches!(
            ScanStatement::new(Dialect::MySql, "SELECT 1").pack_rows(std::slice::from_ref(&column)),
            Err(SqlError::Unsupported(_))
        ));
        assert!(
            ScanStatement::new(Dialect::PostgreSql, "SELECT 1")
                .pack_rows(&[])
                .is_err()
        );
    }
}
