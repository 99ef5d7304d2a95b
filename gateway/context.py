"""The per-process bundle of settings and ports that every use case receives, and the one way
a view or a command reaches it (``services``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

import redis
from flask import Flask, current_app

from gateway.admission import Admission
from gateway.config import Settings
from gateway.domain.texts import Texts
from gateway.domain.times import utc_now
from gateway.store.db import Database
from gateway.store.redis_guards import PendingBindings, SignInDelays, SignIns, SmsGuard
from gateway.store.redis_store import IdempotencyCache, KeyCache, RateLimiter, connect

__all__ = ["Gateway", "attach", "services"]

_EXTENSION = "gateway"
T = TypeVar("T")


class _built_once(Generic[T]):  # lower case: a decorator, as cached_property
    """``functools.cached_property`` that builds its value once per instance under gevent too.

    cached_property's lock belongs to the class, and one made before gevent's monkey-patching
    (the stream role imports the app first) lets every greenlet in at once: 300 TVs connecting
    together built 300 Redis clients, each with connections of its own.
    """

    def __init__(self, build: Callable[[Any], T]) -> None:
        self._build = build
        self._name = build.__name__
        self.__doc__ = build.__doc__

    def __get__(self, gw: Gateway, owner: type | None = None) -> T:
        with gw._building:  # made with the instance: a gevent lock where gevent patched it
            if self._name not in gw.__dict__:  # once set, the instance's value hides this
                gw.__dict__[self._name] = self._build(gw)
            found: T = gw.__dict__[self._name]
            return found


class Gateway:
    """Settings, the database, Redis (connected on first use), texts and the clock.

    Build it with ``gateway.connect``, which also wires what runs after each commit.
    """

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.db = Database(settings.DATABASE_URL)
        self.texts = self.texts_in(settings.SMS_LANGUAGE)
        self._building = threading.RLock()  # of the values built on first use (_built_once)
        self._closers: list[Callable[[], None]] = []

    def texts_in(self, language: str) -> Texts:
        """SMS texts in ``language`` (zh-CN or en), e.g. to answer in the language asked in."""
        return Texts(language, self.settings.MERCHANT_NAME, self.settings.TIMEZONE)

    @_built_once
    def redis(self) -> redis.Redis:
        settings = self.settings
        return connect(settings.REDIS_URL, settings.VAR_DIR, settings.REDIS_SENTINELS,
                       settings.REDIS_SENTINEL_SERVICE)

    @_built_once
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.redis, self.settings.REDIS_PREFIX)

    @_built_once
    def idempotency(self) -> IdempotencyCache:
        return IdempotencyCache(self.redis, self.settings.REDIS_PREFIX)

    @_built_once
    def key_cache(self) -> KeyCache[Any]:
        return KeyCache(self.redis, self.settings.REDIS_PREFIX)

    @_built_once
    def sms_guard(self) -> SmsGuard:
        return SmsGuard(self.redis, self.settings.REDIS_PREFIX)

    @_built_once
    def pending_bindings(self) -> PendingBindings:
        return PendingBindings(self.redis, self.settings.REDIS_PREFIX)

    @_built_once
    def sign_in_delays(self) -> SignInDelays:
        return SignInDelays(self.redis, self.settings.REDIS_PREFIX)

    @_built_once
    def sign_ins(self) -> SignIns:
        return SignIns(self.redis, self.settings.REDIS_PREFIX)

    @_built_once
    def admission(self) -> Admission:
        """Whether this process takes a new order now (``gateway.admission``)."""
        return Admission(self.settings, self.db, self.clock)

    @property
    def secret_key(self) -> bytes:
        return self.settings.SECRET_KEY.encode()

    def on_close(self, closer: Callable[[], None]) -> None:
        """Have ``close`` call ``closer`` first (what runs on these stores, wired by
        ``gateway.connect``)."""
        self._closers.append(closer)

    def close(self) -> None:
        for closer in self._closers:
            closer()
        self.db.dispose()
        if "redis" in self.__dict__:
            self.redis.close()


def attach(app: Flask, gw: Gateway) -> None:
    app.extensions[_EXTENSION] = gw


def services(app: Flask | None = None) -> Gateway:
    """The app's ``Gateway``: the one way a view, a command or the local runner reaches it."""
    found: Gateway = (app or current_app).extensions[_EXTENSION]
    return found
