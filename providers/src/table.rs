//! [`OdbcTable`]: a remote table as a DataFusion `TableProvider` with projection, filter and
//! limit pushdown in the source's dialect.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{Constraint, Constraints, SchemaExt, Statistics};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use ibarrow_sql::{RemoteSelect, RemoteTable, ScanStatement, SelectColumn, render_filter};

use tokio::sync::OnceCell;

use crate::call::CallSpec;
use crate::discovery::{self, NameMatch, TableKind};
use crate::error::OdbcError;
use crate::insert::OdbcSink;
use crate::partitioning::{PartitionKey, RangePartitioning};
use crate::scan::{FilteredScan, OdbcExec, ScanColumnStatistics};
use crate::source::OdbcSource;
use crate::type_map::{ColumnFetch, MappedColumn, map_column};

/// A remote table or view of one source, as DataFusion reads it (and inserts into it, when
/// the source is writable).
#[derive(Debug)]
pub struct OdbcTable {
    source: Arc<OdbcSource>,
    table: RemoteTable,
    kind: TableKind,
    schema: SchemaRef,
    /// The columns filters may name ([`crate::type_map::filter_schema`]).
    filter_schema: Schema,
    fetch: Vec<ColumnFetch>,
    primary_key: Vec<String>,
    constraints: Option<Constraints>,
    row_estimate: Option<u64>,
    /// What the database knows of each column, in the schema's order.
    column_statistics: Vec<ScanColumnStatistics>,
    partition_key: Option<PartitionKey>,
    /// MIN and MAX of the partition key, read once.
    key_range: OnceCell<Option<(i64, i64)>>,
}

impl OdbcTable {
    pub(crate) fn new(
        source: Arc<OdbcSource>,
        table: RemoteTable,
        kind: TableKind,
        columns: Vec<MappedColumn>,
        primary_key: Vec<String>,
        row_estimate: Option<u64>,
        mut column_stats: std::collections::HashMap<String, crate::discovery::ColumnStats>,
    ) -> Self {
        let fetch: Vec<ColumnFetch> = columns.iter().map(|c| c.fetch.clone()).collect();
        let schema = Arc::new(Schema::new(
            columns.into_iter().map(|c| c.field).collect::<Vec<_>>(),
        ));
        let filter_schema = crate::type_map::filter_schema(&schema, &fetch);
        let key_indices: Option<Vec<usize>> = primary_key
            .iter()
            .map(|name| schema.index_of(name).ok())
            .collect();
        // A one-column primary key has as many distinct values as the table has rows.
        if let ([key], Some(rows)) = (primary_key.as_slice(), row_estimate) {
            let stats = column_stats.entry(key.clone()).or_default();
            stats.distinct = Some(rows);
            stats.null_fraction = Some(0.0);
        }
        let column_statistics = schema
            .fields()
            .iter()
            .map(|field| {
                let known = column_stats.get(field.name()).cloned().unwrap_or_default();
                ScanColumnStatistics {
                    distinct: known.distinct.and_then(|d| usize::try_from(d).ok()),
                    null_fraction: known.null_fraction,
                    avg_bytes: known.avg_bytes.and_then(|b| usize::try_from(b).ok()),
                }
            })
            .collect();
        let constraints = key_indices
            .filter(|k| !k.is_empty())
            .map(|k| Constraints::new_unverified(vec![Constraint::PrimaryKey(k)]));
        Self {
            source,
            table,
            kind,
            schema,
            filter_schema,
            fetch,
            primary_key,
            constraints,
            row_estimate,
            column_statistics,
            partition_key: None,
            key_range: OnceCell::new(),
        }
    }

    /// Lets scans split this table into key ranges read in parallel.
    pub fn with_range_partitioning(mut self, spec: &RangePartitioning) -> Result<Self, OdbcError> {
        self.partition_key = PartitionKey::choose(
            spec,
            &self.schema,
            &self.primary_key,
            self.source.name(),
            &self.table.to_string(),
        )?;
        Ok(self)
    }

    /// How a column of this table is read, by name.
    pub fn column_fetch(&self, name: &str) -> Option<&ColumnFetch> {
        self.schema.index_of(name).ok().map(|i| &self.fetch[i])
    }

    /// The database's row estimate, when it keeps one.
    pub fn row_estimate(&self) -> Option<u64> {
        self.row_estimate
    }

    /// The rows a scan returns, after the table's estimate: filters sent with it keep
    /// DataFusion's default filter selectivity (`selectivity_percent`, as a local filter
    /// would), and the most it can return ([`Self::scan_max_rows`]) caps it.
    fn scan_row_estimate(
        &self,
        select: &RemoteSelect,
        max_rows: Option<usize>,
        selectivity_percent: u8,
    ) -> Option<usize> {
        let rows = usize::try_from(self.row_estimate?).ok()?;
        let rows = if select.filters.is_empty() {
            rows
        } else {
            rows.saturating_mul(usize::from(selectivity_percent.min(100))) / 100
        };
        Some(max_rows.map_or(rows, |most| rows.min(most)))
    }

    /// The most rows a scan can return: its pushed limit, or the values its filters pin the
    /// one-column primary key to (`key = v`, `key IN (v1, …)`), when the database evaluates
    /// them. Such a scan is one statement, and its fetch buffers hold no more rows than that.
    fn scan_max_rows(&self, select: &RemoteSelect, filters: &[Expr]) -> Option<usize> {
        let dialect = self.source.dialect();
        let pinned = match self.primary_key.as_slice() {
            [key] => filters
                .iter()
                .filter(|filter| render_filter(dialect, &self.filter_schema, filter).is_some())
                .filter_map(|filter| pinned_key_values(filter, key))
                .min(),
            _ => None,
        };
        match (pinned, select.limit) {
            (Some(pinned), Some(limit)) => Some(pinned.min(limit)),
            (pinned, limit) => pinned.or(limit),
        }
    }

    /// The columns the filters sent with a scan compare (those the database evaluates), for
    /// index advice; `None` without any, or without the table's row estimate.
    fn filtered_scan(&self, filters: &[Expr]) -> Option<FilteredScan> {
        let table_rows = self.row_estimate?;
        let dialect = self.source.dialect();
        let mut columns: Vec<String> = Vec::new();
        for filter in filters {
            if render_filter(dialect, &self.filter_schema, filter).is_none() {
                continue;
            }
            for column in filter.column_refs() {
                if !columns.contains(&column.name) {
                    columns.push(column.name.clone());
                }
            }
        }
        (!columns.is_empty()).then(|| FilteredScan {
            table: self.table.clone(),
            columns,
            table_rows,
        })
    }

    /// The column scans split on, if any.
    pub fn partition_column(&self) -> Option<&str> {
        self.partition_key.as_ref().map(|k| k.column.as_str())
    }

    /// Whether a scan stays one statement because of the most rows it can return: always
    /// with a pushed limit (each range would apply it), and with a pinned key unless it pins
    /// more rows than a range or a batch holds (`id IN (<50 000 keys>)` is still split).
    fn bounded_to_one_statement(&self, limit: Option<usize>, max_rows: Option<usize>) -> bool {
        let worth_splitting = self
            .partition_key
            .as_ref()
            .map_or(0, |key| key.min_rows)
            .max(self.source.options().scan.batch_rows as u64);
        limit.is_some() || max_rows.is_some_and(|rows| rows as u64 <= worth_splitting)
    }

    /// One range predicate per partition, or `None` for a single scan: no key, a scan
    /// bounded to one statement ([`Self::bounded_to_one_statement`]), a small table, or a key
    /// range too narrow to split.
    async fn partition_predicates(
        &self,
        one_statement: bool,
    ) -> Result<Option<Vec<String>>, OdbcError> {
        let Some(key) = &self.partition_key else {
            return Ok(None);
        };
        let parts = key.count_for(self.row_estimate);
        if one_statement || parts < 2 {
            return Ok(None);
        }
        let range = self
            .key_range
            .get_or_try_init(|| self.read_key_range(key))
            .await?;
        Ok(range.and_then(|(min, max)| key.predicates(self.source.dialect(), min, max, parts)))
    }

    /// Why this table's scans have the ranges they have, for EXPLAIN (`None`: no key).
    fn partitioning_reason(&self, statements: usize, max_rows: Option<usize>) -> Option<String> {
        let key = self.partition_key.as_ref()?;
        Some(match max_rows {
            Some(1) => "at most 1 row (a limit or a pinned key): one range".into(),
            Some(rows) => format!("at most {rows} rows (a limit or a pinned key): one range"),
            None => key.reason(self.row_estimate, statements),
        })
    }

    async fn read_key_range(&self, key: &PartitionKey) -> Result<Option<(i64, i64)>, OdbcError> {
        let dialect = self.source.dialect();
        let sql_error = |source| OdbcError::Sql {
            source_name: self.source.name().to_string(),
            source,
        };
        let column = dialect.quote_identifier(&key.column).map_err(sql_error)?;
        let table = self.table.render(dialect).map_err(sql_error)?;
        let sql = format!("SELECT MIN({column}), MAX({column}) FROM {table}");
        let key = key.clone();
        let spec = crate::call::CallSpec::new(&self.source, "reading the partition key range")
            .statement(sql.clone());
        self.source
            .call(spec, move |conn| {
                let row = discovery::first_row_as_text(conn, &sql, ())
                    .map_err(|err| conn.failure("reading the partition key range", err))?;
                let bounds = row.and_then(|values| {
                    let min = key.parse_bound(values.first()?.as_deref()?)?;
                    let max = key.parse_bound(values.get(1)?.as_deref()?)?;
                    Some((min, max))
                });
                Ok(bounds)
            })
            .await
    }

    /// The source the table belongs to.
    pub fn source(&self) -> &Arc<OdbcSource> {
        &self.source
    }

    /// The table's remote name, schema-qualified where the database has schemas.
    pub fn remote_table(&self) -> &RemoteTable {
        &self.table
    }

    /// The primary key's columns in key order (empty: none known).
    pub fn primary_key(&self) -> &[String] {
        &self.primary_key
    }

    /// The statement a scan with these arguments sends (also what EXPLAIN shows).
    pub fn remote_select(
        &self,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<RemoteSelect, OdbcError> {
        let dialect = self.source.dialect();
        let all: Vec<usize>;
        let indices = match projection {
            Some(indices) => indices,
            None => {
                all = (0..self.schema.fields().len()).collect();
                &all
            }
        };
        let columns = indices
            .iter()
            .map(|&i| SelectColumn {
                name: self.schema.field(i).name().clone(),
                as_text: self.fetch[i].read_as_text,
            })
            .collect();
        let rendered: Vec<String> = filters
            .iter()
            .filter_map(|f| render_filter(dialect, &self.filter_schema, f))
            .collect();
        // A limit is only correct remotely when every filter is applied remotely too.
        let all_filters_remote = rendered.len() == filters.len();
        Ok(RemoteSelect {
            table: self.table.clone(),
            columns,
            filters: rendered,
            limit: limit.filter(|_| all_filters_remote),
        })
    }
}

#[async_trait]
impl TableProvider for OdbcTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.constraints.as_ref()
    }

    fn statistics(&self) -> Option<Statistics> {
        let rows = self.row_estimate?;
        let rows = usize::try_from(rows).ok()?;
        Some(crate::scan::scan_statistics(
            &self.schema,
            rows,
            &self.column_statistics,
        ))
    }

    fn table_type(&self) -> TableType {
        match self.kind {
            TableKind::Table => TableType::Base,
            TableKind::View => TableType::View,
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let dialect = self.source.dialect();
        Ok(filters
            .iter()
            .map(|f| match render_filter(dialect, &self.filter_schema, f) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let select = self.remote_select(projection, filters, limit)?;
        let dialect = self.source.dialect();
        let render = |select: &RemoteSelect| {
            select
                .to_sql(dialect)
                .map(|sql| ScanStatement::new(dialect, sql))
                .map_err(|source| OdbcError::Sql {
                    source_name: self.source.name().to_string(),
                    source,
                })
        };
        let max_rows = self.scan_max_rows(&select, filters);
        let one_statement = self.bounded_to_one_statement(select.limit, max_rows);
        let statements = match self.partition_predicates(one_statement).await? {
            Some(predicates) => predicates
                .into_iter()
                .map(|predicate| {
                    let mut part = select.clone();
                    part.filters.push(predicate);
                    render(&part)
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![render(&select)?],
        };
        let count = statements.len();
        let (schema, fetch) = match projection {
            Some(indices) => (
                Arc::new(
                    self.schema
                        .project(indices)
                        .map_err(DataFusionError::from)?,
                ),
                indices.iter().map(|&i| self.fetch[i].clone()).collect(),
            ),
            None => (Arc::clone(&self.schema), self.fetch.clone()),
        };
        Ok(Arc::new(
            OdbcExec::new(Arc::clone(&self.source), statements, schema, fetch)
                .with_filtered_scan(self.filtered_scan(filters))
                .with_partitioning_reason(
                    self.partitioning_reason(count, max_rows.filter(|_| one_statement)),
                )
                .built_by_ibarrow()
                .with_max_rows(max_rows)
                .with_row_estimate(self.scan_row_estimate(
                    &select,
                    max_rows,
                    state.config_options().optimizer.default_filter_selectivity,
                ))
                .with_column_statistics(match projection {
                    Some(indices) => indices.iter().map(|&i| self.column_statistics[i]).collect(),
                    None => self.column_statistics.clone(),
                }),
        ))
    }

    /// `INSERT INTO` this table: refused unless the source is writable; rows are appended in
    /// one transaction ([`OdbcSink`]). Every column is sent, so a column the statement leaves
    /// out gets NULL rather than its database default.
    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let source_name = self.source.name().to_string();
        if !self.source.options().writable {
            return Err(OdbcError::ReadOnly {
                source_name,
                what: format!("INSERT INTO {}", self.table),
                reason: "only queries reach a source that is not writable".into(),
            }
            .into());
        }
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::NotImplemented(format!(
                "{insert_op} into {} of source `{source_name}`: ibarrow only appends rows \
                 (INSERT INTO)",
                self.table
            )));
        }
        self.schema
            .logically_equivalent_names_and_types(&input.schema())?;
        let columns: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let statement = self
            .table
            .insert_statement(self.source.dialect(), &columns)
            .map_err(|source| OdbcError::Sql {
                source_name,
                source,
            })?;
        let sink = OdbcSink::new(
            Arc::clone(&self.source),
            statement,
            Arc::clone(&self.schema),
        );
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// The tables of a source.
impl OdbcSource {
    /// A DataFusion table for `schema.table`; names are resolved case-insensitively when that
    /// is unambiguous. Reads the columns and primary key once, through the catalog functions.
    pub async fn table(
        self: &Arc<Self>,
        schema: &str,
        table: &str,
    ) -> Result<Arc<OdbcTable>, OdbcError> {
        self.table_with_partition_column(schema, table, None).await
    }

    /// [`Self::table`], splitting scans on `partition_column` instead of the primary key.
    pub async fn table_with_partition_column(
        self: &Arc<Self>,
        schema: &str,
        table: &str,
        partition_column: Option<&str>,
    ) -> Result<Arc<OdbcTable>, OdbcError> {
        let schema = self.resolve_schema(schema).await?;
        let dialect = self.dialect();
        let source_name = self.name().to_string();
        let wanted = table.to_string();
        let reading = CallSpec::new(self, format!("reading the metadata of `{table}`"));
        let (table_name, kind, columns, primary_key, rows, stats) = self
            .call(reading, move |conn| {
                let entries = discovery::list_tables(conn, dialect, &schema)
                    .map_err(|err| conn.failure("listing tables", err))?;
                let entry =
                    match discovery::resolve_name(entries.iter().map(|e| e.name.as_str()), &wanted)
                    {
                        NameMatch::Found(name) => entries.iter().find(|e| e.name == name).cloned(),
                        NameMatch::Ambiguous(candidates) => {
                            return Err(OdbcError::AmbiguousName {
                                source_name: source_name.clone(),
                                name: wanted.clone(),
                                candidates: candidates.join(", "),
                            });
                        }
                        NameMatch::NotFound => None,
                    };
                let Some(entry) = entry else {
                    let mut available: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
                    available.truncate(50);
                    return Err(OdbcError::TableNotFound {
                        source_name: source_name.clone(),
                        schema: schema.clone(),
                        table: wanted.clone(),
                        available: if available.is_empty() {
                            "none".into()
                        } else {
                            available.join(", ")
                        },
                    });
                };
                let mut columns = discovery::table_columns(conn, dialect, &schema, &entry.name)
                    .map_err(|err| conn.failure("reading columns", err))?;
                if dialect.capabilities().hides_unconstrained_numerics() {
                    let unconstrained =
                        discovery::postgres_unconstrained_numerics(conn, &schema, &entry.name)
                            .map_err(|err| conn.failure("reading numeric precisions", err))?;
                    for column in columns
                        .iter_mut()
                        .filter(|c| unconstrained.contains(&c.name))
                    {
                        column.column_size = None;
                    }
                }
                // Views and some drivers have no primary keys; that is not an error.
                let primary_key =
                    discovery::primary_key(conn, dialect, &schema, &entry.name).unwrap_or_default();
                let rows = discovery::row_estimate(conn, dialect, &schema, &entry.name);
                let stats = discovery::column_statistics(conn, dialect, &schema, &entry.name, rows);
                let remote = discovery::remote_table(dialect, &schema, &entry.name);
                Ok((remote, entry.kind, columns, primary_key, rows, stats))
            })
            .await?;
        let mapped = columns.iter().map(|c| map_column(c, dialect)).collect();
        let mut partitioning = self.options().partitioning.clone();
        if let Some(column) = partition_column {
            partitioning.column = Some(column.to_string());
        }
        let table = OdbcTable::new(
            Arc::clone(self),
            table_name,
            kind,
            mapped,
            primary_key,
            rows,
            stats,
        )
        .with_range_partitioning(&partitioning)?;
        Ok(Arc::new(table))
    }
}

/// How many values `filter` lets the column `key` take: one for `key = value`, the list's
/// length for `key IN (values)` (which DataFusion may have rewritten as equalities joined by
/// OR), the sum of both sides' for an OR; `None` for any other filter.
fn pinned_key_values(filter: &Expr, key: &str) -> Option<usize> {
    use datafusion::logical_expr::expr::InList;
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let is_key = |expr: &Expr| matches!(expr, Expr::Column(column) if column.name == key);
    let is_value = |expr: &Expr| matches!(expr, Expr::Literal(..));
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) if (is_key(left) && is_value(right)) || (is_value(left) && is_key(right)) => Some(1),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => pinned_key_values(left, key)?.checked_add(pinned_key_values(right, key)?),
        Expr::InList(InList {
            expr,
            list,
            negated: false,
        }) if is_key(expr) && list.iter().all(is_value) => Some(list.len()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, in_list, lit};

    use super::pinned_key_values;

    #[test]
    fn only_equalities_in_lists_and_their_ors_on_the_key_pin_it() {
        assert_eq!(pinned_key_values(&col("id").eq(lit(7)), "id"), Some(1));
        assert_eq!(pinned_key_values(&lit(7).eq(col("id")), "id"), Some(1));
        let three = in_list(col("id"), vec![lit(1), lit(2), lit(3)], false);
        assert_eq!(pinned_key_values(&three, "id"), Some(3));
        let either = col("id").eq(lit(1)).or(col("id").eq(lit(2)));
        assert_eq!(pinned_key_values(&either, "id"), Some(2));
        let loose = col("id").eq(lit(1)).or(col("name").eq(lit("x")));
        assert_eq!(pinned_key_values(&loose, "id"), None);
        let not_in = in_list(col("id"), vec![lit(1)], true);
        assert_eq!(pinned_key_values(&not_in, "id"), None);
        assert_eq!(pinned_key_values(&col("name").eq(lit("x")), "id"), None);
        assert_eq!(pinned_key_values(&col("id").gt(lit(7)), "id"), None);
        assert_eq!(pinned_key_values(&col("id").eq(col("other")), "id"), None);
        let computed = in_list(col("id"), vec![lit(1), col("other")], false);
        assert_eq!(pinned_key_values(&computed, "id"), None);
    }
}
