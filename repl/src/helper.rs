//! The line editor's helper: input is complete at a `;` (or a meta-command line), and Tab
//! completes keywords, commands, sources, schemas, tables and columns from the engine's catalog.

use std::time::Duration;

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use crate::command::COMMANDS;
use crate::statement::is_complete;

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "JOIN",
    "LEFT JOIN",
    "RIGHT JOIN",
    "FULL JOIN",
    "INNER JOIN",
    "CROSS JOIN",
    "ON",
    "USING",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "EXISTS",
    "BETWEEN",
    "LIKE",
    "ILIKE",
    "IS NULL",
    "IS NOT NULL",
    "DISTINCT",
    "UNION",
    "UNION ALL",
    "INTERSECT",
    "EXCEPT",
    "WITH",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "OVER",
    "PARTITION BY",
    "ASC",
    "DESC",
    "NULLS FIRST",
    "NULLS LAST",
    "EXPLAIN",
    "EXPLAIN ANALYZE",
    "SHOW TABLES",
    "DESCRIBE",
    "CREATE VIEW",
    "VALUES",
    "TRUE",
    "FALSE",
    "NULL",
    "DATE",
    "TIMESTAMP",
    "INTERVAL",
    "query",
];

/// How long completion may wait for a table's columns (fetched once, then cached).
const COLUMN_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

pub struct SqlHelper {
    /// The REPL's engine session: completion offers what its user may read.
    user: ibarrow::Session,
    runtime: tokio::runtime::Handle,
}

impl SqlHelper {
    pub fn new(user: ibarrow::Session, runtime: tokio::runtime::Handle) -> Self {
        Self { user, runtime }
    }

    /// Candidates for `word` (the text before the cursor back to a blank or operator), given
    /// the whole input `buffer`.
    pub fn candidates(&self, buffer: &str, word: &str) -> Vec<String> {
        let at_line_start = buffer[..buffer.len() - word.len()].trim().is_empty();
        if word.starts_with('\\') && at_line_start {
            return COMMANDS
                .iter()
                .map(|(name, _, _)| name.to_string())
                .filter(|name| name.starts_with(word))
                .collect();
        }
        let mut found: Vec<String> = match word.rsplit_once('.') {
            Some((qualifier, last)) => self
                .qualified(buffer, qualifier)
                .into_iter()
                .filter(|name| starts_with_ignoring_case(name, last))
                .map(|name| format!("{qualifier}.{name}"))
                .collect(),
            None => {
                let keywords = KEYWORDS.iter().map(|k| {
                    if word.chars().next().is_some_and(char::is_lowercase) {
                        k.to_lowercase()
                    } else {
                        k.to_string()
                    }
                });
                keywords
                    .chain(self.readable_sources())
                    .chain(self.referenced_columns(buffer))
                    .filter(|name| !word.is_empty() && starts_with_ignoring_case(name, word))
                    .collect()
            }
        };
        found.sort();
        found.dedup();
        found
    }

    /// Names that may follow `qualifier.`: schemas of a source, tables of `source.schema`,
    /// or else the columns of the tables the statement names (`alias.` is not resolved).
    fn qualified(&self, buffer: &str, qualifier: &str) -> Vec<String> {
        let ctx = self.user.catalogs();
        let parts: Vec<&str> = qualifier.split('.').collect();
        match parts.as_slice() {
            [source] if ctx.catalog(source).is_some() => ctx
                .catalog(source)
                .map(|c| c.schema_names())
                .unwrap_or_default(),
            [source, schema] => ctx
                .catalog(source)
                .and_then(|c| c.schema(schema))
                .map(|s| s.table_names())
                .unwrap_or_default(),
            _ => self.referenced_columns(buffer),
        }
    }

    /// The sources the user may read from.
    fn readable_sources(&self) -> Vec<String> {
        let readable = self.user.catalogs().catalog_names();
        self.user
            .engine()
            .source_names()
            .into_iter()
            .filter(|name| readable.contains(name))
            .collect()
    }

    /// Columns of the `source.schema.table` names written in the statement.
    fn referenced_columns(&self, buffer: &str) -> Vec<String> {
        let session = self.user.clone();
        let tables: Vec<String> = buffer
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .filter(|token| token.matches('.').count() == 2 && !token.ends_with('.'))
            .map(str::to_string)
            .collect();
        if tables.is_empty() {
            return Vec::new();
        }
        self.runtime.block_on(async move {
            let mut columns = Vec::new();
            for table in tables {
                let lookup = session.describe_table(&table);
                if let Ok(Ok((_, schema))) =
                    tokio::time::timeout(COLUMN_LOOKUP_TIMEOUT, lookup).await
                {
                    columns.extend(schema.fields().iter().map(|f| f.name().clone()));
                }
            }
            columns
        })
    }
}

fn starts_with_ignoring_case(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '\\'))
            .map_or(0, |i| {
                i + before[i..].chars().next().map_or(1, char::len_utf8)
            });
        let word = &before[start..];
        let pairs = self
            .candidates(before, word)
            .into_iter()
            .map(|name| Pair {
                display: name.clone(),
                replacement: name,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Validator for SqlHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        if input.trim().is_empty() || is_complete(input) {
            Ok(ValidationResult::Valid(None))
        } else {
            Ok(ValidationResult::Incomplete)
        }
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Highlighter for SqlHelper {}

impl Helper for SqlHelper {}
