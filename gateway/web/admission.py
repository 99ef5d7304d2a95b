"""Shedding new orders at the door (``gateway.admission``).

Every request tells its process how long it waited for a thread; a request for a view that
starts a new order (``starts_an_order``) is refused with ``503 overloaded`` while the worker's
queues stand, before anything else runs for it: before the TV app's key is checked, a device
claimed, an ``Idempotency-Key`` taken or a row written.

All of it is judged at the door (``_Door``), a WSGI layer in front of Flask, which needs no
request context: at three times the capacity the refusals outnumber the orders taken two to
one, and inside Flask they took 15-20% of two cores from the orders taken; at the door a
refusal runs 1,105 Python function calls where it ran 1,520 (with the test client's own,
``bench/RESULTS.md``). It carries the same problem, ``Retry-After`` and ``X-Request-ID``, and
has the same access line; a database that does not answer while the SMS backlog is read is
answered as everywhere else (``503 service_unavailable``).

gunicorn's worker (``gunicorn.conf.py``) puts the wait into the WSGI environ as
``gateway.queue_wait`` (seconds). Other servers (``python app.py``, the tests' client) give
none; there only the SMS backlog sheds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import Flask
from werkzeug.exceptions import HTTPException

from gateway import store
from gateway.context import services
from gateway.domain.errors import Overloaded
from gateway.web import problems, request_log

__all__ = ["QUEUE_WAIT", "register", "starts_an_order"]

QUEUE_WAIT = "gateway.queue_wait"  # the environ key gunicorn.conf.py's worker sets
_MARK = "starts_an_order"

View = TypeVar("View", bound=Callable[..., Any])


def starts_an_order(view: View) -> View:
    """Mark ``view`` as one that starts a new order: it is shed while the service is
    overloaded."""
    setattr(view, _MARK, True)
    return view


class _Door:
    """Flask's WSGI app behind the door: every request's wait is observed; a new order goes
    in with one of the worker's order slots, given back when it is answered, or is refused."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._flask = app.wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        admission = services(self._app).admission
        waited = environ.get(QUEUE_WAIT)
        standing = admission.observe(waited)
        rule = self._new_order_rule(environ)
        if rule is None:
            return self._flask(environ, start_response)
        started = time.perf_counter()
        try:
            slot = admission.admit_web_order(standing, waited)
        except Overloaded as refusal:
            answer = problems.api_problem(refusal)
        except store.UNAVAILABLE as error:  # the SMS backlog could not be read
            answer = problems.store_unavailable_answer("POST", rule, error)
        else:
            try:
                return self._flask(environ, start_response)
            finally:
                admission.give_order_slot(slot)
        request_id = request_log.new_request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        answer.headers[request_log.HEADER] = request_id
        request_log.log_access("POST", rule, answer.status_code, time.perf_counter() - started,
                               outside_flask_id=request_id)
        return answer(environ, start_response)

    def _new_order_rule(self, environ: dict[str, Any]) -> str | None:
        """The rule of the route asked for, when its view starts a new order (all are POSTs)."""
        if str(environ.get("REQUEST_METHOD", "")).upper() != "POST":  # as Werkzeug reads it
            return None
        try:
            rule, _ = self._app.url_map.bind_to_environ(environ).match(return_rule=True)
        except HTTPException:  # no such route, another method, a redirect: Flask answers it
            return None
        view = self._app.view_functions.get(rule.endpoint)
        return rule.rule if getattr(view, _MARK, False) else None


def register(app: Flask) -> None:
    """Put the door in front of the app."""
    app.wsgi_app = _Door(app)  # type: ignore[method-assign]
