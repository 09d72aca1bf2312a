//! Scans hand the database's row estimate to DataFusion, so that hash joins build their
//! table from the smaller side whichever side the query names first.

mod common;

use common::{Profile, collect, table_text, unique_name};
use datafusion::common::stats::Precision;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::prelude::SessionContext;
use test_case::test_case;

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_joins_build_from_the_smaller_table(db: Profile) {
    let test_db = db.open();
    let big = unique_name("big");
    let small = unique_name("small");
    let _big = test_db.create_table(&big, "id INTEGER PRIMARY KEY, v INTEGER");
    let _small = test_db.create_table(&small, "id INTEGER PRIMARY KEY");
    let mut statements: Vec<String> = (0..10)
        .map(|chunk| {
            let rows: Vec<String> = (chunk * 200..(chunk + 1) * 200)
                .map(|i| format!("({i}, {})", i % 7))
                .collect();
            format!("INSERT INTO {} VALUES {}", db.quote(&big), rows.join(", "))
        })
        .collect();
    statements.push(format!(
        "INSERT INTO {} VALUES {}",
        db.quote(&small),
        (0..20)
            .map(|i| format!("({})", i * 100))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    statements.extend(db.analyze(&big));
    statements.extend(db.analyze(&small));
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    test_db.execute(&statements);

    let source = test_db.source().await;
    let ctx = SessionContext::new();
    for (alias, name) in [("big", &big), ("small", &small)] {
        let table = source.table(db.schema(), name).await.unwrap();
        ctx.register_table(alias, table).unwrap();
    }

    // The estimate reaches the physical plan; a filter sent along keeps a fifth of it
    // (DataFusion's default filter selectivity, 20%).
    let rows_of = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let plan = ctx
                .sql(sql)
                .await
                .unwrap()
                .create_physical_plan()
                .await
                .unwrap();
            let statistics = StatisticsContext::new()
                .compute(plan.as_ref(), &StatisticsArgs::new())
                .unwrap();
            match statistics.num_rows {
                Precision::Inexact(rows) => rows,
                other => panic!("{db:?}: `{sql}` has no row estimate: {other:?}"),
            }
        }
    };
    let all = rows_of("SELECT id FROM big").await;
    assert!((1500..=2500).contains(&all), "{db:?}: {all} rows estimated");
    let filtered = rows_of("SELECT id FROM big WHERE v = 3").await;
    assert_eq!(filtered, all / 5, "{db:?}: filtered estimate");

    for sql in [
        "SELECT count(*) FROM big JOIN small ON big.id = small.id",
        "SELECT count(*) FROM small JOIN big ON big.id = small.id",
    ] {
        let plan = table_text(&collect(&ctx, &format!("EXPLAIN {sql}")).await);
        let join = plan
            .find("HashJoinExec")
            .unwrap_or_else(|| panic!("{plan}"));
        let after_join = &plan[join..];
        let small_scan = after_join.find(small.as_str()).expect("small is scanned");
        let big_scan = after_join.find(big.as_str()).expect("big is scanned");
        assert!(
            small_scan < big_scan,
            "{db:?}: `{sql}` builds from the bigger table:\n{plan}"
        );
        let count = table_text(&collect(&ctx, sql).await);
        assert!(count.contains("| 20 "), "{db:?}: {count}");
    }
}
