"""Build one process's services: the one place that wires what follows each commit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gateway import metrics
from gateway.backend import live, stream_hub, tv_events
from gateway.config import Settings
from gateway.context import Gateway
from gateway.domain.times import utc_now

__all__ = ["connect"]


def connect(settings: Settings, clock: Callable[[], datetime] = utc_now) -> Gateway:
    """The services of one process (web, worker, SMPP worker, CLI), with the side effects that
    follow each commit wired in (``gateway.effects``): counters, and wake-ups of the live
    streams of the devices the commit touched."""
    gw = Gateway(settings, clock)
    gw.db.on_commit(metrics.COUNTED, metrics.count_committed)
    gw.db.on_commit(tv_events.TOUCHED, live.StreamWaker(gw))
    gw.on_close(lambda: stream_hub.close(gw))
    return gw
