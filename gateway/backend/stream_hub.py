"""One Redis subscriber a process, waking the event streams it serves; and how many it serves.

A stream (``gateway.backend.live``) waits on an event of its own, registered here under its
device (``StreamHub.follow``); it holds no Redis and no database connection while it waits::

    a commit, any process ── PUBLISH <prefix>tv:<device> ──► Redis
                                                               │ PSUBSCRIBE <prefix>tv:*
                                                               ▼  (one connection a process)
    the listener thread ──────── sets the events of that device's streams
         │ every 15 s (every second while Redis is away): one SQL read of the devices with
         └─ new events since the last reads, whose streams it wakes too (a lost wake-up)

So 5,000 streams cost one Redis connection, not 5,000, and no SQL while nothing happens. The
listener runs while the process has a stream open. Under gevent (the stream role) threads and
events are greenlets; in a threaded web worker they are threads.

``StreamHub.admit`` bounds the streams a process holds open: ``SSE_MAX_STREAMS`` when a stream
costs a greenlet, ``SSE_WEB_MAX_STREAMS`` when it holds one of a web worker's few threads, so
that streams can never take every thread the API needs.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator

from redis.client import PubSub
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from gateway import metrics
from gateway.context import Gateway
from gateway.store.models import OrderEvent

__all__ = ["StreamHub", "channel", "close", "cooperative", "end_streams", "hub"]

log = logging.getLogger(__name__)

SWEEP_SECONDS = 15.0  # how often SQL is read for events whose wake-up was lost
POLL_SECONDS = 1.0  # how often while Redis is unavailable
# Rows of concurrent transactions can commit out of id order (PostgreSQL): each SQL read looks
# again at the ids above what was newest this long ago, so a late commit still wakes its streams.
SETTLE_SECONDS = 5.0
IDLE_SECONDS = 1.0  # how soon the listener notices that its last stream has ended


def channel(gw: Gateway, device_id: str) -> str:
    """The Redis channel that wakes the streams of one device."""
    return f"{gw.settings.REDIS_PREFIX}tv:{device_id}"


def cooperative() -> bool:
    """Whether this process runs under gevent's monkey-patching (the stream role), where a
    stream costs a greenlet rather than a thread (the check psycopg makes too)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


_hubs: weakref.WeakKeyDictionary[Gateway, StreamHub] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


def hub(gw: Gateway) -> StreamHub:
    """The process's hub for ``gw`` (made on first use: a process that streams nothing has none)."""
    with _hubs_lock:
        found = _hubs.get(gw)
        if found is None:
            found = _hubs[gw] = StreamHub(gw)
        return found


def close(gw: Gateway) -> None:
    """End the streams of ``gw`` and stop its listener, before its stores close."""
    with _hubs_lock:
        found = _hubs.pop(gw, None)
    if found is not None:
        found.close()


def end_streams() -> None:
    """End every stream of this process now, as it stops: their clients reconnect (to another
    process) with ``Last-Event-ID`` and miss nothing, rather than be cut when it exits."""
    with _hubs_lock:
        found = list(_hubs.values())
    for each in found:
        each.end()


class StreamHub:
    """The streams of one process: their places (``admit``) and their wake-ups (``follow``)."""

    def __init__(self, gw: Gateway) -> None:
        self._gw = gw
        settings = gw.settings
        self.limit = settings.SSE_MAX_STREAMS if cooperative() else settings.SSE_WEB_MAX_STREAMS
        self._lock = threading.Lock()
        self._open = 0
        self._followers: dict[str, set[threading.Event]] = {}
        self._listening = False
        self._listener: threading.Thread | None = None
        self._redis_failing = False
        self.ending = False  # the process is stopping: streams end, none is admitted

    def end(self) -> None:
        """End the open streams (they see ``ending`` once woken) and admit no more."""
        self.ending = True
        self._wake(None)

    def close(self) -> None:
        """``end``, and wait for the listener to stop using Redis and the database."""
        self.end()
        if self._listener is not None:
            self._listener.join(timeout=5)

    # --- places ---------------------------------------------------------------------------

    def admit(self) -> Callable[[], None] | None:
        """Take a place for one more stream: what to call when it ends (once or more), or
        None when ``limit`` streams are open already."""
        with self._lock:
            if self._open >= self.limit or self.ending:
                metrics.EVENT_STREAMS_REFUSED.inc()
                return None
            self._open += 1
        metrics.EVENT_STREAMS_OPEN.inc()
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._open -= 1
            metrics.EVENT_STREAMS_OPEN.dec()

        return release

    @property
    def open_streams(self) -> int:
        return self._open

    # --- wake-ups -------------------------------------------------------------------------

    @contextlib.contextmanager
    def follow(self, device_id: str) -> Iterator[threading.Event]:
        """An event set whenever the device may have new events (clear it before reading)."""
        wake = threading.Event()
        with self._lock:
            self._followers.setdefault(device_id, set()).add(wake)
            if not self._listening and not self.ending:
                self._listening = True
                self._listener = threading.Thread(target=self._listen, name="stream-hub",
                                                  daemon=True)
                self._listener.start()
        try:
            yield wake
        finally:
            with self._lock:
                waiting = self._followers.get(device_id, set())
                waiting.discard(wake)
                if not waiting:
                    self._followers.pop(device_id, None)

    def _wake(self, device_id: str | None) -> None:
        """Set the events of the device's streams (None: of every stream)."""
        with self._lock:
            if device_id is None:
                found = [wake for group in self._followers.values() for wake in group]
            else:
                found = list(self._followers.get(device_id, ()))
        for wake in found:
            wake.set()

    def _followed(self) -> bool:
        """Whether a stream is still open (and the process not stopping); if not, the listener
        stops (under the lock, so a stream that starts meanwhile starts another)."""
        with self._lock:
            self._listening = bool(self._followers) and not self.ending
            return self._listening

    # --- the listener ---------------------------------------------------------------------

    def _listen(self) -> None:
        prefix = channel(self._gw, "")
        pubsub: PubSub | None = None
        marks: deque[tuple[float, int]] = deque()  # (when, newest event id) of each SQL read
        retry_at = next_sweep = 0.0
        try:
            while self._followed():
                now = time.monotonic()
                if pubsub is None and now >= retry_at:
                    pubsub = self._subscribe(prefix)
                    if pubsub is None:
                        retry_at = now + POLL_SECONDS
                    else:  # a read of SQL at once finds what committed before the subscription
                        next_sweep = 0.0
                if now >= next_sweep and not self.ending:
                    self._sweep(marks)
                    next_sweep = now + (POLL_SECONDS if pubsub is None else SWEEP_SECONDS)
                wait = min(max(next_sweep - time.monotonic(), 0.0), IDLE_SECONDS)
                if pubsub is None:
                    time.sleep(wait)
                    continue
                try:
                    message = pubsub.get_message(timeout=wait)
                except Exception as exc:  # redis-py raises more than RedisError (live.py)
                    self._redis_lost(exc)
                    with contextlib.suppress(Exception):
                        pubsub.close()
                    pubsub, next_sweep = None, 0.0  # read SQL at once, then every second
                    continue
                if message is not None:
                    self._wake(str(message["channel"]).removeprefix(prefix))
        except BaseException:
            with self._lock:  # something unforeseen: the next stream starts another listener
                self._listening = False
            raise
        finally:
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def _subscribe(self, prefix: str) -> PubSub | None:
        pubsub: PubSub | None = None
        try:
            pubsub = self._gw.redis.pubsub(ignore_subscribe_messages=True)
            pubsub.psubscribe(re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*")
        except Exception as exc:  # redis-py raises more than RedisError (live.py)
            self._redis_lost(exc)
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    pubsub.close()
            return None
        if self._redis_failing:
            log.info("event streams are woken through Redis again")
        self._redis_failing = False
        return pubsub

    def _redis_lost(self, exc: Exception) -> None:
        if not self._redis_failing:
            log.warning("event streams without Redis (%s): reading SQL every second", exc)
        self._redis_failing = True

    def _sweep(self, marks: deque[tuple[float, int]]) -> None:
        """Wake the streams of the devices with events above what was newest
        ``SETTLE_SECONDS`` ago (every stream at the first read, which knows no such point)."""
        now = time.monotonic()
        while len(marks) > 1 and marks[1][0] <= now - SETTLE_SECONDS:
            marks.popleft()
        floor = marks[0][1] if marks else None
        try:
            with self._gw.db.read() as session:
                if floor is None:
                    newest = session.scalar(select(func.max(OrderEvent.id))) or 0
                    devices: list[str | None] = [None]
                else:
                    rows = session.execute(
                        select(OrderEvent.device_id, func.max(OrderEvent.id))
                        .where(OrderEvent.id > floor).group_by(OrderEvent.device_id)).all()
                    newest = max((top for _device, top in rows), default=floor)
                    devices = [device for device, _top in rows]
        except SQLAlchemyError as exc:
            log.warning("event streams cannot read new events: database error %s",
                        type(exc).__name__)
            return
        marks.append((now, newest))
        for device_id in devices:
            self._wake(device_id)
