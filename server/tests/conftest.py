"""Test bed of `ibarrow serve`: the built `ibarrow` binary (IBARROW_BIN, set by
scripts/test-server) serving tables of the local PostgreSQL and MariaDB, filled here through
each database's own client. Expected answers come from the generator below, never from
ibarrow."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

BIN = os.environ.get("IBARROW_BIN", "ibarrow")
PG_CONN = "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=ibarrow_test;Uid=ibarrow;Pwd=${IBT_PG_PW};"
MARIADB_CONN = "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=ibarrow_test;Uid=ibarrow;Pwd=${IBT_PG_PW};"

CUSTOMERS = 300
ORDERS = 6000
BIG = 200_000
ALICE_PW = "alice-Secret-1"
BOB_PW = "bob-Secret-2"

JOIN_SQL = (
    "SELECT c.region, count(*) AS orders, sum(o.amount) AS total "
    "FROM pg.public.srv_customers c JOIN maria.ibarrow_test.srv_orders o "
    "ON o.customer_id = c.id GROUP BY c.region ORDER BY c.region"
)


def customer_region(cid: int) -> str:
    return f"r{cid % 5}"


def order_row(oid: int) -> tuple[int, int, Decimal]:
    return oid, oid % CUSTOMERS + 1, Decimal(oid % 97) + Decimal("0.25")


def expected_join() -> list[tuple[str, int, Decimal]]:
    """The answer of JOIN_SQL, from the generator."""
    totals: dict[str, list] = {}
    for oid in range(1, ORDERS + 1):
        _, cid, amount = order_row(oid)
        entry = totals.setdefault(customer_region(cid), [0, Decimal(0)])
        entry[0] += 1
        entry[1] += amount
    return [(region, n, total) for region, (n, total) in sorted(totals.items())]


def psql(sql: str) -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "ibarrow", "-d", "ibarrow_test", "-v", "ON_ERROR_STOP=1",
         "-q", "-tA", "-c", sql],
        check=True, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": "ibarrow"},
    ).stdout


def mariadb(sql: str) -> str:
    return subprocess.run(
        ["mariadb", "-h", "127.0.0.1", "-uibarrow", "-pibarrow", "ibarrow_test", "-N", "-B", "-e", sql],
        check=True, capture_output=True, text=True,
    ).stdout


@pytest.fixture(scope="session", autouse=True)
def tables() -> None:
    psql(
        "DROP TABLE IF EXISTS srv_customers, srv_big, srv_writes; "
        "CREATE TABLE srv_customers (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL, "
        "region VARCHAR(10) NOT NULL); "
        f"INSERT INTO srv_customers SELECT g, 'customer ' || g, 'r' || (g % 5) "
        f"FROM generate_series(1, {CUSTOMERS}) g; "
        "CREATE TABLE srv_big (id INTEGER PRIMARY KEY, payload VARCHAR(40)); "
        f"INSERT INTO srv_big SELECT g, 'payload ' || g FROM generate_series(1, {BIG}) g; "
        "CREATE TABLE srv_writes (id INTEGER PRIMARY KEY, note VARCHAR(40)); "
        "ANALYZE srv_customers; ANALYZE srv_big"
    )
    mariadb(
        "DROP TABLE IF EXISTS srv_orders; "
        "CREATE TABLE srv_orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, "
        "amount DECIMAL(10,2) NOT NULL); "
        "SET SESSION max_recursive_iterations = 100000; "
        f"INSERT INTO srv_orders WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g "
        f"WHERE n < {ORDERS}) SELECT n, n % {CUSTOMERS} + 1, n % 97 + 0.25 FROM g"
    )


@dataclass
class Served:
    """A running `ibarrow serve` and how to reach it."""

    process: subprocess.Popen
    config: Path
    flight: str | None
    http: str | None
    env: dict = field(default_factory=dict)
    stderr_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path else ""


def bob_hash() -> str:
    out = subprocess.run([BIN, "passwd"], input=BOB_PW + "\n", check=True, capture_output=True,
                         text=True, timeout=60)
    return out.stdout.strip()


def base_config(server: str, extra: str = "") -> str:
    return f"""
[engine]
{extra}

[sources.pg]
connection_string = "{PG_CONN}"
partitions = 4
min_partition_rows = 1000

[sources.pg.tables.srv_big]
partition_column = "id"

[sources.pgw]
connection_string = "{PG_CONN}"
writable = true

[sources.maria]
connection_string = "{MARIADB_CONN}"

[server]
{server}
"""


def serve(tmp: Path, config_text: str, env: dict | None = None, wait: float = 90) -> Served:
    """Starts `ibarrow serve --config` on `config_text` and waits for its ready line."""
    config = tmp / "server.toml"
    config.write_text(config_text)
    env = {**os.environ, "IBT_PG_PW": "ibarrow", "IBT_ALICE_PW": ALICE_PW,
           "IBARROW_LOG": os.environ.get("IBARROW_LOG", "info"), **(env or {})}
    stderr_path = tmp / "server.stderr"
    process = subprocess.Popen([BIN, "serve", "--config", str(config)], stdout=subprocess.PIPE,
                               stderr=stderr_path.open("w"), text=True, env=env)
    deadline = time.monotonic() + wait
    line = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("ibarrow serve:") or process.poll() is not None:
            break
    if not line.startswith("ibarrow serve:"):
        process.kill()
        raise RuntimeError(f"server did not start: {line!r} {stderr_path.read_text()}")
    flight = re.search(r"Flight SQL on (\S+?)(,|$)", line)
    http = re.search(r"HTTP on (\S+?)(,|$)", line)
    return Served(process, config, flight and flight.group(1), http and http.group(1), env,
                  stderr_path)


def users_section() -> str:
    return f"""
[users.alice]
password = "${{IBT_ALICE_PW}}"

[users.bob]
password_hash = "{bob_hash()}"
"""


@pytest.fixture(scope="session")
def server(tables) -> Served:
    tmp = Path(tempfile.mkdtemp(prefix="ibarrow-serve-"))
    served = serve(tmp, base_config(
        'flight_sql = "127.0.0.1:0"\nhttp = "127.0.0.1:0"\nshutdown_grace_secs = 5\n'
    ) + users_section())
    yield served
    code = served.stop()
    assert code == 0, served.stderr()


def pg_active_ibarrow_statements() -> int:
    """Statements running on PostgreSQL for the ibarrow role, other than this check."""
    return int(psql(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'ibarrow' AND state = 'active' "
        "AND pid <> pg_backend_pid()"
    ).strip())
