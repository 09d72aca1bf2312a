//! DataFusion filter expressions → SQL `WHERE` text, with the capability gate.
//!
//! A filter is rendered only when the remote database is certain to evaluate it exactly as
//! DataFusion would; otherwise [`render_filter`] returns `None` and the filter stays local.
//! Rendering is all-or-nothing per filter, so a pushed filter is always `Exact`.

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, expr::InList};
use datafusion::scalar::ScalarValue;

use crate::capabilities::is_text;
use crate::dialect::Dialect;
use crate::literal::render_literal;

/// Renders `filter` for `dialect`; columns are resolved against `schema`, the table's schema
/// as DataFusion sees it (field names are the remote column names).
pub fn render_filter(dialect: Dialect, schema: &Schema, filter: &Expr) -> Option<String> {
    Renderer { dialect, schema }.predicate(filter)
}

struct Renderer<'a> {
    dialect: Dialect,
    schema: &'a Schema,
}

impl Renderer<'_> {
    /// An expression in boolean position (`WHERE …`, operands of AND/OR/NOT).
    fn predicate(&self, expr: &Expr) -> Option<String> {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
                Operator::And | Operator::Or => Some(format!(
                    "({} {} {})",
                    self.predicate(left)?,
                    if *op == Operator::And { "AND" } else { "OR" },
                    self.predicate(right)?
                )),
                Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq => self.comparison(left, *op, right),
                _ => None,
            },
            Expr::Not(inner) => Some(format!("(NOT {})", self.predicate(inner)?)),
            Expr::IsNull(inner) => Some(format!("({} IS NULL)", self.value(inner)?)),
            Expr::IsNotNull(inner) => Some(format!("({} IS NOT NULL)", self.value(inner)?)),
            Expr::InList(in_list) => self.in_list(in_list),
            Expr::Between(between) => {
                let operands = [&*between.expr, &*between.low, &*between.high];
                self.check_comparable(&operands, true)?;
                let collation = self.order_collation(&operands);
                Some(format!(
                    "({} {}BETWEEN {}{collation} AND {}{collation})",
                    self.value(&between.expr)?,
                    if between.negated { "NOT " } else { "" },
                    self.value(&between.low)?,
                    self.value(&between.high)?,
                ))
            }
            Expr::Like(like) => {
                if like.case_insensitive
                    || like.escape_char.is_some()
                    || !self.dialect.capabilities().like_is_case_sensitive()
                    || !self.is_string(&like.expr)
                {
                    return None;
                }
                // DataFusion and the databases treat `\` in patterns slightly differently.
                match &*like.pattern {
                    Expr::Literal(value, _) if !string_value(value)?.contains('\\') => {}
                    _ => return None,
                }
                self.check_comparable(&[&*like.expr, &*like.pattern], false)?;
                Some(format!(
                    "({} {}LIKE {})",
                    self.value(&like.expr)?,
                    if like.negated { "NOT " } else { "" },
                    self.value(&like.pattern)?
                ))
            }
            Expr::Column(_) if self.data_type(expr) == Some(DataType::Boolean) => {
                let column = self.value(expr)?;
                if self.dialect.has_boolean_predicates() {
                    Some(column)
                } else {
                    Some(format!(
                        "({column} = {})",
                        self.dialect.boolean_literal(true)
                    ))
                }
            }
            Expr::Literal(ScalarValue::Boolean(Some(v)), _) => {
                Some(if *v { "(1 = 1)" } else { "(1 = 0)" }.to_string())
            }
            _ => None,
        }
    }

    /// An expression in value position: a column or a literal.
    fn value(&self, expr: &Expr) -> Option<String> {
        match expr {
            Expr::Column(column) => {
                // Only columns of this table's schema can be sent.
                let field = self.schema.field_with_name(&column.name).ok()?;
                let quoted = self.dialect.quote_identifier(field.name()).ok()?;
                if self.is_string(expr) {
                    Some(self.dialect.bytewise_string_column(quoted))
                } else {
                    Some(quoted)
                }
            }
            Expr::Literal(value, _) => render_literal(self.dialect, value),
            _ => None,
        }
    }

    fn comparison(&self, left: &Expr, op: Operator, right: &Expr) -> Option<String> {
        let ordering = !matches!(op, Operator::Eq | Operator::NotEq);
        self.check_comparable(&[left, right], ordering)?;
        let collation = if ordering {
            self.order_collation(&[left, right])
        } else {
            ""
        };
        // Standard spellings: DataFusion prints `!=`, which not every database takes.
        let op = match op {
            Operator::Eq => "=",
            Operator::NotEq => "<>",
            Operator::Lt => "<",
            Operator::LtEq => "<=",
            Operator::Gt => ">",
            Operator::GtEq => ">=",
            _ => return None,
        };
        Some(format!(
            "({} {op} {}{collation})",
            self.value(left)?,
            self.value(right)?
        ))
    }

    fn in_list(&self, in_list: &InList) -> Option<String> {
        if in_list.list.is_empty() {
            return None;
        }
        let mut operands = vec![&*in_list.expr];
        operands.extend(in_list.list.iter());
        self.check_comparable(&operands, false)?;
        let items = in_list
            .list
            .iter()
            .map(|item| self.value(item))
            .collect::<Option<Vec<_>>>()?;
        Some(format!(
            "({} {}IN ({}))",
            self.value(&in_list.expr)?,
            if in_list.negated { "NOT " } else { "" },
            items.join(", ")
        ))
    }

    /// Refuses comparisons whose meaning differs between DataFusion and the database: strings
    /// where the database may not compare byte-wise, or string literals with trailing blanks
    /// (PAD SPACE collations and CHAR columns ignore them).
    fn check_comparable(&self, operands: &[&Expr], ordering: bool) -> Option<()> {
        let strings = operands.iter().any(|e| self.is_string(e));
        if !strings {
            return Some(());
        }
        let capabilities = self.dialect.capabilities();
        if !capabilities.compares_strings_bytewise()
            || (ordering && !capabilities.orders_strings_bytewise())
        {
            return None;
        }
        for operand in operands {
            if let Expr::Literal(value, _) = operand {
                if value.is_null() {
                    continue;
                }
                let text = string_value(value)?;
                if text.ends_with(' ') {
                    return None;
                }
            }
        }
        Some(())
    }

    fn order_collation(&self, operands: &[&Expr]) -> &'static str {
        if operands.iter().any(|e| self.is_string(e)) {
            self.dialect
                .capabilities()
                .string_order_collation()
                .unwrap_or("")
        } else {
            ""
        }
    }

    fn is_string(&self, expr: &Expr) -> bool {
        self.data_type(expr).is_some_and(|t| is_text(&t))
    }

    fn data_type(&self, expr: &Expr) -> Option<DataType> {
        match expr {
            Expr::Column(column) => self
                .schema
                .field_with_name(&column.name)
                .ok()
                .map(|f| f.data_type().clone()),
            Expr::Literal(value, _) => Some(value.data_type()),
            _ => None,
        }
    }
}

fn string_value(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;
    use datafusion::prelude::{col, lit};
    use test_case::test_case;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("flag", DataType::Boolean, true),
            Field::new("score", DataType::Float32, true),
            Field::new("Mixed Case", DataType::Int32, true),
        ])
    }

    fn render(dialect: Dialect, expr: &Expr) -> Option<String> {
        render_filter(dialect, &schema(), expr)
    }

    #[test]
    fn comparisons_and_boolean_logic() {
        let expr = col("id").gt(lit(5_i64)).and(
            col("name")
                .is_not_null()
                .or(datafusion::logical_expr::not(col("id").eq(lit(1_i64)))),
        );
        assert_eq!(
            render(Dialect::PostgreSql, &expr).unwrap(),
            r#"(("id" > 5) AND (("name" IS NOT NULL) OR (NOT ("id" = 1))))"#
        );
    }

    #[test_case(Dialect::PostgreSql, r#"("name" < 'm' COLLATE "C")"#)]
    #[test_case(
        Dialect::MySql,
        "(CAST(CONVERT(`name` USING utf8mb4) AS BINARY) < _utf8mb4 X'6D')"
    )]
    fn string_ordering_is_bytewise(dialect: Dialect, expected: &str) {
        assert_eq!(
            render(dialect, &col("name").lt(lit("m"))).unwrap(),
            expected
        );
    }

    #[test]
    fn string_filters_stay_local_where_collation_is_unknown() {
        assert_eq!(render(Dialect::MsSql, &col("name").eq(lit("a"))), None);
        assert_eq!(render(Dialect::Ansi, &col("name").eq(lit("a"))), None);
        assert_eq!(render(Dialect::Sqlite, &col("name").lt(lit("a"))), None);
        assert!(render(Dialect::Sqlite, &col("name").eq(lit("a"))).is_some());
        assert!(render(Dialect::MsSql, &col("id").eq(lit(1_i64))).is_some());
    }

    #[test]
    fn trailing_blank_literals_stay_local() {
        assert_eq!(
            render(Dialect::PostgreSql, &col("name").eq(lit("a "))),
            None
        );
    }

    #[test]
    fn hostile_strings_stay_inside_their_literal() {
        let expr = col("name").eq(lit(r"x\' OR 1=1 --"));
        assert_eq!(
            render(Dialect::PostgreSql, &expr).unwrap(),
            r#"("name" = E'x\\'' OR 1=1 --')"#
        );
        assert_eq!(
            render(Dialect::Sqlite, &expr).unwrap(),
            r#"("name" = 'x\'' OR 1=1 --')"#
        );
        assert_eq!(
            render(Dialect::PostgreSql, &col("name").eq(lit("a\0b"))),
            None
        );
    }

    #[test]
    fn not_equal_is_spelled_the_standard_way() {
        assert_eq!(
            render(Dialect::Db2, &col("id").not_eq(lit(1_i64))).unwrap(),
            r#"("id" <> 1)"#
        );
    }

    #[test]
    fn in_list_between_like() {
        let in_list = col("id").in_list(vec![lit(1_i64), lit(2_i64)], true);
        assert_eq!(
            render(Dialect::MySql, &in_list).unwrap(),
            "(`id` NOT IN (1, 2))"
        );
        let between = col("name").between(lit("a"), lit("c"));
        assert_eq!(
            render(Dialect::PostgreSql, &between).unwrap(),
            r#"("name" BETWEEN 'a' COLLATE "C" AND 'c' COLLATE "C")"#
        );
        let like = col("name").like(lit("ab%"));
        assert_eq!(
            render(Dialect::PostgreSql, &like).unwrap(),
            r#"("name" LIKE 'ab%')"#
        );
        assert_eq!(
            render(Dialect::Sqlite, &like),
            None,
            "SQLite LIKE ignores case"
        );
        assert_eq!(
            render(Dialect::PostgreSql, &col("name").ilike(lit("a%"))),
            None
        );
        assert_eq!(
            render(Dialect::PostgreSql, &col("name").like(lit(r"a\%"))),
            None
        );
    }

    #[test]
    fn boolean_columns_as_predicates() {
        assert_eq!(
            render(Dialect::PostgreSql, &col("flag")).unwrap(),
            r#""flag""#
        );
        assert_eq!(
            render(Dialect::MsSql, &col("flag")).unwrap(),
            "([flag] = 1)"
        );
        assert_eq!(render(Dialect::MsSql, &col("id")), None);
    }

    #[test]
    fn unsupported_expressions_stay_local() {
        assert_eq!(
            render(
                Dialect::PostgreSql,
                &(col("id") + lit(1_i64)).gt(lit(2_i64))
            ),
            None
        );
        assert_eq!(
            render(Dialect::PostgreSql, &col("score").eq(lit(1.5_f32))),
            None
        );
        assert_eq!(
            render(Dialect::PostgreSql, &col("missing").eq(lit(1_i64))),
            None
        );
        let half = col("id")
            .eq(lit(1_i64))
            .and((col("id") + lit(1_i64)).eq(lit(2_i64)));
        assert_eq!(render(Dialect::PostgreSql, &half), None, "all or nothing");
    }

    #[test]
    fn quoted_column_names() {
        assert_eq!(
            render(Dialect::MySql, &col(r#""Mixed Case""#).eq(lit(3_i32))).unwrap(),
            "(`Mixed Case` = 3)"
        );
    }
}
