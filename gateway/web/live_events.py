"""Server-Sent Events for the TV: ``/api/v1/orders/{id}/events`` and
``/api/v1/devices/{device_id}/events`` (the streams themselves are ``gateway.backend.live``).

A process holds a bounded number of streams (``gateway.backend.stream_hub``); one more is
refused with 503 ``too_many_streams`` and ``Retry-After`` rather than let streams take every
thread a web worker has for the API."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from gateway.backend import checkout, live, stream_hub
from gateway.context import Gateway, services
from gateway.web import api_keys
from gateway.web.problems import problem
from gateway.web.schemas import (
    DEVICE_NOT_FOUND,
    ORDER_NOT_FOUND,
    STREAM_UNAVAILABLE,
    TV_KEY,
    TV_UNAUTHORIZED,
    DevicePath,
    LastEventIdHeader,
    LastEventIdQuery,
    OrderEventsPath,
    event_stream,
    problems,
)

__all__ = ["bp"]

LIVE = Tag(name="Live events", description="""Server-Sent Events instead of polling. Each event's
`data` is a `TvEvent`; a comment `: keep-alive` comes every 15 s, and every stream ends after
`SSE_MAX_SECONDS` (300): the client reconnects after `retry` (2 s) with `Last-Event-ID`. A
server that holds as many streams as it may answers 503 `too_many_streams` with `Retry-After`.""")
RETRY_AFTER_SECONDS = 5  # when a refused stream may try again; a place frees as any stream ends

bp = APIBlueprint("live_events", __name__, url_prefix="/api/v1", abp_tags=[LIVE],
                  abp_security=TV_KEY, abp_responses={**TV_UNAUTHORIZED, **STREAM_UNAVAILABLE})
api_keys.protect(bp)


def _last_event_id(header: LastEventIdHeader, query: LastEventIdQuery) -> int | None:
    """The ``Last-Event-ID`` header (sent by EventSource on reconnect) or ``?last_event_id=``."""
    raw = header.last_event_id or query.last_event_id
    return int(raw) if raw else None


def _event_stream(gw: Gateway, *, device_id: str, order_id: str | None, after: int) -> Response:
    """The stream, in a place of this process's bounded number; or 503 when none is free."""
    release = stream_hub.hub(gw).admit()
    if release is None:
        refused = problem(503, "too_many_streams",
                          "this server holds as many event streams as it may; retry later")
        refused.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return refused
    body = live.stream(gw, device_id=device_id, order_id=order_id, after=after)
    response = Response(_released(body, release), mimetype="text/event-stream")
    response.call_on_close(release)  # also a stream closed before its first byte
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def _released(body: Iterator[str], release: Callable[[], None]) -> Iterator[str]:
    """``body``, giving its place back as soon as it ends or is closed."""
    try:
        yield from body
    finally:
        release()


@bp.get("/orders/<order_id>/events", operation_id="streamOrderEvents",
        summary="Follow one order live",
        description="""Every status the order takes, from its creation (or after
`Last-Event-ID`); the stream ends after its final status (`activated`, `failed`, `expired`,
`cancelled`). A pending order whose code or link lapses meanwhile is shown `expired` at that
moment.""",
        responses={200: event_stream(),
                   400: problems(400, "A `Last-Event-ID` that is not an event id.",
                                 "invalid_last_event_id"),
                   **ORDER_NOT_FOUND})
def order_events(path: OrderEventsPath, header: LastEventIdHeader,
                 query: LastEventIdQuery) -> Response:
    """The order's changes from its start (or after ``Last-Event-ID``) until it is final."""
    gw = services()
    after = _last_event_id(header, query) or 0
    order = checkout.get_order(gw, path.order_id)  # 404 before streaming; a lapsed order expires
    return _event_stream(gw, device_id=order.device_id, order_id=order.id, after=after)


@bp.get("/devices/<device_id>/events", operation_id="streamDeviceEvents",
        summary="Follow everything the TV should show",
        description="""Each status of the TV's orders, wrong codes with the tries left, pairing
changes and revoked packages, from the moment of connecting (or after `Last-Event-ID`;
`last_event_id=0`: from the TV's first event). Rarely an event comes after one with a higher
`id` (two changes committed at the same moment), and a reconnect may then repeat an event: tell
them apart by `id`.""",
        responses={200: event_stream(),
                   400: problems(400, "A malformed device id or `Last-Event-ID`.",
                                 "invalid_device_id", "invalid_last_event_id"),
                   **DEVICE_NOT_FOUND})
def device_events(path: DevicePath, header: LastEventIdHeader,
                  query: LastEventIdQuery) -> Response:
    """Everything the TV shows from now on (or after ``Last-Event-ID``)."""
    gw = services()
    device_id = path.device_id
    after = _last_event_id(header, query)
    if after is None:
        after = live.newest_event_id(gw, device_id)
    return _event_stream(gw, device_id=device_id, order_id=None, after=after)
