//! The table function `query('<source>', '<native SQL>')`: a statement in the source's own
//! dialect, sent as written, usable like any table.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl};
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::scalar::ScalarValue;
use ibarrow_providers::{OdbcSource, PassthroughTable};

pub(crate) type SourceMap = Arc<RwLock<BTreeMap<String, Arc<OdbcSource>>>>;

#[derive(Debug)]
pub(crate) struct QueryFunction {
    pub sources: SourceMap,
}

const USAGE: &str = "use query('<source>', '<SQL in that database's dialect>')";

fn text_argument(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s),
        _ => None,
    }
}

impl TableFunctionImpl for QueryFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let (source_name, sql) = match args.exprs() {
            [source, sql] => match (text_argument(source), text_argument(sql)) {
                (Some(source), Some(sql)) => (source, sql),
                _ => {
                    return Err(DataFusionError::Plan(format!(
                        "query() takes two string literals: {USAGE}"
                    )));
                }
            },
            other => {
                return Err(DataFusionError::Plan(format!(
                    "query() takes 2 arguments, got {}: {USAGE}",
                    other.len()
                )));
            }
        };
        let source = self
            .sources
            .read()
            .ok()
            .and_then(|sources| sources.get(source_name).cloned())
            .ok_or_else(|| {
                DataFusionError::Plan(format!("query(): no source named `{source_name}`: {USAGE}"))
            })?;
        let table = PassthroughTable::describe(source, sql)?;
        Ok(Arc::new(table))
    }
}
