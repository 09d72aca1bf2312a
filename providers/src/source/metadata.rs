//! A source's calls about itself: health, schemas and tables listed, names resolved, row
//! estimates of statements. Each is a call (`providers/src/call.rs`).

use crate::call::CallSpec;
use crate::discovery::{self, NameMatch, TableEntry};
use crate::error::OdbcError;

use super::OdbcSource;

/// What [`OdbcSource::health`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceHealth {
    /// The source's name.
    pub source: String,
    /// Whether the ping was answered in time.
    pub reachable: bool,
    /// Round trip of the ping, when it answered.
    pub latency: Option<std::time::Duration>,
    /// Why it is not reachable (no secrets).
    pub error: Option<String>,
    /// Where the source's circuit breaker stands (`None`: the source has none).
    pub breaker: Option<crate::breaker::BreakerState>,
    /// Connections the pool may have open at once.
    pub pool_max: usize,
    /// Connections checked out now.
    pub in_use: usize,
    /// Open connections waiting for reuse.
    pub idle: usize,
    /// Connections checked out for longer than the pool's `leak_warning`.
    pub held_too_long: usize,
}

impl OdbcSource {
    /// Whether the database answers a trivial statement within `timeout` on a pooled
    /// connection, how long that took, and the pool's state. The ping is a call like any
    /// other: an open breaker answers for it, and its outcome counts for the breaker.
    pub async fn health(&self, timeout: std::time::Duration) -> SourceHealth {
        let ping = self.dialect.ping_statement();
        let started = std::time::Instant::now();
        let spec = CallSpec::new(self, "answering a ping")
            .statement(ping)
            .deadline(Some(timeout))
            .once();
        let answered = self
            .call(spec, move |conn| {
                discovery::first_row_as_text(conn, ping, ())
                    .map_err(|err| conn.failure("answering a ping", err))
            })
            .await;
        let (latency, error) = match answered {
            Ok(_) => (Some(started.elapsed()), None),
            Err(OdbcError::Timeout { .. }) => (None, Some(format!("no answer within {timeout:?}"))),
            Err(err) => (None, Some(err.to_string())),
        };
        SourceHealth {
            source: self.name.clone(),
            reachable: error.is_none(),
            latency,
            error,
            breaker: self.breaker.as_ref().map(|b| b.state()),
            pool_max: self.pool.options().max_size,
            in_use: self.pool.in_use(),
            idle: self.pool.idle_count(),
            held_too_long: self.pool.held_too_long(),
        }
    }

    /// The database's estimate of the rows a SELECT returns, without running it (PostgreSQL
    /// only, see [`crate::discovery::statement_row_estimate`]). Asked while planning, so it
    /// waits at most a second (less under a shorter query timeout): a slow or silent server
    /// costs the estimate, not the query, whose own run reports the trouble under its
    /// deadline. `None` then, on any failure, and while the source's circuit breaker is open
    /// (its queries fail at once, their planning must not wait).
    pub async fn statement_row_estimate(&self, sql: &str) -> Option<u64> {
        const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
        let breaker_open = self
            .breaker
            .as_ref()
            .is_some_and(|b| b.state() == crate::breaker::BreakerState::Open);
        if !self.dialect().capabilities().estimates_statement_rows() || breaker_open {
            return None;
        }
        let wait = self
            .options
            .scan
            .query_timeout
            .map_or(LONGEST_WAIT, |timeout| timeout.min(LONGEST_WAIT));
        let (dialect, sql) = (self.dialect(), sql.to_string());
        let spec = CallSpec::new(self, "estimating a statement's rows")
            .statement(crate::discovery::explain_statement(&sql))
            .deadline(Some(wait))
            .once();
        self.call(spec, move |conn| {
            Ok(crate::discovery::statement_row_estimate(
                conn, dialect, &sql,
            ))
        })
        .await
        .ok()?
    }

    /// The key parts of each index of `table`, in order: a column, or `None` for an expression
    /// (index advice). A call like any other: under the breaker and the query timeout.
    pub async fn index_columns(
        &self,
        table: &ibarrow_sql::RemoteTable,
    ) -> Result<Vec<Vec<Option<String>>>, OdbcError> {
        let (dialect, table) = (self.dialect(), table.clone());
        self.call(
            CallSpec::new(self, "listing a table's indexes"),
            move |conn| {
                discovery::index_columns(conn, dialect, &table)
                    .map_err(|err| conn.failure("listing a table's indexes", err))
            },
        )
        .await
    }

    /// Schemas of the source (docs/architecture.md, "A query's path", step 4), system schemas left out.
    pub async fn schemas(&self) -> Result<Vec<String>, OdbcError> {
        let dialect = self.dialect;
        let mut schemas = self
            .call(CallSpec::new(self, "listing schemas"), move |conn| {
                let listed = discovery::list_schemas(conn, dialect);
                listed.map_err(|err| conn.failure("listing schemas", err))
            })
            .await?;
        schemas.retain(|name| !discovery::is_system_schema(name));
        Ok(schemas)
    }

    /// Tables and views of a schema, resolved as [`Self::resolve_schema`] does.
    pub async fn tables(&self, schema: &str) -> Result<Vec<TableEntry>, OdbcError> {
        let schema = self.resolve_schema(schema).await?;
        self.tables_in_listed_schema(schema).await
    }

    /// Tables and views of a schema spelled exactly as [`Self::schemas`] lists it.
    pub async fn tables_in_listed_schema(
        &self,
        schema: String,
    ) -> Result<Vec<TableEntry>, OdbcError> {
        let dialect = self.dialect;
        self.call(CallSpec::new(self, "listing tables"), move |conn| {
            let listed = discovery::list_tables(conn, dialect, &schema);
            listed.map_err(|err| conn.failure("listing tables", err))
        })
        .await
    }

    /// The remote spelling of a schema name a user typed.
    pub async fn resolve_schema(&self, schema: &str) -> Result<String, OdbcError> {
        if self.dialect.capabilities().single_schema().is_some() {
            return if schema.eq_ignore_ascii_case(discovery::DEFAULT_SCHEMA) {
                Ok(discovery::DEFAULT_SCHEMA.to_string())
            } else {
                Err(OdbcError::SchemaNotFound {
                    source_name: self.name.clone(),
                    schema: schema.to_string(),
                    available: discovery::DEFAULT_SCHEMA.to_string(),
                })
            };
        }
        let dialect = self.dialect;
        let wanted = schema.to_string();
        let all = self
            .call(CallSpec::new(self, "listing schemas"), move |conn| {
                let listed = discovery::list_schemas(conn, dialect);
                listed.map_err(|err| conn.failure("listing schemas", err))
            })
            .await?;
        match discovery::resolve_name(all.iter().map(String::as_str), &wanted) {
            NameMatch::Found(name) => Ok(name.to_string()),
            NameMatch::Ambiguous(candidates) => Err(OdbcError::AmbiguousName {
                source_name: self.name.clone(),
                name: wanted,
                candidates: candidates.join(", "),
            }),
            NameMatch::NotFound => Err(OdbcError::SchemaNotFound {
                source_name: self.name.clone(),
                schema: wanted,
                available: all.join(", "),
            }),
        }
    }
}
