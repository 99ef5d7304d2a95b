"""The engine for SQLite or PostgreSQL and the transaction (rows written fast: ``writes``)."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Boolean,
    Engine,
    Table,
    any_,
    bindparam,
    create_engine,
    event,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Dialect, Result, make_url
from sqlalchemy.exc import DataError, DBAPIError, InvalidatePoolError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from gateway import effects
from gateway.store import writes
from gateway.store.models import Base

__all__ = ["UNAVAILABLE", "Database", "ValueRefused", "insert_ignore", "read_or_insert",
           "make_engine", "one_of", "padded", "rowcount"]

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
        event.listen(self._sessions, "before_commit", writes.write_queued)
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


class _OneOf(ColumnElement[bool]):
    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a condition as it is, not compared with 1 (SQLite)
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("name", InternalTraversal.dp_string)]

    def __init__(self, column: ColumnElement[Any], name: str) -> None:
        self.column, self.name = column, name


def one_of(column: ColumnElement[Any] | QueryableAttribute[Any], name: str
           ) -> ColumnElement[bool]:
    """``column`` is one of the values of the list parameter ``name`` (pass it ``padded``).

    One SQL text for any number of values: on PostgreSQL ``= ANY`` of an array, which the
    driver parses once and the server plans once; elsewhere an ``IN`` list, whose text the
    padding keeps to a handful of lengths. (An ``IN`` list of more than 50 values makes
    psycopg parse the statement again at every execution.)
    """
    return _OneOf(column if isinstance(column, ColumnElement) else column.__clause_element__(),
                  name)


@compiles(_OneOf)
def _in_list(element: _OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column.in_(bindparam(element.name, expanding=True)), **kw)


@compiles(_OneOf, "postgresql")
def _any_of_array(element: _OneOf, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column == any_(bindparam(element.name)), **kw)


def padded(ids: Iterable[T]) -> list[T]:
    """``ids`` for a ``one_of`` parameter, padded (by repeating one) to a power-of-two length.

    Where ``one_of`` is an ``IN`` list (SQLite), a list of every length makes a new SQL text,
    which is compiled and prepared again; a handful of lengths keeps the statements cached. (On
    PostgreSQL the array takes any length in one text; the repeats cost nothing there.)
    """
    values = list(ids)
    if not values:
        return values
    size = 8
    while size < len(values):
        size *= 2
    return values + [values[-1]] * (size - len(values))


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


def read_or_insert(session: Session, model: type[Base], column: str, **values: Any) -> Any:
    """``column`` of the row under the key of ``values``, inserting ``values`` first when
    there is none; None when that is NULL, or when another transaction's row of that key is
    not visible yet (it committed after this statement began).

    One statement on PostgreSQL, new row or known; on SQLite, whose writers take turns, a
    read and, for a new row, the insert.
    """
    session.flush()
    sql = session.connection()
    if sql.dialect.name == "postgresql":
        return sql.execute(_inserting_or_reading(model, column, tuple(values)), values).scalar()
    found = sql.execute(_reading(model, column), values).first()
    if found is not None:
        return found[0]
    return values[column] if insert_ignore(session, model, **values) else None


def _key_is_given(table: Table) -> list[Any]:
    return [key == bindparam(key.name) for key in table.primary_key.columns]


@functools.cache
def _reading(model: type[Base], column: str) -> Any:
    table = model.__table__
    return select(table.c[column]).where(*_key_is_given(table))


@functools.cache
def _inserting_or_reading(model: type[Base], column: str, columns: tuple[str, ...]) -> Any:
    """``WITH inserted AS (INSERT ... ON CONFLICT DO NOTHING RETURNING ...) SELECT ... FROM
    inserted UNION ALL SELECT ... FROM the table``: the second part reads the statement's
    snapshot, which does not hold the row the first part inserts, so one row comes back."""
    table = model.__table__
    inserted = (postgresql.insert(table).values({c: bindparam(c) for c in columns})
                .on_conflict_do_nothing().returning(table.c[column]).cte("inserted"))
    return union_all(select(inserted.c[column]),
                     select(table.c[column]).where(*_key_is_given(table)))
