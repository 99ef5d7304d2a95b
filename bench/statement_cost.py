"""What one SQL statement costs here, through SQLAlchemy Core and through bare psycopg.

    python bench/statement_cost.py [-n 3000] [--database-url URL] [--repeat 3]

The hot paths of a payment are a chain of small statements (hot_paths.py counts them per
call), so the cost of one statement sets a floor under the cost of a payment. On one connection to
PostgreSQL, in blocks alternating between the two clients (the baseline is bare psycopg):

  - a primary-key SELECT of one row (the shape of most reads on the hot paths);
  - a one-row INSERT (the shape of most writes);
  - a transaction of that SELECT alone (BEGIN, SELECT, COMMIT): less the SELECT, what each
    transaction adds.

Prints, per statement: the client's CPU, the server backend's CPU (read from /proc: same
machine) and the wall time, medians of --repeat runs, with the ratio of Core to bare psycopg.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
from sqlalchemy import (  # noqa: E402
    BigInteger,
    Column,
    Connection,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    insert,
    select,
)

from gateway import migrate  # noqa: E402

ROWS = Table("cost_rows", MetaData(), Column("id", String(32), primary_key=True),
             Column("amount", BigInteger), Column("note", String(80)))
_SELECT = select(ROWS.c.id, ROWS.c.amount, ROWS.c.note).where(ROWS.c.id == bindparam("id"))
_INSERT = insert(ROWS)
SELECT_SQL = "SELECT id, amount, note FROM cost_rows WHERE id = %(id)s"
INSERT_SQL = "INSERT INTO cost_rows (id, amount, note) VALUES (%(id)s, %(amount)s, %(note)s)"


def measure(step: Callable[[int], None], n: int, backend: psutil.Process) -> tuple[float, ...]:
    """Client CPU, server CPU and wall time of one step, in microseconds."""
    server = sum(backend.cpu_times()[:2])
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        step(i)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    server = sum(backend.cpu_times()[:2]) - server
    return cpu * 1e6 / n, server * 1e6 / n, wall * 1e6 / n


def steps(connection: Connection, run: int) -> dict[str, tuple[Callable, Callable]]:
    """Each shape's (Core, psycopg) step; inserts use keys of their own per run and client."""
    cursor = connection.connection.driver_connection.cursor()

    def key(client: str, i: int) -> str:
        return f"{client}{run}-{i}"

    def transaction_core(i: int) -> None:
        connection.execute(_SELECT, {"id": f"r{i % 100}"}).all()
        connection.commit()

    def transaction_bare(i: int) -> None:
        cursor.execute(SELECT_SQL, {"id": f"r{i % 100}"}).fetchall()
        cursor.connection.commit()

    return {
        "SELECT by key": (
            lambda i: connection.execute(_SELECT, {"id": f"r{i % 100}"}).all(),
            lambda i: cursor.execute(SELECT_SQL, {"id": f"r{i % 100}"}).fetchall()),
        "INSERT one row": (
            lambda i: connection.execute(_INSERT, {"id": key("c", i), "amount": i, "note": "x"}),
            lambda i: cursor.execute(INSERT_SQL, {"id": key("p", i), "amount": i, "note": "x"})),
        "SELECT and COMMIT": (transaction_core, transaction_bare),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="statements per block")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get(
        "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    if args.n < 1 or args.repeat < 1:
        parser.error("-n and --repeat must be at least 1")
    with migrate.private_schema(args.database_url, prefix="cost") as url:
        engine = create_engine(url)
        if engine.dialect.name != "postgresql":
            parser.error("this measures PostgreSQL: give a postgresql+psycopg:// URL")
        ROWS.metadata.create_all(engine)
        results: dict[str, list[tuple[float, ...]]] = {}
        with engine.connect() as connection:
            connection.execute(_INSERT, [{"id": f"r{i}", "amount": i, "note": "seed"}
                                         for i in range(100)])
            connection.commit()
            backend = psutil.Process(connection.exec_driver_sql(
                "SELECT pg_backend_pid()").scalar_one())
            connection.commit()
            for run in range(args.repeat + 1):  # the first run warms up and is dropped
                for shape, (core, bare) in steps(connection, run).items():
                    for label, step in ((f"{shape}, Core", core), (f"{shape}, psycopg", bare)):
                        figures = measure(step, args.n, backend)
                        if run:
                            results.setdefault(label, []).append(figures)
                    connection.commit()
        engine.dispose()
    print(f"PostgreSQL on this machine, {args.n} a block, medians of {args.repeat}; "
          f"microseconds per statement:")
    print(f"{'':34} {'client CPU':>11} {'server CPU':>11} {'wall':>8} {'client × psycopg':>17}")
    for label, runs in results.items():
        client, server, wall = (median(r[k] for r in runs) for k in range(3))
        base = median(r[0] for r in results[label.rsplit(", ", 1)[0] + ", psycopg"])
        print(f"{label:34} {client:11.0f} {server:11.0f} {wall:8.0f} {client / base:17.1f}")


if __name__ == "__main__":
    main()
