//! Run-time filters on PostgreSQL, MariaDB and SQLite: a join across two databases hands the
//! keys of its small side to the scan of its large side, whose statement then reads only rows
//! that can match. Every answer must equal the one without run-time filters, and the large
//! side must send fewer rows.

#[path = "../providers/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use common::{Profile, TestDb, table_text, unique_name};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanVisitor, accept};
use ibarrow::{Engine, SourceConfig};
use ibarrow_providers::OdbcExec;
use test_case::test_case;

const FACT_ROWS: usize = 2000;

/// `facts` (large, in the database under test, range-partitioned) and `dims` (small, in
/// another database), and two engines over them: with and without run-time filters.
struct Setup<'a> {
    probe: &'a TestDb,
    build: &'a TestDb,
    filtered: Engine,
    unfiltered: Engine,
    facts: String,
    dims: String,
    _tables: Vec<common::DropGuard<'a>>,
}

/// What one query did: its rows, and the scan of `facts` — its rows sent and the condition
/// its statement carried.
struct Outcome {
    rows: String,
    fact_rows: usize,
    condition: Option<String>,
}

fn date(db: &TestDb, day: usize) -> String {
    match db.db {
        Profile::Sqlite => format!("'2024-01-{:02}'", 1 + day % 28),
        _ => format!("DATE '2024-01-{:02}'", 1 + day % 28),
    }
}

/// Inserts `rows` (value tuples) into `table`, 500 at a time, then has the database estimate
/// its rows: a side without an estimate is never chosen as a join's small side, while a side
/// estimated small enough is built from at once.
fn fill_and_analyze(db: &TestDb, table: &str, rows: &[String]) {
    let mut statements: Vec<String> = rows
        .chunks(500)
        .map(|chunk| {
            format!(
                "INSERT INTO {} VALUES {}",
                db.db.quote(table),
                chunk.join(", ")
            )
        })
        .collect();
    statements.extend(db.db.analyze(table));
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    db.execute(&statements);
}

async fn setup<'a>(probe: &'a TestDb, build: &'a TestDb) -> Setup<'a> {
    let (facts, dims) = (unique_name("rf_facts"), unique_name("rf_dims"));
    // MariaDB's text column in latin1: keys arrive as UTF-8 and must still match.
    let code_type = match probe.db {
        Profile::MariaDb => "VARCHAR(10) CHARACTER SET latin1",
        _ => "VARCHAR(10)",
    };
    // PostgreSQL's UUID arrives as text, but refuses text that is no UUID.
    let tag_type = match probe.db {
        Profile::Postgres => "UUID",
        _ => "VARCHAR(36)",
    };
    let facts_table = probe.create_table(
        &facts,
        &format!(
            "id INTEGER PRIMARY KEY, k INTEGER, code {code_type}, day DATE, amount DECIMAL(10,2), \
             tag {tag_type}"
        ),
    );
    let dims_table = build.create_table(
        &dims,
        "k INTEGER, code VARCHAR(10), day DATE, label VARCHAR(10)",
    );
    // Keys 0..399 five times each, every 50th NULL; codes that differ only in case, and one
    // that is not ASCII.
    let fact_rows: Vec<String> = (1..=FACT_ROWS)
        .map(|i| {
            let k = if i % 50 == 0 {
                "NULL".to_string()
            } else {
                (i % 400).to_string()
            };
            let code = ["ab", "AB", "cd", "é"][i % 4];
            format!(
                "({i}, {k}, '{code}', {}, {}.25, '{:08x}-0000-4000-8000-000000000000')",
                date(probe, i),
                i % 97,
                i % 100
            )
        })
        .collect();
    fill_and_analyze(probe, &facts, &fact_rows);
    // Keys 7, 14, …, 280; one key no fact has, a repeated key and a NULL key.
    let mut dim_rows: Vec<String> = (1..=40)
        .map(|i| {
            let code = ["zz", "ab", "cd"][i % 3];
            format!("({}, '{code}', {}, 'd{i}')", i * 7, date(build, i * 3))
        })
        .collect();
    dim_rows.push(format!("(1000, 'ab', {}, 'none')", date(build, 0)));
    dim_rows.push(format!("(7, 'zz', {}, 'dup')", date(build, 0)));
    dim_rows.push(format!("(NULL, 'é', {}, 'accent')", date(build, 0)));
    fill_and_analyze(build, &dims, &dim_rows);
    let engine = |runtime_filters: bool| {
        let probe_config = SourceConfig {
            connection_string: Some(probe.connection_string.clone()),
            partitions: Some(2),
            min_partition_rows: Some(0),
            runtime_filters: Some(runtime_filters),
            ..SourceConfig::default()
        };
        let build_config = SourceConfig {
            connection_string: Some(build.connection_string.clone()),
            ..SourceConfig::default()
        };
        Engine::builder()
            .source_config("probe", probe_config)
            .source_config("build", build_config)
            .build()
    };
    Setup {
        probe,
        build,
        filtered: engine(true).await.expect("engine with run-time filters"),
        unfiltered: engine(false)
            .await
            .expect("engine without run-time filters"),
        facts,
        dims,
        _tables: vec![facts_table, dims_table],
    }
}

/// The scan of `facts` in an executed plan: rows it sent, the conditions its partitions
/// added.
fn fact_scan(plan: &Arc<dyn ExecutionPlan>) -> (usize, Option<String>) {
    struct Find(Option<(usize, Option<String>)>);
    impl ExecutionPlanVisitor for Find {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, plan: &dyn ExecutionPlan) -> Result<bool, Self::Error> {
            if let Some(exec) = plan.downcast_ref::<OdbcExec>()
                && exec.source().name() == "probe"
            {
                let rows = exec
                    .metrics()
                    .and_then(|m| m.output_rows())
                    .unwrap_or_default();
                let sent = exec.runtime_conditions_sent();
                self.0 = Some((rows, (!sent.is_empty()).then(|| sent.join(" | "))));
            }
            Ok(true)
        }
    }
    let mut find = Find(None);
    let _ = accept(plan.as_ref(), &mut find);
    find.0.expect("the plan scans facts")
}

impl Setup<'_> {
    fn sql(&self, query: &str) -> String {
        query
            .replace(
                "facts",
                &format!("probe.{}.{}", self.probe.db.schema(), self.facts),
            )
            .replace(
                "dims",
                &format!("build.{}.{}", self.build.db.schema(), self.dims),
            )
    }

    async fn run(engine: &Engine, sql: &str) -> Outcome {
        let ctx = engine.context();
        let plan = ctx
            .sql(sql)
            .await
            .unwrap_or_else(|e| panic!("planning `{sql}`: {e}"))
            .create_physical_plan()
            .await
            .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
        let batches = datafusion::physical_plan::collect(Arc::clone(&plan), ctx.task_ctx())
            .await
            .unwrap_or_else(|e| panic!("running `{sql}`: {e}"));
        let (fact_rows, condition) = fact_scan(&plan);
        Outcome {
            rows: table_text(&batches),
            fact_rows,
            condition,
        }
    }

    /// Runs `query` with and without run-time filters; the answers must be equal and the
    /// unfiltered scan must read every fact.
    async fn check(&self, query: &str) -> Outcome {
        let sql = self.sql(query);
        let filtered = Self::run(&self.filtered, &sql).await;
        let unfiltered = Self::run(&self.unfiltered, &sql).await;
        assert_eq!(filtered.rows, unfiltered.rows, "{sql}");
        assert_eq!(unfiltered.fact_rows, FACT_ROWS, "{sql}");
        assert_eq!(unfiltered.condition, None, "{sql}");
        filtered
    }
}

/// A text literal as the dialect writes it (MariaDB: hexadecimal, marked UTF-8).
fn render_text(profile: Profile, text: &str) -> String {
    profile
        .dialect()
        .string_literal(text)
        .expect("a literal without NUL")
}

fn build_side_of(probe: Profile) -> Profile {
    match probe {
        Profile::Sqlite => Profile::Postgres,
        _ => Profile::Sqlite,
    }
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_send_the_keys_of_their_small_side_to_the_large_one(profile: Profile) {
    let (probe, build) = (profile.open(), build_side_of(profile).open());
    let setup = setup(&probe, &build).await;

    // Three keys (7, 14, 21; 7 twice, and a NULL key), five facts each: only those travel.
    let three_keys = "SELECT count(*) AS n, sum(f.id) AS ids, sum(f.amount) AS amount \
         FROM dims d JOIN facts f ON f.k = d.k \
         WHERE d.label IN ('d1', 'd2', 'd3', 'dup', 'accent')";
    let outcome = setup.check(three_keys).await;
    assert!(outcome.rows.contains("| 20 |"), "{}", outcome.rows);
    assert_eq!(outcome.fact_rows, 15);
    let condition = outcome.condition.expect("a key list was sent");
    let k = profile.quote("k");
    assert!(
        condition.contains(&format!("{k} IN (")) && !condition.contains("NULL"),
        "{condition}"
    );

    // The large side as a join pushed into its database (one statement, wrapped the same way).
    let outcome = setup
        .check(
            "SELECT count(*) AS n FROM dims d \
             JOIN (SELECT f.k, g.amount FROM facts f JOIN facts g ON f.id = g.id) x ON x.k = d.k \
             WHERE d.label IN ('d1', 'd2', 'd3')",
        )
        .await;
    assert!(outcome.rows.contains("| 15 |"), "{}", outcome.rows);
    assert_eq!(outcome.fact_rows, 15);

    // The build side's key that no fact has, and facts with NULL keys, change nothing; a LEFT
    // join keeps the unmatched dimension.
    let outcome = setup
        .check(
            "SELECT d.label, count(f.id) AS n FROM dims d LEFT JOIN facts f ON f.k = d.k \
             WHERE d.label IN ('d40', 'none') GROUP BY d.label ORDER BY d.label",
        )
        .await;
    assert!(
        outcome.rows.contains("| d40   | 5 |") && outcome.rows.contains("| none  | 0 |"),
        "{}",
        outcome.rows
    );
    assert_eq!(outcome.fact_rows, 5);

    // EXPLAIN ANALYZE shows the condition sent.
    let explained = table_text(
        &setup
            .filtered
            .sql(&setup.sql(
                "EXPLAIN ANALYZE SELECT f.id FROM dims d JOIN facts f ON f.k = d.k \
                 WHERE d.label = 'd5'",
            ))
            .await
            .expect("explain")
            .collect()
            .await
            .expect("explain runs"),
    );
    assert!(
        explained.contains("runtime_filter=(") && explained.contains(" IN (35)"),
        "{explained}"
    );

    // More keys than the list may hold: the key range alone is sent.
    setup
        .filtered
        .context()
        .sql("SET datafusion.optimizer.hash_join_inlist_pushdown_max_distinct_values = 0")
        .await
        .expect("set the list size");
    let outcome = setup.check(three_keys).await;
    let condition = outcome.condition.expect("a key range was sent");
    assert!(
        !condition.contains(" IN (") && condition.contains(&format!("{k} >= 7")),
        "{condition}"
    );
    // At most keys 7..=21, five facts each (each partition of the join sends its own range).
    assert!(
        (16..=75).contains(&outcome.fact_rows),
        "{} rows",
        outcome.fact_rows
    );
}

#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_date_keys_are_narrowed_only_where_no_match_is_lost(profile: Profile) {
    let (probe, build) = (profile.open(), build_side_of(profile).open());
    let setup = setup(&probe, &build).await;

    // 'ab' matches a quarter of the facts exactly. MariaDB's collation also sends the 'AB'
    // rows (it only ever matches more); the join drops them. SQLite gets no text keys.
    let outcome = setup
        .check(
            "SELECT count(*) AS n FROM dims d JOIN facts f ON f.code = d.code WHERE d.label = 'd1'",
        )
        .await;
    assert!(outcome.rows.contains("| 500 |"), "{}", outcome.rows);
    let expected_rows = match profile {
        Profile::Postgres => 500,
        Profile::MariaDb => 1000,
        Profile::Sqlite => FACT_ROWS,
    };
    assert_eq!(outcome.fact_rows, expected_rows);
    if profile == Profile::Sqlite {
        assert_eq!(outcome.condition, None);
    } else {
        assert!(
            outcome
                .condition
                .as_ref()
                .is_some_and(|c| c.contains(&format!("IN ({}", render_text(profile, "ab")))),
            "the code list is sent: {:?}",
            outcome.condition
        );
    }

    // A plain filter on it (pushed down as written) finds it too.
    let sql = setup.sql("SELECT id FROM facts WHERE code = 'é'");
    let outcome = Setup::run(&setup.filtered, &sql).await;
    assert_eq!(outcome.fact_rows, 500, "the filter runs in the database");

    // Text keys against PostgreSQL's UUID column: the database refuses `tag IN ('ab')`, so the
    // scan reads unnarrowed (and says so) rather than failing the query.
    let outcome = setup
        .check(
            "SELECT count(*) AS n FROM dims d JOIN facts f ON f.tag = d.code \
             WHERE d.label = 'd1'",
        )
        .await;
    assert!(outcome.rows.contains("| 0 |"), "{}", outcome.rows);
    let (expected_rows, sent) = match profile {
        Profile::MariaDb => (0, true),
        _ => (FACT_ROWS, false),
    };
    assert_eq!(outcome.fact_rows, expected_rows);
    assert_eq!(outcome.condition.is_some(), sent, "{:?}", outcome.condition);

    // A key that is not ASCII, against MariaDB's latin1 column too.
    let outcome = setup
        .check(
            "SELECT count(*) AS n FROM dims d JOIN facts f ON f.code = d.code \
             WHERE d.label = 'accent'",
        )
        .await;
    assert!(outcome.rows.contains("| 500 |"), "{}", outcome.rows);
    let expected_rows = if profile == Profile::Sqlite {
        FACT_ROWS
    } else {
        500
    };
    assert_eq!(outcome.fact_rows, expected_rows);

    // Dates: compared remotely on PostgreSQL and MariaDB; SQLite keeps them as text, so its
    // scan reads everything.
    let outcome = setup
        .check(
            "SELECT count(*) AS n, min(f.id) AS first FROM dims d JOIN facts f ON f.day = d.day \
             WHERE d.label = 'd2'",
        )
        .await;
    assert!(outcome.rows.contains("| 72 "), "{}", outcome.rows);
    if profile == Profile::Sqlite {
        assert_eq!(outcome.condition, None);
        assert_eq!(outcome.fact_rows, FACT_ROWS);
    } else {
        assert!(
            outcome
                .condition
                .is_some_and(|c| c.contains("DATE '2024-01-07'")),
            "the date list is sent"
        );
        assert_eq!(outcome.fact_rows, 72);
    }
}

/// A scan the plan starts before the join above it has read its build side — here `facts`,
/// itself the build side of a join with the larger `links`, whose partitions are merged and so
/// started at once — waits for that join's keys instead of reading every row.
#[test_case(Profile::Postgres ; "postgres")]
#[test_case(Profile::MariaDb ; "mariadb")]
#[test_case(Profile::Sqlite ; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_started_early_wait_for_the_keys_of_the_join_above(profile: Profile) {
    let (probe, build) = (profile.open(), build_side_of(profile).open());
    let setup = setup(&probe, &build).await;
    let links = unique_name("rf_links");
    let _links_table = build.create_table(&links, "fid INTEGER, weight INTEGER");
    let link_rows: Vec<String> = (0..5000)
        .map(|i| format!("({}, {})", 1 + i % FACT_ROWS, i % 3))
        .collect();
    fill_and_analyze(&build, &links, &link_rows);

    let query = "SELECT count(*) AS n, sum(l.weight) AS weight FROM links l \
         JOIN facts f ON l.fid = f.id JOIN dims d ON f.k = d.k \
         WHERE d.label IN ('d1', 'd2', 'd3')"
        .replace("links", &format!("build.{}.{links}", build.db.schema()));
    let outcome = setup.check(&query).await;
    // Keys 7, 14, 21: five facts each; nine of them have three links, six have two.
    assert!(outcome.rows.contains("| 39 "), "{}", outcome.rows);
    assert_eq!(outcome.fact_rows, 15, "{:?}", outcome.condition);
    assert!(
        outcome
            .condition
            .is_some_and(|c| c.contains(" IN (") && c.contains("21")),
        "the key list is sent"
    );

    // A recursive query runs its step again with the joins reset: each step's scan of `facts`
    // (the probe side, as written) must not send (or wait for) the previous step's keys.
    for engine in [&setup.filtered, &setup.unfiltered] {
        engine
            .context()
            .sql("SET datafusion.optimizer.join_reordering = false")
            .await
            .expect("keep the join order");
    }
    let chain = setup.sql(
        "WITH RECURSIVE chain(id, step) AS ( \
           SELECT id, 0 FROM facts WHERE id = 1 \
           UNION ALL \
           SELECT f.id, c.step + 1 FROM chain c JOIN facts f ON f.id = c.id + 1 WHERE c.step < 5) \
         SELECT count(*) AS n, max(id) AS last FROM chain",
    );
    // Without the reset each step would sit out the 30 s wait for a filter no join updates.
    let filtered = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        Setup::run(&setup.filtered, &chain),
    )
    .await
    .expect("the recursive steps do not wait for the first step's join");
    let unfiltered = Setup::run(&setup.unfiltered, &chain).await;
    assert_eq!(filtered.rows, unfiltered.rows);
    assert!(filtered.rows.contains("| 6 | 6    |"), "{}", filtered.rows);
}
