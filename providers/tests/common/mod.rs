//! Test bed shared by the provider tests: one profile per database, reached through its real
//! ODBC driver. Connection strings come from the environment, with defaults for the local
//! servers that `scripts/test-services` prepares.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanVisitor, accept};
use datafusion::prelude::SessionContext;
use ibarrow_providers::{Dialect, OdbcExec, OdbcSource, SourceOptions};
use odbc_api::ConnectionOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Postgres,
    MariaDb,
    Sqlite,
}

pub const ALL: [Profile; 3] = [Profile::Postgres, Profile::MariaDb, Profile::Sqlite];

/// A database to test against; SQLite gets a fresh file per instance.
pub struct TestDb {
    pub db: Profile,
    pub connection_string: String,
    _dir: Option<tempfile::TempDir>,
}

impl Profile {
    pub fn open(self) -> TestDb {
        let (connection_string, dir) = match self {
            Profile::Postgres => (
                std::env::var("IBARROW_TEST_POSTGRES").unwrap_or_else(|_| {
                    "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
                }),
                None,
            ),
            Profile::MariaDb => (
                std::env::var("IBARROW_TEST_MARIADB").unwrap_or_else(|_| {
                    "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;Uid=ibarrow;Pwd=ibarrow;".into()
                }),
                None,
            ),
            Profile::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir for the SQLite test database");
                let path = dir.path().join("test.sqlite");
                (format!("Driver={{SQLite3}};Database={};", path.display()), Some(dir))
            }
        };
        TestDb {
            db: self,
            connection_string,
            _dir: dir,
        }
    }

    pub fn dialect(self) -> Dialect {
        match self {
            Profile::Postgres => Dialect::PostgreSql,
            Profile::MariaDb => Dialect::MySql,
            Profile::Sqlite => Dialect::Sqlite,
        }
    }

    /// The schema tests create their tables in, as users name it.
    pub fn schema(self) -> &'static str {
        match self {
            Profile::Postgres => "public",
            Profile::MariaDb => "ibarrow_test",
            Profile::Sqlite => "main",
        }
    }

    pub fn quote(self, ident: &str) -> String {
        self.dialect()
            .quote_identifier(ident)
            .expect("test identifiers have no NUL")
    }

    /// Spelling of common column types in each database's DDL.
    pub fn double(self) -> &'static str {
        match self {
            Profile::Postgres => "DOUBLE PRECISION",
            _ => "DOUBLE",
        }
    }

    /// The statement refreshing the statistics a table's row estimate comes from (SQLite's
    /// estimate is a count, always current).
    pub fn analyze(self, table: &str) -> Option<String> {
        match self {
            Profile::Postgres => Some(format!("ANALYZE {}", self.quote(table))),
            Profile::MariaDb => Some(format!("ANALYZE TABLE {}", self.quote(table))),
            Profile::Sqlite => None,
        }
    }

    /// A timestamp without time zone, to the microsecond.
    pub fn timestamp(self) -> &'static str {
        match self {
            Profile::Postgres => "TIMESTAMP(6)",
            Profile::MariaDb => "DATETIME(6)",
            Profile::Sqlite => "DATETIME",
        }
    }
}

/// A table name no other test (or concurrent test run) uses.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestDb {
    /// Runs statements directly through odbc-api (not through ibarrow), for set-up.
    pub fn execute(&self, statements: &[&str]) {
        let env = odbc_api::environment().expect("ODBC environment");
        let conn = env
            .connect_with_connection_string(&self.connection_string, ConnectionOptions::default())
            .unwrap_or_else(|e| panic!("connect to {:?}: {e}", self.db));
        for sql in statements {
            conn.execute(sql, (), None)
                .unwrap_or_else(|e| panic!("{:?}: `{sql}` failed: {e}", self.db));
        }
    }

    /// Runs one statement with a single text parameter (`?`), bound rather than spliced.
    pub fn execute_with_text(&self, sql: &str, text: Option<&str>) {
        use odbc_api::IntoParameter;
        let env = odbc_api::environment().expect("ODBC environment");
        let conn = env
            .connect_with_connection_string(&self.connection_string, ConnectionOptions::default())
            .unwrap_or_else(|e| panic!("connect to {:?}: {e}", self.db));
        conn.execute(sql, &text.into_parameter(), None)
            .unwrap_or_else(|e| panic!("{:?}: `{sql}` failed: {e}", self.db));
    }
    pub fn create_table(&self, name: &str, columns: &str) -> DropGuard<'_> {
        let quoted = self.db.quote(name);
        self.execute(&[
            &format!("DROP TABLE IF EXISTS {quoted}"),
            &format!("CREATE TABLE {quoted} ({columns})"),
        ]);
        DropGuard {
            db: self,
            name: quoted,
        }
    }

    pub async fn source(&self) -> Arc<OdbcSource> {
        self.source_with(SourceOptions::default()).await
    }

    pub async fn source_with(&self, options: SourceOptions) -> Arc<OdbcSource> {
        OdbcSource::connect(
            &format!("{:?}", self.db).to_lowercase(),
            &self.connection_string,
            options,
        )
        .await
        .unwrap_or_else(|e| panic!("connect {:?}: {e}", self.db))
    }
}

/// A table a test owns with its database: created under a unique name, dropped when the test
/// ends, also when it fails (other suites list these schemas).
pub struct OwnedTable {
    pub db: TestDb,
    pub name: String,
}

impl OwnedTable {
    /// `<prefix>_<unique>` with `columns`, filled by the statements `fill` makes for the
    /// quoted name.
    pub fn create(
        profile: Profile,
        prefix: &str,
        columns: &str,
        fill: impl FnOnce(&str) -> Vec<String>,
    ) -> Self {
        let db = profile.open();
        let name = unique_name(prefix);
        let quoted = profile.quote(&name);
        let mut statements = vec![
            format!("DROP TABLE IF EXISTS {quoted}"),
            format!("CREATE TABLE {quoted} ({columns})"),
        ];
        statements.extend(fill(&quoted));
        let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
        db.execute(&refs);
        OwnedTable { db, name }
    }

    pub fn profile(&self) -> Profile {
        self.db.db
    }

    pub fn quoted(&self) -> String {
        self.profile().quote(&self.name)
    }

    /// The table's name in an engine where the database is source `source`.
    pub fn in_source(&self, source: &str) -> String {
        format!("{source}.{}.{}", self.profile().schema(), self.name)
    }
}

impl Drop for OwnedTable {
    fn drop(&mut self) {
        let sql = format!("DROP TABLE IF EXISTS {}", self.quoted());
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.db.execute(&[&sql])));
    }
}

/// Drops a test table when the test ends, also when it fails.
pub struct DropGuard<'a> {
    db: &'a TestDb,
    name: String,
}

impl Drop for DropGuard<'_> {
    fn drop(&mut self) {
        let sql = format!("DROP TABLE IF EXISTS {}", self.name);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.db.execute(&[&sql])));
    }
}

/// A session in which `schema.table` of `source` is registered as `t`.
pub async fn session_with(source: &Arc<OdbcSource>, schema: &str, table: &str) -> SessionContext {
    let provider = source
        .table(schema, table)
        .await
        .unwrap_or_else(|e| panic!("table {schema}.{table}: {e}"));
    let ctx = SessionContext::new();
    ctx.register_table("t", provider).expect("register t");
    ctx
}

/// The batches of `sql`, or the error of planning or running it.
pub async fn try_collect(
    ctx: &SessionContext,
    sql: &str,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    ctx.sql(sql).await?.collect().await
}

/// The batches of `sql`; a failure fails the test, naming the query.
pub async fn collect(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    try_collect(ctx, sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {e}"))
}

/// The result of `sql` as a stream, not yet polled.
pub async fn stream(ctx: &SessionContext, sql: &str) -> SendableRecordBatchStream {
    let df = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
    df.execute_stream()
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {e}"))
}

pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// The remote statements of a physical plan, in plan order.
pub fn remote_sql(plan: &Arc<dyn ExecutionPlan>) -> Vec<String> {
    struct Collect(Vec<String>);
    impl ExecutionPlanVisitor for Collect {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, plan: &dyn ExecutionPlan) -> Result<bool, Self::Error> {
            if let Some(exec) = plan.downcast_ref::<OdbcExec>() {
                self.0.extend(exec.statements());
            }
            Ok(true)
        }
    }
    let mut collect = Collect(Vec::new());
    let _ = accept(plan.as_ref(), &mut collect);
    collect.0
}

/// Runs `sql`, returning its batches and the remote statements it sent.
pub async fn run(ctx: &SessionContext, sql: &str) -> (Vec<RecordBatch>, Vec<String>) {
    let df = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("planning `{sql}`: {e}"));
    let plan = df
        .create_physical_plan()
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
    let remote = remote_sql(&plan);
    let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx())
        .await
        .unwrap_or_else(|e| panic!("running `{sql}`: {e}"));
    (batches, remote)
}

pub fn table_text(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches)
        .expect("format batches")
        .to_string()
}

/// Texts of up to 24 pieces drawn from an alphabet chosen to break quoting.
pub fn hostile_texts(count: usize, seed: u64) -> Vec<String> {
    const PIECES: &[&str] = &[
        "'",
        "''",
        "\"",
        "\\",
        "\\'",
        ";",
        "--",
        "/*",
        "*/",
        "#",
        "\n",
        "\r\n",
        "\t",
        "%",
        "_",
        "$$",
        "`",
        "x",
        "DROP TABLE t",
        "') OR ('1'='1",
        "é",
        "漢",
        "😀",
        " ",
        "\\0",
        "?",
    ];
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = (next() % 25) as usize;
            (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect()
        })
        .collect()
}
