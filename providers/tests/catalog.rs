//! Catalog discovery, name resolution, hostile names and the errors users meet first.

mod common;

use common::{Profile, collect, run, session_with, table_text, unique_name};
use datafusion::datasource::TableProvider;
use datafusion::prelude::SessionContext;
use ibarrow_providers::{OdbcError, OdbcSource, SourceOptions};
use test_case::test_case;

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_schemas_tables_and_views(db: Profile) {
    let test_db = db.open();
    let table = unique_name("listed");
    let view = unique_name("listed_view");
    let _table = test_db.create_table(&table, "id INTEGER PRIMARY KEY, label VARCHAR(10)");
    test_db.execute(&[&format!(
        "CREATE VIEW {} AS SELECT id FROM {}",
        db.quote(&view),
        db.quote(&table)
    )]);
    let source = test_db.source().await;

    let schemas = source.schemas().await.unwrap();
    assert!(
        schemas.iter().any(|s| s == db.schema()),
        "{db:?}: {schemas:?}"
    );
    assert!(
        !schemas.iter().any(|s| s == "information_schema"),
        "{db:?}: {schemas:?}"
    );

    let tables = source.tables(db.schema()).await.unwrap();
    let kind_of = |name: &str| tables.iter().find(|t| t.name == name).map(|t| t.kind);
    assert_eq!(
        kind_of(&table),
        Some(ibarrow_providers::discovery::TableKind::Table)
    );
    assert_eq!(
        kind_of(&view),
        Some(ibarrow_providers::discovery::TableKind::View)
    );

    let provider = source.table(db.schema(), &table).await.unwrap();
    assert_eq!(provider.primary_key(), ["id".to_string()]);
    let view_provider = source.table(db.schema(), &view).await.unwrap();
    assert!(view_provider.primary_key().is_empty());
    test_db.execute(&[&format!("DROP VIEW {}", db.quote(&view))]);
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_unquoted_names_ignoring_case(db: Profile) {
    let test_db = db.open();
    let name = format!("Mixed{}", unique_name("Case"));
    let columns = format!(
        "{} INTEGER, {} VARCHAR(10)",
        db.quote("Id"),
        db.quote("Label")
    );
    let _table = test_db.create_table(&name, &columns);
    test_db.execute(&[&format!(
        "INSERT INTO {} VALUES (1, 'one')",
        db.quote(&name)
    )]);
    let source = test_db.source().await;

    let table = source
        .table(&db.schema().to_uppercase(), &name.to_lowercase())
        .await
        .unwrap();
    assert_eq!(table.remote_table().name, name);
    let ctx = SessionContext::new();
    ctx.register_table("mixed", table).unwrap();
    let (batches, sql) = run(&ctx, r#"SELECT "Label" FROM mixed WHERE "Id" = 1"#).await;
    assert!(table_text(&batches).contains("one"), "{db:?}");
    assert!(sql[0].contains(&db.quote(&name)), "{db:?}: {sql:?}");
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_table_and_column_names_are_names(db: Profile) {
    let test_db = db.open();
    // Quotes of every dialect, a backslash, a comment opener, a statement separator.
    let name = format!("h\"q'b`]x\\;--/*{}", unique_name(""));
    let column = "c\"o'l`]\\ ;--";
    let _table = test_db.create_table(
        &name,
        &format!("{} INTEGER, other INTEGER", db.quote(column)),
    );
    test_db.execute(&[&format!("INSERT INTO {} VALUES (7, 8)", db.quote(&name))]);
    let source = test_db.source().await;
    let table = source.table(db.schema(), &name).await.unwrap();
    let fields: Vec<String> = table
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(fields, [column, "other"], "{db:?}");
    let ctx = SessionContext::new();
    ctx.register_table("hostile", table).unwrap();
    let query = format!(
        "SELECT \"{}\" AS v FROM hostile WHERE \"{}\" = 7",
        column.replace('"', "\"\""),
        column.replace('"', "\"\"")
    );
    let (batches, sql) = run(&ctx, &query).await;
    assert!(
        table_text(&batches).contains("| 7 |"),
        "{db:?}: {}",
        table_text(&batches)
    );
    assert!(sql[0].contains(" WHERE "), "{db:?}: {sql:?}");
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_lists_what_exists(db: Profile) {
    let test_db = db.open();
    let name = unique_name("present");
    let _table = test_db.create_table(&name, "id INTEGER");
    let source = test_db.source().await;
    let err = source
        .table(db.schema(), "no_such_table")
        .await
        .unwrap_err();
    assert!(matches!(err, OdbcError::TableNotFound { .. }), "{err}");
    assert!(err.to_string().contains(&name), "{err}");
    let err = source.table("no_such_schema", &name).await.unwrap_err();
    assert!(matches!(err, OdbcError::SchemaNotFound { .. }), "{err}");
}

#[tokio::test]
async fn missing_driver_says_how_to_install_one() {
    let err = OdbcSource::connect(
        "x",
        "Driver={No Such Driver 42};Pwd=hunter2;",
        SourceOptions::default(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, OdbcError::DriverNotInstalled { .. }),
        "{text}"
    );
    assert!(
        text.contains("PostgreSQL Unicode") && text.contains("odbcinst"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    // A known driver that is missing names its package.
    let err = OdbcSource::connect(
        "x",
        "Driver={PostgreSQL Unicode 99};Server=127.0.0.1;",
        SourceOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("apt-get install odbc-postgresql"),
        "{err}"
    );
}

#[tokio::test]
async fn failed_login_names_the_cause_but_not_the_password() {
    let conn = "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Uid=ibarrow;Pwd=wrong-s3cret;";
    let err = OdbcSource::connect("maria", conn, SourceOptions::default())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OdbcError::LoginFailed { .. }), "{text}");
    assert!(
        !text.contains("wrong-s3cret") && text.contains("Pwd=***"),
        "{text}"
    );
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_errors_and_debug_output_hold_no_password(db: Profile) {
    const SECRET: &str = "very-secret-pw";
    let test_db = db.open();
    let name = unique_name("secret");
    let _table = test_db.create_table(&name, "id INTEGER");
    let connection_string = match db {
        // The local PostgreSQL trusts its clients and SQLite has no login: any password works.
        Profile::Postgres | Profile::Sqlite => format!(
            "{}Pwd={SECRET};",
            test_db.connection_string.replace("Pwd=ibarrow;", "")
        ),
        Profile::MariaDb => {
            test_db.execute(&[
                &format!("CREATE USER IF NOT EXISTS 'ibarrow_secret'@'127.0.0.1' IDENTIFIED BY '{SECRET}'"),
                "GRANT SELECT ON ibarrow_test.* TO 'ibarrow_secret'@'127.0.0.1'",
            ]);
            test_db.connection_string.replace(
                "Uid=ibarrow;Pwd=ibarrow;",
                &format!("Uid=ibarrow_secret;Pwd={SECRET};"),
            )
        }
    };
    assert!(connection_string.contains(SECRET));
    let source = OdbcSource::connect("src", &connection_string, SourceOptions::default())
        .await
        .unwrap();
    let ctx = session_with(&source, db.schema(), &name).await;
    let explain = collect(&ctx, "EXPLAIN VERBOSE SELECT * FROM t WHERE id = 1").await;
    // A failing remote statement: the table disappears after planning.
    let plan = ctx.sql("SELECT * FROM t").await.unwrap();
    drop(_table);
    let failure = plan.collect().await.unwrap_err();
    let shown = format!(
        "{}\n{source:?}\n{failure}\n{failure:?}",
        table_text(&explain)
    );
    assert!(
        shown.contains("OdbcExec") && shown.contains("Pwd=***"),
        "{shown}"
    );
    assert!(!shown.contains(SECRET), "{db:?}: {shown}");
}
