//! The messages ibarrow's tables and scans travel in between a cluster's client, scheduler and
//! executors (`codec.rs`), as protobuf beside DataFusion's own plan messages. They name a
//! source and never hold its connection string: each process opens its sources from its own
//! configuration.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::error::{DataFusionError, Result};
use datafusion_proto::protobuf;
use ibarrow_providers::type_map::ColumnFetch;
use ibarrow_providers::{OdbcExecParts, PassthroughParts, ScanColumnStatistics};
use ibarrow_sql::ScanStatementParts;
use prost::Message;

/// Starts every buffer ibarrow encodes, so a decoder tells its own from another codec's;
/// followed by [`VERSION`] and a `;`.
const MAGIC: &[u8] = b"ibarrow ";
/// The version of the processes that wrote a message: every process of a cluster must run
/// the same one, since messages change between versions.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A table of a source: one of its catalog (`schema.table`), or a statement of its own.
#[derive(Clone, PartialEq, Message)]
pub(super) struct TableNode {
    #[prost(string, tag = "1")]
    pub source: String,
    /// The catalog's schema and table, for a table of the source's catalog.
    #[prost(string, optional, tag = "2")]
    pub schema: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub table: Option<String>,
    /// A statement (a pushed sub-plan or a native query).
    #[prost(message, optional, tag = "4")]
    pub passthrough: Option<PassthroughNode>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct PassthroughNode {
    #[prost(string, tag = "1")]
    pub sql: String,
    #[prost(message, repeated, tag = "2")]
    pub fetch: Vec<ColumnFetchNode>,
    #[prost(bool, tag = "3")]
    pub built_by_ibarrow: bool,
    #[prost(bool, tag = "4")]
    pub read_whole_when_small: bool,
    #[prost(bool, tag = "5")]
    pub may_write: bool,
    /// The dialect the statement was written in: a process whose source of this name speaks
    /// another refuses it.
    #[prost(string, tag = "6")]
    pub dialect: String,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct ColumnFetchNode {
    #[prost(message, optional, tag = "1")]
    pub fetch_type: Option<protobuf::ArrowType>,
    #[prost(bool, tag = "2")]
    pub read_as_text: bool,
    #[prost(bool, tag = "3")]
    pub trim_trailing_blanks: bool,
    #[prost(uint64, optional, tag = "4")]
    pub max_text_bytes: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub declared_text_bytes: Option<u64>,
    #[prost(bool, tag = "6")]
    pub zoneless_timestamp: bool,
}

/// A planned remote scan (`OdbcExec`).
#[derive(Clone, PartialEq, Message)]
pub(super) struct ScanNode {
    #[prost(string, tag = "1")]
    pub source: String,
    /// The dialect the statements were rendered in: an executor whose source of this name
    /// speaks another refuses the scan.
    #[prost(string, tag = "2")]
    pub dialect: String,
    #[prost(message, repeated, tag = "3")]
    pub statements: Vec<StatementNode>,
    #[prost(message, optional, tag = "4")]
    pub schema: Option<protobuf::Schema>,
    #[prost(message, repeated, tag = "5")]
    pub fetch: Vec<ColumnFetchNode>,
    #[prost(bool, tag = "6")]
    pub built_by_ibarrow: bool,
    #[prost(bool, tag = "7")]
    pub read_whole: bool,
    #[prost(uint64, optional, tag = "8")]
    pub row_estimate: Option<u64>,
    #[prost(bool, tag = "9")]
    pub has_column_statistics: bool,
    #[prost(message, repeated, tag = "10")]
    pub column_statistics: Vec<ColumnStatisticsNode>,
    #[prost(string, optional, tag = "11")]
    pub partitioning_reason: Option<String>,
    #[prost(uint64, optional, tag = "12")]
    pub max_rows: Option<u64>,
    #[prost(bool, tag = "13")]
    pub on_primary: bool,
    #[prost(bool, tag = "14")]
    pub runtime_filters_dropped: bool,
    /// The scan reads the ranges its one input names (`task_scan.rs`).
    #[prost(bool, tag = "15")]
    pub task_ranges: bool,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct StatementNode {
    #[prost(string, tag = "1")]
    pub query: String,
    #[prost(bool, tag = "2")]
    pub has_columns: bool,
    #[prost(string, repeated, tag = "3")]
    pub columns: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub conditions: Vec<String>,
    #[prost(string, optional, tag = "5")]
    pub runtime_condition: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub packed_row: Option<String>,
}

/// ibarrow's `decimal_average` function (`providers/src/pushdown/average.rs`).
#[derive(Clone, PartialEq, Message)]
pub(super) struct DecimalAverageNode {
    #[prost(int32, tag = "1")]
    pub sum_scale: i32,
    #[prost(uint32, tag = "2")]
    pub precision: u32,
    #[prost(int32, tag = "3")]
    pub scale: i32,
}

impl DecimalAverageNode {
    /// The message of `udf`, when it is a `decimal_average`.
    pub fn of(udf: &datafusion::logical_expr::ScalarUDF) -> Option<Self> {
        let (sum_scale, precision, scale) = ibarrow_providers::decimal_average_settings(udf)?;
        Some(Self {
            sum_scale: sum_scale.into(),
            precision: precision.into(),
            scale: scale.into(),
        })
    }

    /// The function again.
    pub fn to_udf(&self) -> Result<Arc<datafusion::logical_expr::ScalarUDF>> {
        let settings = (
            i8::try_from(self.sum_scale).ok(),
            u8::try_from(self.precision).ok(),
            i8::try_from(self.scale).ok(),
        );
        let (Some(sum_scale), Some(precision), Some(scale)) = settings else {
            return Err(proto_error("decimal_average", "settings out of range"));
        };
        ibarrow_providers::decimal_average(sum_scale, precision, scale)
            .ok_or_else(|| proto_error("decimal_average", "settings out of range"))
    }
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct ColumnStatisticsNode {
    #[prost(uint64, optional, tag = "1")]
    pub distinct: Option<u64>,
    #[prost(double, optional, tag = "2")]
    pub null_fraction: Option<f64>,
    #[prost(uint64, optional, tag = "3")]
    pub avg_bytes: Option<u64>,
}

/// `message` after the marker.
pub(super) fn encode(message: &impl Message, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(VERSION.as_bytes());
    buf.push(b';');
    message
        .encode(buf)
        .map_err(|err| proto_error("encoding a plan message of ibarrow", err))
}

/// The message after the marker; `None` when `buf` is not one of ibarrow's.
pub(super) fn decode<M: Message + Default>(buf: &[u8]) -> Option<Result<M>> {
    let tagged = buf.strip_prefix(MAGIC)?;
    let Some(body) = tagged
        .strip_prefix(VERSION.as_bytes())
        .and_then(|rest| rest.strip_prefix(b";"))
    else {
        let end = tagged.iter().position(|&b| b == b';').unwrap_or(0).min(32);
        let theirs = String::from_utf8_lossy(&tagged[..end]);
        return Some(Err(DataFusionError::Plan(format!(
            "a plan came from ibarrow {theirs}, this process is ibarrow {VERSION}: run the \
             same version on the client, the scheduler and every executor"
        ))));
    };
    Some(M::decode(body).map_err(|err| {
        DataFusionError::Internal(format!(
            "a plan message of ibarrow cannot be read ({err}); do the cluster's processes run \
             the same ibarrow version?"
        ))
    }))
}

fn to_u64(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

fn proto_error(what: &str, err: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("{what}: {err}"))
}

impl ColumnFetchNode {
    pub fn from_fetch(fetch: &ColumnFetch) -> Result<Self> {
        Ok(Self {
            fetch_type: Some(
                protobuf::ArrowType::try_from(&fetch.fetch_type)
                    .map_err(|e| proto_error("a column's fetch type", e))?,
            ),
            read_as_text: fetch.read_as_text,
            trim_trailing_blanks: fetch.trim_trailing_blanks,
            max_text_bytes: fetch.max_text_bytes.map(to_u64),
            declared_text_bytes: fetch.declared_text_bytes.map(to_u64),
            zoneless_timestamp: fetch.zoneless_timestamp,
        })
    }

    pub fn to_fetch(&self) -> Result<ColumnFetch> {
        let fetch_type = match &self.fetch_type {
            Some(arrow_type) => DataType::try_from(arrow_type)
                .map_err(|e| proto_error("a column's fetch type", e))?,
            None => return Err(proto_error("a column's fetch type", "missing")),
        };
        Ok(ColumnFetch {
            fetch_type,
            read_as_text: self.read_as_text,
            trim_trailing_blanks: self.trim_trailing_blanks,
            max_text_bytes: self.max_text_bytes.map(to_usize),
            declared_text_bytes: self.declared_text_bytes.map(to_usize),
            zoneless_timestamp: self.zoneless_timestamp,
        })
    }
}

fn fetch_nodes(fetch: &[ColumnFetch]) -> Result<Vec<ColumnFetchNode>> {
    fetch.iter().map(ColumnFetchNode::from_fetch).collect()
}

fn fetch_of(nodes: &[ColumnFetchNode]) -> Result<Vec<ColumnFetch>> {
    nodes.iter().map(ColumnFetchNode::to_fetch).collect()
}

impl PassthroughNode {
    pub fn from_parts(parts: &PassthroughParts, dialect: &str) -> Result<Self> {
        Ok(Self {
            sql: parts.sql.clone(),
            fetch: fetch_nodes(&parts.fetch)?,
            built_by_ibarrow: parts.built_by_ibarrow,
            read_whole_when_small: parts.read_whole_when_small,
            may_write: parts.may_write,
            dialect: dialect.to_string(),
        })
    }

    pub fn to_parts(&self) -> Result<PassthroughParts> {
        Ok(PassthroughParts {
            sql: self.sql.clone(),
            fetch: fetch_of(&self.fetch)?,
            built_by_ibarrow: self.built_by_ibarrow,
            read_whole_when_small: self.read_whole_when_small,
            may_write: self.may_write,
        })
    }
}

impl ScanNode {
    pub fn from_parts(source: &str, dialect: &str, parts: &OdbcExecParts) -> Result<Self> {
        let statements = parts
            .statements
            .iter()
            .map(|statement| StatementNode {
                query: statement.query.clone(),
                has_columns: statement.columns.is_some(),
                columns: statement.columns.clone().unwrap_or_default(),
                conditions: statement.conditions.clone(),
                runtime_condition: statement.runtime_condition.clone(),
                packed_row: statement.packed_row.clone(),
            })
            .collect();
        let column_statistics = parts.column_statistics.as_deref().unwrap_or_default();
        Ok(Self {
            source: source.to_string(),
            dialect: dialect.to_string(),
            statements,
            schema: Some(
                protobuf::Schema::try_from(parts.schema.as_ref())
                    .map_err(|e| proto_error("a scan's schema", e))?,
            ),
            fetch: fetch_nodes(&parts.fetch)?,
            built_by_ibarrow: parts.built_by_ibarrow,
            read_whole: parts.read_whole,
            row_estimate: parts.row_estimate.map(to_u64),
            has_column_statistics: parts.column_statistics.is_some(),
            column_statistics: column_statistics
                .iter()
                .map(|column| ColumnStatisticsNode {
                    distinct: column.distinct.map(to_u64),
                    null_fraction: column.null_fraction,
                    avg_bytes: column.avg_bytes.map(to_u64),
                })
                .collect(),
            partitioning_reason: parts.partitioning_reason.clone(),
            max_rows: parts.max_rows.map(to_u64),
            on_primary: parts.on_primary,
            runtime_filters_dropped: parts.runtime_filters_dropped,
            task_ranges: false,
        })
    }

    pub fn to_parts(&self) -> Result<OdbcExecParts> {
        let schema = match &self.schema {
            Some(schema) => {
                Schema::try_from(schema).map_err(|e| proto_error("a scan's schema", e))?
            }
            None => return Err(proto_error("a scan's schema", "missing")),
        };
        Ok(OdbcExecParts {
            statements: self
                .statements
                .iter()
                .map(|statement| ScanStatementParts {
                    query: statement.query.clone(),
                    columns: statement.has_columns.then(|| statement.columns.clone()),
                    conditions: statement.conditions.clone(),
                    runtime_condition: statement.runtime_condition.clone(),
                    packed_row: statement.packed_row.clone(),
                })
                .collect(),
            schema: Arc::new(schema),
            fetch: fetch_of(&self.fetch)?,
            built_by_ibarrow: self.built_by_ibarrow,
            read_whole: self.read_whole,
            row_estimate: self.row_estimate.map(to_usize),
            column_statistics: self.has_column_statistics.then(|| {
                self.column_statistics
                    .iter()
                    .map(|column| ScanColumnStatistics {
                        distinct: column.distinct.map(to_usize),
                        null_fraction: column.null_fraction,
                        avg_bytes: column.avg_bytes.map(to_usize),
                    })
                    .collect()
            }),
            partitioning_reason: self.partitioning_reason.clone(),
            max_rows: self.max_rows.map(to_usize),
            on_primary: self.on_primary,
            runtime_filters_dropped: self.runtime_filters_dropped,
        })
    }
}
