"""Admission control: shed a new order at once (``503 overloaded``), rather than queue it and
answer after the viewer has given up.

- ``queue_wait``: a new order would wait too long in one of its web worker's two queues. Every
  request waits for a thread: gunicorn's worker says how long (``gunicorn.conf.py``; the web
  layer hands it over: ``observe``), and a new order that waited longer than
  ``OVERLOAD_MAX_WAIT_MS`` is shed while that queue stands (CoDel's rule,
  ``gateway.domain.overload.QueueWaits``). Then every new order waits for one of the worker's
  ``OVERLOAD_MAX_CONCURRENT_ORDERS`` order slots (``take_order_slot``), and is shed at once
  when the orders ahead of it would keep it from starting within the bound
  (``gateway.domain.overload.OrderSlots``). One worker runs its Python on one core at a time,
  so that more orders at once would only make each slower, and keep busy the threads that
  should refuse the rest.
- ``sms_backlog``: the oldest SMS not sent yet is older than
  ``OVERLOAD_MAX_SMS_BACKLOG_SECONDS``: the code of a new order would arrive that late. Read
  from SQL at most once a second per process, never once per order.

Only what starts a new order is shed, before anything is written: a viewer's reply, a page
payment or a read of an order already made goes on. One ``Admission`` per process
(``Gateway.admission``); a setting of 0 turns its check off.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from gateway import metrics
from gateway.config import Settings
from gateway.domain.errors import Overloaded
from gateway.domain.overload import OrderSlots, OverloadReason, QueueWaits, retry_after_ms
from gateway.store import UNAVAILABLE, outbox
from gateway.store.db import Database

__all__ = ["BACKLOG_READ_EVERY", "Admission", "Overload"]

log = logging.getLogger(__name__)

BACKLOG_READ_EVERY = timedelta(seconds=1)
_SAY_EVERY = 10.0  # seconds between two log lines of a process shedding for the same reason
_DETAIL = {
    OverloadReason.QUEUE_WAIT: "the service is too busy to take a new order now; retry later",
    OverloadReason.SMS_BACKLOG: "SMS are leaving late, so a code would arrive late; retry later",
}


@dataclass(frozen=True)
class Overload:
    """What this process would say of a new order now, and the figures behind it."""

    reasons: tuple[OverloadReason, ...]
    queue_wait_ms: float | None  # of the latest request seen; None without gunicorn's figure
    order_wait_ms: float | None  # of the latest new order, for a slot; None before any
    max_wait_ms: int
    max_concurrent_orders: int
    sms_backlog_seconds: float | None  # the oldest SMS not sent yet; None: no answer from SQL
    max_sms_backlog_seconds: int

    @property
    def overloaded(self) -> bool:
        return bool(self.reasons)


class Admission:
    def __init__(self, settings: Settings, db: Database, clock: Callable[[], datetime]) -> None:
        self.max_wait_ms = settings.OVERLOAD_MAX_WAIT_MS
        self.max_concurrent_orders = settings.OVERLOAD_MAX_CONCURRENT_ORDERS
        self.max_backlog_seconds = settings.OVERLOAD_MAX_SMS_BACKLOG_SECONDS
        self._bound = self.max_wait_ms / 1000
        self._threads = QueueWaits(self._bound, interval=self._bound)  # every request's wait
        self._slots = OrderSlots(self.max_concurrent_orders) \
            if self.max_concurrent_orders else None
        self._slot_wait: float | None = None  # of the latest new order
        self._slots_full = False  # the latest new order found no slot in time
        self._db = db
        self._clock = clock
        self._oldest: datetime | None = None
        self._read_at: datetime | None = None
        self._reading = threading.Lock()
        self._said: dict[OverloadReason, float] = {}  # when a shedding was last logged

    # --- the queues of a web worker -------------------------------------------------------------

    def observe(self, wait: float | None) -> bool:
        """A request waited ``wait`` seconds for its thread (None: the server does not say):
        say whether it came out of a standing queue, so that it is shed if it starts an order."""
        if wait is None:
            return False
        metrics.QUEUE_WAIT.observe(wait)
        standing = self._threads.observe(wait, time.monotonic()) and bool(self.max_wait_ms)
        self._show_queues()
        return standing

    def take_order_slot(self, waited: float | None) -> float | None:
        """Take one of this worker's order slots for a new order that waited ``waited`` seconds
        for its thread: at once if one is free, else after the orders ahead of it if they leave
        it time to start within the bound; give it back with ``give_order_slot(taken)``.

        :return: when it was taken (None without slots).
        :raise Overloaded: ``queue_wait``, at once when the orders ahead of it would make it
            wait too long.
        """
        if self._slots is None:
            return None
        asked = time.monotonic()
        taken = self._slots.take(max(0.0, self._bound - (waited or 0.0))
                                 if self.max_wait_ms else None)
        self._slot_wait, self._slots_full = time.monotonic() - asked, taken is None
        self._show_queues()
        if taken is None:
            self._refuse(OverloadReason.QUEUE_WAIT)
        return taken

    def give_order_slot(self, taken: float | None) -> None:
        """The new order that took its slot at ``taken`` is done (written, or refused on its
        merits)."""
        if self._slots is not None and taken is not None:
            self._slots.give(taken)

    def _queues_stand(self) -> bool:
        return bool(self.max_wait_ms) and (self._threads.standing or self._slots_full)

    def _show_queues(self) -> None:
        metrics.OVERLOADED.labels(OverloadReason.QUEUE_WAIT.value).set(self._queues_stand())

    # --- the SMS backlog -----------------------------------------------------------------------

    def sms_backlog_seconds(self, *, read: bool = True) -> float:
        """How long the oldest SMS not sent yet has waited (0 when none waits), from a reading
        of SQL at most ``BACKLOG_READ_EVERY`` old (``read=False``: whatever the last reading
        was); threads that find a reading under way use the one before.

        :raise: one of ``gateway.store.UNAVAILABLE`` when the database does not answer.
        """
        now = self._clock()
        if read and self._stale(now) and self._reading.acquire(blocking=False):
            try:
                if self._stale(now):
                    self._oldest = outbox.oldest_waiting(self._db)
                    self._read_at = now
            finally:
                self._reading.release()
        oldest = self._oldest
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        metrics.SMS_BACKLOG_AGE.set(age)
        return age

    def _stale(self, now: datetime) -> bool:
        return self._read_at is None or not timedelta(0) <= now - self._read_at \
            < BACKLOG_READ_EVERY

    def _backlog_too_old(self, seconds: float | None) -> bool:
        too_old = bool(self.max_backlog_seconds) and seconds is not None and \
            seconds > self.max_backlog_seconds
        metrics.OVERLOADED.labels(OverloadReason.SMS_BACKLOG.value).set(too_old)
        return too_old

    # --- deciding ------------------------------------------------------------------------------

    def admit_web_order(self, queue_standing: bool, waited: float | None) -> float | None:
        """Let a new order of a web worker start, or refuse it before anything is written:
        ``queue_standing`` and ``waited`` are what ``observe`` said and was told of the request
        asking. The checks go from the cheapest: the worker's queue, the SMS backlog, then an
        order slot, which may wait. Return the slot (``take_order_slot``), for
        ``give_order_slot``.

        :raise Overloaded: ``overloaded``, with the reason and when to retry.
        :raise: one of ``gateway.store.UNAVAILABLE`` when the database does not answer.
        """
        if queue_standing:
            self._refuse(OverloadReason.QUEUE_WAIT)
        self.admit_new_order()
        return self.take_order_slot(waited)

    def admit_new_order(self) -> None:
        """Let a new order be started, or refuse it before anything is written while SMS leave
        late.

        :raise Overloaded: ``overloaded``, ``sms_backlog``, with when to retry.
        :raise: one of ``gateway.store.UNAVAILABLE`` when the database does not answer.
        """
        if self.max_backlog_seconds and self._backlog_too_old(self.sms_backlog_seconds()):
            self._refuse(OverloadReason.SMS_BACKLOG)

    def _refuse(self, reason: OverloadReason) -> NoReturn:
        metrics.ORDERS_SHED.labels(reason.value).inc()
        self._say(reason)
        raise Overloaded(_DETAIL[reason], reason=reason.value,
                         retry_after_ms=retry_after_ms(reason, random.random))

    def _say(self, reason: OverloadReason) -> None:
        """Log a shedding once, then again every ``_SAY_EVERY`` seconds while it lasts."""
        now = time.monotonic()
        if reason in self._said and now - self._said[reason] < _SAY_EVERY:
            return
        self._said[reason] = now
        if reason is OverloadReason.QUEUE_WAIT:
            log.warning("shedding new orders: the latest request waited %.0f ms for a thread, "
                        "the latest new order %.0f ms for one of %s order slots "
                        "(OVERLOAD_MAX_WAIT_MS %s)", (self._threads.last_wait or 0) * 1000,
                        (self._slot_wait or 0) * 1000, self.max_concurrent_orders,
                        self.max_wait_ms)
        else:
            log.warning("shedding new orders: an SMS has waited %.0f s to be sent "
                        "(OVERLOAD_MAX_SMS_BACKLOG_SECONDS %s)",
                        self.sms_backlog_seconds(read=False), self.max_backlog_seconds)

    def state(self, *, read: bool = True) -> Overload:
        """What a new order would meet now (``/readyz``, the dashboard, ``/metrics``);
        ``read=False``: without reading SQL, from the last reading of the SMS backlog."""
        try:
            backlog: float | None = self.sms_backlog_seconds(read=read)
        except UNAVAILABLE:  # the readiness check of the database says what is wrong
            backlog = None
        reasons = [reason for reason, found in (
            (OverloadReason.QUEUE_WAIT, self._queues_stand()),
            (OverloadReason.SMS_BACKLOG, self._backlog_too_old(backlog))) if found]
        return Overload(tuple(reasons), _ms(self._threads.last_wait), _ms(self._slot_wait),
                        self.max_wait_ms, self.max_concurrent_orders,
                        None if backlog is None else round(backlog, 1), self.max_backlog_seconds)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
