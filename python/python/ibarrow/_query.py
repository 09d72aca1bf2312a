"""The query builder: expressions and lazy queries built step by step.

>>> import ibarrow as ib
>>> eng = ib.Engine.from_config("demo.toml")
>>> open_orders = eng.table("shop.main.orders").filter(ib.col("status") == "open")
>>> open_orders.select("order_id", "customer_id").limit(5).to_polars()

Each step checks the columns it names against the result of the steps before it: an unknown
column raises :class:`ibarrow.InputError` naming the close matches. Nothing runs until the
query is read (``to_arrow``, ``to_polars``, iteration …), and each read runs it again.
"""

from __future__ import annotations

from typing import Any, Union

from ibarrow import _internal
from ibarrow._engine import QueryResult, _pyarrow
from ibarrow._errors import Error, InputError


class Expr:
    """A column, a value or a computation on them. Python's operators build expressions:
    ``(ib.col("amount") * 2 > 100) & ib.col("status").isin(["open", "paid"])``."""

    __slots__ = ("_inner",)

    def __init__(self, inner: _internal.Expr) -> None:
        self._inner = inner

    def _binary(self, op: str, other: Any) -> Expr:
        return Expr(self._inner.binary(op, _expr(other)._inner))

    def _reflected(self, op: str, other: Any) -> Expr:
        return Expr(_expr(other)._inner.binary(op, self._inner))

    def __eq__(self, other: Any) -> Expr:  # type: ignore[override]
        # `== None` means "is null" here; SQL's `= NULL` would match no row.
        return self.is_null() if other is None else self._binary("==", other)

    def __ne__(self, other: Any) -> Expr:  # type: ignore[override]
        return self.is_not_null() if other is None else self._binary("!=", other)

    def __lt__(self, other: Any) -> Expr:
        return self._binary("<", other)

    def __le__(self, other: Any) -> Expr:
        return self._binary("<=", other)

    def __gt__(self, other: Any) -> Expr:
        return self._binary(">", other)

    def __ge__(self, other: Any) -> Expr:
        return self._binary(">=", other)

    def __add__(self, other: Any) -> Expr:
        return self._binary("+", other)

    def __radd__(self, other: Any) -> Expr:
        return self._reflected("+", other)

    def __sub__(self, other: Any) -> Expr:
        return self._binary("-", other)

    def __rsub__(self, other: Any) -> Expr:
        return self._reflected("-", other)

    def __mul__(self, other: Any) -> Expr:
        return self._binary("*", other)

    def __rmul__(self, other: Any) -> Expr:
        return self._reflected("*", other)

    def __truediv__(self, other: Any) -> Expr:
        return self._binary("/", other)

    def __rtruediv__(self, other: Any) -> Expr:
        return self._reflected("/", other)

    def __mod__(self, other: Any) -> Expr:
        return self._binary("%", other)

    def __rmod__(self, other: Any) -> Expr:
        return self._reflected("%", other)

    def __and__(self, other: Any) -> Expr:
        return self._binary("&", other)

    def __rand__(self, other: Any) -> Expr:
        return self._reflected("&", other)

    def __or__(self, other: Any) -> Expr:
        return self._binary("|", other)

    def __ror__(self, other: Any) -> Expr:
        return self._reflected("|", other)

    def __invert__(self) -> Expr:
        return Expr(self._inner.not_())

    def __neg__(self) -> Expr:
        return Expr(self._inner.negative())

    def __bool__(self) -> bool:
        raise InputError(
            "an ibarrow expression has no truth value: combine conditions with & and | "
            "(not `and`/`or`), and compare with == inside filter()"
        )

    __hash__ = None  # type: ignore[assignment]

    def alias(self, name: str) -> Expr:
        """The expression under the column name ``name``."""
        return Expr(self._inner.alias(name))

    def is_null(self) -> Expr:
        return Expr(self._inner.is_null())

    def is_not_null(self) -> Expr:
        return Expr(self._inner.is_not_null())

    def isin(self, values: list[Any]) -> Expr:
        """True where the value is one of ``values`` (a list, tuple or set)."""
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise InputError(f"isin takes a list of values, not {type(values).__name__}")
        return Expr(self._inner.isin([_expr(v)._inner for v in values], False))

    def like(self, pattern: str) -> Expr:
        """SQL ``LIKE``: ``%`` matches any text, ``_`` one character."""
        return Expr(self._inner.like(_expr(pattern)._inner, False))

    def between(self, low: Any, high: Any) -> Expr:
        """``low <= self <= high``."""
        return Expr(self._inner.between(_expr(low)._inner, _expr(high)._inner))

    def cast(self, to: str) -> Expr:
        """The value as the Arrow type ``to`` (``"Int64"``, ``"Utf8"``, ``"Decimal128(12, 2)"``)."""
        return Expr(self._inner.cast(to))

    def asc(self, nulls_first: bool = False) -> SortExpr:
        return SortExpr(self._inner.sort(True, nulls_first))

    def desc(self, nulls_first: bool = False) -> SortExpr:
        return SortExpr(self._inner.sort(False, nulls_first))

    def __repr__(self) -> str:
        return repr(self._inner)


class SortExpr:
    """An expression with an order, for :meth:`Query.sort` (``ib.col("x").desc()``)."""

    __slots__ = ("_inner",)

    def __init__(self, inner: _internal.SortExpr) -> None:
        self._inner = inner

    def __repr__(self) -> str:
        return repr(self._inner)


IntoExpr = Union[Expr, str]
"""A column given by name, or an expression."""


def col(name: str) -> Expr:
    """The column ``name`` (``"orders.status"`` names the table too)."""
    return Expr(_internal.col(name))


def lit(value: Any) -> Expr:
    """A constant: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, a date, a
    datetime or a ``decimal.Decimal``."""
    return Expr(_internal.lit(value))


def _expr(value: Any) -> Expr:
    """A Python value as an expression: expressions stay, other values are constants."""
    return value if isinstance(value, Expr) else lit(value)


def _column(value: IntoExpr) -> Expr:
    """A column name or an expression."""
    return col(value) if isinstance(value, str) else value


def count(expr: IntoExpr | None = None) -> Expr:
    """The number of rows, or of non-null values of ``expr``."""
    return Expr(_internal.aggregate("count", None if expr is None else _column(expr)._inner))


def count_distinct(expr: IntoExpr) -> Expr:
    return Expr(_internal.aggregate("count_distinct", _column(expr)._inner))


def sum(expr: IntoExpr) -> Expr:  # noqa: A001 - mirrors SQL
    return Expr(_internal.aggregate("sum", _column(expr)._inner))


def avg(expr: IntoExpr) -> Expr:
    return Expr(_internal.aggregate("avg", _column(expr)._inner))


def min(expr: IntoExpr) -> Expr:  # noqa: A001 - mirrors SQL
    return Expr(_internal.aggregate("min", _column(expr)._inner))


def max(expr: IntoExpr) -> Expr:  # noqa: A001 - mirrors SQL
    return Expr(_internal.aggregate("max", _column(expr)._inner))


class Query(QueryResult):
    """A lazy query built step by step (:meth:`Engine.table`). Every step returns a new
    query; reading it (``to_arrow``, ``to_polars``, ``to_pandas``, iteration, ``pa.table``)
    runs it, as for :class:`QueryResult`."""

    def __init__(self, query: _internal.Query) -> None:
        self._query = query

    @property
    def _inner(self) -> _internal.QueryResult:  # type: ignore[override]
        # Planned as a statement of the session each time it is read: the access policy,
        # rate limits and the result cache apply as to SQL text.
        return self._query.result()

    @property
    def columns(self) -> list[str]:
        """The result's column names, known without running the query."""
        return self._query.columns()

    @property
    def schema(self) -> Any:
        """The result's ``pyarrow.Schema``, known without running the query."""
        return _pyarrow().schema(self._query)

    def __arrow_c_schema__(self) -> object:
        return self._query.__arrow_c_schema__()

    def filter(self, predicate: Expr) -> Query:
        """Keep the rows where ``predicate`` is true."""
        return Query(self._query.filter(predicate._inner))

    def select(self, *columns: IntoExpr | list[IntoExpr]) -> Query:
        """Keep these columns or expressions, in this order (``select("a", "b")`` or
        ``select(["a", "b"])``)."""
        return Query(self._query.select([_column(c)._inner for c in _flatten(columns)]))

    def with_column(self, name: str, expr: Expr) -> Query:
        """Add the column ``name`` computed by ``expr`` (or replace the one of that name)."""
        return Query(self._query.with_column(name, _expr(expr)._inner))

    def join(
        self,
        other: Query,
        on: str | list[str] | None = None,
        how: str = "inner",
        *,
        left_on: str | list[str] | None = None,
        right_on: str | list[str] | None = None,
    ) -> Query:
        """Join ``other`` on equal keys: ``on`` for columns both name alike (kept once, as
        SQL's ``USING``), or ``left_on`` and ``right_on``. ``how`` is ``"inner"``,
        ``"left"``, ``"right"``, ``"full"``, ``"semi"`` or ``"anti"``."""
        if not isinstance(other, Query):
            raise Error("join takes another query of the same engine (eng.table(...))")
        return Query(
            self._query.join(other._query, how, _names(on), _names(left_on), _names(right_on))
        )

    def group_by(self, *keys: IntoExpr | list[IntoExpr]) -> GroupBy:
        """Group the rows by ``keys``; :meth:`GroupBy.agg` says what to compute per group."""
        return GroupBy(self, [_column(k) for k in _flatten(keys)])

    def agg(self, *aggregates: Expr) -> Query:
        """Aggregates over all rows, as one row."""
        return GroupBy(self, []).agg(*aggregates)

    def sort(self, *order: IntoExpr | SortExpr) -> Query:
        """Order the rows: names and expressions ascending, ``.desc()`` for descending."""
        keys = [o._inner if isinstance(o, SortExpr) else _column(o)._inner.sort(True, False)
                for o in order]
        return Query(self._query.sort(keys))

    def limit(self, n: int | None, offset: int = 0) -> Query:
        """Skip ``offset`` rows, then keep at most ``n``."""
        return Query(self._query.limit(n, offset))

    def distinct(self) -> Query:
        """Keep one of each set of equal rows."""
        return Query(self._query.distinct())

    def alias(self, name: str) -> Query:
        """Name the query so far (``name.column`` then refers to its columns)."""
        return Query(self._query.alias(name))

    def to_sql(self) -> str:
        """The SQL the steps amount to (DataFusion's dialect)."""
        return self._query.to_sql()

    def explain(self, verbose: bool = False, analyze: bool = False) -> str:
        """The plan with the SQL sent to each database; ``analyze=True`` runs the query."""
        return self._query.explain(verbose, analyze)

    def __repr__(self) -> str:
        return f"ibarrow.Query(columns={self.columns})"


class GroupBy:
    """Rows grouped by keys (:meth:`Query.group_by`)."""

    def __init__(self, query: Query, keys: list[Expr]) -> None:
        self._query = query
        self._keys = keys

    def agg(self, *aggregates: Expr) -> Query:
        """One row per group: the keys, then each aggregate (``ib.sum("total")``)."""
        return Query(
            self._query._query.aggregate(
                [k._inner for k in self._keys], [a._inner for a in aggregates]
            )
        )


def _flatten(items: tuple) -> list:
    """``f("a", "b")`` and ``f(["a", "b"])`` alike."""
    flat: list = []
    for item in items:
        flat.extend(item) if isinstance(item, (list, tuple)) else flat.append(item)
    return flat


def _names(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


class Table(Query):
    """A table of the engine: a :class:`Query` to build on, which can also be registered in a
    ``datafusion.SessionContext`` (``ctx.register_table("orders", eng.table(...))``); filters
    and projections DataFusion pushes into it run in the database.

    :func:`ibarrow.odbc_table` gives a table for datafusion-python only.
    """

    def __init__(
        self,
        inner: _internal.Table | None = None,
        *,
        query: Query | None = None,
        name: str | None = None,
        export: Any = None,
    ) -> None:
        self._table = inner
        self._start = query
        self._name = name if name is not None else (inner.name if inner is not None else "")
        self._export = export

    @property
    def _query(self) -> _internal.Query:  # type: ignore[override]
        if self._start is None:
            raise Error(
                f"{self._name} comes from ibarrow.odbc_table, which is for datafusion-python "
                "only; build queries on Engine.table(...)"
            )
        return self._start._query

    @property
    def name(self) -> str:
        """The table's name as given."""
        return self._name

    def __datafusion_table_provider__(self, session: Any = None) -> object:
        """The FFI capsule of the table. Refused (``ibarrow.Error``) unless the installed
        ``datafusion`` has the major version this build speaks (``DATAFUSION_FFI_MAJOR``), or
        when the user's roles mask or filter the table."""
        if self._table is None:
            self._table = self._export()
        return self._table.__datafusion_table_provider__(session)

    def __repr__(self) -> str:
        return f"ibarrow.Table({self.name})"
