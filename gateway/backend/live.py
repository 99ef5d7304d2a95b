"""Live event streams (Server-Sent Events) of what a TV is shown, across processes.

The truth is the ``order_events`` table (``gateway.backend.tv_events``): a stream sends its rows
above the client's last event id, so it resumes with ``Last-Event-ID`` and loses nothing when a
process dies. Redis pub/sub only wakes streams up: after a transaction that recorded events
commits, its process publishes one message per device it touched, and each process that serves
streams of that device wakes them through its one subscriber (``gateway.backend.stream_hub``);
they then read SQL. A stream reads SQL only when woken, so one that waits costs no query."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from gateway.backend import checkout
from gateway.backend.stream_hub import SETTLE_SECONDS, channel, hub
from gateway.backend.tv_events import TvEvent
from gateway.context import Gateway
from gateway.domain.money import Money
from gateway.domain.orders import FINAL, PENDING, is_lapsed
from gateway.domain.texts import Texts
from gateway.domain.times import iso
from gateway.store.models import Order, OrderEvent

__all__ = ["StreamWaker", "channel", "message", "newest_event_id", "stream"]

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0  # a comment this often keeps proxies and the TV from hanging up
RETRY_MS = 2000  # how long a client waits before it reconnects
PUBLISH_PAUSE_SECONDS = 5.0  # after Redis failed a publish, commits skip it this long
_BATCH = 100

# --- waking streams after a commit -------------------------------------------------------------


class StreamWaker:
    """After a commit, publish a wake-up for each device whose events it recorded
    (``tv_events.TOUCHED``; wired by ``gateway.connect``).

    The commit has happened: a Redis failure is logged, never raised, and no commit tries
    Redis again for a few seconds, so an outage costs requests no time; streams then catch up
    at their process's next read of SQL (``stream_hub``: within 15 s).
    """

    def __init__(self, gw: Gateway) -> None:
        self._gw = gw
        self._client: redis.Redis | None = None
        self._paused_until = 0.0
        self._failing = False

    def __call__(self, devices: list[str]) -> None:
        if time.monotonic() < self._paused_until:
            return
        try:
            with self._redis().pipeline(transaction=False) as pipe:
                for device_id in sorted(set(devices)):
                    pipe.publish(channel(self._gw, device_id), "1")
                pipe.execute()
        except Exception as exc:  # the commit is done: nothing may undo its answer
            # (not only RedisError: a timeout during redis-py's handshake once surfaced as
            # ValueError "I/O operation on closed file", which turned a committed order into a 500)
            log.log(logging.DEBUG if self._failing else logging.WARNING,
                    "cannot wake event streams through Redis (%r); they poll SQL", exc)
            self._failing = True
            self._paused_until = time.monotonic() + PUBLISH_PAUSE_SECONDS
        else:
            self._failing = False

    def _redis(self) -> redis.Redis:
        """A client that gives up in a quarter of a second, without retries."""
        if self._client is None:
            url = self._gw.settings.REDIS_URL
            # The embedded server is a local socket, which fails at once when it is away.
            self._client = self._gw.redis if url is None else redis.Redis.from_url(
                url, socket_connect_timeout=0.25, socket_timeout=0.25, retry=Retry(NoBackoff(), 0))
        return self._client


# --- the stream --------------------------------------------------------------------------------


def newest_event_id(gw: Gateway, device_id: str) -> int:
    """Where a device stream without ``Last-Event-ID`` starts: after what already happened."""
    with gw.db.read() as session:
        newest = session.scalar(select(func.max(OrderEvent.id))
                                .where(OrderEvent.device_id == device_id))
    return newest or 0


def stream(gw: Gateway, *, device_id: str, order_id: str | None, after: int) -> Iterator[str]:
    """SSE text: the events of the device (or of one of its orders) with ids above ``after``.

    An order stream ends once the order is final and its final event was sent; every stream
    ends after ``SSE_MAX_SECONDS`` (the client reconnects with ``Last-Event-ID``) or when the
    database fails. A pending order that lapses meanwhile is expired here, as reading it would.
    """
    deadline = time.monotonic() + gw.settings.SSE_MAX_SECONDS
    cursor = _Cursor(after)
    streams = hub(gw)
    # Followed before the first read, so no commit falls between the two.
    with streams.follow(device_id) as wake:
        try:
            yield f"retry: {RETRY_MS}\n\n"
            beat = time.monotonic()
            woken = True  # the first read
            while True:
                if streams.ending:  # the process is stopping
                    return
                if woken:
                    wake.clear()  # a wake-up from now on means another read
                    batch = _read(gw, device_id, order_id, cursor)
                    for row, order_channel in batch.rows:
                        yield _event(gw, row, order_channel)
                        beat = time.monotonic()
                    if batch.ended:
                        return
                    if batch.due:
                        for lapsed in batch.due:
                            checkout.get_order(gw, lapsed)  # expires it; the next read sends it
                        continue
                    if batch.more:
                        continue
                now = time.monotonic()
                if now >= deadline:
                    return
                if now - beat >= HEARTBEAT_SECONDS:
                    yield ": keep-alive\n\n"  # no read: the hub's sweep stands for lost wake-ups
                    beat = now
                wait = min(deadline - now, beat + HEARTBEAT_SECONDS - now)
                if batch.next_expiry is not None:
                    wait = min(wait, (batch.next_expiry - gw.clock()).total_seconds())
                woken = wake.wait(max(wait, 0.05)) or (
                    batch.next_expiry is not None and gw.clock() >= batch.next_expiry)
        except SQLAlchemyError as exc:
            log.warning("event stream of device %s ended: database error %s", device_id,
                        type(exc).__name__)


class _Cursor:
    """The ids a stream has sent: everything up to ``floor``, and those sent lately."""

    def __init__(self, after: int) -> None:
        self.floor = after
        self.recent: dict[int, float] = {}  # id -> when it was sent (monotonic)

    def settle(self) -> None:
        old = time.monotonic() - SETTLE_SECONDS
        for event_id in [i for i, sent in self.recent.items() if sent < old]:
            self.floor = max(self.floor, event_id)
            del self.recent[event_id]

    def sent(self, event_id: int) -> None:
        self.recent[event_id] = time.monotonic()


@dataclass
class _Batch:
    rows: list[tuple[OrderEvent, str | None]]  # with the channel of the row's order
    more: bool  # the batch was full: read again at once
    ended: bool  # the followed order is final and all its events are sent
    due: list[str]  # pending orders that have lapsed and must be expired
    next_expiry: datetime | None


def _read(gw: Gateway, device_id: str, order_id: str | None, cursor: _Cursor) -> _Batch:
    cursor.settle()
    now = gw.clock()
    orders = select(Order.id, Order.status, Order.expires_at)
    events = select(OrderEvent, Order.channel).outerjoin(Order, Order.id == OrderEvent.order_id)
    if order_id is not None:
        orders = orders.where(Order.id == order_id)
        events = events.where(OrderEvent.order_id == order_id)
    else:
        orders = orders.where(Order.device_id == device_id, Order.status.in_(PENDING))
        events = events.where(OrderEvent.device_id == device_id)
    limit = _BATCH + len(cursor.recent)
    with gw.db.read() as session:
        # The order first: a final status read here has its final event in the read below.
        watched = session.execute(orders).all()
        found = session.execute(
            events.where(OrderEvent.id > cursor.floor).order_by(OrderEvent.id).limit(limit)).all()
    rows: list[tuple[OrderEvent, str | None]] = [
        (row, ch) for row, ch in found if row.id not in cursor.recent]
    for row, _ch in rows:
        cursor.sent(row.id)
    more = len(found) == limit
    ended = order_id is not None and not more and all(o.status in FINAL for o in watched)
    due = [o.id for o in watched if is_lapsed(o.status, o.expires_at, now)]
    upcoming = [o.expires_at for o in watched
                if o.status in PENDING and o.expires_at is not None and o.id not in due]
    return _Batch(rows, more, ended, due, min(upcoming, default=None))


# --- what an event says ----------------------------------------------------------------------


def _event(gw: Gateway, row: OrderEvent, order_channel: str | None) -> str:
    data = json.loads(row.data) if row.data else {}
    body: dict[str, Any] = {"id": row.id, "type": row.type, "order_id": row.order_id,
                            "status": row.status, "reason": row.reason, "at": iso(row.at)}
    body.update((key, value) for key, value in data.items() if key not in body)
    body["message"] = message(gw, row, order_channel, data)
    return f"id: {row.id}\nevent: {row.type}\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"


class _Values(dict[str, Any]):
    def __missing__(self, key: str) -> str:  # a field an old row lacks shows as nothing
        return ""


def message(gw: Gateway, row: OrderEvent, order_channel: str | None,
            data: dict[str, Any]) -> str | None:
    """The short text the TV shows for an event, or None for a kind this version does not know."""
    text = gw.texts.tv(_text_key(row, order_channel, data, gw.texts))
    if text is None:
        return None
    values = _Values(data)
    if isinstance(data.get("active_until"), str):
        values["until"] = gw.texts.date(datetime.fromisoformat(data["active_until"]))
    if isinstance(data.get("balance"), int):
        values["balance"] = gw.texts.amount(Money(data["balance"], gw.settings.CURRENCY))
    return text.format_map(values)


def _text_key(row: OrderEvent, order_channel: str | None, data: dict[str, Any],
              texts: Texts) -> str:
    if row.type != TvEvent.ORDER_STATUS:
        return row.type
    status = row.status or ""
    if status == "activated":
        kinds = {"active_until": "activated", "balance": "activated_balance",
                 "bill_id": "activated_bill"}
        return next((key for field, key in kinds.items() if field in data), "paid")
    if status == "awaiting_wap" and not data.get("phone"):
        return "awaiting_wap_qr"
    refined = (f"{status}_{row.reason}", f"{status}_{order_channel}")
    return next((key for key in refined if texts.tv(key) is not None), status)
