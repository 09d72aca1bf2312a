//! Schema discovery through the ODBC catalog functions (`SQLTables`, `SQLColumns`,
//! `SQLPrimaryKeys`): no probing `SELECT`s, which some databases reject.
//!
//! Names users type: a source's schemas are the remote schemas (PostgreSQL, SQL
//! Server, DB2 …), the databases of MariaDB/MySQL (ODBC catalogs), and the single schema
//! `main` of SQLite. These functions block; call them on a blocking thread.

use ibarrow_sql::{
    ColumnStatisticsQuery, Dialect, IndexQuery, RemoteTable, ReplicaLagQuery, SchemaLevel,
    TableRowsQuery,
};
use odbc_api::Connection;

use crate::type_map::ColumnInfo;

/// The one schema name of sources without schemas (SQLite).
pub const DEFAULT_SCHEMA: &str = ibarrow_sql::UNNAMED_SCHEMA;

/// Schemas hidden from listings; they can still be queried by name.
const SYSTEM_SCHEMAS: &[&str] = &[
    "information_schema",
    "pg_catalog",
    "pg_toast",
    "mysql",
    "performance_schema",
    "sys",
];

/// Whether a remote object is a table or a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// A table (DataFusion's `TableType::Base`); system tables are not listed.
    Table,
    /// A view (DataFusion's `TableType::View`).
    View,
}

/// One table or view of a schema, as listed by `SQLTables`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// The name as the database spells it.
    pub name: String,
    /// Whether it is a table or a view.
    pub kind: TableKind,
}

/// The remote table for a resolved schema and table name.
pub fn remote_table(dialect: Dialect, schema: &str, table: &str) -> RemoteTable {
    match dialect.capabilities().schema_level() {
        SchemaLevel::None => RemoteTable::new(None::<String>, table),
        _ => RemoteTable::new(Some(schema), table),
    }
}

/// Escapes `\`, `%` and `_` for a pattern argument of a catalog function. psqlODBC escapes
/// backslashes itself when it builds its catalog query, so there they are left alone.
fn pattern_literal(dialect: Dialect, name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '%' | '_')
            || (c == '\\' && dialect.capabilities().escapes_backslash_in_patterns())
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn text(value: &odbc_api::parameter::VarCharArray<128>) -> Option<String> {
    value.as_str().ok().flatten().map(str::to_string)
}

/// Whether listings hide this schema (it can still be queried by name).
pub fn is_system_schema(name: &str) -> bool {
    SYSTEM_SCHEMAS.iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// Every schema of the source, system schemas included.
pub fn list_schemas(
    conn: &Connection<'_>,
    dialect: Dialect,
) -> Result<Vec<String>, odbc_api::Error> {
    let mut names = Vec::new();
    match dialect.capabilities().schema_level() {
        SchemaLevel::None => names.push(DEFAULT_SCHEMA.to_string()),
        // SQL_ALL_CATALOGS / SQL_ALL_SCHEMAS: `%` at one level, empty strings elsewhere.
        SchemaLevel::Catalog => {
            for row in conn.tables("%", "", "", "")? {
                if let Some(name) = text(&row?.catalog) {
                    names.push(name);
                }
            }
        }
        SchemaLevel::Schema => {
            for row in conn.tables("", "%", "", "")? {
                if let Some(name) = text(&row?.schema) {
                    names.push(name);
                }
            }
        }
    }
    names.retain(|n| !n.is_empty());
    names.sort();
    names.dedup();
    Ok(names)
}

/// Tables and views of one (exactly named) schema.
pub fn list_tables(
    conn: &Connection<'_>,
    dialect: Dialect,
    schema: &str,
) -> Result<Vec<TableEntry>, odbc_api::Error> {
    let schema = pattern_literal(dialect, schema);
    let rows = match dialect.capabilities().schema_level() {
        SchemaLevel::None => conn.tables("", "", "%", "")?,
        SchemaLevel::Catalog => conn.tables(&schema, "", "%", "")?,
        SchemaLevel::Schema => conn.tables("", &schema, "%", "")?,
    };
    let mut tables = Vec::new();
    for row in rows {
        let row = row?;
        let kind = row
            .table_type
            .as_str()
            .ok()
            .flatten()
            .unwrap_or("")
            .to_ascii_uppercase();
        let kind = if kind.contains("SYSTEM") {
            continue;
        } else if kind.contains("VIEW") {
            TableKind::View
        } else if kind.contains("TABLE") {
            TableKind::Table
        } else {
            continue;
        };
        if let Some(name) = row.table.as_str().ok().flatten() {
            tables.push(TableEntry {
                name: name.to_string(),
                kind,
            });
        }
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tables)
}

/// Columns of a table in ordinal order.
pub fn table_columns(
    conn: &Connection<'_>,
    dialect: Dialect,
    schema: &str,
    table: &str,
) -> Result<Vec<ColumnInfo>, odbc_api::Error> {
    let table = pattern_literal(dialect, table);
    let rows = match dialect.capabilities().schema_level() {
        SchemaLevel::None => conn.columns("", "", &table, "%")?,
        // The catalog argument of SQLColumns is not a pattern.
        SchemaLevel::Catalog => conn.columns(schema, "", &table, "%")?,
        SchemaLevel::Schema => conn.columns("", &pattern_literal(dialect, schema), &table, "%")?,
    };
    let mut columns = Vec::new();
    for row in rows {
        let row = row?;
        let Some(name) = row.column_name.as_str().ok().flatten() else {
            continue;
        };
        columns.push((
            row.ordinal_position,
            ColumnInfo {
                name: name.to_string(),
                data_type: row.data_type,
                type_name: row
                    .type_name
                    .as_str()
                    .ok()
                    .flatten()
                    .unwrap_or("")
                    .to_string(),
                column_size: row.column_size.into_opt(),
                decimal_digits: row.decimal_digits.into_opt(),
                // SQL_NO_NULLS = 0; unknown counts as nullable.
                nullable: row.nullable != 0,
            },
        ));
    }
    columns.sort_by_key(|(position, _)| *position);
    Ok(columns.into_iter().map(|(_, c)| c).collect())
}

/// Primary-key columns in key order; empty when the table has none or the driver cannot say.
pub fn primary_key(
    conn: &Connection<'_>,
    dialect: Dialect,
    schema: &str,
    table: &str,
) -> Result<Vec<String>, odbc_api::Error> {
    let rows = match dialect.capabilities().schema_level() {
        SchemaLevel::None => conn.primary_keys(None, None, table)?,
        SchemaLevel::Catalog => conn.primary_keys(Some(schema), None, table)?,
        SchemaLevel::Schema => conn.primary_keys(None, Some(schema), table)?,
    };
    let mut key = Vec::new();
    for row in rows {
        let row = row?;
        if let Some(column) = row.column.as_str().ok().flatten() {
            key.push((row.key_seq, column.to_string()));
        }
    }
    key.sort();
    Ok(key.into_iter().map(|(_, c)| c).collect())
}

/// Columns of a PostgreSQL table declared plain `numeric` (no precision). psqlODBC reports them
/// as NUMERIC(28,6), which would round their values; they are read as exact text instead.
pub fn postgres_unconstrained_numerics(
    conn: &Connection<'_>,
    schema: &str,
    table: &str,
) -> Result<Vec<String>, odbc_api::Error> {
    use odbc_api::{Cursor, IntoParameter};
    let sql = "SELECT a.attname FROM pg_catalog.pg_attribute a \
               JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = ? AND c.relname = ? AND a.attnum > 0 AND NOT a.attisdropped \
               AND a.atttypid = 'pg_catalog.numeric'::pg_catalog.regtype AND a.atttypmod = -1";
    let params = (&schema.into_parameter(), &table.into_parameter());
    let mut names = Vec::new();
    if let Some(mut cursor) = conn.execute(sql, params, None)? {
        let mut buffer = Vec::new();
        while let Some(mut row) = cursor.next_row()? {
            if row.get_text(1, &mut buffer)? {
                names.push(String::from_utf8_lossy(&buffer).into_owned());
            }
        }
    }
    Ok(names)
}

/// The first row of a query, every column as text (`None` for NULL); `None` without rows.
pub fn first_row_as_text(
    conn: &Connection<'_>,
    sql: &str,
    params: impl odbc_api::ParameterCollectionRef,
) -> Result<Option<Vec<Option<String>>>, odbc_api::Error> {
    Ok(rows_as_text(conn, sql, params, Some(1))?.into_iter().next())
}

/// A replica's lag behind its primary, as `query` reads it (see [`ReplicaLagQuery`]).
pub fn replica_lag(
    conn: &Connection<'_>,
    query: ReplicaLagQuery,
) -> Result<crate::source::LagReading, odbc_api::Error> {
    use crate::source::LagReading;
    use odbc_api::{Cursor, ResultSetMetadata};
    let value = match query {
        ReplicaLagQuery::Seconds(sql) => match first_row_as_text(conn, sql, ())? {
            None => return Ok(LagReading::Behind(std::time::Duration::ZERO)),
            Some(row) => row.into_iter().next().flatten(),
        },
        ReplicaLagQuery::StatusColumn { statement, column } => {
            let Some(mut cursor) = conn.execute(statement, (), None)? else {
                return Ok(LagReading::Behind(std::time::Duration::ZERO));
            };
            let mut position = None;
            for index in 1..=cursor.num_result_cols()? as u16 {
                if cursor.col_name(index)?.eq_ignore_ascii_case(column) {
                    position = Some(index);
                }
            }
            let Some(mut row) = cursor.next_row()? else {
                // No replication configured: not a replica, so not behind.
                return Ok(LagReading::Behind(std::time::Duration::ZERO));
            };
            let Some(position) = position else {
                return Ok(LagReading::Unknown);
            };
            let mut buffer = Vec::new();
            row.get_text(position, &mut buffer)?
                .then(|| String::from_utf8_lossy(&buffer).into_owned())
        }
    };
    Ok(match value.map(|text| text.trim().parse::<f64>()) {
        None => LagReading::NotReplicating,
        Some(Ok(seconds)) if seconds.is_finite() => {
            std::time::Duration::try_from_secs_f64(seconds.max(0.0))
                .map_or(LagReading::Unknown, LagReading::Behind)
        }
        Some(Ok(_)) => LagReading::Unknown,
        Some(Err(_)) => LagReading::Unknown,
    })
}

/// The rows of `sql` (at most `limit`), every value as text.
pub fn rows_as_text(
    conn: &Connection<'_>,
    sql: &str,
    params: impl odbc_api::ParameterCollectionRef,
    limit: Option<usize>,
) -> Result<Vec<Vec<Option<String>>>, odbc_api::Error> {
    use odbc_api::{Cursor, ResultSetMetadata};
    let Some(mut cursor) = conn.execute(sql, params, None)? else {
        return Ok(Vec::new());
    };
    let columns = cursor.num_result_cols()?;
    let mut rows = Vec::new();
    let mut buffer = Vec::new();
    while limit.is_none_or(|limit| rows.len() < limit) {
        let Some(mut row) = cursor.next_row()? else {
            break;
        };
        let mut values = Vec::new();
        for column in 1..=columns as u16 {
            let present = row.get_text(column, &mut buffer)?;
            values.push(present.then(|| String::from_utf8_lossy(&buffer).into_owned()));
        }
        rows.push(values);
    }
    Ok(rows)
}

/// The key parts of each index of `table`, in order: a column name, or `None` for an
/// expression (empty where the database's indexes cannot be listed).
pub fn index_columns(
    conn: &Connection<'_>,
    dialect: Dialect,
    table: &RemoteTable,
) -> Result<Vec<Vec<Option<String>>>, odbc_api::Error> {
    use odbc_api::IntoParameter;
    let Some(query) = dialect.capabilities().index_query() else {
        return Ok(Vec::new());
    };
    let rows = match query {
        IndexQuery::BySchemaAndTable(sql) => {
            let schema = table.qualifier.as_deref().unwrap_or_default();
            let params = (
                &schema.into_parameter(),
                &table.name.as_str().into_parameter(),
            );
            rows_as_text(conn, sql, params, None)?
        }
        IndexQuery::ByTableTwice(sql) => {
            let name = table.name.as_str();
            rows_as_text(
                conn,
                sql,
                (&name.into_parameter(), &name.into_parameter()),
                None,
            )?
        }
    };
    let mut indexes: Vec<(String, Vec<Option<String>>)> = Vec::new();
    for row in rows {
        let Some(Some(index)) = row.first() else {
            continue;
        };
        let column = row.get(2).cloned().flatten();
        match indexes.last_mut() {
            Some((name, columns)) if name == index => columns.push(column),
            _ => indexes.push((index.clone(), vec![column])),
        }
    }
    Ok(indexes.into_iter().map(|(_, columns)| columns).collect())
}

/// The database's own estimate of a table's rows, for planning and for deciding whether a
/// scan is worth splitting. `None` when the database keeps none (or never analysed the table).
pub fn row_estimate(
    conn: &Connection<'_>,
    dialect: Dialect,
    schema: &str,
    table: &str,
) -> Option<u64> {
    use odbc_api::IntoParameter;
    let params = (&schema.into_parameter(), &table.into_parameter());
    let text = match dialect.capabilities().table_rows_query()? {
        TableRowsQuery::Statistics(statement) => first_row_as_text(conn, statement, params),
        TableRowsQuery::CountRows => {
            let quoted = dialect.quote_identifier(table).ok()?;
            first_row_as_text(conn, &format!("SELECT count(*) FROM {quoted}"), ())
        }
    };
    let value: f64 = text.ok()??.into_iter().next()??.trim().parse().ok()?;
    // PostgreSQL reports -1 for tables never vacuumed or analysed.
    (value >= 0.0).then_some(value as u64)
}

/// What a database knows of one column's values, for join planning ([`column_statistics`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnStats {
    /// Distinct values.
    pub distinct: Option<u64>,
    /// The fraction of values that are NULL.
    pub null_fraction: Option<f64>,
    /// Average bytes of a value.
    pub avg_bytes: Option<u64>,
}

/// The database's statistics of `table`'s columns, by column name, with `table_rows` its row
/// estimate (PostgreSQL gives some distinct counts as a fraction of the rows). Empty where
/// the database keeps none: statistics are advice, so a database that refuses the query (no
/// `sqlite_stat1` before `ANALYZE`, no rights on a catalog view) plans without them.
pub fn column_statistics(
    conn: &Connection<'_>,
    dialect: Dialect,
    schema: &str,
    table: &str,
    table_rows: Option<u64>,
) -> std::collections::HashMap<String, ColumnStats> {
    use odbc_api::parameter::VarCharBox;
    let Some(query) = dialect.capabilities().column_statistics_query() else {
        return Default::default();
    };
    let (sql, names): (&str, &[&str]) = match query {
        ColumnStatisticsQuery::BySchemaAndTable(sql) => (sql, &[schema, table]),
        ColumnStatisticsQuery::SqliteStat1(sql) => (sql, &[table]),
    };
    // The names again for every placeholder (each information_schema read names its table).
    let params: Vec<VarCharBox> = names
        .iter()
        .cycle()
        .take(sql.matches('?').count())
        .map(|name| VarCharBox::from_string(name.to_string()))
        .collect();
    let found = rows_as_text(conn, sql, &params[..], None);
    found
        .unwrap_or_default()
        .iter()
        .filter_map(|row| column_stats_of_row(query, row, table_rows))
        .collect()
}

/// One row of a [`ColumnStatisticsQuery`]: the column's name and what it says of it.
fn column_stats_of_row(
    query: ColumnStatisticsQuery,
    row: &[Option<String>],
    table_rows: Option<u64>,
) -> Option<(String, ColumnStats)> {
    let name = row.first()?.clone()?;
    let number = |i: usize| {
        row.get(i)?
            .as_deref()
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|n| n.is_finite())
    };
    let stats = match query {
        ColumnStatisticsQuery::SqliteStat1(_) => {
            let stat = row.get(1)?.as_deref()?;
            let mut numbers = stat.split_whitespace().map(|n| n.parse::<f64>().ok());
            let rows = numbers.next()??;
            let per_value = numbers.next()??;
            ColumnStats {
                distinct: (per_value > 0.0).then(|| (rows / per_value).round() as u64),
                ..ColumnStats::default()
            }
        }
        ColumnStatisticsQuery::BySchemaAndTable(_) => ColumnStats {
            // Zero is "not known" in PostgreSQL's n_distinct.
            distinct: number(1)
                .and_then(|d| match d {
                    d if d > 0.0 => Some(d),
                    d if d < 0.0 => table_rows.map(|rows| -d * rows as f64),
                    _ => None,
                })
                .map(|d| d.round() as u64),
            null_fraction: number(2).filter(|f| (0.0..=1.0).contains(f)),
            avg_bytes: number(3).filter(|w| *w > 0.0).map(|w| w.round() as u64),
        },
    };
    Some((name, stats))
}

/// PostgreSQL's estimate of the rows `sql` (a SELECT) returns, from `EXPLAIN`, which plans
/// the statement without running it. `None` for other databases or when it cannot be had.
pub fn statement_row_estimate(conn: &Connection<'_>, dialect: Dialect, sql: &str) -> Option<u64> {
    if !dialect.capabilities().estimates_statement_rows() {
        return None;
    }
    let plan = first_row_as_text(conn, &explain_statement(sql), ()).ok()??;
    estimated_rows(plan.into_iter().next()??.as_str())
}

/// PostgreSQL's plan of `sql` with its estimates, as JSON ([`estimated_rows`] reads it).
pub(crate) fn explain_statement(sql: &str) -> String {
    format!("EXPLAIN (FORMAT JSON) {sql}")
}

/// The top plan node's row estimate in PostgreSQL's `EXPLAIN (FORMAT JSON)` (a node's own
/// fields come before its children's).
pub(crate) fn estimated_rows(plan: &str) -> Option<u64> {
    const KEY: &str = "\"Plan Rows\":";
    let after = &plan[plan.find(KEY)? + KEY.len()..];
    let digits: String = after
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The outcome of matching a name a user typed against the remote names.
#[derive(Debug, PartialEq, Eq)]
pub enum NameMatch<'a> {
    /// The one remote name it stands for, as the database spells it.
    Found(&'a str),
    /// No remote name matches, even ignoring case.
    NotFound,
    /// Several remote names match ignoring case, and none exactly.
    Ambiguous(Vec<&'a str>),
}

/// Finds `wanted` among `names`: the exact spelling first, else the single name equal to it
/// ignoring case (DataFusion lower-cases unquoted names; Firebird and DB2 store upper case).
pub fn resolve_name<'a>(names: impl IntoIterator<Item = &'a str>, wanted: &str) -> NameMatch<'a> {
    let mut folded = Vec::new();
    for name in names {
        if name == wanted {
            return NameMatch::Found(name);
        }
        if name.to_lowercase() == wanted.to_lowercase() {
            folded.push(name);
        }
    }
    match folded.len() {
        0 => NameMatch::NotFound,
        1 => NameMatch::Found(folded[0]),
        _ => NameMatch::Ambiguous(folded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_column_statistics_rows() {
        let row = |values: &[Option<&str>]| -> Vec<Option<String>> {
            values.iter().map(|v| v.map(str::to_string)).collect()
        };
        let by_table = ColumnStatisticsQuery::BySchemaAndTable("");
        // PostgreSQL: a count, or minus a fraction of the rows; zero is unknown.
        assert_eq!(
            column_stats_of_row(
                by_table,
                &row(&[Some("k"), Some("-0.25"), Some("0.1"), Some("8")]),
                Some(1000)
            ),
            Some((
                "k".into(),
                ColumnStats {
                    distinct: Some(250),
                    null_fraction: Some(0.1),
                    avg_bytes: Some(8)
                }
            ))
        );
        let unknown =
            column_stats_of_row(by_table, &row(&[Some("k"), Some("0"), None, None]), None);
        assert_eq!(unknown, Some(("k".into(), ColumnStats::default())));
        let fraction_without_rows =
            column_stats_of_row(by_table, &row(&[Some("k"), Some("-1"), None, None]), None);
        assert_eq!(
            fraction_without_rows,
            Some(("k".into(), ColumnStats::default()))
        );
        // SQLite: rows, then rows per distinct value of the leading column.
        let stat1 = ColumnStatisticsQuery::SqliteStat1("");
        assert_eq!(
            column_stats_of_row(stat1, &row(&[Some("k"), Some("20000 4 1")]), None)
                .and_then(|(_, s)| s.distinct),
            Some(5000)
        );
        assert_eq!(
            column_stats_of_row(stat1, &row(&[Some("k"), Some("")]), None),
            None
        );
        assert_eq!(
            column_stats_of_row(stat1, &row(&[None, Some("10 1")]), None),
            None
        );
    }

    #[test]
    fn reads_the_top_plan_nodes_row_estimate() {
        let plan = r#"[{"Plan": {"Node Type": "Aggregate", "Startup Cost": 1.0, "Plan Rows": 4, "Plan Width": 40, "Plans": [{"Node Type": "Seq Scan", "Plan Rows": 600000}]}}]"#;
        assert_eq!(estimated_rows(plan), Some(4));
        assert_eq!(estimated_rows("[]"), None);
    }

    #[test]
    fn resolves_names_exactly_then_ignoring_case() {
        let names = ["Orders", "orders", "CUSTOMERS", "Items"];
        assert_eq!(resolve_name(names, "orders"), NameMatch::Found("orders"));
        assert_eq!(
            resolve_name(names, "customers"),
            NameMatch::Found("CUSTOMERS")
        );
        assert_eq!(
            resolve_name(names, "ORDERS"),
            NameMatch::Ambiguous(vec!["Orders", "orders"])
        );
        assert_eq!(resolve_name(names, "nothing"), NameMatch::NotFound);
    }

    #[test]
    fn escapes_catalog_patterns() {
        assert_eq!(pattern_literal(Dialect::MySql, r"a_b%c\d"), r"a\_b\%c\\d");
        assert_eq!(pattern_literal(Dialect::PostgreSql, r"a_b\d"), r"a\_b\d");
    }

    #[test]
    fn sqlite_tables_are_unqualified() {
        assert_eq!(remote_table(Dialect::Sqlite, "main", "t").qualifier, None);
        assert_eq!(
            remote_table(Dialect::MySql, "shop", "t")
                .qualifier
                .as_deref(),
            Some("shop")
        );
    }
}
