//! Exact decimal arithmetic as SQL: `+`, `-` and `*` over DECIMAL columns and literals, which
//! PostgreSQL and MariaDB compute exactly, to the same scale as DataFusion — so a remote
//! `SUM(price * (1 - discount))` equals DataFusion's.

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{BinaryExpr, Cast, Expr, ExprSchemable, Operator};
use datafusion::scalar::ScalarValue;

use crate::dialect::Dialect;
use crate::literal::render_literal;

/// Renders `expr` when it is decimal arithmetic the database evaluates exactly as DataFusion
/// does: columns of `schema` typed DECIMAL, decimal or integer literals, `+ - *`, and casts
/// that keep the value (to a decimal of no smaller scale). Division, functions and integer
/// arithmetic (whose overflow differs) are refused with `None`, as is SQLite, which keeps
/// decimals as floating point.
/// Returns the SQL and DataFusion's type of the value (a `Decimal128`).
pub fn render_exact_decimal(
    dialect: Dialect,
    schema: &Schema,
    expr: &Expr,
) -> Option<(String, DataType)> {
    dialect.capabilities().exact_decimal_arithmetic_scale()?;
    let typed = DFSchema::try_from(schema.clone()).ok()?;
    // Columns are the table's own, by name, whatever qualifier the plan gave them.
    let unqualified = expr
        .clone()
        .transform(|e| match e {
            Expr::Column(column) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                column.name,
            )))),
            other => Ok(Transformed::no(other)),
        })
        .ok()?
        .data;
    let (sql, data_type) = exact(dialect, schema, &typed, &unqualified)?;
    matches!(data_type, DataType::Decimal128(..)).then_some((sql, data_type))
}

/// The SQL and the DataFusion type of an exact operand.
fn exact(
    dialect: Dialect,
    schema: &Schema,
    typed: &DFSchema,
    expr: &Expr,
) -> Option<(String, DataType)> {
    match expr {
        Expr::Column(column) => {
            let field = schema.field_with_name(&column.name).ok()?;
            if !matches!(field.data_type(), DataType::Decimal128(..)) {
                return None;
            }
            Some((
                dialect.quote_identifier(field.name()).ok()?,
                field.data_type().clone(),
            ))
        }
        Expr::Literal(value @ ScalarValue::Decimal128(Some(_), ..), _) => {
            Some((render_literal(dialect, value)?, value.data_type()))
        }
        Expr::Cast(Cast { expr, field }) => {
            let data_type = field.data_type();
            let DataType::Decimal128(_, to_scale) = data_type else {
                return None;
            };
            let (sql, from) = match expr.as_ref() {
                Expr::Literal(value, _) if value.data_type().is_integer() && !value.is_null() => {
                    (render_literal(dialect, value)?, value.data_type())
                }
                inner => exact(dialect, schema, typed, inner)?,
            };
            let keeps_value = match from {
                DataType::Decimal128(_, from_scale) => from_scale <= *to_scale,
                ref integer => integer.is_integer() && *to_scale >= 0,
            };
            keeps_value.then(|| (sql, data_type.clone()))
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let sign = match op {
                Operator::Plus => "+",
                Operator::Minus => "-",
                Operator::Multiply => "*",
                _ => return None,
            };
            let (left_sql, left_type) = exact(dialect, schema, typed, left)?;
            let (right_sql, right_type) = exact(dialect, schema, typed, right)?;
            let (DataType::Decimal128(_, s1), DataType::Decimal128(_, s2)) =
                (&left_type, &right_type)
            else {
                return None;
            };
            // The scale the database gives the result: exact arithmetic keeps every digit.
            let database_scale = match op {
                Operator::Multiply => i16::from(*s1) + i16::from(*s2),
                _ => i16::from(*s1.max(s2)),
            };
            if database_scale > dialect.capabilities().exact_decimal_arithmetic_scale()? {
                return None;
            }
            // DataFusion's result must have that scale too (it caps the precision at 38
            // digits, which only makes it fail where the database would not).
            let result = expr.get_type(typed).ok()?;
            match result {
                DataType::Decimal128(_, scale) if i16::from(scale) == database_scale => {
                    Some((format!("({left_sql} {sign} {right_sql})"), result))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;
    use datafusion::logical_expr::{col, lit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("price", DataType::Decimal128(15, 2), true),
            Field::new("discount", DataType::Decimal128(15, 2), true),
            Field::new("qty", DataType::Int32, true),
            Field::new("ratio", DataType::Float64, true),
        ])
    }

    fn one() -> Expr {
        lit(ScalarValue::Decimal128(Some(100), 20, 2))
    }

    #[test]
    fn decimal_arithmetic_is_rendered() {
        let expr = col("price") * (one() - col("discount"));
        assert_eq!(
            render_exact_decimal(Dialect::PostgreSql, &schema(), &expr)
                .map(|r| r.0)
                .as_deref(),
            Some(r#"("price" * (1.00 - "discount"))"#)
        );
        assert_eq!(
            render_exact_decimal(Dialect::MySql, &schema(), &expr)
                .map(|r| r.0)
                .as_deref(),
            Some("(`price` * (1.00 - `discount`))")
        );
        let widened = Expr::Cast(Cast::new(
            Box::new(col("price")),
            DataType::Decimal128(20, 4),
        ));
        assert!(render_exact_decimal(Dialect::PostgreSql, &schema(), &widened).is_some());
    }

    #[test]
    fn anything_inexact_is_refused() {
        let narrowed = Expr::Cast(Cast::new(
            Box::new(col("price")),
            DataType::Decimal128(15, 1),
        ));
        for expr in [
            col("price") / col("discount"),
            col("qty") * col("qty"),
            col("ratio") * col("price"),
            narrowed,
        ] {
            assert_eq!(
                render_exact_decimal(Dialect::PostgreSql, &schema(), &expr),
                None,
                "{expr}"
            );
        }
        let expr = col("price") * col("discount");
        assert_eq!(
            render_exact_decimal(Dialect::Sqlite, &schema(), &expr),
            None
        );
        // MariaDB keeps at most 30 decimals.
        let wide = Schema::new(vec![Field::new("w", DataType::Decimal128(30, 16), true)]);
        assert_eq!(
            render_exact_decimal(Dialect::MySql, &wide, &(col("w") * col("w"))),
            None
        );
    }
}
