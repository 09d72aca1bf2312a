"""The ibarrow 0.1 API, kept: ``connect(...)`` and queries sent to the database as written.

Differences from 0.1: every query returns all of its rows (0.1 returned only the first
batch from ``query_arrow_c_data``), and every ``QueryConfig`` field takes effect or is
refused with a clear error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ibarrow import _internal

if TYPE_CHECKING:
    import pandas
    import polars

QueryConfig = _internal.QueryConfig


class Connection:
    """A connection opened by :func:`connect`. SQL goes to the database as written."""

    def __init__(self, inner: _internal.Connection) -> None:
        self._inner = inner

    def query_arrow_ipc(self, sql: str) -> bytes:
        """Every row of ``sql`` as the bytes of an Arrow IPC stream."""
        return self._inner.query_arrow_ipc(sql)

    def query_polars(self, sql: str) -> polars.DataFrame:
        """Every row of ``sql`` as a ``polars.DataFrame``."""
        import polars

        return polars.DataFrame(self._inner.query(sql))

    def query_pandas(self, sql: str) -> pandas.DataFrame:
        """Every row of ``sql`` as a ``pandas.DataFrame``."""
        import pyarrow

        return pyarrow.table(self._inner.query(sql)).to_pandas()

    def query_arrow_c_data(self, sql: str, return_dataframe: bool = False) -> Any:
        """Every row of ``sql`` through the Arrow C data interface.

        Returns ``(schema_capsule, array_capsule)`` holding one struct array, or with
        ``return_dataframe=True`` a ``polars.DataFrame``.
        """
        if return_dataframe:
            return self.query_polars(sql)
        return tuple(self._inner.query_arrow_c_data_capsules(sql))

    def test_connection(self) -> bool:
        """Whether the database answers a trivial query."""
        return self._inner.test_connection()

    def close(self) -> None:
        """Close the connection's database sessions."""
        self._inner.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._inner)


def connect(
    dsn: str | None = None,
    user: str | None = None,
    password: str | None = None,
    config: QueryConfig | None = None,
    *,
    connection_string: str | None = None,
) -> Connection:
    """Open a connection, as in ibarrow 0.1.

    ``dsn`` names a data source of ``odbc.ini``, or (as 0.1 allowed) is a whole connection
    string; ``connection_string=`` says so explicitly. ``user`` and ``password`` are added
    unless the string has its own.
    """
    return Connection(
        _internal.connect(dsn, user, password, config, connection_string)
    )
