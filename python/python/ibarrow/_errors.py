"""Exceptions raised by ibarrow. Every one derives from :class:`Error`.

The 0.1 names ``PyConnectionError``, ``PySQLError`` and ``PyArrowError`` are aliases of
:class:`ConnectionError`, :class:`SQLError` and :class:`ArrowError`.
"""

from __future__ import annotations

import builtins


class Error(Exception):
    """Base class of every ibarrow error; the message says what to do next.

    Attributes, ``None`` when not known:

    - ``kind``: the kind of failure (``"sql"``, ``"connection"``, ``"timeout"``, ``"input"``,
      ``"access_denied"``, ``"config"``, ``"rate_limit"``, ``"circuit_open"``, ``"arrow"``,
      ``"memory"``, ``"internal"``);
    - ``source``: the name of the source (database) the error happened on;
    - ``sqlstate``: the five-character SQLSTATE the database reported;
    - ``statement``: the statement that was sent to the database.
    """

    kind: str = "internal"
    source: str | None = None
    sqlstate: str | None = None
    statement: str | None = None


class ConfigError(Error, ValueError):
    """A setting, argument or configuration file is invalid or names something unknown."""

    kind = "config"


class InputError(Error, ValueError):
    """The query text was refused before planning: too long, a control character, invalid
    UTF-8, several statements, or a statement that is not a query."""

    kind = "input"


class RateLimitError(Error):
    """A query quota of the engine (``[engine] rate_limits``) is used up; the message says
    when to retry."""

    kind = "rate_limit"


class AccessDeniedError(Error, PermissionError):
    """The user's roles do not grant what the statement reads or writes; the message names
    the table or column and the missing grant."""

    kind = "access_denied"


class ConnectionError(Error, builtins.ConnectionError):
    """A database could not be reached, refused the login, or dropped the connection."""

    kind = "connection"


class CircuitOpenError(ConnectionError):
    """A source failed repeatedly and is not being called for a while (see the message)."""

    kind = "circuit_open"


class TimeoutError(Error, builtins.TimeoutError):
    """A remote statement ran past its query timeout and was cancelled."""

    kind = "timeout"


class SQLError(Error):
    """The query was refused: a syntax error, an unknown table or column, a database error."""

    kind = "sql"


class ArrowError(Error):
    """A value could not be converted to Arrow (unsupported type, value too long)."""

    kind = "arrow"


class MemoryLimitError(Error, builtins.MemoryError):
    """The query needed more memory than the engine's ``[engine] memory_limit`` and could not
    spill; the message names the limit and what held the memory."""

    kind = "memory"


PyConnectionError = ConnectionError
PySQLError = SQLError
PyArrowError = ArrowError

__all__ = [
    "Error",
    "ConfigError",
    "InputError",
    "RateLimitError",
    "AccessDeniedError",
    "ConnectionError",
    "CircuitOpenError",
    "TimeoutError",
    "SQLError",
    "ArrowError",
    "MemoryLimitError",
    "PyConnectionError",
    "PySQLError",
    "PyArrowError",
]
