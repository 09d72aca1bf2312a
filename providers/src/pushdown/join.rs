//! Joins between tables of one source, run in the database as one statement.
//!
//! Rewritten: equi-joins (no extra join filter, `NULL` never equal to `NULL`) that are INNER,
//! LEFT, or the semi and anti joins DataFusion makes of `EXISTS`, `IN (subquery)` and `NOT
//! EXISTS` (not of `NOT IN`, whose NULL rule differs), whose inputs are each a scan of the
//! same source with all its filters pushed, or an earlier pushed join — so multi-way joins
//! of one source push as a whole, bottom-up. Key columns must have the same type on both
//! sides and one the database compares exactly as DataFusion does: integers everywhere; dates
//! and decimals on PostgreSQL and MariaDB (SQLite keeps them as text and floating point);
//! strings on PostgreSQL only (MariaDB compares them case-insensitively and ignoring trailing
//! blanks). A source turns it off with
//! `pushdown_joins = false`.

use std::sync::Arc;

use crate::type_map::ColumnFetch;
use crate::{OdbcSource, OdbcTable, PassthroughTable};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{NullEquality, Result};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{Expr, Join, JoinType, LogicalPlan, Projection, TableScan};
use ibarrow_sql::{Dialect, JoinKind, KeyUse, RemoteJoin, Side};

use super::{PUSHED_PREFIX, remote_scan};

/// What one remote statement produces for a sub-plan: the statement, and for each output
/// column of the sub-plan (in order) its name in the statement and how it is fetched.
struct Relation {
    source: Arc<OdbcSource>,
    sql: String,
    columns: Vec<RelationColumn>,
}

#[derive(Clone)]
struct RelationColumn {
    name: String,
    data_type: DataType,
    fetch: ColumnFetch,
}

/// The sub-plan as one remote statement, when it is a pushable scan, an earlier pushed
/// sub-plan, or a renaming/projection of one.
fn relation(plan: &LogicalPlan) -> Option<Relation> {
    match plan {
        LogicalPlan::SubqueryAlias(alias) => relation(&alias.input),
        LogicalPlan::TableScan(scan) => scan_relation(scan),
        LogicalPlan::Projection(projection) => projected(projection),
        _ => None,
    }
}

fn scan_relation(scan: &TableScan) -> Option<Relation> {
    if scan.fetch.is_some() {
        return None;
    }
    let provider = source_as_provider(&scan.source).ok()?;
    let provider = provider.as_ref() as &dyn std::any::Any;
    let fields = scan.projected_schema.fields();
    if let Some(table) = provider.downcast_ref::<OdbcTable>() {
        let select = table
            .remote_select(scan.projection.as_ref(), &scan.filters, None)
            .ok()?;
        if select.filters.len() != scan.filters.len() {
            return None;
        }
        let source = Arc::clone(table.source());
        let sql = select.to_sql(source.dialect()).ok()?;
        let columns = fields
            .iter()
            .map(|f| {
                Some(RelationColumn {
                    name: f.name().clone(),
                    data_type: f.data_type().clone(),
                    fetch: table.column_fetch(f.name())?.clone(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        return Some(Relation {
            source,
            sql,
            columns,
        });
    }
    // Only statements ibarrow built itself: a user's passthrough SQL may not nest.
    let pushed = provider.downcast_ref::<PassthroughTable>()?;
    if !scan.table_name.table().starts_with(PUSHED_PREFIX) {
        return None;
    }
    let sql = pushed.narrowed(&scan.filters)?.render();
    let all: Vec<usize> = (0..pushed.fetch().len()).collect();
    let indices = scan.projection.as_ref().unwrap_or(&all);
    let columns = indices
        .iter()
        .zip(fields.iter())
        .map(|(&i, f)| RelationColumn {
            name: format!("c{i}"),
            data_type: f.data_type().clone(),
            fetch: pushed.fetch()[i].clone(),
        })
        .collect();
    Some(Relation {
        source: Arc::clone(pushed.source()),
        sql,
        columns,
    })
}

/// A projection that only picks and renames columns of a relation.
fn projected(projection: &Projection) -> Option<Relation> {
    let inner = relation(&projection.input)?;
    let input_schema = projection.input.schema();
    let columns = projection
        .expr
        .iter()
        .map(|expr| {
            let column = match expr {
                Expr::Column(column) => column,
                Expr::Alias(alias) => match alias.expr.as_ref() {
                    Expr::Column(column) => column,
                    _ => return None,
                },
                _ => return None,
            };
            let index = input_schema.index_of_column(column).ok()?;
            inner.columns.get(index).cloned()
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Relation { columns, ..inner })
}

/// Whether the database compares `data_type` keys exactly as DataFusion does.
fn comparable_key(dialect: Dialect, data_type: &DataType, fetch: &ColumnFetch) -> bool {
    if fetch.read_as_text || fetch.trim_trailing_blanks {
        return false;
    }
    dialect
        .capabilities()
        .compares_keys_exactly(KeyUse::Join, data_type)
}

pub(super) fn pushed_join(join: &Join) -> Result<Option<LogicalPlan>> {
    let kind = match join.join_type {
        JoinType::Inner => JoinKind::Inner,
        JoinType::Left => JoinKind::Left,
        JoinType::LeftSemi => JoinKind::Semi,
        JoinType::LeftAnti => JoinKind::Anti,
        _ => return Ok(None),
    };
    if join.filter.is_some()
        || join.null_equality != NullEquality::NullEqualsNothing
        || join.null_aware
        || join.on.is_empty()
    {
        return Ok(None);
    }
    let (Some(left), Some(right)) = (relation(&join.left), relation(&join.right)) else {
        return Ok(None);
    };
    if !Arc::ptr_eq(&left.source, &right.source) || !left.source.options().pushdown_joins {
        return Ok(None);
    }
    let dialect = left.source.dialect();
    let mut on = Vec::new();
    for (left_key, right_key) in &join.on {
        let (Expr::Column(l), Expr::Column(r)) = (left_key, right_key) else {
            return Ok(None);
        };
        let (Ok(l), Ok(r)) = (
            join.left.schema().index_of_column(l),
            join.right.schema().index_of_column(r),
        ) else {
            return Ok(None);
        };
        let (l, r) = (&left.columns[l], &right.columns[r]);
        if l.data_type != r.data_type
            || !comparable_key(dialect, &l.data_type, &l.fetch)
            || !comparable_key(dialect, &r.data_type, &r.fetch)
        {
            return Ok(None);
        }
        on.push((l.name.clone(), r.name.clone()));
    }
    // INNER and LEFT joins output the left columns, then the right ones; semi and anti joins
    // the left ones only.
    let right_output = match kind {
        JoinKind::Inner | JoinKind::Left => right.columns.as_slice(),
        JoinKind::Semi | JoinKind::Anti => &[],
    };
    let output: Vec<(Side, &RelationColumn)> = left
        .columns
        .iter()
        .map(|c| (Side::Left, c))
        .chain(right_output.iter().map(|c| (Side::Right, c)))
        .collect();
    if output.len() != join.schema.fields().len() {
        return Ok(None);
    }
    let remote = RemoteJoin {
        left: left.sql.clone(),
        right: right.sql.clone(),
        kind,
        on,
        output: output
            .iter()
            .map(|(side, c)| (*side, c.name.clone()))
            .collect(),
    };
    let Ok(sql) = remote.to_sql(dialect) else {
        return Ok(None);
    };
    let fetch = output.iter().map(|(_, c)| c.fetch.clone()).collect();
    Ok(Some(remote_scan(
        "join",
        &left.source,
        sql,
        &join.schema,
        fetch,
    )?))
}
