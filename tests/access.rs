//! Access control on PostgreSQL, MariaDB and SQLite through their ODBC drivers: denied tables
//! and columns however a statement reaches them, masked values, row filters pushed into the
//! remote SQL, listings that show only what a user may read, native SQL refused without the
//! grant, a reloaded policy, and the audit log of allowed and denied statements. Expected
//! values come from the rows the test inserts.

#[path = "../providers/tests/common/mod.rs"]
mod common;

use common::{Profile, TestDb};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::record_batch::RecordBatch;
use ibarrow::{Config, Engine, Session};
use test_case::test_case;

/// id, name, email, ssn, region: the generator of the customers table.
fn customer_rows() -> Vec<(i64, String, String, String, &'static str)> {
    (1..=12)
        .map(|id| {
            (
                id,
                format!("name{id}"),
                format!("user{id}@example{}.org", id % 3),
                format!("SSN-{id:04}-{}", id * 7919 % 1000),
                ["EU", "US", "APAC"][id as usize % 3],
            )
        })
        .collect()
}

struct Fixture {
    db: TestDb,
    profile: Profile,
    customers: String,
    orders: String,
}

/// The tables go when the test ends, also when it fails: other suites list these schemas.
impl Drop for Fixture {
    fn drop(&mut self) {
        let (c, o) = (
            self.profile.quote(&self.customers),
            self.profile.quote(&self.orders),
        );
        self.db.execute(&[
            &format!("DROP TABLE IF EXISTS {c}"),
            &format!("DROP TABLE IF EXISTS {o}"),
        ]);
    }
}

impl Fixture {
    fn create(profile: Profile) -> Self {
        let db = profile.open();
        let customers = common::unique_name("acl_customers");
        let orders = common::unique_name("acl_orders");
        let (c, o) = (profile.quote(&customers), profile.quote(&orders));
        let mut statements = vec![
            format!("DROP TABLE IF EXISTS {c}"),
            format!("DROP TABLE IF EXISTS {o}"),
            format!(
                "CREATE TABLE {c} (id INTEGER PRIMARY KEY, name VARCHAR(40), \
                 email VARCHAR(80), ssn VARCHAR(40), region VARCHAR(8))"
            ),
            format!(
                "CREATE TABLE {o} (id INTEGER PRIMARY KEY, customer_id INTEGER, amount INTEGER)"
            ),
        ];
        for (id, name, email, ssn, region) in customer_rows() {
            statements.push(format!(
                "INSERT INTO {c} VALUES ({id}, '{name}', '{email}', '{ssn}', '{region}')"
            ));
            statements.push(format!("INSERT INTO {o} VALUES ({id}, {id}, {})", id * 10));
        }
        let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
        db.execute(&refs);
        Fixture {
            db,
            profile,
            customers,
            orders,
        }
    }

    fn customers_table(&self) -> String {
        format!("db.{}.{}", self.profile.schema(), self.customers)
    }

    fn orders_table(&self) -> String {
        format!("db.{}.{}", self.profile.schema(), self.orders)
    }

    /// The configuration: `analyst` reads customers without ssn, email masked, EU rows of
    /// orders' customers; `admin` reads everything and may send native SQL.
    fn config(&self, extra: &str) -> Config {
        let schema = self.profile.schema();
        let text = format!(
            r#"
            [sources.db]
            connection_string = "{conn}"
            [roles.analyst]
            read = ["db.{schema}.{customers}"]
            deny_columns = ["db.{schema}.{customers}.ssn"]
            masks = {{ "db.{schema}.{customers}.email" = "regexp_replace(email, '^[^@]+', '***')" }}
            [roles.eu]
            read = ["db.{schema}.acl_customers*"]
            deny_columns = ["db.*.*.ssn"]
            row_filters = {{ "db.{schema}.{customers}" = "region = 'EU'" }}
            [roles.admin]
            read = ["db.*.*"]
            native_sql = true
            [users.alice]
            roles = ["analyst"]
            [users.erin]
            roles = ["eu"]
            [users.root]
            roles = ["admin", "analyst"]
            {extra}
            "#,
            conn = self.db.connection_string.replace('\\', "\\\\"),
            customers = self.customers,
        );
        Config::parse(&text, "test").unwrap()
    }

    async fn engine(&self, extra: &str) -> Engine {
        Engine::from_config(self.config(extra))
            .await
            .expect("engine")
    }
}

async fn rows(session: &Session, sql: &str) -> Result<Vec<RecordBatch>, ibarrow::Error> {
    let frame = session.sql(sql).await?;
    let mut stream = session.execute(frame, sql).await?;
    let mut batches = Vec::new();
    use futures::StreamExt;
    while let Some(batch) = stream.next().await {
        batches.push(batch.map_err(ibarrow::Error::from)?);
    }
    Ok(batches)
}

fn denial(result: Result<Vec<RecordBatch>, ibarrow::Error>, sql: &str) -> String {
    match result {
        Ok(_) => panic!("`{sql}` was allowed"),
        Err(err) => {
            assert_eq!(
                err.kind(),
                ibarrow::ErrorKind::AccessDenied,
                "`{sql}`: {err}"
            );
            err.to_string()
        }
    }
}

/// Every value of column `name` as text.
fn texts(batches: &[RecordBatch], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        let column = batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        let column =
            datafusion::arrow::compute::cast(column, &datafusion::arrow::datatypes::DataType::Utf8)
                .unwrap();
        let column = column.as_string::<i32>();
        out.extend((0..column.len()).map(|i| column.value(i).to_string()));
    }
    out.sort();
    out
}

fn all_text(batches: &[RecordBatch]) -> String {
    common::table_text(batches)
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_a_grant_is_denied_and_unlisted(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("").await;
    let alice = engine.session("alice", "test");
    let orders = fixture.orders_table();
    let sql = format!("SELECT * FROM {orders}");
    let message = denial(rows(&alice, &sql).await, &sql);
    assert!(
        message.contains(&fixture.orders)
            && message.contains("(analyst)")
            && message.contains("`read`"),
        "{message}"
    );
    // Joined, in a subquery or a CTE, the same.
    for sql in [
        format!(
            "SELECT c.id FROM {} c JOIN {orders} o ON o.customer_id = c.id",
            fixture.customers_table()
        ),
        format!(
            "SELECT id FROM {} WHERE id IN (SELECT customer_id FROM {orders})",
            fixture.customers_table()
        ),
        format!("WITH o AS (SELECT * FROM {orders}) SELECT count(*) FROM o"),
    ] {
        denial(rows(&alice, &sql).await, &sql);
    }
    // Listings name only the readable table.
    let listed = rows(&alice, "SELECT table_catalog, table_schema, table_name FROM information_schema.tables WHERE table_schema <> 'information_schema'").await.unwrap();
    assert_eq!(
        texts(&listed, "table_name"),
        vec![fixture.customers.clone()]
    );
    let shown = rows(&alice, "SHOW TABLES").await.unwrap();
    let names = texts(&shown, "table_name");
    assert!(
        names.contains(&fixture.customers) && !names.contains(&fixture.orders),
        "{names:?}"
    );
    let catalogs = alice.catalogs();
    assert_eq!(catalogs.catalog_names(), vec!["db".to_string()]);
    // A user without roles reads nothing, and is told so.
    let nobody = engine.session("mallory", "test");
    let sql = format!("SELECT id FROM {}", fixture.customers_table());
    let message = denial(rows(&nobody, &sql).await, &sql);
    assert!(
        message.contains("has no roles") && message.contains("[users.mallory]"),
        "{message}"
    );
    assert!(nobody.catalogs().catalog_names().is_empty());
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_column_is_refused_however_it_is_reached(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("").await;
    let alice = engine.session("alice", "test");
    let c = fixture.customers_table();
    for sql in [
        format!("SELECT * FROM {c}"),
        format!("SELECT ssn FROM {c}"),
        format!("SELECT upper(ssn) AS x FROM {c}"),
        format!("SELECT name FROM {c} WHERE ssn LIKE 'SSN-0001%'"),
        format!("SELECT x FROM (SELECT ssn AS x FROM {c}) t"),
        format!("WITH t AS (SELECT * FROM {c}) SELECT name FROM t"),
        format!("SELECT a.name FROM {c} a JOIN {c} b ON a.ssn = b.ssn"),
        format!("SELECT count(DISTINCT ssn) FROM {c}"),
        format!("SELECT name FROM {c} ORDER BY ssn"),
        format!("SELECT id FROM {c} WHERE id = (SELECT max(id) FROM {c} WHERE ssn > 'A')"),
    ] {
        let message = denial(rows(&alice, &sql).await, &sql);
        assert!(
            message.contains(&format!("{}.ssn", fixture.customers))
                && message.contains("deny_columns"),
            "`{sql}`: {message}"
        );
    }
    // Naming the other columns works; counting rows reads no column.
    let named = rows(&alice, &format!("SELECT id, name FROM {c} ORDER BY id"))
        .await
        .unwrap();
    assert_eq!(common::row_count(&named), customer_rows().len());
    let counted = rows(&alice, &format!("SELECT count(*) AS n FROM {c}"))
        .await
        .unwrap();
    assert_eq!(
        texts(&counted, "n"),
        vec![customer_rows().len().to_string()]
    );
    // information_schema leaves the column out.
    let columns = rows(
        &alice,
        &format!(
            "SELECT column_name FROM information_schema.columns WHERE table_name = '{}'",
            fixture.customers
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        texts(&columns, "column_name"),
        vec!["email", "id", "name", "region"]
    );
    // root holds a role that reads ssn plain, so it reads it.
    let root = engine.session("root", "test");
    let ssn = rows(&root, &format!("SELECT ssn FROM {c}")).await.unwrap();
    let mut expected: Vec<String> = customer_rows().into_iter().map(|r| r.3).collect();
    expected.sort();
    assert_eq!(texts(&ssn, "ssn"), expected);
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masks_replace_values_before_filters_and_joins_see_them(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("").await;
    let alice = engine.session("alice", "test");
    let c = fixture.customers_table();
    let masked = rows(&alice, &format!("SELECT email FROM {c}"))
        .await
        .unwrap();
    let mut expected: Vec<String> = customer_rows()
        .into_iter()
        .map(|r| format!("***{}", &r.2[r.2.find('@').unwrap()..]))
        .collect();
    expected.sort();
    assert_eq!(texts(&masked, "email"), expected);
    // A filter on the real value finds nothing: it sees the masked one.
    let probe = rows(
        &alice,
        &format!("SELECT id FROM {c} WHERE email = 'user1@example1.org'"),
    )
    .await
    .unwrap();
    assert_eq!(common::row_count(&probe), 0);
    let like = rows(
        &alice,
        &format!("SELECT id FROM {c} WHERE email LIKE '***@%'"),
    )
    .await
    .unwrap();
    assert_eq!(common::row_count(&like), customer_rows().len());
    // Grouping and joining on the masked column: three masked values, each a third of the rows.
    let grouped = rows(
        &alice,
        &format!("SELECT email, count(*) AS n FROM {c} GROUP BY email"),
    )
    .await
    .unwrap();
    assert_eq!(texts(&grouped, "n"), vec!["4", "4", "4"]);
    let joined = rows(
        &alice,
        &format!("SELECT a.id FROM {c} a JOIN {c} b ON a.email = b.email WHERE b.id = 1"),
    )
    .await
    .unwrap();
    assert_eq!(common::row_count(&joined), 4);
    // The masked value never reaches the client: no real address in any answer.
    let everything = rows(&alice, &format!("SELECT id, name, email, region FROM {c}"))
        .await
        .unwrap();
    assert!(
        !all_text(&everything).contains("user1@"),
        "{}",
        all_text(&everything)
    );
    // root's admin role reads email plain, which lifts analyst's mask.
    let root = engine.session("root", "test");
    let plain = rows(&root, &format!("SELECT email FROM {c} WHERE id = 1"))
        .await
        .unwrap();
    assert_eq!(texts(&plain, "email"), vec!["user1@example1.org"]);
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_filter_is_pushed_into_the_remote_sql(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("").await;
    let erin = engine.session("erin", "test");
    let c = fixture.customers_table();
    let sql = format!("SELECT id FROM {c}");
    let got = rows(&erin, &sql).await.unwrap();
    let mut expected: Vec<String> = customer_rows()
        .into_iter()
        .filter(|r| r.4 == "EU")
        .map(|r| r.0.to_string())
        .collect();
    expected.sort();
    assert_eq!(texts(&got, "id"), expected);
    let plan = erin
        .sql(&sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let remote = common::remote_sql(&plan).join("\n");
    // (MariaDB's rendering spells the literal in hex.)
    assert!(
        remote.contains("WHERE") && remote.contains("region"),
        "{remote}"
    );
    // The user's own filters combine with it.
    let narrowed = rows(&erin, &format!("SELECT id FROM {c} WHERE id > 6"))
        .await
        .unwrap();
    let expected: Vec<String> = expected
        .into_iter()
        .filter(|id| id.parse::<i64>().unwrap() > 6)
        .collect();
    assert_eq!(texts(&narrowed, "id"), expected);
}

#[test_case(Profile::Postgres; "postgres")]
#[test_case(Profile::MariaDb; "mariadb")]
#[test_case(Profile::Sqlite; "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_sql_needs_its_grant(profile: Profile) {
    let fixture = Fixture::create(profile);
    let engine = fixture.engine("").await;
    let native = format!("SELECT ssn FROM {}", profile.quote(&fixture.customers));
    let sql = format!("SELECT * FROM query('db', '{native}')");
    let alice = engine.session("alice", "test");
    let message = denial(rows(&alice, &sql).await, &sql);
    assert!(message.contains("native_sql"), "{message}");
    let err = match alice.native("db", &native).await {
        Ok(_) => panic!("native SQL ran without the grant"),
        Err(err) => err,
    };
    assert_eq!(err.kind(), ibarrow::ErrorKind::AccessDenied, "{err}");
    let root = engine.session("root", "test");
    let got = rows(&root, &sql).await.unwrap();
    assert_eq!(common::row_count(&got), customer_rows().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_policy_applies_to_the_next_statement() {
    let fixture = Fixture::create(Profile::Sqlite);
    let engine = fixture.engine("").await;
    let alice = engine.session("alice", "test");
    let sql = format!("SELECT count(*) AS n FROM {}", fixture.orders_table());
    denial(rows(&alice, &sql).await, &sql);
    let mut config = fixture.config("");
    config
        .roles
        .get_mut("analyst")
        .unwrap()
        .read
        .push(fixture.orders_table());
    engine.reload(&config).await.unwrap();
    let got = rows(&alice, &sql).await.unwrap();
    assert_eq!(texts(&got, "n"), vec![customer_rows().len().to_string()]);
    // A broken policy is refused and the one in force stays.
    let mut broken = config.clone();
    broken
        .users
        .get_mut("alice")
        .unwrap()
        .roles
        .push("nonexistent".into());
    let err = engine.reload(&broken).await.unwrap_err().to_string();
    assert!(err.contains("nonexistent"), "{err}");
    assert!(rows(&alice, &sql).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_allowed_and_denied_statements() {
    let fixture = Fixture::create(Profile::Sqlite);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let engine = fixture
        .engine(&format!("[audit]\nfile = \"{}\"\n", path.display()))
        .await;
    let alice = engine
        .session("alice", "test")
        .at_ip("127.0.0.1".parse().unwrap());
    let c = fixture.customers_table();
    let allowed = format!("SELECT id, email FROM {c} WHERE name <> 'secret literal'");
    assert_eq!(
        common::row_count(&rows(&alice, &allowed).await.unwrap()),
        customer_rows().len()
    );
    let denied = format!("SELECT ssn FROM {c}");
    denial(rows(&alice, &denied).await, &denied);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let (ok, refused) = (&lines[0], &lines[1]);
    assert_eq!(ok["user"], "alice");
    assert_eq!(ok["roles"][0], "analyst");
    assert_eq!(ok["ip"], "127.0.0.1");
    assert_eq!(ok["outcome"], "ok");
    assert_eq!(ok["rows"], customer_rows().len() as u64);
    assert!(
        !ok["statement"].as_str().unwrap().contains("secret literal"),
        "{ok}"
    );
    assert_eq!(ok["tables"][0]["table"], c);
    let columns: Vec<&str> = ok["tables"][0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(columns, ["id", "name", "email"]);
    assert!(
        ok["tables"][0]["masked"][0]
            .as_str()
            .unwrap()
            .starts_with("email"),
        "{ok}"
    );
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(refused["error_kind"], "access_denied");
    assert!(
        refused["denial"].as_str().unwrap().contains("ssn"),
        "{refused}"
    );
    match ibarrow::audit::verify(&[path]).unwrap() {
        ibarrow::audit::Verdict::Intact { lines, .. } => assert_eq!(lines, 2),
        broken => panic!("{broken:?}"),
    }
}

/// A property over generated statements: every statement that names the denied column (or
/// selects it through `*`) is refused, and no statement that runs returns one of its values or
/// sends a remote statement that reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plan_shape_reads_a_denied_column() {
    let fixture = Fixture::create(Profile::Sqlite);
    let engine = fixture.engine("").await;
    let alice = engine.session("alice", "test");
    let root = engine.session("root", "test");
    let c = fixture.customers_table();
    let selects = [
        "ssn",
        "name",
        "*",
        "ssn AS x",
        "upper(ssn) AS u",
        "name || ssn AS j",
        "count(ssn) AS n",
        "id",
        "email",
    ];
    let shapes = [
        "SELECT {s} FROM {c}",
        "SELECT * FROM (SELECT {s} FROM {c}) t",
        "WITH t AS (SELECT {s} FROM {c}) SELECT * FROM t",
        "SELECT {s} FROM {c} UNION ALL SELECT {s} FROM {c}",
        "SELECT {s} FROM {c} WHERE id IN (SELECT id FROM {c} WHERE ssn IS NOT NULL)",
        "SELECT {s} FROM {c} ORDER BY 1 LIMIT 3",
        "SELECT {s} FROM {c} a WHERE EXISTS (SELECT 1 FROM {c} b WHERE b.id = a.id)",
        "SELECT {s} FROM {c} GROUP BY ssn",
        "SELECT {s} FROM {c} WHERE CASE WHEN ssn > 'S' THEN true ELSE false END",
        "SELECT {s} FROM {c} a JOIN {c} b USING (id)",
    ];
    let mut ran = 0;
    for shape in shapes {
        for select in selects {
            let sql = shape.replace("{s}", select).replace("{c}", &c);
            let names_ssn = sql.contains("ssn") || select == "*";
            let plan = match alice.sql(&sql).await {
                Ok(frame) => frame.create_physical_plan().await,
                Err(err) => {
                    // Refused for access, or not a valid statement for anyone.
                    if names_ssn && err.kind() != ibarrow::ErrorKind::AccessDenied {
                        assert!(root.sql(&sql).await.is_err(), "`{sql}`: {err}");
                    }
                    continue;
                }
            };
            assert!(
                !names_ssn,
                "`{sql}` names the denied column and was planned"
            );
            let Ok(plan) = plan else { continue };
            for remote in common::remote_sql(&plan) {
                assert!(
                    !remote.to_lowercase().contains("ssn"),
                    "`{sql}` sent `{remote}`"
                );
            }
            if let Ok(batches) = rows(&alice, &sql).await {
                assert!(
                    !all_text(&batches).contains("SSN-"),
                    "`{sql}` returned a value"
                );
                ran += 1;
            }
        }
    }
    assert!(ran > 10, "only {ran} statements ran");
}
