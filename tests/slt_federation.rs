//! Runs the `.slt` files of `tests/slt` against TPC-H data (scale 0.01) split over
//! PostgreSQL, MariaDB and SQLite. Each query's federated answer must equal DataFusion's
//! answer over the same rows held in memory, and the expected rows where a file gives them.
//!
//! The file format is the `query` subset of sqllogictest: `query [rowsort]`, the SQL, and
//! optionally `----` followed by the expected rows (values separated by spaces).

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use ibarrow::{Engine, SourceConfig};
use odbc_api::ConnectionOptions;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};

const SCALE: f64 = 0.01;

/// A TPC-H table: where it lives, its DDL, and which columns are quoted in INSERTs.
struct TpchTable {
    name: &'static str,
    columns: &'static str,
    /// `n` numeric, `s` quoted (text and dates), per column.
    kinds: &'static str,
    rows: fn() -> Vec<String>,
}

fn rows<T: std::fmt::Display>(iter: impl Iterator<Item = T>) -> Vec<String> {
    iter.map(|row| row.to_string()).collect()
}

const POSTGRES_TABLES: &[TpchTable] = &[
    TpchTable {
        name: "lineitem",
        columns: "l_orderkey BIGINT, l_partkey BIGINT, l_suppkey BIGINT, l_linenumber INTEGER, \
                  l_quantity DECIMAL(15,2), l_extendedprice DECIMAL(15,2), l_discount DECIMAL(15,2), \
                  l_tax DECIMAL(15,2), l_returnflag CHAR(1), l_linestatus CHAR(1), l_shipdate DATE, \
                  l_commitdate DATE, l_receiptdate DATE, l_shipinstruct CHAR(25), l_shipmode CHAR(10), \
                  l_comment VARCHAR(44), PRIMARY KEY (l_orderkey, l_linenumber)",
        kinds: "nnnnnnnnsssssssss",
        rows: || rows(LineItemGenerator::new(SCALE, 1, 1).iter()),
    },
    TpchTable {
        name: "orders",
        columns: "o_orderkey BIGINT PRIMARY KEY, o_custkey BIGINT, o_orderstatus CHAR(1), \
                  o_totalprice DECIMAL(15,2), o_orderdate DATE, o_orderpriority CHAR(15), \
                  o_clerk CHAR(15), o_shippriority INTEGER, o_comment VARCHAR(79)",
        kinds: "nnsnsssns",
        rows: || rows(OrderGenerator::new(SCALE, 1, 1).iter()),
    },
];

const MARIADB_TABLES: &[TpchTable] = &[
    TpchTable {
        name: "customer",
        columns: "c_custkey BIGINT PRIMARY KEY, c_name VARCHAR(25), c_address VARCHAR(40), \
                  c_nationkey INTEGER, c_phone CHAR(15), c_acctbal DECIMAL(15,2), \
                  c_mktsegment CHAR(10), c_comment VARCHAR(117)",
        kinds: "nssnsnss",
        rows: || rows(CustomerGenerator::new(SCALE, 1, 1).iter()),
    },
    TpchTable {
        name: "supplier",
        columns: "s_suppkey BIGINT PRIMARY KEY, s_name CHAR(25), s_address VARCHAR(40), \
                  s_nationkey INTEGER, s_phone CHAR(15), s_acctbal DECIMAL(15,2), s_comment VARCHAR(101)",
        kinds: "nssnsns",
        rows: || rows(SupplierGenerator::new(SCALE, 1, 1).iter()),
    },
    TpchTable {
        name: "nation",
        columns: "n_nationkey INTEGER PRIMARY KEY, n_name CHAR(25), n_regionkey INTEGER, \
                  n_comment VARCHAR(152)",
        kinds: "nsns",
        rows: || rows(NationGenerator::new(SCALE, 1, 1).iter()),
    },
];

const SQLITE_TABLES: &[TpchTable] = &[
    TpchTable {
        name: "part",
        columns: "p_partkey BIGINT PRIMARY KEY, p_name VARCHAR(55), p_mfgr CHAR(25), p_brand CHAR(10), \
                  p_type VARCHAR(25), p_size INTEGER, p_container CHAR(10), p_retailprice DECIMAL(15,2), \
                  p_comment VARCHAR(23)",
        kinds: "nssssnsns",
        rows: || rows(PartGenerator::new(SCALE, 1, 1).iter()),
    },
    TpchTable {
        name: "partsupp",
        columns: "ps_partkey BIGINT, ps_suppkey BIGINT, ps_availqty INTEGER, \
                  ps_supplycost DECIMAL(15,2), ps_comment VARCHAR(199), PRIMARY KEY (ps_partkey, ps_suppkey)",
        kinds: "nnnns",
        rows: || rows(PartSuppGenerator::new(SCALE, 1, 1).iter()),
    },
    TpchTable {
        name: "region",
        columns: "r_regionkey INTEGER PRIMARY KEY, r_name CHAR(25), r_comment VARCHAR(152)",
        kinds: "nss",
        rows: || rows(RegionGenerator::new(SCALE, 1, 1).iter()),
    },
];

/// `a|b|c|` (dbgen's format) → `(a, 'b', c)`.
fn values_tuple(line: &str, kinds: &str) -> String {
    let fields = line.trim_end_matches('|').split('|');
    let values: Vec<String> = fields
        .zip(kinds.chars())
        .map(|(field, kind)| match kind {
            'n' => field.to_string(),
            _ => format!("'{}'", field.replace('\'', "''")),
        })
        .collect();
    format!("({})", values.join(", "))
}

/// Creates and fills the tables of one database unless they already hold the generated rows.
fn load(connection_string: &str, tables: &[TpchTable]) {
    let env = odbc_api::environment().unwrap();
    let conn = env
        .connect_with_connection_string(connection_string, ConnectionOptions::default())
        .unwrap();
    for table in tables {
        let generated = (table.rows)();
        let name = format!("tpch_{}", table.name);
        let count_sql = format!("SELECT count(*) FROM {name}");
        let present = conn
            .execute(&count_sql, (), None)
            .ok()
            .flatten()
            .and_then(|mut cursor| {
                use odbc_api::Cursor;
                let mut row = cursor.next_row().ok()??;
                let mut text = Vec::new();
                row.get_text(1, &mut text).ok()?;
                String::from_utf8(text).ok()?.trim().parse::<usize>().ok()
            });
        if present == Some(generated.len()) {
            continue;
        }
        conn.execute(&format!("DROP TABLE IF EXISTS {name}"), (), None)
            .unwrap();
        conn.execute(
            &format!("CREATE TABLE {name} ({})", table.columns),
            (),
            None,
        )
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
        for chunk in generated.chunks(500) {
            let tuples: Vec<String> = chunk.iter().map(|l| values_tuple(l, table.kinds)).collect();
            conn.execute(
                &format!("INSERT INTO {name} VALUES {}", tuples.join(", ")),
                (),
                None,
            )
            .unwrap_or_else(|e| panic!("insert into {name}: {e}"));
        }
    }
}

struct Query {
    line: usize,
    sql: String,
    rowsort: bool,
    expected: Option<Vec<String>>,
}

fn parse_slt(text: &str) -> Vec<Query> {
    let mut queries = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((number, line)) = lines.next() {
        let line = line.trim();
        let Some(options) = line.strip_prefix("query") else {
            assert!(
                line.is_empty() || line.starts_with('#'),
                "line {}: expected `query`, found `{line}`",
                number + 1
            );
            continue;
        };
        let mut sql = Vec::new();
        let mut expected = None;
        while let Some((_, body)) = lines.next() {
            if body.trim().is_empty() {
                break;
            }
            if body.trim() == "----" {
                let mut rows = Vec::new();
                while let Some((_, row)) = lines.next_if(|(_, r)| !r.trim().is_empty()) {
                    rows.push(row.trim().to_string());
                }
                expected = Some(rows);
                break;
            }
            sql.push(body);
        }
        queries.push(Query {
            line: number + 1,
            sql: sql.join("\n"),
            rowsort: options.split_whitespace().any(|o| o == "rowsort"),
            expected,
        });
    }
    queries
}

fn result_rows(batches: &[RecordBatch], rowsort: bool) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let values: Vec<String> = formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect();
            rows.push(values.join(" "));
        }
    }
    if rowsort {
        rows.sort();
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files_answer_like_local_datafusion() {
    let pg = std::env::var("IBARROW_TEST_POSTGRES").unwrap_or_else(|_| {
        "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
    });
    let maria = std::env::var("IBARROW_TEST_MARIADB").unwrap_or_else(|_| {
        "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
    });
    let dir = tempfile::tempdir().unwrap();
    let lite = format!(
        "Driver={{SQLite3}};Database={};",
        dir.path().join("tpch.sqlite").display()
    );
    load(&pg, POSTGRES_TABLES);
    load(&maria, MARIADB_TABLES);
    load(&lite, SQLITE_TABLES);

    // Large PostgreSQL tables are read as two key ranges, so the suite covers split scans.
    let split = SourceConfig {
        connection_string: Some(pg),
        partitions: Some(2),
        min_partition_rows: Some(10_000),
        ..SourceConfig::default()
    };
    let engine = Engine::builder()
        .source_config("pg", split)
        .source("maria", &maria)
        .source("lite", &lite)
        .target_partitions(2)
        .build()
        .await
        .unwrap();
    let local = SessionContext::new();
    for (source, schema, tables) in [
        ("pg", "public", POSTGRES_TABLES),
        ("maria", "ibarrow_test", MARIADB_TABLES),
        ("lite", "main", SQLITE_TABLES),
    ] {
        for table in tables {
            let remote = format!("{source}.{schema}.tpch_{}", table.name);
            let provider = engine
                .session()
                .table_provider(remote.as_str())
                .await
                .unwrap();
            engine
                .session()
                .register_table(table.name, provider)
                .unwrap();
            let rows = engine
                .sql(&format!("SELECT * FROM {remote}"))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let mem = MemTable::try_new(rows[0].schema(), vec![rows]).unwrap();
            local.register_table(table.name, Arc::new(mem)).unwrap();
        }
    }

    let slt_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<_> = std::fs::read_dir(&slt_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut ran = 0;
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "slt"))
    {
        let text = std::fs::read_to_string(file).unwrap();
        for query in parse_slt(&text) {
            let place = format!("{}:{}", file.display(), query.line);
            let federated = engine
                .sql(&query.sql)
                .await
                .unwrap_or_else(|e| panic!("{place}: planning failed: {e}"))
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{place}: federated run failed: {e}"));
            let reference = local
                .sql(&query.sql)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let federated = result_rows(&federated, query.rowsort);
            assert_eq!(federated, result_rows(&reference, query.rowsort), "{place}");
            assert!(
                !federated.is_empty(),
                "{place}: no rows; the query tests nothing"
            );
            if let Some(expected) = &query.expected {
                assert_eq!(&federated, expected, "{place}: expected rows");
            }
            ran += 1;
        }
    }
    assert!(ran >= 14, "only {ran} queries ran");
}
