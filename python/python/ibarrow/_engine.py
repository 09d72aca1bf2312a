"""The federation engine, its lazy results and its tables for datafusion-python."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any

from ibarrow import _internal
from ibarrow._errors import Error

if TYPE_CHECKING:
    import pandas
    from ibarrow._query import Query, Table
    import polars
    import pyarrow


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError as err:  # pragma: no cover - pyarrow is a dependency
        raise Error("ibarrow needs pyarrow for this: pip install pyarrow") from err
    return pyarrow


class QueryResult:
    """A planned query. Nothing runs until it is read; every read runs it again.

    Implements the Arrow PyCapsule stream protocol, so ``pa.table(result)``,
    ``pl.DataFrame(result)`` and ``pa.RecordBatchReader.from_stream(result)`` read it
    without copies (the query runs to the end first). Iterating yields
    ``pyarrow.RecordBatch`` objects as they arrive.
    """

    def __init__(self, inner: _internal.QueryResult) -> None:
        self._inner = inner

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        """Run the query to the end and hand its batches over as an Arrow C stream capsule.

        Running first keeps Ctrl-C and ibarrow's exceptions working for ``pa.table(result)``
        and ``pl.DataFrame(result)``; iterate the result to stream it batch by batch.
        """
        return self._inner.__arrow_c_stream__(requested_schema)

    def __arrow_c_schema__(self) -> object:
        """The result's Arrow schema as a C schema capsule (the query does not run)."""
        return self._inner.__arrow_c_schema__()

    @property
    def schema(self) -> pyarrow.Schema:
        """The result's schema, known from planning."""
        return _pyarrow().schema(self._inner)

    def to_arrow(self) -> pyarrow.Table:
        """Run the query and return every row as a ``pyarrow.Table``.

        The GIL is released while the query runs, and Ctrl-C cancels it.
        """
        return _pyarrow().table(self._inner.collect())

    def to_polars(self) -> polars.DataFrame:
        """Run the query and return a ``polars.DataFrame`` (no copy of the Arrow data)."""
        import polars

        return polars.DataFrame(self._inner.collect())

    def to_pandas(self) -> pandas.DataFrame:
        """Run the query and return a ``pandas.DataFrame``."""
        return self.to_arrow().to_pandas()

    def explain(self, verbose: bool = False, analyze: bool = False) -> str:
        """The query plan with the SQL sent to each database; ``analyze=True`` runs the
        query and adds rows, bytes and time per remote scan."""
        return self._inner.explain(verbose, analyze)

    def __iter__(self) -> Iterator[pyarrow.RecordBatch]:
        pa = _pyarrow()
        stream = self._inner.execute()
        try:
            while (capsules := stream.next_batch()) is not None:
                yield pa.RecordBatch._import_from_c_capsule(*capsules)
        finally:
            stream.close()

    def __repr__(self) -> str:
        return f"ibarrow.QueryResult(schema={self.schema})"


Params = Sequence[Any] | Mapping[str, Any]
"""Values for a statement's placeholders: a list for ``$1``, ``$2`` …, a dict for ``$name``.

Each value is ``None``, ``bool``, ``int`` (64-bit), ``float``, ``str``, ``bytes``,
``datetime.date``, ``datetime.datetime`` (naive as written, aware in UTC) or
``decimal.Decimal``. Values replace their placeholders in the plan, never in the text, so a
value cannot change the statement."""


class PreparedStatement:
    """A statement planned once (:meth:`Engine.prepare`): each :meth:`execute` binds new
    values and skips parsing, checking and planning the text again."""

    def __init__(self, inner: _internal.PreparedStatement) -> None:
        self._inner = inner

    @property
    def sql(self) -> str:
        """The statement's text."""
        return self._inner.sql

    def execute(self, params: Params | None = None) -> QueryResult:
        """The statement with ``params`` bound; read the result to run it."""
        return QueryResult(self._inner.execute(params))

    def parameter_types(self) -> list[tuple[str, str | None]]:
        """Each placeholder and the Arrow type the statement needs there (``None``: any)."""
        return self._inner.parameter_types()

    def __repr__(self) -> str:
        return repr(self._inner)


class Session:
    """Queries of one user and client on an :class:`Engine` (see :meth:`Engine.session`)."""

    def __init__(self, inner: _internal.Session) -> None:
        self._inner = inner

    @property
    def user(self) -> str:
        return self._inner.user

    @property
    def client(self) -> str:
        return self._inner.client

    def sql(self, query: str | bytes, params: Params | None = None) -> QueryResult:
        """:meth:`Engine.sql` on behalf of this session's user and client."""
        return QueryResult(self._inner.sql(query, params))

    def prepare(self, query: str | bytes) -> PreparedStatement:
        """:meth:`Engine.prepare` on behalf of this session's user and client."""
        return PreparedStatement(self._inner.prepare(query))

    def table(self, name: str) -> Query:
        """:meth:`Engine.table` on behalf of this session's user: their roles apply when the
        query runs."""
        from ibarrow._query import Query

        return Query(self._inner.table(name))

    def __repr__(self) -> str:
        return repr(self._inner)


class Engine:
    """Several ODBC databases behind one SQL interface.

    Each source is a catalog: its tables are ``<source>.<schema>.<table>`` (SQLite's schema
    is ``main``, MariaDB's is the database). One statement may join tables of several
    sources; filters, projections, limits and same-source joins and aggregates run in the
    databases.
    """

    def __init__(
        self,
        target_partitions: int | None = None,
        user: str | None = None,
        client: str = "python",
        memory_limit: int | str | None = None,
        cluster: str | None = None,
    ) -> None:
        """An engine without sources; ``target_partitions`` defaults to the cores.

        Queries run on behalf of ``user`` (default: the OS user) from ``client``: the
        engine's rate limits and logs count them under these names. ``memory_limit`` (bytes,
        or text such as ``"512MB"``) bounds what all queries hold: sorts and aggregates spill
        to disk to stay under it, and a query that cannot raises
        :class:`ibarrow.MemoryLimitError`. With ``cluster="df://HOST:PORT"`` queries run on
        that Ballista cluster, whose scheduler and executors open the same sources from
        their own configuration (docs/cluster.md).
        """
        self._inner = _internal.Engine(target_partitions, user, client, memory_limit, cluster)

    @classmethod
    def from_config(
        cls,
        path: str | PathLike[str],
        user: str | None = None,
        client: str = "python",
        profile: str | None = None,
        cluster: str | None = None,
    ) -> Engine:
        """An engine with the sources of a TOML configuration file: ``${VAR}``,
        ``${env:VAR}`` and ``${file:/run/secrets/x}`` resolved, and ``[profiles.<profile>]``
        applied (default: the profile ``IBARROW_PROFILE`` names). ``cluster`` overrides the
        file's ``[engine] cluster``."""
        engine = cls.__new__(cls)
        engine._inner = _internal.Engine.from_config(path, user, client, profile, cluster)
        return engine

    def reload(
        self, path: str | PathLike[str] | None = None, profile: str | None = None
    ) -> dict[str, Any]:
        """Read a configuration file again (by default the one :meth:`from_config` read, with
        its profile) and apply it to the running engine: sources added, removed or changed,
        roles, rate limits, defaults for sources and ``log_level``. Queries already planned
        finish on the settings they started with. A file that is refused (it does not
        validate, or a new source cannot be opened) raises and changes nothing. Returns what
        changed: ``added``, ``removed``, ``changed``, ``roles_changed``, ``limits_changed``,
        ``log_level`` and ``needs_restart`` (keys read only at start)."""
        return self._inner.reload(path, profile)

    def register_odbc(
        self,
        name: str,
        connection_string: str,
        *,
        replicas: list[str] | None = None,
        read_from: str | None = None,
        balance: str | None = None,
        max_replica_lag_secs: int | None = None,
    ) -> None:
        """Connect an ODBC database as source ``name``.

        ``replicas`` lists connection strings of copies of the same data: reads spread over
        them as ``read_from`` (``"replicas"``, ``"primary"``, ``"any"``) and ``balance``
        (``"least_busy"``, ``"round_robin"``) say, fail over between them, and skip replicas
        more than ``max_replica_lag_secs`` behind; writes go to ``connection_string``.
        """
        self._inner.register_odbc(
            name,
            connection_string,
            replicas=replicas,
            read_from=read_from,
            balance=balance,
            max_replica_lag_secs=max_replica_lag_secs,
        )

    def sql(self, query: str | bytes, params: Params | None = None) -> QueryResult:
        """Plan ``query`` (DataFusion SQL; bytes must be UTF-8); read the result to run it.

        One statement that reads (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE), or an INSERT INTO a
        table of a source configured ``writable``; anything else, text over the size limit or
        with control characters raises :class:`ibarrow.InputError`. Runs on behalf of the
        engine's ``user`` and ``client``; :meth:`session` gives other identities.

        ``params`` gives values for the statement's placeholders (:data:`Params`):
        ``eng.sql("SELECT * FROM pg.public.orders WHERE id = $1", params=[7])`` or
        ``params={"id": 7}`` for ``$id``.
        """
        return QueryResult(self._inner.sql(query, params))

    def prepare(self, query: str | bytes) -> PreparedStatement:
        """Plan ``query`` once for running many times with new values
        (:meth:`PreparedStatement.execute`). It is planned again by itself when the access
        policy is reloaded."""
        return PreparedStatement(self._inner.prepare(query))

    def session(self, user: str, client: str = "python") -> Session:
        """Queries on behalf of ``user`` from ``client`` (a web application's end user,
        say): rate limits and the query log count them under these names."""
        return Session(self._inner.session(user, client))

    def table(self, name: str) -> Table:
        """The table ``name`` (``source.schema.table``) as a lazy :class:`Query` to build on
        (``.filter(ib.col("status") == "open").select(...)``); it can also be registered in a
        ``datafusion.SessionContext``."""
        from ibarrow._query import Query, Table

        inner = self._inner
        return Table(query=Query(inner.table(name)), name=name,
                     export=lambda: inner.export_table(name))

    def refresh(self, source: str) -> None:
        """Forget the cached schemas and tables of ``source``."""
        self._inner.refresh(source)

    @property
    def sources(self) -> list[str]:
        """The registered sources' names."""
        return self._inner.sources()

    def insights(self) -> dict[str, Any]:
        """What ran so far: ``statements_by_total_time`` and ``statements_by_p95`` (text with
        literals masked, runs, errors, total/mean/p95 milliseconds, rows), ``users``,
        ``sources`` (rows, bytes, time in the driver), ``cache`` (hits, misses, bypassed,
        hit_rate) and ``index_advice`` (``CREATE INDEX`` statements for filter columns no index
        covers, with the scans and rows that show why)."""
        import json

        return json.loads(self._inner.insights_json())

    def metrics_prometheus(self) -> str:
        """Counters of the queries run so far (by outcome, errors by kind, rows and bytes per
        source, a duration histogram) in the Prometheus text format."""
        return self._inner.metrics_prometheus()

    def health(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Each source's reachability, ping latency, pool use and breaker state."""
        return self._inner.health(timeout)

    def __repr__(self) -> str:
        return repr(self._inner)


def odbc_table(connection_string: str, table: str, source_name: str = "odbc") -> Table:
    """Connect to a database and return ``schema.table`` for a datafusion-python context.

    >>> ctx = datafusion.SessionContext()
    >>> ctx.register_table("orders", ibarrow.odbc_table(conn_str, "public.orders"))
    """
    from ibarrow._query import Table

    return Table(_internal.odbc_table(connection_string, table, source_name))
