//! Range-partitioned scans return exactly the rows of a single scan: nothing lost or doubled
//! at the boundaries, NULL and out-of-range keys included.

mod common;

use common::{Profile, collect, row_count, run, session_with, table_text, unique_name};
use ibarrow_providers::{RangePartitioning, SourceOptions};
use test_case::test_case;

fn split_in(partitions: usize) -> SourceOptions {
    SourceOptions {
        partitioning: RangePartitioning {
            column: None,
            partitions,
            min_rows: 0,
            automatic: false,
        },
        ..SourceOptions::default()
    }
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_scans_return_exactly_the_rows_of_one_scan(db: Profile) {
    let test_db = db.open();
    let name = unique_name("ranges");
    let _table = test_db.create_table(&name, "id INTEGER PRIMARY KEY, k INTEGER, day DATE");
    let quoted = db.quote(&name);
    let mut rows = Vec::new();
    for i in 1..=997 {
        // Keys cluster at the ends and repeat, so boundaries fall on shared values.
        let k = if i % 10 == 0 {
            "NULL".to_string()
        } else {
            ((i * 7919) % 211 - 105).to_string()
        };
        rows.push(format!(
            "({i}, {k}, '2024-{:02}-{:02}')",
            i % 12 + 1,
            i % 28 + 1
        ));
    }
    test_db.execute(&[&format!("INSERT INTO {quoted} VALUES {}", rows.join(", "))]);

    let single = test_db.source().await;
    let split = test_db.source_with(split_in(4)).await;
    let one = session_with(&single, db.schema(), &name).await;
    for column in [None, Some("k"), Some("day")] {
        let table = split
            .table_with_partition_column(db.schema(), &name, column)
            .await
            .unwrap();
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_table("t", table).unwrap();
        let query = "SELECT id, k, day FROM t ORDER BY id";
        let (parts, statements) = run(&ctx, query).await;
        assert_eq!(statements.len(), 4, "{db:?} {column:?}: {statements:?}");
        assert_eq!(row_count(&parts), 997, "{db:?} {column:?}");
        assert_eq!(
            table_text(&parts),
            table_text(&collect(&one, query).await),
            "{db:?} {column:?}"
        );
        // Filters combine with the ranges; a limit reads one range-free statement.
        let filtered = "SELECT id FROM t WHERE id > 500 ORDER BY id";
        assert_eq!(
            table_text(&collect(&ctx, filtered).await),
            table_text(&collect(&one, filtered).await)
        );
        let (_, limited) = run(&ctx, "SELECT id FROM t LIMIT 5").await;
        assert_eq!(limited.len(), 1, "{db:?}: {limited:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_each_range_statement() {
    let test_db = Profile::Postgres.open();
    let name = unique_name("explained");
    let _table = test_db.create_table(&name, "id INTEGER PRIMARY KEY");
    test_db.execute(&[&format!(
        "INSERT INTO {} SELECT generate_series(1, 100)",
        test_db.db.quote(&name)
    )]);
    let source = test_db.source_with(split_in(2)).await;
    let ctx = session_with(&source, "public", &name).await;
    let plan = table_text(&collect(&ctx, "EXPLAIN SELECT id FROM t WHERE id <> 7").await);
    assert!(plan.contains("partitions=2"), "{plan}");
    assert!(
        plan.contains(r#"WHERE ("id" <> 7) AND ("id" < 51)"#),
        "{plan}"
    );
    assert!(plan.contains(r#"("id" >= 51 OR "id" IS NULL)"#), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_tables_are_read_in_one_statement() {
    let test_db = Profile::Sqlite.open();
    let name = unique_name("small");
    let _table = test_db.create_table(&name, "id INTEGER PRIMARY KEY");
    test_db.execute(&[&format!(
        "INSERT INTO {} VALUES (1), (2), (3)",
        test_db.db.quote(&name)
    )]);
    let options = SourceOptions {
        partitioning: RangePartitioning {
            column: None,
            partitions: 4,
            min_rows: 1000,
            automatic: false,
        },
        ..SourceOptions::default()
    };
    let source = test_db.source_with(options).await;
    let table = source.table("main", &name).await.unwrap();
    assert_eq!(table.row_estimate(), Some(3));
    let ctx = datafusion::prelude::SessionContext::new();
    ctx.register_table("t", table).unwrap();
    let (_, statements) = run(&ctx, "SELECT id FROM t").await;
    assert_eq!(statements.len(), 1, "{statements:?}");
}
