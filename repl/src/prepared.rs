//! `PREPARE name [(type, …)] AS statement`, `EXECUTE name(value, …)` and
//! `DEALLOCATE [PREPARE] name | ALL`, as psql users know them. The statement is planned once
//! in the user's session (`ibarrow::Session::prepare`: checks and access control as for any
//! statement) and each EXECUTE binds its values in the plan, cast to the declared types.

use std::collections::HashMap;

use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{Expr, Ident, Statement, UnaryOperator};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// One of the three statements, parsed.
#[derive(Debug, PartialEq)]
pub enum Command {
    Prepare {
        name: String,
        /// The declared parameter types, as SQL (`INT`, `DATE` …); may be fewer than the
        /// placeholders, or none.
        types: Vec<String>,
        sql: String,
    },
    Execute {
        name: String,
        /// The values as SQL literals.
        values: Vec<String>,
    },
    /// `None`: `DEALLOCATE ALL`.
    Deallocate { name: Option<String> },
}

/// `Some` when `sql` starts with PREPARE, EXECUTE or DEALLOCATE (then parsed or refused with
/// what to write instead); `None` for every other statement.
pub fn parse(sql: &str) -> Option<Result<Command, String>> {
    let first = sql.split_whitespace().next()?.to_ascii_uppercase();
    if !matches!(first.as_str(), "PREPARE" | "EXECUTE" | "DEALLOCATE") {
        return None;
    }
    let statements = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(statements) => statements,
        Err(err) => return Some(Err(format!("{err}; {USAGE}"))),
    };
    let [statement] = statements.as_slice() else {
        return Some(Err(format!("one statement at a time; {USAGE}")));
    };
    Some(command(statement))
}

const USAGE: &str = "write PREPARE name [(type, ...)] AS SELECT ... $1 ..., then \
                     EXECUTE name(value, ...), and DEALLOCATE name";

fn command(statement: &Statement) -> Result<Command, String> {
    match statement {
        Statement::Prepare {
            name,
            data_types,
            statement,
        } => Ok(Command::Prepare {
            name: statement_name(name),
            types: data_types.iter().map(ToString::to_string).collect(),
            sql: statement.to_string(),
        }),
        Statement::Execute {
            name: Some(name),
            parameters,
            immediate: false,
            into,
            using,
            ..
        } if into.is_empty() && using.is_empty() => {
            let values = parameters
                .iter()
                .map(|value| {
                    if is_literal(value) {
                        Ok(value.to_string())
                    } else {
                        Err(format!(
                            "EXECUTE takes literal values (42, 'text', DATE '2024-01-31', \
                             NULL), not `{value}`"
                        ))
                    }
                })
                .collect::<Result<_, _>>()?;
            let [part] = name.0.as_slice() else {
                return Err(format!("`{name}` is no statement name; {USAGE}"));
            };
            let Some(name) = part.as_ident() else {
                return Err(format!("`{name}` is no statement name; {USAGE}"));
            };
            Ok(Command::Execute {
                name: statement_name(name),
                values,
            })
        }
        Statement::Deallocate { name, .. } => Ok(Command::Deallocate {
            name: (!name.value.eq_ignore_ascii_case("all") || name.quote_style.is_some())
                .then(|| statement_name(name)),
        }),
        _ => Err(USAGE.to_string()),
    }
}

/// A statement's name as PostgreSQL keeps it: folded to lower case unless quoted.
fn statement_name(name: &Ident) -> String {
    match name.quote_style {
        Some(_) => name.value.clone(),
        None => name.value.to_lowercase(),
    }
}

/// A constant: a literal, a signed one, a typed string or a cast of one. Anything else (a
/// column, a subquery) could read data outside the prepared statement's access checks.
fn is_literal(expr: &Expr) -> bool {
    match expr {
        Expr::Value(_) | Expr::TypedString { .. } => true,
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => is_literal(expr),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => is_literal(expr),
        _ => false,
    }
}

/// The statements prepared in one REPL session, by name.
#[derive(Default)]
pub struct Prepared {
    statements: HashMap<String, (ibarrow::PreparedStatement, Vec<String>)>,
}

impl Prepared {
    pub fn insert(
        &mut self,
        name: String,
        statement: ibarrow::PreparedStatement,
        types: Vec<String>,
    ) -> Result<(), String> {
        if self.statements.contains_key(&name) {
            return Err(format!(
                "prepared statement \"{name}\" already exists; DEALLOCATE {name} first"
            ));
        }
        self.statements.insert(name, (statement, types));
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<&(ibarrow::PreparedStatement, Vec<String>), String> {
        self.statements.get(name).ok_or_else(|| {
            format!("prepared statement \"{name}\" does not exist; PREPARE {name} AS ... first")
        })
    }

    pub fn remove(&mut self, name: Option<&str>) -> Result<(), String> {
        match name {
            None => {
                self.statements.clear();
                Ok(())
            }
            Some(name) => self
                .statements
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| format!("prepared statement \"{name}\" does not exist")),
        }
    }
}

/// The `SELECT` that evaluates EXECUTE's literal values, each cast to its declared type.
pub fn values_query(values: &[String], types: &[String]) -> String {
    let columns: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(n, value)| match types.get(n) {
            Some(data_type) => format!("CAST({value} AS {data_type}) AS v{n}"),
            None => format!("{value} AS v{n}"),
        })
        .collect();
    format!("SELECT {}", columns.join(", "))
}

/// The one row of `values_query` as scalars.
pub fn row_values(
    batches: &[arrow::array::RecordBatch],
) -> Result<Vec<ScalarValue>, datafusion::error::DataFusionError> {
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(Vec::new());
    };
    batch
        .columns()
        .iter()
        .map(|column| ScalarValue::try_from_array(column, 0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_statements_parse_and_others_pass_through() {
        assert_eq!(parse("SELECT 1"), None);
        assert_eq!(
            parse("prepare by_id (INT) AS SELECT name FROM t WHERE id = $1").unwrap(),
            Ok(Command::Prepare {
                name: "by_id".into(),
                types: vec!["INT".into()],
                sql: "SELECT name FROM t WHERE id = $1".into(),
            })
        );
        assert_eq!(
            parse("EXECUTE by_id(-7, 'O''Brien', DATE '2024-01-31')").unwrap(),
            Ok(Command::Execute {
                name: "by_id".into(),
                values: vec!["-7".into(), "'O''Brien'".into(), "DATE '2024-01-31'".into()],
            })
        );
        assert_eq!(
            parse("DEALLOCATE PREPARE by_id").unwrap(),
            Ok(Command::Deallocate {
                name: Some("by_id".into())
            })
        );
        assert_eq!(
            parse("DEALLOCATE ALL").unwrap(),
            Ok(Command::Deallocate { name: None })
        );
        // Names fold to lower case unless quoted, as in PostgreSQL.
        assert_eq!(
            parse("EXECUTE By_Id(1)").unwrap(),
            Ok(Command::Execute {
                name: "by_id".into(),
                values: vec!["1".into()],
            })
        );
        assert_eq!(
            parse("DEALLOCATE \"Q\"").unwrap(),
            Ok(Command::Deallocate {
                name: Some("Q".into())
            })
        );
    }

    #[test]
    fn execute_refuses_anything_but_literals() {
        let err = parse("EXECUTE by_id((SELECT secret FROM db.main.t))")
            .unwrap()
            .unwrap_err();
        assert!(err.contains("literal values"), "{err}");
        assert!(parse("EXECUTE by_id(id)").unwrap().is_err());
        assert!(parse("PREPARE").unwrap().is_err());
    }

    #[test]
    fn values_are_cast_to_the_declared_types() {
        assert_eq!(
            values_query(&["1".into(), "'x'".into()], &["BIGINT".into()]),
            "SELECT CAST(1 AS BIGINT) AS v0, 'x' AS v1"
        );
    }
}
