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

__all__ = ["FAILURES_TO_FAIL_OVER", "BindSlots", "ProviderHealth"]

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


# Take or keep a bind slot: 1 when ``holder`` holds it now (for another lease), else 0.
_HOLD = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class BindSlots:
    """A connection's ``binds`` across every SMPP process: slot ``i`` of a connection is held
    by one worker at a time, under a lease it renews while bound or binding again; a worker
    without a slot stands by, and takes one when its holder stops (at once) or dies (when the
    lease runs out)."""

    # Longer than a connect that hangs (SMPP_RESPONSE_TIMEOUT, 10 s by default): a holder
    # renews it before each attempt and while it waits to bind again.
    LEASE_SECONDS = 15.0

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = f"{prefix}sms:bind-slot:"
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)

    def _key(self, connection: str, slot: int) -> str:
        return f"{self._prefix}{connection}:{slot}"

    def take(self, connection: str, binds: int, holder: str,
             held: int | None = None) -> int | None:
        """A slot of ``connection`` for ``holder``: ``held`` while it still has it, else a
        free one, else None."""
        order = ([held] if held is not None else []) + [s for s in range(binds) if s != held]
        for slot in order:
            if self.keep(connection, slot, holder):
                return slot
        return None

    def keep(self, connection: str, slot: int, holder: str) -> bool:
        """Renew the lease; False when another worker holds the slot now."""
        lease = int(self.LEASE_SECONDS * 1000)
        return bool(self._hold(keys=[self._key(connection, slot)], args=[holder, lease]))

    def release(self, connection: str, slot: int, holder: str) -> None:
        self._release(keys=[self._key(connection, slot)], args=[holder])
