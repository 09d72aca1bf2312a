//! Run-time filters → SQL: the key ranges and key lists a hash join learns from its build side
//! (DataFusion's dynamic filters), sent with the probe side's remote statement so that rows
//! which cannot match never leave the database.
//!
//! Unlike [`crate::render_filter`], this renders a *weaker* condition when it cannot render
//! the whole: the join still checks every row, so a remote condition may keep rows DataFusion's
//! filter would drop, but must never drop a row it would keep. Hence: a conjunct that cannot
//! be rendered is left out, a disjunction is rendered whole or not at all, and only
//! comparisons the database makes at least as loosely as DataFusion are sent — equality of
//! integers, decimals, dates and strings (a case-insensitive or blank-padding collation only
//! matches more; not on SQLite, whose untyped columns compare text and numbers as unequal),
//! order comparisons of integers, decimals and dates, never of strings or floating point.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, CastExpr, Column, InListExpr, IsNullExpr, Literal,
};
use datafusion::scalar::ScalarValue;

use crate::dialect::Dialect;
use crate::literal::render_literal;

/// More listed keys (over all lists of one condition) are left to the join: the statement
/// would grow past what drivers and planners handle well, and the key ranges still narrow
/// the scan.
pub const MAX_RUNTIME_FILTER_VALUES: usize = 32_768;

/// Whether run-time filters are sent to this database: derived tables, IN lists and literals
/// are proven on these.
pub fn runtime_filters_proven(dialect: Dialect) -> bool {
    matches!(
        dialect,
        Dialect::PostgreSql | Dialect::MySql | Dialect::Sqlite
    )
}

/// A column of the probe side's statement, as a run-time filter may name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterColumn {
    /// The column's name in the statement's result.
    pub name: String,
    pub data_type: DataType,
    /// The values reach Arrow as the database stores them: not converted to text, not
    /// stripped of trailing blanks.
    pub stored_as_read: bool,
}

/// The SQL condition implied by `filter` (a snapshot, with no dynamic parts left) over
/// `columns` (the statement's columns, by the filter's column indices), or `None` when none
/// of it can be sent.
pub fn render_runtime_filter(
    dialect: Dialect,
    columns: &[FilterColumn],
    filter: &Arc<dyn PhysicalExpr>,
) -> Option<String> {
    if !runtime_filters_proven(dialect) {
        return None;
    }
    let with_lists = Weakener {
        dialect,
        columns,
        list_budget: Some(Cell::new(MAX_RUNTIME_FILTER_VALUES)),
    };
    let condition = with_lists.condition(filter.as_ref());
    if with_lists.list_budget.is_some_and(|left| left.get() > 0) {
        return condition;
    }
    // Too many keys in all: the ranges alone.
    Weakener {
        dialect,
        columns,
        list_budget: None,
    }
    .condition(filter.as_ref())
}

/// `SELECT * FROM (<statement>) AS <alias> WHERE <condition>`: the statement's own result,
/// narrowed. Its column names must be unique (they are for every statement ibarrow builds).
pub fn filtered_statement(
    dialect: Dialect,
    statement: &str,
    condition: &str,
) -> Result<String, crate::SqlError> {
    let alias = dialect.quote_identifier("ibarrow_filtered")?;
    Ok(format!(
        "SELECT * FROM ({statement}) AS {alias} WHERE {condition}"
    ))
}

struct Weakener<'a> {
    dialect: Dialect,
    columns: &'a [FilterColumn],
    /// How many more listed values may be sent; `None`: no lists at all. Reaching zero means
    /// the condition is rendered again without lists.
    list_budget: Option<Cell<usize>>,
}

impl Weakener<'_> {
    fn condition(&self, expr: &dyn PhysicalExpr) -> Option<String> {
        if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
            return match binary.op() {
                Operator::And => {
                    match (
                        self.condition(binary.left().as_ref()),
                        self.condition(binary.right().as_ref()),
                    ) {
                        (Some(l), Some(r)) => Some(format!("({l} AND {r})")),
                        (one, None) | (None, one) => one,
                    }
                }
                Operator::Or => Some(format!(
                    "({} OR {})",
                    self.condition(binary.left().as_ref())?,
                    self.condition(binary.right().as_ref())?
                )),
                op => self.comparison(binary.left().as_ref(), *op, binary.right().as_ref()),
            };
        }
        if let Some(in_list) = expr.downcast_ref::<InListExpr>() {
            return self.in_list(in_list);
        }
        if let Some(is_null) = expr.downcast_ref::<IsNullExpr>() {
            let column = self.column(is_null.arg().as_ref())?;
            return Some(format!("({} IS NULL)", self.quoted(column)?));
        }
        if let Some(case) = expr.downcast_ref::<CaseExpr>() {
            return self.any_branch(case);
        }
        if let Some(literal) = expr.downcast_ref::<Literal>() {
            // `false` (nothing can match) is worth sending; `true` says nothing.
            return match literal.value() {
                ScalarValue::Boolean(Some(false)) => Some("(1 = 0)".to_string()),
                _ => None,
            };
        }
        None
    }

    /// A partitioned join routes each row to one branch by a hash DataFusion computes; a row
    /// can only match if some branch lets it through.
    fn any_branch(&self, case: &CaseExpr) -> Option<String> {
        let mut branches = case
            .when_then_expr()
            .iter()
            .map(|(_, then)| then)
            .chain(case.else_expr())
            .filter(|branch| !is_false(branch.as_ref()))
            .map(|branch| self.condition(branch.as_ref()))
            .collect::<Option<Vec<_>>>()?;
        match branches.len() {
            0 => Some("(1 = 0)".to_string()),
            1 => branches.pop(),
            _ => Some(format!("({})", branches.join(" OR "))),
        }
    }

    fn comparison(
        &self,
        left: &dyn PhysicalExpr,
        op: Operator,
        right: &dyn PhysicalExpr,
    ) -> Option<String> {
        let (column, op, value) = match (self.column(left), self.column(right)) {
            (Some(column), None) => (column, op, literal(right)?),
            (None, Some(column)) => (column, op.swap()?, literal(left)?),
            _ => return None,
        };
        let sql_op = match op {
            Operator::Eq => "=",
            Operator::Lt => "<",
            Operator::LtEq => "<=",
            Operator::Gt => ">",
            Operator::GtEq => ">=",
            _ => return None,
        };
        if op != Operator::Eq && !self.orders_as_datafusion(&column.data_type) {
            return None;
        }
        Some(format!(
            "({} {sql_op} {})",
            self.quoted(column)?,
            self.value(column, value)?
        ))
    }

    fn in_list(&self, in_list: &InListExpr) -> Option<String> {
        let budget = self.list_budget.as_ref()?;
        if in_list.negated() {
            return None;
        }
        let column = self.column(in_list.expr().as_ref())?;
        // The list holds every build-side row's key: repeated keys once, and NULL (which
        // never matches in a WHERE) left out.
        let mut seen = HashSet::new();
        let mut values = Vec::new();
        for item in in_list.list() {
            let value = literal(item.as_ref())?;
            if value.is_null() {
                continue;
            }
            let rendered = self.value(column, value)?;
            if seen.insert(rendered.clone()) {
                values.push(rendered);
            }
        }
        budget.set(budget.get().saturating_sub(values.len()));
        if budget.get() == 0 {
            return None;
        }
        if values.is_empty() {
            return Some("(1 = 0)".to_string());
        }
        Some(format!(
            "({} IN ({}))",
            self.quoted(column)?,
            values.join(", ")
        ))
    }

    /// The statement column `expr` reads, when its values compare remotely no more strictly
    /// than in DataFusion. A widening integer cast (keys of different integer widths) keeps
    /// every value, so the column itself stands for it.
    fn column(&self, expr: &dyn PhysicalExpr) -> Option<&FilterColumn> {
        if let Some(cast) = expr.downcast_ref::<CastExpr>() {
            let inner = self.column(cast.expr().as_ref())?;
            return (inner.data_type.is_integer()
                && cast.cast_type().is_signed_integer()
                && integer_width(cast.cast_type()) > integer_width(&inner.data_type))
            .then_some(inner);
        }
        let column = self.columns.get(expr.downcast_ref::<Column>()?.index())?;
        let comparable = match &column.data_type {
            t if t.is_integer() => true,
            // SQLite keeps dates as text and decimals as floating point, and a column without
            // a declared type (read as text) holds numbers that never equal a text literal.
            DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Date32
            | DataType::Decimal128(..) => self.dialect != Dialect::Sqlite,
            _ => false,
        };
        (comparable && column.stored_as_read).then_some(column)
    }

    fn orders_as_datafusion(&self, data_type: &DataType) -> bool {
        data_type.is_integer() || matches!(data_type, DataType::Date32 | DataType::Decimal128(..))
    }

    fn quoted(&self, column: &FilterColumn) -> Option<String> {
        self.dialect.quote_identifier(&column.name).ok()
    }

    /// A literal compared with `column`: of the column's own kind, so that the database
    /// compares it as a value of the column's type.
    fn value(&self, column: &FilterColumn, value: &ScalarValue) -> Option<String> {
        let same_kind = match (&column.data_type, value.data_type()) {
            (c, v) if c.is_integer() => v.is_integer(),
            (c, v) if is_text(c) => is_text(&v),
            (c, v) => *c == v,
        };
        if !same_kind || value.is_null() {
            return None;
        }
        render_literal(self.dialect, value)
    }
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn literal(expr: &dyn PhysicalExpr) -> Option<&ScalarValue> {
    expr.downcast_ref::<Literal>().map(Literal::value)
}

fn is_false(expr: &dyn PhysicalExpr) -> bool {
    matches!(literal(expr), Some(ScalarValue::Boolean(Some(false))))
}

fn integer_width(data_type: &DataType) -> u32 {
    match data_type {
        DataType::Int8 | DataType::UInt8 => 8,
        DataType::Int16 | DataType::UInt16 => 16,
        DataType::Int32 | DataType::UInt32 => 32,
        _ => 64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::physical_expr::expressions::{col, lit};

    fn columns() -> Vec<FilterColumn> {
        let column = |name: &str, data_type: DataType, stored_as_read: bool| FilterColumn {
            name: name.into(),
            data_type,
            stored_as_read,
        };
        vec![
            column("id", DataType::Int64, true),
            column("name", DataType::Utf8, true),
            column("price", DataType::Float64, true),
            column("code", DataType::Utf8, false),
            column("day", DataType::Date32, true),
        ]
    }

    fn schema() -> Schema {
        Schema::new(
            columns()
                .into_iter()
                .map(|c| Field::new(c.name, c.data_type, true))
                .collect::<Vec<_>>(),
        )
    }

    fn binary(
        l: Arc<dyn PhysicalExpr>,
        op: Operator,
        r: Arc<dyn PhysicalExpr>,
    ) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(l, op, r))
    }

    fn render(dialect: Dialect, filter: &Arc<dyn PhysicalExpr>) -> Option<String> {
        render_runtime_filter(dialect, &columns(), filter)
    }

    #[test]
    fn key_ranges_and_lists_render_as_sql() {
        let schema = schema();
        let id = col("id", &schema).unwrap();
        let bounds = binary(
            binary(Arc::clone(&id), Operator::GtEq, lit(3_i64)),
            Operator::And,
            binary(Arc::clone(&id), Operator::LtEq, lit(9_i64)),
        );
        let list: Arc<dyn PhysicalExpr> = Arc::new(
            InListExpr::try_new_from_array(
                Arc::clone(&id),
                Arc::new(Int64Array::from(vec![3, 5, 9])),
                false,
                &schema,
            )
            .unwrap(),
        );
        let filter = binary(bounds, Operator::And, list);
        assert_eq!(
            render(Dialect::PostgreSql, &filter).unwrap(),
            r#"((("id" >= 3) AND ("id" <= 9)) AND ("id" IN (3, 5, 9)))"#
        );
        assert_eq!(
            render(Dialect::MySql, &filter).unwrap(),
            "(((`id` >= 3) AND (`id` <= 9)) AND (`id` IN (3, 5, 9)))"
        );
        // Not proven on the other databases.
        assert_eq!(render(Dialect::MsSql, &filter), None);
    }

    #[test]
    fn what_cannot_be_sent_only_loosens_the_condition() {
        let schema = schema();
        let id = col("id", &schema).unwrap();
        let name = col("name", &schema).unwrap();
        let price = col("price", &schema).unwrap();
        let id_low = binary(Arc::clone(&id), Operator::GtEq, lit(3_i64));
        // String order differs between collations and DataFusion: only the id part is sent.
        let name_low = binary(Arc::clone(&name), Operator::GtEq, lit("b"));
        let both = binary(Arc::clone(&id_low), Operator::And, Arc::clone(&name_low));
        assert_eq!(
            render(Dialect::PostgreSql, &both).unwrap(),
            r#"("id" >= 3)"#
        );
        // A disjunction with an unsendable side cannot be narrowed at all.
        let either = binary(Arc::clone(&id_low), Operator::Or, name_low);
        assert_eq!(render(Dialect::PostgreSql, &either), None);
        // Floating point and values read as text are never compared remotely.
        let float = binary(price, Operator::Eq, lit(1.5_f64));
        assert_eq!(render(Dialect::PostgreSql, &float), None);
        let code = binary(col("code", &schema).unwrap(), Operator::Eq, lit("x"));
        assert_eq!(render(Dialect::PostgreSql, &code), None);
        // String equality is sent: a looser collation only matches more. MariaDB's literal
        // is marked UTF-8; SQLite gets none.
        let name_eq = binary(name, Operator::Eq, lit("it's"));
        assert_eq!(
            render(Dialect::PostgreSql, &name_eq).unwrap(),
            r#"("name" = 'it''s')"#
        );
        assert_eq!(
            render(Dialect::MySql, &name_eq).unwrap(),
            "(`name` = _utf8mb4 X'69742773')"
        );
        assert_eq!(render(Dialect::Sqlite, &name_eq), None);
        // `true` says nothing; `false` lets nothing through.
        assert_eq!(render(Dialect::Sqlite, &lit(true)), None);
        assert_eq!(render(Dialect::Sqlite, &lit(false)).unwrap(), "(1 = 0)");
        // Dates: SQLite keeps them as text.
        let day = binary(
            col("day", &schema).unwrap(),
            Operator::LtEq,
            lit(ScalarValue::Date32(Some(19_000))),
        );
        assert_eq!(render(Dialect::Sqlite, &day), None);
        assert_eq!(
            render(Dialect::PostgreSql, &day).unwrap(),
            r#"("day" <= DATE '2022-01-08')"#
        );
    }

    #[test]
    fn key_lists_skip_nulls_and_repeats_and_give_way_to_ranges_when_long() {
        let schema = schema();
        let id = col("id", &schema).unwrap();
        let list = |values: Vec<Option<i64>>| -> Arc<dyn PhysicalExpr> {
            Arc::new(
                InListExpr::try_new_from_array(
                    Arc::clone(&id),
                    Arc::new(Int64Array::from(values)),
                    false,
                    &schema,
                )
                .unwrap(),
            )
        };
        assert_eq!(
            render(
                Dialect::PostgreSql,
                &list(vec![Some(4), None, Some(2), Some(4)])
            )
            .unwrap(),
            r#"("id" IN (4, 2))"#
        );
        // Over the budget (counted over all lists): only the ranges are sent.
        let long = |start: i64| {
            let values = (start..start + MAX_RUNTIME_FILTER_VALUES as i64 / 2 + 1).map(Some);
            binary(
                binary(Arc::clone(&id), Operator::GtEq, lit(start)),
                Operator::And,
                list(values.collect()),
            )
        };
        let two = binary(long(0), Operator::Or, long(100_000));
        assert_eq!(
            render(Dialect::MySql, &two).unwrap(),
            "((`id` >= 0) OR (`id` >= 100000))"
        );
    }

    #[test]
    fn partitioned_join_branches_become_a_disjunction() {
        let schema = schema();
        let id = col("id", &schema).unwrap();
        let branch = |low: i64, high: i64| {
            binary(
                binary(Arc::clone(&id), Operator::GtEq, lit(low)),
                Operator::And,
                binary(Arc::clone(&id), Operator::LtEq, lit(high)),
            )
        };
        let case: Arc<dyn PhysicalExpr> = Arc::new(
            CaseExpr::try_new(
                Some(binary(Arc::clone(&id), Operator::Modulo, lit(2_i64))),
                vec![(lit(0_i64), branch(2, 4)), (lit(1_i64), branch(7, 9))],
                Some(lit(false)),
            )
            .unwrap(),
        );
        assert_eq!(
            render(Dialect::Sqlite, &case).unwrap(),
            r#"((("id" >= 2) AND ("id" <= 4)) OR (("id" >= 7) AND ("id" <= 9)))"#
        );
    }

    #[test]
    fn wraps_the_statement_as_a_derived_table() {
        assert_eq!(
            filtered_statement(Dialect::MySql, "SELECT `a` FROM `t`", "(`a` = 1)").unwrap(),
            "SELECT * FROM (SELECT `a` FROM `t`) AS `ibarrow_filtered` WHERE (`a` = 1)"
        );
    }
}
