"""ibarrow: federated SQL over ODBC databases, with results as Arrow.

>>> import ibarrow
>>> eng = ibarrow.Engine()
>>> eng.register_odbc("pg", "Driver={PostgreSQL Unicode};Server=127.0.0.1;Database=shop;Uid=me")
>>> eng.sql("SELECT count(*) FROM pg.public.orders").to_arrow()

Results are Arrow without copies: ``pa.table(result)``, ``pl.DataFrame(result)``. Waiting
releases the GIL, and Ctrl-C cancels a running query.
"""

from __future__ import annotations

from ibarrow import _internal
from ibarrow._engine import (
    Engine,
    Params,
    PreparedStatement,
    QueryResult,
    Session,
    odbc_table,
)
from ibarrow._query import (
    Expr,
    GroupBy,
    Query,
    SortExpr,
    Table,
    avg,
    col,
    count,
    count_distinct,
    lit,
    max,
    min,
    sum,
)
from ibarrow._errors import (
    AccessDeniedError,
    ArrowError,
    CircuitOpenError,
    ConfigError,
    ConnectionError,
    Error,
    InputError,
    MemoryLimitError,
    PyArrowError,
    PyConnectionError,
    PySQLError,
    RateLimitError,
    SQLError,
    TimeoutError,
)
from ibarrow._legacy import Connection, QueryConfig, connect

__version__: str = _internal.__version__


def init_logging(level: str | None = None, format: str = "human") -> None:
    """Send ibarrow's logs to stderr, once per process.

    ``level`` is a filter such as ``"info"`` or ``"ibarrow=debug"`` (default: the
    ``IBARROW_LOG`` environment variable, else ``"warn"``); at ``info`` every query is logged
    when it ends, with its user, client, sources, duration and peak memory. ``format`` is
    ``"human"`` or ``"json"`` (one JSON object per line).
    """
    _internal.init_logging(level, format)


# The aggregate functions (count, sum, avg, min, max, count_distinct) stay out of
# `import *`: they would shadow the builtins (use ib.sum, ib.max …).
# ConnectionError and TimeoutError stay out of `import *`: they would shadow the builtins
# (they derive from them; use ibarrow.ConnectionError and ibarrow.TimeoutError).
__all__ = [
    "Engine",
    "Params",
    "PreparedStatement",
    "QueryResult",
    "Session",
    "Table",
    "Query",
    "GroupBy",
    "Expr",
    "SortExpr",
    "col",
    "lit",
    "init_logging",
    "odbc_table",
    "connect",
    "Connection",
    "QueryConfig",
    "Error",
    "ConfigError",
    "InputError",
    "RateLimitError",
    "AccessDeniedError",
    "CircuitOpenError",
    "SQLError",
    "ArrowError",
    "MemoryLimitError",
    "PyConnectionError",
    "PySQLError",
    "PyArrowError",
]
