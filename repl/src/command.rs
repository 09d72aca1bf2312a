//! psql-style meta-commands: `\sources`, `\dt`, `\d`, `\format`, `\o` and the rest.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use ibarrow::OdbcTable;

use crate::exec::{Outcome, Session, error_message};
use crate::print_format::{Format, Sink};
use crate::statement::{Item, split_script};

/// Name, arguments and one line of help for each command; `\help` prints this list.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "\\sources",
        "",
        "list the sources with their database and pool use",
    ),
    (
        "\\metrics",
        "",
        "query counters and durations (Prometheus text)",
    ),
    (
        "\\stats",
        "",
        "slowest statements, users, sources, cache hit rate, index advice",
    ),
    ("\\dn", "[source]", "list schemas"),
    (
        "\\dt",
        "[pattern]",
        "list tables; * and ? match, e.g. \\dt shop.*.order*",
    ),
    (
        "\\d",
        "<table>",
        "describe a table: columns, types, key, row estimate",
    ),
    ("\\timing", "[on|off]", "show how long each query took"),
    (
        "\\format",
        "<format>",
        "output format: table, csv, json, ndjson, parquet, arrow",
    ),
    (
        "\\explain",
        "<query>",
        "show the plan and the SQL sent to each database",
    ),
    (
        "\\refresh",
        "[source]",
        "list tables again and forget cached metadata",
    ),
    ("\\connect", "<name> <connstr>", "add an ODBC source"),
    (
        "\\reload",
        "",
        "read the configuration again: sources, roles, limits, log level",
    ),
    ("\\i", "<file>", "run the statements in a file"),
    (
        "\\o",
        "[file]",
        "send results to a file; without one, back to the screen",
    ),
    ("\\help", "", "this list (also \\?)"),
    ("\\q", "", "quit (also Ctrl-D)"),
];

pub fn help_text() -> String {
    let mut text = String::from("Statements end with `;`. Ctrl-C cancels a running query.\n");
    for (name, args, help) in COMMANDS {
        text.push_str(&format!("  {:<28} {help}\n", format!("{name} {args}")));
    }
    text.push_str(
        "PREPARE name [(type, ...)] AS <query with $1 ...>; EXECUTE name(value, ...); \
         DEALLOCATE name\n",
    );
    text
}

/// Runs one meta-command line (starting with `\`).
pub fn run(session: &mut Session, line: &str) -> Outcome {
    let line = line.trim();
    let (name, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let args = args.trim();
    match name {
        "\\q" | "\\quit" => Outcome::Quit,
        "\\help" | "\\?" | "\\h" => {
            print!("{}", help_text());
            Outcome::Done
        }
        "\\sources" => sources(session),
        "\\health" => health(session),
        "\\metrics" => {
            print!("{}", session.engine.metrics().to_prometheus());
            Outcome::Done
        }
        "\\stats" => stats(session),
        "\\dn" => schemas(session, args),
        "\\dt" => tables(session, args),
        "\\d" if args.is_empty() => tables(session, ""),
        "\\d" => describe(session, args),
        "\\timing" => timing(session, args),
        "\\format" => match args.parse::<Format>() {
            Ok(format) => {
                session.format = format;
                eprintln!("format is {format}");
                Outcome::Done
            }
            Err(message) => Outcome::Failed(message),
        },
        "\\explain" if args.is_empty() => Outcome::Failed("usage: \\explain <query>".into()),
        "\\explain" => session.run_sql(&format!("EXPLAIN {}", args.trim_end_matches(';'))),
        "\\refresh" => refresh(session, args),
        "\\connect" => connect(session, args),
        "\\reload" => reload(session),
        "\\i" | "\\include" if !args.is_empty() => include(session, Path::new(args)),
        "\\o" | "\\out" => output(session, args),
        _ => Outcome::Failed(format!(
            "unknown command `{name}` (or missing argument)\n{}",
            help_text()
        )),
    }
}

fn sources(session: &mut Session) -> Outcome {
    let mut rows: Vec<[String; 5]> = Vec::new();
    for name in session.engine.source_names() {
        let Ok(source) = session.engine.source(&name) else {
            continue;
        };
        // A source with replicas: a row per endpoint (`pg replica1`).
        let several = source.endpoints().len() > 1;
        for endpoint in source.endpoints() {
            let pool = endpoint.pool();
            rows.push([
                if several {
                    format!("{name} {}", endpoint.label())
                } else {
                    name.clone()
                },
                source.dbms_name().to_string(),
                pool.connection_string().redacted(),
                pool.in_use().to_string(),
                pool.idle_count().to_string(),
            ]);
        }
    }
    let batch = string_batch(
        &["source", "database", "connection", "in_use", "idle"],
        rows.iter().map(|r| r.to_vec()).collect(),
    );
    session.print_batch(batch)
}

/// `\stats`: the engine's insights (src/insights.rs), one table per part.
fn stats(session: &mut Session) -> Outcome {
    let engine = session.engine.clone();
    let insights = session
        .runtime
        .block_on(async move { engine.insights().await });
    let ms = |value: f64| format!("{value:.1}");
    let ranking = |title: &str, statements: &[ibarrow::insights::StatementInsight]| {
        string_batch(
            &[title, "runs", "errors", "total_ms", "p95_ms", "rows"],
            statements
                .iter()
                .map(|s| {
                    vec![
                        s.statement.clone(),
                        s.runs.to_string(),
                        s.errors.to_string(),
                        ms(s.total_ms),
                        ms(s.p95_ms),
                        s.rows.to_string(),
                    ]
                })
                .collect(),
        )
    };
    let by_total = ranking(
        "statement (by total time)",
        &insights.statements_by_total_time,
    );
    let by_p95 = ranking("statement (by p95)", &insights.statements_by_p95);
    let users = string_batch(
        &["user", "queries", "errors", "total_ms", "rows"],
        insights
            .users
            .iter()
            .map(|u| {
                vec![
                    u.user.clone(),
                    u.queries.to_string(),
                    u.errors.to_string(),
                    ms(u.total_ms),
                    u.rows.to_string(),
                ]
            })
            .collect(),
    );
    let sources = string_batch(
        &["source", "rows", "bytes", "driver_ms"],
        insights
            .sources
            .iter()
            .map(|s| {
                vec![
                    s.source.clone(),
                    s.rows.to_string(),
                    s.bytes.to_string(),
                    ms(s.driver_ms),
                ]
            })
            .collect(),
    );
    let advice = string_batch(
        &["index advice", "scans", "rows_returned", "table_rows"],
        insights
            .index_advice
            .iter()
            .map(|a| {
                vec![
                    format!("{}: {}", a.source, a.create_index),
                    a.scans.to_string(),
                    a.rows_returned.to_string(),
                    a.table_rows.to_string(),
                ]
            })
            .collect(),
    );
    for batch in [by_total, by_p95, users, sources, advice] {
        if let Outcome::Failed(message) = session.print_batch(batch) {
            return Outcome::Failed(message);
        }
    }
    let cache = &insights.cache;
    match cache.hit_rate {
        Some(rate) => println!(
            "result cache: {} hits, {} misses, {} bypassed ({:.0} % hits)",
            cache.hits,
            cache.misses,
            cache.bypassed,
            rate * 100.0
        ),
        None => println!("result cache: no cacheable query yet"),
    }
    Outcome::Done
}

fn health(session: &mut Session) -> Outcome {
    let engine = session.engine.clone();
    let checks = session
        .runtime
        .block_on(async move { engine.health(HEALTH_TIMEOUT).await });
    // A source with replicas gets a row per endpoint (`pg replica1`).
    let rows = checks
        .into_iter()
        .flat_map(|h| {
            if h.endpoints.len() < 2 {
                return vec![health_row(
                    h.source,
                    h.reachable,
                    h.latency,
                    (h.in_use, h.pool_max, h.held_too_long, h.idle),
                    h.breaker,
                    h.error,
                )];
            }
            h.endpoints
                .into_iter()
                .map(|e| {
                    // The endpoint's own notes before any error: its lag and its use.
                    let mut notes = Vec::new();
                    if let Some(lag) = e.lag {
                        notes.push(match lag {
                            ibarrow::LagReading::Behind(lag) => {
                                format!("lag {:.1}s", lag.as_secs_f64())
                            }
                            ibarrow::LagReading::NotReplicating => "not replicating".into(),
                            ibarrow::LagReading::Unknown => "lag unknown".into(),
                        });
                    }
                    notes.push(format!(
                        "{} statements, {} moved on",
                        e.statements, e.failed_over
                    ));
                    notes.extend(e.error);
                    let error = notes.join("; ");
                    health_row(
                        format!("{} {}", h.source, e.label),
                        e.reachable,
                        e.latency,
                        (e.in_use, e.pool_max, e.held_too_long, e.idle),
                        e.breaker,
                        Some(error),
                    )
                })
                .collect()
        })
        .collect();
    session.print_batch(string_batch(
        &[
            "source",
            "reachable",
            "latency_ms",
            "pool",
            "breaker",
            "error",
        ],
        rows,
    ))
}

/// One row of `\health`; `pool` is (in use, max, held too long, idle).
fn health_row(
    name: String,
    reachable: bool,
    latency: Option<std::time::Duration>,
    pool: (usize, usize, usize, usize),
    breaker: Option<ibarrow::providers::breaker::BreakerState>,
    error: Option<String>,
) -> Vec<String> {
    let (in_use, max, held_too_long, idle) = pool;
    vec![
        name,
        if reachable { "yes" } else { "no" }.to_string(),
        latency
            .map(|l| format!("{:.1}", l.as_secs_f64() * 1000.0))
            .unwrap_or_default(),
        if held_too_long > 0 {
            format!("{in_use}/{max} in use ({held_too_long} held too long); {idle} idle")
        } else {
            format!("{in_use}/{max} in use; {idle} idle")
        },
        breaker
            .map(|b| format!("{b:?}").to_lowercase())
            .unwrap_or_else(|| "off".into()),
        error.unwrap_or_default(),
    ]
}

/// How long `\health` waits for each source.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn schemas(session: &mut Session, source: &str) -> Outcome {
    let ctx = session.user.catalogs();
    let mut rows = Vec::new();
    for catalog_name in catalogs(session, source) {
        if let Some(catalog) = ctx.catalog(&catalog_name) {
            for schema in catalog.schema_names() {
                rows.push(vec![catalog_name.clone(), schema]);
            }
        }
    }
    if rows.is_empty() && !source.is_empty() {
        return Outcome::Failed(format!("no source named `{source}`; \\sources lists them"));
    }
    session.print_batch(string_batch(&["source", "schema"], rows))
}

fn tables(session: &mut Session, pattern: &str) -> Outcome {
    let ctx = session.user.catalogs();
    let mut rows = Vec::new();
    for catalog_name in catalogs(session, "") {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut names = schema.table_names();
            names.sort();
            for table in names {
                let full = format!("{catalog_name}.{schema_name}.{table}");
                let subject = if pattern.contains('.') { &full } else { &table };
                if pattern.is_empty() || glob_match(pattern, subject) {
                    rows.push(vec![catalog_name.clone(), schema_name.clone(), table]);
                }
            }
        }
    }
    session.print_batch(string_batch(&["source", "schema", "table"], rows))
}

/// The sources the user may read from, or just `only` when given.
fn catalogs(session: &Session, only: &str) -> Vec<String> {
    let readable = session.user.catalogs().catalog_names();
    session
        .engine
        .source_names()
        .into_iter()
        .filter(|name| readable.contains(name))
        .filter(|name| only.is_empty() || name.eq_ignore_ascii_case(only))
        .collect()
}

fn describe(session: &mut Session, name: &str) -> Outcome {
    let name = name.trim_end_matches(';');
    let user = session.user.clone();
    let (provider, schema) = match session
        .runtime
        .block_on(async { user.describe_table(name).await })
    {
        Ok(described) => described,
        Err(err) => return Outcome::Failed(error_message(&crate::exec::as_datafusion(err))),
    };
    let odbc = (provider.as_ref() as &dyn std::any::Any).downcast_ref::<OdbcTable>();
    let key: &[String] = odbc.map_or(&[], |t| t.primary_key());
    let rows = schema
        .fields()
        .iter()
        .map(|field| {
            vec![
                field.name().clone(),
                field.data_type().to_string(),
                if field.is_nullable() { "yes" } else { "no" }.to_string(),
                key.iter()
                    .position(|k| k == field.name())
                    .map(|p| format!("primary key ({})", p + 1))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let outcome = session.print_batch(string_batch(&["column", "type", "nullable", "key"], rows));
    if let Some(table) = odbc {
        let estimate = table
            .row_estimate()
            .map_or_else(|| "unknown".to_string(), |rows| format!("about {rows}"));
        let split = table
            .partition_column()
            .map(|c| format!("; range partition column `{c}`"))
            .unwrap_or_default();
        eprintln!(
            "remote table {} in source `{}`; rows: {estimate}{split}",
            table
                .remote_table()
                .render(table.source().dialect())
                .unwrap_or_else(|_| name.to_string()),
            table.source().name()
        );
    }
    outcome
}

fn timing(session: &mut Session, args: &str) -> Outcome {
    session.timing = match args {
        "" => !session.timing,
        "on" => true,
        "off" => false,
        other => return Outcome::Failed(format!("\\timing takes on or off, not `{other}`")),
    };
    eprintln!("timing is {}", if session.timing { "on" } else { "off" });
    Outcome::Done
}

fn refresh(session: &mut Session, source: &str) -> Outcome {
    let names = catalogs(session, source);
    if names.is_empty() {
        return Outcome::Failed(format!("no source named `{source}`; \\sources lists them"));
    }
    let engine = session.engine.clone();
    let result = session.runtime.block_on(async {
        for name in &names {
            engine.refresh(name).await?;
        }
        Ok::<_, ibarrow::Error>(())
    });
    match result {
        Ok(()) => {
            eprintln!("refreshed {}", names.join(", "));
            Outcome::Done
        }
        Err(err) => Outcome::Failed(err.to_string()),
    }
}

/// Reads the configuration again as at start (file, profile, `--source`, demo) and applies
/// it; a configuration that is refused leaves everything as it was.
fn reload(session: &mut Session) -> Outcome {
    let engine = session.engine.clone();
    let loader = session.config.clone();
    let reloaded = session.runtime.block_on(async {
        let config = loader.load(false).await?;
        engine.reload(&config).await.map_err(|e| e.to_string())
    });
    match reloaded {
        Ok(report) => {
            if let Some(level) = &report.log_level {
                crate::set_log_level(level);
            }
            eprintln!("reloaded: {report}");
            Outcome::Done
        }
        Err(message) => Outcome::Failed(format!(
            "the configuration was not reloaded, the one in force stays: {message}"
        )),
    }
}

fn connect(session: &mut Session, args: &str) -> Outcome {
    let Some((name, connection_string)) = args.split_once(char::is_whitespace) else {
        return Outcome::Failed(
            "usage: \\connect <name> <connection string>, e.g. \\connect lite \
             Driver={SQLite3};Database=/tmp/x.sqlite;"
                .into(),
        );
    };
    let engine = session.engine.clone();
    let (name, connection_string) = (name.to_string(), connection_string.trim().to_string());
    match session
        .runtime
        .block_on(async { engine.register_odbc(&name, &connection_string).await })
    {
        Ok(()) => {
            eprintln!("source `{name}` registered; \\dt {name}.* lists its tables");
            Outcome::Done
        }
        Err(err) => Outcome::Failed(err.to_string()),
    }
}

fn include(session: &mut Session, path: &Path) -> Outcome {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => return Outcome::Failed(format!("cannot read {}: {err}", path.display())),
    };
    run_items(session, split_script(&text))
}

/// Runs items in order, printing each failure; stops at `\q` or a cancelled query.
pub fn run_items(session: &mut Session, items: Vec<Item>) -> Outcome {
    let mut result = Outcome::Done;
    for item in items {
        let outcome = match item {
            Item::Sql(sql) => session.run_sql(&sql),
            Item::Meta(line) => run(session, &line),
        };
        match outcome {
            Outcome::Done => {}
            Outcome::Failed(message) => {
                // Empty: reported already (by a nested `\i`).
                if !message.is_empty() {
                    eprintln!("ERROR: {message}");
                }
                result = Outcome::Failed(String::new());
            }
            Outcome::Quit | Outcome::Cancelled => return outcome,
        }
    }
    result
}

fn output(session: &mut Session, path: &str) -> Outcome {
    let sink = if path.is_empty() {
        Ok(Sink::stdout())
    } else {
        Sink::create(Path::new(path))
    };
    match sink {
        Ok(sink) => {
            session.sink = sink;
            eprintln!("results go to {}", session.sink.describe());
            Outcome::Done
        }
        Err(message) => Outcome::Failed(message),
    }
}

fn string_batch(names: &[&str], rows: Vec<Vec<String>>) -> RecordBatch {
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let columns: Vec<ArrayRef> = (0..names.len())
        .map(|i| {
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r[i].as_str()),
            )) as ArrayRef
        })
        .collect();
    RecordBatch::try_new(schema, columns)
        .unwrap_or_else(|_| RecordBatch::new_empty(Arc::new(Schema::empty())))
}

/// Shell-style matching, ignoring case: `*` any run of characters, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    let text: Vec<char> = text.to_lowercase().chars().collect();
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_like_a_shell_ignoring_case() {
        assert!(glob_match("order*", "order_lines"));
        assert!(glob_match("shop.*.ORD?RS", "shop.main.orders"));
        assert!(!glob_match("shop.*.orders", "crm.main.orders"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a", "ab"));
    }
}
