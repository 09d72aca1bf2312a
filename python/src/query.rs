//! The query builder for Python (python/python/ibarrow/_query.py wraps these): expressions as DataFusion
//! `Expr`s, steps on `ibarrow::Query` (src/query.rs), which checks names and types as each
//! step is added.

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::functions_aggregate::expr_fn as aggregates;
use datafusion::logical_expr::{Expr, JoinType, Operator, SortExpr, binary_expr};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::errors::{error_of_kind, to_py};
use crate::result::{PyQueryResult, schema_capsule};
use crate::runtime::wait_for_future;

/// A column, a value, or a computation on them.
#[pyclass(name = "Expr", module = "ibarrow._internal", frozen, from_py_object)]
#[derive(Clone)]
pub struct PyExpr {
    pub expr: Expr,
}

/// An expression with a direction, for `sort`.
#[pyclass(
    name = "SortExpr",
    module = "ibarrow._internal",
    frozen,
    from_py_object
)]
#[derive(Clone)]
pub struct PySortExpr {
    pub sort: SortExpr,
}

fn input_error(message: String) -> PyErr {
    error_of_kind("InputError", message)
}

/// The column `name` as written (`"status"`, or `"orders.status"` to name the table too):
/// names match exactly, as in polars.
#[pyfunction]
pub fn col(name: &str) -> PyExpr {
    PyExpr {
        expr: Expr::Column(datafusion::common::Column::from_qualified_name_ignore_case(
            name,
        )),
    }
}

/// A constant: None, bool, int, float, str, bytes, date, datetime or Decimal.
#[pyfunction]
pub fn lit(value: &Bound<'_, PyAny>) -> PyResult<PyExpr> {
    Ok(PyExpr {
        expr: Expr::Literal(crate::params::scalar(value, "a literal")?, None),
    })
}

/// An aggregate: `count` (of rows without an argument), `count_distinct`, `sum`, `avg`,
/// `min`, `max`.
#[pyfunction]
#[pyo3(signature = (name, expr=None))]
pub fn aggregate(name: &str, expr: Option<PyExpr>) -> PyResult<PyExpr> {
    let expr = match (name, expr) {
        ("count", None) => datafusion::functions_aggregate::count::count_all(),
        ("count", Some(e)) => aggregates::count(e.expr),
        ("count_distinct", Some(e)) => aggregates::count_distinct(e.expr),
        ("sum", Some(e)) => aggregates::sum(e.expr),
        ("avg", Some(e)) => aggregates::avg(e.expr),
        ("min", Some(e)) => aggregates::min(e.expr),
        ("max", Some(e)) => aggregates::max(e.expr),
        (name, None) => return Err(input_error(format!("{name}() needs an expression"))),
        (name, Some(_)) => {
            return Err(input_error(format!(
                "unknown aggregate `{name}`; use count, count_distinct, sum, avg, min or max"
            )));
        }
    };
    Ok(PyExpr { expr })
}

/// An Arrow type named as DataFusion prints it (`Int64`, `Utf8`, `Decimal128(12, 2)`).
fn data_type(name: &str) -> PyResult<DataType> {
    name.parse::<DataType>().map_err(|err| {
        input_error(format!(
            "unknown type `{name}` ({err}); use an Arrow type name such as Int64, Float64, \
             Utf8, Boolean, Date32 or Decimal128(12, 2)"
        ))
    })
}

#[pymethods]
impl PyExpr {
    /// `self <op> other` for the operators Python writes (`==`, `<`, `+`, `&` …).
    fn binary(&self, op: &str, other: PyExpr) -> PyResult<PyExpr> {
        let operator = match op {
            "==" => Operator::Eq,
            "!=" => Operator::NotEq,
            "<" => Operator::Lt,
            "<=" => Operator::LtEq,
            ">" => Operator::Gt,
            ">=" => Operator::GtEq,
            "+" => Operator::Plus,
            "-" => Operator::Minus,
            "*" => Operator::Multiply,
            "/" => Operator::Divide,
            "%" => Operator::Modulo,
            "&" => Operator::And,
            "|" => Operator::Or,
            other => return Err(input_error(format!("unknown operator `{other}`"))),
        };
        Ok(PyExpr {
            expr: binary_expr(self.expr.clone(), operator, other.expr),
        })
    }

    fn not_(&self) -> PyExpr {
        PyExpr {
            expr: Expr::Not(Box::new(self.expr.clone())),
        }
    }

    fn negative(&self) -> PyExpr {
        PyExpr {
            expr: Expr::Negative(Box::new(self.expr.clone())),
        }
    }

    fn alias(&self, name: &str) -> PyExpr {
        PyExpr {
            expr: self.expr.clone().alias(name),
        }
    }

    fn is_null(&self) -> PyExpr {
        PyExpr {
            expr: self.expr.clone().is_null(),
        }
    }

    fn is_not_null(&self) -> PyExpr {
        PyExpr {
            expr: self.expr.clone().is_not_null(),
        }
    }

    #[pyo3(signature = (values, negated=false))]
    fn isin(&self, values: Vec<PyExpr>, negated: bool) -> PyExpr {
        PyExpr {
            expr: self
                .expr
                .clone()
                .in_list(values.into_iter().map(|v| v.expr).collect(), negated),
        }
    }

    #[pyo3(signature = (pattern, negated=false))]
    fn like(&self, pattern: PyExpr, negated: bool) -> PyExpr {
        let like = if negated {
            self.expr.clone().not_like(pattern.expr)
        } else {
            self.expr.clone().like(pattern.expr)
        };
        PyExpr { expr: like }
    }

    fn between(&self, low: PyExpr, high: PyExpr) -> PyExpr {
        PyExpr {
            expr: self.expr.clone().between(low.expr, high.expr),
        }
    }

    fn cast(&self, to: &str) -> PyResult<PyExpr> {
        Ok(PyExpr {
            expr: datafusion::logical_expr::cast(self.expr.clone(), data_type(to)?),
        })
    }

    #[pyo3(signature = (ascending=true, nulls_first=false))]
    fn sort(&self, ascending: bool, nulls_first: bool) -> PySortExpr {
        PySortExpr {
            sort: self.expr.clone().sort(ascending, nulls_first),
        }
    }

    fn __repr__(&self) -> String {
        format!("ibarrow.Expr({})", self.expr)
    }
}

#[pymethods]
impl PySortExpr {
    fn __repr__(&self) -> String {
        format!("ibarrow.SortExpr({})", self.sort)
    }
}

fn names(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

/// A query built step by step; each step returns a new query.
#[pyclass(name = "Query", module = "ibarrow._internal", frozen, from_py_object)]
#[derive(Clone)]
pub struct PyQuery {
    query: ibarrow::Query,
}

impl PyQuery {
    pub fn new(query: ibarrow::Query) -> Self {
        Self { query }
    }

    fn step(
        &self,
        step: impl FnOnce(ibarrow::Query) -> ibarrow::Result<ibarrow::Query>,
    ) -> PyResult<PyQuery> {
        Ok(PyQuery {
            query: step(self.query.clone()).map_err(to_py)?,
        })
    }
}

fn join_type(how: &str) -> PyResult<JoinType> {
    Ok(match how {
        "inner" => JoinType::Inner,
        "left" => JoinType::Left,
        "right" => JoinType::Right,
        "full" | "outer" => JoinType::Full,
        "semi" => JoinType::LeftSemi,
        "anti" => JoinType::LeftAnti,
        other => {
            return Err(input_error(format!(
                "unknown join `how={other}`; use inner, left, right, full, semi or anti"
            )));
        }
    })
}

#[pymethods]
impl PyQuery {
    fn filter(&self, predicate: PyExpr) -> PyResult<PyQuery> {
        self.step(|q| q.filter(predicate.expr))
    }

    fn select(&self, exprs: Vec<PyExpr>) -> PyResult<PyQuery> {
        self.step(|q| q.select(exprs.into_iter().map(|e| e.expr)))
    }

    fn with_column(&self, name: &str, expr: PyExpr) -> PyResult<PyQuery> {
        self.step(|q| q.with_column(name, expr.expr))
    }

    /// `on`: key columns both sides name alike (kept once); else `left_on`/`right_on`.
    #[pyo3(signature = (right, how="inner", on=None, left_on=None, right_on=None))]
    fn join(
        &self,
        right: PyQuery,
        how: &str,
        on: Option<Vec<String>>,
        left_on: Option<Vec<String>>,
        right_on: Option<Vec<String>>,
    ) -> PyResult<PyQuery> {
        let how = join_type(how)?;
        match (on, left_on, right_on) {
            (Some(on), None, None) => self.step(|q| q.join_using(right.query, how, &names(&on))),
            (None, Some(left), Some(right_keys)) => {
                self.step(|q| q.join(right.query, how, &names(&left), &names(&right_keys)))
            }
            _ => Err(input_error(
                "join needs `on=` (columns both sides name alike) or both `left_on=` and \
                 `right_on=`"
                    .into(),
            )),
        }
    }

    fn aggregate(&self, group_by: Vec<PyExpr>, aggregates: Vec<PyExpr>) -> PyResult<PyQuery> {
        self.step(|q| {
            q.aggregate(
                group_by.into_iter().map(|e| e.expr).collect(),
                aggregates.into_iter().map(|e| e.expr).collect(),
            )
        })
    }

    fn sort(&self, order: Vec<PySortExpr>) -> PyResult<PyQuery> {
        self.step(|q| q.sort(order.into_iter().map(|s| s.sort).collect()))
    }

    #[pyo3(signature = (n, offset=0))]
    fn limit(&self, n: Option<usize>, offset: usize) -> PyResult<PyQuery> {
        self.step(|q| q.limit(offset, n))
    }

    fn distinct(&self) -> PyResult<PyQuery> {
        self.step(ibarrow::Query::distinct)
    }

    fn alias(&self, name: &str) -> PyResult<PyQuery> {
        self.step(|q| q.alias(name))
    }

    fn to_sql(&self) -> PyResult<String> {
        self.query.to_sql().map_err(to_py)
    }

    fn columns(&self) -> Vec<String> {
        self.query
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let schema: SchemaRef = self.query.schema();
        schema_capsule(py, &schema)
    }

    /// The query planned as a statement of its session (checked, governed), ready to read.
    fn result(&self, py: Python<'_>) -> PyResult<PyQueryResult> {
        let session = self.query.session().clone();
        let query = self.query.clone();
        let (frame, text) = wait_for_future(py, query.into_statement())?.map_err(to_py)?;
        Ok(PyQueryResult::new(frame, session, text))
    }

    fn explain(&self, py: Python<'_>, verbose: bool, analyze: bool) -> PyResult<String> {
        let query = self.query.clone();
        wait_for_future(py, async move { query.explain(verbose, analyze).await })?.map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!("ibarrow.Query({:?})", self.columns())
    }
}
