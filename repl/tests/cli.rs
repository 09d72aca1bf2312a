//! The `ibarrow` binary driven as a process: batch mode in every format over PostgreSQL,
//! MariaDB and SQLite, exit codes and error messages, the demo, and the interactive prompt
//! under a pseudo-terminal.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use odbc_api::ConnectionOptions;

const PG: &str = "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=${IBARROW_CLI_TEST_PW};";
const MARIA: &str = "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;Uid=ibarrow;Pwd=${IBARROW_CLI_TEST_PW};";
const PASSWORD: &str = "ibarrow";

const ORDERS: i64 = 200;
const CUSTOMERS: i64 = 20;
const REGIONS: [&str; 4] = ["east", "north", "south", "west"];

fn execute(connection_string: &str, statements: &[String]) {
    let env = odbc_api::environment().expect("ODBC environment");
    let conn = env
        .connect_with_connection_string(connection_string, ConnectionOptions::default())
        .unwrap_or_else(|e| panic!("connect: {e}"));
    for sql in statements {
        conn.execute(sql, (), None)
            .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
    }
}

/// Orders in PostgreSQL, customers in MariaDB, regions in SQLite, and a config file naming
/// all three (the password comes from the environment).
struct Federation {
    dir: tempfile::TempDir,
    suffix: String,
}

impl Federation {
    fn new() -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let suffix = format!(
            "{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let s = &suffix;
        let orders: Vec<String> = (1..=ORDERS)
            .map(|i| {
                format!(
                    "({i}, {}, {}.{:02})",
                    1 + i % CUSTOMERS,
                    i * 5 / 4,
                    (i * 125) % 100
                )
            })
            .collect();
        execute(
            &PG.replace("${IBARROW_CLI_TEST_PW}", PASSWORD),
            &[
                format!("DROP TABLE IF EXISTS cli_orders_{s}"),
                format!(
                    "CREATE TABLE cli_orders_{s} (order_id INTEGER PRIMARY KEY, customer_id \
                     INTEGER NOT NULL, amount NUMERIC(10,2) NOT NULL)"
                ),
                format!("INSERT INTO cli_orders_{s} VALUES {}", orders.join(", ")),
            ],
        );
        let customers: Vec<String> = (1..=CUSTOMERS)
            .map(|i| format!("({i}, 'customer {i}', {})", 1 + i % 4))
            .collect();
        execute(
            &MARIA.replace("${IBARROW_CLI_TEST_PW}", PASSWORD),
            &[
                format!("DROP TABLE IF EXISTS cli_customers_{s}"),
                format!(
                    "CREATE TABLE cli_customers_{s} (customer_id INTEGER PRIMARY KEY, name \
                     VARCHAR(30) NOT NULL, region_id INTEGER NOT NULL)"
                ),
                format!(
                    "INSERT INTO cli_customers_{s} VALUES {}",
                    customers.join(", ")
                ),
            ],
        );
        let regions: Vec<String> = REGIONS
            .iter()
            .enumerate()
            .map(|(i, name)| format!("({}, '{name}')", i + 1))
            .collect();
        let lite = dir.path().join("crm.sqlite");
        execute(
            &format!("Driver={{SQLite3}};Database={};", lite.display()),
            &[
                "CREATE TABLE regions (region_id INTEGER PRIMARY KEY, name VARCHAR(10))".into(),
                format!("INSERT INTO regions VALUES {}", regions.join(", ")),
            ],
        );
        let config = format!(
            "[engine]\ntarget_partitions = 2\n\n[sources.pg]\nconnection_string = \"{PG}\"\n\n\
             [sources.maria]\nconnection_string = \"{MARIA}\"\n\n[sources.lite]\n\
             connection_string = \"Driver={{SQLite3}};Database={}\"\n",
            lite.display()
        );
        std::fs::write(dir.path().join("ibarrow.toml"), config).expect("write config");
        Self { dir, suffix }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("ibarrow.toml")
    }

    /// Orders and their total per region, across the three databases.
    fn region_query(&self) -> String {
        let s = &self.suffix;
        format!(
            "SELECT r.name AS region, count(*) AS orders, sum(o.amount) AS total \
             FROM pg.public.cli_orders_{s} o \
             JOIN maria.ibarrow_test.cli_customers_{s} c ON c.customer_id = o.customer_id \
             JOIN lite.main.regions r ON r.region_id = c.region_id \
             GROUP BY r.name ORDER BY r.name"
        )
    }

    /// The answer of [`Self::region_query`], computed here from the generated rows.
    fn expected_regions(&self) -> Vec<(String, i64, String)> {
        let mut per_region = vec![(0i64, 0i64); REGIONS.len()];
        for i in 1..=ORDERS {
            let customer = 1 + i % CUSTOMERS;
            let region = (customer % 4) as usize; // region_id = 1 + customer % 4
            per_region[region].0 += 1;
            per_region[region].1 += i * 125; // amount in cents
        }
        REGIONS
            .iter()
            .zip(per_region)
            .map(|(name, (count, cents))| {
                (
                    name.to_string(),
                    count,
                    format!("{}.{:02}", cents / 100, cents % 100),
                )
            })
            .collect()
    }

    /// `ibarrow --config <this> <args>`.
    fn run(&self, args: &[&str]) -> Output {
        ibarrow(
            &[
                &["--config", self.config().to_str().expect("UTF-8 path")],
                args,
            ]
            .concat(),
        )
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        let s = &self.suffix;
        execute(
            &PG.replace("${IBARROW_CLI_TEST_PW}", PASSWORD),
            &[format!("DROP TABLE IF EXISTS cli_orders_{s}")],
        );
        execute(
            &MARIA.replace("${IBARROW_CLI_TEST_PW}", PASSWORD),
            &[format!("DROP TABLE IF EXISTS cli_customers_{s}")],
        );
    }
}

fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ibarrow"));
    command
        .env("IBARROW_CLI_TEST_PW", PASSWORD)
        .env(
            "IBARROW_HISTORY",
            std::env::temp_dir().join("ibarrow-test-history"),
        )
        .stdin(Stdio::null());
    command
}

fn ibarrow(args: &[&str]) -> Output {
    command().args(args).output().expect("run ibarrow")
}

/// `ibarrow config check --no-connect --config <file>`.
fn check_without_connecting(file: &std::path::Path) -> Output {
    ibarrow(&[
        "config",
        "check",
        "--no-connect",
        "--config",
        file.to_str().expect("a UTF-8 path"),
    ])
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "ibarrow failed ({}): {}",
        output.status,
        stderr(output)
    );
}

#[test]
fn csv_over_three_databases() {
    let fed = Federation::new();
    let output = fed.run(&["-c", &fed.region_query(), "--format", "csv"]);
    assert_success(&output);
    let text = stdout(&output);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("region,orders,total"));
    let rows: Vec<(String, i64, String)> = lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 3, "{line}");
            (
                fields[0].to_string(),
                fields[1].parse().expect("count"),
                fields[2].to_string(),
            )
        })
        .collect();
    assert_eq!(rows, fed.expected_regions());
}

/// PREPARE once, EXECUTE with values cast to the declared type, DEALLOCATE: as in psql.
#[test]
fn prepare_execute_and_deallocate_as_in_psql() {
    let fed = Federation::new();
    let s = &fed.suffix;
    let script = format!(
        "PREPARE by_customer (INT) AS SELECT count(*) AS n, sum(amount) AS total \
         FROM pg.public.cli_orders_{s} WHERE customer_id = $1;\n\
         EXECUTE by_customer(3);\nEXECUTE by_customer('7');\n\
         DEALLOCATE by_customer;\nEXECUTE by_customer(3);"
    );
    let output = fed.run(&["-c", &script, "--format", "csv"]);
    // From the generator: order i belongs to customer 1 + i % CUSTOMERS, amount i * 1.25.
    let expected = |customer: i64| {
        let ids: Vec<i64> = (1..=ORDERS)
            .filter(|i| 1 + i % CUSTOMERS == customer)
            .collect();
        let cents: i64 = ids.iter().map(|i| i * 125).sum();
        format!(
            "n,total\n{},{}.{:02}\n",
            ids.len(),
            cents / 100,
            cents % 100
        )
    };
    assert_eq!(stdout(&output), format!("{}{}", expected(3), expected(7)));
    assert!(
        !output.status.success(),
        "EXECUTE after DEALLOCATE succeeded"
    );
    assert!(
        stderr(&output).contains("does not exist"),
        "{}",
        stderr(&output)
    );

    let refused = fed.run(&["-c", "EXECUTE by_customer((SELECT 1))"]);
    assert!(
        stderr(&refused).contains("literal values"),
        "{}",
        stderr(&refused)
    );
}

/// `ibarrow config check`: one line per source, exit status 0 when all answer, 1 when one does
/// not, 2 when the file is refused; `--profile` checks the sources the profile makes, and a
/// password read from a secret file works without ever being printed.
#[test]
fn config_check_reports_every_source_and_sets_the_exit_status() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("pg_password");
    std::fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let lite = dir.path().join("checked.sqlite");
    let text = format!(
        r#"
[sources.lite]
connection_string = "Driver={{SQLite3}};Database={lite}"
[sources.pg]
connection_string = "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=${{file:{secret}}};"
[profiles.broken.sources.pg]
connection_string = "Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port=1;Database=ibarrow_test;Uid=ibarrow;Pwd=hunter2;"
[profiles.broken.sources.gone]
connection_string = "Driver={{No Such ODBC Driver}};Database=x"
"#,
        lite = lite.display(),
        secret = secret.display()
    );
    let config = dir.path().join("checked.toml");
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().expect("UTF-8 path");

    let all = ibarrow(&["config", "check", "--config", config]);
    assert_success(&all);
    let report = stdout(&all);
    let line = |name: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}: {report}"))
            .to_string()
    };
    assert!(
        line("lite").contains(" ok ") && line("lite").contains("SQLite"),
        "{report}"
    );
    assert!(
        line("pg").contains(" ok ") && line("pg").contains("PostgreSQL"),
        "{report}"
    );
    assert!(report.contains("2 of 2 sources answer"), "{report}");

    let broken = ibarrow(&["config", "check", "--config", config, "--profile", "broken"]);
    assert_eq!(broken.status.code(), Some(1), "{}", stderr(&broken));
    let report = stdout(&broken);
    let lite = report
        .lines()
        .find(|l| l.starts_with("lite "))
        .unwrap_or_default();
    assert!(lite.contains(" ok "), "{report}");
    let pg = report
        .lines()
        .find(|l| l.starts_with("pg "))
        .unwrap_or_default();
    assert!(pg.contains("FAILED"), "{report}");
    let gone = report
        .lines()
        .find(|l| l.starts_with("gone "))
        .unwrap_or_default();
    assert!(
        gone.contains("FAILED") && gone.contains("No Such ODBC Driver"),
        "{report}"
    );
    assert!(
        report.contains("1 of 3 sources answer (profile broken)"),
        "{report}"
    );
    assert!(!report.contains("hunter2") && !stderr(&broken).contains("hunter2"));

    let unknown = ibarrow(&[
        "config",
        "check",
        "--config",
        config,
        "--profile",
        "staging",
    ]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("broken"), "{}", stderr(&unknown));
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[sources.lite]\nconection_string = \"x\"\n").unwrap();
    let refused = ibarrow(&["config", "check", "--config", typo.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("conection_string"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn json_and_ndjson_hold_the_same_rows() {
    let fed = Federation::new();
    let expected: Vec<serde_json::Value> = fed
        .expected_regions()
        .into_iter()
        .map(|(region, orders, total)| {
            serde_json::json!({"region": region, "orders": orders, "total": total.parse::<f64>().unwrap()})
        })
        .collect();
    let normalise = |mut v: serde_json::Value| {
        // Decimals may be written as numbers or as strings; compare their values.
        if let Some(total) = v.get_mut("total") {
            let value: f64 = match &*total {
                serde_json::Value::String(s) => s.parse().expect("a decimal"),
                other => other.as_f64().expect("a number"),
            };
            *total = serde_json::json!(value);
        }
        v
    };

    let output = fed.run(&["-c", &fed.region_query(), "--format", "json"]);
    assert_success(&output);
    let array: Vec<serde_json::Value> =
        serde_json::from_str(&stdout(&output)).expect("a JSON array");
    assert_eq!(
        array.into_iter().map(normalise).collect::<Vec<_>>(),
        expected
    );

    let output = fed.run(&["-c", &fed.region_query(), "--format", "ndjson"]);
    assert_success(&output);
    let rows: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| normalise(serde_json::from_str(line).expect("one JSON object per line")))
        .collect();
    assert_eq!(rows, expected);
}

#[test]
fn parquet_and_arrow_files_read_back() {
    use arrow::array::{AsArray, RecordBatch};
    let fed = Federation::new();
    let read_regions = |batches: Vec<RecordBatch>| -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let expected: Vec<String> = REGIONS.iter().map(|r| r.to_string()).collect();

    let parquet_path = fed.dir.path().join("out.parquet");
    let output = fed.run(&[
        "-c",
        &fed.region_query(),
        "--format",
        "parquet",
        "-o",
        parquet_path.to_str().unwrap(),
    ]);
    assert_success(&output);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        File::open(&parquet_path).unwrap(),
    )
    .expect("a Parquet file")
    .build()
    .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(batches[0].schema().field(2).name(), "total");
    assert_eq!(read_regions(batches), expected);

    let arrow_path = fed.dir.path().join("out.arrow");
    let output = fed.run(&[
        "-c",
        &fed.region_query(),
        "--format",
        "arrow",
        "-o",
        arrow_path.to_str().unwrap(),
    ]);
    assert_success(&output);
    let reader = arrow::ipc::reader::FileReader::try_new(File::open(&arrow_path).unwrap(), None)
        .expect("an Arrow IPC file");
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    assert_eq!(read_regions(batches), expected);

    // Two results cannot share one Parquet file.
    let output = fed.run(&[
        "-c",
        "SELECT 1; SELECT 2",
        "--format",
        "parquet",
        "-o",
        parquet_path.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("one statement per output file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn table_format_shows_types_rows_and_count() {
    let fed = Federation::new();
    let output = fed.run(&["-c", &fed.region_query()]);
    assert_success(&output);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split('|').map(str::trim).collect::<Vec<_>>(),
        ["region", "orders", "total"]
    );
    assert_eq!(
        lines[1].split('|').map(str::trim).collect::<Vec<_>>()[1],
        "Int64"
    );
    let expected = fed.expected_regions();
    let first: Vec<&str> = lines[3].split('|').map(str::trim).collect();
    assert_eq!(
        first,
        [
            expected[0].0.as_str(),
            &expected[0].1.to_string(),
            &expected[0].2
        ]
    );
    assert_eq!(lines.last(), Some(&"(4 rows)"));

    let output = fed.run(&["-c", &fed.region_query(), "--max-rows", "1"]);
    assert!(
        stdout(&output).contains("... 3 more rows\n(4 rows)"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn a_failed_statement_sets_the_exit_status_and_the_rest_still_run() {
    let fed = Federation::new();
    let output = fed.run(&[
        "--format",
        "csv",
        "-c",
        "SELECT 1 AS a; SELECT * FROM pg.public.no_such_table; SELECT 2 AS b",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(stdout(&output), "a\n1\nb\n2\n");
    let errors = stderr(&output);
    assert!(
        errors.contains("ERROR:") && errors.contains("no_such_table"),
        "{errors}"
    );
}

#[test]
fn a_remote_error_names_the_source_and_the_sql() {
    let fed = Federation::new();
    let output = fed.run(&[
        "-c",
        "SELECT * FROM query('pg', 'SELECT broken FROM nowhere')",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(errors.contains("source `pg`"), "{errors}");
    assert!(errors.contains("SELECT broken FROM nowhere"), "{errors}");
    assert!(!errors.contains(&format!("Pwd={PASSWORD}")), "{errors}");
}

#[test]
fn a_failed_login_keeps_the_password_out_of_the_message() {
    let secret = "Wr0ng-S3cret-Pw";
    let output = ibarrow(&[
        "--source",
        &format!(
            "pg=Driver={{PostgreSQL Unicode}};Server=127.0.0.1;Port=5432;Database=ibarrow_test;\
             Uid=nobody_{};Pwd={secret};",
            std::process::id()
        ),
        "-c",
        "SELECT 1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let errors = stderr(&output);
    assert!(errors.contains("source `pg`"), "{errors}");
    assert!(!errors.contains(secret), "{errors}");
    assert!(!stdout(&output).contains(secret));
}

#[test]
fn statements_and_meta_commands_piped_on_stdin() {
    let fed = Federation::new();
    let mut child = command()
        .args([
            "--config",
            fed.config().to_str().unwrap(),
            "--format",
            "csv",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ibarrow");
    let script = format!(
        "-- a comment\n\\dt lite.*\nSELECT count(*) AS n\n  FROM pg.public.cli_orders_{};\n\\bogus\n",
        fed.suffix
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "\\bogus must fail: {}",
        stderr(&output)
    );
    assert_eq!(
        stdout(&output),
        format!("source,schema,table\nlite,main,regions\nn\n{ORDERS}\n")
    );
    assert!(stderr(&output).contains("unknown command `\\bogus`"));
}

#[test]
fn health_pings_every_source() {
    let fed = Federation::new();
    let output = fed.run(&["--format", "csv", "-c", "\\health"]);
    assert_success(&output);
    let text = stdout(&output);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("source,reachable,latency_ms,pool,breaker,error")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(names, ["lite", "maria", "pg"]);
    for row in &rows {
        assert_eq!(row[1], "yes", "{text}");
        assert!(row[2].parse::<f64>().is_ok(), "{text}");
        assert_eq!(row[4], "closed", "{text}");
    }
}

/// A source whose replica's port is closed: `\\health` and `\\sources` show a row per
/// endpoint, the dead one unreachable with its reason, and no password.
#[test]
fn health_and_sources_show_each_endpoint_of_a_source_with_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let primary = PG.replace("${IBARROW_CLI_TEST_PW}", PASSWORD);
    let dead = primary.replace("Port=5432", &format!("Port={dead_port}"));
    let config = dir.path().join("replicas.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.rep]\nconnection_string = \"{primary}\"\nreplicas = [\"{dead}\"]\n\
             connect_timeout_secs = 2\n"
        ),
    )
    .unwrap();
    let config = config.to_str().expect("a UTF-8 path");
    let output = ibarrow(&[
        "--config",
        config,
        "--format",
        "csv",
        "-c",
        "\\health",
        "-c",
        "\\sources",
    ]);
    assert_success(&output);
    let text = stdout(&output);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no row `{name}` in {text}"))
    };
    assert_eq!(row("rep primary")[1], "yes", "{text}");
    assert_eq!(row("rep replica1")[1], "no", "{text}");
    assert!(text.contains(&format!("Port={dead_port}")), "{text}");
    assert!(
        text.contains("Pwd=***") && !text.contains("Pwd=ibarrow"),
        "{text}"
    );
}

#[test]
fn unknown_config_keys_and_bad_flags_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[sources.x]\nconection_string = \"Driver={SQLite3};\"\n",
    )
    .unwrap();
    let output = ibarrow(&["--config", config.to_str().unwrap(), "-c", "SELECT 1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("conection_string"),
        "{}",
        stderr(&output)
    );

    let output = ibarrow(&["--source", "no-equals-sign", "-c", "SELECT 1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("NAME=CONNSTR"));

    let output = ibarrow(&["--format", "xml", "-c", "SELECT 1"]);
    assert_eq!(output.status.code(), Some(2));
}

/// The demo's suggested query, answered by ibarrow and by SQLite itself (both databases
/// attached to one connection).
#[test]
fn demo_join_matches_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let output = command()
        .env("IBARROW_DEMO_DIR", dir.path())
        .args([
            "--demo",
            "--format",
            "csv",
            "-c",
            ibarrow_repl::demo::FIRST_QUERY,
        ])
        .output()
        .unwrap();
    assert_success(&output);
    let ours: Vec<String> = stdout(&output)
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();

    let files = ibarrow_repl::demo::DemoFiles::in_dir(dir.path());
    let (shop, crm) = (files.shop, files.crm);
    let theirs = sqlite_rows(
        &shop,
        &format!("ATTACH DATABASE '{}' AS crm", crm.display()),
        "SELECT r.name, count(DISTINCT o.order_id), printf('%.2f', sum(l.quantity * l.unit_price)) \
         FROM order_lines l JOIN orders o ON o.order_id = l.order_id \
         JOIN crm.customers c ON c.customer_id = o.customer_id \
         JOIN crm.regions r ON r.region_id = c.region_id \
         WHERE o.status = 'delivered' GROUP BY r.name \
         ORDER BY sum(l.quantity * l.unit_price) DESC",
    );
    assert_eq!(ours.len(), 12);
    assert_eq!(ours, theirs);
    let lines: i64 = sqlite_rows(&shop, "SELECT 1", "SELECT count(*) FROM order_lines")[0]
        .parse()
        .unwrap();
    assert!(lines >= 100_000, "{lines} order lines");
}

/// `--user` runs as another user of the configuration only when the OS user's `act_as` allows
/// it; that user's roles apply and the audit log names both. `USER` in the environment does
/// not change who the OS user is.
#[test]
fn the_user_flag_needs_act_as_and_the_audit_log_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("acl.sqlite");
    execute(
        &format!("Driver={{SQLite3}};Database={};", db.display()),
        &[
            "CREATE TABLE open_t (id INTEGER, v TEXT)".to_string(),
            "CREATE TABLE secret_t (id INTEGER, v TEXT)".to_string(),
            "INSERT INTO open_t VALUES (1, 'public one'), (2, 'public two')".to_string(),
            "INSERT INTO secret_t VALUES (1, 'classified')".to_string(),
        ],
    );
    let who = Command::new("id").arg("-un").output().expect("run id -un");
    let login = String::from_utf8(who.stdout).unwrap().trim().to_string();
    let audit = dir.path().join("audit.jsonl");
    let config = dir.path().join("ibarrow.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[sources.lite]
connection_string = "Driver={{SQLite3}};Database={db}"
[roles.reader]
read = ["lite.main.open_t"]
[roles.admin]
read = ["*.*.*"]
[users.{login}]
roles = ["admin"]
act_as = ["ali*"]
[users.alice]
roles = ["reader"]
[users.bob]
roles = ["admin"]
[audit]
file = "{audit}"
"#,
            db = db.display(),
            audit = audit.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let run = |user: Option<&str>, sql: &str| {
        let mut command = command();
        command
            .env("USER", "alice")
            .args(["--config", config, "--format", "csv"]);
        if let Some(user) = user {
            command.args(["--user", user]);
        }
        command.args(["-c", sql]).output().expect("run ibarrow")
    };

    let secret = "SELECT v FROM lite.main.secret_t";
    let open = "SELECT v FROM lite.main.open_t ORDER BY id";
    let denied = run(Some("alice"), secret);
    assert_eq!(denied.status.code(), Some(1), "{}", stderr(&denied));
    assert!(
        stderr(&denied).contains("lite.main.secret_t") && !stdout(&denied).contains("classified"),
        "{}",
        stderr(&denied)
    );
    let allowed = run(Some("alice"), open);
    assert_success(&allowed);
    assert_eq!(stdout(&allowed), "v\npublic one\npublic two\n");
    let refused = run(Some("bob"), open);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let message = stderr(&refused);
    assert!(
        message.contains(&format!("`{login}` may not act as another user"))
            && message.contains(&format!("act_as = [\"bob\"] under [users.{login}]")),
        "{message}"
    );
    // USER=alice, no --user: the OS user's own (admin) grants.
    let own = run(None, secret);
    assert_success(&own);
    assert_eq!(stdout(&own), "v\nclassified\n");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let summary: Vec<(String, Option<String>, String)> = lines
        .iter()
        .map(|line| {
            (
                line["user"].as_str().unwrap().to_string(),
                line["opened_by"].as_str().map(str::to_string),
                line["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "alice".to_string(),
                Some(login.clone()),
                "refused".to_string()
            ),
            ("alice".to_string(), Some(login.clone()), "ok".to_string()),
            (login.clone(), None, "ok".to_string()),
        ]
    );
}

/// Rows of `query` on a SQLite file as comma-joined text, after running `setup`.
fn sqlite_rows(path: &Path, setup: &str, query: &str) -> Vec<String> {
    use odbc_api::{Cursor, ResultSetMetadata};
    let env = odbc_api::environment().unwrap();
    let conn = env
        .connect_with_connection_string(
            &format!("Driver={{SQLite3}};Database={};", path.display()),
            ConnectionOptions::default(),
        )
        .unwrap();
    conn.execute(setup, (), None).unwrap();
    let mut cursor = conn.execute(query, (), None).unwrap().unwrap();
    let columns = cursor.num_result_cols().unwrap() as u16;
    let mut rows = Vec::new();
    let mut buffer = Vec::new();
    while let Some(mut row) = cursor.next_row().unwrap() {
        let mut fields = Vec::new();
        for column in 1..=columns {
            row.get_text(column, &mut buffer).unwrap();
            fields.push(String::from_utf8_lossy(&buffer).into_owned());
        }
        rows.push(fields.join(","));
    }
    rows
}

mod interactive {
    use super::*;
    use rexpect::reader::Options;
    use rexpect::session::{PtySession, spawn_with_options};

    fn spawn_demo(dir: &Path) -> PtySession {
        // Create the demo first, so the prompt comes quickly.
        let output = command()
            .env("IBARROW_DEMO_DIR", dir)
            .args(["--demo", "-c", "SELECT 1"])
            .output()
            .unwrap();
        assert_success(&output);
        // Not `command()`: its standard input is no terminal.
        let mut command = Command::new(env!("CARGO_BIN_EXE_ibarrow"));
        command
            .env("IBARROW_DEMO_DIR", dir)
            .env("IBARROW_HISTORY", dir.join("history"))
            .env("TERM", "xterm")
            .arg("--demo");
        let options = Options::default()
            .timeout_ms(Some(30_000))
            .strip_ansi_escape_codes(true);
        let mut session = spawn_with_options(command, options).expect("spawn under a pty");
        session.exp_string("Try a join across both").unwrap();
        session.exp_string("ibarrow> ").unwrap();
        session
    }

    #[test]
    fn multi_line_statement_completion_and_meta_command() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = spawn_demo(dir.path());

        // A statement runs only once its `;` arrives.
        p.send_line("SELECT 40").unwrap();
        p.send_line("  + 2 AS answer;").unwrap();
        p.exp_regex(r"\n\s+42\s*\r?\n").unwrap();
        p.exp_string("(1 row").unwrap();

        // Tab completes a table name from the catalog, then a meta-command uses it.
        p.send("\\d shop.main.produ").unwrap();
        p.send("\t").unwrap();
        p.send_line("").unwrap();
        p.exp_string("primary key").unwrap();
        p.exp_string("unit_price").unwrap();
        p.exp_string("rows: about 500").unwrap();

        p.send_line("\\sources").unwrap();
        p.exp_string("crm").unwrap();
        p.send_line("\\q").unwrap();
        p.exp_eof().unwrap();
        let history = std::fs::read_to_string(dir.path().join("history")).unwrap();
        assert!(history.contains("SELECT 40"), "{history}");
    }

    /// `\reload` applies the file as it is now: a source added is there at once, and a file
    /// that is refused leaves the session as it was.
    #[test]
    fn reload_applies_the_configuration_file_as_it_is_now() {
        let dir = tempfile::tempdir().unwrap();
        let mut lite = Vec::new();
        for (name, rows) in [("one", 3), ("two", 5)] {
            let path = dir.path().join(format!("{name}.sqlite"));
            let values: Vec<String> = (1..=rows).map(|i| format!("({i})")).collect();
            execute(
                &format!("Driver={{SQLite3}};Database={};", path.display()),
                &[
                    "CREATE TABLE t (a INTEGER)".into(),
                    format!("INSERT INTO t VALUES {}", values.join(", ")),
                ],
            );
            lite.push(format!(
                "[sources.{name}]\nconnection_string = \"Driver={{SQLite3}};Database={}\"\n",
                path.display()
            ));
        }
        let config = dir.path().join("ibarrow.toml");
        std::fs::write(&config, &lite[0]).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ibarrow"));
        command
            .env("IBARROW_HISTORY", dir.path().join("history"))
            .env("TERM", "xterm")
            .args(["--config", config.to_str().unwrap()]);
        let options = Options::default()
            .timeout_ms(Some(30_000))
            .strip_ansi_escape_codes(true);
        let mut p = spawn_with_options(command, options).expect("spawn under a pty");
        p.exp_string("ibarrow> ").unwrap();
        p.send_line("SELECT count(*) * 100 AS n FROM one.main.t;")
            .unwrap();
        p.exp_regex(r"\n\s+300\s*\r?\n").unwrap();

        std::fs::write(&config, format!("{}{}", lite[0], lite[1])).unwrap();
        p.send_line("\\reload").unwrap();
        p.exp_string("reloaded: sources added: two").unwrap();
        p.send_line("SELECT count(*) * 100 AS n FROM two.main.t;")
            .unwrap();
        p.exp_regex(r"\n\s+500\s*\r?\n").unwrap();

        std::fs::write(&config, "[sources.one]\nconection_string = \"typo\"\n").unwrap();
        p.send_line("\\reload").unwrap();
        p.exp_string("not reloaded").unwrap();
        p.send_line("SELECT count(*) * 100 AS n FROM two.main.t;")
            .unwrap();
        p.exp_regex(r"\n\s+500\s*\r?\n").unwrap();
        p.send_line("\\q").unwrap();
        p.exp_eof().unwrap();
    }

    #[test]
    fn ctrl_c_cancels_a_running_query_and_keeps_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = spawn_demo(dir.path());
        // An endless remote statement: SQLite counts for ever.
        p.send_line(
            "SELECT count(*) FROM query('shop', 'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL \
             SELECT n + 1 FROM r) SELECT n FROM r');",
        )
        .unwrap();
        p.exp_string("rows fetched").unwrap();
        p.send_control('c').unwrap();
        p.exp_string("query cancelled").unwrap();
        p.exp_string("ibarrow> ").unwrap();

        // The session goes on, and the cancelled scan gave its connection back.
        let mut released = false;
        for _ in 0..20 {
            p.send_line("\\sources").unwrap();
            let (_, row) = p.exp_regex(r"shop\s+\|[^\n]*\n").unwrap();
            // source | database | connection | in_use | idle
            let fields: Vec<&str> = row.split('|').map(str::trim).collect();
            if fields.len() == 5 && fields[3] == "0" {
                released = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        assert!(released, "the cancelled scan still holds its connection");
        p.send_line("SELECT 6 * 7 AS answer;").unwrap();
        p.exp_regex(r"\n\s+42\s*\r?\n").unwrap();

        // Ctrl-C at an empty prompt ends the session.
        p.exp_string("ibarrow> ").unwrap();
        p.send_control('c').unwrap();
        p.exp_eof().unwrap();
    }
}

/// Fresh processes opening three sources of three drivers at once: the driver manager loads
/// the drivers one at a time, so none fails to start (it did, about one start in ten, when the
/// loads raced), and a connect error never calls a listed driver missing.
#[test]
fn fresh_processes_opening_three_drivers_at_once_all_start() {
    const STARTS: usize = 100;
    let fed = Federation::new();
    let sql = format!(
        "SELECT count(*) AS n FROM pg.public.cli_orders_{}",
        fed.suffix
    );
    let mut failures = Vec::new();
    for _ in 0..STARTS {
        let output = fed.run(&["--format", "csv", "-c", &sql]);
        if !output.status.success() || stdout(&output) != format!("n\n{ORDERS}\n") {
            failures.push(stderr(&output));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {STARTS} starts failed; first: {}",
        failures.len(),
        failures[0]
    );
}

/// Forwards TCP connections to `target` on threads of its own; after `freeze_after` bytes
/// from the server it forwards nothing more in either direction (a server gone silent while
/// rows stream). Counts the connections that are not PostgreSQL cancel requests.
struct FreezingProxy {
    port: u16,
    logins: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FreezingProxy {
    fn start(target: &'static str, freeze_after: usize) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let logins = Arc::new(AtomicUsize::new(0));
        let frozen = Arc::new(AtomicBool::new(false));
        let from_server = Arc::new(AtomicUsize::new(0));
        let (counted, flag) = (Arc::clone(&logins), Arc::clone(&frozen));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                let pipe = |mut from: std::net::TcpStream,
                            mut to: std::net::TcpStream,
                            server_side: bool| {
                    let (flag, counted, sent) = (
                        Arc::clone(&flag),
                        Arc::clone(&counted),
                        Arc::clone(&from_server),
                    );
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buffer = vec![0u8; 64 * 1024];
                        let mut first = true;
                        while let Ok(n) = from.read(&mut buffer) {
                            if n == 0 {
                                break;
                            }
                            // A cancel request: length 16, code 80877102.
                            let cancel = n >= 8 && buffer[..8] == [0, 0, 0, 16, 4, 210, 22, 46];
                            if !server_side && first && !cancel {
                                counted.fetch_add(1, Ordering::SeqCst);
                            }
                            first = false;
                            if flag.load(Ordering::SeqCst) {
                                continue;
                            }
                            if server_side && sent.fetch_add(n, Ordering::SeqCst) + n > freeze_after
                            {
                                flag.store(true, Ordering::SeqCst);
                                continue;
                            }
                            if to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                    });
                };
                let (Ok(client_copy), Ok(server_copy)) = (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                pipe(client, server_copy, false);
                pipe(server, client_copy, true);
            }
        });
        Self {
            port,
            logins,
            frozen,
        }
    }
}

/// A server that goes silent while rows stream, with `query_timeout_secs = 3`: the statement
/// fails at its deadline, the process exits a few seconds later (not when the TCP connection
/// dies), and the abandoned read is never tried again on a fresh connection.
#[test]
fn a_server_silent_mid_stream_frees_the_process_soon_after_the_deadline() {
    use std::sync::atomic::Ordering;
    let proxy = FreezingProxy::start("127.0.0.1:5432", 4 * 1024 * 1024);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("ibarrow.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.pg]\nconnection_string = \"Driver={{PostgreSQL Unicode}};Server=127.0.0.1;\
             Port={};Database=ibarrow_test;Uid=ibarrow;Pwd=${{IBARROW_CLI_TEST_PW}};\"\n\
             query_timeout_secs = 3\n",
            proxy.port
        ),
    )
    .expect("write config");
    // About 110 MB of rows: far more than the proxy forwards before it goes silent.
    let sql = "SELECT count(*) FROM query('pg', 'SELECT g, repeat(''x'', 100) AS pad \
               FROM generate_series(1, 1000000) AS g')";
    let started = std::time::Instant::now();
    let output = command()
        .args(["--config", config.to_str().expect("UTF-8 path"), "-c", sql])
        .output()
        .expect("run ibarrow");
    let elapsed = started.elapsed();
    let err = stderr(&output);
    assert!(
        proxy.frozen.load(Ordering::SeqCst),
        "never went silent: {err}"
    );
    assert!(!output.status.success(), "{err}");
    assert!(err.contains("did not finish within 3s"), "{err}");
    assert!(
        elapsed < std::time::Duration::from_secs(8),
        "the process took {elapsed:?} to exit"
    );
    assert_eq!(
        proxy.logins.load(Ordering::SeqCst),
        1,
        "the abandoned read was tried again on a new connection: {err}"
    );
}

/// `ibarrow demo --write-config` makes a configuration the other commands open, and `config
/// check --no-connect` validates a file without opening its sources.
#[test]
fn demo_config_and_checks_without_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("demo.toml");
    let output = command()
        .env("IBARROW_DEMO_DIR", dir.path().join("demo"))
        .args(["demo", "--write-config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&output);
    let output = ibarrow(&[
        "--config",
        config.to_str().unwrap(),
        "--format",
        "csv",
        "-c",
        "SELECT count(*) AS n FROM crm.main.regions",
    ]);
    assert_success(&output);
    let files = ibarrow_repl::demo::DemoFiles::in_dir(&dir.path().join("demo"));
    let expected = sqlite_rows(&files.crm, "SELECT 1", "SELECT count(*) FROM regions");
    assert_eq!(stdout(&output), format!("n\n{}\n", expected[0]));

    // A driver that is not installed is not looked for: nothing is opened.
    let offline = dir.path().join("offline.toml");
    std::fs::write(
        &offline,
        "[engine]\nlog_level = \"info\"\n[sources.far]\nconnection_string = \
         \"Driver={Not Installed};Server=db.invalid;Pwd=${env:IBARROW_CLI_TEST_PW}\"\n",
    )
    .unwrap();
    let output = check_without_connecting(&offline);
    assert_success(&output);
    let report = stdout(&output);
    assert!(
        report.contains("far") && report.contains("not opened"),
        "{report}"
    );
    assert!(!report.contains(PASSWORD), "{report}");

    // A secret that is missing fails its source (1); an unknown key fails the file (2).
    std::fs::write(
        &offline,
        "[sources.far]\nconnection_string = \"Driver={X};Pwd=${env:IBARROW_NOT_SET_ANYWHERE}\"\n",
    )
    .unwrap();
    let output = check_without_connecting(&offline);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("IBARROW_NOT_SET_ANYWHERE"),
        "{}",
        stdout(&output)
    );
    std::fs::write(&offline, "[engine]\nlog_levle = \"info\"\n").unwrap();
    let output = check_without_connecting(&offline);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("log_levle"), "{}", stderr(&output));
}

/// `--verbose` adds the error's kind and its causes to the message.
#[test]
fn verbose_errors_show_the_kind_and_the_causes() {
    let dir = tempfile::tempdir().unwrap();
    let lite = dir.path().join("x.sqlite");
    execute(
        &format!("Driver={{SQLite3}};Database={};", lite.display()),
        &["CREATE TABLE t (a INTEGER)".into()],
    );
    let source = format!("lite=Driver={{SQLite3}};Database={};", lite.display());
    let statement = "SELECT * FROM query('lite', 'SELECT nope FROM t')";
    let quiet = ibarrow(&["--source", &source, "-c", statement]);
    assert_eq!(quiet.status.code(), Some(1));
    assert!(!stderr(&quiet).contains("kind:"), "{}", stderr(&quiet));
    let verbose = ibarrow(&["--verbose", "--source", &source, "-c", statement]);
    assert_eq!(verbose.status.code(), Some(1));
    let errors = stderr(&verbose);
    assert!(
        errors.contains("kind: sql") && errors.contains("nope"),
        "{errors}"
    );
}
