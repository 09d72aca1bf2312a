//! The extension codecs that carry ibarrow's tables and scans through a Ballista cluster.
//!
//! - The client encodes each table of a logical plan by name (`source`, `schema`, `table`) or,
//!   for a statement (a pushed sub-plan, a native query), by its SQL and column reading.
//! - The scheduler decodes them against its own sources ([`ClusterSources`]) and plans the
//!   scans there (Ballista's scheduler calls `TableProvider::scan`), so each range partition
//!   becomes a task.
//! - Each task's `OdbcExec` travels fully planned (statements, schema, fetch settings) and an
//!   executor rebuilds it on its own source of the same name.
//!
//! Only names travel, never connection strings: secrets stay in each process's configuration.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, ScalarUDF, TableProviderFilterPushDown,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions,
};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use ibarrow_providers::discovery::DEFAULT_SCHEMA;
use ibarrow_providers::{OdbcExec, OdbcSource, OdbcTable, PassthroughTable};

use super::task_scan::TaskScanExec;
use super::wire::{self, DecimalAverageNode, PassthroughNode, ScanNode, TableNode};
use crate::Engine;

/// The sources a scheduler or executor opened from its configuration, and why those it could
/// not open failed (a task reading one fails with that reason and the process's name).
#[derive(Clone)]
pub struct ClusterSources {
    engine: Engine,
    /// Who this process is in error messages (`executor 127.0.0.1:50051`, `scheduler`).
    process: String,
    unavailable: Arc<BTreeMap<String, String>>,
}

impl std::fmt::Debug for ClusterSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSources")
            .field("process", &self.process)
            .field("sources", &self.engine.source_names())
            .field("unavailable", &self.unavailable.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ClusterSources {
    /// `engine`'s sources, for the process named `process`; `unavailable` maps the sources
    /// of its configuration it could not open to the reason.
    pub fn new(engine: Engine, process: &str, unavailable: BTreeMap<String, String>) -> Self {
        Self {
            engine,
            process: process.to_string(),
            unavailable: Arc::new(unavailable),
        }
    }

    /// The engine whose sources and catalogs these are.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Who this process is in error messages.
    pub fn process(&self) -> &str {
        &self.process
    }

    /// The source `name`, or an error naming this process and the source.
    pub fn source(&self, name: &str) -> Result<Arc<OdbcSource>> {
        if let Ok(source) = self.engine.source(name) {
            return Ok(source);
        }
        let process = &self.process;
        Err(DataFusionError::Execution(
            match self.unavailable.get(name) {
                Some(reason) => format!(
                    "{process} cannot reach source `{name}`: {reason}; check that this host \
                     reaches the database and that its configuration is right, then restart \
                     this process (it opens its sources when it starts)"
                ),
                None => format!(
                    "{process} has no source `{name}`: give it the same configuration file \
                     as the client (--config)"
                ),
            },
        ))
    }
}

/// The logical codec: ibarrow's tables by name, everything else as `inner` (Ballista's)
/// encodes it.
#[derive(Debug)]
pub struct IbarrowLogicalCodec {
    inner: Arc<dyn LogicalExtensionCodec>,
    /// Where decoded tables are looked up; `None` on a client, which only encodes.
    sources: Option<ClusterSources>,
}

impl IbarrowLogicalCodec {
    /// A codec that encodes only (a client's).
    pub fn for_client(inner: Arc<dyn LogicalExtensionCodec>) -> Self {
        Self {
            inner,
            sources: None,
        }
    }

    /// A codec that decodes tables against `sources` (a scheduler's or executor's).
    pub fn with_sources(inner: Arc<dyn LogicalExtensionCodec>, sources: ClusterSources) -> Self {
        Self {
            inner,
            sources: Some(sources),
        }
    }

    fn sources(&self) -> Result<&ClusterSources> {
        self.sources.as_ref().ok_or_else(|| {
            DataFusionError::Internal(
                "this process has no ibarrow sources to decode a table against".into(),
            )
        })
    }
}

/// The error for `what`, which a cluster does not run: Ballista retries failed tasks and
/// reruns stages whose executor was lost, so a write could happen twice.
fn runs_locally(what: &str) -> DataFusionError {
    DataFusionError::NotImplemented(format!(
        "{what} does not run on a cluster, where a retried task would write again; run it \
         without --cluster (or [engine] cluster)"
    ))
}

/// The message naming `provider`, when it is one of ibarrow's tables.
fn table_node(provider: &dyn TableProvider) -> Result<Option<TableNode>> {
    let any = provider as &dyn Any;
    if let Some(table) = any.downcast_ref::<OdbcTable>() {
        let remote = table.remote_table();
        return Ok(Some(TableNode {
            source: table.source().name().to_string(),
            schema: Some(
                remote
                    .qualifier
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SCHEMA.to_string()),
            ),
            table: Some(remote.name.clone()),
            passthrough: None,
        }));
    }
    if let Some(table) = any.downcast_ref::<PassthroughTable>() {
        let parts = table.parts();
        if parts.may_write {
            return Err(runs_locally("a native statement that may write"));
        }
        return Ok(Some(TableNode {
            source: table.source().name().to_string(),
            schema: None,
            table: None,
            passthrough: Some(PassthroughNode::from_parts(
                &parts,
                &table.source().dialect().to_string(),
            )?),
        }));
    }
    if let Some(table) = any.downcast_ref::<CatalogTable>() {
        return Ok(Some(TableNode {
            source: table.source.clone(),
            schema: Some(table.schema_name.clone()),
            table: Some(table.table.clone()),
            passthrough: None,
        }));
    }
    Ok(None)
}

impl LogicalExtensionCodec for IbarrowLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let Some(node) = wire::decode::<TableNode>(buf) else {
            return self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let node = node?;
        let sources = self.sources()?;
        if let Some(passthrough) = &node.passthrough {
            let source = sources.source(&node.source)?;
            let dialect = source.dialect().to_string();
            if dialect != passthrough.dialect {
                return Err(DataFusionError::Plan(format!(
                    "{} opened source `{}` as {dialect}, but the statement was written for {}: \
                     give every process of the cluster the same configuration",
                    sources.process(),
                    node.source,
                    passthrough.dialect
                )));
            }
            return Ok(Arc::new(PassthroughTable::from_parts(
                source,
                schema,
                passthrough.to_parts()?,
            )));
        }
        let (Some(schema_name), Some(table)) = (node.schema, node.table) else {
            return Err(DataFusionError::Internal(format!(
                "a table of source `{}` arrived without its name",
                node.source
            )));
        };
        Ok(Arc::new(CatalogTable {
            sources: sources.clone(),
            source: node.source,
            schema_name,
            table,
            schema,
        }))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        match table_node(node.as_ref())? {
            Some(message) => wire::encode(&message, buf),
            None => self.inner.try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(buf).unwrap_or_else(|| self.inner.try_decode_udf(name, buf))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_udf(node, buf).unwrap_or_else(|| self.inner.try_encode_udf(node, buf))
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn datafusion::datasource::file_format::FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn datafusion::datasource::file_format::FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }
}

/// A table of a source's catalog as a scheduler decodes it: the table itself is looked up in
/// the scheduler's catalog (metadata cached there) when the scan is planned, since decoding
/// cannot wait for the database.
#[derive(Debug)]
struct CatalogTable {
    sources: ClusterSources,
    source: String,
    schema_name: String,
    table: String,
    /// The columns the client planned with.
    schema: SchemaRef,
}

impl CatalogTable {
    async fn resolve(&self) -> Result<Arc<dyn TableProvider>> {
        let process = self.sources.process();
        let (source, schema_name, table) = (&self.source, &self.schema_name, &self.table);
        // Reports a source that could not be opened with its reason.
        self.sources.source(source)?;
        let catalog = self.sources.engine().context().catalog(source);
        let schema = catalog.and_then(|catalog| catalog.schema(schema_name));
        let found = match schema {
            Some(schema) => schema.table(table).await?,
            None => None,
        };
        let Some(found) = found else {
            return Err(DataFusionError::Plan(format!(
                "{process} finds no table {source}.{schema_name}.{table}: its configuration \
                 must name the same databases as the client's"
            )));
        };
        if found.schema().fields() != self.schema.fields() {
            return Err(DataFusionError::Plan(format!(
                "{process} reads {source}.{schema_name}.{table} with other columns than the \
                 client planned with; refresh the client (\\refresh {source}) or restart the \
                 cluster so both see the table as it is now"
            )));
        }
        Ok(found)
    }
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // The client already chose which filters the database evaluates: they arrive with the
        // scan. Nothing more is pushed here.
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.resolve()
            .await?
            .scan(state, projection, filters, limit)
            .await
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(runs_locally("INSERT"))
    }
}

/// A scan whose source this process cannot run: each partition fails with `message`.
#[derive(Debug)]
struct UnavailableScan {
    message: String,
    properties: Arc<PlanProperties>,
}

impl UnavailableScan {
    fn new(parts: &ibarrow_providers::OdbcExecParts, message: String) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&parts.schema)),
            Partitioning::UnknownPartitioning(parts.statements.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            message,
            properties,
        }
    }
}

impl DisplayAs for UnavailableScan {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "UnavailableScan: {}", self.message)
    }
}

impl ExecutionPlan for UnavailableScan {
    fn name(&self) -> &'static str {
        "UnavailableScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Err(DataFusionError::Execution(self.message.clone()))
    }
}

/// The physical codec: `OdbcExec` fully planned and ibarrow's functions; everything else as
/// `inner` (Ballista's) encodes it. (DataFusion's composed codec would claim every function
/// for the first codec, built-in ones included, so this one wraps instead.)
#[derive(Debug)]
pub struct IbarrowPhysicalCodec {
    inner: Arc<dyn PhysicalExtensionCodec>,
    sources: ClusterSources,
}

impl IbarrowPhysicalCodec {
    /// Decodes scans onto `sources`, other nodes with `inner`.
    pub fn new(inner: Arc<dyn PhysicalExtensionCodec>, sources: ClusterSources) -> Self {
        Self { inner, sources }
    }

    /// This process's source of the name `node` gives, or why the scan cannot run here.
    fn own_source(&self, node: &ScanNode) -> std::result::Result<Arc<OdbcSource>, String> {
        let source = self
            .sources
            .source(&node.source)
            .map_err(|err| err.strip_backtrace())?;
        let dialect = source.dialect().to_string();
        if dialect != node.dialect {
            return Err(format!(
                "{} opened source `{}` as {dialect}, but the scan was planned for {}: give every \
                 process of the cluster the same configuration",
                self.sources.process(),
                node.source,
                node.dialect
            ));
        }
        Ok(source)
    }
}

impl PhysicalExtensionCodec for IbarrowPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(node) = wire::decode::<ScanNode>(buf) else {
            return self.inner.try_decode(buf, inputs, ctx, proto_converter);
        };
        let node = node?;
        let parts = node.to_parts()?;
        let ranges = match (node.task_ranges, inputs) {
            (false, _) => None,
            (true, [ranges]) => Some(Arc::clone(ranges)),
            (true, _) => {
                return Err(DataFusionError::Internal(
                    "a task's scan arrived without its ranges".into(),
                ));
            }
        };
        let scan: Arc<dyn ExecutionPlan> = match self.own_source(&node) {
            Ok(source) => Arc::new(OdbcExec::from_parts(source, parts, self.sources.process())),
            // A task this process cannot run still decodes: it fails when it runs, so the
            // reason reaches the client with the job's failure (Ballista reports a plan it
            // cannot decode only as a rejected task).
            Err(message) => Arc::new(UnavailableScan::new(&parts, message)),
        };
        Ok(match ranges {
            Some(ranges) => Arc::new(TaskScanExec::new(scan, ranges)),
            None => scan,
        })
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let (scan, task_ranges) = match node.downcast_ref::<TaskScanExec>() {
            Some(task_scan) => (task_scan.scan().downcast_ref::<OdbcExec>(), true),
            None => (node.downcast_ref::<OdbcExec>(), false),
        };
        let Some(scan) = scan else {
            return self.inner.try_encode(node, buf, proto_converter);
        };
        let source = scan.source();
        let mut message =
            ScanNode::from_parts(source.name(), &source.dialect().to_string(), &scan.parts())?;
        message.task_ranges = task_ranges;
        wire::encode(&message, buf)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(buf).unwrap_or_else(|| self.inner.try_decode_udf(name, buf))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode_udf(node, buf).unwrap_or_else(|| self.inner.try_encode_udf(node, buf))
    }
}

/// ibarrow's function in `buf`; `None` when `buf` holds another codec's.
fn decode_udf(buf: &[u8]) -> Option<Result<Arc<ScalarUDF>>> {
    wire::decode::<DecimalAverageNode>(buf).map(|node| node?.to_udf())
}

/// `node` written to `buf` when it is ibarrow's function; `None` for any other.
fn encode_udf(node: &ScalarUDF, buf: &mut Vec<u8>) -> Option<Result<()>> {
    DecimalAverageNode::of(node).map(|message| wire::encode(&message, buf))
}
