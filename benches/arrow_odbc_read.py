"""One arrow-odbc stream over a table, for side-by-side runs with `examples/scan_table.rs`.

    python benches/arrow_odbc_read.py "<connection string>" <table>

Prints rows, seconds and peak RSS. Add `UseDeclareFetch=1;Fetch=8192;` to a psqlODBC
connection string to stream (otherwise the driver holds the whole result first).
"""

import resource
import sys
import time

from arrow_odbc import read_arrow_batches_from_odbc


def main() -> None:
    connection_string, table = sys.argv[1], sys.argv[2]
    started = time.time()
    reader = read_arrow_batches_from_odbc(
        query=f"SELECT * FROM {table}",
        connection_string=connection_string,
        batch_size=8192,
    )
    rows = sum(batch.num_rows for batch in reader)
    seconds = time.time() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"arrow-odbc {rows} rows {seconds:.2f} s peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
