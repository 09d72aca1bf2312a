//! The engine over PostgreSQL, MariaDB and SQLite at once: configuration, catalogs, names,
//! cross-database SQL, EXPLAIN and refresh.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use ibarrow::{Engine, Error};
use odbc_api::ConnectionOptions;

const PG: &str = "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=${IBARROW_ENGINE_TEST_PW};";
const MARIA: &str = "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;Uid=ibarrow;Pwd=${IBARROW_ENGINE_TEST_PW};";

fn execute(connection_string: &str, statements: &[String]) {
    let env = odbc_api::environment().unwrap();
    let conn = env
        .connect_with_connection_string(connection_string, ConnectionOptions::default())
        .unwrap();
    for sql in statements {
        conn.execute(sql, (), None)
            .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
    }
}

/// The rows of `sql` run by the engine; a failure fails the test, naming the query.
async fn collect(engine: &Engine, sql: &str) -> Vec<RecordBatch> {
    let df = engine
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
    df.collect()
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {e}"))
}

/// The rows of `sql` over the in-memory copy.
async fn collect_local(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

fn text(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

/// Three databases with a small shop: orders in PostgreSQL, customers in MariaDB, regions in
/// SQLite, plus the engine over them (from a config file) and the same rows in memory.
struct Federation {
    engine: Engine,
    local: SessionContext,
    suffix: String,
    pg: String,
    maria: String,
    _dir: tempfile::TempDir,
}

impl Drop for Federation {
    fn drop(&mut self) {
        let s = &self.suffix;
        execute(&self.pg, &[format!("DROP TABLE IF EXISTS orders_{s}")]);
        execute(
            &self.maria,
            &[format!("DROP TABLE IF EXISTS customers_{s}")],
        );
    }
}

async fn federation() -> Federation {
    // SAFETY: every test sets the same value; nothing else reads it.
    unsafe { std::env::set_var("IBARROW_ENGINE_TEST_PW", "ibarrow") };
    let s = format!("{}_{}", std::process::id(), rand_suffix());
    let pg = PG.replace("${IBARROW_ENGINE_TEST_PW}", "ibarrow");
    let maria = MARIA.replace("${IBARROW_ENGINE_TEST_PW}", "ibarrow");
    let dir = tempfile::tempdir().unwrap();
    let lite_path = dir.path().join("crm.sqlite");
    let lite = format!("Driver={{SQLite3}};Database={};", lite_path.display());

    let orders: Vec<String> = (1..=500)
        .map(|i| {
            format!(
                "({i}, {}, {}.{:02}, DATE '2024-01-01' + {})",
                i % 53,
                i % 97,
                i % 100,
                i % 60
            )
        })
        .collect();
    execute(
        &pg,
        &[
            format!("DROP TABLE IF EXISTS orders_{s}"),
            format!(
                "CREATE TABLE orders_{s} (id INTEGER PRIMARY KEY, customer_id INTEGER, total NUMERIC(10,2), day DATE)"
            ),
            format!("INSERT INTO orders_{s} VALUES {}", orders.join(", ")),
        ],
    );
    let customers: Vec<String> = (0..50)
        .map(|i| format!("({i}, 'customer {i}', {})", i % 5))
        .collect();
    execute(
        &maria,
        &[
            format!("DROP TABLE IF EXISTS customers_{s}"),
            format!(
                "CREATE TABLE customers_{s} (id INT PRIMARY KEY, name VARCHAR(40), region_id INT)"
            ),
            format!("INSERT INTO customers_{s} VALUES {}", customers.join(", ")),
        ],
    );
    execute(
        &lite,
        &[
            "CREATE TABLE \"Regions\" (id INTEGER PRIMARY KEY, name TEXT)".to_string(),
            "INSERT INTO \"Regions\" VALUES (0, 'north'), (1, 'south'), (2, 'east'), (3, 'west')"
                .to_string(),
        ],
    );

    let config_path = dir.path().join("ibarrow.toml");
    std::fs::write(
        &config_path,
        format!(
            "[engine]\ntarget_partitions = 2\n\n\
             [sources.pg]\nconnection_string = \"{}\"\npartitions = 2\nmin_partition_rows = 0\n\
             [sources.pg.tables.orders_{s}]\npartition_column = \"day\"\n\n\
             [sources.maria]\nconnection_string = \"{}\"\n\n\
             [sources.lite]\nconnection_string = \"Driver={{SQLite3}};Database={}\"\n",
            PG.replace('"', "\\\""),
            MARIA.replace('"', "\\\""),
            lite_path.display()
        ),
    )
    .unwrap();
    let engine = Engine::from_config_file(&config_path).await.unwrap();

    let local = SessionContext::new();
    for (table, query) in [
        ("orders", format!("SELECT * FROM pg.public.orders_{s}")),
        (
            "customers",
            format!("SELECT * FROM maria.ibarrow_test.customers_{s}"),
        ),
        ("regions", "SELECT * FROM lite.main.regions".to_string()),
    ] {
        let rows = collect(&engine, &query).await;
        let mem = MemTable::try_new(rows[0].schema(), vec![rows]).unwrap();
        local.register_table(table, Arc::new(mem)).unwrap();
    }
    Federation {
        engine,
        local,
        suffix: s,
        pg,
        maria,
        _dir: dir,
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Federation {
    /// `query` written over `orders`, `customers`, `regions`, run federated and locally.
    async fn assert_same(&self, query: &str) -> String {
        let s = &self.suffix;
        let federated_sql = query
            .replace("orders", &format!("pg.public.orders_{s}"))
            .replace("customers", &format!("maria.ibarrow_test.customers_{s}"))
            .replace("regions", "lite.main.regions");
        let federated = collect(&self.engine, &federated_sql).await;
        let local = collect_local(&self.local, query).await;
        let shown = text(&federated);
        assert_eq!(shown, text(&local), "{federated_sql}");
        shown
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_database_sql_answers_like_local_sql() {
    let f = federation().await;
    let joined = f
        .assert_same(
            "SELECT r.name, count(*) AS n, sum(o.total) AS revenue FROM orders o \
             JOIN customers c ON o.customer_id = c.id JOIN regions r ON c.region_id = r.id \
             WHERE o.day >= DATE '2024-01-15' GROUP BY r.name ORDER BY r.name",
        )
        .await;
    assert!(joined.contains("north"), "{joined}");
    for query in [
        // IN / EXISTS / scalar subqueries whose tables live in other databases
        "SELECT id FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE region_id = 2) ORDER BY id",
        "SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.total > 90) ORDER BY c.id",
        "SELECT c.name, (SELECT max(o.total) FROM orders o WHERE o.customer_id = c.id) AS top FROM customers c ORDER BY c.name",
        // window functions, ORDER BY / LIMIT
        "SELECT id, customer_id, rank() OVER (PARTITION BY customer_id ORDER BY total DESC, id) AS r FROM orders ORDER BY customer_id, r, id LIMIT 40",
        "SELECT name FROM regions WHERE id NOT IN (SELECT region_id FROM customers WHERE id > 47) ORDER BY name",
    ] {
        f.assert_same(query).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogs_list_remote_tables_and_resolve_names() {
    let f = federation().await;
    let s = &f.suffix;
    let tables = collect(&f.engine, "SELECT table_catalog, table_schema, table_name FROM information_schema.tables WHERE table_catalog IN ('pg', 'maria', 'lite') ORDER BY 1, 2, 3").await;
    let listed = text(&tables);
    assert!(listed.contains(&format!("orders_{s}")), "{listed}");
    assert!(listed.contains(&format!("customers_{s}")), "{listed}");
    assert!(
        listed
            .lines()
            .any(|l| l.contains("lite") && l.contains("main") && l.contains("Regions")),
        "{listed}"
    );
    // Unquoted names are lower-cased by DataFusion and matched ignoring case remotely.
    let regions = collect(&f.engine, "SELECT count(*) AS n FROM lite.MAIN.regions").await;
    assert!(text(&regions).contains("| 4 |"), "{}", text(&regions));
    let show = collect(&f.engine, "SHOW TABLES").await;
    assert!(text(&show).contains("Regions"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_each_remote_statement_with_filters_and_partitions() {
    let f = federation().await;
    let s = &f.suffix;
    let plan = collect(
        &f.engine,
        &format!(
            "EXPLAIN SELECT c.name, o.total FROM pg.public.orders_{s} o \
             JOIN maria.ibarrow_test.customers_{s} c ON o.customer_id = c.id \
             WHERE o.total > 50 AND c.region_id = 3"
        ),
    )
    .await;
    let plan = text(&plan);
    assert!(
        plan.contains(r#"WHERE ("total" > 50.00)"#) || plan.contains(r#"WHERE ("total" > 50)"#),
        "{plan}"
    );
    assert!(plan.contains("WHERE (`region_id` = 3)"), "{plan}");
    assert!(
        plan.contains("source=pg, dialect=PostgreSQL, partitions=2"),
        "{plan}"
    );
    assert!(
        plan.contains(r#"("day" < DATE '2024-01-31')"#),
        "date ranges on the configured column: {plan}"
    );
    assert!(!plan.contains("Pwd=ibarrow"), "{plan}");

    let analyzed = collect(
        &f.engine,
        &format!("EXPLAIN ANALYZE SELECT id FROM pg.public.orders_{s} WHERE id <= 100"),
    )
    .await;
    let analyzed = text(&analyzed);
    let scan = analyzed
        .lines()
        .find(|l| l.contains("OdbcExec"))
        .unwrap_or_default();
    assert!(scan.contains("output_rows=100"), "{analyzed}");
    assert!(
        scan.contains("output_bytes=") && scan.contains("remote_time="),
        "{analyzed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tables_are_found_and_refresh_relists() {
    let f = federation().await;
    let s = &f.suffix;
    execute(
        &f.pg,
        &[
            format!("CREATE TABLE late_{s} (x INTEGER)"),
            format!("INSERT INTO late_{s} VALUES (42)"),
        ],
    );
    let found = collect(&f.engine, &format!("SELECT x FROM pg.public.late_{s}")).await;
    assert!(text(&found).contains("42"));
    let listed = |engine: Engine| async move {
        let rows = collect(
            &engine,
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'pg'",
        )
        .await;
        text(&rows)
    };
    assert!(
        !listed(f.engine.clone())
            .await
            .contains(&format!("late_{s}"))
    );
    f.engine.refresh("pg").await.unwrap();
    assert!(
        listed(f.engine.clone())
            .await
            .contains(&format!("late_{s}"))
    );
    execute(&f.pg, &[format!("DROP TABLE late_{s}")]);
    assert!(matches!(
        f.engine.refresh("nope").await,
        Err(Error::UnknownSource(..))
    ));
}

#[tokio::test]
async fn configuration_errors_name_what_is_wrong() {
    let err = Engine::from_config(
        ibarrow::Config::parse(
            "[sources.x]\ndsn = \"${IBARROW_SURELY_UNSET_VAR}\"",
            "t.toml",
        )
        .unwrap(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("IBARROW_SURELY_UNSET_VAR"),
        "{err}"
    );
    let err = ibarrow::Config::parse("[sources.x]\nconnection_strin = \"\"", "t.toml").unwrap_err();
    assert!(err.to_string().contains("connection_strin"), "{err}");
}

#[test]
fn the_engine_is_send_sync_and_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<Engine>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_passes_native_sql_through_as_a_table() {
    let f = federation().await;
    let s = &f.suffix;
    // PostgreSQL-only syntax (`::`, generate_series), joined with a MariaDB table.
    let rows = f
        .engine
        .sql(&format!(
            "SELECT q.n, c.name FROM query('pg', 'SELECT g::int AS n, g % 5 AS m FROM generate_series(1, 4) g') q \
             JOIN maria.ibarrow_test.customers_{s} c ON c.id = q.n ORDER BY q.n"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let shown = text(&rows);
    assert!(shown.contains("| 4 | customer 4 |"), "{shown}");
    // Constant expressions are folded before the call; anything else is refused.
    let folded = collect(
        &f.engine,
        "SELECT * FROM query('maria', 'SELECT ' || '1 AS one')",
    )
    .await;
    assert!(text(&folded).contains("| 1   |"), "{}", text(&folded));
    let err = f
        .engine
        .sql("SELECT * FROM query('maria', 42)")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("two string"), "{err}");
    let err = f
        .engine
        .sql("SELECT * FROM query('nope', 'SELECT 1')")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no source named `nope`"), "{err}");
    let err = f
        .engine
        .sql("SELECT * FROM query('lite', 'SELEC 1')")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("lite"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_queries_run_at_once_on_clones_of_one_engine() {
    let f = federation().await;
    let s = f.suffix.clone();
    let expected = text(
        &collect_local(
            &f.local,
            "SELECT count(*) AS n, sum(total) AS t FROM orders WHERE customer_id % 3 = 0",
        )
        .await,
    );
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let engine = f.engine.clone();
            let sql = format!(
                "SELECT count(*) AS n, sum(total) AS t FROM pg.public.orders_{s} WHERE customer_id % 3 = 0"
            );
            tokio::spawn(async move { text(&collect(&engine, &sql).await) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_source_aggregates_run_remotely_and_answer_like_datafusion() {
    let f = federation().await;
    let s = &f.suffix;
    let cases = [
        (
            "SELECT customer_id, count(*) AS n, sum(total) AS t, min(day) AS first, max(total) AS top, count(day) AS d FROM orders GROUP BY customer_id ORDER BY customer_id",
            format!("FROM \"public\".\"orders_{s}\""),
            true,
        ),
        (
            "SELECT region_id, count(*) AS n, count(name) AS named, min(id) AS low FROM customers WHERE id > 3 GROUP BY region_id ORDER BY region_id",
            format!("FROM `ibarrow_test`.`customers_{s}` WHERE (`id` > 3) GROUP BY `region_id`"),
            true,
        ),
        (
            "SELECT count(*) AS n, max(id) AS top FROM regions",
            "SELECT COUNT(*) AS \"c0\", MAX(\"id\") AS \"c1\" FROM \"Regions\"".to_string(),
            true,
        ),
        // Strings group through MariaDB's case-insensitive collation: stays local.
        (
            "SELECT name, count(*) AS n FROM customers GROUP BY name ORDER BY name",
            "GROUP BY".to_string(),
            false,
        ),
        // Decimal averages: the database sums and counts, DataFusion divides.
        (
            "SELECT customer_id, avg(total) AS a FROM orders GROUP BY customer_id ORDER BY customer_id",
            r#"SUM("total") AS "c1", COUNT("total") AS "c2""#.to_string(),
            true,
        ),
        // Exact decimal arithmetic inside SUM and AVG, also under a common subexpression.
        (
            "SELECT day, sum(total * 2 - total) AS s, avg(total * total) AS sq, sum(total * (1 - total)) AS c, sum(total * (1 - total) * 3) AS c3 FROM orders WHERE total > 10 GROUP BY day ORDER BY day",
            r#"COUNT(("total" * "total"))"#.to_string(),
            true,
        ),
        // HAVING runs in the database too, on the aggregate's result.
        (
            "SELECT customer_id, sum(total) AS t FROM orders GROUP BY customer_id HAVING sum(total) > 50 ORDER BY customer_id",
            r#") "ibarrow_scan" WHERE ("c1" > "#.to_string(),
            true,
        ),
        (
            "SELECT region_id, count(*) AS n FROM customers GROUP BY region_id HAVING count(*) >= 2 ORDER BY region_id",
            ") `ibarrow_scan` WHERE (`c1` >= 2)".to_string(),
            true,
        ),
        (
            "SELECT count(*) AS n, max(id) AS top FROM regions HAVING max(id) > 1",
            r#") "ibarrow_scan" WHERE ("c1" > 1)"#.to_string(),
            true,
        ),
        // Averages of integers are floating point in DataFusion: stay local.
        (
            "SELECT day, avg(customer_id) AS a FROM orders GROUP BY day ORDER BY day",
            "GROUP BY".to_string(),
            false,
        ),
    ];
    for (query, remote_fragment, pushed) in cases {
        f.assert_same(query).await;
        let federated_sql = query
            .replace("orders", &format!("pg.public.orders_{s}"))
            .replace("customers", &format!("maria.ibarrow_test.customers_{s}"))
            .replace("regions", "lite.main.regions");
        let plan = collect(&f.engine, &format!("EXPLAIN {federated_sql}")).await;
        let plan = text(&plan);
        let odbc_line = plan
            .lines()
            .filter(|l| l.contains("OdbcExec"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            odbc_line.contains(&remote_fragment),
            pushed,
            "{query}\n{plan}"
        );
        assert_eq!(!plan.contains("AggregateExec"), pushed, "{query}\n{plan}");
        // PostgreSQL's estimate says the groups are few: read whole, not through a cursor
        // (psqlODBC's; the other drivers have none to avoid).
        let on_postgres = pushed && query.contains("FROM orders");
        assert_eq!(
            odbc_line.contains("read_whole_below="),
            on_postgres,
            "{query}\n{plan}"
        );
        if on_postgres {
            let analyzed =
                text(&collect(&f.engine, &format!("EXPLAIN ANALYZE {federated_sql}")).await);
            assert!(analyzed.contains("read_whole=1"), "{query}\n{analyzed}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_pushdown_can_be_switched_off_per_source() {
    let f = federation().await;
    let lite = format!(
        "Driver={{SQLite3}};Database={};",
        f._dir.path().join("crm.sqlite").display()
    );
    let config = ibarrow::SourceConfig {
        connection_string: Some(lite),
        pushdown_aggregates: Some(false),
        ..ibarrow::SourceConfig::default()
    };
    let engine = Engine::builder()
        .source_config("lite", config)
        .build()
        .await
        .unwrap();
    let plan = collect(&engine, "EXPLAIN SELECT count(*) FROM lite.main.regions").await;
    let plan = text(&plan);
    assert!(
        plan.contains("AggregateExec") && !plan.contains("COUNT(*)"),
        "{plan}"
    );
}
