"""The engine for SQLite or PostgreSQL, the transaction, and how rows are written fast."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Engine,
    Table,
    bindparam,
    create_engine,
    event,
    insert,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Dialect, Result, make_url
from sqlalchemy.exc import DataError, DBAPIError, InvalidatePoolError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import TextClause

from gateway import effects
from gateway.store.models import Base

__all__ = ["UNAVAILABLE", "Database", "ValueRefused", "insert_at_commit", "insert_ignore",
           "insert_rows", "make_engine", "padded", "rowcount", "write_at_commit"]

#: What the database raises when it cannot be reached or does not answer: callers answer
#: "retry later" (503) rather than fail.
UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError,)
#: What the database raises for a value it cannot store that validation let through.
ValueRefused = DataError

T = TypeVar("T")


# --- engine and transactions -----------------------------------------------------------------


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy issue BEGIN itself (below) instead of pysqlite's deferred BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # A writing transaction takes the write lock at BEGIN: a deferred one that reads and then
    # writes can fail with "database is locked" under concurrency instead of waiting its turn.
    readonly = connection.get_execution_options().get("read_only", False)
    connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # hide_parameters: an error must never put a phone number or an SMS text in a log.
    # Every connection the pool opens stays in it (up to 30, none beyond): a pool that closes
    # what it holds beyond pool_size opens them again under load, each a new PostgreSQL backend
    # whose caches and prepared statements start empty (a gunicorn worker's 16 threads did so
    # about once every 11 requests with pool_size 10).
    engine = create_engine(url, pool_size=30, max_overflow=0, hide_parameters=True)
    event.listen(engine, "checkin", _note_idle)
    event.listen(engine, "checkout", functools.partial(_ping_if_idle, engine.dialect))
    return engine


# A connection idle in the pool for longer than this is pinged before use: the server, a proxy
# or a firewall may have closed it meanwhile. One used moments ago is not (a ping is a round
# trip, one a request under load with pool_pre_ping); should it have died all the same, its
# statement fails, the request answers 503, and the pool renews every connection.
PING_AFTER_IDLE_SECONDS = 5.0
_IDLE_SINCE = "idle_since"


def _note_idle(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_IDLE_SINCE] = time.monotonic()


def _ping_if_idle(dialect: Dialect, dbapi_connection: Any, record: ConnectionPoolEntry,
                  _proxy: Any) -> None:
    idle_since = record.info.get(_IDLE_SINCE)
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
        return
    try:
        dialect.do_ping(dbapi_connection)
    except dialect.loaded_dbapi.Error as error:
        if dialect.is_disconnect(error, dbapi_connection, None):
            # the pool drops this connection, and those older than it, and opens a new one
            raise InvalidatePoolError("the connection was closed while idle") from error
        raise


class Database:
    """The engine and the one way to run a transaction against it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self._sessions, "before_commit", _write_queued)
        self._handlers: dict[str, list[effects.Handler]] = {}
        event.listen(self._sessions, "after_commit",
                     lambda session: effects.run(session, self._handlers))
        event.listen(self._sessions, "after_soft_rollback",
                     lambda session, _previous: effects.drop(session))
        self._reads = sessionmaker(self.engine.execution_options(read_only=True),
                                   expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yield a session in one transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """Like ``transaction`` for work that only reads: on SQLite it takes no write lock."""
        with self._reads() as session, session.begin():
            yield session

    def ping(self) -> None:
        """Run ``SELECT 1``. :raise: one of ``UNAVAILABLE`` when the database does not answer."""
        with self.read() as session:
            session.execute(text("SELECT 1"))

    def describe_error(self, error: BaseException) -> str | None:
        """Where and how the database failed (``postgresql at db:5432/tvpay: ...``), without
        the password; None when ``error`` is not the database's."""
        if not isinstance(error, DBAPIError):
            return None
        url = make_url(self.url)
        place = url.database if url.get_backend_name() == "sqlite" else \
            f"{url.host}:{url.port or 5432}/{url.database}"
        return f"{url.get_backend_name()} at {place}: {error.orig}"

    @property
    def password(self) -> str | None:
        """The password in the database URL, for callers that scrub it from texts."""
        return make_url(self.url).password

    def on_commit(self, kind: str, handler: effects.Handler) -> None:
        """After each commit, call ``handler`` with what the transaction noted of ``kind``
        (``gateway.effects.after_commit``)."""
        self._handlers.setdefault(kind, []).append(handler)

    def dispose(self) -> None:
        self.engine.dispose()


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE run by ``Session.execute`` matched.

    Its result is then a ``CursorResult``, which the method's annotation does not say.
    """
    return cast(CursorResult[Any], result).rowcount


def padded(ids: Iterable[T]) -> list[T]:
    """``ids`` for an ``IN`` list, padded (by repeating one) to a power-of-two length.

    An ``IN`` list of every length makes a new SQL text, which the driver parses and the
    server plans again; a handful of lengths keeps the hot statements cached and prepared.
    """
    values = list(ids)
    if not values:
        return values
    size = 8
    while size < len(values):
        size *= 2
    return values + [values[-1]] * (size - len(values))


def insert_rows(session: Session, model: type[Base], *rows: dict[str, Any]) -> None:
    """Write rows that nothing reads back as objects in this transaction, as plain SQL.

    The hot paths write several such rows per payment (events, postings, SMS), and the unit
    of work costs more Python than the statement. Unlike ``session.add`` this writes at once and
    does not flush pending objects first: a row must not point at an object not yet flushed.
    """
    if not rows:
        return
    sql = session.connection()
    if len(rows) == 1:
        sql.execute(_plain_insert(model), rows[0])
        return
    # several rows as multi-row INSERTs (an executemany runs a statement per row), in chunks
    # whose sizes are powers of two, so that a handful of statements is built and cached and a
    # batch of n rows costs at most log2(n) + 1 statements
    columns = tuple(rows[0])
    start = 0
    while start < len(rows):
        size = min(_MAX_ROWS_PER_INSERT, 1 << ((len(rows) - start).bit_length() - 1))
        chunk = rows[start:start + size]
        sql.execute(_multi_row_insert(model, size, columns), {
            f"{column}_{i}": row[column] for i, row in enumerate(chunk) for column in columns})
        start += size


_MAX_ROWS_PER_INSERT = 128


@functools.cache
def _plain_insert(model: type[Base]) -> Insert:
    return insert(model.__table__)


@functools.cache
def _multi_row_insert(model: type[Base], count: int, columns: tuple[str, ...]) -> TextClause:
    """``INSERT ... VALUES (...), (...)`` as text: SQLAlchemy compiles a multi-row ``insert()``
    anew at every execution, a text clause once."""
    table = model.__table__
    names = ", ".join(f'"{column}"' for column in columns)
    rows = ", ".join("(" + ", ".join(f":{column}_{i}" for column in columns) + ")"
                     for i in range(count))
    return text(f'INSERT INTO "{table.name}" ({names}) VALUES {rows}').bindparams(*(
        bindparam(f"{column}_{i}", type_=table.c[column].type)
        for i in range(count) for column in columns))


_QUEUED_ROWS = "db.queued_rows"
_WRITERS = "db.writers_at_commit"


def insert_at_commit(session: Session, model: type[Base], row: dict[str, Any]) -> None:
    """Queue a row that nothing reads in this transaction, to be written at its commit.

    A transaction's queued rows go just before it commits, each table's run of rows in one
    statement: the two or three events of a payment's step cost one statement, not three.
    (Not for use inside a SAVEPOINT that may roll back alone: the row would still be written.)
    """
    session.info.setdefault(_QUEUED_ROWS, []).append((model, row))


def write_at_commit(session: Session, writer: Callable[[Session], None]) -> None:
    """Have ``writer`` run just before the transaction commits, once however often it is
    asked for: for a module that gathers what a transaction writes to its tables and writes
    it together (``gateway.payment.ledger``'s journal). The same caveat as ``insert_at_commit``
    about SAVEPOINTs holds."""
    session.info.setdefault(_WRITERS, {})[writer] = None  # an ordered set


def _write_queued(session: Session) -> None:
    """Before a commit: the writers first (their rows may refer to nothing queued), then the
    queued rows, each table's in one statement (or a few, for many rows)."""
    writers = session.info.pop(_WRITERS, {})
    queued = session.info.pop(_QUEUED_ROWS, [])
    if not writers and not queued:
        return
    session.flush()  # what is written now may refer to an object still pending
    for writer in writers:
        writer(session)
    by_table: dict[type[Base], list[dict[str, Any]]] = {}
    for model, row in queued:
        by_table.setdefault(model, []).append(row)
    for model, rows in by_table.items():
        insert_rows(session, model, *rows)


def insert_ignore(session: Session, model: type[Base], **values: Any) -> bool:
    """Insert a row unless one with the same key exists (race-free on both databases); say
    whether it was inserted."""
    session.flush()  # as an ORM statement would: the row may refer to pending objects
    statement = _insert_ignoring(session.get_bind().dialect.name, model)
    return session.connection().execute(statement, values).first() is not None


@functools.cache
def _insert_ignoring(dialect: str, model: type[Base]) -> Insert:
    inserts: dict[str, Callable[[Table], postgresql.Insert | sqlite.Insert]] = {
        "postgresql": postgresql.insert, "sqlite": sqlite.insert}
    dialect_insert = inserts[dialect]
    table = model.__table__
    return dialect_insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)

