//! Filter, projection and limit pushdown: the SQL sent is the SQL intended, and every answer
//! equals DataFusion evaluating the same query over the same rows fetched without pushdown.

mod common;

use std::sync::Arc;

use common::{Profile, TestDb, collect, row_count, run, session_with, table_text, unique_name};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use test_case::test_case;

/// Rows chosen to catch semantic differences: case variants, trailing blanks, non-ASCII,
/// injection attempts, backslashes, NULLs, negative numbers, boundary dates. The name is bound
/// as a parameter, so the stored text is exactly what is written here.
const ROWS: &[(&str, Option<&str>)] = &[
    ("1, ?, 1.5, 10.25, '2024-01-01'", Some("abc")),
    ("2, ?, -2.0, -3.50, '2024-01-02'", Some("ABC")),
    ("3, ?, 0.0, 0.00, '2023-12-31'", Some("Abc")),
    ("4, ?, 2.5, 99.99, '2024-02-29'", Some("abc ")),
    ("5, ?, NULL, 5.00, NULL", Some("é中文")),
    ("6, ?, 3.0, NULL, '2000-01-01'", None),
    ("7, ?, 1e10, 1.00, '2024-01-01'", Some("b")),
    ("8, ?, 4.0, 2.00, '1999-12-31'", Some(r"x\' OR 1=1 --")),
    ("9, ?, 5.0, 3.00, '2024-03-01'", Some(r"back\slash\")),
    ("10, ?, 6.0, 4.00, '2024-01-15'", Some("a%b_c")),
    (
        "11, ?, 7.0, 5.50, '2024-01-16'",
        Some("semi;colon /* c */ 'q'"),
    ),
];

fn insert_rows(test_db: &TestDb, table: &str) {
    let quoted = test_db.db.quote(table);
    for (values, name) in ROWS {
        test_db.execute_with_text(&format!("INSERT INTO {quoted} VALUES ({values})"), *name);
    }
}

/// The queries of the comparison, and whether each must push its WHERE clause.
const QUERIES: &[(&str, bool)] = &[
    ("SELECT id FROM t WHERE id = 3", true),
    ("SELECT id FROM t WHERE id <> 3", true),
    ("SELECT id, name FROM t WHERE id < 3 OR id > 8", true),
    ("SELECT id FROM t WHERE NOT (id >= 5)", true),
    ("SELECT id FROM t WHERE id IN (1, 2, 99)", true),
    ("SELECT id FROM t WHERE id NOT IN (1, 2)", true),
    ("SELECT id FROM t WHERE id BETWEEN 2 AND 5", true),
    ("SELECT id FROM t WHERE name IS NULL", true),
    (
        "SELECT id FROM t WHERE score IS NOT NULL AND amount IS NOT NULL",
        true,
    ),
    ("SELECT id, name FROM t WHERE name = 'abc'", true),
    ("SELECT id, name FROM t WHERE name <> 'abc'", true),
    ("SELECT id, name FROM t WHERE name = 'é中文'", true),
    (
        "SELECT id, name FROM t WHERE name = 'x\\'' OR 1=1 --'",
        true,
    ),
    ("SELECT id, name FROM t WHERE name = 'back\\slash\\'", true),
    (
        "SELECT id, name FROM t WHERE name = 'semi;colon /* c */ ''q'''",
        true,
    ),
    (
        "SELECT id, name FROM t WHERE name IN ('abc', 'b', 'zzz')",
        true,
    ),
    ("SELECT id, name FROM t WHERE name = 'abc '", false),
    ("SELECT id, name FROM t WHERE name < 'b'", false),
    ("SELECT id, name FROM t WHERE name LIKE 'a%'", false),
    ("SELECT id, name FROM t WHERE name LIKE '%中%'", false),
    ("SELECT id, name FROM t WHERE name NOT LIKE 'A%'", false),
    ("SELECT id FROM t WHERE score > 1.5", true),
    ("SELECT id FROM t WHERE score <= 0", true),
    ("SELECT id FROM t WHERE amount > 3.5", true),
    ("SELECT id FROM t WHERE amount = 5", true),
    ("SELECT id FROM t WHERE day >= DATE '2024-01-02'", true),
    (
        "SELECT id FROM t WHERE day = DATE '2024-01-01' OR day IS NULL",
        true,
    ),
    ("SELECT id FROM t WHERE id + 1 = 4", false),
    ("SELECT id FROM t WHERE upper(name) = 'ABC'", false),
    (
        "SELECT id FROM t WHERE id > 2 AND upper(name) = 'ABC'",
        true,
    ),
    ("SELECT count(*) FROM t WHERE id > 3", true),
];

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_filters_answer_like_datafusion(db: Profile) {
    let test_db = db.open();
    let name = unique_name("push");
    let _table = test_db.create_table(
        &name,
        &format!(
            "id INTEGER PRIMARY KEY, name VARCHAR(40), score {}, amount DECIMAL(10,2), day DATE",
            db.double()
        ),
    );
    insert_rows(&test_db, &name);

    let source = test_db.source().await;
    let remote = session_with(&source, db.schema(), &name).await;

    // The reference: the same rows, fetched once without any pushdown, evaluated in memory.
    let everything = collect(&remote, "SELECT * FROM t").await;
    assert_eq!(row_count(&everything), ROWS.len());
    let local = SessionContext::new();
    let mem = MemTable::try_new(everything[0].schema(), vec![everything]).unwrap();
    local.register_table("t", Arc::new(mem)).unwrap();

    let mut rendered_filters = 0;
    for (query, must_push) in QUERIES {
        let ordered = if query.contains("count(*)") {
            query.to_string()
        } else {
            format!("{query} ORDER BY id")
        };
        let (pushed, statements) = run(&remote, &ordered).await;
        let (reference, _) = run(&local, &ordered).await;
        assert_eq!(
            table_text(&pushed),
            table_text(&reference),
            "{db:?}: `{query}` differs from local evaluation; remote SQL: {statements:?}"
        );
        assert_eq!(statements.len(), 1, "{db:?}: `{query}`");
        let has_where = statements[0].contains(" WHERE ");
        if *must_push {
            assert!(
                has_where,
                "{db:?}: `{query}` should push its filter: {}",
                statements[0]
            );
        }
        rendered_filters += usize::from(has_where);
        assert!(
            !statements[0].contains("score") || query.contains("score"),
            "{db:?}: `{query}` fetches columns it does not need: {}",
            statements[0]
        );
    }
    assert!(rendered_filters >= QUERIES.iter().filter(|(_, p)| *p).count());
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_and_limit_reach_the_database(db: Profile) {
    let test_db = db.open();
    let name = unique_name("limit");
    let _table = test_db.create_table(&name, "id INTEGER, payload VARCHAR(100)");
    for i in 0..20 {
        test_db.execute(&[&format!(
            "INSERT INTO {} VALUES ({i}, 'wide value {i}')",
            db.quote(&name)
        )]);
    }
    let source = test_db.source().await;
    let ctx = session_with(&source, db.schema(), &name).await;

    let (batches, statements) = run(&ctx, "SELECT id FROM t LIMIT 3").await;
    assert_eq!(row_count(&batches), 3);
    let qualified = match db {
        Profile::Sqlite => db.quote(&name),
        _ => format!("{}.{}", db.quote(db.schema()), db.quote(&name)),
    };
    assert_eq!(
        statements,
        vec![format!(
            "SELECT {} FROM {qualified} LIMIT 3",
            db.quote("id")
        )]
    );

    // A filter that stays local must keep the limit local too.
    let (batches, statements) = run(&ctx, "SELECT id FROM t WHERE id % 2 = 1 LIMIT 3").await;
    assert_eq!(row_count(&batches), 3);
    assert!(!statements[0].contains("LIMIT"), "{}", statements[0]);

    // A pushed filter lets the limit go down with it.
    let (_, statements) = run(&ctx, "SELECT id FROM t WHERE id > 10 LIMIT 2").await;
    assert!(
        statements[0].contains("WHERE") && statements[0].ends_with("LIMIT 2"),
        "{}",
        statements[0]
    );

    // count(*) reads no column at all.
    let (batches, statements) = run(&ctx, "SELECT count(*) AS n FROM t").await;
    assert_eq!(table_text(&batches).matches("20").count(), 1);
    assert!(
        statements[0].starts_with("SELECT 1 FROM"),
        "{}",
        statements[0]
    );
}

/// A provider used on its own, outside the engine, pushes a same-source join (and the
/// aggregate above it) as one statement once its session has [`ibarrow_providers::install`];
/// a plain session runs the join in DataFusion. Both give the answer worked out by hand.
#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_provider_pushes_a_join_in_an_installed_session(db: Profile) {
    use datafusion::execution::session_state::SessionStateBuilder;

    let test_db = db.open();
    let (orders, customers) = (unique_name("orders"), unique_name("customers"));
    let _orders = test_db.create_table(&orders, "id BIGINT, customer BIGINT");
    let _customers = test_db.create_table(&customers, "id BIGINT, region BIGINT");
    // Orders 1..=12 of customer id % 4; customers 0, 1, 2 in region id % 2 (no customer 3).
    let order_rows: Vec<String> = (1..=12).map(|id| format!("({id}, {})", id % 4)).collect();
    let customer_rows: Vec<String> = (0..3).map(|id| format!("({id}, {})", id % 2)).collect();
    test_db.execute(&[
        &format!(
            "INSERT INTO {} VALUES {}",
            db.quote(&orders),
            order_rows.join(", ")
        ),
        &format!(
            "INSERT INTO {} VALUES {}",
            db.quote(&customers),
            customer_rows.join(", ")
        ),
    ]);
    let source = test_db.source().await;
    let installed = SessionContext::new_with_state(
        ibarrow_providers::install(SessionStateBuilder::new().with_default_features()).build(),
    );
    let plain = SessionContext::new();
    for ctx in [&installed, &plain] {
        for (name, table) in [("o", &orders), ("c", &customers)] {
            let provider = source.table(db.schema(), table).await.unwrap();
            ctx.register_table(name, provider).unwrap();
        }
    }
    let sql = "SELECT c.region, count(*) AS orders FROM o JOIN c ON o.customer = c.id \
               GROUP BY c.region ORDER BY c.region";
    // Region 0: customers 0 and 2, orders 2, 4, 6, 8, 10, 12; region 1: customer 1, orders
    // 1, 5, 9; orders 3, 7, 11 have no customer.
    let expected = "+--------+--------+\n\
                    | region | orders |\n\
                    +--------+--------+\n\
                    | 0      | 6      |\n\
                    | 1      | 3      |\n\
                    +--------+--------+";

    let (batches, statements) = run(&installed, sql).await;
    assert_eq!(table_text(&batches), expected, "{db:?}");
    assert!(
        statements.len() == 1 && statements[0].contains(" JOIN "),
        "{db:?}: the join should be one remote statement: {statements:?}"
    );

    let (batches, statements) = run(&plain, sql).await;
    assert_eq!(table_text(&batches), expected, "{db:?}");
    assert!(
        statements.len() == 2 && statements.iter().all(|s| !s.contains(" JOIN ")),
        "{db:?}: without install each table is scanned: {statements:?}"
    );
}
