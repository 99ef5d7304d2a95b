"""Shedding new orders at the door (``gateway.admission``).

Every request tells its process how long it waited for a thread; a view that starts a new order
(``starts_an_order``) is refused with ``503 overloaded`` before anything else runs for it: before
the TV app's key is checked, a device claimed, an ``Idempotency-Key`` taken or a row written.

gunicorn's worker (``gunicorn.conf.py``) puts the wait into the WSGI environ as
``gateway.queue_wait`` (seconds). Other servers (``python app.py``, the tests' client) give
none; there only the SMS backlog sheds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from gateway.context import services

__all__ = ["QUEUE_WAIT", "register", "starts_an_order"]

QUEUE_WAIT = "gateway.queue_wait"  # the environ key gunicorn.conf.py's worker sets
_MARK = "starts_an_order"

View = TypeVar("View", bound=Callable[..., Any])


def starts_an_order(view: View) -> View:
    """Mark ``view`` as one that starts a new order: it is shed while the service is
    overloaded."""
    setattr(view, _MARK, True)
    return view


def _admit() -> None:
    """:raise Overloaded: for a view that starts an order, while the service is overloaded."""
    admission = services().admission
    waited = request.environ.get(QUEUE_WAIT)
    standing = admission.observe(waited)
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, _MARK, False):
        admission.admit_new_order(queue_standing=standing)
        g.order_slot = admission.take_order_slot(waited)


def _done(error: BaseException | None) -> None:
    if "order_slot" in g:
        services().admission.give_order_slot(g.pop("order_slot"))


def register(app: Flask) -> None:
    """Look at every request before its other hooks but the request log's."""
    app.before_request(_admit)
    app.teardown_request(_done)
