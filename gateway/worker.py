"""Background duties: expire lapsed orders and hand queued SMS to the configured provider."""

from __future__ import annotations

import logging
import threading

from gateway import payments
from gateway.config import Settings
from gateway.context import Gateway
from gateway.sms import outbox

__all__ = ["Worker", "provider_for"]

log = logging.getLogger(__name__)


def provider_for(settings: Settings) -> outbox.SmsProvider:
    if settings.SMS_PROVIDER == "log":
        return outbox.LogProvider()
    raise ValueError(f"unknown SMS provider {settings.SMS_PROVIDER}")  # pragma: no cover


class Worker:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.provider = provider_for(gw.settings)
        self.stopping = threading.Event()

    def run_once(self) -> tuple[int, int]:
        """One round; return (orders expired, messages handed over)."""
        expired = payments.expire_lapsed(self.gw)
        sent = outbox.dispatch_queued(self.gw.db, self.provider, self.gw.clock)
        return expired, sent

    def run(self) -> None:
        """Repeat rounds until ``stopping`` is set; a failed round is logged and retried."""
        log.info("worker started: sms provider %s", self.provider.name)
        while not self.stopping.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("worker round failed; retrying")
            self.stopping.wait(self.gw.settings.WORKER_INTERVAL_SECONDS)
        log.info("worker stopped")
