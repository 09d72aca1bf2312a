//! The cost of access control on planning: the 22 TPC-H queries (tests/slt/tpch) planned, up to
//! the physical plan, in a session without `[roles]`, in one whose role reads every table, and
//! in one whose role also masks a column and filters rows of the tables the queries read most.
//! Prints the median planning time of each query in each setting.
//!
//! `cargo bench --bench access` (scale factor from IBARROW_BENCH_SF, default 0.01; the data
//! is the one benches/tpch.rs loads, generated once per scale; IBARROW_BENCH_RUNS plannings per
//! query and setting, default 15).

use std::path::Path;
use std::time::{Duration, Instant};

use ibarrow::{Config, Engine};

#[path = "../tests/support/tpch.rs"]
mod tpch;

use tpch::{
    MARIADB_TABLES, POSTGRES_TABLES, SQLITE_TABLES, load, query_statements, register_plain_names,
    split_placement,
};

const READ_ALL: &str = r#"
[roles.reader]
read = ["*.*.*"]
[users.bench]
roles = ["reader"]
"#;

const MASKED: &str = r#"
[roles.reader]
read = ["*.*.*"]
masks = { "datafusion.public.customer.c_phone" = "'***'", "datafusion.public.supplier.s_phone" = "'***'" }
row_filters = { "datafusion.public.orders" = "o_orderdate >= DATE '1900-01-01'", "datafusion.public.lineitem" = "l_quantity >= 0" }
[users.bench]
roles = ["reader"]
"#;

async fn engine(sources: &str, roles: &str, scale: f64) -> Engine {
    let config = Config::parse(&format!("{sources}\n{roles}"), "bench").expect("config");
    let engine = Engine::from_config(config)
        .await
        .expect("connect the three databases (run scripts/test-services first)");
    register_plain_names(&engine, scale, split_placement()).await;
    engine
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() {
    let scale: f64 = std::env::var("IBARROW_BENCH_SF")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.01);
    let runs: usize = std::env::var("IBARROW_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let pg = std::env::var("IBARROW_TEST_POSTGRES").unwrap_or_else(|_| {
        "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
    });
    let maria = std::env::var("IBARROW_TEST_MARIADB").unwrap_or_else(|_| {
        "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
    });
    let lite = format!(
        "Driver={{SQLite3}};Database={};",
        std::env::temp_dir()
            .join(format!("ibarrow_tpch_sf{scale}.sqlite"))
            .display()
    );
    load(&pg, POSTGRES_TABLES, scale);
    load(&maria, MARIADB_TABLES, scale);
    load(&lite, SQLITE_TABLES, scale);
    let sources = format!(
        "[sources.pg]\nconnection_string = '{pg}'\n[sources.maria]\nconnection_string = \
         '{maria}'\n[sources.lite]\nconnection_string = '{lite}'\n"
    );
    let settings = [
        ("no roles", engine(&sources, "", scale).await),
        ("read all", engine(&sources, READ_ALL, scale).await),
        ("masks+filters", engine(&sources, MASKED, scale).await),
    ];
    println!("TPC-H SF {scale}: median planning time (SQL to physical plan) of {runs} runs, ms");
    println!(
        "{:<5} {:>10} {:>10} {:>14}",
        "query", settings[0].0, settings[1].0, settings[2].0
    );
    let mut totals = [Duration::ZERO; 3];
    for number in 1..=22 {
        let file =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/slt/tpch/q{number:02}.slt"));
        let [sql] = &query_statements(&file)[..] else {
            panic!("{}: expected one query", file.display());
        };
        let mut row = Vec::new();
        for (index, (name, engine)) in settings.iter().enumerate() {
            let session = engine.session("bench", "bench");
            let mut samples = Vec::with_capacity(runs);
            // The first planning reads the tables' metadata; it is not counted.
            for run in 0..=runs {
                let started = Instant::now();
                let frame = session
                    .sql(sql)
                    .await
                    .unwrap_or_else(|e| panic!("q{number:02} ({name}): {e}"));
                frame
                    .create_physical_plan()
                    .await
                    .unwrap_or_else(|e| panic!("q{number:02} ({name}): {e}"));
                if run > 0 {
                    samples.push(started.elapsed());
                }
            }
            let median = median(samples);
            totals[index] += median;
            row.push(median.as_secs_f64() * 1000.0);
        }
        println!(
            "q{number:02}   {:>10.2} {:>10.2} {:>14.2}",
            row[0], row[1], row[2]
        );
    }
    println!(
        "total {:>10.1} {:>10.1} {:>14.1}",
        totals[0].as_secs_f64() * 1000.0,
        totals[1].as_secs_f64() * 1000.0,
        totals[2].as_secs_f64() * 1000.0
    );
}
