//! docs/configuration.md lists every key of the configuration file, and only keys that exist.
//!
//! The parser itself says which keys a table has: every struct of src/config.rs denies unknown
//! fields, so a table holding a key it does not know is refused with serde's "unknown field
//! `zz_not_a_key`, expected one of `a`, `b`, ..." (or "expected `a` or `b`", or "expected `a`"),
//! which `Config::parse` passes on in its error. For each section of the file this test reads
//! that list and compares it with the `key` column of the table under the section's heading on
//! the page (## `[engine]`, ## `[sources.<name>.tls]`, ...). A second test looks for tables
//! that [`SECTIONS`] lacks: a key whose value is a table with keys of its own needs a section.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ibarrow::Config;

/// A key no table of the configuration has.
const UNKNOWN: &str = "zz_not_a_key";

/// The page checked, relative to the repository root.
const PAGE: &str = "docs/configuration.md";

/// Each section of the file: its heading on the page (the TOML path, `<...>` standing for a
/// name the user chooses) and a table of the file it stands for.
const SECTIONS: &[(&str, &str)] = &[
    ("engine", "engine"),
    ("engine.result_cache", "engine.result_cache"),
    ("engine.rate_limits", "engine.rate_limits"),
    ("engine.retry", "engine.retry"),
    ("engine.breaker", "engine.breaker"),
    ("sources.<name>", "sources.s"),
    ("sources.<name>.tls", "sources.s.tls"),
    ("sources.<name>.retry", "sources.s.retry"),
    ("sources.<name>.breaker", "sources.s.breaker"),
    ("sources.<name>.tables.<table>", "sources.s.tables.t"),
    ("server", "server"),
    ("server.tls", "server.tls"),
    ("users.<name>", "users.u"),
    ("roles.<name>", "roles.r"),
    ("audit", "audit"),
    ("profiles.<name>", "profiles.p"),
];

/// The section whose tables are the file's own sections again, not tables of their own.
const PROFILES: &str = "profiles.<name>";

/// A source that could connect, written before any table under `[sources.s]`.
const SOURCE: &str =
    "[sources.s]\nconnection_string = \"Driver={SQLite3};Database=reference.sqlite;\"\n";

/// TOML text with `body` in the table `path` ("" for the top level), after what the table needs
/// around it: the source it belongs to, and the keys it requires (`mode` of a source's `tls`,
/// `cert` and `key` of `[server.tls]`), so that the only thing wrong with the text is `body`.
fn table_text(path: &str, body: &str) -> String {
    let mut text = String::new();
    if path == "sources.s" {
        text.push_str(SOURCE);
    } else if !path.is_empty() {
        if path.starts_with("sources.s.") {
            text.push_str(SOURCE);
        }
        text.push_str(&format!("[{path}]\n"));
        text.push_str(match path {
            "sources.s.tls" => "mode = \"disable\"\n",
            "server.tls" => "cert = \"server.pem\"\nkey = \"server.key\"\n",
            _ => "",
        });
    }
    text.push_str(body);
    text
}

/// The keys of the table `path`, as the parser lists them when that table holds [`UNKNOWN`];
/// `Err` with the parser's answer when it does not list them (the text was accepted, or
/// refused for another reason: the value at `path` is not a table with named keys).
fn keys_of(path: &str) -> Result<BTreeSet<String>, String> {
    let text = table_text(path, &format!("{UNKNOWN} = 1\n"));
    let message = match Config::parse(&text, "config_reference.toml") {
        Ok(_) => return Err(format!("the parser accepted `{UNKNOWN}` in:\n{text}")),
        Err(err) => err.to_string(),
    };
    // serde: "unknown field `zz_not_a_key`, expected one of `a`, `b`" (or "expected `a` or
    // `b`", "expected `a`", "there are no fields").
    let serde_says = format!("unknown field `{UNKNOWN}`");
    if let Some(at) = message.find(&serde_says) {
        let rest = message[at + serde_says.len()..]
            .lines()
            .next()
            .unwrap_or("");
        if rest.starts_with(", there are no fields") {
            return Ok(BTreeSet::new());
        }
        if let Some(expected) = rest.strip_prefix(", expected ") {
            return Ok(backticked(expected));
        }
        return Err(message);
    }
    // toml's own check, should it ever be switched on: "unexpected keys in table:
    // zz_not_a_key, available keys: a, b".
    if message.contains("unexpected keys in table") && message.contains(UNKNOWN) {
        let marker = "available keys: ";
        if let Some(at) = message.find(marker) {
            let rest = message[at + marker.len()..].lines().next().unwrap_or("");
            return Ok(rest
                .split(',')
                .map(|key| key.trim().to_string())
                .filter(|key| !key.is_empty())
                .collect());
        }
    }
    Err(message)
}

/// The names in backticks in `text`: "one of `a`, `b`, `c`", "`a` or `b`", "`a`".
fn backticked(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// `a.b`, or `b` under the top level.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A section's path for messages.
fn shown(heading: &str) -> &str {
    if heading.is_empty() {
        "top level"
    } else {
        heading
    }
}

/// `` `a`, `b` `` for messages.
fn listed<'a>(keys: impl IntoIterator<Item = &'a String>) -> String {
    let keys: Vec<String> = keys.into_iter().map(|key| format!("`{key}`")).collect();
    if keys.is_empty() {
        "none".into()
    } else {
        keys.join(", ")
    }
}

/// One section of the page: the heading's line and the rows of its key table.
#[derive(Debug, Default)]
struct DocSection {
    /// 1-based line of the heading.
    line: usize,
    /// Whether a table with the columns `key | type | default | meaning` follows the heading.
    has_table: bool,
    /// Each key of the table's key column, with its line.
    keys: Vec<(String, usize)>,
}

/// The cells of a table row, trimmed.
fn cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let line = line.strip_prefix('|').unwrap_or(line);
    let line = line.strip_suffix('|').unwrap_or(line);
    line.split('|')
        .map(|cell| cell.trim().to_string())
        .collect()
}

/// The page's sections (level-2 headings that are a TOML path in backticks, ## `[engine]`) with
/// the first `key | type | default | meaning` table under each, and what is malformed.
fn read_page(text: &str) -> (BTreeMap<String, DocSection>, Vec<String>) {
    let mut sections: BTreeMap<String, DocSection> = BTreeMap::new();
    let mut problems = Vec::new();
    // The section being read, and whether its key table has begun (Some(false)), is being
    // read (Some(true)) or is over (None).
    let mut current: Option<String> = None;
    let mut in_table: Option<bool> = Some(false);
    let mut fence: Option<String> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        // Code blocks: their lines are neither headings nor table rows.
        if let Some(open) = &fence {
            // Closed by a run of the same character, at least as long, and nothing after it.
            let marker = open.chars().next().unwrap_or('`');
            let run = trimmed.chars().take_while(|c| *c == marker).count();
            if run >= open.len() && trimmed[run..].trim().is_empty() {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            let marker = trimmed.chars().next().unwrap_or('`');
            let length = trimmed.chars().take_while(|c| *c == marker).count();
            fence = Some(marker.to_string().repeat(length));
            continue;
        }
        if line.starts_with("# ") {
            current = None;
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            let heading = heading.trim();
            current = heading
                .strip_prefix("`[")
                .and_then(|rest| rest.strip_suffix("]`"))
                .map(str::to_string);
            in_table = Some(false);
            if let Some(path) = &current {
                if let Some(earlier) = sections.get(path) {
                    problems.push(format!(
                        "{PAGE}:{number}: ## `[{path}]` again (first at line {})",
                        earlier.line
                    ));
                }
                sections.insert(
                    path.clone(),
                    DocSection {
                        line: number,
                        ..DocSection::default()
                    },
                );
            }
            continue;
        }
        let Some(path) = &current else { continue };
        let Some(section) = sections.get_mut(path) else {
            continue;
        };
        let is_row = trimmed.starts_with('|');
        match in_table {
            Some(false) if is_row => {
                let header = cells(line);
                if header.first().map(String::as_str) == Some("key") {
                    if header != ["key", "type", "default", "meaning"] {
                        problems.push(format!(
                            "{PAGE}:{number}: the table of ## `[{path}]` has the columns \
                             {header:?}; write `key | type | default | meaning`"
                        ));
                    }
                    section.has_table = true;
                    in_table = Some(true);
                }
            }
            Some(true) if is_row => {
                let key_cell = cells(line).into_iter().next().unwrap_or_default();
                if !key_cell.is_empty() && key_cell.chars().all(|c| matches!(c, '-' | ':')) {
                    continue;
                }
                let name = key_cell
                    .strip_prefix('`')
                    .and_then(|rest| rest.strip_suffix('`'))
                    .filter(|name| {
                        !name.is_empty() && !name.contains(|c: char| c == '`' || c.is_whitespace())
                    });
                match name {
                    Some(name) => section.keys.push((name.to_string(), number)),
                    None => problems.push(format!(
                        "{PAGE}:{number}: under ## `[{path}]` the key cell `{key_cell}` is not one \
                         key in backticks"
                    )),
                }
            }
            Some(true) => in_table = None,
            _ => {}
        }
    }
    (sections, problems)
}

fn page() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(PAGE);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{} cannot be read: {err}", path.display()))
}

#[test]
fn every_key_is_documented_under_its_section_and_every_documented_key_exists() {
    let (page, mut problems) = read_page(&page());
    for (heading, table) in SECTIONS {
        let section = format!("`[{heading}]`");
        let real = match keys_of(table) {
            Ok(keys) => keys,
            Err(message) => {
                problems.push(format!(
                    "{section}: the parser did not list this table's keys when given \
                     `{UNKNOWN}` (is it still a table that refuses unknown keys? update SECTIONS \
                     in tests/config_reference.rs if the file changed):\n{message}"
                ));
                continue;
            }
        };
        let Some(doc) = page.get(*heading) else {
            problems.push(format!(
                "{section}: {PAGE} has no heading ## {section}; add it with a table \
                 `key | type | default | meaning` of its keys: {}",
                listed(&real)
            ));
            continue;
        };
        if !doc.has_table {
            problems.push(format!(
                "{section}: no table `key | type | default | meaning` under ## {section} \
                 ({PAGE}:{}); its keys: {}",
                doc.line,
                listed(&real)
            ));
            continue;
        }
        let mut documented: BTreeMap<&str, usize> = BTreeMap::new();
        for (key, line) in &doc.keys {
            if let Some(first) = documented.insert(key.as_str(), *line) {
                problems.push(format!(
                    "{section}: `{key}` is documented twice ({PAGE}:{first} and {PAGE}:{line})"
                ));
            }
        }
        for key in &real {
            if !documented.contains_key(key.as_str()) {
                problems.push(format!(
                    "{section}: the key `{key}` is not documented; add a row `{key}` to the table \
                     under ## {section} ({PAGE}:{})",
                    doc.line
                ));
            }
        }
        for (key, line) in &doc.keys {
            if !real.contains(key) {
                problems.push(format!(
                    "{section}: {PAGE}:{line} documents `{key}`, which is not a key of this \
                     section (the parser accepts {})",
                    listed(&real)
                ));
            }
        }
    }
    for (heading, doc) in &page {
        if !SECTIONS.iter().any(|(known, _)| known == heading) {
            problems.push(format!(
                "{PAGE}:{}: ## `[{heading}]` is not a section of the configuration file \
                 (sections: {})",
                doc.line,
                SECTIONS
                    .iter()
                    .map(|(known, _)| format!("`[{known}]`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{PAGE} does not match the configuration parser (src/config.rs):\n- {}",
        problems.join("\n- ")
    );
}

#[test]
fn every_table_of_the_file_has_a_section() {
    let mut problems = Vec::new();
    // The top level, then every section but the profiles (whose tables are the sections above).
    let parents = std::iter::once(("", "")).chain(
        SECTIONS
            .iter()
            .copied()
            .filter(|(heading, _)| *heading != PROFILES),
    );
    for (heading, table) in parents {
        let keys = match keys_of(table) {
            Ok(keys) => keys,
            Err(message) => {
                problems.push(format!(
                    "`[{}]`: the parser did not list this table's keys when given \
                     `{UNKNOWN}`:\n{message}",
                    shown(heading)
                ));
                continue;
            }
        };
        for key in &keys {
            let child_heading = join(heading, key);
            let child_table = join(table, key);
            if keys_of(&child_table).is_ok() {
                // A table with keys of its own: `[engine.retry]`.
                if !SECTIONS.iter().any(|(known, _)| *known == child_heading) {
                    problems.push(format!(
                        "`{key}` of `[{}]` is a table with keys of its own: add \
                         (\"{child_heading}\", \"{child_table}\") to SECTIONS in \
                         tests/config_reference.rs and ## `[{child_heading}]` to {PAGE}",
                        shown(heading)
                    ));
                }
            } else if keys_of(&join(&child_table, "x")).is_ok() {
                // Named tables: `[sources.<name>]`, `[sources.<name>.tables.<table>]`.
                let prefix = format!("{child_heading}.<");
                let covered = SECTIONS.iter().any(|(known, _)| {
                    known
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.ends_with('>') && !rest.contains('.'))
                });
                if !covered {
                    problems.push(format!(
                        "`{key}` of `[{}]` holds named tables with keys of their own: add \
                         (\"{child_heading}.<name>\", \"{child_table}.x\") to SECTIONS in \
                         tests/config_reference.rs and ## `[{child_heading}.<name>]` to {PAGE}",
                        shown(heading)
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "tables of the configuration file without a section:\n- {}",
        problems.join("\n- ")
    );
}

#[test]
fn the_page_reader_and_the_key_lists_work() {
    // serde's three ways of listing what it expected.
    assert_eq!(
        backticked("one of `a`, `b`, `c`"),
        BTreeSet::from(["a".to_string(), "b".to_string(), "c".to_string()])
    );
    assert_eq!(
        backticked("`a` or `b`"),
        BTreeSet::from(["a".to_string(), "b".to_string()])
    );
    assert_eq!(backticked("`a`"), BTreeSet::from(["a".to_string()]));
    // A table of one key: `[sources.<name>.tables.<table>]`.
    assert_eq!(
        keys_of("sources.s.tables.t").unwrap(),
        BTreeSet::from(["partition_column".to_string()])
    );
    // A table of two keys: `[server.tls]`.
    assert_eq!(
        keys_of("server.tls").unwrap(),
        BTreeSet::from(["cert".to_string(), "key".to_string()])
    );
    // A key that is not a table is not taken for one.
    assert!(keys_of("engine.pool_size").is_err());
    let page = [
        "# Title",                            // 1
        "",                                   // 2
        "## `[a.<name>]`",                    // 3
        "",                                   // 4
        "| key | type | default | meaning |", // 5
        "| --- | --- | --- | --- |",          // 6
        "| `x` | integer | 1 | X. |",         // 7
        "| `y` | string | none | Y. |",       // 8
        "",                                   // 9
        "| key | type | default | meaning |", // 10: a second table, not read
        "| `ignored` | - | - | - |",          // 11
        "```toml",                            // 12
        "## `[not.a.heading]`",               // 13
        "```",                                // 14
        "## Other",                           // 15
        "| key | type | default | meaning |", // 16: not under a section
        "| `z` | - | - | - |",                // 17
    ]
    .join("\n");
    let (sections, problems) = read_page(&page);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(sections.len(), 1, "{sections:?}");
    let section = &sections["a.<name>"];
    assert_eq!(section.line, 3);
    assert!(section.has_table);
    assert_eq!(
        section.keys,
        vec![("x".to_string(), 7), ("y".to_string(), 8)]
    );
}
