"""Which SMS provider carries messages now: failover for ``SMS_PROVIDER=smpp,twilio``.

Every process shares what it sees through Redis, timed by the Redis server's clock:

- each SMPP worker stamps its bind (``<connection>/<consumer>``) every second while it is bound
  and its submits succeed; a connection is usable while one of its binds was stamped within
  ``SMS_FAILOVER_AFTER`` seconds, and the SMPP side is healthy while some connection is;
- Twilio is unhealthy after ``FAILURES_TO_FAIL_OVER`` temporary errors in a row (429, 5xx,
  network), for ``SMS_FAILOVER_AFTER`` seconds after the last of them.

A message goes to the first healthy provider of the list, or to the first one when none is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from gateway.messaging.connections import DEFAULT_ID

__all__ = ["FAILURES_TO_FAIL_OVER", "ProviderHealth"]

FAILURES_TO_FAIL_OVER = 5
_FIGURES = ("binds", "window", "tps", "throttled")


class ProviderHealth:
    def __init__(self, client: redis.Redis, prefix: str, failover_after: int) -> None:
        self._client = client
        self._binds = f"{prefix}sms:health:smpp-binds"
        self._twilio_failures = f"{prefix}sms:health:twilio-failures"
        self.failover_after = failover_after

    def _now(self) -> float:
        seconds, micros = self._client.time()
        return seconds + micros / 1e6

    def smpp_up(self, consumer: str, connection: str = DEFAULT_ID,
                state: Mapping[str, float] | None = None) -> None:
        """Stamp a bind; ``state``: its figures now (``window``, ``tps``, ``throttled``)."""
        member = f"{connection}/{consumer}"
        pipe = self._client.pipeline(transaction=False)
        pipe.zadd(self._binds, {member: self._now()})
        if state:
            figures: dict[Any, Any] = dict(state)  # redis-py's Mapping type is invariant
            pipe.hset(self._state_key(member), mapping=figures)
            pipe.expire(self._state_key(member), 2 * self.failover_after)
        pipe.execute()

    def smpp_down(self, consumer: str, connection: str = DEFAULT_ID) -> None:
        member = f"{connection}/{consumer}"
        self._client.zrem(self._binds, member)
        self._client.delete(self._state_key(member))

    def _state_key(self, member: str) -> str:
        return f"{self._binds}:{member}"

    def connection_states(self) -> dict[str, dict[str, float]]:
        """Each connection with a live bind: its ``binds`` up, and their ``window`` in use,
        ``tps`` and ``throttled`` submits (since each bind's start) added up."""
        since = self._now() - self.failover_after
        members = [str(m) for m in self._client.zrangebyscore(self._binds, since, "+inf")]
        pipe = self._client.pipeline(transaction=False)
        for member in members:
            pipe.hgetall(self._state_key(member))
        states: dict[str, dict[str, float]] = {}
        for member, figures in zip(members, pipe.execute(), strict=True):
            state = states.setdefault(member.split("/", 1)[0], dict.fromkeys(_FIGURES, 0.0))
            state["binds"] += 1
            for name in ("window", "tps", "throttled"):
                state[name] += float(figures.get(name, 0) if figures else 0)
        return states

    def smpp_healthy(self) -> bool:
        since = self._now() - self.failover_after
        return self._client.zcount(self._binds, since, "+inf") > 0

    def usable_connections(self) -> set[str]:
        """The connections with a bind stamped within ``SMS_FAILOVER_AFTER`` seconds."""
        since = self._now() - self.failover_after
        stamped = self._client.zrangebyscore(self._binds, since, "+inf")
        return {str(member).split("/", 1)[0] for member in stamped}

    def twilio_failed(self) -> None:
        pipe = self._client.pipeline()
        pipe.incr(self._twilio_failures)
        pipe.expire(self._twilio_failures, self.failover_after)
        pipe.execute()

    def twilio_ok(self) -> None:
        self._client.delete(self._twilio_failures)

    def twilio_healthy(self) -> bool:
        return int(self._client.get(self._twilio_failures) or 0) < FAILURES_TO_FAIL_OVER

    def choose(self, providers: tuple[str, ...]) -> str:
        """The first healthy provider of ``providers``, or the first one if none is."""
        if len(providers) == 1:
            return providers[0]
        checks = {"smpp": self.smpp_healthy, "twilio": self.twilio_healthy}
        return next((name for name in providers if checks[name]()), providers[0])
