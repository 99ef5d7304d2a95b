"""The per-application bundle of settings and ports that every use case receives."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

import redis

from gateway.config import Settings

if TYPE_CHECKING:
    from gateway.apps import KeyCache
from gateway.db import Database
from gateway.sms.texts import Texts
from gateway.store import IdempotencyCache, RateLimiter, connect

__all__ = ["Gateway", "iso", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """A moment as the API shows it: ISO 8601 UTC to the second, ``2026-11-23T08:00:00Z``."""
    return None if moment is None else moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class Gateway:
    """Settings, the database, Redis (connected on first use), texts and the clock."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.db = Database(settings.DATABASE_URL)
        self.texts = self.texts_in(settings.SMS_LANGUAGE)
        from gateway import live  # imports this module; here so every process wakes streams

        live.wake_streams_on_commit(self)

    def texts_in(self, language: str) -> Texts:
        """SMS texts in ``language`` (zh-CN or en), e.g. to answer in the language asked in."""
        return Texts(language, self.settings.MERCHANT_NAME, self.settings.TIMEZONE)

    @cached_property
    def redis(self) -> redis.Redis:
        return connect(self.settings.REDIS_URL, self.settings.VAR_DIR)

    @cached_property
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.redis, self.settings.REDIS_PREFIX)

    @cached_property
    def idempotency(self) -> IdempotencyCache:
        return IdempotencyCache(self.redis, self.settings.REDIS_PREFIX)

    @cached_property
    def key_cache(self) -> KeyCache:
        from gateway.apps import KeyCache  # imports this module's users; here to stay acyclic

        return KeyCache(self.redis, self.settings.REDIS_PREFIX)

    @property
    def secret_key(self) -> bytes:
        return self.settings.SECRET_KEY.encode()

    def close(self) -> None:
        self.db.dispose()
        if "redis" in self.__dict__:
            self.redis.close()
