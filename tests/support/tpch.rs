//! TPC-H data split over PostgreSQL, MariaDB and SQLite, and the `.slt` query format; shared
//! by the correctness suite (tests/slt_federation.rs) and the benchmark (benches/tpch.rs).
#![allow(dead_code)]

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use odbc_api::ConnectionOptions;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};

/// A TPC-H table: where it lives, its DDL, and which columns are quoted in INSERTs.
pub struct TpchTable {
    pub name: &'static str,
    columns: &'static str,
    /// `n` numeric, `s` quoted (text and dates), per column.
    kinds: &'static str,
    rows: fn(f64) -> Vec<String>,
}

fn rows<T: std::fmt::Display>(iter: impl Iterator<Item = T>) -> Vec<String> {
    iter.map(|row| row.to_string()).collect()
}

pub const POSTGRES_TABLES: &[TpchTable] = &[
    TpchTable {
        name: "lineitem",
        columns: "l_orderkey BIGINT, l_partkey BIGINT, l_suppkey BIGINT, l_linenumber INTEGER, \
                  l_quantity DECIMAL(15,2), l_extendedprice DECIMAL(15,2), l_discount DECIMAL(15,2), \
                  l_tax DECIMAL(15,2), l_returnflag CHAR(1), l_linestatus CHAR(1), l_shipdate DATE, \
                  l_commitdate DATE, l_receiptdate DATE, l_shipinstruct CHAR(25), l_shipmode CHAR(10), \
                  l_comment VARCHAR(44), PRIMARY KEY (l_orderkey, l_linenumber)",
        kinds: "nnnnnnnnsssssssss",
        rows: |scale| rows(LineItemGenerator::new(scale, 1, 1).iter()),
    },
    TpchTable {
        name: "orders",
        columns: "o_orderkey BIGINT PRIMARY KEY, o_custkey BIGINT, o_orderstatus CHAR(1), \
                  o_totalprice DECIMAL(15,2), o_orderdate DATE, o_orderpriority CHAR(15), \
                  o_clerk CHAR(15), o_shippriority INTEGER, o_comment VARCHAR(79)",
        kinds: "nnsnsssns",
        rows: |scale| rows(OrderGenerator::new(scale, 1, 1).iter()),
    },
];

pub const MARIADB_TABLES: &[TpchTable] = &[
    TpchTable {
        name: "customer",
        columns: "c_custkey BIGINT PRIMARY KEY, c_name VARCHAR(25), c_address VARCHAR(40), \
                  c_nationkey INTEGER, c_phone CHAR(15), c_acctbal DECIMAL(15,2), \
                  c_mktsegment CHAR(10), c_comment VARCHAR(117)",
        kinds: "nssnsnss",
        rows: |scale| rows(CustomerGenerator::new(scale, 1, 1).iter()),
    },
    TpchTable {
        name: "supplier",
        columns: "s_suppkey BIGINT PRIMARY KEY, s_name CHAR(25), s_address VARCHAR(40), \
                  s_nationkey INTEGER, s_phone CHAR(15), s_acctbal DECIMAL(15,2), s_comment VARCHAR(101)",
        kinds: "nssnsns",
        rows: |scale| rows(SupplierGenerator::new(scale, 1, 1).iter()),
    },
    TpchTable {
        name: "nation",
        columns: "n_nationkey INTEGER PRIMARY KEY, n_name CHAR(25), n_regionkey INTEGER, \
                  n_comment VARCHAR(152)",
        kinds: "nsns",
        rows: |scale| rows(NationGenerator::new(scale, 1, 1).iter()),
    },
];

pub const SQLITE_TABLES: &[TpchTable] = &[
    TpchTable {
        name: "part",
        columns: "p_partkey BIGINT PRIMARY KEY, p_name VARCHAR(55), p_mfgr CHAR(25), p_brand CHAR(10), \
                  p_type VARCHAR(25), p_size INTEGER, p_container CHAR(10), p_retailprice DECIMAL(15,2), \
                  p_comment VARCHAR(23)",
        kinds: "nssssnsns",
        rows: |scale| rows(PartGenerator::new(scale, 1, 1).iter()),
    },
    TpchTable {
        name: "partsupp",
        columns: "ps_partkey BIGINT, ps_suppkey BIGINT, ps_availqty INTEGER, \
                  ps_supplycost DECIMAL(15,2), ps_comment VARCHAR(199), PRIMARY KEY (ps_partkey, ps_suppkey)",
        kinds: "nnnns",
        rows: |scale| rows(PartSuppGenerator::new(scale, 1, 1).iter()),
    },
    TpchTable {
        name: "region",
        columns: "r_regionkey INTEGER PRIMARY KEY, r_name CHAR(25), r_comment VARCHAR(152)",
        kinds: "nss",
        rows: |scale| rows(RegionGenerator::new(scale, 1, 1).iter()),
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

/// The remote name of a TPC-H table at a scale: `tpch_lineitem` at 0.01, `tpch_sf0_1_lineitem`
/// at 0.1 and so on, so that data sets of several scales can sit side by side.
pub fn remote_name(table: &TpchTable, scale: f64) -> String {
    if scale == 0.01 {
        format!("tpch_{}", table.name)
    } else {
        format!(
            "tpch_sf{}_{}",
            scale.to_string().replace('.', "_"),
            table.name
        )
    }
}

/// Creates and fills the tables of one database unless they already hold the generated rows.
pub fn load(connection_string: &str, tables: &[TpchTable], scale: f64) {
    let env = odbc_api::environment().unwrap();
    let conn = env
        .connect_with_connection_string(connection_string, ConnectionOptions::default())
        .unwrap();
    for table in tables {
        let generated = (table.rows)(scale);
        let name = remote_name(table, scale);
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
        // Statistics, as a production table has them: planners (and ibarrow's estimates of
        // result sizes) depend on them. MariaDB spells it ANALYZE TABLE; PostgreSQL's VACUUM
        // also sets the rows' visibility, which the first reads of a fresh table would
        // otherwise write back (slowing whichever engine reads first).
        let analyzed = ["ANALYZE TABLE", "VACUUM (ANALYZE)"]
            .iter()
            .any(|command| conn.execute(&format!("{command} {name}"), (), None).is_ok());
        if !analyzed {
            conn.execute(&format!("ANALYZE {name}"), (), None)
                .unwrap_or_else(|e| panic!("analyze {name}: {e}"));
        }
    }
}

pub struct Query {
    pub line: usize,
    pub sql: String,
    pub rowsort: bool,
    pub expected: Option<Vec<String>>,
}

pub fn parse_slt(text: &str) -> Vec<Query> {
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

pub fn result_rows(batches: &[RecordBatch], rowsort: bool) -> Vec<String> {
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

/// Registers every TPC-H table under its plain name (`lineitem`) in the engine's session, the
/// sources being named `pg`, `maria` and `lite`; returns each plain name with its federated path.
pub async fn register_plain_names(
    engine: &ibarrow::Engine,
    scale: f64,
) -> Vec<(&'static str, String)> {
    let mut registered = Vec::new();
    for (source, schema, tables) in [
        ("pg", "public", POSTGRES_TABLES),
        ("maria", "ibarrow_test", MARIADB_TABLES),
        ("lite", "main", SQLITE_TABLES),
    ] {
        for table in tables {
            let remote = format!("{source}.{schema}.{}", remote_name(table, scale));
            let provider = engine
                .context()
                .table_provider(remote.as_str())
                .await
                .unwrap_or_else(|e| panic!("{remote}: {e}"));
            engine
                .context()
                .register_table(table.name, provider)
                .unwrap();
            registered.push((table.name, remote));
        }
    }
    registered
}
