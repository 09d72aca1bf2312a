//! A source's calls about itself: health, schemas and tables listed, names resolved, row
//! estimates of statements. Each is a call (`providers/src/call.rs`).

use crate::call::CallSpec;
use crate::discovery::{self, NameMatch, TableEntry};
use crate::error::OdbcError;

use super::{LagReading, OdbcSource};

/// What [`OdbcSource::health`] found. A source with replicas is reachable while any of its
/// endpoints is; [`Self::endpoints`] tells each one's state.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceHealth {
    /// The source's name.
    pub source: String,
    /// Whether a ping was answered in time (by any endpoint).
    pub reachable: bool,
    /// Round trip of the ping: the primary's, else the first endpoint's that answered.
    pub latency: Option<std::time::Duration>,
    /// Why it is not reachable (no secrets).
    pub error: Option<String>,
    /// Where the primary's circuit breaker stands (`None`: the source has none).
    pub breaker: Option<crate::breaker::BreakerState>,
    /// Connections the pools may have open at once (all endpoints).
    pub pool_max: usize,
    /// Connections checked out now (all endpoints).
    pub in_use: usize,
    /// Open connections waiting for reuse (all endpoints).
    pub idle: usize,
    /// Connections checked out for longer than the pool's `leak_warning`.
    pub held_too_long: usize,
    /// Each endpoint: the primary, then the replicas.
    pub endpoints: Vec<EndpointHealth>,
}

impl SourceHealth {
    /// Whether the source answers but some endpoint does not.
    pub fn degraded(&self) -> bool {
        self.reachable && self.endpoints.iter().any(|e| !e.reachable)
    }
}

/// One endpoint of [`SourceHealth`].
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointHealth {
    /// `primary`, `replica1` …
    pub label: String,
    /// Primary or replica.
    pub role: super::EndpointRole,
    /// Its connection string, secrets redacted.
    pub connection: String,
    /// Whether it answered the ping in time.
    pub reachable: bool,
    /// Round trip of the ping, when it answered.
    pub latency: Option<std::time::Duration>,
    /// Why it is not reachable (no secrets).
    pub error: Option<String>,
    /// Where its circuit breaker stands (`None`: none).
    pub breaker: Option<crate::breaker::BreakerState>,
    /// Connections its pool may have open at once.
    pub pool_max: usize,
    /// Connections checked out now.
    pub in_use: usize,
    /// Open connections waiting for reuse.
    pub idle: usize,
    /// Connections checked out for longer than the pool's `leak_warning`.
    pub held_too_long: usize,
    /// Calls started on it since the source connected.
    pub statements: u64,
    /// Calls that could not start on it and went to another endpoint.
    pub failed_over: u64,
    /// Its last replication lag reading (`None`: lag is not checked, or it is the primary).
    pub lag: Option<super::LagReading>,
}

impl OdbcSource {
    /// Whether each endpoint answers a trivial statement within `timeout` on a pooled
    /// connection, how long that took, and the pools' state. A ping is a call like any other:
    /// an open breaker answers for it, and its outcome counts for the breaker.
    pub async fn health(&self, timeout: std::time::Duration) -> SourceHealth {
        let pings = (0..self.endpoints.len()).map(|index| self.endpoint_health(index, timeout));
        let endpoints = futures::future::join_all(pings).await;
        let reachable = endpoints.iter().any(|e| e.reachable);
        let error = (!reachable).then(|| match endpoints.as_slice() {
            [only] => only.error.clone().unwrap_or_default(),
            all => all
                .iter()
                .map(|e| format!("{}: {}", e.label, e.error.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join("; "),
        });
        SourceHealth {
            source: self.name.clone(),
            reachable,
            latency: endpoints.iter().find_map(|e| e.latency),
            error,
            breaker: endpoints[0].breaker,
            pool_max: endpoints.iter().map(|e| e.pool_max).sum(),
            in_use: endpoints.iter().map(|e| e.in_use).sum(),
            idle: endpoints.iter().map(|e| e.idle).sum(),
            held_too_long: endpoints.iter().map(|e| e.held_too_long).sum(),
            endpoints,
        }
    }

    pub(super) async fn endpoint_health(
        &self,
        index: usize,
        timeout: std::time::Duration,
    ) -> EndpointHealth {
        let ping = self.dialect.ping_statement();
        let started = std::time::Instant::now();
        let spec = CallSpec::new(self, "answering a ping")
            .statement(ping)
            .deadline(Some(timeout))
            .on_endpoint(index)
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
        let endpoint = &self.endpoints[index];
        let pool = endpoint.pool();
        let lag_checked = self.options.replicas.max_lag.is_some();
        EndpointHealth {
            label: endpoint.label().to_string(),
            role: endpoint.role(),
            connection: pool.connection_string().redacted(),
            reachable: error.is_none(),
            latency,
            error,
            breaker: endpoint.breaker().map(|b| b.state()),
            pool_max: pool.options().max_size,
            in_use: pool.in_use(),
            idle: pool.idle_count(),
            held_too_long: pool.held_too_long(),
            statements: endpoint.started(),
            failed_over: endpoint.failed_over(),
            lag: (lag_checked && endpoint.role() == super::EndpointRole::Replica)
                .then(|| endpoint.lag()),
        }
    }

    /// Reads replica `index`'s lag behind its primary and keeps the reading for routing
    /// (`max_replica_lag_secs`): a call pinned to that endpoint, under a short deadline.
    pub(super) async fn read_replica_lag(&self, index: usize) {
        const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
        let Some(query) = self.dialect.capabilities().replica_lag_query() else {
            self.endpoints[index].record_lag(LagReading::Unknown);
            return;
        };
        let wait = self
            .options
            .scan
            .query_timeout
            .map_or(LONGEST_WAIT, |timeout| timeout.min(LONGEST_WAIT));
        let spec = CallSpec::new(self, "reading a replica's lag")
            .deadline(Some(wait))
            .on_endpoint(index)
            .once();
        let read = self
            .call(spec, move |conn| {
                discovery::replica_lag(conn, query)
                    .map_err(|err| conn.failure("reading a replica's lag", err))
            })
            .await;
        let reading = match read {
            Ok(reading) => reading,
            Err(err) => {
                tracing::warn!(source = %self.name, endpoint = self.endpoints[index].label(),
                    error = %err, "could not read a replica's lag; it takes no reads until it can");
                LagReading::Unknown
            }
        };
        self.endpoints[index].record_lag(reading);
    }

    /// The database's estimate of the rows a SELECT returns, without running it (PostgreSQL
    /// only, see [`crate::discovery::statement_row_estimate`]). Asked while planning, so it
    /// waits at most a second (less under a shorter query timeout): a slow or silent server
    /// costs the estimate, not the query, whose own run reports the trouble under its
    /// deadline. `None` then, on any failure, and while no endpoint of the source is healthy
    /// (its queries fail at once, their planning must not wait).
    pub async fn statement_row_estimate(&self, sql: &str) -> Option<u64> {
        const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
        if !self.dialect().capabilities().estimates_statement_rows() || !self.has_healthy_endpoint()
        {
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
