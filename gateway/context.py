"""The per-process bundle of settings and ports that every use case receives, and the one way
a view or a command reaches it (``services``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import Any

import redis
from flask import Flask, current_app

from gateway.admission import Admission
from gateway.config import Settings
from gateway.domain.texts import Texts
from gateway.domain.times import utc_now
from gateway.store.db import Database
from gateway.store.redis_store import IdempotencyCache, KeyCache, RateLimiter, connect

__all__ = ["Gateway", "attach", "services"]

_EXTENSION = "gateway"


class Gateway:
    """Settings, the database, Redis (connected on first use), texts and the clock.

    Build it with ``gateway.connect``, which also wires what runs after each commit.
    """

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.db = Database(settings.DATABASE_URL)
        self.texts = self.texts_in(settings.SMS_LANGUAGE)

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
    def key_cache(self) -> KeyCache[Any]:
        return KeyCache(self.redis, self.settings.REDIS_PREFIX)

    @cached_property
    def admission(self) -> Admission:
        """Whether this process takes a new order now (``gateway.admission``)."""
        return Admission(self.settings, self.db, self.clock)

    @property
    def secret_key(self) -> bytes:
        return self.settings.SECRET_KEY.encode()

    def close(self) -> None:
        self.db.dispose()
        if "redis" in self.__dict__:
            self.redis.close()


def attach(app: Flask, gw: Gateway) -> None:
    app.extensions[_EXTENSION] = gw


def services(app: Flask | None = None) -> Gateway:
    """The app's ``Gateway``: the one way a view, a command or the local runner reaches it."""
    found: Gateway = (app or current_app).extensions[_EXTENSION]
    return found
