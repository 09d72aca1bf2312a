#!/usr/bin/env python3
"""Writes the expected results of tests/slt/tpch/*.slt, computed by DuckDB.

The TPC-H tables are generated at scale factor 0.01 by tpchgen-cli (the CLI of the `tpchgen`
crate the tests use, so the rows are the same) into a temporary directory as Parquet, loaded
into an in-memory DuckDB, and each file's query is run there. Each file keeps its comments, its
SQL text and its `rowsort`; the type string and the block under `----` are rewritten.

    pip install duckdb tpchgen-cli
    python3 scripts/tpch-expected.py            # rewrite the files
    python3 scripts/tpch-expected.py --check    # only tell whether they are up to date

Formatting of a value: NULL as `NULL`; an empty string as `(empty)`; integers as digits;
DECIMAL with every decimal place of its type; DOUBLE/FLOAT fixed to 6 decimal places
(`f"{v:.6f}"`, `-0.000000` written `0.000000`); dates as YYYY-MM-DD; text as it is. Values are
separated by one space; trailing whitespace at the end of a row is dropped. Rows of a `rowsort`
query are written sorted as strings.
"""

import argparse
import datetime
import decimal
import pathlib
import shutil
import subprocess
import sys
import tempfile

import duckdb

ROOT = pathlib.Path(__file__).resolve().parent.parent
SLT_DIR = ROOT / "tests" / "slt" / "tpch"
SCALE = "0.01"
ROW_COUNTS = {
    "lineitem": 60175,
    "orders": 15000,
    "customer": 1500,
    "part": 2000,
    "partsupp": 8000,
    "supplier": 100,
    "nation": 25,
    "region": 5,
}
# Edits to a query's text that DuckDB needs, applied only to the copy DuckDB runs:
# file name -> [(old, new), ...]. None is needed with DuckDB 2.0.
DUCKDB_REWRITES: dict[str, list[tuple[str, str]]] = {}


def generate(directory: pathlib.Path) -> None:
    cli = shutil.which("tpchgen-cli")
    if cli is None:
        sys.exit("tpchgen-cli not found: pip install tpchgen-cli")
    subprocess.run(
        [cli, "parquet", "--scale-factor", SCALE, "--output-dir", str(directory), "--quiet"],
        check=True,
    )


def connect(directory: pathlib.Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table, expected in ROW_COUNTS.items():
        path = directory / f"{table}.parquet"
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{path}')")
        (count,) = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        if count != expected:
            sys.exit(f"{table}: {count} rows, expected {expected} at scale {SCALE}")
    return con


def parse(path: pathlib.Path):
    """(comment lines, rowsort, SQL) of a file holding one query."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("query"))
    header = lines[:start]
    rowsort = "rowsort" in lines[start].split()[1:]
    sql = []
    end = len(lines)
    for i in range(start + 1, len(lines)):
        if lines[i] in ("", "----"):
            end = i
            break
        sql.append(lines[i])
    if lines[end:end + 1] == ["----"]:
        end += 1
        while end < len(lines) and lines[end] != "":
            end += 1
    if any(line.strip() for line in lines[end:]):
        sys.exit(f"{path}: more than one record")
    return header, rowsort, "\n".join(sql)


def type_letter(duckdb_type: str) -> str:
    name = duckdb_type.upper()
    if name.startswith(("DECIMAL", "DOUBLE", "FLOAT", "REAL")):
        return "R"
    if name.split("(")[0] in {
        "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
        "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
    }:
        return "I"
    return "T"


def format_value(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, float):
        text = f"{value:.6f}"
        return "0.000000" if text == "-0.000000" else text
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, str):
        return value if value else "(empty)"
    raise TypeError(f"no format for {type(value).__name__}: {value!r}")


def spacing_notes(name: str, columns: list[str], rows: list[tuple]) -> list[str]:
    notes = set()
    for row in rows:
        for column, value in zip(columns, row):
            if isinstance(value, str) and (value != value.strip() or "  " in value):
                notes.add(f"{name}: column {column} has values with edge or double spaces")
    return sorted(notes)


def render(con, path: pathlib.Path) -> tuple[str, int, list[str]]:
    header, rowsort, sql = parse(path)
    duck_sql = sql
    for old, new in DUCKDB_REWRITES.get(path.name, []):
        if old not in duck_sql:
            sys.exit(f"{path.name}: rewrite {old!r} does not apply")
        duck_sql = duck_sql.replace(old, new)
    cursor = con.execute(duck_sql)
    columns = [d[0] for d in cursor.description]
    types = "".join(type_letter(str(d[1])) for d in cursor.description)
    rows = cursor.fetchall()
    lines = [" ".join(format_value(v) for v in row).rstrip() for row in rows]
    if rowsort:
        lines.sort()
    query_line = f"query {types}" + (" rowsort" if rowsort else "")
    text = "\n".join(header + [query_line, sql, "----"] + lines) + "\n"
    return text, len(rows), spacing_notes(path.name, columns, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    parser.add_argument("--data", type=pathlib.Path, help="use Parquet files already in this directory")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or pathlib.Path(tmp)
        if args.data is None:
            generate(data)
        con = connect(data)
        stale = []
        for path in sorted(SLT_DIR.glob("*.slt")):
            text, count, notes = render(con, path)
            for note in notes:
                print(f"note: {note}", file=sys.stderr)
            if count == 0:
                print(f"warning: {path.name} returns no rows", file=sys.stderr)
            if path.read_text() != text:
                stale.append(path.name)
                if not args.check:
                    path.write_text(text)
            print(f"{path.name}: {count} rows", file=sys.stderr)
    print(f"duckdb {duckdb.__version__}; "
          + ("out of date: " if args.check else "rewritten: ")
          + (", ".join(stale) if stale else "none"), file=sys.stderr)
    if args.check and stale:
        sys.exit(1)


if __name__ == "__main__":
    main()
