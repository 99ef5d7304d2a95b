"""Server-Sent Events for the TV: ``/api/v1/orders/{id}/events`` and
``/api/v1/devices/{device_id}/events`` (the streams themselves are ``gateway.backend.live``)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from flask import Blueprint, Response, request

from gateway.backend import checkout, live
from gateway.context import services
from gateway.domain.errors import InvalidInput
from gateway.web import api_keys

__all__ = ["bp"]

bp = Blueprint("live_events", __name__, url_prefix="/api/v1")
api_keys.protect(bp)


def _last_event_id() -> int | None:
    """The ``Last-Event-ID`` header (sent by EventSource on reconnect) or ``?last_event_id=``."""
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if not raw:
        return None
    if not re.fullmatch(r"[0-9]{1,18}", raw):
        raise InvalidInput("Last-Event-ID must be the id of an event",
                           code="invalid_last_event_id")
    return int(raw)


def _event_stream(body: Iterator[str]) -> Response:
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


@bp.get("/orders/<order_id>/events")
def order_events(order_id: str) -> Response:
    """The order's changes from its start (or after ``Last-Event-ID``) until it is final."""
    gw = services()
    after = _last_event_id() or 0
    order = checkout.get_order(gw, order_id)  # 404 before streaming; a lapsed order expires
    return _event_stream(live.stream(gw, device_id=order.device_id, order_id=order.id,
                                     after=after))


@bp.get("/devices/<device_id>/events")
def device_events(device_id: str) -> Response:
    """Everything the TV shows from now on (or after ``Last-Event-ID``)."""
    gw = services()
    checkout.validate_device_id(device_id)
    after = _last_event_id()
    if after is None:
        after = live.newest_event_id(gw, device_id)
    return _event_stream(live.stream(gw, device_id=device_id, order_id=None, after=after))
