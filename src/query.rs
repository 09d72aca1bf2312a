//! A query built step by step from DataFusion expressions instead of SQL text
//! ([`Session::table`], [`Engine::table`]).
//!
//! Each step checks what it names against the schema the previous steps produced: an unknown
//! column or table is [`Error::UnknownName`] with the close matches, a type that does not fit
//! (a filter that is not a condition, text added to a number) is refused naming the step. The
//! plan runs as a statement of its session, like planned SQL: the access policy rewrites it,
//! rate limits, the result cache and the query log see it (src/engine.rs, `Session::built`).

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::CatalogProviderList;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, TableReference};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::provider_as_source;
use datafusion::execution::{SendableRecordBatchStream, SessionState};
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, LogicalPlanBuilder, SortExpr};
use futures::TryStreamExt;

use crate::access::Grants;
use crate::engine::{Engine, Session};
use crate::error::{Error, Result};

/// Close matches offered for an unknown name.
const MOST_SUGGESTIONS: usize = 3;
/// Names listed when none is close.
const MOST_LISTED: usize = 12;

/// A lazy query on the engine's tables: steps add to its plan, and nothing runs until it is
/// collected, streamed or explained. Cheap to clone, so one query can branch into several.
#[derive(Clone)]
pub struct Query {
    session: Session,
    /// The state tables were resolved in (the session user's catalogs under `[roles]`); steps
    /// are checked in it.
    state: Arc<SessionState>,
    /// The grants the tables were resolved under; `None`: no `[roles]`, or the engine's own
    /// ungoverned query ([`Engine::table`]).
    grants: Option<Arc<Grants>>,
    /// Whether the query runs with the engine's own rights ([`Engine::table`]): no access
    /// policy and no quotas, as for [`Engine::sql`].
    own_rights: bool,
    /// The catalogs and the policy the tables were resolved under: when a reload or a refresh
    /// changed either, the query resolves its tables again before it runs.
    generation: u64,
    plan: LogicalPlan,
    /// The tables read, for messages and the query log.
    tables: Vec<String>,
    /// The last step that changed the columns, for messages.
    reshaped_by: Option<&'static str>,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query")
            .field("tables", &self.tables)
            .field("user", &self.session.user())
            .finish()
    }
}

impl Session {
    /// The table `name` (`source.schema.table`) as the start of a [`Query`] of this session:
    /// its user's access policy applies when the query runs. An unknown source, schema or
    /// table is an error naming the close matches.
    pub async fn table(&self, name: &str) -> Result<Query> {
        let generation = self.engine().catalog_generation();
        let (state, grants) = self.builder_state();
        let listing = self.catalogs();
        Query::blank(self.clone(), state, grants, false, generation)
            .open(listing, name)
            .await
    }
}

impl Engine {
    /// The table `name` as the start of a [`Query`] run with the engine's own rights, like
    /// [`Engine::sql`]: no access policy applies. Use [`Session::table`] for a user's query.
    pub async fn table(&self, name: &str) -> Result<Query> {
        let generation = self.catalog_generation();
        let state = self.context().state();
        let listing = Arc::clone(state.catalog_list());
        Query::blank(
            self.session("engine", "rust"),
            state,
            None,
            true,
            generation,
        )
        .open(listing, name)
        .await
    }
}

impl Query {
    /// A query of `session` reading nothing yet, to [`Self::open`] a table in.
    fn blank(
        session: Session,
        state: SessionState,
        grants: Option<Arc<Grants>>,
        own_rights: bool,
        generation: u64,
    ) -> Self {
        Self {
            session,
            state: Arc::new(state),
            grants,
            own_rights,
            generation,
            plan: LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(DFSchema::empty()),
            }),
            tables: Vec::new(),
            reshaped_by: None,
        }
    }

    /// This (blank) query started from the table `name`: resolved in its state, and under
    /// `[roles]` narrowed to the columns its user may read (a table the user may not read is
    /// refused here, naming the grant). Names offered for a typo come from `listing`, what
    /// the user may list.
    async fn open(mut self, listing: Arc<dyn CatalogProviderList>, name: &str) -> Result<Self> {
        let (reference, provider) = resolve(&self.state, &listing, name).await?;
        let mut builder = LogicalPlanBuilder::scan(
            reference.clone(),
            provider_as_source(Arc::clone(&provider)),
            None,
        )?;
        if let Some(grants) = &self.grants {
            let access =
                crate::engine::table_access(grants, &reference, &self.state, provider.as_ref())?;
            if access
                .columns
                .contains(&crate::access::ColumnAccess::Denied)
            {
                // The user's view of the table: its readable columns only.
                let readable: Vec<Expr> = builder
                    .schema()
                    .iter()
                    .zip(&access.columns)
                    .filter(|(_, access)| **access != crate::access::ColumnAccess::Denied)
                    .map(|((qualifier, field), _)| Expr::from((qualifier, field)))
                    .collect();
                builder = builder.project(readable)?;
            }
        }
        self.plan = builder.build()?;
        self.tables = vec![reference.to_string()];
        Ok(self)
    }

    /// Keeps the rows for which `predicate` is true.
    pub fn filter(self, predicate: Expr) -> Result<Self> {
        self.check_columns("filter", [&predicate])?;
        let plan = LogicalPlanBuilder::from(self.plan.clone())
            .filter(predicate)
            .and_then(LogicalPlanBuilder::build);
        self.then("filter", plan, None)
    }

    /// The result's columns: each expression one column (name it with `.alias`).
    pub fn select(self, exprs: impl IntoIterator<Item = Expr>) -> Result<Self> {
        let exprs: Vec<Expr> = exprs.into_iter().collect();
        self.check_columns("select", &exprs)?;
        let plan = LogicalPlanBuilder::from(self.plan.clone())
            .project(exprs)
            .and_then(LogicalPlanBuilder::build);
        self.then("select", plan, Some("select"))
    }

    /// Keeps the columns named, in that order.
    pub fn select_columns(self, columns: &[&str]) -> Result<Self> {
        self.select(columns.iter().map(|name| Expr::Column(exact(name))))
    }

    /// Adds the column `name` computed by `expr`, or replaces the column of that name.
    pub fn with_column(self, name: &str, expr: Expr) -> Result<Self> {
        self.check_columns("with_column", [&expr])?;
        let mut replaced = false;
        let mut exprs: Vec<Expr> = self
            .plan
            .schema()
            .iter()
            .map(|(qualifier, field)| {
                if field.name() == name && !replaced {
                    replaced = true;
                    expr.clone().alias(name)
                } else {
                    Expr::from((qualifier, field))
                }
            })
            .collect();
        if !replaced {
            exprs.push(expr.alias(name));
        }
        let plan = LogicalPlanBuilder::from(self.plan.clone())
            .project(exprs)
            .and_then(LogicalPlanBuilder::build);
        self.then("with_column", plan, Some("with_column"))
    }

    /// Joins `right` where each column of `left_on` equals the column of `right_on` at the
    /// same position. Both sides keep their columns; give a side a name with [`Self::alias`]
    /// to tell equal names apart.
    pub fn join(
        self,
        right: Query,
        join_type: JoinType,
        left_on: &[&str],
        right_on: &[&str],
    ) -> Result<Self> {
        let right = self.joinable(right)?;
        if left_on.len() != right_on.len() || left_on.is_empty() {
            return Err(Error::InputRejected(format!(
                "join: {} left and {} right key columns; name the same number of key columns, \
                 at least one, on each side",
                left_on.len(),
                right_on.len()
            )));
        }
        let left_keys: Vec<Column> = left_on.iter().map(|name| exact(name)).collect();
        let right_keys: Vec<Column> = right_on.iter().map(|name| exact(name)).collect();
        let as_exprs =
            |keys: &[Column]| -> Vec<Expr> { keys.iter().cloned().map(Expr::Column).collect() };
        self.check_columns("join", &as_exprs(&left_keys))?;
        right.check_columns("join", &as_exprs(&right_keys))?;
        let plan = LogicalPlanBuilder::from(self.plan.clone())
            .join(right.plan.clone(), join_type, (left_keys, right_keys), None)
            .and_then(LogicalPlanBuilder::build);
        self.joined(right, plan)
    }

    /// Joins `right` on the columns named `on` in both, as SQL's `JOIN … USING (…)`: each key
    /// appears once in the result (from the side that keeps every row; merged with `coalesce`
    /// for a full join).
    pub fn join_using(self, right: Query, join_type: JoinType, on: &[&str]) -> Result<Self> {
        let right = self.joinable(right)?;
        if on.is_empty() {
            return Err(Error::InputRejected(
                "join: no key column named; name at least one column both sides have".into(),
            ));
        }
        let keys: Vec<Expr> = on
            .iter()
            .map(|name| Expr::Column(Column::from(*name)))
            .collect();
        self.check_columns("join", &keys)?;
        right.check_columns("join", &keys)?;
        let left_schema = Arc::clone(self.plan.schema());
        let right_schema = Arc::clone(right.plan.schema());
        let qualified = |schema: &DFSchema, name: &str| -> Result<Column> {
            Ok(schema
                .qualified_field_with_unqualified_name(name)
                .map(Column::from)?)
        };
        let left_keys = on
            .iter()
            .map(|name| qualified(&left_schema, name))
            .collect::<Result<Vec<_>>>()?;
        let right_keys = on
            .iter()
            .map(|name| qualified(&right_schema, name))
            .collect::<Result<Vec<_>>>()?;
        let joined = LogicalPlanBuilder::from(self.plan.clone()).join(
            right.plan.clone(),
            join_type,
            (left_keys.clone(), right_keys.clone()),
            None,
        );
        // The keys once, as USING gives them; semi and anti joins keep one side only.
        let keeps_both = matches!(
            join_type,
            JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full
        );
        let plan = joined.and_then(|builder| {
            if !keeps_both {
                return builder.build();
            }
            let mut exprs = Vec::new();
            for (qualifier, field) in left_schema.iter() {
                let key = left_keys.iter().position(|key| {
                    key.name == *field.name() && key.relation.as_ref() == qualifier
                });
                let left = Expr::from((qualifier, field));
                exprs.push(match key {
                    None => left,
                    Some(at) => {
                        let right = Expr::Column(right_keys[at].clone());
                        match join_type {
                            JoinType::Right => right.alias(field.name()),
                            JoinType::Full => {
                                datafusion::functions::expr_fn::coalesce(vec![left, right])
                                    .alias(field.name())
                            }
                            _ => left,
                        }
                    }
                });
            }
            for (qualifier, field) in right_schema.iter() {
                let is_key = right_keys
                    .iter()
                    .any(|key| key.name == *field.name() && key.relation.as_ref() == qualifier);
                if !is_key {
                    exprs.push(Expr::from((qualifier, field)));
                }
            }
            builder.project(exprs)?.build()
        });
        self.joined(right, plan)
    }

    /// Groups the rows by `group_by` and computes `aggregates` (`sum`, `count`, …) per group;
    /// the result has the group keys, then the aggregates.
    pub fn aggregate(self, group_by: Vec<Expr>, aggregates: Vec<Expr>) -> Result<Self> {
        self.check_columns("aggregate", group_by.iter().chain(&aggregates))?;
        let plan = LogicalPlanBuilder::from(self.plan.clone())
            .aggregate(group_by, aggregates)
            .and_then(LogicalPlanBuilder::build);
        self.then("aggregate", plan, Some("aggregate"))
    }

    /// Orders the rows (`col("x").sort(ascending, nulls_first)`).
    pub fn sort(self, order: Vec<SortExpr>) -> Result<Self> {
        self.check_columns("sort", order.iter().map(|sort| &sort.expr))?;
        let plan = LogicalPlanBuilder::from(self.plan.clone())
            .sort(order)
            .and_then(LogicalPlanBuilder::build);
        self.then("sort", plan, None)
    }

    /// Skips `skip` rows, then keeps at most `fetch` (`None`: all the rest).
    pub fn limit(self, skip: usize, fetch: Option<usize>) -> Result<Self> {
        let plan = LogicalPlanBuilder::from(self.plan.clone())
            .limit(skip, fetch)
            .and_then(LogicalPlanBuilder::build);
        self.then("limit", plan, None)
    }

    /// Keeps one of each set of equal rows.
    pub fn distinct(self) -> Result<Self> {
        let plan = LogicalPlanBuilder::from(self.plan.clone())
            .distinct()
            .and_then(LogicalPlanBuilder::build);
        self.then("distinct", plan, None)
    }

    /// Names the query so far (`alias.column` then refers to its columns), as `AS alias` does
    /// in SQL: needed to join a table with itself.
    pub fn alias(self, alias: &str) -> Result<Self> {
        let plan = LogicalPlanBuilder::from(self.plan.clone())
            .alias(alias)
            .and_then(LogicalPlanBuilder::build);
        self.then("alias", plan, None)
    }

    /// The result's columns and types, known without running the query.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }

    /// The SQL the steps amount to, in DataFusion's dialect (what `Engine::sql` would take
    /// to plan the same query).
    pub fn to_sql(&self) -> Result<String> {
        // The unparser writes an aggregate's results before its keys unless a projection
        // above it says the order: name the result's columns in order.
        let ordered = match &self.plan {
            LogicalPlan::Projection(_) => self.plan.clone(),
            plan => {
                let columns: Vec<Expr> = plan.schema().iter().map(Expr::from).collect();
                LogicalPlanBuilder::from(plan.clone())
                    .project(columns)
                    .and_then(LogicalPlanBuilder::build)
                    .unwrap_or_else(|_| plan.clone())
            }
        };
        datafusion::sql::unparser::plan_to_sql(&ordered)
            .map(|statement| statement.to_string())
            .map_err(|err| {
                Error::InputRejected(format!(
                    "this query cannot be written as SQL: {}",
                    err.strip_backtrace()
                ))
            })
    }

    /// The plan as `EXPLAIN` shows it, with the statement each database is sent (`analyze`:
    /// runs the query and adds what each operator did).
    pub async fn explain(&self, verbose: bool, analyze: bool) -> Result<String> {
        let frame = self.clone().into_frame().await?;
        let batches = frame.explain(verbose, analyze)?.collect().await?;
        Ok(
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .map_err(datafusion::error::DataFusionError::from)?
                .to_string(),
        )
    }

    /// The query as a DataFusion frame ready to run through its session
    /// ([`Session::execute`]): checked within the rate limits and rewritten for the user's
    /// access policy, or the result cache's kept result.
    pub async fn into_frame(self) -> Result<DataFrame> {
        Ok(self.into_statement().await?.0)
    }

    /// [`Self::into_frame`] and the text the query log shows for it
    /// ([`Self::statement_text`], written once: unparsing costs about as much as planning).
    pub async fn into_statement(self) -> Result<(DataFrame, String)> {
        let text = self.statement_text();
        let frame = self.frame_logged_as(&text).await?;
        Ok((frame, text))
    }

    async fn frame_logged_as(self, text: &str) -> Result<DataFrame> {
        let query = self.current().await?;
        query.session.built(
            Arc::unwrap_or_clone(query.state),
            query.plan,
            query.grants.as_ref(),
            !query.own_rights,
            text,
        )
    }

    /// This query as the engine stands now: after a reload or a refresh since it was started,
    /// its tables are resolved again (a table gone, or with other columns, is an error saying
    /// to build the query again) under the grants in force now.
    async fn current(self) -> Result<Self> {
        let engine = self.session.engine();
        let generation = engine.catalog_generation();
        if generation == self.generation {
            return Ok(self);
        }
        let (state, grants) = if self.own_rights {
            (engine.context().state(), None)
        } else {
            self.session.builder_state()
        };
        let listing = Arc::clone(state.catalog_list());
        let mut scans = Vec::new();
        self.plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                scans.push((scan.table_name.clone(), scan.source.schema()));
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let mut providers = std::collections::HashMap::new();
        for (name, schema) in scans {
            let (_, provider) = resolve(&state, &listing, &name.to_string()).await?;
            if provider.schema() != schema {
                return Err(Error::InputRejected(format!(
                    "{name} has other columns since this query was built (the configuration \
                     was reloaded or the source refreshed); build the query again"
                )));
            }
            providers.insert(name, provider);
        }
        let plan = self
            .plan
            .transform_up(|node| match node {
                LogicalPlan::TableScan(mut scan) => match providers.get(&scan.table_name) {
                    Some(provider) => {
                        scan.source = provider_as_source(Arc::clone(provider));
                        Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
                    }
                    None => Ok(Transformed::no(LogicalPlan::TableScan(scan))),
                },
                other => Ok(Transformed::no(other)),
            })?
            .data;
        Ok(Self {
            state: Arc::new(state),
            grants,
            generation,
            plan,
            ..self
        })
    }

    /// Runs the query to the end.
    pub async fn collect(self) -> Result<Vec<RecordBatch>> {
        Ok(self.stream().await?.try_collect().await?)
    }

    /// Runs the query, its batches streamed as they arrive.
    pub async fn stream(self) -> Result<SendableRecordBatchStream> {
        let session = self.session.clone();
        let (frame, text) = self.into_statement().await?;
        session.execute(frame, &text).await
    }

    /// The session the query runs in.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// What the query log shows for this query: its SQL form, or the tables it reads.
    pub fn statement_text(&self) -> String {
        self.to_sql()
            .unwrap_or_else(|_| format!("-- query built on {}", self.tables.join(", ")))
    }

    /// `right` when it may join this query: started on the same engine, for the same user and
    /// with the same rights.
    fn joinable(&self, right: Query) -> Result<Query> {
        if !self.session.engine().same_as(right.session.engine()) {
            return Err(Error::InputRejected(
                "join: the right side is a query of another engine; start both from tables of \
                 the same engine"
                    .into(),
            ));
        }
        if right.session.user() != self.session.user() || right.own_rights != self.own_rights {
            return Err(Error::InputRejected(format!(
                "join: the right side is a query of user `{}` and the left of `{}`; start both \
                 from tables of the same session",
                right.session.user(),
                self.session.user()
            )));
        }
        Ok(right)
    }

    fn joined(self, right: Query, plan: datafusion::error::Result<LogicalPlan>) -> Result<Self> {
        // Both sides naming one table: DataFusion's message does not say what to do.
        let plan = plan.map_err(|err| match err.find_root() {
            datafusion::error::DataFusionError::SchemaError(inner, _)
                if inner.to_string().contains("duplicate qualified field") =>
            {
                datafusion::error::DataFusionError::Plan(format!(
                    "both sides read the same table; give one side a name with `alias` \
                     (`.alias(\"other\")`), as `AS` does in SQL ({})",
                    err.strip_backtrace()
                ))
            }
            _ => err,
        });
        let mut tables = self.tables.clone();
        tables.extend(right.tables);
        // The older side decides whether the tables are resolved again before the run.
        let generation = self.generation.min(right.generation);
        let joined = self.then("join", plan, Some("join"))?;
        Ok(Self {
            tables,
            generation,
            ..joined
        })
    }

    /// The query with `plan` as its plan after `step`, once the analyzer has checked its
    /// types (as planning SQL would).
    fn then(
        self,
        step: &'static str,
        plan: datafusion::error::Result<LogicalPlan>,
        reshaped_by: Option<&'static str>,
    ) -> Result<Self> {
        let refused = |err: datafusion::error::DataFusionError| {
            Error::InputRejected(format!("{step}: {}", err.strip_backtrace()))
        };
        let plan = plan.map_err(refused)?;
        self.state
            .analyzer()
            .execute_and_check(plan.clone(), self.state.config_options(), |_, _| {})
            .map_err(refused)?;
        Ok(Self {
            plan,
            reshaped_by: reshaped_by.or(self.reshaped_by),
            ..self
        })
    }

    /// Every column `exprs` name exists in the query's current result.
    fn check_columns<'a>(
        &self,
        step: &str,
        exprs: impl IntoIterator<Item = &'a Expr>,
    ) -> Result<()> {
        let schema = self.plan.schema();
        for expr in exprs {
            for column in expr.column_refs() {
                let found = match &column.relation {
                    None => schema.fields().iter().any(|f| f.name() == &column.name),
                    Some(_) => schema.has_column(column),
                };
                if !found {
                    let names: Vec<String> = schema
                        .iter()
                        .map(|(_, field)| field.name().clone())
                        .collect();
                    return Err(unknown_name(
                        "column",
                        &column.flat_name(),
                        self.location(),
                        &names,
                        &format!("check the {step} step"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Where a column is looked for, for messages.
    fn location(&self) -> String {
        let tables = self.tables.join(" ⋈ ");
        match self.reshaped_by {
            Some(step) => format!("the result of `{step}` on {tables}"),
            None => tables,
        }
    }
}

/// The table `name` (`source.schema.table`) resolved in `state`: its full reference and its
/// provider. An unknown source, schema or table is an error naming the close names of
/// `listing`.
async fn resolve(
    state: &SessionState,
    listing: &Arc<dyn CatalogProviderList>,
    name: &str,
) -> Result<(TableReference, Arc<dyn datafusion::catalog::TableProvider>)> {
    let reference = TableReference::from(name);
    let defaults = &state.config_options().catalog;
    let resolved = reference.resolve(&defaults.default_catalog, &defaults.default_schema);
    let catalogs = state.catalog_list();
    let listed_catalog = listing.catalog(&resolved.catalog);
    let listed_schema = listed_catalog
        .as_ref()
        .and_then(|catalog| catalog.schema(&resolved.schema));
    let Some(catalog) = catalogs.catalog(&resolved.catalog) else {
        return Err(unknown_name(
            "source",
            &resolved.catalog,
            "the engine".into(),
            &listing.catalog_names(),
            "a table is named `source.schema.table`",
        ));
    };
    let Some(schema) = catalog.schema(&resolved.schema) else {
        return Err(unknown_name(
            "schema",
            &resolved.schema,
            format!("source `{}`", resolved.catalog),
            &(listed_catalog.map(|c| c.schema_names()).unwrap_or_default()),
            "list them with `\\dn` or SHOW TABLES",
        ));
    };
    let Some(provider) = schema.table(&resolved.table).await? else {
        return Err(unknown_name(
            "table",
            &resolved.table,
            format!("{}.{}", resolved.catalog, resolved.schema),
            &(listed_schema.map(|s| s.table_names()).unwrap_or_default()),
            "list them with `\\dt` or SHOW TABLES",
        ));
    };
    let full = TableReference::full(resolved.catalog, resolved.schema, resolved.table);
    Ok((full, provider))
}

/// The error for a name that is not there, with the names close to it (or all of them).
fn unknown_name(what: &str, name: &str, location: String, names: &[String], hint: &str) -> Error {
    let close = close_matches(name, names);
    let offered = if !close.is_empty() {
        format!("; did you mean {}?", quoted(&close))
    } else if names.is_empty() {
        format!("; it has none ({hint})")
    } else {
        let mut listed: Vec<String> = names.iter().take(MOST_LISTED).cloned().collect();
        if names.len() > MOST_LISTED {
            listed.push(format!("… {} more", names.len() - MOST_LISTED));
        }
        format!("; there are {} ({hint})", quoted(&listed))
    };
    Error::UnknownName {
        message: format!("no {what} `{name}` in {location}{offered}"),
        name: name.to_string(),
        close,
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The column `name` as written (`table.column` names the table too): names given as text
/// are matched exactly, as `DataFrame::select_columns` matches them, while `col("x")`
/// expressions follow SQL's rule and lower-case unquoted names.
fn exact(name: &str) -> Column {
    Column::from_qualified_name_ignore_case(name)
}

/// The names within a few edits of `name` (ignoring case), closest first.
fn close_matches(name: &str, names: &[String]) -> Vec<String> {
    let wanted = name.to_lowercase();
    let most_edits = (wanted.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &String)> = names
        .iter()
        .filter_map(|candidate| {
            // Names of very different lengths cannot be close; skip the quadratic work.
            if wanted.len().abs_diff(candidate.len()) > most_edits {
                return None;
            }
            let edits = edit_distance(&wanted, &candidate.to_lowercase());
            (edits <= most_edits).then_some((edits, candidate))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(MOST_SUGGESTIONS)
        .map(|(_, candidate)| candidate.clone())
        .collect()
}

/// Edits (insert, delete, replace, swap of two neighbours) from `a` to `b`: a swapped pair
/// counts once, so `stauts` is closer to `status` than to `state`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let replace = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + replace);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn close_matches_are_ordered_by_edits_and_ignore_case() {
        let columns = names(&["status", "state", "customer_id", "order_id", "total"]);
        assert_eq!(
            close_matches("stauts", &columns),
            names(&["status", "state"])
        );
        assert_eq!(edit_distance("stauts", "status"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(close_matches("Order_ID", &columns), names(&["order_id"]));
        assert!(close_matches("revenue", &columns).is_empty());
    }

    #[test]
    fn an_unknown_name_lists_the_names_when_none_is_close() {
        let err = unknown_name(
            "column",
            "revenue",
            "shop.main.orders".into(),
            &names(&["status", "total"]),
            "check the filter step",
        );
        assert_eq!(
            err.to_string(),
            "no column `revenue` in shop.main.orders; there are `status`, `total` (check the \
             filter step)"
        );
        let err = unknown_name(
            "column",
            "totl",
            "shop.main.orders".into(),
            &names(&["status", "total"]),
            "check the filter step",
        );
        assert_eq!(
            err.to_string(),
            "no column `totl` in shop.main.orders; did you mean `total`?"
        );
    }
}
