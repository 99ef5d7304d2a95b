"""When the service is too busy to take a new order, and when to ask again.

Two reasons, each with its own bound (``gateway.admission`` applies them):

- ``queue_wait``: a new order would wait too long in a web worker. Every request first waits
  for a thread, and the rule there is CoDel's (Nichols and Jacobson, "Controlling Queue Delay",
  2012), on the time each request waited (``QueueWaits``): a queue that fills and drains again
  (a burst) is good, one that *stands* is not. The waits stand once every request seen for
  ``interval`` waited longer than ``bound``; a request that waited ``w > bound`` shows by
  itself that the queue stood above the bound for ``w - bound``. One request that waits less
  clears it: the queue drained. So a single slow request sheds nothing, a request is shed only
  if it waited longer than the bound itself, and none that waited ``bound + interval`` is
  taken. Then a new order waits for its turn among the few a worker works on at once
  (``OrderSlots``), where the orders ahead of it are known: one that could not start within
  the bound is refused before it waits at all.
- ``sms_backlog``: the oldest SMS not sent yet is older than its bound: a code sent now would
  arrive at least that late.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum

__all__ = ["OrderSlots", "OverloadReason", "QueueWaits", "retry_after_ms"]

_AVERAGING = 0.1  # weight of the latest order in the average time an order holds its slot
_WAIT_MARGIN = 9.0  # an order let wait waits at most this many times longer than it may
_WARM = 5  # orders timed before one is refused on how long it is expected to wait


class OverloadReason(StrEnum):
    QUEUE_WAIT = "queue_wait"
    SMS_BACKLOG = "sms_backlog"


class QueueWaits:
    """How long requests waited for a thread, and whether the queue stands above ``bound``
    (seconds) for ``interval`` (seconds). Safe to share between threads."""

    def __init__(self, bound: float, interval: float) -> None:
        self.bound = bound
        self.interval = interval
        self.last_wait: float | None = None  # of the latest request seen
        self.standing = False  # as of the latest request seen
        self._above_since: float | None = None
        self._lock = threading.Lock()

    def observe(self, wait: float, now: float) -> bool:
        """A request waited ``wait`` seconds and got its thread at ``now`` (a monotonic time):
        say whether it came out of a standing queue."""
        with self._lock:
            if wait <= self.bound:
                self._above_since = None
            else:
                since = now - (wait - self.bound)
                if self._above_since is None or since < self._above_since:
                    self._above_since = since
            standing = self._above_since is not None and now - self._above_since >= self.interval
            self.last_wait, self.standing = wait, standing
            return standing


class OrderSlots:
    """The new orders one web worker works on at once (``count``), and those waiting for
    their turn. Safe to share between threads.

    A new order that finds every slot taken waits for one, unless the orders ahead of it would
    keep it waiting longer than it may (``expected_wait``). Refusing it then, at once, costs it
    nothing; letting it wait and refusing it later would cost it the wait.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.hold = 0.0  # seconds an order holds its slot, lately (an exponential average)
        self._timed = 0  # orders that gave their slot back: how much ``hold`` is worth
        self._working: list[float] = []  # when each order at work took its slot
        self._waiting = 0
        self._changed = threading.Condition()

    def expected_wait(self) -> float:
        """How long a new order would wait for a slot, were every slot taken: a turn for each
        order waiting and one more, each as long as orders held a slot lately, or as the order
        at work longest has held one already."""
        now = time.monotonic()
        turn = max([self.hold, *(now - taken for taken in self._working)])
        return (self._waiting + 1) * turn / self.count

    def take(self, may_wait: float | None) -> float | None:
        """Take a slot, waiting for one if ``expected_wait`` is within ``may_wait`` seconds, and
        no longer than ``may_wait`` plus ``_WAIT_MARGIN`` times itself (None: however long).
        Until ``_WARM`` orders were timed, the first orders of a new worker being slow, an order
        waits for its turn whatever the guess. Return when the slot was taken (for ``give``),
        or None when it was not."""
        with self._changed:
            if len(self._working) >= self.count:
                if may_wait is not None and (may_wait <= 0 or self._timed >= _WARM and
                                             self.expected_wait() > may_wait):
                    return None
                self._waiting += 1
                try:
                    if not self._changed.wait_for(
                            lambda: len(self._working) < self.count,
                            None if may_wait is None else may_wait * (1 + _WAIT_MARGIN)):
                        return None
                finally:
                    self._waiting -= 1
            taken = time.monotonic()
            self._working.append(taken)
            return taken

    def give(self, taken: float) -> None:
        """Give back the slot taken at ``taken``."""
        with self._changed:
            self._working.remove(taken)
            held = time.monotonic() - taken
            self.hold = held if not self._timed else self.hold + _AVERAGING * (held - self.hold)
            self._timed += 1
            self._changed.notify()


# Milliseconds to wait before asking again, drawn at random between the two so that the clients
# refused together do not all come back together: a standing queue drains in a moment; an SMS
# backlog drains as fast as the SMSC takes messages.
_RETRY_MS = {OverloadReason.QUEUE_WAIT: (500, 1500), OverloadReason.SMS_BACKLOG: (5000, 10000)}


def retry_after_ms(reason: OverloadReason, draw: Callable[[], float]) -> int:
    """When to try again after a refusal for ``reason``; ``draw`` gives a number in [0, 1)."""
    low, high = _RETRY_MS[reason]
    return low + int((high - low) * draw())
