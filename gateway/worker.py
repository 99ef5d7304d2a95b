"""Background duties: expire lapsed orders and pass queued SMS on to their provider.

With ``SMS_PROVIDER=log`` queued SMS are logged and marked sent here; with ``smpp`` they are
relayed to the Redis Stream that the SMPP worker (``python -m smpp``) consumes.
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property

from gateway import payments
from gateway.context import Gateway
from gateway.sms import outbox
from gateway.sms.stream import OutboundStream, relay

__all__ = ["Worker"]

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.stopping = threading.Event()

    @cached_property
    def stream(self) -> OutboundStream:
        return OutboundStream(self.gw.redis, self.gw.settings.REDIS_PREFIX)

    def run_once(self) -> tuple[int, int]:
        """One round; return (orders expired, messages passed on)."""
        expired = payments.expire_lapsed(self.gw)
        if self.gw.settings.SMS_PROVIDER == "smpp":
            passed = relay(self.gw.db, self.stream, self.gw.clock)
        else:
            passed = outbox.dispatch_queued(self.gw.db, outbox.LogProvider(), self.gw.clock)
        return expired, passed

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
