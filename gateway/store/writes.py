"""How rows are written fast: plain multi-row INSERTs, and rows queued to go at commit.

A use case queues the rows nothing reads back in its transaction (``insert_at_commit``): an
order in its final state, its hold, its SMS, the journal's entries and postings, the TV's
events. Just before the commit they are written together, parents before children:

- on PostgreSQL in one statement, each table's rows an ``INSERT`` in a ``WITH`` clause from
  one JSON parameter (foreign keys are checked at the end of a statement, so the order of the
  parts is free); a queued row may refer to a queued parent whose id the database assigns (a
  journal entry's postings), and gets it from ``nextval`` in the same statement;
- on SQLite, one statement per table, or a few for many rows.

Then the writers asked for with ``write_at_commit`` run, for work that is more than rows
(updates, reads of opt-outs): their statements may refer to the rows just written.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import String, bindparam, insert, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

from gateway.store.models import Base

__all__ = ["Key", "insert_at_commit", "insert_rows", "write_at_commit", "write_queued"]


def insert_rows(session: Session, model: type[Base], *rows: dict[str, Any]) -> None:
    """Write rows that nothing reads back as objects in this transaction, as plain SQL: on
    PostgreSQL one statement (its rows as JSON), on SQLite multi-row ``INSERT``s.

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
    if sql.dialect.name == "postgresql":  # one statement, whose text is the same for any count
        columns = tuple(rows[0])
        _write_in_one_statement(session, [_Group(model, columns, ("",) * len(columns), False,
                                                 list(rows), [None] * len(rows))])
        return
    # SQLite: several rows as multi-row INSERTs (an executemany runs a statement per row), in
    # chunks whose sizes are powers of two, so that a handful of statements is built and cached
    # and a batch of n rows costs at most log2(n) + 1 statements
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
def _plain_insert(model: type[Base]) -> Any:
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


# --- rows written at commit ------------------------------------------------------------------


class Key:
    """The id the database gives a queued row, for queued rows that refer to it (a journal
    entry's postings put its ``Key`` where the entry's id goes). ``value``: the id, once
    written one table at a time; the one-statement write gives it in the database only."""

    __slots__ = ("model", "value")

    def __init__(self, model: type[Base]) -> None:
        self.model = model
        self.value: int | None = None


class _Queued(NamedTuple):
    model: type[Base]
    row: dict[str, Any]
    key: Key | None


_QUEUED_ROWS = "writes.queued_rows"
_WRITERS = "writes.writers_at_commit"


def insert_at_commit(session: Session, model: type[Base], row: dict[str, Any], *,
                     keyed: bool = False) -> Key | None:
    """Queue a row that nothing reads in this transaction, to be written at its commit; with
    ``keyed``, return the ``Key`` that other queued rows use to refer to it.

    The row may be changed in hand until the commit: it is read then. (Not for use inside a
    SAVEPOINT that may roll back alone: the row would still be written.)
    """
    key = Key(model) if keyed else None
    session.info.setdefault(_QUEUED_ROWS, []).append(_Queued(model, row, key))
    return key


def write_at_commit(session: Session, writer: Callable[[Session], None]) -> None:
    """Have ``writer`` run just before the transaction commits, after its queued rows, once
    however often it is asked for: for a module that gathers what a transaction changes and
    changes it together (``gateway.store.outbox`` closing code messages)."""
    session.info.setdefault(_WRITERS, {})[writer] = None  # an ordered set


def write_queued(session: Session) -> None:
    """Before a commit: the queued rows, then the writers, until neither is left."""
    while True:
        queued: list[_Queued] = session.info.pop(_QUEUED_ROWS, [])
        writers = session.info.pop(_WRITERS, {})
        if not queued and not writers:
            return
        session.flush()  # what is written now may refer to an object still pending
        if queued:
            _write_rows(session, queued)
        for writer in writers:
            writer(session)


# the order in which a parent table comes before the tables that refer to it
_TABLE_ORDER = {table.name: i for i, table in enumerate(Base.metadata.sorted_tables)}


class _Group(NamedTuple):
    """A table's queued rows with the same columns, in the order queued."""

    model: type[Base]
    columns: tuple[str, ...]
    refs: tuple[str, ...]  # by column: the table of the keyed rows it refers to, or ""
    keyed: bool  # whether other rows refer to these (each has a ``Key``)
    rows: list[dict[str, Any]]
    keys: list[Key | None]

    @property
    def shape(self) -> tuple[str, tuple[str, ...], tuple[str, ...], bool]:
        """What the statement's text depends on; not the number of rows (they go as one JSON
        parameter)."""
        return self.model.__table__.name, self.columns, self.refs, self.keyed


def _groups(queued: Sequence[_Queued]) -> list[_Group]:
    """The rows by table, columns, what they refer to and whether they are keyed; parents
    first."""
    groups: dict[tuple[Any, ...], _Group] = {}
    for model, row, key in queued:
        columns = tuple(row)
        refs = tuple(value.model.__table__.name if type(value) is Key else ""
                     for value in row.values())
        keyed = key is not None
        group = groups.setdefault((model, columns, refs, keyed),
                                  _Group(model, columns, refs, keyed, [], []))
        group.rows.append(row)
        group.keys.append(key)
    return sorted(groups.values(), key=lambda g: _TABLE_ORDER[g.model.__table__.name])


def _write_rows(session: Session, queued: Sequence[_Queued]) -> None:
    groups = _groups(queued)
    keyed_tables = [group.model for group in groups if group.keyed]
    if (session.get_bind().dialect.name == "postgresql"
            and len(keyed_tables) == len(set(keyed_tables))):
        _write_in_one_statement(session, groups)
        return
    for group in groups:  # parents first: each row's keys are known when it is written
        rows = [{column: value.value if isinstance(value, Key) else value
                 for column, value in row.items()} for row in group.rows]
        if not group.keyed:
            insert_rows(session, group.model, *rows)
            continue
        ids = session.connection().execute(_keyed_insert(group.model), rows).scalars()
        for key, value in zip(group.keys, ids, strict=True):
            assert key is not None
            key.value = value


@functools.cache
def _keyed_insert(model: type[Base]) -> Any:
    table = model.__table__
    [key] = table.primary_key.columns
    return insert(table).returning(key, sort_by_parameter_order=True)


def _write_in_one_statement(session: Session, groups: Sequence[_Group]) -> None:
    numbers: dict[int, int] = {}  # id(key) -> the keyed row's number in its table, from 1
    for group in groups:
        for n, key in enumerate(group.keys, 1):
            if key is not None:
                numbers[id(key)] = n
    dialect = session.get_bind().dialect
    values: dict[str, str] = {}
    for g, group in enumerate(groups):
        # The column type's own conversion, as a typed parameter gets it: an aware time
        # becomes naive UTC (sent aware, the cast would drop its offset or apply the server's).
        converted = [(column, process) for c, column in enumerate(group.columns)
                     if not group.refs[c] and (process := _bind_processor(
                         group.model.__table__.name, column, dialect)) is not None]
        refs = [column for c, column in enumerate(group.columns) if group.refs[c]]
        rows = []
        for n, row in enumerate(group.rows, 1):
            if converted or refs or group.keyed:
                row = dict(row)
                for column, process in converted:
                    row[column] = process(row[column])
                for column in refs:
                    row[column] = numbers[id(row[column])]
                if group.keyed:
                    row["_i"] = n
            rows.append(row)
        values[f"g{g}"] = json.dumps(rows, default=_json_value, separators=(",", ":"))
    statement = _one_statement(tuple(group.shape for group in groups))
    session.connection().execute(statement, values)  # keys stay unread: ids the database gave


def _json_value(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not written at commit")


@functools.cache
def _bind_processor(table: str, column: str, dialect: Dialect) -> Callable[[Any], Any] | None:
    processor: Callable[[Any], Any] | None = \
        Base.metadata.tables[table].c[column].type.bind_processor(dialect)
    return processor


@functools.lru_cache(maxsize=256)
def _one_statement(shapes: tuple[tuple[str, tuple[str, ...], tuple[str, ...], bool], ...]
                   ) -> TextClause:
    """Every group's rows in one statement (PostgreSQL): each group an ``INSERT ... SELECT``
    from ``jsonb_to_recordset`` of one JSON parameter (its rows, each column typed as the
    table's) in the ``WITH`` clause. The text does not depend on how many rows there are, and a
    parameter a group keeps it within what the driver keeps parsed (4 kB, 50 parameters): a
    busy process runs a handful of statements, parsed once and kept prepared by the server.

    A keyed table's rows first take their ids from its sequence (CTE ``k_<table>``, each row
    with its number ``_i``), where the rows that refer to them look them up.
    """
    tables = Base.metadata.tables
    parts: list[str] = []
    for g, (name, columns, refs, keyed) in enumerate(shapes):
        table = tables[name]
        typed = ", ".join(
            f'"{column}" {"INTEGER" if refs[c] else _sql_type(table.c[column].type)}'
            for c, column in enumerate(columns))
        if keyed:
            typed = f'"_i" INTEGER, {typed}'
        rows = f"jsonb_to_recordset(CAST(:g{g} AS JSONB)) AS v({typed})"
        names = ", ".join(f'"{column}"' for column in columns)
        picked = ", ".join(f'(SELECT k.id FROM "k_{refs[c]}" AS k WHERE k._i = v."{column}")'
                           if refs[c] else f'v."{column}"' for c, column in enumerate(columns))
        if keyed:
            [key] = table.primary_key.columns
            parts.append(f'"k_{name}" AS (SELECT nextval(pg_get_serial_sequence(\'"{name}"\', '
                         f"'{key.name}')) AS id, v.* FROM {rows})")
            parts.append(f'"w{g}" AS (INSERT INTO "{name}" ("{key.name}", {names}) '
                         f'SELECT v.id, {picked} FROM "k_{name}" AS v)')
        else:
            parts.append(f'"w{g}" AS (INSERT INTO "{name}" ({names}) SELECT {picked} '
                         f"FROM {rows})")
    return text("WITH " + ", ".join(parts) + " SELECT 1").bindparams(
        *(bindparam(f"g{g}") for g in range(len(shapes))))


def _sql_type(column_type: Any) -> str:
    """A column's type to cast a value to, without a length: a cast to VARCHAR(20) would cut
    a longer text short where the INSERT is to refuse it."""
    if isinstance(column_type, String):
        return "TEXT"
    return str(column_type.compile(dialect=postgresql.dialect()))
