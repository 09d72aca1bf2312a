//! The TPC-H answers: each file of tests/slt/tpch (sqllogictest format) runs on four
//! placements of the same generated data: every table in PostgreSQL, every table in MariaDB,
//! every table in SQLite, and the tables split over the three (joins across databases). The
//! expected rows in the files come from DuckDB over data from tpchgen-cli
//! (tests/slt/tpch/README.md), not from ibarrow; the databases are filled straight from the
//! `tpchgen` generator. One test per file, so one wrong answer does not hide the others.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use ibarrow::{Engine, SourceConfig};

#[path = "support/slt.rs"]
mod slt;
#[path = "support/tpch.rs"]
mod tpch;

use slt::{Ibarrow, in_last_places, rows_match, values_match};

use tpch::{SPLIT, all_tables, load, register_plain_names, split_placement};

const SCALE: f64 = 0.01;

/// Where the tables are read from.
#[derive(Debug, Clone, Copy)]
enum Placement {
    Postgres,
    MariaDb,
    Sqlite,
    Split,
}

const PLACEMENTS: [Placement; 4] = [
    Placement::Postgres,
    Placement::MariaDb,
    Placement::Sqlite,
    Placement::Split,
];

struct Databases {
    postgres: String,
    mariadb: String,
    sqlite: String,
    _sqlite_dir: tempfile::TempDir,
}

/// The three databases, each holding every table (loaded once per test process).
fn databases() -> &'static Databases {
    static DATABASES: OnceLock<Databases> = OnceLock::new();
    DATABASES.get_or_init(|| {
        let postgres = std::env::var("IBARROW_TEST_POSTGRES").unwrap_or_else(|_| {
            "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
        });
        let mariadb = std::env::var("IBARROW_TEST_MARIADB").unwrap_or_else(|_| {
            "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
        });
        let dir = tempfile::tempdir().expect("a temporary directory for SQLite");
        let sqlite = format!(
            "Driver={{SQLite3}};Database={};",
            dir.path().join("tpch.sqlite").display()
        );
        for connection_string in [&postgres, &mariadb, &sqlite] {
            load(connection_string, all_tables(), SCALE);
        }
        Databases {
            postgres,
            mariadb,
            sqlite,
            _sqlite_dir: dir,
        }
    })
}

async fn engine(placement: Placement) -> Engine {
    let databases = tokio::task::spawn_blocking(databases)
        .await
        .expect("loading the TPC-H tables");
    // Large PostgreSQL tables are read as two key ranges, so split scans are covered too.
    let postgres = SourceConfig {
        connection_string: Some(databases.postgres.clone()),
        partitions: Some(2),
        min_partition_rows: Some(10_000),
        ..SourceConfig::default()
    };
    let engine = Engine::builder()
        .source_config("pg", postgres)
        .source("maria", &databases.mariadb)
        .source("lite", &databases.sqlite)
        .target_partitions(2)
        .build()
        .await
        .expect("connect the three databases (scripts/test-services starts them)");
    let single = |source: &'static str, schema: &'static str| {
        all_tables().map(move |table| (source, schema, table))
    };
    let placed: Vec<_> = match placement {
        Placement::Postgres => single(SPLIT[0].0, SPLIT[0].1).collect(),
        Placement::MariaDb => single(SPLIT[1].0, SPLIT[1].1).collect(),
        Placement::Sqlite => single(SPLIT[2].0, SPLIT[2].1).collect(),
        Placement::Split => split_placement().collect(),
    };
    register_plain_names(&engine, SCALE, placed).await;
    engine
}

async fn run_file(name: &str) {
    let file = slt_dir().join(format!("{name}.slt"));
    let mut failures = Vec::new();
    for placement in PLACEMENTS {
        let engine = engine(placement).await;
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            async move { Ok::<_, ibarrow::Error>(Ibarrow(engine)) }
        });
        runner.with_validator(rows_match);
        runner.with_column_validator(sqllogictest::strict_column_validator);
        if let Err(err) = runner.run_file_async(&file).await {
            failures.push(format!("{placement:?}: {}", err.display(false)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt/tpch")
}

macro_rules! slt_files {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run_file(stringify!($name)).await;
            }
        )*

        const FILES: &[&str] = &[$(stringify!($name)),*];
    };
}

slt_files!(
    q01,
    q02,
    q03,
    q04,
    q05,
    q06,
    q07,
    q08,
    q09,
    q10,
    q11,
    q12,
    q13,
    q14,
    q15,
    q16,
    q17,
    q18,
    q19,
    q20,
    q21,
    q22,
    extra_row_counts,
    extra_window_rank,
);

/// Every value of every table reads back as the generator wrote it (decimals, dates, CHAR
/// padding, text), from each database: types checked against the data's source, not
/// against another read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generated_row_reads_back_as_generated() {
    for placement in [Placement::Postgres, Placement::MariaDb, Placement::Sqlite] {
        let engine = engine(placement).await;
        for table in all_tables() {
            let batches = engine
                .sql(&format!("SELECT * FROM {}", table.name))
                .await
                .unwrap_or_else(|e| panic!("{placement:?} {}: {e}", table.name))
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{placement:?} {}: {e}", table.name));
            let mut read = Vec::new();
            for batch in &batches {
                let options = FormatOptions::default().with_null("NULL");
                let formatters: Vec<_> = batch
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                    .collect();
                for row in 0..batch.num_rows() {
                    let line: String = formatters
                        .iter()
                        .map(|f| format!("{}|", f.value(row)))
                        .collect();
                    read.push(line);
                }
            }
            // The generator writes `23` for a DECIMAL(15,2) quantity the database holds as 23.00.
            let mut generated: Vec<String> = table
                .generated(SCALE)
                .iter()
                .map(|line| same_numbers(line))
                .collect();
            let mut read: Vec<String> = read.iter().map(|line| same_numbers(line)).collect();
            generated.sort();
            read.sort();
            assert_eq!(
                read.len(),
                generated.len(),
                "{placement:?} {}: row count",
                table.name
            );
            if let Some((read, generated)) = read.iter().zip(&generated).find(|(r, g)| r != g) {
                panic!(
                    "{placement:?} {}: read `{read}`, generated `{generated}`",
                    table.name
                );
            }
        }
    }
}

/// `23.00|x|1.50|` → `23|x|1.5|`: numbers without trailing zeros in their fraction.
fn same_numbers(line: &str) -> String {
    line.split('|')
        .map(|field| match in_last_places(field) {
            Some(_) => field.trim_end_matches('0').trim_end_matches('.'),
            None => field,
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// A new file gets a test of its own: none is left out silently.
#[test]
fn every_file_has_a_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(slt_dir())
        .expect("tests/slt/tpch")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "slt"))
        .filter_map(|path| Some(path.file_stem()?.to_str()?.to_string()))
        .collect();
    on_disk.sort();
    let mut tested: Vec<String> = FILES.iter().map(|name| name.to_string()).collect();
    tested.sort();
    assert_eq!(on_disk, tested);
}

#[test]
fn numbers_match_within_the_last_place_and_text_exactly() {
    assert!(values_match("0.050081", "0.050081"));
    assert!(values_match("0.050080", "0.050081"));
    assert!(!values_match("0.050079", "0.050081"));
    assert!(values_match("526165934.000838", "526165934.000839"));
    assert!(!values_match("380456.02", "380456.00"));
    assert!(!values_match("380456.01", "380456.00"));
    assert!(!values_match("ALGERIA", "ARGENTINA"));
    assert!(!values_match("15", "16"));
    assert!(!values_match("-0.000001", "0.000001"));
    assert!(values_match("-0.000001", "0.000000"));
    assert!(values_match("0.00000000", "0.000000"));
    assert!(values_match("0.05008149", "0.050081"));
    assert!(!values_match("0.05008250", "0.050081"));
    assert!(!values_match("0.05008", "0.050081"));
}
