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

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, CastExpr, Column, InListExpr, IsNullExpr, Literal,
};
use datafusion::scalar::ScalarValue;

use crate::capabilities::{KeyUse, is_text};
use crate::dialect::Dialect;
use crate::literal::render_literal;

/// The most listed keys (over all lists of one condition) any database is sent; more are left
/// to the join, whose key ranges still narrow the scan. 262 144 integer keys make about 2 MB of
/// statement, which PostgreSQL parses and hashes in a fraction of a second (75 000 keys over
/// TPC-H SF 1 `lineitem`: 0.3 s without parallel workers, against seconds to ship its 6M rows).
pub const MAX_RUNTIME_FILTER_VALUES: usize = 262_144;

/// Lists of more keys than this that fill more than half of their range are sent as the range
/// ([`dense_key_columns`]).
const DENSE_LIST_MIN_VALUES: usize = 1_000;

/// A column of the probe side's statement, as a run-time filter may name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterColumn {
    /// The column's name in the statement's result.
    pub name: String,
    /// The column's Arrow type: it decides which keys and comparisons may be sent.
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
    let capabilities = dialect.capabilities();
    if !capabilities.sends_runtime_filters() {
        return None;
    }
    let dense = dense_key_columns(filter);
    let with_lists = Weakener {
        dialect,
        columns,
        list_budget: Some(Cell::new(capabilities.runtime_filter_value_budget())),
        dense: &dense,
    };
    let condition = with_lists.condition(filter.as_ref());
    let fits = condition
        .as_ref()
        .is_none_or(|condition| condition.len() <= capabilities.max_condition_bytes());
    if fits && with_lists.list_budget.is_some_and(|left| left.get() > 0) {
        return condition;
    }
    // Too many keys in all, or too long a statement: the ranges alone.
    Weakener {
        dialect,
        columns,
        list_budget: None,
        dense: &dense,
    }
    .condition(filter.as_ref())
}

/// A key expression and its listed values.
type KeyList<'a> = (&'a Arc<dyn PhysicalExpr>, Vec<Cow<'a, ScalarValue>>);

/// The key lists of one `IN` list: per column expression, its values (a join on several
/// columns lists its keys as `struct(a, b) IN (…)`). A one-column list's values are borrowed:
/// it may hold a quarter of a million keys, and is read twice per scan start.
fn key_lists(in_list: &InListExpr) -> Vec<KeyList<'_>> {
    if in_list.negated() {
        return Vec::new();
    }
    let Some(function) = in_list
        .expr()
        .downcast_ref::<ScalarFunctionExpr>()
        .filter(|function| function.name() == "struct")
    else {
        let values = in_list
            .list()
            .iter()
            .map(|item| literal(item.as_ref()).map(Cow::Borrowed))
            .collect::<Option<Vec<_>>>();
        return values
            .map(|values| vec![(in_list.expr(), values)])
            .unwrap_or_default();
    };
    function
        .args()
        .iter()
        .enumerate()
        .filter_map(|(field, arg)| {
            let values = in_list
                .list()
                .iter()
                .map(|item| match literal(item.as_ref())? {
                    ScalarValue::Struct(row) => {
                        ScalarValue::try_from_array(row.columns().get(field)?, 0)
                            .ok()
                            .map(Cow::Owned)
                    }
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some((arg, values))
        })
        .collect()
}

/// The columns (by index) whose listed keys, over every list in `filter`, are more than
/// [`DENSE_LIST_MIN_VALUES`] and fill more than half of their range: for them the lists
/// narrow the scan hardly more than the range does, and would cost the database a lookup per
/// row (a join's build side holding every customer, say). A partitioned join splits its keys
/// over one list per partition, so the lists are measured together.
fn dense_key_columns(filter: &Arc<dyn PhysicalExpr>) -> HashSet<usize> {
    #[derive(Default)]
    struct Keys {
        seen: HashSet<i128>,
        low: i128,
        high: i128,
        all_ordinal: bool,
    }
    let mut by_column: HashMap<usize, Keys> = HashMap::new();
    let mut visit = |expr: &dyn PhysicalExpr| {
        let Some(in_list) = expr.downcast_ref::<InListExpr>() else {
            return;
        };
        for (key, values) in key_lists(in_list) {
            let Some(index) = key_column_index(key.as_ref()) else {
                continue;
            };
            let keys = by_column.entry(index).or_insert_with(|| Keys {
                low: i128::MAX,
                high: i128::MIN,
                all_ordinal: true,
                ..Keys::default()
            });
            for value in values.iter().filter(|value| !value.is_null()) {
                let Some(at) = ordinal(value) else {
                    keys.all_ordinal = false;
                    break;
                };
                keys.seen.insert(at);
                keys.low = keys.low.min(at);
                keys.high = keys.high.max(at);
            }
        }
    };
    // Visiting cannot fail.
    let _ = filter.apply(|expr| {
        visit(expr.as_ref());
        Ok(TreeNodeRecursion::Continue)
    });
    by_column
        .into_iter()
        .filter(|(_, keys)| {
            keys.all_ordinal
                && keys.seen.len() > DENSE_LIST_MIN_VALUES
                && keys.seen.len() as i128 * 2 > keys.high - keys.low + 1
        })
        .map(|(index, _)| index)
        .collect()
}

/// The filter column a key expression reads, through casts.
fn key_column_index(expr: &dyn PhysicalExpr) -> Option<usize> {
    if let Some(cast) = expr.downcast_ref::<CastExpr>() {
        return key_column_index(cast.expr().as_ref());
    }
    expr.downcast_ref::<Column>().map(Column::index)
}

struct Weakener<'a> {
    dialect: Dialect,
    columns: &'a [FilterColumn],
    /// How many more listed values may be sent; `None`: no lists at all. Reaching zero means
    /// the condition is rendered again without lists.
    list_budget: Option<Cell<usize>>,
    /// Columns whose lists go as their ranges ([`dense_key_columns`]).
    dense: &'a HashSet<usize>,
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
        // Several columns' keys each go as that column's own list (a weaker condition: it
        // lets through combinations the join then drops).
        let lists: Vec<String> = key_lists(in_list)
            .into_iter()
            .filter_map(|(key, values)| self.key_list(key.as_ref(), &values))
            .collect();
        match lists.as_slice() {
            [] => None,
            [single] => Some(single.clone()),
            _ => Some(format!("({})", lists.join(" AND "))),
        }
    }

    /// `key IN (<values>)`, charged to the list budget, or the values' range when the key's
    /// lists are dense ([`dense_key_columns`]).
    fn key_list(&self, key: &dyn PhysicalExpr, values: &[Cow<'_, ScalarValue>]) -> Option<String> {
        let budget = self.list_budget.as_ref()?;
        let column = self.column(key)?;
        let values = values
            .iter()
            .map(Cow::as_ref)
            .filter(|value| !value.is_null());
        if key_column_index(key).is_some_and(|index| self.dense.contains(&index)) {
            let (Some(low), Some(high)) = (
                values.clone().min_by_key(|value| ordinal(value)),
                values.max_by_key(|value| ordinal(value)),
            ) else {
                return Some("(1 = 0)".to_string());
            };
            let quoted = self.quoted(column)?;
            return Some(format!(
                "(({quoted} >= {}) AND ({quoted} <= {}))",
                self.value(column, low)?,
                self.value(column, high)?
            ));
        }
        // The list holds every build-side row's key: repeated keys once, and NULL (which
        // never matches in a WHERE) left out.
        let mut seen = HashSet::new();
        let mut rendered_values = Vec::new();
        for value in values {
            let rendered = self.value(column, value)?;
            if seen.insert(rendered.clone()) {
                rendered_values.push(rendered);
            }
        }
        budget.set(budget.get().saturating_sub(rendered_values.len()));
        if budget.get() == 0 {
            return None;
        }
        if rendered_values.is_empty() {
            return Some("(1 = 0)".to_string());
        }
        Some(format!(
            "({} IN ({}))",
            self.quoted(column)?,
            rendered_values.join(", ")
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
        let comparable = self
            .dialect
            .capabilities()
            .compares_keys_exactly(KeyUse::RuntimeFilter, &column.data_type);
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

fn literal(expr: &dyn PhysicalExpr) -> Option<&ScalarValue> {
    expr.downcast_ref::<Literal>().map(Literal::value)
}

/// A whole number or a date (in days) as a position on one line, for measuring how densely
/// keys fill their range.
fn ordinal(value: &ScalarValue) -> Option<i128> {
    match value {
        ScalarValue::Int8(Some(v)) => Some(i128::from(*v)),
        ScalarValue::Int16(Some(v)) => Some(i128::from(*v)),
        ScalarValue::Int32(Some(v)) | ScalarValue::Date32(Some(v)) => Some(i128::from(*v)),
        ScalarValue::Int64(Some(v)) => Some(i128::from(*v)),
        ScalarValue::UInt8(Some(v)) => Some(i128::from(*v)),
        ScalarValue::UInt16(Some(v)) => Some(i128::from(*v)),
        ScalarValue::UInt32(Some(v)) => Some(i128::from(*v)),
        ScalarValue::UInt64(Some(v)) => Some(i128::from(*v)),
        _ => None,
    }
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
    use datafusion::arrow::array::{
        ArrayRef, Date32Array, Float64Array, Int64Array, StringArray, StructArray,
    };
    use datafusion::arrow::datatypes::{Field, Fields, Schema};
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
            let values = (0..MAX_RUNTIME_FILTER_VALUES as i64 / 2 + 1).map(|i| Some(start + 7 * i));
            binary(
                binary(Arc::clone(&id), Operator::GtEq, lit(start)),
                Operator::And,
                list(values.collect()),
            )
        };
        let two = binary(long(0), Operator::Or, long(1_000_000));
        assert_eq!(
            render(Dialect::MySql, &two).unwrap(),
            "((`id` >= 0) OR (`id` >= 1000000))"
        );
        // SQLite's budget is smaller (its statement length limit).
        let sqlite_budget = Dialect::Sqlite.capabilities().runtime_filter_value_budget() as i64;
        let within = list((0..sqlite_budget - 1).map(|i| Some(3 * i)).collect());
        let past = list((0..sqlite_budget).map(|i| Some(3 * i)).collect());
        assert!(render(Dialect::Sqlite, &within).unwrap().contains(" IN ("));
        assert_eq!(render(Dialect::Sqlite, &past), None);
        assert!(
            render(Dialect::PostgreSql, &past)
                .unwrap()
                .contains(" IN (")
        );
        // Within the key budget but over MySQL's statement size: 200 000 keys of 19 digits.
        let long_keys = list(
            (0..200_000)
                .map(|i| Some(1_000_000_000_000_000_000 + 1_000 * i))
                .collect(),
        );
        assert_eq!(render(Dialect::MySql, &long_keys), None);
        assert!(
            render(Dialect::PostgreSql, &long_keys)
                .unwrap()
                .contains(" IN (")
        );
    }

    #[test]
    fn many_keys_filling_their_range_go_as_the_range() {
        let schema = schema();
        let in_list = |column: &str, values: ArrayRef| -> Arc<dyn PhysicalExpr> {
            Arc::new(
                InListExpr::try_new_from_array(
                    col(column, &schema).unwrap(),
                    values,
                    false,
                    &schema,
                )
                .unwrap(),
            )
        };
        let keys = |values: Vec<i64>| in_list("id", Arc::new(Int64Array::from(values)));
        // Every key of 1..=2 000 (and one repeated): the range.
        let mut dense: Vec<i64> = (1..=2_000).rev().collect();
        dense.push(7);
        assert_eq!(
            render(Dialect::PostgreSql, &keys(dense)).unwrap(),
            r#"(("id" >= 1) AND ("id" <= 2000))"#
        );
        // Every third key: the list.
        let sparse = render(
            Dialect::PostgreSql,
            &keys((1..=2_000).map(|k| 3 * k).collect()),
        );
        assert!(sparse.unwrap().starts_with(r#"("id" IN (3, 6, 9, "#));
        // A partitioned join's lists (odd keys, even keys) are measured together: dense.
        let odd = keys((1..=2_000).filter(|k| k % 2 == 1).collect());
        let even = keys((1..=2_000).filter(|k| k % 2 == 0).collect());
        assert_eq!(
            render(Dialect::PostgreSql, &binary(odd, Operator::Or, even)).unwrap(),
            r#"((("id" >= 1) AND ("id" <= 1999)) OR (("id" >= 2) AND ("id" <= 2000)))"#
        );
        // A short list stays a list however dense.
        assert_eq!(
            render(Dialect::PostgreSql, &keys(vec![1, 2, 3])).unwrap(),
            r#"("id" IN (1, 2, 3))"#
        );
        // Dates count in days.
        let days = in_list(
            "day",
            Arc::new(Date32Array::from((19_000..21_000).collect::<Vec<_>>())),
        );
        assert_eq!(
            render(Dialect::PostgreSql, &days).unwrap(),
            r#"(("day" >= DATE '2022-01-08') AND ("day" <= DATE '2027-06-30'))"#
        );
    }

    #[test]
    fn keys_of_several_columns_go_as_one_list_per_column() {
        let schema = schema();
        let fields = Fields::from(vec![
            Field::new("c0", DataType::Int64, true),
            Field::new("c1", DataType::Utf8, true),
            Field::new("c2", DataType::Float64, true),
        ]);
        let key: Arc<dyn PhysicalExpr> = Arc::new(ScalarFunctionExpr::new(
            "struct",
            datafusion::functions::core::r#struct(),
            vec![
                col("id", &schema).unwrap(),
                col("name", &schema).unwrap(),
                col("price", &schema).unwrap(),
            ],
            Arc::new(Field::new("struct", DataType::Struct(fields.clone()), true)),
            Arc::new(datafusion::common::config::ConfigOptions::default()),
        ));
        let rows = StructArray::new(
            fields,
            vec![
                Arc::new(Int64Array::from(vec![5, 9, 5])),
                Arc::new(StringArray::from(vec!["a", "b", "b"])),
                Arc::new(Float64Array::from(vec![1.5, 2.5, 3.5])),
            ],
            None,
        );
        let in_list: Arc<dyn PhysicalExpr> =
            Arc::new(InListExpr::try_new_from_array(key, Arc::new(rows), false, &schema).unwrap());
        // Floating-point keys never go; the others each as their own list.
        assert_eq!(
            render(Dialect::PostgreSql, &in_list).unwrap(),
            r#"(("id" IN (5, 9)) AND ("name" IN ('a', 'b')))"#
        );
        // SQLite takes integers only.
        assert_eq!(
            render(Dialect::Sqlite, &in_list).unwrap(),
            r#"("id" IN (5, 9))"#
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
}
