//! `[engine] memory_limit` on PostgreSQL, MariaDB and SQLite through their ODBC drivers: a sort
//! of more rows than the limit holds spills to disk and returns every row in order, and a hash
//! join whose build side cannot fit fails with an error that names the limit. Expected rows come
//! from the generator below, which the databases' own SQL reproduces.

#[path = "../providers/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use common::{OwnedTable, Profile};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::physical_plan::ExecutionPlan;
use futures::TryStreamExt;
use ibarrow::{Config, Engine, ErrorKind};
use test_case::test_case;

/// Rows of the table: id 1..=ROWS, k = id * 7919 mod ROWS (a permutation of 0..ROWS, so the
/// order by k is not the order of insertion), and 100 bytes of padding.
const ROWS: i64 = 300_000;
const LIMIT: &str = "24MB";
const JOIN_LIMIT: &str = "40MB";

fn expected_ids_by_k() -> Vec<i64> {
    let mut rows: Vec<(i64, i64)> = (1..=ROWS).map(|id| (id * 7919 % ROWS, id)).collect();
    rows.sort();
    rows.into_iter().map(|(_, id)| id).collect()
}

/// The generator as each database's SQL, into the quoted `table`.
fn fill(profile: Profile, table: &str) -> String {
    let pad = match profile {
        Profile::Sqlite => "replace(printf('%0100d', 0), '0', 'x')",
        _ => "repeat('x', 100)",
    };
    let rows = match profile {
        Profile::Postgres => {
            format!("SELECT g, g * 7919 % {ROWS}, {pad} FROM generate_series(1::bigint, {ROWS}) g")
        }
        Profile::MariaDb => format!("SELECT seq, seq * 7919 % {ROWS}, {pad} FROM seq_1_to_{ROWS}"),
        Profile::Sqlite => format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {ROWS}) \
             SELECT g, g * 7919 % {ROWS}, {pad} FROM s"
        ),
    };
    format!("INSERT INTO {table} {rows}")
}

struct Fixture {
    table: OwnedTable,
}

impl Fixture {
    fn create(profile: Profile) -> Self {
        let table = OwnedTable::create(
            profile,
            "mem_rows",
            "id BIGINT PRIMARY KEY, k BIGINT, pad VARCHAR(100)",
            |quoted| vec![fill(profile, quoted)],
        );
        Fixture { table }
    }

    /// An engine under the limit with the table reachable from two sources (`a` and `b`), so
    /// that a join between them runs in DataFusion rather than in the database. One target
    /// partition and one range per scan: one sort, whose share of the limit is known (each
    /// sort partition holds `sort_spill_reservation_bytes`, 10 MB, back for its merge).
    async fn engine(&self, limit: Option<&str>) -> Engine {
        let conn = self.table.db.connection_string.replace('\\', "\\\\");
        let limit = limit.map_or(String::new(), |l| format!("memory_limit = \"{l}\""));
        let text = format!(
            "[engine]\ntarget_partitions = 1\n{limit}\n[sources.a]\nconnection_string = \"{conn}\"\n\
             partitions = 1\n[sources.b]\nconnection_string = \"{conn}\"\npartitions = 1\n"
        );
        Engine::from_config(Config::parse(&text, "test").unwrap())
            .await
            .expect("engine")
    }

    fn table(&self, source: &str) -> String {
        self.table.in_source(source)
    }
}

fn spills(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let own = plan
        .metrics()
        .and_then(|metrics| metrics.spill_count())
        .unwrap_or(0);
    own + plan.children().into_iter().map(spills).sum::<usize>()
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sort_larger_than_the_limit_spills_and_keeps_every_row(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine(Some(LIMIT)).await;
    let session = engine.session("test", "memory");
    let sql = format!("SELECT id, pad FROM {} ORDER BY k", fixture.table("a"));
    let frame = session.sql(&sql).await.expect("plan");
    let query = session.physical_plan(frame).await.expect("physical plan");
    let plan = Arc::clone(query.plan());
    let batches: Vec<_> = session
        .execute_plan(query, &sql)
        .expect("run")
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{profile:?}: the sort failed under {LIMIT}: {e}"));
    let pad = "x".repeat(100);
    let mut ids: Vec<i64> = Vec::with_capacity(ROWS as usize);
    for batch in &batches {
        ids.extend(batch.column(0).as_primitive::<Int64Type>().values().iter());
        let pads = cast(batch.column(1), &DataType::Utf8).unwrap();
        assert!(
            pads.as_string::<i32>()
                .iter()
                .all(|p| p == Some(pad.as_str())),
            "{profile:?}: a padding value changed"
        );
    }
    assert!(
        ids == expected_ids_by_k(),
        "{profile:?}: rows lost or out of order"
    );
    assert!(
        spills(&plan) > 0,
        "{profile:?}: the sort did not spill under {LIMIT}"
    );
    let peak = engine.recent_queries()[0].peak_memory_bytes;
    assert!(
        peak <= 24_000_000,
        "{profile:?}: peak {peak} bytes over the limit"
    );
}

/// A hash join whose build side (about 40 MB) and scans cannot fit under a 40 MB limit: run
/// as planned, each partition a stream of its own (as Flight SQL endpoints are), its error
/// names the limit and says the build side does not spill; run as a statement of a session,
/// it runs again with sort-merge joins, which spill, and answers as without a limit.
#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_side_that_cannot_fit_falls_back_to_a_sort_merge_join(profile: Profile) {
    let fixture = Fixture::create(profile);
    let sql = format!(
        "SELECT count(*) AS n, max(x.pad || y.pad) AS m FROM {} x JOIN {} y ON x.k = y.k",
        fixture.table("a"),
        fixture.table("b")
    );
    let both_pads = "x".repeat(200);
    let answer = |batches: &[datafusion::arrow::array::RecordBatch]| {
        let m = cast(batches[0].column(1), &DataType::Utf8).unwrap();
        (
            batches[0].column(0).as_primitive::<Int64Type>().value(0),
            m.as_string::<i32>().value(0).to_string(),
        )
    };
    // Without a limit the join answers: every k matches once.
    let unlimited = fixture.engine(None).await.session("test", "memory");
    let batches = collect(&unlimited, &sql)
        .await
        .expect("the join without a limit");
    assert_eq!(answer(&batches), (ROWS, both_pads.clone()));

    // Room for a sort-merge join's two sorts and scans, not for the hash join's build side.
    let engine = fixture.engine(Some(JOIN_LIMIT)).await;
    let session = engine.session("test", "memory");
    // The hash join as planned, without the fallback (each partition as its own stream).
    let query = session
        .physical_plan(session.sql(&sql).await.expect("plan"))
        .await
        .expect("physical plan");
    assert!(
        format!("{:?}", query.plan()).contains("HashJoinExec"),
        "{profile:?}: not planned as a hash join"
    );
    let run = session.run_partitions(query, &sql).expect("run");
    let result: Result<Vec<_>, _> = match run.execute(0) {
        Ok(stream) => stream.try_collect().await.map_err(ibarrow::Error::from),
        Err(err) => Err(err),
    };
    drop(run);
    let err = result.expect_err("a build side of about 40 MB and the scans under a 40 MB limit");
    let message = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Memory, "{message}");
    assert!(
        message.contains("limit of 40.0 MB ([engine] memory_limit)")
            && message.contains("build side does not spill"),
        "{profile:?}: {message}"
    );

    // As a statement: the same join, again with sort-merge joins, answers under the limit.
    let batches = collect(&session, &sql)
        .await
        .unwrap_or_else(|e| panic!("{profile:?}: no sort-merge fallback under {JOIN_LIMIT}: {e}"));
    assert_eq!(answer(&batches), (ROWS, both_pads));
    let record = &engine.recent_queries()[0];
    assert_eq!(record.outcome, "ok");
    // DataFusion's operators also take some memory without asking (infallible grows).
    assert!(
        record.peak_memory_bytes <= 42_000_000,
        "{profile:?}: peak {} bytes over the limit",
        record.peak_memory_bytes
    );
}

/// A scan's fetch buffers are charged to the limit before the driver fills them: a text
/// column without a declared length gets `max_text_size` bytes per row for thousands of rows
/// (32 MB at the defaults), more than a 24 MB limit holds, so the scan fails before its
/// statement runs, naming the scan and the setting that shrinks them; a lookup that pins the
/// primary key or a pushed limit binds buffers for its few rows and fits; with a smaller
/// `max_text_size` the whole scan reads every row.
#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_buffers_are_charged_before_they_are_allocated(profile: Profile) {
    const NOTES: i64 = 1000;
    let rows = match profile {
        Profile::Postgres => {
            format!("SELECT g, 'note ' || g FROM generate_series(1::bigint, {NOTES}) g")
        }
        Profile::MariaDb => format!("SELECT seq, concat('note ', seq) FROM seq_1_to_{NOTES}"),
        Profile::Sqlite => format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {NOTES}) \
             SELECT g, 'note ' || g FROM s"
        ),
    };
    let table = OwnedTable::create(
        profile,
        "mem_notes",
        "id BIGINT PRIMARY KEY, note TEXT",
        |t| vec![format!("INSERT INTO {t} {rows}")],
    );
    let conn = table.db.connection_string.replace('\\', "\\\\");
    let engine = |max_text_size: &str| {
        let text = format!(
            "[engine]\nmemory_limit = \"{LIMIT}\"\n[sources.a]\nconnection_string = \"{conn}\"\n\
             partitions = 1\n{max_text_size}\n"
        );
        async move {
            Engine::from_config(Config::parse(&text, "test").unwrap())
                .await
                .expect("engine")
        }
    };
    let sql = format!("SELECT note FROM {}", table.in_source("a"));

    let limited = engine("").await;
    let result = collect(&limited.session("test", "memory"), &sql).await;
    let err = result.expect_err("32 MB of fetch buffers under a 24 MB limit");
    let message = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Memory, "{profile:?}: {message}");
    assert!(
        message.contains("OdbcExec[a]") && message.contains("max_text_size"),
        "{profile:?}: {message}"
    );

    // Statements that can return only a few rows get buffers for those rows: a lookup that
    // pins the primary key and a pushed limit fit under the same limit.
    let session = limited.session("test", "memory");
    for (filter, expected) in [
        ("WHERE id = 42", vec!["note 42"]),
        ("WHERE id IN (7, 8, 9)", vec!["note 7", "note 8", "note 9"]),
        // Any three rows; those of ids 1 to 3 are the only ones this filter leaves.
        ("WHERE id <= 3 LIMIT 3", vec!["note 1", "note 2", "note 3"]),
    ] {
        let sql = format!("SELECT note FROM {} {filter}", table.in_source("a"));
        let batches = collect(&session, &sql)
            .await
            .unwrap_or_else(|e| panic!("{profile:?} `{sql}` under {LIMIT}: {e}"));
        assert_eq!(sorted_texts(&batches), expected, "{profile:?} `{sql}`");
    }

    let smaller = engine("max_text_size = 1024").await;
    let batches = collect(&smaller.session("test", "memory"), &sql)
        .await
        .unwrap_or_else(|e| panic!("{profile:?}: 1 KB text buffers under {LIMIT}: {e}"));
    let notes = sorted_texts(&batches);
    let mut expected: Vec<String> = (1..=NOTES).map(|n| format!("note {n}")).collect();
    expected.sort();
    assert!(notes == expected, "{profile:?}: notes lost or changed");
}

/// Plans and runs `sql` in `session`: every batch, or the first error of planning or the run.
async fn collect(
    session: &ibarrow::Session,
    sql: &str,
) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>, ibarrow::Error> {
    let stream = session.stream(sql).await?;
    stream.try_collect().await.map_err(ibarrow::Error::from)
}

/// The first column's values of `batches` as text, sorted.
fn sorted_texts(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Vec<String> {
    let mut texts: Vec<String> = Vec::new();
    for batch in batches {
        let column = cast(batch.column(0), &DataType::Utf8).unwrap();
        texts.extend(column.as_string::<i32>().iter().map(|t| t.unwrap().into()));
    }
    texts.sort();
    texts
}
