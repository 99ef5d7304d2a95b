"""Request ids, the access log and the request-duration metric of the web role.

Every request gets an id: the client's ``X-Request-ID`` when it is a sane token, else a new
one. The response carries it back, and every log record made while the request is handled
carries it as ``request_id``. One access line a request (logger ``gateway.access``) names the
route's rule (``/w/<token>``), never the path nor the query: payment links carry their secret
token in the path. gunicorn's own access log stays off for the same reason.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, has_request_context, request

from gateway import metrics

__all__ = ["HEADER", "log_access", "new_request_id", "register", "request_id", "route"]

HEADER = "X-Request-ID"

_SANE_ID = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")  # token characters (RFC 9110)
_POLLED = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: at DEBUG

access_log = logging.getLogger("gateway.access")


def request_id() -> str | None:
    """The id of the request being handled, or None outside a request."""
    return g.get("request_id") if has_request_context() else None


def route() -> str | None:
    """The rule of the route the request matched (``/w/<token>``), or None: what a log may say
    about the path of a request."""
    return request.url_rule.rule if request.url_rule is not None else None


def _install_request_ids() -> None:
    """Put ``request_id`` on every record made during a request, whichever its handler."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "adds_request_ids", False):
        return

    def record_with_request_id(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        current = request_id()
        if current is not None:
            record.request_id = current
        return record

    # as gateway.phones.install_log_masking: it carries the marks of the factories under it
    record_with_request_id.__dict__.update(getattr(factory, "__dict__", {}),
                                           adds_request_ids=True)
    logging.setLogRecordFactory(record_with_request_id)


def new_request_id(given: str) -> str:
    """The id of a request whose ``X-Request-ID`` header was ``given`` ("" when absent)."""
    return given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex


def log_access(method: str, rule: str | None, status: int, seconds: float, *,
               outside_flask_id: str | None = None) -> None:
    """The request-duration metric and the access line of a finished request;
    ``outside_flask_id``: its id, for a request answered before Flask (``gateway.web.admission``),
    where no request context gives it to the record."""
    metrics.observe_request(method, rule, status, seconds)
    duration_ms = round(seconds * 1000, 1)
    extra: dict[str, object] = {"method": method, "route": rule, "status": status,
                                "duration_ms": duration_ms}
    if outside_flask_id is not None and request_id() is None:
        extra["request_id"] = outside_flask_id
    access_log.log(logging.DEBUG if rule in _POLLED else logging.INFO, "%s %s %s %.1f ms",
                   method, rule or "-", status, duration_ms, extra=extra)


def _start() -> None:
    g.request_id = new_request_id(request.headers.get(HEADER, ""))
    g.request_started = time.perf_counter()


def _finish(response: Response) -> Response:
    if "request_id" not in g:  # an error raised before the before_request hooks ran
        _start()
    response.headers[HEADER] = g.request_id
    log_access(request.method, route(), response.status_code,
               time.perf_counter() - g.request_started)
    return response


def register(app: Flask) -> None:
    """Give every request its id and its access line (register before every other hook)."""
    _install_request_ids()
    app.before_request(_start)
    app.after_request(_finish)
