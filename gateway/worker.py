"""Background duties: expire lapsed orders and pass queued SMS on to their provider.

With ``SMS_PROVIDER=log`` queued SMS are logged and marked sent here; with ``smpp`` they are
relayed to the Redis Stream that the SMPP worker (``python -m smpp``) consumes; with
``twilio`` they are sent to Twilio from here. With a list (``smpp,twilio``) each round sends by
the first healthy provider (``gateway.sms.health``).
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property

import redis

from gateway import payments
from gateway.context import Gateway
from gateway.sms import outbox, twilio_sms
from gateway.sms.health import ProviderHealth
from gateway.sms.stream import OutboundStream, relay

__all__ = ["Worker"]

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.stopping = threading.Event()
        self.carrier: str | None = None  # the provider of the last round

    @cached_property
    def health(self) -> ProviderHealth:
        return ProviderHealth(self.gw.redis, self.gw.settings.REDIS_PREFIX,
                              self.gw.settings.SMS_FAILOVER_AFTER)

    @cached_property
    def twilio(self) -> twilio_sms.TwilioSender:
        return twilio_sms.TwilioSender(self.gw.settings)

    @cached_property
    def stream(self) -> OutboundStream:
        return OutboundStream(self.gw.redis, self.gw.settings.REDIS_PREFIX)

    def run_once(self) -> tuple[int, int]:
        """One round; return (orders expired, messages passed on)."""
        expired = payments.expire_lapsed(self.gw)
        carrier = self._carrier()
        if carrier != self.carrier and self.carrier is not None:
            log.warning("SMS go by %s now, not %s", carrier, self.carrier)
        self.carrier = carrier
        if carrier == "smpp":
            passed = relay(self.gw.db, self.stream, self.gw.clock)
        elif carrier == "twilio":
            multiple = len(self.gw.settings.SMS_PROVIDER) > 1
            passed = twilio_sms.dispatch(self.gw, self.twilio, self.health if multiple else None)
        else:
            passed = outbox.dispatch_queued(self.gw.db, outbox.LogProvider(), self.gw.clock)
        return expired, passed

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
        while not self.stopping.is_set():
            try:
                busy = any(self.run_once())
            except Exception:
                log.exception("worker round failed; retrying")
                busy = False
            if not busy:
                self.stopping.wait(self.gw.settings.WORKER_INTERVAL_SECONDS)
        log.info("worker stopped")
