"""What one bind shows of itself: its share of its connection's gauges (a connection's binds
add up there, in one process or several), and the figures it stamps in Redis each second for
``/readyz`` and the dashboard."""

from __future__ import annotations

import time

from gateway import metrics

__all__ = ["BindFigures"]


class BindFigures:
    def __init__(self, connection: str) -> None:
        self._window = metrics.SMPP_WINDOW_IN_USE.labels(connection)
        self._binds = metrics.SMPP_BINDS_UP.labels(connection)
        self._window_shown = 0  # what this bind added to the window gauge
        self._counted_up = False  # whether this bind is in the binds-up gauge
        self._last = (time.monotonic(), 0)  # when, and submits then (for its TPS)

    def window(self, in_use: int) -> None:
        if in_use != self._window_shown:
            self._window.inc(in_use - self._window_shown)
            self._window_shown = in_use

    def up(self, up: bool) -> None:
        if up != self._counted_up:
            self._binds.inc(1 if up else -1)
            self._counted_up = up

    def stamp(self, in_use: int, submitted: int, throttled: int) -> dict[str, float]:
        """The figures to stamp now: window in use, submits a second since the last stamp,
        and throttled submits since the start."""
        now = time.monotonic()
        since, before = self._last
        self._last = now, submitted
        tps = (submitted - before) / (now - since) if now > since else 0.0
        return {"window": in_use, "tps": round(tps, 1), "throttled": throttled}
