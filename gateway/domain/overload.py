"""When the service is too busy to take a new order, and when to ask again.

Two reasons, each with its own bound (``gateway.admission`` applies them):

- ``queue_wait``: requests stand in a queue for a thread. The rule is CoDel's (Nichols and
  Jacobson, "Controlling Queue Delay", 2012), on the time each request waited for a thread:
  a queue that fills and drains again (a burst) is good, one that *stands* is not. The waits
  stand once every request seen for ``interval`` waited longer than ``bound``; a request that
  waited ``w > bound`` shows by itself that the queue stood above the bound for ``w - bound``.
  One request that waits less clears it: the queue drained. So a single slow request sheds
  nothing, a request is shed only if it waited longer than the bound itself, and no request
  waits longer than ``bound + interval`` and is taken.
- ``sms_backlog``: the oldest SMS not sent yet is older than its bound: a code sent now would
  arrive at least that late.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import StrEnum

__all__ = ["OverloadReason", "QueueWaits", "retry_after_ms"]


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


# Milliseconds to wait before asking again, drawn at random between the two so that the clients
# refused together do not all come back together: a standing queue drains in a moment; an SMS
# backlog drains as fast as the SMSC takes messages.
_RETRY_MS = {OverloadReason.QUEUE_WAIT: (500, 1500), OverloadReason.SMS_BACKLOG: (5000, 10000)}


def retry_after_ms(reason: OverloadReason, draw: Callable[[], float]) -> int:
    """When to try again after a refusal for ``reason``; ``draw`` gives a number in [0, 1)."""
    low, high = _RETRY_MS[reason]
    return low + int((high - low) * draw())
