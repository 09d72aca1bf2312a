//! Arrow Flight SQL over the engine. A statement is planned once, at GetFlightInfo, and its
//! physical plan waits under a random handle (for `[server] plan_ttl_secs`) for the DoGet
//! calls of its tickets: one ticket per output partition when partitions are independent
//! ([`crate::query::endpoint_count`]), so a client may fetch them in parallel. Batches are
//! streamed as they arrive, under exactly the schema the FlightInfo announced.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use datafusion::common::ScalarValue;
use futures::{Stream, StreamExt, TryStreamExt};
use ibarrow::Session;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::Shared;
use crate::auth::Identity;
use crate::error::ServerError;
use crate::listener::Peer;
use crate::query::{
    PlannedQuery, StopSignals, endpoint_count, guarded, number_placeholders, plan_with_params,
};
use crate::quota::PerUser;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Flight SQL gRPC service for `shared`, ready for [`crate::listener::accept_loop`].
pub fn service(shared: Arc<Shared>) -> Result<FlightServiceServer<FlightSql>, ServerError> {
    Ok(FlightServiceServer::new(FlightSql::new(shared)?).max_decoding_message_size(64 << 20))
}

/// A place in a per-user quota, given back when dropped unless `kept`.
struct QuotaHeld<'a> {
    quota: &'a PerUser,
    user: &'a str,
    kept: bool,
}

impl Drop for QuotaHeld<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.quota.give_back(self.user);
        }
    }
}

/// A prepared statement: planned once when created, the values bound last.
struct Prepared {
    user: String,
    statement: ibarrow::PreparedStatement,
    params: std::sync::Mutex<Option<Vec<ScalarValue>>>,
}

/// The Flight SQL service: planned queries waiting for their tickets, and prepared statements.
pub struct FlightSql {
    shared: Arc<Shared>,
    plans: moka::sync::Cache<String, Arc<Planned>>,
    plan_quota: Arc<PerUser>,
    /// Queries with a stream running, which must stay cancellable however long they run.
    streaming: RunningQueries,
    prepared: moka::sync::Cache<String, Arc<Prepared>>,
    prepared_quota: Arc<PerUser>,
    sql_info: SqlInfoData,
}

/// A planned query, which of its tickets were fetched, and how many of their streams run.
/// It stays findable (for CancelFlightInfo) until its last stream ends.
struct Planned {
    query: PlannedQuery,
    fetched: Vec<AtomicBool>,
    running: AtomicUsize,
    /// The monitored run of a query fetched by partition, started by its first DoGet: its
    /// endpoints make one query in the query log, the metrics and the audit log.
    run: std::sync::Mutex<Option<ibarrow::PartitionedRun>>,
}

type RunningQueries = Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Planned>>>>;

/// Held by a ticket's stream: when a query's last running stream ends it leaves the running
/// set, and once all of its tickets were fetched it is forgotten.
struct Fetching {
    id: String,
    planned: Arc<Planned>,
    plans: moka::sync::Cache<String, Arc<Planned>>,
    streaming: RunningQueries,
}

impl Drop for Fetching {
    fn drop(&mut self) {
        let Ok(mut streaming) = self.streaming.lock() else {
            return;
        };
        if self.planned.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            streaming.remove(&self.id);
            let all_fetched = self
                .planned
                .fetched
                .iter()
                .all(|f| f.load(Ordering::Acquire));
            if all_fetched {
                self.plans.invalidate(&self.id);
            }
        }
    }
}

/// Planned queries waiting for their DoGet, and prepared statements, one user may hold: the
/// caches are shared, and one user must not push out the others' entries.
const PLANS_PER_USER: usize = 1024;
const PREPARED_PER_USER: usize = 1024;

/// One hour without use ends a prepared statement a client forgot to close.
const PREPARED_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

impl FlightSql {
    /// An empty service over `shared`, with its per-user quotas and the server info it reports.
    pub fn new(shared: Arc<Shared>) -> Result<Self, ServerError> {
        let plan_quota = PerUser::new(PLANS_PER_USER, "planned queries");
        let prepared_quota = PerUser::new(PREPARED_PER_USER, "prepared statements");
        let plans = {
            let quota = Arc::clone(&plan_quota);
            moka::sync::Cache::builder()
                .time_to_idle(shared.settings.plan_ttl)
                .max_capacity(100_000)
                .eviction_listener(move |_, planned: Arc<Planned>, _| {
                    quota.give_back(planned.query.session.user())
                })
                .build()
        };
        let prepared = {
            let quota = Arc::clone(&prepared_quota);
            moka::sync::Cache::builder()
                .time_to_idle(PREPARED_IDLE)
                .max_capacity(100_000)
                .eviction_listener(move |_, prepared: Arc<Prepared>, _| {
                    quota.give_back(&prepared.user)
                })
                .build()
        };
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "ibarrow");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        info.append(SqlInfo::FlightSqlServerReadOnly, false);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        info.append(SqlInfo::FlightSqlServerCancel, true);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        info.append(SqlInfo::SqlDdlCatalog, false);
        info.append(SqlInfo::SqlDdlSchema, false);
        info.append(SqlInfo::SqlDdlTable, false);
        let sql_info = info
            .build()
            .map_err(|err| ServerError::Internal(format!("Flight SQL server info: {err}")))?;
        Ok(Self {
            shared,
            plans,
            plan_quota,
            streaming: Arc::default(),
            prepared,
            prepared_quota,
            sql_info,
        })
    }

    /// The caller of a request: authenticated, not shut out, with an engine session.
    async fn caller<T>(&self, request: &Request<T>) -> Result<(Identity, Session), Status> {
        let peer = request.extensions().get::<Peer>().map(|p| p.0);
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let ip = peer
            .map(|p| p.ip())
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let identity = self.shared.auth.authenticate(header, ip).await?;
        let client = request
            .metadata()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("flight-sql");
        let session = self.shared.session(&identity, client, peer)?;
        Ok((identity, session))
    }

    /// Plans `sql` with `params`, keeps the plan, and describes its tickets.
    async fn plan(
        &self,
        session: Session,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, ServerError> {
        let frame = plan_with_params(&session, sql, params).await?;
        self.plan_frame(session, sql, frame, descriptor).await
    }

    /// Keeps the physical plan of a planned `frame` and describes its tickets.
    async fn plan_frame(
        &self,
        session: Session,
        sql: &str,
        frame: datafusion::dataframe::DataFrame,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, ServerError> {
        let plan = session.physical_plan(frame).await?;
        let schema = plan.plan().schema();
        let endpoints = endpoint_count(plan.plan());
        self.plan_quota.take(session.user())?;
        let handle = random_handle();
        let mut info = FlightInfo::new()
            .try_with_schema(&schema)?
            .with_descriptor(descriptor)
            .with_ordered(endpoints == 1);
        for partition in 0..endpoints {
            let ticket = TicketStatementQuery {
                statement_handle: format!("{handle}/{partition}").into(),
            };
            info = info.with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
            );
        }
        self.plans.insert(
            handle,
            Arc::new(Planned {
                query: PlannedQuery {
                    session,
                    sql: sql.to_string(),
                    plan,
                    schema,
                    endpoints,
                    cancel: self.shared.shutdown.child_token(),
                },
                fetched: (0..endpoints).map(|_| AtomicBool::new(false)).collect(),
                running: AtomicUsize::new(0),
                run: std::sync::Mutex::new(None),
            }),
        );
        Ok(info)
    }

    /// The planned query of a ticket and the partition it asks for.
    fn planned(
        &self,
        handle: &[u8],
        user: &str,
    ) -> Result<(String, Arc<Planned>, usize), ServerError> {
        let text = std::str::from_utf8(handle).unwrap_or_default();
        let (id, partition) = text
            .split_once('/')
            .and_then(|(id, p)| p.parse::<usize>().ok().map(|p| (id, p)))
            .ok_or_else(|| {
                ServerError::BadRequest("the ticket is not one of this server's".into())
            })?;
        let expired = || {
            ServerError::NotFound(
                "the ticket is unknown, expired or already used; run the statement again".into(),
            )
        };
        let running = self
            .streaming
            .lock()
            .ok()
            .and_then(|streaming| streaming.get(id).cloned());
        let planned = running.or_else(|| self.plans.get(id)).ok_or_else(expired)?;
        if planned.query.session.user() != user || partition >= planned.query.endpoints {
            return Err(expired());
        }
        Ok((id.to_string(), planned, partition))
    }

    /// Cancels the queries whose tickets `info` holds; true when one was found.
    fn cancel_info(&self, info: &FlightInfo, user: &str) -> bool {
        let mut found = false;
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else {
                continue;
            };
            let Ok(any) = Any::decode(ticket.ticket.clone()) else {
                continue;
            };
            let Ok(Some(statement)) = any.unpack::<TicketStatementQuery>() else {
                continue;
            };
            if let Ok((id, planned, _)) = self.planned(&statement.statement_handle, user) {
                planned.query.cancel.cancel();
                self.plans.invalidate(&id);
                found = true;
            }
        }
        found
    }

    /// The engine's schemas as (catalog, schema, provider): of `catalog` when given, and
    /// only those whose name `keep` accepts.
    fn schemas(
        &self,
        session: &Session,
        catalog: Option<&str>,
        keep: impl Fn(&str) -> bool,
    ) -> Vec<(String, String, Arc<dyn datafusion::catalog::SchemaProvider>)> {
        let ctx = session.catalogs();
        let mut listed = Vec::new();
        for catalog_name in listed_catalogs(ctx.as_ref()) {
            if catalog.is_some_and(|c| c != catalog_name) {
                continue;
            }
            let Some(provider) = ctx.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in provider.schema_names() {
                if !keep(&schema_name) {
                    continue;
                }
                if let Some(schema) = provider.schema(&schema_name) {
                    listed.push((catalog_name.clone(), schema_name, schema));
                }
            }
        }
        listed
    }

    fn prepared_for(&self, handle: &[u8], user: &str) -> Result<Arc<Prepared>, ServerError> {
        let id = std::str::from_utf8(handle).unwrap_or_default();
        self.prepared
            .get(id)
            .filter(|p| p.user == user)
            .ok_or_else(|| {
                ServerError::NotFound(
                    "the prepared statement is unknown or was closed; prepare it again".into(),
                )
            })
    }
}

fn random_handle() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encodes batches as Flight data under `schema`, dictionaries kept as they are so that the
/// stream's schema is the announced one.
fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, ServerError>> + Send + 'static,
) -> BoxStream<arrow_flight::FlightData> {
    let batches = batches.map_err(|err| FlightError::Tonic(Box::new(Status::from(err))));
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_dictionary_handling(DictionaryHandling::Resend)
            .build(batches)
            .map_err(Status::from),
    )
}

fn one_batch(
    batch: Result<RecordBatch, impl std::fmt::Display>,
) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
    let batch = batch.map_err(|err| Status::internal(err.to_string()))?;
    let schema = batch.schema();
    Ok(Response::new(encode(
        schema,
        futures::stream::once(async move { Ok(batch) }),
    )))
}

/// FlightInfo for a metadata command: one ticket holding the command itself.
fn metadata_info(
    command: impl ProstMessageExt,
    schema: &Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(command.as_any().encode_to_vec());
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|err| Status::internal(err.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

fn primary_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

/// Parameter data one DoPut may send, decoded.
const MOST_PUT_BYTES: usize = 64 << 20;

/// Record batches sent with a DoPut, decoded, up to [`MOST_PUT_BYTES`].
async fn put_batches(stream: PeekableFlightDataStream) -> Result<Vec<RecordBatch>, ServerError> {
    let mut decoded = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
        stream.into_peekable().map_err(FlightError::from),
    );
    let (mut batches, mut bytes) = (Vec::new(), 0usize);
    while let Some(batch) = decoded.next().await {
        let batch = batch.map_err(|err| {
            ServerError::BadRequest(format!("the parameter batch cannot be read: {err}"))
        })?;
        bytes += batch.get_array_memory_size();
        if bytes > MOST_PUT_BYTES {
            return Err(ServerError::BadRequest(format!(
                "the parameters sent exceed {} MiB; send them in smaller parts",
                MOST_PUT_BYTES >> 20
            )));
        }
        batches.push(batch);
    }
    Ok(batches)
}

/// One parameter row of a batch, in column order.
fn row_params(batch: &RecordBatch, row: usize) -> Result<Vec<ScalarValue>, ServerError> {
    batch
        .columns()
        .iter()
        .map(|column| ScalarValue::try_from_array(column, row).map_err(ServerError::from))
        .collect()
}

/// Runs a statement that changes rows and returns how many it changed.
async fn run_update(
    session: &Session,
    sql: &str,
    params: Option<Vec<ScalarValue>>,
) -> Result<i64, ServerError> {
    let frame = plan_with_params(session, sql, params).await?;
    let stream = session.execute(frame, sql).await?;
    rows_changed(stream).await
}

/// Runs a prepared INSERT with one row's values; the rows it inserted.
async fn run_prepared_update(
    statement: &ibarrow::PreparedStatement,
    params: Vec<ScalarValue>,
) -> Result<i64, ServerError> {
    let stream = statement.stream(params).await?;
    rows_changed(stream).await
}

/// The row count an INSERT's result holds.
async fn rows_changed(
    mut stream: datafusion::execution::SendableRecordBatchStream,
) -> Result<i64, ServerError> {
    let mut count = 0i64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(ServerError::from)?;
        if let Some(column) = batch.columns().first() {
            for row in 0..batch.num_rows() {
                if let ScalarValue::UInt64(Some(n)) = ScalarValue::try_from_array(column, row)? {
                    count += i64::try_from(n).unwrap_or(i64::MAX);
                }
            }
        }
    }
    Ok(count)
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
        let peer: Option<SocketAddr> = request.extensions().get::<Peer>().map(|p| p.0);
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let ip = peer
            .map(|p| p.ip())
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let identity = self.shared.auth.login(header, ip).await?;
        let token = self.shared.auth.issue_token(&identity)?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let stream: BoxStream<HandshakeResponse> =
            Box::pin(futures::stream::once(async move { Ok(reply) }));
        let mut response = Response::new(stream);
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("the token is not a header value"))?;
        response.metadata_mut().insert("authorization", value);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (_, session) = self.caller(&request).await?;
        let info = self
            .plan(session, &query.query, None, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (identity, session) = self.caller(&request).await?;
        let prepared = self.prepared_for(&query.prepared_statement_handle, &identity.user)?;
        let params = prepared
            .params
            .lock()
            .ok()
            .and_then(|p| p.clone())
            .unwrap_or_default();
        let statement = prepared.statement.for_session(&session);
        let frame = statement.bind(params).await.map_err(ServerError::from)?;
        let info = self
            .plan_frame(session, statement.sql(), frame, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let (identity, _) = self.caller(&request).await?;
        let (id, planned, partition) = self.planned(&ticket.statement_handle, &identity.user)?;
        // A ticket is fetched once. Counted as running (under the lock the last stream's end
        // takes) before it is marked fetched, so a sibling's end cannot forget the query.
        {
            let mut streaming = self
                .streaming
                .lock()
                .map_err(|_| ServerError::Internal("the running queries' lock".into()))?;
            planned.running.fetch_add(1, Ordering::AcqRel);
            if planned.fetched[partition].swap(true, Ordering::AcqRel) {
                planned.running.fetch_sub(1, Ordering::AcqRel);
                return Err(ServerError::NotFound(
                    "the ticket was fetched already; run the statement again".into(),
                )
                .into());
            }
            streaming.insert(id.clone(), Arc::clone(&planned));
        }
        let fetching = Fetching {
            id,
            planned: Arc::clone(&planned),
            plans: self.plans.clone(),
            streaming: Arc::clone(&self.streaming),
        };
        let query = &planned.query;
        let stream = if query.endpoints == 1 {
            query.session.execute_plan(query.plan.clone(), &query.sql)
        } else {
            let mut run = planned
                .run
                .lock()
                .map_err(|_| ServerError::Internal("the query run's lock".into()))?;
            let started = match run.take() {
                Some(started) => started,
                None => query
                    .session
                    .run_partitions(query.plan.clone(), &query.sql)
                    .map_err(ServerError::from)?,
            };
            let stream = started.execute(partition);
            *run = Some(started);
            stream
        }
        .map_err(ServerError::from)?;
        let stop = StopSignals {
            cancel: query.cancel.clone(),
            shutdown: self.shared.shutdown.clone(),
            deadline: None,
        };
        let schema = Arc::clone(&query.schema);
        let batches = guarded(stream, Arc::clone(&schema), stop).map(move |batch| {
            let _held = &fetching;
            batch
        });
        Ok(Response::new(encode(schema, batches)))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (_, session) = self.caller(&request).await?;
        Ok(run_update(&session, &command.query, None).await?)
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let (identity, _) = self.caller(&request).await?;
        let prepared = self.prepared_for(&query.prepared_statement_handle, &identity.user)?;
        let batches = put_batches(request.into_inner()).await?;
        let params = match batches.iter().rev().find(|b| b.num_rows() > 0) {
            Some(batch) => Some(row_params(batch, 0)?),
            None => None,
        };
        if let Ok(mut bound) = prepared.params.lock() {
            *bound = params;
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (identity, session) = self.caller(&request).await?;
        let prepared = self.prepared_for(&query.prepared_statement_handle, &identity.user)?;
        let statement = prepared.statement.for_session(&session);
        let batches = put_batches(request.into_inner()).await?;
        let rows: Vec<&RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).collect();
        if rows.is_empty() {
            return Ok(run_prepared_update(&statement, Vec::new()).await?);
        }
        // Planned once; each row only binds its values.
        let mut count = 0;
        for batch in rows {
            for row in 0..batch.num_rows() {
                count += run_prepared_update(&statement, row_params(batch, row)?).await?;
            }
        }
        Ok(count)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let (identity, session) = self.caller(&request).await?;
        // The quota first: planning may already ask the database (a query() describe). It is
        // given back unless the statement is kept, also when the client goes away meanwhile.
        self.prepared_quota.take(&identity.user)?;
        let mut held = QuotaHeld {
            quota: &self.prepared_quota,
            user: &identity.user,
            kept: false,
        };
        let prepared = async {
            let sql = number_placeholders(&query.query)?;
            let statement = session.prepare(&sql).await?;
            // In the order of their positions ($1, $2 …), as clients bind them.
            let parameters: Vec<Field> = statement
                .parameter_types()?
                .into_iter()
                .map(|(id, data_type)| Field::new(id, data_type.unwrap_or(DataType::Null), true))
                .collect();
            let parameter_schema = Schema::new(parameters);
            Ok::<_, ServerError>((statement, parameter_schema))
        };
        let (statement, parameter_schema) = prepared.await?;
        held.kept = true;
        drop(held);
        let dataset_schema = statement.schema().as_ref().clone();
        let handle = random_handle();
        self.prepared.insert(
            handle.clone(),
            Arc::new(Prepared {
                user: identity.user,
                statement,
                params: std::sync::Mutex::new(None),
            }),
        );
        let options = arrow::ipc::writer::IpcWriteOptions::default();
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&dataset_schema, &options)
            .try_into()
            .map_err(|err: arrow::error::ArrowError| Status::internal(err.to_string()))?;
        let IpcMessage(parameter_schema) = SchemaAsIpc::new(&parameter_schema, &options)
            .try_into()
            .map_err(|err: arrow::error::ArrowError| Status::internal(err.to_string()))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let (identity, _) = self.caller(&request).await?;
        if self
            .prepared_for(&query.prepared_statement_handle, &identity.user)
            .is_ok()
        {
            let id = std::str::from_utf8(&query.prepared_statement_handle).unwrap_or_default();
            self.prepared.invalidate(id);
        }
        Ok(())
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let (identity, _) = self.caller(&request).await?;
        let info = FlightInfo::decode(query.info)
            .map_err(|err| Status::invalid_argument(format!("CancelQuery: {err}")))?;
        // ActionCancelQueryResult.CancelResult (arrow-flight does not export the enum).
        const CANCELLED: i32 = 1;
        const NOT_CANCELLABLE: i32 = 3;
        let result = if self.cancel_info(&info, &identity.user) {
            CANCELLED
        } else {
            NOT_CANCELLABLE
        };
        Ok(ActionCancelQueryResult { result })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type != "CancelFlightInfo" {
            return Err(Status::invalid_argument(format!(
                "unknown action `{}`",
                request.get_ref().r#type
            )));
        }
        let (identity, _) = self.caller(&request).await?;
        let cancel = CancelFlightInfoRequest::decode(request.into_inner().body)
            .map_err(|err| Status::invalid_argument(format!("CancelFlightInfo: {err}")))?;
        let status = match cancel.info {
            Some(info) if self.cancel_info(&info, &identity.user) => CancelStatus::Cancelled,
            _ => CancelStatus::NotCancellable,
        };
        let body = CancelFlightInfoResult {
            status: status as i32,
        }
        .encode_to_vec();
        let result = arrow_flight::Result { body: body.into() };
        Ok(Response::new(Box::pin(futures::stream::once(async move {
            Ok(result)
        }))))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request).await?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request).await?;
        one_batch(query.into_builder(&self.sql_info).build())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request).await?;
        let schema = query.into_builder().schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let (_, session) = self.caller(&request).await?;
        let mut builder = query.into_builder();
        for catalog in listed_catalogs(session.catalogs().as_ref()) {
            builder.append(catalog);
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request).await?;
        let schema = query.clone().into_builder().schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let (_, session) = self.caller(&request).await?;
        let listed = self.schemas(&session, query.catalog.as_deref(), |_| true);
        let mut builder = query.into_builder();
        for (catalog_name, schema_name, _) in listed {
            builder.append(catalog_name, schema_name);
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request).await?;
        let schema = query.clone().into_builder().schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let (_, session) = self.caller(&request).await?;
        let include_schema = query.include_schema;
        // The builder filters too, but only after every table was described: filter first.
        let listed = self.schemas(&session, query.catalog.as_deref(), |name| {
            query
                .db_schema_filter_pattern
                .as_ref()
                .is_none_or(|p| like(p, name))
        });
        let table_pattern = query.table_name_filter_pattern.clone();
        let mut builder = query.into_builder();
        let empty = Schema::empty();
        for (catalog_name, schema_name, schema) in listed {
            for table_name in schema.table_names() {
                if table_pattern
                    .as_ref()
                    .is_some_and(|p| !like(p, &table_name))
                {
                    continue;
                }
                let (kind, table_schema) = if include_schema {
                    match schema.table(&table_name).await {
                        Ok(Some(table)) => (
                            table_type_name(table.table_type()),
                            table.schema().as_ref().clone(),
                        ),
                        // A table that went away or cannot be described is left out.
                        _ => continue,
                    }
                } else {
                    ("TABLE", empty.clone())
                };
                builder
                    .append(
                        &catalog_name,
                        &schema_name,
                        &table_name,
                        kind,
                        &table_schema,
                    )
                    .map_err(|err| Status::internal(err.to_string()))?;
            }
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request).await?;
        let schema = query.into_builder().schema();
        metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request).await?;
        let mut builder = query.into_builder();
        for kind in ["TABLE", "VIEW", "LOCAL TEMPORARY"] {
            builder.append(kind);
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request).await?;
        metadata_info(query, &primary_keys_schema(), request.into_inner())
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let (_, session) = self.caller(&request).await?;
        let mut rows: Vec<(String, String, String, i32)> = Vec::new();
        let listed = self.schemas(&session, query.catalog.as_deref(), |name| {
            query.db_schema.as_deref().is_none_or(|s| s == name)
        });
        for (catalog_name, schema_name, _) in listed {
            let name = format!("{catalog_name}.{schema_name}.{}", query.table);
            // The table itself (for its key) if the user may read it, and the columns it sees.
            let Ok((table, visible)) = session.describe_table(&name).await else {
                continue;
            };
            if let Some(odbc) = table.downcast_ref::<ibarrow::OdbcTable>() {
                let keys = odbc
                    .primary_key()
                    .iter()
                    .filter(|column| visible.field_with_name(column).is_ok());
                for (n, column) in keys.enumerate() {
                    rows.push((
                        catalog_name.clone(),
                        schema_name.clone(),
                        column.clone(),
                        i32::try_from(n + 1).unwrap_or(i32::MAX),
                    ));
                }
            }
        }
        let column = |values: Vec<String>| Arc::new(StringArray::from(values)) as ArrayRef;
        let batch = RecordBatch::try_new(
            Arc::new(primary_keys_schema()),
            vec![
                column(rows.iter().map(|r| r.0.clone()).collect()),
                column(rows.iter().map(|r| r.1.clone()).collect()),
                column(rows.iter().map(|_| query.table.clone()).collect()),
                column(rows.iter().map(|r| r.2.clone()).collect()),
                Arc::new(StringArray::from(vec![None::<String>; rows.len()])),
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )),
            ],
        );
        one_batch(batch)
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// SQL `LIKE` as Flight SQL's filter patterns use it: `%` any text, `_` one character, `\\`
/// escapes the next one.
fn like(pattern: &str, text: &str) -> bool {
    // `%`, `_` and literal characters (an escaped `%` or `_` is a literal).
    enum Item {
        Any,
        One,
        Char(char),
    }
    let mut items = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        items.push(match c {
            '%' => Item::Any,
            '_' => Item::One,
            '\\' => Item::Char(chars.next().unwrap_or('\\')),
            c => Item::Char(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // matched[j]: the items so far match the first j characters (time O(items × text)).
    let mut matched = vec![false; text.len() + 1];
    matched[0] = true;
    for item in &items {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            next[j] = match item {
                Item::Any => matched[j] || (j > 0 && next[j - 1]),
                Item::One => j > 0 && matched[j - 1],
                Item::Char(c) => j > 0 && matched[j - 1] && text[j - 1] == *c,
            };
        }
        matched = next;
    }
    matched[text.len()]
}

fn table_type_name(kind: datafusion::datasource::TableType) -> &'static str {
    use datafusion::datasource::TableType;
    match kind {
        TableType::Base => "TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}

/// The catalogs the listings show: those holding a table, so that DataFusion's default catalog
/// (`datafusion`, empty unless a program registers tables in it) does not appear beside the
/// sources.
fn listed_catalogs(ctx: &dyn datafusion::catalog::CatalogProviderList) -> Vec<String> {
    ctx.catalog_names()
        .into_iter()
        .filter(|name| {
            ctx.catalog(name).is_some_and(|catalog| {
                catalog.schema_names().iter().any(|schema| {
                    catalog
                        .schema(schema)
                        .is_some_and(|s| !s.table_names().is_empty())
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns_match_as_in_sql() {
        assert!(like("srv_%", "srv_big"));
        assert!(like("srv\\_%", "srv_big"));
        assert!(!like("srv\\_%", "srvXbig"));
        assert!(like("s_v%", "srv"));
        assert!(!like("srv", "srv_big"));
        assert!(like("%", ""));
    }
}
