"""The store seam of the order use cases: orders changed in hand, each written once.

The hot paths do not let SQLAlchemy's unit of work track their orders (its bookkeeping cost
more Python than the order's own statements). A use case makes a new order or loads orders
locked through an ``OrderBook``, changes the objects in hand (``gateway.backend.checkout``
asks the domain what changes), and the book writes what changed when asked (``write``): for
each order the columns whose values differ from what was read or inserted, found from the
model's columns rather than a list kept by hand, and orders whose changes touch the same
columns in one statement, so that a batch of decisions from many payments costs one statement
per kind of change.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Executable, bindparam, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update

from gateway.store.models import Order
from gateway.store.writes import insert_at_commit

__all__ = ["OrderBook"]

_COLUMNS = tuple(column.key for column in Order.__table__.columns)
_column_values = operator.itemgetter(*_COLUMNS)


def _values(order: Order) -> tuple[Any, ...]:
    """Every column's value, from the object's own dictionary: the book's orders are loaded
    whole and live outside the session, and this costs one call, not one per column."""
    values: tuple[Any, ...] = _column_values(vars(order))
    return values


class OrderBook:
    """The orders one transaction changes in hand, and what they were when it got them."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._kept: dict[str, tuple[Order, tuple[Any, ...]]] = {}
        self._new: dict[str, tuple[Order, dict[str, Any]]] = {}

    def insert(self, row: Mapping[str, Any]) -> Order:
        """A new order, kept outside the session for changes and written at the commit as it
        then is (``write`` brings its row up to date): once, in its final state."""
        order = Order(**row)
        queued = dict(zip(_COLUMNS, _values(order), strict=True))
        insert_at_commit(self._session, Order, queued)
        self._new[order.id] = (order, queued)
        return order

    def load_locked(self, statement: Executable, params: Mapping[str, Any]) -> list[Order]:
        """The orders ``statement`` selects (``FOR UPDATE``), kept outside the session: the
        caller must not hold changes to them in it."""
        orders = list(self._session.scalars(statement, params).all())
        for order in orders:
            self._session.expunge(order)
            self._keep(order)
        return orders

    def write(self) -> None:
        """Write every kept order's changed columns, one statement per set of columns (a new
        order's, in its row queued for the commit)."""
        for order, queued in self._new.values():
            queued.update(zip(_COLUMNS, _values(order), strict=True))
        changes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for order_id, (order, before) in self._kept.items():
            after = _values(order)
            if after == before:
                continue
            changed = {column: new for column, old, new in zip(_COLUMNS, before, after,
                                                               strict=True) if old != new}
            changes.setdefault(tuple(changed), []).append({"order": order_id, **changed})
            self._kept[order_id] = (order, after)
        sql = self._session.connection()
        for columns, rows in changes.items():
            sql.execute(_update(columns), rows)

    def _keep(self, order: Order) -> Order:
        self._kept[order.id] = (order, _values(order))
        return order


@functools.cache
def _update(columns: tuple[str, ...]) -> Update:
    """Built once per set of columns: building a statement costs more Python than running it."""
    return (update(Order).where(Order.id == bindparam("order"))
            .values({column: bindparam(column) for column in columns}))
