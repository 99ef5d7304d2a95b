"""What the payment pages and the SMS guards keep in Redis for a while: sign-ins and their
throttles, bindings waiting for their code, paused number blocks. Lost with Redis, each fails
closed (a sign-in or binding is asked again; a pause lapses)."""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from datetime import datetime
from typing import Any, cast

import redis

from gateway.store.redis_store import Limit

__all__ = ["PendingBindings", "SignInDelays", "SignIns", "SmsGuard"]


# --- SMS pumping ------------------------------------------------------------------------------


class SmsGuard:
    """Number prefixes whose SMS are paused (toll fraud: SMS pumped to number ranges that never
    pay), and the orders sent to each prefix lately, counted in the order's own limits.

    Every process reads the paused prefixes from Redis at most every ``refresh`` seconds: a
    pause holds everywhere within that, at the cost of no round trip per order.
    """

    def __init__(self, client: redis.Redis, prefix: str, refresh: float = 5.0) -> None:
        self._client = client
        self._paused_key = f"{prefix}sms-guard:paused"
        self._sent_prefix = f"{prefix}limit:sms-sent:"
        self._refresh = refresh
        self._paused: dict[str, float] = {}
        self._read_at = -math.inf

    @staticmethod
    def sent_limit(number_prefix: str, window_seconds: int) -> Limit:
        """A limit that never refuses: the orders that sent SMS to ``number_prefix`` lately."""
        return Limit("sms_sent", f"sms-sent:{number_prefix}", 10**9, window_seconds)

    def paused_until(self, number_prefix: str, now: datetime) -> float | None:
        """When the pause of ``number_prefix`` ends (a timestamp), if it is paused."""
        if time.monotonic() - self._read_at > self._refresh:
            self._paused, self._read_at = self._read(), time.monotonic()
        until = self._paused.get(number_prefix)
        return until if until is not None and until > now.timestamp() else None

    def all_paused(self, now: datetime) -> dict[str, float]:
        return {k: v for k, v in sorted(self._read().items()) if v > now.timestamp()}

    def _read(self) -> dict[str, float]:
        found = cast(dict[str, str], self._client.hgetall(self._paused_key))
        return {prefix: float(until) for prefix, until in found.items()}

    def pause(self, number_prefix: str, until: float) -> None:
        self._client.hset(self._paused_key, number_prefix, until)
        self._read_at = -math.inf

    def lift(self, number_prefix: str) -> bool:
        """End the pause of ``number_prefix`` and forget what was sent to it; say whether it was
        paused."""
        pipe = self._client.pipeline()
        pipe.hdel(self._paused_key, number_prefix)
        pipe.delete(self._sent_prefix + number_prefix)
        lifted, _ = pipe.execute()
        self._read_at = -math.inf
        return bool(lifted)

    def recent(self, since: datetime, until: datetime, most: int = 1000) -> dict[str, list[str]]:
        """The orders sent to each prefix between ``since`` and ``until``, the ``most`` newest
        of them (a sample enough to judge by)."""
        found = {}
        for key in self._client.scan_iter(match=self._sent_prefix + "*", count=500):
            members = self._client.zrevrangebyscore(key, int(until.timestamp() * 1000),
                                                    int(since.timestamp() * 1000), start=0,
                                                    num=most)
            if members:
                found[str(key)[len(self._sent_prefix):]] = [str(m) for m in members]
        return found


# --- sign-ins on payment pages ----------------------------------------------------------------


# KEYS[1]: [failures, not before]; ARGV: now, free failures, longest wait, expiry (seconds).
# Returns the seconds to wait, or 0 when the try may go on (counted as a failure already).
_TAKE_TRY = """
local raw = redis.call('GET', KEYS[1])
local failures, not_before, now = 0, 0, tonumber(ARGV[1])
if raw then
  local kept = cjson.decode(raw)
  failures, not_before = kept[1], kept[2]
end
if now < not_before then return math.ceil(not_before - now) end
failures = failures + 1
local free, wait = tonumber(ARGV[2]), 0
if failures >= free then wait = math.min(tonumber(ARGV[3]), 30 * 2 ^ (failures - free)) end
redis.call('SET', KEYS[1], cjson.encode({failures, now + wait}), 'EX', ARGV[4])
return 0
"""


class SignInDelays:
    """Wrong passwords of one client (address) for one account: after ``free`` of them each
    next try of that client waits, twice as long each time, from 30 s up to ``longest``. A
    guesser is slowed; the owner, elsewhere, is not."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._take = client.register_script(_TAKE_TRY)

    def take(self, account: str, client: str, now: datetime, *, free: int,
             longest: int) -> int:
        """Let ``client`` try ``account`` now, counting the try as wrong until ``cleared``
        (so that tries sent at once wait as tries one after another do); or return the seconds
        it must wait first. Atomic."""
        return int(self._take(keys=[self._name(account, client)],
                              args=[now.timestamp(), free, longest, max(longest, 86400)]))

    def cleared(self, account: str, client: str) -> None:
        self._client.delete(self._name(account, client))

    def _name(self, account: str, client: str) -> str:
        digest = hashlib.sha256(f"{account}\x1f{client}".encode()).hexdigest()
        return f"{self._prefix}sign-in-delay:{digest}"


class SignIns:
    """Who signed in on a payment page, kept here: the page's cookie holds only a random id,
    so neither the wallet nor the order can be read off it (it is signed, not encrypted)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def start(self, order_id: str, wallet_id: str, now: datetime, seconds: int) -> str:
        """Sign ``wallet_id`` in for ``order_id`` for ``seconds``; return the id for the
        cookie."""
        sign_in = secrets.token_urlsafe(24)
        until = now.timestamp() + seconds
        self._client.set(self._name(sign_in), json.dumps([order_id, wallet_id, until]),
                         ex=seconds)
        return sign_in

    def wallet(self, sign_in: object, order_id: str, now: datetime) -> str | None:
        """The wallet signed in under ``sign_in`` for ``order_id``, while the sign-in lasts."""
        if not isinstance(sign_in, str):
            return None
        raw = self._client.get(self._name(sign_in))
        if raw is None:
            return None
        signed_order, wallet_id, until = json.loads(raw)
        return str(wallet_id) if signed_order == order_id and now.timestamp() < until else None

    def end(self, sign_in: object) -> None:
        if isinstance(sign_in, str):
            self._client.delete(self._name(sign_in))

    def _name(self, sign_in: str) -> str:
        return f"{self._prefix}sign-in:{hashlib.sha256(sign_in.encode()).hexdigest()}"


class PendingBindings:
    """Phones a payment page asked to bind to a wallet, waiting for the code sent to the phone:
    by order, for as long as the code lives. Tries are counted atomically."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def offer(self, order_id: str, phone: str, wallet_id: str, digest: str, now: datetime,
              seconds: int) -> None:
        pipe = self._client.pipeline()
        pipe.set(self._name(order_id), json.dumps({
            "phone": phone, "wallet": wallet_id, "digest": digest,
            "until": now.timestamp() + seconds}), ex=seconds)
        pipe.delete(self._name(order_id) + ":tries")
        pipe.execute()

    def pending(self, order_id: str, now: datetime) -> dict[str, Any] | None:
        """The order's binding waiting for its code: ``phone``, ``wallet``, ``digest``."""
        raw = self._client.get(self._name(order_id))
        if raw is None:
            return None
        found: dict[str, Any] = json.loads(raw)
        return found if now.timestamp() < found["until"] else None

    def tried(self, order_id: str, seconds: int) -> int:
        """Count a try of the order's code; return how many there were."""
        pipe = self._client.pipeline()
        pipe.incr(self._name(order_id) + ":tries")
        pipe.expire(self._name(order_id) + ":tries", seconds)
        tries, _ = pipe.execute()
        return int(tries)

    def drop(self, order_id: str) -> None:
        """End the order's binding; its count of tries stays until it lapses (a try already
        under way is still counted)."""
        self._client.delete(self._name(order_id))

    def _name(self, order_id: str) -> str:
        return f"{self._prefix}binding:{order_id}"
