//! The table function `query('<source>', '<native SQL>')`: a statement in the source's own
//! dialect, sent as written, usable like any table.
//!
//! Its columns come from the database (the statement is prepared and described), but
//! DataFusion calls table functions synchronously. So [`crate::Engine`] finds the `query()`
//! calls of a statement before planning it and describes them asynchronously, as calls of
//! their source; the table function then takes the description made for it. Only SQL run on
//! the bare DataFusion context (no engine in between) is described on the spot, on a thread of
//! its own.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, RwLock};

use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, TableFactor, Value, Visit, Visitor,
};

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
    pub described: Arc<Described>,
}

/// A `query()` call: its source's name and its native SQL.
type QueryCall = (String, String);

/// Descriptions made for statements being planned, by call, with the number of plannings that
/// wait for each.
#[derive(Debug, Default)]
pub(crate) struct Described(Mutex<HashMap<QueryCall, (Arc<PassthroughTable>, usize)>>);

/// Holds descriptions for one planning; they are forgotten when the last one that asked for
/// them is done.
pub(crate) struct DescribedFor {
    described: Arc<Described>,
    keys: Vec<QueryCall>,
}

impl Drop for DescribedFor {
    fn drop(&mut self) {
        let Ok(mut described) = self.described.0.lock() else {
            return;
        };
        for key in &self.keys {
            if let Some((_, waiting)) = described.get_mut(key) {
                *waiting -= 1;
                if *waiting == 0 {
                    described.remove(key);
                }
            }
        }
    }
}

impl Described {
    fn get(&self, source: &str, sql: &str) -> Option<Arc<PassthroughTable>> {
        let described = self.0.lock().ok()?;
        let key = (source.to_string(), sql.to_string());
        described.get(&key).map(|(table, _)| Arc::clone(table))
    }
}

/// Describes the `query()` calls of `statement` (see the module notes); the returned guard
/// keeps them for its planning. A user whose `grants` do not allow native SQL is refused
/// before anything reaches the database.
pub(crate) async fn describe_query_calls(
    statement: &datafusion::sql::parser::Statement,
    sources: &SourceMap,
    described: &Arc<Described>,
    grants: Option<&crate::access::Grants>,
) -> crate::error::Result<DescribedFor> {
    let mut calls = Vec::new();
    collect_query_calls(statement, &mut calls);
    calls.sort();
    calls.dedup();
    let mut held = DescribedFor {
        described: Arc::clone(described),
        keys: Vec::new(),
    };
    for (source_name, sql) in calls {
        if let Some(grants) = grants {
            grants.check_native_sql(&source_name)?;
        }
        // An unknown source is left to the table function, whose error says so.
        let Some(source) = source_named(sources, &source_name) else {
            continue;
        };
        let table = Arc::new(PassthroughTable::describe(source, &sql).await?);
        let key = (source_name, sql);
        if let Ok(mut map) = described.0.lock() {
            map.entry(key.clone())
                .and_modify(|(_, waiting)| *waiting += 1)
                .or_insert((table, 1));
            held.keys.push(key);
        }
    }
    Ok(held)
}

fn collect_query_calls(statement: &datafusion::sql::parser::Statement, calls: &mut Vec<QueryCall>) {
    use datafusion::sql::parser::Statement;
    match statement {
        Statement::Statement(statement) => {
            let _ = statement.visit(&mut QueryCalls(calls));
        }
        Statement::Explain(explain) => collect_query_calls(&explain.statement, calls),
        _ => {}
    }
}

/// Finds `query('<source>', '<sql>')` in a parsed statement.
struct QueryCalls<'a>(&'a mut Vec<QueryCall>);

impl Visitor for QueryCalls<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = factor
            && name.to_string().eq_ignore_ascii_case("query")
            && let [source, sql] = args.args.as_slice()
            && let (Some(source), Some(sql)) = (quoted_argument(source), quoted_argument(sql))
        {
            self.0.push((source.to_string(), sql.to_string()));
        }
        ControlFlow::Continue(())
    }
}

fn quoted_argument(arg: &FunctionArg) -> Option<&str> {
    match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(value))) => match &value.value {
            Value::SingleQuotedString(text) => Some(text),
            _ => None,
        },
        _ => None,
    }
}

fn source_named(sources: &SourceMap, name: &str) -> Option<Arc<OdbcSource>> {
    sources.read().ok()?.get(name).cloned()
}

/// Describes on a thread of its own, for a table function called outside the engine's
/// planning: the caller's thread may be a tokio worker, which must not block on a runtime.
fn describe_elsewhere(source: Arc<OdbcSource>, sql: &str) -> Result<PassthroughTable> {
    let sql = sql.to_string();
    let described = std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|err| DataFusionError::External(Box::new(err)))?;
                runtime
                    .block_on(PassthroughTable::describe(source, &sql))
                    .map_err(DataFusionError::from)
            })
            .join()
    });
    described.unwrap_or_else(|_| {
        Err(DataFusionError::Execution(
            "query(): describing the statement panicked".into(),
        ))
    })
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
        let source = source_named(&self.sources, source_name).ok_or_else(|| {
            DataFusionError::Plan(format!("query(): no source named `{source_name}`: {USAGE}"))
        })?;
        if let Some(table) = self.described.get(source_name, sql) {
            return Ok(table);
        }
        Ok(Arc::new(describe_elsewhere(source, sql)?))
    }
}
