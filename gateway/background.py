"""Background duties: expire lapsed orders, pass queued SMS on to their provider, strip the
secrets (codes, links) from SMS that have left the queue, drop SMS older than
``RETENTION_DAYS``, pause SMS to number prefixes whose orders are never paid (SMS pumping),
and post events to the operator's BOSS when ``BOSS_WEBHOOK_URL`` is set.

With ``SMS_PROVIDER=log`` queued SMS are logged and marked sent here; with ``smpp`` they are
routed to the SMPP connections (``SMPP_CONFIG``: by prefix or carrier, priority and weight,
skipping connections with no live bind) and relayed to each one's Redis Stream, which the
SMPP workers (``python -m smpp``) consume; with
``twilio`` they are sent to Twilio from here. With a list (``smpp,twilio``) each round sends by
the first healthy provider (``gateway.messaging.health``).

In ``run`` BOSS events are posted by a thread of their own, so a BOSS that is slow or down
never holds up an SMS; a lone ``run_once`` (tests, one-off calls) posts them inline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property

import redis

from gateway.backend import boss, checkout, privacy, pumping
from gateway.context import Gateway
from gateway.messaging import twilio_sms
from gateway.messaging.connections import load_connections
from gateway.messaging.health import ProviderHealth
from gateway.messaging.routing import Miss, Router
from gateway.messaging.stream import HANDED_ON, OutboundStream, relay, streams_of
from gateway.store import outbox

__all__ = ["Worker"]

log = logging.getLogger(__name__)

REDACT_EVERY_SECONDS = 1.0  # how soon a sent SMS loses the secret it carries
PURGE_EVERY_SECONDS = 60.0  # SMS older than RETENTION_DAYS go, 1,000 at a time
JUDGE_EVERY_SECONDS = 30.0  # number prefixes whose orders are not paid are paused


class Worker:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.stopping = threading.Event()
        self.carrier: str | None = None  # the provider of the last round
        self.events_thread: threading.Thread | None = None  # posts BOSS events during ``run``
        self.redact_after = 0.0  # time.monotonic() of the next redaction of sent SMS
        self.purge_after = 0.0  # and of the next purge of SMS older than RETENTION_DAYS
        self.judge_after = 0.0  # and of the next look for number prefixes pumped with SMS

    @cached_property
    def health(self) -> ProviderHealth:
        return ProviderHealth(self.gw.redis, self.gw.settings.REDIS_PREFIX,
                              self.gw.settings.SMS_FAILOVER_AFTER)

    @cached_property
    def twilio(self) -> twilio_sms.TwilioSender:
        return twilio_sms.TwilioSender(self.gw.settings)

    @cached_property
    def streams(self) -> Callable[[str], OutboundStream]:
        return streams_of(self.gw.redis, self.gw.settings.REDIS_PREFIX)

    @cached_property
    def router(self) -> Router:
        return Router(load_connections(self.gw.settings))

    def check_connections(self) -> None:
        """Read SMPP_CONFIG now, at the start, when SMS may go by SMPP.

        :raise ConfigError: the file is missing or wrong (naming the connection and field).
        """
        if "smpp" in self.gw.settings.SMS_PROVIDER:
            load_connections(self.gw.settings)

    def relay(self) -> int:
        """Route the queued SMS to the SMPP connections, skipping those with no live bind."""
        connections = self.router.connections
        unusable: set[str] = set()
        if len(connections) > 1:  # with one, it is that one's or no one's
            unusable = set(connections) - self.health.usable_connections()

        fallback = self._hands_on() and self.health.twilio_healthy()

        def route(phone: str) -> str | Miss:
            return self.router.route(phone, lambda connection: connection not in unusable,
                                     fallback=fallback)

        return relay(self.gw.db, self.streams, self.gw.clock, route, unusable, connections,
                     handing_on=fallback,
                     failover_after=timedelta(seconds=self.gw.settings.SMS_FAILOVER_AFTER))

    def run_once(self) -> tuple[int, int]:
        """One round; return (orders expired, messages passed on)."""
        expired = checkout.expire_lapsed(self.gw)
        carrier = self._carrier()
        if carrier != self.carrier and self.carrier is not None:
            log.warning("SMS go by %s now, not %s", carrier, self.carrier)
        self.carrier = carrier
        if carrier == "smpp":
            passed = self.relay()
            if self._hands_on():  # what none of its connections can carry now: by Twilio
                passed += twilio_sms.dispatch(self.gw, self.twilio, self.health,
                                              handed_on=HANDED_ON)
        elif carrier == "twilio":
            multiple = len(self.gw.settings.SMS_PROVIDER) > 1
            passed = twilio_sms.dispatch(self.gw, self.twilio, self.health if multiple else None)
        else:
            passed = outbox.dispatch_queued(self.gw.db, outbox.LogProvider(), self.gw.clock)
        if time.monotonic() >= self.redact_after:
            self.redact_after = time.monotonic() + REDACT_EVERY_SECONDS
            outbox.redact_sent(self.gw.db)
        if time.monotonic() >= self.purge_after:
            self.purge_after = time.monotonic() + PURGE_EVERY_SECONDS
            privacy.purge_old_sms(self.gw)
        if time.monotonic() >= self.judge_after:
            self.judge_after = time.monotonic() + JUDGE_EVERY_SECONDS
            try:
                pumping.judge(self.gw)
            except redis.RedisError:  # SMS still go (by Twilio); judged again once it is back
                log.warning("Redis is down: SMS pumping not judged this round")
        if self.events_thread is None:
            self.post_events()
        return expired, passed

    def post_events(self) -> int:
        """Post due BOSS events; a failure is logged and tried again, never ends the round."""
        if not self.gw.settings.BOSS_WEBHOOK_URL:
            return 0
        try:
            return boss.deliver_due(self.gw, stop=self.stopping)
        except Exception:
            log.exception("posting BOSS events failed; retrying")
            return 0

    def _post_events_until_stopped(self) -> None:
        while not self.stopping.is_set():
            if not self.post_events():
                self.stopping.wait(self.gw.settings.WORKER_INTERVAL_SECONDS)

    def _hands_on(self) -> bool:
        """Whether an SMS none of whose SMPP connections has a live bind goes by Twilio (the
        next provider of SMS_PROVIDER), while other connections carry the rest."""
        providers = self.gw.settings.SMS_PROVIDER
        return providers[:2] == ("smpp", "twilio") and len(self.router.connections) > 1

    def _carrier(self) -> str:
        """The provider for this round: the first healthy one of ``SMS_PROVIDER``."""
        providers = self.gw.settings.SMS_PROVIDER
        if len(providers) == 1:
            return providers[0]
        try:
            return self.health.choose(providers)
        except redis.RedisError:  # no Redis, no SMPP stream either: send by the others
            return next(name for name in providers if name != "smpp")

    def run(self) -> None:
        """Repeat rounds until ``stopping`` is set; a failed round is logged and retried."""
        log.info("worker started: sms provider %s", self.gw.settings.SMS_PROVIDER)
        if self.gw.settings.BOSS_WEBHOOK_URL:
            self.events_thread = threading.Thread(target=self._post_events_until_stopped,
                                                  name="boss-events", daemon=True)
            self.events_thread.start()
        while not self.stopping.is_set():
            try:
                busy = any(self.run_once())
            except Exception:
                log.exception("worker round failed; retrying")
                busy = False
            if not busy:
                self.stopping.wait(self.gw.settings.WORKER_INTERVAL_SECONDS)
        if self.events_thread is not None:
            self.events_thread.join(timeout=sum(boss.TIMEOUT) + 5)
            self.events_thread = None
        log.info("worker stopped")
